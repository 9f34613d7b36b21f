//! The requestor side: C-ECHO, C-STORE, C-FIND and C-MOVE SCU.
//!
//! Why C-STORE proposes the file's own transfer syntax in a context of its
//! own: the peer then accepts it when it can, and Veil sends the data set
//! bytes exactly as they are in the file. Only when the peer takes nothing
//! but an uncompressed syntax does Veil re-encode, and only where that
//! re-encoding touches the element headers (native pixel data);
//! decompressing or recompressing pixel data is a change of content the
//! gateway must not make silently, so such an instance is reported as not
//! deliverable with the reason.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_object::meta::FileMetaTable;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use dicom_ul::association::client::TlsStream;
use dicom_ul::association::{CloseSocket, SyncAssociation};
use dicom_ul::{ClientAssociation, ClientAssociationOptions};
use tracing::{debug, info, warn};

use crate::command::{status, CommandField, CommandSet};
use crate::error::{ul_error, DimseError};
use crate::link::{Ended, Link};

/// A remote application entity and how Veil calls it.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Veil's own AE title (calling).
    pub calling_ae: String,
    /// The peer's AE title (called).
    pub called_ae: String,
    /// `host:port`.
    pub address: String,
    /// The largest PDU Veil receives on this association.
    pub max_pdu_length: u32,
    /// Connect, read and write timeout: a peer silent for longer is given
    /// up on.
    pub timeout: Duration,
    /// DICOM TLS to this peer, if set.
    pub tls: Option<ClientTls>,
}

/// TLS settings for calling a peer.
#[derive(Debug, Clone)]
pub struct ClientTls {
    /// Roots (and client certificate, for mutual TLS); see
    /// [`crate::tls::client_config`].
    pub config: Arc<rustls::ClientConfig>,
    /// The name the peer's certificate must carry (DNS name or IP).
    pub server_name: String,
}

impl Peer {
    /// A peer with Veil's defaults (64 KiB PDUs, 30 s timeout).
    pub fn new(calling_ae: &str, called_ae: &str, address: &str) -> Self {
        Peer {
            calling_ae: calling_ae.to_string(),
            called_ae: called_ae.to_string(),
            address: address.to_string(),
            max_pdu_length: 65536,
            timeout: Duration::from_secs(30),
            tls: None,
        }
    }

    fn describe(&self) -> String {
        format!("{}@{}", self.called_ae, self.address)
    }
}

type ClientLink<S> = Link<ClientAssociation<S>, S>;

/// An association in the clear or over TLS. One lives on the stack per
/// SCU call and is moved once into the generic code: the size gap between
/// the variants (a TLS session's buffers) costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
enum Conn {
    Plain(ClientLink<TcpStream>),
    Tls(ClientLink<TlsStream>),
}

/// Runs the same generic code on either kind of association.
macro_rules! on_link {
    ($conn:expr, $l:ident => $body:expr) => {
        match $conn {
            Conn::Plain($l) => $body,
            Conn::Tls($l) => $body,
        }
    };
}

/// Proposed presentation contexts: abstract syntax and transfer syntaxes.
type Contexts = Vec<(String, Vec<String>)>;

/// At most 128 presentation contexts fit an association (odd ids 1..255).
const MAX_CONTEXTS: usize = 128;

fn connect(peer: &Peer, contexts: &[(String, Vec<String>)]) -> Result<Conn, DimseError> {
    let mut opts = ClientAssociationOptions::new()
        .calling_ae_title(peer.calling_ae.clone())
        .called_ae_title(peer.called_ae.clone())
        .max_pdu_length(peer.max_pdu_length)
        .connection_timeout(peer.timeout)
        .read_timeout(peer.timeout)
        .write_timeout(peer.timeout);
    for (abs, tss) in contexts {
        opts = opts.with_presentation_context(abs.clone(), tss.clone());
    }
    let named = |e| match ul_error("connect", e) {
        DimseError::Rejected { reason, .. } => DimseError::Rejected {
            peer: peer.describe(),
            reason,
        },
        other => other,
    };
    // no Nagle: a C-STORE is a small command PDU then data PDUs, and
    // held small writes meet the peer's delayed ACK (40 ms an instance)
    let conn = match &peer.tls {
        None => {
            let mut a = opts.establish(peer.address.as_str()).map_err(named)?;
            let _ = a.inner_stream().set_nodelay(true);
            Conn::Plain(Link::new(a))
        }
        Some(tls) => {
            let mut a = opts
                .tls_config(tls.config.clone())
                .server_name(&tls.server_name)
                .establish_tls(peer.address.as_str())
                .map_err(named)?;
            let _ = a.inner_stream().sock.set_nodelay(true);
            Conn::Tls(Link::new(a))
        }
    };
    debug!(peer = %peer.describe(), tls = peer.tls.is_some(), "association established");
    Ok(conn)
}

