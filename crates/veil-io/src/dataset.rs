//! The in-memory header tree. Values are raw bytes in the file's byte order;
//! bulk values stay in the source.

use dicom_core::VR;
use veil_core::Tag;

/// A data set: elements in ascending tag order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DataSet {
    /// Elements, sorted by tag.
    pub elements: Vec<Element>,
}

/// One data element.
#[derive(Debug, Clone, PartialEq)]
pub struct Element {
    /// Tag.
    pub tag: Tag,
    /// Value representation (for implicit VR files, from the dictionary).
    pub vr: VR,
    /// Value.
    pub value: Value,
}

/// A value: raw bytes, a sequence, or bytes left in the source.
#[derive(Clone, PartialEq)]
pub enum Value {
    /// The value bytes as stored (byte order of the transfer syntax, with
    /// padding).
    Bytes(Vec<u8>),
    /// Items of a sequence.
    Sequence(Vec<DataSet>),
    /// A large binary value left in the source: `len` bytes at `offset`.
    Bulk {
        /// byte offset in the source's data set stream
        offset: u64,
        /// value length
        len: u64,
    },
    /// Encapsulated pixel data: the item stream (offset table, fragments and
    /// sequence delimiter) at `offset`, `len` bytes, copied verbatim.
    Encapsulated {
        /// byte offset of the first item header
        offset: u64,
        /// bytes up to and including the sequence delimiter
        len: u64,
    },
    /// Encapsulated pixel data built in memory (a re-encoded image): the
    /// whole item stream, i.e. the Basic Offset Table item, one item per
    /// fragment and the sequence delimiter, written verbatim after an
    /// undefined-length OB header. Never produced by [`crate::read`].
    EncapsulatedBytes(Vec<u8>),
}

impl std::fmt::Debug for Value {
    // Values may be PHI: show only their shape.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Bytes(b) => write!(f, "Bytes(<{}B>)", b.len()),
            Value::Sequence(items) => write!(f, "Sequence({} items)", items.len()),
            Value::Bulk { len, .. } => write!(f, "Bulk({len}B)"),
            Value::Encapsulated { len, .. } => write!(f, "Encapsulated({len}B)"),
            Value::EncapsulatedBytes(b) => write!(f, "EncapsulatedBytes(<{}B>)", b.len()),
        }
    }
}

impl DataSet {
    /// A data set of these elements (in any order).
    pub fn of(elements: impl IntoIterator<Item = Element>) -> DataSet {
        let mut d = DataSet::default();
        for e in elements {
            d.put(e);
        }
        d
    }

    /// Finds an element.
    pub fn get(&self, tag: Tag) -> Option<&Element> {
        self.elements
            .binary_search_by(|e| e.tag.cmp(&tag))
            .ok()
            .map(|i| &self.elements[i])
    }

    /// Finds an element, mutably.
    pub fn get_mut(&mut self, tag: Tag) -> Option<&mut Element> {
        match self.elements.binary_search_by(|e| e.tag.cmp(&tag)) {
            Ok(i) => Some(&mut self.elements[i]),
            Err(_) => None,
        }
    }

    /// Inserts or replaces an element, keeping tag order.
    pub fn put(&mut self, element: Element) {
        match self.elements.binary_search_by(|e| e.tag.cmp(&element.tag)) {
            Ok(i) => self.elements[i] = element,
            Err(i) => self.elements.insert(i, element),
        }
    }

    /// Removes an element.
    pub fn remove(&mut self, tag: Tag) -> Option<Element> {
        match self.elements.binary_search_by(|e| e.tag.cmp(&tag)) {
            Ok(i) => Some(self.elements.remove(i)),
            Err(_) => None,
        }
    }

    /// The raw bytes of a value, if it is held in memory.
    pub fn bytes(&self, tag: Tag) -> Option<&[u8]> {
        match &self.get(tag)?.value {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The first value of a US element, in the byte order of its
    /// transfer syntax (`big_endian`).
    pub fn u16(&self, tag: Tag, big_endian: bool) -> Option<u16> {
        let b = self.bytes(tag)?;
        let a = [*b.first()?, *b.get(1)?];
        Some(if big_endian {
            u16::from_be_bytes(a)
        } else {
            u16::from_le_bytes(a)
        })
    }

    /// Appends a code item (Code Value, Coding Scheme Designator, Code
    /// Meaning) to the sequence `seq`, creating it if needed, unless an
    /// item with that Code Value is already there: how a stage records
    /// what it did in De-identification Method Code Sequence (0012,0064).
    pub fn add_code_item(&mut self, seq: Tag, code: &str, scheme: &str, meaning: &str) {
        let item = DataSet::of([
            Element::text(Tag(0x0008, 0x0100), VR::SH, code),
            Element::text(Tag(0x0008, 0x0102), VR::SH, scheme),
            Element::text(Tag(0x0008, 0x0104), VR::LO, meaning),
        ]);
        let has = |d: &DataSet| d.ascii(Tag(0x0008, 0x0100)).as_deref() == Some(code);
        match self.get_mut(seq).map(|e| &mut e.value) {
            Some(Value::Sequence(items)) => {
                if !items.iter().any(has) {
                    items.push(item);
                }
            }
            _ => self.put(Element::sequence(seq, vec![item])),
        }
    }

    /// A single-byte-charset string value with padding removed (for UIDs,
    /// code strings and other ASCII values).
    pub fn ascii(&self, tag: Tag) -> Option<String> {
        let b = self.bytes(tag)?;
        Some(trim_value(&String::from_utf8_lossy(b)).to_string())
    }
}

/// Trims DICOM padding (spaces, NULs) from a value.
pub fn trim_value(s: &str) -> &str {
    s.trim_matches(|c: char| c == ' ' || c == '\0')
}

impl Element {
    /// A new element holding a text value (ASCII or the data set's
    /// character set, as given).
    pub fn text(tag: Tag, vr: VR, value: &str) -> Element {
        Element::bytes(tag, vr, value.as_bytes().to_vec())
    }

    /// A new sequence element.
    pub fn sequence(tag: Tag, items: Vec<DataSet>) -> Element {
        Element {
            tag,
            vr: VR::SQ,
            value: Value::Sequence(items),
        }
    }

    /// A new element holding bytes.
    pub fn bytes(tag: Tag, vr: VR, value: Vec<u8>) -> Element {
        Element {
            tag,
            vr,
            value: Value::Bytes(value),
        }
    }
}
