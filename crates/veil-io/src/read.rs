//! Streaming header parse. See the crate docs for why.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Cursor, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dicom_core::header::{DataElementHeader, SequenceItemHeader};
use dicom_core::{Length, VR};
use dicom_encoding::decode::explicit_le::ExplicitVRLittleEndianDecoder;
use dicom_encoding::decode::implicit_le::StandardImplicitVRLittleEndianDecoder as ImplicitVRLittleEndianDecoder;
use dicom_encoding::decode::DecodeFrom;
use dicom_encoding::transfer_syntax::{Codec, Endianness};
use dicom_encoding::TransferSyntaxIndex;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use veil_core::limits::{self, Limit, MAX_SEQUENCE_DEPTH};
use veil_core::{Echo, QuarantineReason, Tag};

use crate::dataset::{DataSet, Element, Value};

/// Values of binary VRs at least this long stay in the source.
const BULK_THRESHOLD: u64 = 16 * 1024;

/// Why a file could not be read. Carries offsets, tags and kinds only.
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct ReadError {
    /// The reason, ready for a quarantine list.
    pub reason: QuarantineReason,
}

impl From<QuarantineReason> for ReadError {
    fn from(reason: QuarantineReason) -> Self {
        ReadError { reason }
    }
}

fn io_err(e: &io::Error) -> ReadError {
    QuarantineReason::Io {
        detail: format!("{:?}", e.kind()),
    }
    .into()
}

/// What the transfer syntax means for parsing and writing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TsInfo {
    /// Transfer syntax UID.
    pub uid: String,
    /// Explicit VR Big Endian.
    pub big_endian: bool,
    /// Deflated data set.
    pub deflated: bool,
    /// Pixel data is encapsulated.
    pub encapsulated: bool,
}

impl TsInfo {
    /// Explicit VR Little Endian, the transfer syntax Veil uses for the
    /// files it creates itself (DICOMDIR, fixtures).
    pub fn explicit_le() -> TsInfo {
        TsInfo {
            uid: EXPLICIT_LE.into(),
            big_endian: false,
            deflated: false,
            encapsulated: false,
        }
    }
}

/// The parts of the File Meta that later stages need.
#[derive(Debug, Clone, Default)]
pub struct FileMeta {
    /// All meta elements as read.
    pub elements: DataSet,
    /// Byte offset in the file where the meta ends and the data set
    /// begins (the verifier tells meta bytes from data set bytes with it).
    pub end: u64,
}

/// Where bulk values live.
#[derive(Debug, Clone)]
pub enum Source {
    /// A file on disk; offsets are absolute.
    File(PathBuf),
    /// An in-memory data set stream (deflated input, tests).
    Memory(Arc<Vec<u8>>),
}

#[derive(Clone)]
struct MemBytes(Arc<Vec<u8>>);
impl AsRef<[u8]> for MemBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// A parsed file: meta, transfer syntax and the header tree.
#[derive(Debug, Clone)]
pub struct DicomFile {
    /// The File Meta as read, if the file had one.
    pub meta: Option<FileMeta>,
    /// The transfer syntax of the data set.
    pub ts: TsInfo,
    /// The data set, with bulk values left in `source`.
    pub dataset: DataSet,
    /// Where bulk values are.
    pub source: Source,
}

/// A `BufRead` that can skip forward cheaply.
trait Input: BufRead + Send {
    fn skip(&mut self, n: u64) -> io::Result<()>;
}
impl Input for BufReader<File> {
    fn skip(&mut self, n: u64) -> io::Result<()> {
        self.seek_relative(n as i64)
    }
}
impl Input for Cursor<MemBytes> {
    fn skip(&mut self, n: u64) -> io::Result<()> {
        self.set_position(self.position() + n);
        Ok(())
    }
}

/// Counts the bytes consumed so that bulk values can be located later.
struct Src {
    inner: Box<dyn Input>,
    pos: u64,
    len: u64,
}