fn release<S: Read + io::Write + CloseSocket>(link: ClientLink<S>) {
    if let Err(e) = SyncAssociation::release(link.into_inner()) {
        debug!(error = %ul_error("release", e), "release did not complete cleanly");
    }
}

/// Message IDs of one association: 1, 2, ... (never 0).
struct MessageIds(u16);

impl MessageIds {
    fn next(&mut self) -> u16 {
        self.0 = self.0.wrapping_add(1).max(1);
        self.0
    }
}

fn uncompressed() -> Vec<String> {
    vec![
        uids::EXPLICIT_VR_LITTLE_ENDIAN.to_string(),
        uids::IMPLICIT_VR_LITTLE_ENDIAN.to_string(),
    ]
}

fn context_for<S: Read + io::Write + CloseSocket>(
    link: &ClientLink<S>,
    abstract_syntax: &str,
) -> Option<(u8, String)> {
    link.assoc()
        .presentation_contexts()
        .iter()
        .find(|c| c.abstract_syntax.trim_end_matches('\0') == abstract_syntax)
        .map(|c| (c.id, c.transfer_syntax.trim_end_matches('\0').to_string()))
}

/// Receives the response to `msg_id`, skipping nothing: a response to
/// another message is a protocol violation.
fn recv_response<S: Read + io::Write + CloseSocket>(
    link: &mut ClientLink<S>,
    msg_id: u16,
) -> Result<(u8, CommandSet), DimseError> {
    match link.recv_command()? {
        Ok((pc, rsp)) => {
            if rsp.responded_to() != Some(msg_id) {
                return Err(DimseError::Protocol("response to another message"));
            }
            Ok((pc, rsp))
        }
        Err(Ended::Released) => Err(DimseError::Protocol("peer released before responding")),
        Err(Ended::Aborted) => Err(DimseError::Aborted),
    }
}

/// C-ECHO: returns the peer's status (0000H when it answers).
pub fn echo(peer: &Peer) -> Result<u16, DimseError> {
    let conn = connect(peer, &[(uids::VERIFICATION.to_string(), uncompressed())])?;
    on_link!(conn, link => echo_on(peer, link))
}

fn echo_on<S: Read + io::Write + CloseSocket>(
    peer: &Peer,
    mut link: ClientLink<S>,
) -> Result<u16, DimseError> {
    let (pc, _) = context_for(&link, uids::VERIFICATION).ok_or(DimseError::NoContext {
        peer: peer.describe(),
        what: "Verification",
    })?;
    let mut ids = MessageIds(0);
    let id = ids.next();
    let mut rq = CommandSet::request(CommandField::CEchoRq, id, false);
    rq.set_uid(tags::AFFECTED_SOP_CLASS_UID.element(), uids::VERIFICATION);
    link.send_command(pc, &rq)?;
    let (_, rsp) = recv_response(&mut link, id)?;
    release(link);
    rsp.status()
        .ok_or(DimseError::BadCommand("C-ECHO-RSP without status"))
}

