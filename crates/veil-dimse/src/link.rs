//! The DIMSE message layer over a dicom-ul association: P-DATA
//! fragmentation on send, reassembly of command and data fragments on
//! receive, and release/abort handling.
//!
//! Why data sets are streamed rather than collected: a multi-frame
//! instance can be gigabytes, and the gateway must not hold it twice (once
//! in PDUs, once in a buffer); [`DataReader`] hands fragments to the caller
//! as they arrive and [`Link::send_data`] reads the sender's file one
//! fragment at a time.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::marker::PhantomData;

use dicom_ul::association::{CloseSocket, SyncAssociation};
use dicom_ul::pdu::{PDataValue, PDataValueType};
use dicom_ul::Pdu;

use crate::command::CommandSet;
use crate::error::{ul_error, DimseError};

/// Bytes of a P-DATA-TF PDU around one PDV's data: the PDU header (6)
/// and the PDV item header (4 length + 1 context + 1 control). PS3.8
/// counts only the PDV item header against the peer's maximum; dicom-ul
/// counts the PDU header too, so both are reserved.
pub const PDV_OVERHEAD: usize = 12;

/// Upper bound on one fragment whatever the peer allows (a peer may say 0,
/// "unlimited"): keeps the per-association buffer small.
const MAX_FRAGMENT: usize = 1 << 20;

/// How much of a data set fits in one PDV for a peer's maximum PDU length.
pub fn fragment_len(peer_max_pdu: u32) -> usize {
    let peer = if peer_max_pdu == 0 {
        usize::MAX
    } else {
        peer_max_pdu as usize
    };
    peer.saturating_sub(PDV_OVERHEAD).clamp(2, MAX_FRAGMENT)
}

/// What the peer did instead of sending the next command.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// A-RELEASE-RQ (answered) or A-RELEASE-RP.
    Released,
    /// A-ABORT.
    Aborted,
}

/// A DIMSE message channel on an established association.
pub struct Link<A, S> {
    assoc: A,
    pending: VecDeque<PDataValue>,
    fragment: usize,
    _stream: PhantomData<S>,
}

impl<A, S> Link<A, S>
where
    A: SyncAssociation<S>,
    S: Read + io::Write + CloseSocket,
{
    /// Wraps an association; fragments honour the peer's maximum PDU
    /// length as negotiated.
    pub fn new(assoc: A) -> Self {
        let fragment = fragment_len(assoc.peer_max_pdu_length());
        Link {
            assoc,
            pending: VecDeque::new(),
            fragment,
            _stream: PhantomData,
        }
    }

    /// The association (presentation contexts, peer AE).
    pub fn assoc(&self) -> &A {
        &self.assoc
    }

    /// The association, mutably (socket options).
    pub fn assoc_mut(&mut self) -> &mut A {
        &mut self.assoc
    }

    /// Gives the association back (to release or abort it).
    pub fn into_inner(self) -> A {
        self.assoc
    }

    fn send_pdv(
        &mut self,
        pc: u8,
        value_type: PDataValueType,
        is_last: bool,
        data: Vec<u8>,
    ) -> Result<(), DimseError> {
        let pdu = Pdu::PData {
            data: vec![PDataValue {
                presentation_context_id: pc,
                value_type,
                is_last,
                data,
            }],
        };
        SyncAssociation::send(&mut self.assoc, &pdu).map_err(|e| ul_error("send P-DATA", e))
    }

    /// Sends a command set, fragmented to the peer's maximum.
    pub fn send_command(&mut self, pc: u8, cmd: &CommandSet) -> Result<(), DimseError> {
        let bytes = cmd.encode();
        let n = bytes.len().div_ceil(self.fragment).max(1);
        for (i, chunk) in bytes.chunks(self.fragment).enumerate() {
            self.send_pdv(pc, PDataValueType::Command, i + 1 == n, chunk.to_vec())?;
        }
        Ok(())
    }

    /// Sends a data set from a reader, one fragment at a time (never more
    /// than one fragment in memory). An empty data set is sent as one
    /// empty last fragment.
    pub fn send_data(&mut self, pc: u8, data: &mut dyn Read) -> Result<u64, DimseError> {
        let mut current = read_full(data, self.fragment)?;
        let mut total = 0u64;
        loop {
            let next = if current.len() == self.fragment {
                read_full(data, self.fragment)?
            } else {
                Vec::new()
            };
            let last = next.is_empty();
            total += current.len() as u64;
            self.send_pdv(pc, PDataValueType::Data, last, current)?;
            if last {
                return Ok(total);
            }
            current = next;
        }
    }

    /// The next PDV, or how the association ended. An A-RELEASE-RQ is
    /// answered here.
    fn next_pdv(&mut self) -> Result<Result<PDataValue, Ended>, DimseError> {
        loop {
            if let Some(v) = self.pending.pop_front() {
                return Ok(Ok(v));
            }
            let pdu = SyncAssociation::receive(&mut self.assoc)
                .map_err(|e| ul_error("receive P-DATA", e))?;
            match pdu {
                Pdu::PData { data } => self.pending.extend(data),
                Pdu::ReleaseRQ => {
                    SyncAssociation::send(&mut self.assoc, &Pdu::ReleaseRP)
                        .map_err(|e| ul_error("send A-RELEASE-RP", e))?;
                    return Ok(Err(Ended::Released));
                }
                Pdu::ReleaseRP => return Ok(Err(Ended::Released)),
                Pdu::AbortRQ { .. } => return Ok(Err(Ended::Aborted)),
                _ => return Err(DimseError::Protocol("unexpected PDU during P-DATA")),
            }
        }
    }

    /// Receives the next command: its presentation context and command
    /// set, or how the association ended.
    pub fn recv_command(&mut self) -> Result<Result<(u8, CommandSet), Ended>, DimseError> {
        let mut buf = Vec::new();
        let mut pc_id = None;
        loop {
            let v = match self.next_pdv()? {
                Ok(v) => v,
                Err(ended) if buf.is_empty() => return Ok(Err(ended)),
                Err(_) => return Err(DimseError::Protocol("association ended inside a command")),
            };
            if v.value_type != PDataValueType::Command {
                return Err(DimseError::Protocol(
                    "data fragment where a command was due",
                ));
            }
            match pc_id {
                None => pc_id = Some(v.presentation_context_id),
                Some(p) if p != v.presentation_context_id => {
                    return Err(DimseError::Protocol("command fragments on two contexts"))
                }
                Some(_) => {}
            }
            if buf.len() + v.data.len() > 64 * 1024 {
                return Err(DimseError::BadCommand("command set too long"));
            }
            buf.extend_from_slice(&v.data);
            if v.is_last {
                let pc = pc_id.unwrap_or(v.presentation_context_id);
                return Ok(Ok((pc, CommandSet::decode(&buf)?)));
            }
        }
    }

    /// A reader over the data set that follows a command on context `pc`.
    pub fn data_reader(&mut self, pc: u8) -> DataReader<'_, A, S> {
        DataReader {
            link: self,
            pc,
            current: Vec::new(),
            pos: 0,
            done: false,
            received: 0,
        }
    }

    /// Receives a whole data set into memory (C-FIND identifiers: small,
    /// and capped).
    pub fn recv_data_bytes(&mut self, pc: u8, cap: u64) -> Result<Vec<u8>, DimseError> {
        let mut out = Vec::new();
        let mut r = self.data_reader(pc);
        (&mut r)
            .take(cap + 1)
            .read_to_end(&mut out)
            .map_err(|e| DimseError::io("receive data set", &e))?;
        if out.len() as u64 > cap {
            return Err(DimseError::Protocol("data set over the size cap"));
        }
        Ok(out)
    }
}

