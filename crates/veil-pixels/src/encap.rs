//! Encapsulated pixel data: the item stream that `veil_io` leaves on disk
//! as `Value::Encapsulated`, split into fragments and frames.

use veil_core::Tag;
use veil_io::{DicomFile, Value};

use crate::bulk::Bulk;
use crate::PixelError;

pub(crate) const PIXEL_DATA: Tag = Tag(0x7FE0, 0x0010);
const EXTENDED_OFFSET_TABLE: Tag = Tag(0x7FE0, 0x0001);

/// One fragment: its value's place in the source, and where its item
/// header starts relative to the first fragment's (the base of offset
/// tables).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fragment {
    pub(crate) offset: u64,
    pub(crate) len: u64,
    pub(crate) rel: u64,
}

/// The layout of encapsulated pixel data.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    /// Basic Offset Table entries (may be empty).
    pub(crate) bot: Vec<u64>,
    pub(crate) fragments: Vec<Fragment>,
}

/// Walks the item headers (8 bytes each) of an encapsulated value, reading
/// only headers and the offset table.
pub(crate) fn layout(bulk: &mut Bulk, offset: u64, len: u64) -> Result<Layout, PixelError> {
    let end = offset + len;
    let mut pos = offset;
    let mut bot = None;
    let mut fragments = Vec::new();
    let mut first = None;
    while pos + 8 <= end {
        let h = bulk.read(pos, 8)?;
        let group = u16::from_le_bytes([h[0], h[1]]);
        let elem = u16::from_le_bytes([h[2], h[3]]);
        let n = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as u64;
        match (group, elem) {
            (0xFFFE, 0xE0DD) => break,
            (0xFFFE, 0xE000) => {}
            _ => {
                return Err(PixelError::Malformed(
                    "unexpected element in encapsulated pixel data".into(),
                ))
            }
        }
        if n == 0xFFFF_FFFF || pos + 8 + n > end {
            return Err(PixelError::Malformed(
                "encapsulated item runs past the pixel data".into(),
            ));
        }
        if bot.is_none() {
            let b = bulk.read(pos + 8, n)?;
            bot = Some(
                b.chunks_exact(4)
                    .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as u64)
                    .collect(),
            );
        } else {
            let base = *first.get_or_insert(pos);
            fragments.push(Fragment {
                offset: pos + 8,
                len: n,
                rel: pos - base,
            });
        }
        pos += 8 + n;
    }
    Ok(Layout {
        bot: bot.unwrap_or_default(),
        fragments,
    })
}

/// Which fragments make up each frame. Uses, in order: one frame = all
/// fragments; one fragment per frame; the Extended or Basic Offset Table;
/// for JPEG-family streams, a new frame at each fragment that starts with
/// an SOI marker (or a JPEG 2000 SOC marker).
pub(crate) fn frames(
    layout: &Layout,
    frames: u32,
    eot: Option<Vec<u64>>,
    bulk: &mut Bulk,
) -> Result<Vec<Vec<Fragment>>, PixelError> {
    let frags = &layout.fragments;
    let n = frames as usize;
    if frags.is_empty() {
        return Err(PixelError::Malformed("no fragments".into()));
    }
    if n <= 1 {
        return Ok(vec![frags.clone()]);
    }
    if frags.len() == n {
        return Ok(frags.iter().map(|f| vec![*f]).collect());
    }
    let table = eot
        .filter(|t| t.len() == n)
        .or_else(|| (layout.bot.len() == n).then(|| layout.bot.clone()));
    if let Some(t) = table {
        let mut out = Vec::with_capacity(n);
        for (i, start) in t.iter().enumerate() {
            let stop = t.get(i + 1).copied().unwrap_or(u64::MAX);
            let group: Vec<Fragment> = frags
                .iter()
                .filter(|f| f.rel >= *start && f.rel < stop)
                .copied()
                .collect();
            if group.is_empty() {
                return Err(PixelError::Malformed(
                    "offset table points to no fragment".into(),
                ));
            }
            out.push(group);
        }
        return Ok(out);
    }
    // No usable table: split where a codestream starts.
    let mut out: Vec<Vec<Fragment>> = Vec::new();
    for f in frags {
        let head = bulk.read(f.offset, f.len.min(4))?;
        let starts = head.starts_with(&[0xFF, 0xD8]) || head.starts_with(&[0xFF, 0x4F, 0xFF, 0x51]);
        match out.last_mut() {
            Some(last) if !starts => last.push(*f),
            _ => out.push(vec![*f]),
        }
    }
    if out.len() == n {
        Ok(out)
    } else {
        Err(PixelError::Malformed(
            "cannot tell which fragments belong to which frame".into(),
        ))
    }
}

/// The Extended Offset Table (7FE0,0001), if present.
pub(crate) fn extended_offset_table(
    file: &DicomFile,
    bulk: &mut Bulk,
) -> Result<Option<Vec<u64>>, PixelError> {
    let Some(e) = file.dataset.get(EXTENDED_OFFSET_TABLE) else {
        return Ok(None);
    };
    // OV, and encapsulated transfer syntaxes are all little endian.
    let b = bulk.value(e)?;
    Ok(Some(
        b.chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect(),
    ))
}

/// The fragments of encapsulated pixel data, read from the file's source,
/// in order, without the Basic Offset Table item. Why: codec-level checks
/// (JPEG COM/APPn segments that can carry text, see [`crate::jpeg`]) work
/// on the compressed streams, not on decoded pixels.
///
/// Errors: [`PixelError::NoPixelData`] without Pixel Data,
/// [`PixelError::Unsupported`] when the pixel data is not encapsulated.
pub fn encapsulated_fragments(file: &DicomFile) -> Result<Vec<Vec<u8>>, PixelError> {
    let (offset, len) = match file.dataset.get(PIXEL_DATA).map(|e| &e.value) {
        None => return Err(PixelError::NoPixelData),
        Some(Value::Encapsulated { offset, len }) => (*offset, *len),
        Some(_) => {
            return Err(PixelError::Unsupported(
                "pixel data is not encapsulated".into(),
            ))
        }
    };
    let mut bulk = Bulk::open(file)?;
    let l = layout(&mut bulk, offset, len)?;
    l.fragments
        .iter()
        .map(|f| bulk.read(f.offset, f.len))
        .collect()
}