impl Read for Src {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Src {
    fn remaining(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }
    fn skip(&mut self, n: u64) -> Result<(), ReadError> {
        if n > self.remaining() {
            return Err(QuarantineReason::truncated_at(self.len, None).into());
        }
        self.inner.skip(n).map_err(|e| io_err(&e))?;
        self.pos += n;
        Ok(())
    }
    fn peek_u16_le(&mut self) -> Option<u16> {
        let b = self.inner.fill_buf().ok()?;
        (b.len() >= 2).then(|| u16::from_le_bytes([b[0], b[1]]))
    }
    fn read_vec(&mut self, n: u64, tag: Tag) -> Result<Vec<u8>, ReadError> {
        if n > self.remaining() {
            return Err(QuarantineReason::truncated_at(self.pos, Some(tag)).into());
        }
        let mut v = vec![0u8; n as usize];
        self.read_exact(&mut v)
            .map_err(|_| QuarantineReason::truncated_at(self.pos, Some(tag)))?;
        Ok(v)
    }
}

/// Reads a DICOM file's header. Bulk values stay in the file.
pub fn read(path: &Path) -> Result<DicomFile, ReadError> {
    let file = File::open(path).map_err(|e| io_err(&e))?;
    let len = file.metadata().map_err(|e| io_err(&e))?.len();
    let input = BufReader::with_capacity(64 * 1024, file);
    read_input(Box::new(input), len, Source::File(path.to_path_buf()))
}

/// Reads a DICOM file held in memory.
pub fn read_bytes(bytes: Vec<u8>) -> Result<DicomFile, ReadError> {
    let len = bytes.len() as u64;
    let mem = MemBytes(Arc::new(bytes));
    read_input(
        Box::new(Cursor::new(mem.clone())),
        len,
        Source::Memory(mem.0),
    )
}

const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
const IMPLICIT_LE: &str = "1.2.840.10008.1.2";
const EXPLICIT_BE: &str = "1.2.840.10008.1.2.2";

fn read_input(input: Box<dyn Input>, len: u64, source: Source) -> Result<DicomFile, ReadError> {
    let mut src = Src {
        inner: input,
        pos: 0,
        len,
    };
    let head = src.inner.fill_buf().map_err(|e| io_err(&e))?.to_vec();
    let mut meta = None;
    if head.len() >= 132 && &head[128..132] == b"DICM" {
        src.skip(132)?;
        meta = Some(read_meta(&mut src)?);
    } else if head.len() >= 4 && &head[..4] == b"DICM" {
        src.skip(4)?;
        meta = Some(read_meta(&mut src)?);
    } else if head.len() >= 8 && head[0] == 0x02 && head[1] == 0x00 {
        // a File Meta without preamble
        meta = Some(read_meta(&mut src)?);
    }
    let declared = meta
        .as_ref()
        .and_then(|m| m.elements.ascii(Tag(0x0002, 0x0010)))
        .filter(|s| !s.is_empty());
    let ts_uid = match declared {
        Some(uid) => uid,
        None => {
            // No meta, or a meta without Transfer Syntax: look at the first
            // data element, as dcmtk and pydicom do.
            let b = src.inner.fill_buf().map_err(|e| io_err(&e))?;
            guess_ts(b).ok_or(QuarantineReason::NotDicom)?.to_string()
        }
    };
    let ts = TransferSyntaxRegistry.get(&ts_uid).ok_or_else(|| {
        QuarantineReason::UnsupportedTransferSyntax {
            uid: Echo::uid(&ts_uid),
        }
    })?;
    let info = TsInfo {
        uid: ts.uid().to_string(),
        big_endian: ts.endianness() == Endianness::Big,
        deflated: matches!(ts.codec(), Codec::Dataset(_)),
        encapsulated: ts.is_encapsulated_pixel_data(),
    };
    let (mut src, source) = if info.deflated {
        // Deflated data sets are small by nature (no encapsulated pixels),
        // so inflate them into memory and read from there, up to a bound:
        // a 1 MB deflate bomb would otherwise take gigabytes.
        let cap = limits::inflate_cap(src.remaining());
        let out = limits::read_capped(flate2::read::DeflateDecoder::new(&mut src), cap)
            .map_err(|_| QuarantineReason::Malformed {
                offset: 0,
                detail: "deflated data set does not inflate".into(),
            })?
            .ok_or(QuarantineReason::limit(Limit::InflatedSize, cap, None))?;
        let len = out.len() as u64;
        let mem = MemBytes(Arc::new(out));
        (
            Src {
                inner: Box::new(Cursor::new(mem.clone())),
                pos: 0,
                len,
            },
            Source::Memory(mem.0),
        )
    } else {
        (src, source)
    };
    let decoder =
        ts.decoder_for::<Src>()
            .ok_or_else(|| QuarantineReason::UnsupportedTransferSyntax {
                uid: Echo::uid(&ts_uid),
            })?;
    let mut p = Parser {
        dec: decoder,
        implicit: ImplicitVRLittleEndianDecoder::default(),
        big_endian: info.big_endian,
        explicit: info.uid != IMPLICIT_LE,
        in_memory: false,
        depth: 0,
    };
    let dataset = p.dataset(&mut src, End::Eof, false)?;
    Ok(DicomFile {
        meta,
        ts: info,
        dataset,
        source,
    })
}

/// Guesses the transfer syntax of a data set that has no declared one.
fn guess_ts(b: &[u8]) -> Option<&'static str> {
    if b.len() < 8 {
        return None;
    }
    let le = u16::from_le_bytes([b[0], b[1]]);
    let be = u16::from_be_bytes([b[0], b[1]]);
    let vr_like = VR::from_binary([b[4], b[5]]).is_some();
    if le != 0 && le <= 0x0010 && le % 2 == 0 {
        Some(if vr_like { EXPLICIT_LE } else { IMPLICIT_LE })
    } else if be != 0 && be <= 0x0010 && be % 2 == 0 && vr_like {
        Some(EXPLICIT_BE)
    } else {
        None
    }
}