/// Why an instance was not delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Undeliverable {
    /// The file is not a DICOM Part 10 file Veil can read.
    #[error("unreadable file: {0}")]
    Unreadable(String),
    /// The peer accepted no context for the SOP class.
    #[error("peer accepts no context for the SOP class {sop_class}")]
    NoContext {
        /// SOP class UID (not an identifier of a patient)
        sop_class: String,
    },
    /// The peer accepts only an uncompressed syntax and the file is
    /// compressed: Veil does not decompress to deliver.
    #[error("peer accepts only {accepted} for this SOP class; the file is {file_ts} (compressed pixel data is not transcoded)")]
    NeedsTranscode {
        /// the file's transfer syntax
        file_ts: String,
        /// what the peer accepted
        accepted: String,
    },
    /// The peer answered with a failure status.
    #[error("peer answered C-STORE with failure status {0:04X}H")]
    Failed(u16),
    /// The association broke.
    #[error("association failed: {0}")]
    Association(String),
}

/// The fate of one file sent by [`store_files`].
#[derive(Debug, Clone)]
pub struct StoreOutcome {
    /// The file, as given.
    pub path: PathBuf,
    /// The status the peer sent (success or a warning), or why not
    /// delivered.
    pub result: Result<u16, Undeliverable>,
    /// Whether the data set was re-encoded (explicit/implicit VR).
    pub transcoded: bool,
}

/// What Veil needs to know of a Part 10 file to send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part10Info {
    /// MediaStorageSOPClassUID.
    pub sop_class: String,
    /// MediaStorageSOPInstanceUID.
    pub sop_instance: String,
    /// TransferSyntaxUID.
    pub ts: String,
    /// Byte offset of the data set (after preamble and meta group).
    pub offset: u64,
}

struct Counting<R> {
    inner: R,
    n: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}

/// Reads a Part 10 file's meta group; returns its identity, transfer
/// syntax and where the data set starts.
pub fn read_part10_info(path: &Path) -> Result<Part10Info, Undeliverable> {
    let mut f =
        File::open(path).map_err(|e| Undeliverable::Unreadable(format!("open: {:?}", e.kind())))?;
    f.seek(SeekFrom::Start(128))
        .map_err(|e| Undeliverable::Unreadable(format!("seek: {:?}", e.kind())))?;
    let mut c = Counting { inner: f, n: 0 };
    let meta = FileMetaTable::from_reader(&mut c)
        .map_err(|_| Undeliverable::Unreadable("no valid DICOM file meta information".into()))?;
    Ok(Part10Info {
        sop_class: meta.media_storage_sop_class_uid().to_string(),
        sop_instance: meta.media_storage_sop_instance_uid().to_string(),
        ts: meta.transfer_syntax().to_string(),
        offset: 128 + c.n,
    })
}

/// Sends files with C-STORE, one association per batch of at most 128
/// presentation contexts. Returns one outcome per file, in order; `Err`
/// only when no association could be made at all.
pub fn store_files(peer: &Peer, paths: &[PathBuf]) -> Result<Vec<StoreOutcome>, DimseError> {
    let mut session = StoreSession::new(peer, paths);
    let out: Vec<StoreOutcome> = (0..paths.len()).map(|i| session.store(i)).collect();
    let (connected_once, last_err) = session.finish();
    if !connected_once {
        if let Some(e) = last_err {
            return Err(e);
        }
    }
    let ok = out.iter().filter(|o| o.result.is_ok()).count();
    info!(peer = %peer.describe(), sent = ok, failed = out.len() - ok, "C-STORE done");
    Ok(out)
}

/// C-STORE of a known set of files (a study) on as few associations as
/// their presentation contexts allow, one file at a time, each outcome
/// returned as soon as the peer answered it.
///
/// Why a session and not [`store_files`] alone: the gateway marks each
/// instance delivered right after its C-STORE response, before sending the
/// next, so that a crash repeats at most one instance; a call that returns
/// only after the whole batch would widen that window. Why one association
/// for the study and not one per instance: negotiating an association
/// costs a round trip and the peer's setup per instance, which is most of
/// the time a small instance takes.
///
/// The association opens at the first [`StoreSession::store`] (a study
/// whose files are all unreadable never connects) and is released by
/// [`StoreSession::finish`] (or aborted when dropped without it).
pub struct StoreSession {
    peer: Peer,
    paths: Vec<PathBuf>,
    infos: Vec<Result<Part10Info, Undeliverable>>,
    /// The batch (association) of each readable file.
    batch_of: Vec<Option<usize>>,
    batches: Vec<Contexts>,
    /// The open association: its batch, the link, its message ids, and
    /// why it broke if it did.
    current: Option<(usize, Conn, MessageIds, Option<String>)>,
    /// Batches whose association could not be made, with the reason.
    failed: Vec<(usize, String)>,
    connected_once: bool,
    last_err: Option<DimseError>,
}

