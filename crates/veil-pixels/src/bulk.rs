//! Reading values back from a parsed file: small ones are in the header
//! tree, large ones (`Value::Bulk`) are read from the source on demand.

use std::io::{Read, Seek, SeekFrom};

use veil_core::Tag;
use veil_io::{BulkSource, DataSet, DicomFile, Element, Value};

use crate::PixelError;

/// An open source of bulk values.
pub(crate) struct Bulk(BulkSource);

impl Bulk {
    pub(crate) fn open(file: &DicomFile) -> Result<Bulk, PixelError> {
        Ok(Bulk(BulkSource::open(&file.source)?))
    }

    /// `len` bytes at `offset` of the data set stream.
    pub(crate) fn read(&mut self, offset: u64, len: u64) -> Result<Vec<u8>, PixelError> {
        let n = usize::try_from(len)
            .map_err(|_| PixelError::Unsupported("value larger than memory".into()))?;
        match &mut self.0 {
            BulkSource::File(f) => {
                f.seek(SeekFrom::Start(offset))?;
                let mut v = Vec::new();
                v.try_reserve_exact(n)
                    .map_err(|_| PixelError::Unsupported("value larger than memory".into()))?;
                Read::by_ref(f).take(len).read_to_end(&mut v)?;
                if v.len() != n {
                    return Err(PixelError::Malformed(
                        "value extends past the end of the file".into(),
                    ));
                }
                Ok(v)
            }
            BulkSource::Memory(b) => {
                let s = usize::try_from(offset).ok();
                match s.and_then(|s| Some((s, s.checked_add(n)?))) {
                    Some((s, e)) if e <= b.len() => Ok(b[s..e].to_vec()),
                    _ => Err(PixelError::Malformed(
                        "value extends past the end of the data".into(),
                    )),
                }
            }
        }
    }

    /// The bytes of a non-sequence value, wherever they are.
    pub(crate) fn value(&mut self, e: &Element) -> Result<Vec<u8>, PixelError> {
        match &e.value {
            Value::Bytes(b) => Ok(b.clone()),
            Value::Bulk { offset, len } => self.read(*offset, *len),
            Value::Sequence(_) | Value::Encapsulated { .. } | Value::EncapsulatedBytes(_) => Err(
                PixelError::Malformed(format!("{} is not a plain binary value", e.tag)),
            ),
        }
    }
}

/// Reads numbers and strings from a header tree in the file's byte order.
#[derive(Clone, Copy)]
pub(crate) struct Attrs<'a> {
    pub(crate) ds: &'a DataSet,
    pub(crate) big_endian: bool,
}

impl<'a> Attrs<'a> {
    pub(crate) fn with(self, ds: &'a DataSet) -> Attrs<'a> {
        Attrs {
            ds,
            big_endian: self.big_endian,
        }
    }

    /// First value of a US/SS element.
    pub(crate) fn u16(&self, tag: Tag) -> Option<u16> {
        let b = self.ds.bytes(tag)?;
        let b: [u8; 2] = b.get(..2)?.try_into().ok()?;
        Some(if self.big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    }

    /// All values of a US/SS element, as u16 words.
    pub(crate) fn u16s(&self, tag: Tag) -> Vec<u16> {
        let Some(b) = self.ds.bytes(tag) else {
            return Vec::new();
        };
        b.chunks_exact(2)
            .map(|c| {
                if self.big_endian {
                    u16::from_be_bytes([c[0], c[1]])
                } else {
                    u16::from_le_bytes([c[0], c[1]])
                }
            })
            .collect()
    }

    /// Values of an IS/DS element (backslash-separated decimal strings).
    pub(crate) fn decimals(&self, tag: Tag) -> Vec<f64> {
        let Some(s) = self.ds.ascii(tag) else {
            return Vec::new();
        };
        s.split('\\')
            .filter_map(|v| v.trim_matches(|c: char| c == ' ' || c == '\0').parse().ok())
            .collect()
    }

    /// The first value of an IS/DS element.
    pub(crate) fn decimal(&self, tag: Tag) -> Option<f64> {
        self.decimals(tag).first().copied()
    }

    /// A code string, upper case, padding removed.
    pub(crate) fn code(&self, tag: Tag) -> Option<String> {
        self.ds.ascii(tag).map(|s| s.to_ascii_uppercase())
    }

    /// The items of a sequence.
    pub(crate) fn items(&self, tag: Tag) -> &'a [DataSet] {
        match self.ds.get(tag).map(|e| &e.value) {
            Some(Value::Sequence(items)) => items,
            _ => &[],
        }
    }
}