fn read_full(r: &mut dyn Read, n: usize) -> Result<Vec<u8>, DimseError> {
    let mut buf = Vec::with_capacity(n);
    r.take(n as u64)
        .read_to_end(&mut buf)
        .map_err(|e| DimseError::io("read data set to send", &e))?;
    Ok(buf)
}

/// Streams the data fragments of one message. Reading past the last
/// fragment returns 0; a protocol violation or the end of the association
/// is an `io::Error` (kind `InvalidData` or `ConnectionAborted`), so a
/// handler copying into its spool sees the failure and discards.
pub struct DataReader<'l, A, S> {
    link: &'l mut Link<A, S>,
    pc: u8,
    current: Vec<u8>,
    pos: usize,
    done: bool,
    received: u64,
}

impl<A, S> DataReader<'_, A, S>
where
    A: SyncAssociation<S>,
    S: Read + io::Write + CloseSocket,
{
    /// Whether the last fragment has been read.
    pub fn is_done(&self) -> bool {
        self.done && self.pos >= self.current.len()
    }

    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Reads and discards the rest of the data set (after a refusal, so
    /// the next command lines up).
    pub fn drain(&mut self) -> io::Result<u64> {
        io::copy(self, &mut io::sink())
    }
}

impl<A, S> Read for DataReader<'_, A, S>
where
    A: SyncAssociation<S>,
    S: Read + io::Write + CloseSocket,
{
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.current.len() {
            if self.done || out.is_empty() {
                return Ok(0);
            }
            let v = match self.link.next_pdv() {
                Ok(Ok(v)) => v,
                Ok(Err(_)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "association ended inside a data set",
                    ))
                }
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
            };
            if v.value_type != PDataValueType::Data || v.presentation_context_id != self.pc {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "fragment of another message inside a data set",
                ));
            }
            self.done = v.is_last;
            self.received += v.data.len() as u64;
            self.current = v.data;
            self.pos = 0;
        }
        let n = out.len().min(self.current.len() - self.pos);
        out[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_18_fragment_len_honours_peer_maximum() {
        // 16 KiB peer: every P-DATA-TF PDU (header included) fits
        assert_eq!(fragment_len(16384) + PDV_OVERHEAD, 16384);
        // 0 means unlimited: capped to keep buffers small
        assert_eq!(fragment_len(0), MAX_FRAGMENT);
        // absurdly small peers still make progress
        assert_eq!(fragment_len(4), 2);
    }
}