fn read_meta(src: &mut Src) -> Result<FileMeta, ReadError> {
    let dec = ExplicitVRLittleEndianDecoder::default();
    let mut ds = DataSet::default();
    while src.peek_u16_le() == Some(0x0002) {
        let (h, _) = DecodeFrom::<Src>::decode_header(&dec, src).map_err(|_| {
            QuarantineReason::BadFileMeta {
                detail: "unreadable element header".into(),
            }
        })?;
        let len = h.len.get().ok_or_else(|| QuarantineReason::BadFileMeta {
            detail: "undefined length in File Meta".into(),
        })?;
        let tag = Tag(h.tag.0, h.tag.1);
        let v = src.read_vec(len as u64, tag)?;
        ds.put(Element::bytes(tag, h.vr, v));
    }
    if ds.elements.is_empty() {
        return Err(QuarantineReason::BadFileMeta {
            detail: "empty File Meta".into(),
        }
        .into());
    }
    Ok(FileMeta {
        elements: ds,
        end: src.pos,
    })
}

enum End {
    Eof,
    At(u64),
    ItemDelimiter,
}

struct Parser {
    dec: Box<dyn DecodeFrom<Src>>,
    implicit: ImplicitVRLittleEndianDecoder,
    big_endian: bool,
    explicit: bool,
    /// Parsing bytes already in memory (a retyped UN): nothing may become
    /// `Bulk`, whose offsets would point into the wrong stream.
    in_memory: bool,
    /// Sequences open around the element being read. Why counted: the
    /// parser recurses once per level, and a few megabytes of nested
    /// undefined-length sequences overflowed the stack and aborted a
    /// whole batch; past [`MAX_SEQUENCE_DEPTH`] the file is refused.
    depth: u64,
}

fn malformed(offset: u64, detail: &str) -> ReadError {
    QuarantineReason::Malformed {
        offset,
        detail: detail.to_string(),
    }
    .into()
}

