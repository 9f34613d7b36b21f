//! The source object's header as region rules see it
//! ([`veil_rules::regions::Attributes`]): every value of an attribute
//! anywhere in the object, as text.

use dicom_core::VR;
use veil_core::Tag;
use veil_io::{DataSet, DicomFile, Value};

/// A parsed source object seen through the region-rule interface.
pub(crate) struct Attrs<'a> {
    file: &'a DicomFile,
}

impl<'a> Attrs<'a> {
    pub(crate) fn new(file: &'a DicomFile) -> Self {
        Attrs { file }
    }
}

impl veil_rules::regions::Attributes for Attrs<'_> {
    fn values(&self, tag: Tag) -> Vec<String> {
        let mut out = Vec::new();
        let big = self.file.ts.big_endian;
        if tag.0 == 0x0002 {
            if let Some(m) = &self.file.meta {
                collect(&m.elements, tag, false, &mut out);
            }
            return out;
        }
        collect(&self.file.dataset, tag, big, &mut out);
        out
    }
}

/// Top level first, then inside sequence items in document order.
fn collect(ds: &DataSet, tag: Tag, big: bool, out: &mut Vec<String>) {
    if let Some(e) = ds.get(tag) {
        if let Value::Bytes(b) = &e.value {
            out.push(text(e.vr, b, big));
        }
    }
    for e in &ds.elements {
        if let Value::Sequence(items) = &e.value {
            for i in items {
                collect(i, tag, big, out);
            }
        }
    }
}

/// A value as DICOM text: strings with padding trimmed (bytes outside
/// ASCII read as Latin-1, enough for rule matching), binary numbers in
/// decimal joined by `\`.
fn text(vr: VR, b: &[u8], big: bool) -> String {
    fn nums<const N: usize>(b: &[u8], big: bool, f: impl Fn([u8; N]) -> String) -> String {
        b.chunks_exact(N)
            .map(|c| {
                let mut a = [0u8; N];
                a.copy_from_slice(c);
                if big {
                    a.reverse();
                }
                f(a)
            })
            .collect::<Vec<_>>()
            .join("\\")
    }
    match vr {
        VR::US => nums::<2>(b, big, |a| u16::from_le_bytes(a).to_string()),
        VR::SS => nums::<2>(b, big, |a| i16::from_le_bytes(a).to_string()),
        VR::UL => nums::<4>(b, big, |a| u32::from_le_bytes(a).to_string()),
        VR::SL => nums::<4>(b, big, |a| i32::from_le_bytes(a).to_string()),
        VR::FL => nums::<4>(b, big, |a| f32::from_le_bytes(a).to_string()),
        VR::FD => nums::<8>(b, big, |a| f64::from_le_bytes(a).to_string()),
        _ => b
            .iter()
            .map(|&c| c as char)
            .collect::<String>()
            .trim_matches(|c: char| c == '\0' || c == ' ')
            .to_string(),
    }
}
