//! Writing a (de-identified) header tree back out, copying bulk values from
//! the source without decoding them.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use dicom_core::header::DataElementHeader;
use dicom_core::{Length, VR};
use dicom_encoding::encode::EncodeTo;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::meta::FileMetaTableBuilder;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use crate::atomic::AtomicFile;
use crate::dataset::{DataSet, Value};
use crate::read::{is_text_vr, Source, TsInfo};

/// Why an output could not be written. No values, no paths.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// I/O failure (kind only).
    #[error("I/O error while writing: {0:?}")]
    Io(io::ErrorKind),
    /// The data could not be encoded.
    #[error("cannot encode: {0}")]
    Encode(String),
}

impl From<io::Error> for WriteError {
    fn from(e: io::Error) -> Self {
        WriteError::Io(e.kind())
    }
}

/// What the rebuilt File Meta says.
#[derive(Debug, Clone)]
pub struct WriteMeta {
    /// Media Storage SOP Class UID.
    pub sop_class: String,
    /// Media Storage SOP Instance UID (must equal the data set's SOP
    /// Instance UID).
    pub sop_instance: String,
}

/// Writes a complete file atomically: temporary file, fsync, rename, fsync
/// of the folder.
pub fn write_file(
    path: &Path,
    meta: &WriteMeta,
    ts: &TsInfo,
    dataset: &DataSet,
    source: &Source,
) -> Result<(), WriteError> {
    write_pending(path, meta, ts, dataset, source)?
        .sync()?
        .persist()?;
    Ok(())
}

/// Writes an in-memory data set as an Explicit VR Little Endian file, with
/// the File Meta taken from its SOP Class and Instance UIDs (for building
/// test objects and fixtures).
pub fn write_explicit_le(path: &Path, dataset: &DataSet) -> Result<(), WriteError> {
    let uid = |t| dataset.ascii(veil_core::Tag(0x0008, t)).unwrap_or_default();
    let meta = WriteMeta {
        sop_class: uid(0x0016),
        sop_instance: uid(0x0018),
    };
    let ts = TsInfo::explicit_le();
    write_file(
        path,
        &meta,
        &ts,
        dataset,
        &Source::Memory(Default::default()),
    )
}

/// Writes a complete temporary file for `path` (not yet fsynced): zeroed preamble, a File Meta built
/// from scratch (Veil's implementation UID and version, no AE titles), and
/// the data set in the transfer syntax `ts`, copying bulk values from
/// `source`. The caller makes it durable ([`AtomicFile::sync`], or
/// [`crate::atomic::sync_filesystem`] for a batch) and then visible
/// ([`crate::atomic::Pending::persist`]).
pub fn write_pending(
    path: &Path,
    meta: &WriteMeta,
    ts: &TsInfo,
    dataset: &DataSet,
    source: &Source,
) -> Result<AtomicFile, WriteError> {
    write_pending_with_header(path, &file_header(meta, ts)?, ts, dataset, source)
}

/// Writes a complete file atomically with the File Meta given element by
/// element (`meta`: group 0002, encoded as it is, with its group length
/// computed) instead of one built from scratch. For test sets only: the
/// planter puts values into File Meta elements (AE titles, implementation
/// name) to check that nothing downstream keeps them; Veil's own outputs
/// always get [`file_header`].
pub fn write_file_with_meta(
    path: &Path,
    meta: &DataSet,
    ts: &TsInfo,
    dataset: &DataSet,
    source: &Source,
) -> Result<(), WriteError> {
    write_pending_with_header(path, &file_header_of(meta)?, ts, dataset, source)?
        .sync()?
        .persist()?;
    Ok(())
}

fn write_pending_with_header(
    path: &Path,
    header: &[u8],
    ts: &TsInfo,
    dataset: &DataSet,
    source: &Source,
) -> Result<AtomicFile, WriteError> {
    let mut out = AtomicFile::create(path)?;
    write_object(out.writer(), header, ts, dataset, source)?;
    out.writer().flush()?;
    Ok(out)
}

/// The bytes of the complete file that [`write_pending`] writes (zeroed
/// preamble, File Meta built from scratch, the data set in `ts`, bulk
/// values copied from `source`), in memory. Both go through the same
/// encoder, so the bytes are the same.
pub fn encode_file(
    meta: &WriteMeta,
    ts: &TsInfo,
    dataset: &DataSet,
    source: &Source,
) -> Result<Vec<u8>, WriteError> {
    let mut out = Vec::new();
    write_object(&mut out, &file_header(meta, ts)?, ts, dataset, source)?;
    Ok(out)
}