/// VRs whose values are text and therefore read into memory whatever their
/// length.
pub(crate) fn is_text_vr(vr: VR) -> bool {
    use VR::*;
    matches!(
        vr,
        AE | AS | CS | DA | DS | DT | IS | LO | LT | PN | SH | ST | TM | UC | UI | UR | UT
    )
}

impl Parser {
    fn header(&self, src: &mut Src, cp246: bool) -> Result<DataElementHeader, ReadError> {
        let at = src.pos;
        let r = if cp246 {
            DecodeFrom::<Src>::decode_header(&self.implicit, src)
        } else {
            self.dec.decode_header(src)
        };
        r.map(|(h, _)| h).map_err(|_| {
            if src.pos >= src.len {
                QuarantineReason::truncated_at(at, None).into()
            } else {
                malformed(at, "unreadable element header")
            }
        })
    }

    fn item_header(&self, src: &mut Src, cp246: bool) -> Result<SequenceItemHeader, ReadError> {
        let at = src.pos;
        let r = if cp246 {
            DecodeFrom::<Src>::decode_item_header(&self.implicit, src)
        } else {
            self.dec.decode_item_header(src)
        };
        r.map_err(|_| {
            if src.pos >= src.len {
                QuarantineReason::truncated_at(at, None).into()
            } else {
                malformed(at, "unreadable item header")
            }
        })
    }

    /// Reads elements until `end`. `cp246` means the bytes are implicit VR
    /// little endian inside a UN element of undefined length.
    fn dataset(&mut self, src: &mut Src, end: End, cp246: bool) -> Result<DataSet, ReadError> {
        let mut ds = DataSet::default();
        let mut sorted = true;
        loop {
            match end {
                End::Eof if src.remaining() == 0 => break,
                End::Eof if src.remaining() < 8 => {
                    // A few bytes after the last element: zero padding some
                    // writers leave, or an element header cut short.
                    let mut rest = Vec::new();
                    src.read_to_end(&mut rest).map_err(|e| io_err(&e))?;
                    if rest.iter().all(|b| *b == 0) {
                        break;
                    }
                    return Err(QuarantineReason::truncated_at(src.pos, None).into());
                }
                End::At(e) if src.pos >= e => break,
                _ => {}
            }
            let at = src.pos;
            let h = self.header(src, cp246)?;
            let tag = Tag(h.tag.0, h.tag.1);
            if tag == Tag(0xFFFE, 0xE00D) {
                if matches!(end, End::ItemDelimiter) {
                    break;
                }
                // a stray item delimiter outside an undefined-length item
                continue;
            }
            if tag.0 == 0xFFFE {
                return Err(malformed(at, "sequence delimiter outside a sequence"));
            }
            if ds.elements.last().is_some_and(|l| l.tag >= tag) {
                sorted = false;
            }
            let mut vr = h.vr;
            if (!self.explicit || cp246) && vr == VR::UN {
                if tag.is_private_creator() {
                    vr = VR::LO;
                } else if tag.is_group_length() {
                    vr = VR::UL;
                }
            }
            let value = if tag == Tag(0x7FE0, 0x0010) && h.len.is_undefined() {
                self.encapsulated(src)?
            } else if vr == VR::SQ || h.len.is_undefined() {
                // CP-246: a UN of undefined length holds implicit VR LE items
                let inner = cp246 || (vr == VR::UN && self.explicit);
                vr = VR::SQ;
                Value::Sequence(self.items(src, h.len, inner)?)
            } else {
                let len = h.len.0 as u64;
                if len > src.remaining() {
                    return Err(QuarantineReason::truncated_at(at, Some(tag)).into());
                }
                if len >= BULK_THRESHOLD && !is_text_vr(vr) && !self.in_memory {
                    let offset = src.pos;
                    src.skip(len)?;
                    Value::Bulk { offset, len }
                } else {
                    let mut v = src.read_vec(len, tag)?;
                    if cp246 && self.big_endian {
                        swap_to_be(vr, &mut v);
                    }
                    if vr == VR::UN && !tag.is_private() && !self.big_endian {
                        // A standard attribute stored as UN (an implicit VR
                        // object relayed as explicit): restore its VR, so
                        // that the rules see a UID as a UID and a sequence's
                        // items are processed, not copied blindly.
                        match retype_un(&mut v, tag, self.depth)? {
                            Some(Retyped::Vr(known)) => vr = known,
                            Some(Retyped::Items(items)) => {
                                vr = VR::SQ;
                                ds.elements.push(Element {
                                    tag,
                                    vr,
                                    value: Value::Sequence(items),
                                });
                                continue;
                            }
                            None => {}
                        }
                    }
                    Value::Bytes(v)
                }
            };
            ds.elements.push(Element { tag, vr, value });
        }
        if !sorted {
            // Some writers emit elements out of order; dcmtk and pydicom
            // accept that, and writing them sorted repairs it. A repeated
            // tag is ambiguous, so it is refused.
            ds.elements.sort_by_key(|e| e.tag);
            if ds.elements.windows(2).any(|w| w[0].tag == w[1].tag) {
                return Err(malformed(src.pos, "repeated element"));
            }
        }
        Ok(ds)
    }