impl StoreSession {
    /// A session for `paths` (read now: their meta groups decide the
    /// proposed contexts; nothing is sent yet).
    pub fn new(peer: &Peer, paths: &[PathBuf]) -> StoreSession {
        let infos: Vec<Result<Part10Info, Undeliverable>> =
            paths.iter().map(|p| read_part10_info(p)).collect();
        let mut batch_of = vec![None; paths.len()];
        let mut batches: Vec<Contexts> = Vec::new();
        let mut current: Contexts = Vec::new();
        for (i, info) in infos.iter().enumerate() {
            let Ok(info) = info else { continue };
            // the file's own syntax alone, then the uncompressed fallbacks
            let wanted: Contexts = [
                (info.sop_class.clone(), vec![info.ts.clone()]),
                (info.sop_class.clone(), uncompressed()),
            ]
            .into_iter()
            .filter(|w| !current.contains(w))
            .collect();
            if current.len() + wanted.len() > MAX_CONTEXTS {
                batches.push(std::mem::take(&mut current));
            }
            for w in wanted {
                if !current.contains(&w) {
                    current.push(w);
                }
            }
            batch_of[i] = Some(batches.len());
        }
        if !current.is_empty() {
            batches.push(current);
        }
        StoreSession {
            peer: peer.clone(),
            paths: paths.to_vec(),
            infos,
            batch_of,
            batches,
            current: None,
            failed: Vec::new(),
            connected_once: false,
            last_err: None,
        }
    }

    /// Sends file `i` of the session's list (any order; files of one
    /// batch are best sent together, as [`store_files`] does).
    pub fn store(&mut self, i: usize) -> StoreOutcome {
        let path = self.paths[i].clone();
        let outcome = |result, transcoded| StoreOutcome {
            path: path.clone(),
            result,
            transcoded,
        };
        let info = match &self.infos[i] {
            Ok(info) => info.clone(),
            Err(u) => return outcome(Err(u.clone()), false),
        };
        let Some(b) = self.batch_of[i] else {
            return outcome(
                Err(Undeliverable::Unreadable("not in the session".into())),
                false,
            );
        };
        if let Some((_, why)) = self.failed.iter().find(|(fb, _)| *fb == b) {
            return outcome(Err(Undeliverable::Association(why.clone())), false);
        }
        if self.current.as_ref().is_some_and(|c| c.0 != b) {
            self.close_current();
        }
        if self.current.is_none() {
            match connect(&self.peer, &self.batches[b]) {
                Ok(conn) => {
                    self.connected_once = true;
                    self.current = Some((b, conn, MessageIds(0), None));
                }
                Err(e) => {
                    warn!(peer = %self.peer.describe(), error = %e, "C-STORE association failed");
                    self.failed.push((b, e.to_string()));
                    let why = e.to_string();
                    self.last_err = Some(e);
                    return outcome(Err(Undeliverable::Association(why)), false);
                }
            }
        }
        let Some((_, conn, ids, broken)) = self.current.as_mut() else {
            return outcome(
                Err(Undeliverable::Association("no association".into())),
                false,
            );
        };
        if let Some(b) = broken {
            return outcome(Err(Undeliverable::Association(b.clone())), false);
        }
        match on_link!(conn, link => store_one(link, ids, &path, &info)) {
            Ok((result, transcoded)) => outcome(result, transcoded),
            Err(e) => {
                *broken = Some(e.to_string());
                outcome(Err(Undeliverable::Association(e.to_string())), false)
            }
        }
    }

    /// Releases the open association (aborts a broken one).
    fn close_current(&mut self) {
        if let Some((_, conn, _, broken)) = self.current.take() {
            if broken.is_none() {
                on_link!(conn, link => release(link));
            } else {
                on_link!(conn, link => { let _ = SyncAssociation::abort(link.into_inner()); });
            }
        }
    }