/// Writes header, then the data set (deflated when `ts` says so): the one
/// encoding path of files and in-memory outputs.
fn write_object<W: Write>(
    w: &mut W,
    header: &[u8],
    ts: &TsInfo,
    dataset: &DataSet,
    source: &Source,
) -> Result<(), WriteError> {
    w.write_all(header)?;
    let mut bulk = BulkSource::open(source)?;
    if ts.deflated {
        let mut buf = Vec::new();
        encode_dataset(&mut buf, ts, dataset, &mut bulk)?;
        let mut z = flate2::write::DeflateEncoder::new(&mut *w, flate2::Compression::default());
        z.write_all(&buf)?;
        z.finish()?;
    } else {
        encode_dataset(w, ts, dataset, &mut bulk)?;
    }
    Ok(())
}

/// The zeroed preamble, `DICM` and a File Meta built from scratch.
pub fn file_header(meta: &WriteMeta, ts: &TsInfo) -> Result<Vec<u8>, WriteError> {
    let mut w = vec![0u8; 128];
    w.extend_from_slice(b"DICM");
    let table = FileMetaTableBuilder::new()
        .media_storage_sop_class_uid(meta.sop_class.as_str())
        .media_storage_sop_instance_uid(meta.sop_instance.as_str())
        .transfer_syntax(ts.uid.as_str())
        .implementation_class_uid(crate::IMPLEMENTATION_CLASS_UID)
        .implementation_version_name(crate::IMPLEMENTATION_VERSION_NAME)
        .build()
        .map_err(|e| WriteError::Encode(format!("File Meta: {e}")))?;
    table
        .write(&mut w)
        .map_err(|e| WriteError::Encode(format!("File Meta: {e}")))?;
    Ok(w)
}

/// The zeroed preamble, `DICM` and a File Meta of exactly these group 0002
/// elements in explicit VR little endian, led by their group length.
fn file_header_of(meta: &DataSet) -> Result<Vec<u8>, WriteError> {
    let ts = TsInfo::explicit_le();
    let tsd = TransferSyntaxRegistry
        .get(&ts.uid)
        .ok_or_else(|| WriteError::Encode("unknown transfer syntax".into()))?;
    let enc = tsd
        .encoder_for::<Vec<u8>>()
        .ok_or_else(|| WriteError::Encode("no encoder for transfer syntax".into()))?;
    let mut body = Vec::new();
    let group: DataSet = DataSet {
        elements: meta
            .elements
            .iter()
            .filter(|e| e.tag.0 == 0x0002 && !e.tag.is_group_length())
            .cloned()
            .collect(),
    };
    let mut none = BulkSource::open(&Source::Memory(Default::default()))?;
    Encoder {
        enc: &*enc,
        meta: true,
    }
    .dataset(&mut body, &group, &mut none)?;
    let mut w = vec![0u8; 128];
    w.extend_from_slice(b"DICM");
    w.extend_from_slice(&[0x02, 0x00, 0x00, 0x00, b'U', b'L', 4, 0]);
    w.extend_from_slice(&(body.len() as u32).to_le_bytes());
    w.extend_from_slice(&body);
    Ok(w)
}

/// Encodes a data set in a transfer syntax into any writer.
pub fn encode_dataset<W: Write>(
    w: &mut W,
    ts: &TsInfo,
    dataset: &DataSet,
    source: &mut BulkSource,
) -> Result<(), WriteError> {
    let tsd = TransferSyntaxRegistry
        .get(&ts.uid)
        .ok_or_else(|| WriteError::Encode("unknown transfer syntax".into()))?;
    let enc = tsd
        .encoder_for::<W>()
        .ok_or_else(|| WriteError::Encode("no encoder for transfer syntax".into()))?;
    Encoder {
        enc: &*enc,
        meta: false,
    }
    .dataset(w, dataset, source)
}

struct Encoder<'a, W: Write> {
    enc: &'a dyn EncodeTo<W>,
    /// Encoding the File Meta group itself (else group 0002 is skipped).
    meta: bool,
}

fn enc_err(e: impl std::fmt::Display) -> WriteError {
    WriteError::Encode(e.to_string())
}