    fn items(
        &mut self,
        src: &mut Src,
        len: Length,
        cp246: bool,
    ) -> Result<Vec<DataSet>, ReadError> {
        self.depth += 1;
        if self.depth > MAX_SEQUENCE_DEPTH {
            let reason =
                QuarantineReason::limit(Limit::SequenceDepth, MAX_SEQUENCE_DEPTH, Some(src.pos));
            return Err(reason.into());
        }
        let mut items = Vec::new();
        let end = len.get().map(|l| src.pos + l as u64);
        loop {
            if let Some(e) = end {
                if src.pos >= e {
                    break;
                }
            }
            match self.item_header(src, cp246)? {
                SequenceItemHeader::Item { len } => {
                    let item_end = match len.get() {
                        Some(l) => End::At(src.pos + l as u64),
                        None => End::ItemDelimiter,
                    };
                    items.push(self.dataset(src, item_end, cp246)?);
                }
                SequenceItemHeader::SequenceDelimiter => {
                    if end.is_none() {
                        break;
                    }
                    return Err(malformed(
                        src.pos,
                        "sequence delimiter in a defined-length sequence",
                    ));
                }
                SequenceItemHeader::ItemDelimiter => {
                    return Err(malformed(src.pos, "item delimiter outside an item"));
                }
            }
        }
        self.depth -= 1;
        Ok(items)
    }

    /// Skips over the fragments of encapsulated pixel data, recording where
    /// they are. Item headers there are always little endian.
    fn encapsulated(&mut self, src: &mut Src) -> Result<Value, ReadError> {
        let offset = src.pos;
        loop {
            let mut h = [0u8; 8];
            src.read_exact(&mut h)
                .map_err(|_| QuarantineReason::truncated_at(src.pos, Some(Tag(0x7FE0, 0x0010))))?;
            let g = u16::from_le_bytes([h[0], h[1]]);
            let e = u16::from_le_bytes([h[2], h[3]]);
            let l = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as u64;
            match (g, e) {
                (0xFFFE, 0xE000) if l != 0xFFFF_FFFF => src.skip(l)?,
                (0xFFFE, 0xE0DD) => break,
                _ => {
                    return Err(malformed(
                        src.pos - 8,
                        "bad item in encapsulated pixel data",
                    ))
                }
            }
        }
        Ok(Value::Encapsulated {
            offset,
            len: src.pos - offset,
        })
    }
}

enum Retyped {
    Vr(VR),
    Items(Vec<DataSet>),
}