    /// Ends the session: releases the association. Returns whether any
    /// association was made, and the last failure to make one.
    pub fn finish(mut self) -> (bool, Option<DimseError>) {
        self.close_current();
        (self.connected_once, self.last_err.take())
    }
}

impl Drop for StoreSession {
    fn drop(&mut self) {
        self.close_current();
    }
}

/// Sends one file. The outer `Err` is a broken association; the inner
/// result is the instance's fate.
fn store_one<S: Read + io::Write + CloseSocket>(
    link: &mut ClientLink<S>,
    ids: &mut MessageIds,
    path: &Path,
    info: &Part10Info,
) -> Result<(Result<u16, Undeliverable>, bool), DimseError> {
    let accepted: Vec<(u8, String)> = link
        .assoc()
        .presentation_contexts()
        .iter()
        .filter(|c| c.abstract_syntax.trim_end_matches('\0') == info.sop_class)
        .map(|c| (c.id, c.transfer_syntax.trim_end_matches('\0').to_string()))
        .collect();
    let (pc, ts, transcode) = if let Some((pc, ts)) = accepted.iter().find(|(_, ts)| *ts == info.ts)
    {
        (*pc, ts.clone(), false)
    } else if let Some((pc, ts)) = accepted.first() {
        let src = TransferSyntaxRegistry.get(&info.ts);
        let native = src.is_some_and(|t| !t.is_encapsulated_pixel_data() && !t.is_unsupported());
        if !native {
            return Ok((
                Err(Undeliverable::NeedsTranscode {
                    file_ts: info.ts.clone(),
                    accepted: ts.clone(),
                }),
                false,
            ));
        }
        (*pc, ts.clone(), true)
    } else {
        return Ok((
            Err(Undeliverable::NoContext {
                sop_class: info.sop_class.clone(),
            }),
            false,
        ));
    };
    let mut data: Box<dyn Read> = if transcode {
        match transcode_file(path, &ts) {
            Ok(bytes) => Box::new(io::Cursor::new(bytes)),
            Err(u) => return Ok((Err(u), false)),
        }
    } else {
        let mut f = match File::open(path) {
            Ok(f) => f,
            Err(e) => {
                return Ok((
                    Err(Undeliverable::Unreadable(format!("open: {:?}", e.kind()))),
                    false,
                ))
            }
        };
        if let Err(e) = f.seek(SeekFrom::Start(info.offset)) {
            return Ok((
                Err(Undeliverable::Unreadable(format!("seek: {:?}", e.kind()))),
                false,
            ));
        }
        Box::new(io::BufReader::with_capacity(256 * 1024, f))
    };
    let id = ids.next();
    let mut rq = CommandSet::request(CommandField::CStoreRq, id, true);
    rq.set_uid(tags::AFFECTED_SOP_CLASS_UID.element(), &info.sop_class)
        .set_u16(tags::PRIORITY.element(), 0)
        .set_uid(
            tags::AFFECTED_SOP_INSTANCE_UID.element(),
            &info.sop_instance,
        );
    link.send_command(pc, &rq)?;
    link.send_data(pc, &mut data)?;
    let (_, rsp) = recv_response(link, id)?;
    let st = rsp
        .status()
        .ok_or(DimseError::BadCommand("C-STORE-RSP without status"))?;
    if st == status::SUCCESS || status::is_warning(st) {
        Ok((Ok(st), transcode))
    } else {
        Ok((Err(Undeliverable::Failed(st)), transcode))
    }
}

/// Re-encodes a file's data set (native pixel data) in another
/// uncompressed transfer syntax. Only element headers change.
fn transcode_file(path: &Path, ts_uid: &str) -> Result<Vec<u8>, Undeliverable> {
    let ts = TransferSyntaxRegistry
        .get(ts_uid)
        .ok_or_else(|| Undeliverable::Unreadable("unknown target transfer syntax".into()))?;
    let obj = dicom_object::open_file(path).map_err(|_| {
        Undeliverable::Unreadable("cannot parse the data set to re-encode it".into())
    })?;
    let mut out = Vec::new();
    obj.write_dataset_with_ts(&mut out, ts)
        .map_err(|_| Undeliverable::Unreadable("cannot re-encode the data set".into()))?;
    Ok(out)
}