/// Value length fields of these VRs are 16 bits in explicit VR.
fn short_length_vr(vr: VR) -> bool {
    use VR::*;
    matches!(
        vr,
        AE | AS
            | AT
            | CS
            | DA
            | DS
            | DT
            | FL
            | FD
            | IS
            | LO
            | LT
            | PN
            | SH
            | SL
            | SS
            | ST
            | TM
            | UI
            | UL
            | US
    )
}

impl<W: Write> Encoder<'_, W> {
    fn header(
        &self,
        w: &mut W,
        tag: veil_core::Tag,
        vr: VR,
        len: Length,
    ) -> Result<(), WriteError> {
        self.enc
            .encode_element_header(w, DataElementHeader::new((tag.0, tag.1), vr, len))
            .map_err(enc_err)?;
        Ok(())
    }

    fn dataset(&self, w: &mut W, ds: &DataSet, src: &mut BulkSource) -> Result<(), WriteError> {
        for e in &ds.elements {
            // Group lengths are dropped: they would be wrong after editing,
            // and they are retired outside the File Meta.
            if e.tag.is_group_length() || (e.tag.0 == 0x0002) != self.meta {
                continue;
            }
            match &e.value {
                Value::Bytes(b) => {
                    let pad = b.len() % 2 == 1;
                    let len = b.len() + pad as usize;
                    if short_length_vr(e.vr) && len > 0xFFFF {
                        return Err(WriteError::Encode(format!(
                            "value of {} too long for VR {}",
                            e.tag,
                            e.vr.to_string()
                        )));
                    }
                    self.header(w, e.tag, e.vr, Length(len as u32))?;
                    w.write_all(b)?;
                    if pad {
                        let byte = if is_text_vr(e.vr) && e.vr != VR::UI {
                            b' '
                        } else {
                            0
                        };
                        w.write_all(&[byte])?;
                    }
                }
                Value::Sequence(items) => {
                    self.header(w, e.tag, VR::SQ, Length::UNDEFINED)?;
                    for item in items {
                        self.enc
                            .encode_item_header(w, Length::UNDEFINED.0)
                            .map_err(enc_err)?;
                        self.dataset(w, item, src)?;
                        self.enc.encode_item_delimiter(w).map_err(enc_err)?;
                    }
                    self.enc.encode_sequence_delimiter(w).map_err(enc_err)?;
                }
                Value::Bulk { offset, len } => {
                    let pad = len % 2 == 1;
                    self.header(w, e.tag, e.vr, Length((len + pad as u64) as u32))?;
                    src.copy(*offset, *len, w)?;
                    if pad {
                        w.write_all(&[0])?;
                    }
                }
                Value::Encapsulated { offset, len } => {
                    self.header(w, e.tag, VR::OB, Length::UNDEFINED)?;
                    src.copy(*offset, *len, w)?;
                }
                Value::EncapsulatedBytes(items) => {
                    self.header(w, e.tag, VR::OB, Length::UNDEFINED)?;
                    w.write_all(items)?;
                }
            }
        }
        Ok(())
    }
}

/// Reads bulk values back from where the parser left them.
pub enum BulkSource {
    /// A file: copies use `io::copy`, which the kernel can do without
    /// passing the bytes through user space.
    File(File),
    /// In memory.
    Memory(std::sync::Arc<Vec<u8>>),
}

impl BulkSource {
    /// Opens the source of a parsed file.
    pub fn open(source: &Source) -> io::Result<BulkSource> {
        Ok(match source {
            Source::File(p) => BulkSource::File(File::open(p)?),
            Source::Memory(b) => BulkSource::Memory(b.clone()),
        })
    }

    /// Reads `len` bytes at `offset` (a bulk value, or part of one) into
    /// memory, for the stages that must look inside: verification, pixels.
    pub fn read_range(&mut self, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        let mut v = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        self.copy(offset, len, &mut v).map_err(|e| match e {
            WriteError::Io(kind) => io::Error::from(kind),
            _ => io::Error::from(io::ErrorKind::InvalidData),
        })?;
        Ok(v)
    }