/// The dictionary VR of a standard attribute found as UN; for a sequence,
/// its items parsed as implicit VR little endian (PS3.5 6.2.2: UN values
/// are the implicit VR LE encoding). `None` when unknown or unparsable
/// (the value then stays UN, and the rules treat it by tag). `depth` is
/// the sequences already open around the value: nesting inside a UN counts
/// toward the limit, and going past it is an error, not a UN kept as is.
fn retype_un(v: &mut [u8], tag: Tag, depth: u64) -> Result<Option<Retyped>, ReadError> {
    use dicom_core::dictionary::{DataDictionary, VirtualVr};
    let Some(entry) =
        dicom_dictionary_std::StandardDataDictionary.by_tag(dicom_core::Tag(tag.0, tag.1))
    else {
        return Ok(None);
    };
    Ok(match entry.vr {
        VirtualVr::Exact(VR::SQ) => {
            let len = v.len() as u64;
            let mem = MemBytes(Arc::new(v.to_vec()));
            let mut src = Src {
                inner: Box::new(Cursor::new(mem)),
                pos: 0,
                len,
            };
            let mut p = Parser {
                dec: Box::new(ImplicitVRLittleEndianDecoder::default()),
                implicit: ImplicitVRLittleEndianDecoder::default(),
                big_endian: false,
                explicit: false,
                in_memory: true,
                depth,
            };
            match p.items(&mut src, Length(len as u32), true) {
                Ok(items) => Some(Retyped::Items(items)),
                Err(e) if matches!(e.reason, QuarantineReason::LimitExceeded { .. }) => {
                    return Err(e)
                }
                Err(_) => None,
            }
        }
        VirtualVr::Exact(VR::UN) => None,
        VirtualVr::Exact(vr) => Some(Retyped::Vr(vr)),
        _ => None,
    })
}

/// Converts little-endian binary values (read inside a CP-246 sequence) to
/// the big-endian order of the rest of the file.
fn swap_to_be(vr: VR, v: &mut [u8]) {
    let width = match vr {
        VR::US | VR::SS | VR::OW | VR::AT => 2,
        VR::UL | VR::SL | VR::FL | VR::OF | VR::OL => 4,
        VR::FD | VR::OD | VR::SV | VR::UV | VR::OV => 8,
        _ => return,
    };
    for c in v.chunks_exact_mut(width) {
        c.reverse();
    }
}

impl DicomFile {
    /// The SOP Class UID (from the data set, else the meta).
    pub fn sop_class(&self) -> Option<String> {
        self.dataset
            .ascii(Tag(0x0008, 0x0016))
            .or_else(|| self.meta.as_ref()?.elements.ascii(Tag(0x0002, 0x0002)))
            .filter(|s| !s.is_empty())
    }

    /// Does this look like a DICOMDIR?
    pub fn is_dicomdir(&self) -> bool {
        self.sop_class().as_deref() == Some("1.2.840.10008.1.3.10")
            || self.dataset.get(Tag(0x0004, 0x1220)).is_some()
    }

    /// An in-memory object in Explicit VR Little Endian with no File Meta
    /// and no bulk source (objects built by tests and fixtures).
    pub fn in_memory(dataset: DataSet) -> DicomFile {
        DicomFile {
            meta: None,
            ts: TsInfo::explicit_le(),
            dataset,
            source: Source::Memory(Default::default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guesses_transfer_syntax_from_the_first_element() {
        // (0008,0005) CS explicit LE
        let e = [0x08, 0x00, 0x05, 0x00, b'C', b'S', 0x0A, 0x00];
        assert_eq!(guess_ts(&e), Some(EXPLICIT_LE));
        let i = [0x08, 0x00, 0x05, 0x00, 0x0A, 0x00, 0x00, 0x00];
        assert_eq!(guess_ts(&i), Some(IMPLICIT_LE));
        let b = [0x00, 0x08, 0x00, 0x05, b'C', b'S', 0x00, 0x0A];
        assert_eq!(guess_ts(&b), Some(EXPLICIT_BE));
        assert_eq!(guess_ts(b"%PDF-1.4\n"), None);
    }
}