fn encode_identifier(obj: &InMemDicomObject, ts_uid: &str) -> Result<Vec<u8>, DimseError> {
    let ts = TransferSyntaxRegistry
        .get(ts_uid)
        .ok_or(DimseError::Protocol(
            "peer chose an unknown transfer syntax",
        ))?;
    let mut out = Vec::new();
    obj.write_dataset_with_ts(&mut out, ts)
        .map_err(|_| DimseError::Protocol("cannot encode the query identifier"))?;
    Ok(out)
}

/// Identifiers returned by C-FIND are small; more is a broken peer.
const MAX_IDENTIFIER: u64 = 1 << 20;

/// The accepted presentation context for a Study Root model `abs`, and a
/// STUDY-level identifier holding `keys`, encoded in that context's
/// transfer syntax: what C-FIND and C-MOVE both send after their command.
fn study_request<S: Read + io::Write + CloseSocket, const N: usize>(
    peer: &Peer,
    link: &ClientLink<S>,
    abs: &str,
    what: &'static str,
    keys: [(Tag, VR, PrimitiveValue); N],
) -> Result<(u8, String, Vec<u8>), DimseError> {
    let (pc, ts) = context_for(link, abs).ok_or(DimseError::NoContext {
        peer: peer.describe(),
        what,
    })?;
    let mut q = InMemDicomObject::new_empty();
    q.put(DataElement::new(
        tags::QUERY_RETRIEVE_LEVEL,
        VR::CS,
        PrimitiveValue::from("STUDY"),
    ));
    for (tag, vr, value) in keys {
        q.put(DataElement::new(tag, vr, value));
    }
    let ident = encode_identifier(&q, &ts)?;
    Ok((pc, ts, ident))
}

/// C-FIND, Study Root, STUDY level: the StudyInstanceUIDs of the studies
/// with this AccessionNumber (distinct, in the order the peer sent them).
pub fn find_studies(peer: &Peer, accession_number: &str) -> Result<Vec<String>, DimseError> {
    let abs = uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_FIND;
    let conn = connect(peer, &[(abs.to_string(), uncompressed())])?;
    on_link!(conn, link => find_on(peer, link, accession_number))
}

fn find_on<S: Read + io::Write + CloseSocket>(
    peer: &Peer,
    mut link: ClientLink<S>,
    accession_number: &str,
) -> Result<Vec<String>, DimseError> {
    let abs = uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_FIND;
    let (pc, ts, ident) = study_request(
        peer,
        &link,
        abs,
        "Study Root C-FIND",
        [
            (
                tags::ACCESSION_NUMBER,
                VR::SH,
                PrimitiveValue::from(accession_number),
            ),
            (tags::STUDY_INSTANCE_UID, VR::UI, PrimitiveValue::Empty),
        ],
    )?;
    let dts = TransferSyntaxRegistry.get(&ts).ok_or(DimseError::Protocol(
        "peer chose an unknown transfer syntax",
    ))?;
    let mut ids = MessageIds(0);
    let id = ids.next();
    let mut rq = CommandSet::request(CommandField::CFindRq, id, true);
    rq.set_uid(tags::AFFECTED_SOP_CLASS_UID.element(), abs)
        .set_u16(tags::PRIORITY.element(), 0);
    link.send_command(pc, &rq)?;
    link.send_data(pc, &mut io::Cursor::new(ident))?;
    let mut studies: Vec<String> = Vec::new();
    loop {
        let (rpc, rsp) = recv_response(&mut link, id)?;
        let st = rsp
            .status()
            .ok_or(DimseError::BadCommand("C-FIND-RSP without status"))?;
        let data = if rsp.has_data_set() {
            Some(link.recv_data_bytes(rpc, MAX_IDENTIFIER)?)
        } else {
            None
        };
        if status::is_pending(st) {
            let Some(data) = data else {
                return Err(DimseError::Protocol(
                    "pending C-FIND response without identifier",
                ));
            };
            let obj = InMemDicomObject::read_dataset_with_ts(&data[..], dts)
                .map_err(|_| DimseError::Protocol("C-FIND identifier does not parse"))?;
            if let Some(uid) = obj
                .element_opt(tags::STUDY_INSTANCE_UID)
                .ok()
                .flatten()
                .and_then(|e| e.to_str().ok())
            {
                let uid = uid.trim_end_matches(['\0', ' ']).to_string();
                if !uid.is_empty() && !studies.contains(&uid) {
                    studies.push(uid);
                }
            }
        } else if st == status::SUCCESS {
            break;
        } else {
            release(link);
            return Err(DimseError::Status {
                operation: "C-FIND",
                status: st,
            });
        }
    }
    release(link);
    info!(peer = %peer.describe(), studies = studies.len(), "C-FIND done");
    Ok(studies)
}