    fn copy<W: Write>(&mut self, offset: u64, len: u64, w: &mut W) -> Result<(), WriteError> {
        match self {
            BulkSource::File(f) => {
                f.seek(SeekFrom::Start(offset))?;
                let n = io::copy(&mut Read::by_ref(f).take(len), w)?;
                if n != len {
                    return Err(WriteError::Io(io::ErrorKind::UnexpectedEof));
                }
            }
            BulkSource::Memory(b) => {
                let s = usize::try_from(offset).ok();
                let e = usize::try_from(offset + len).ok();
                match (s, e) {
                    (Some(s), Some(e)) if e <= b.len() => w.write_all(&b[s..e])?,
                    _ => return Err(WriteError::Io(io::ErrorKind::UnexpectedEof)),
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::Element;
    use veil_core::Tag;

    /// An in-memory item stream is written after an undefined-length OB
    /// header and reads back as the same encapsulated value, byte for byte.
    #[test]
    fn encapsulated_bytes_round_trip() {
        let item = |tag: u16, body: &[u8]| {
            let mut v = vec![0xFE, 0xFF];
            v.extend(tag.to_le_bytes());
            v.extend((body.len() as u32).to_le_bytes());
            v.extend(body);
            v
        };
        let mut items = item(0xE000, &0u32.to_le_bytes());
        items.extend(item(0xE000, &[0xFF, 0xD8, 1, 2, 0xFF, 0xD9]));
        items.extend(item(0xE0DD, &[]));
        let ts = TsInfo {
            uid: "1.2.840.10008.1.2.4.80".into(),
            big_endian: false,
            deflated: false,
            encapsulated: true,
        };
        let ui = |t: u16, v: &str| Element {
            tag: Tag(0x0008, t),
            vr: VR::UI,
            value: Value::Bytes(v.as_bytes().to_vec()),
        };
        let ds = DataSet::of([
            ui(0x0016, "1.2.840.10008.5.1.4.1.1.7"),
            ui(0x0018, "2.25.7"),
            Element {
                tag: Tag(0x7FE0, 0x0010),
                vr: VR::OB,
                value: Value::EncapsulatedBytes(items.clone()),
            },
        ]);
        let meta = WriteMeta {
            sop_class: "1.2.840.10008.5.1.4.1.1.7".into(),
            sop_instance: "2.25.7".into(),
        };
        let mut out = file_header(&meta, &ts).unwrap();
        let mut src = BulkSource::Memory(Default::default());
        encode_dataset(&mut out, &ts, &ds, &mut src).unwrap();
        let back = crate::read_bytes(out).unwrap();
        let Value::Encapsulated { offset, len } =
            back.dataset.get(Tag(0x7FE0, 0x0010)).unwrap().value
        else {
            panic!("pixel data not read as encapsulated");
        };
        let mut src = BulkSource::open(&back.source).unwrap();
        assert_eq!(src.read_range(offset, len).unwrap(), items);
    }

    /// A File Meta given element by element is written as given (an AE
    /// title included), with a group length that readers accept.
    #[test]
    fn meta_as_given_round_trips() {
        let t = |g: u16, e: u16, vr: VR, v: &str| Element::text(Tag(g, e), vr, v);
        let meta = DataSet::of([
            Element::bytes(Tag(0x0002, 0x0001), VR::OB, vec![0, 1]),
            t(0x0002, 0x0002, VR::UI, "1.2.840.10008.5.1.4.1.1.7\0"),
            t(0x0002, 0x0003, VR::UI, "2.25.7"),
            t(0x0002, 0x0010, VR::UI, "1.2.840.10008.1.2.1\0"),
            t(0x0002, 0x0016, VR::AE, "PLANTEDAE"),
        ]);
        let ds = DataSet::of([
            t(0x0008, 0x0016, VR::UI, "1.2.840.10008.5.1.4.1.1.7"),
            t(0x0008, 0x0018, VR::UI, "2.25.7"),
        ]);
        let dir = std::env::temp_dir().join(format!("veil-io-meta-{}", std::process::id()));
        let path = dir.join("m.dcm");
        write_file_with_meta(
            &path,
            &meta,
            &TsInfo::explicit_le(),
            &ds,
            &Source::Memory(Default::default()),
        )
        .unwrap();
        let back = crate::read(&path).unwrap();
        let m = back.meta.expect("meta read");
        assert_eq!(
            m.elements.ascii(Tag(0x0002, 0x0016)).as_deref(),
            Some("PLANTEDAE")
        );
        assert_eq!(
            back.dataset.ascii(Tag(0x0008, 0x0018)).as_deref(),
            Some("2.25.7")
        );
        let obj = dicom_object::open_file(&path).expect("dicom-rs reads it");
        assert_eq!(obj.meta().media_storage_sop_instance_uid(), "2.25.7");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