/// The end of a C-MOVE: final status and sub-operation counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveOutcome {
    /// Final status: 0000H, or B000H when some sub-operations failed.
    pub status: u16,
    /// Instances the peer sent to the destination.
    pub completed: u16,
    /// Instances it failed to send.
    pub failed: u16,
    /// Instances sent with a warning.
    pub warning: u16,
    /// Pending responses received (progress reports).
    pub pending: u32,
}

/// C-MOVE, Study Root, STUDY level: asks the peer to send one study to
/// `destination_ae` (Veil's own SCP, known to the peer by that AE title).
/// Failure statuses are errors; a partial move is `Ok` with `failed > 0`.
pub fn move_study(
    peer: &Peer,
    destination_ae: &str,
    study_instance_uid: &str,
) -> Result<MoveOutcome, DimseError> {
    let abs = uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_MOVE;
    let conn = connect(peer, &[(abs.to_string(), uncompressed())])?;
    on_link!(conn, link => move_on(peer, link, destination_ae, study_instance_uid))
}

fn move_on<S: Read + io::Write + CloseSocket>(
    peer: &Peer,
    mut link: ClientLink<S>,
    destination_ae: &str,
    study_instance_uid: &str,
) -> Result<MoveOutcome, DimseError> {
    let abs = uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_MOVE;
    let (pc, _, ident) = study_request(
        peer,
        &link,
        abs,
        "Study Root C-MOVE",
        [(
            tags::STUDY_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from(study_instance_uid),
        )],
    )?;
    let mut ids = MessageIds(0);
    let id = ids.next();
    let mut rq = CommandSet::request(CommandField::CMoveRq, id, true);
    rq.set_uid(tags::AFFECTED_SOP_CLASS_UID.element(), abs)
        .set_u16(tags::PRIORITY.element(), 0)
        .set_text(tags::MOVE_DESTINATION.element(), destination_ae);
    link.send_command(pc, &rq)?;
    link.send_data(pc, &mut io::Cursor::new(ident))?;
    let mut pending = 0u32;
    loop {
        let (rpc, rsp) = recv_response(&mut link, id)?;
        let st = rsp
            .status()
            .ok_or(DimseError::BadCommand("C-MOVE-RSP without status"))?;
        if rsp.has_data_set() {
            // failed SOP instance UID list: not needed, counts suffice
            link.recv_data_bytes(rpc, MAX_IDENTIFIER)?;
        }
        let count = |t: dicom_core::Tag| rsp.u16(t.element()).unwrap_or(0);
        if status::is_pending(st) {
            pending += 1;
            continue;
        }
        let outcome = MoveOutcome {
            status: st,
            completed: count(tags::NUMBER_OF_COMPLETED_SUBOPERATIONS),
            failed: count(tags::NUMBER_OF_FAILED_SUBOPERATIONS),
            warning: count(tags::NUMBER_OF_WARNING_SUBOPERATIONS),
            pending,
        };
        release(link);
        if st == status::SUCCESS || status::is_warning(st) {
            info!(peer = %peer.describe(), completed = outcome.completed, failed = outcome.failed, "C-MOVE done");
            return Ok(outcome);
        }
        return Err(DimseError::Status {
            operation: "C-MOVE",
            status: st,
        });
    }
}
