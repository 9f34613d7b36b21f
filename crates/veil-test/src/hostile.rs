//! Hostile and broken inputs built on the fly (issue 22: parsers without
//! limits), shared by the tests that check each limit and by the fuzzing
//! seeds (`fuzz/seeds.sh`), so no large file is committed.

use std::io::Write;

/// Explicit VR little endian element with a 2-byte length.
fn short(out: &mut Vec<u8>, g: u16, e: u16, vr: &[u8; 2], v: &[u8]) {
    out.extend(g.to_le_bytes());
    out.extend(e.to_le_bytes());
    out.extend(vr);
    out.extend((v.len() as u16).to_le_bytes());
    out.extend(v);
}

/// Explicit VR little endian header of an element with a 4-byte length
/// (OB, SQ, UN...).
fn long_header(out: &mut Vec<u8>, g: u16, e: u16, vr: &[u8; 2], len: u32) {
    out.extend(g.to_le_bytes());
    out.extend(e.to_le_bytes());
    out.extend(vr);
    out.extend([0, 0]);
    out.extend(len.to_le_bytes());
}

/// Preamble, `DICM` and a File Meta holding only the transfer syntax.
fn preamble(ts: &str) -> Vec<u8> {
    let mut b = vec![0u8; 128];
    b.extend(b"DICM");
    let mut uid = ts.as_bytes().to_vec();
    if uid.len() % 2 == 1 {
        uid.push(0);
    }
    short(&mut b, 0x0002, 0x0010, b"UI", &uid);
    b
}

/// SOP Class (MR Image) and SOP Instance `sop`: what `veil deid` needs
/// to place an object (Secondary Capture would go to review).
fn identity(b: &mut Vec<u8>, sop: &str) {
    short(b, 0x0008, 0x0016, b"UI", b"1.2.840.10008.5.1.4.1.1.4\0");
    let mut uid = sop.as_bytes().to_vec();
    if uid.len() % 2 == 1 {
        uid.push(0);
    }
    short(b, 0x0008, 0x0018, b"UI", &uid);
}

/// A small, valid explicit VR little endian object with SOP Instance `sop`.
pub fn plain(sop: &str) -> Vec<u8> {
    let mut b = preamble("1.2.840.10008.1.2.1");
    identity(&mut b, sop);
    short(&mut b, 0x0008, 0x0060, b"CS", b"MR");
    b
}

/// An object whose Content Sequence (0040,A730) nests `levels`
/// undefined-length sequences, each in an undefined-length item, all
/// closed at the end (20 bytes a level: 200,000 levels are 4 MB).
pub fn nested_sequences(sop: &str, levels: usize) -> Vec<u8> {
    let mut b = plain(sop);
    for _ in 0..levels {
        long_header(&mut b, 0x0040, 0xA730, b"SQ", u32::MAX);
        b.extend(0xFFFEu16.to_le_bytes());
        b.extend(0xE000u16.to_le_bytes());
        b.extend(u32::MAX.to_le_bytes());
    }
    for _ in 0..levels {
        // item delimiter, sequence delimiter
        for e in [0xE00Du16, 0xE0DD] {
            b.extend(0xFFFEu16.to_le_bytes());
            b.extend(e.to_le_bytes());
            b.extend(0u32.to_le_bytes());
        }
    }
    b
}

/// A Deflated Explicit VR Little Endian object whose data set holds a
/// private OB value of `zeros` zero bytes: a deflate bomb of about
/// `zeros / 1000` bytes when `zeros` is large.
pub fn deflated(sop: &str, zeros: u64) -> Vec<u8> {
    let b = preamble("1.2.840.10008.1.2.1.99");
    let mut ds = Vec::new();
    identity(&mut ds, sop);
    short(&mut ds, 0x0009, 0x0010, b"LO", b"VEIL TEST ");
    let len = u32::try_from(zeros).expect("an OB value holds at most 4 GiB");
    long_header(&mut ds, 0x0009, 0x1010, b"OB", len);
    let mut z = flate2::write::DeflateEncoder::new(b, flate2::Compression::best());
    z.write_all(&ds).expect("deflate to memory");
    write_zeros(&mut z, zeros);
    z.finish().expect("deflate to memory")
}

/// `data` zlib-compressed (the FlateDecode of PDF streams).
pub fn zlib(data: &[u8]) -> Vec<u8> {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(data).expect("deflate to memory");
    z.finish().expect("deflate to memory")
}

/// `zeros` zero bytes zlib-compressed: a PDF stream bomb.
pub fn zlib_zeros(zeros: u64) -> Vec<u8> {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    write_zeros(&mut z, zeros);
    z.finish().expect("deflate to memory")
}

/// A PDF whose only content stream is `stream`, declared FlateDecode.
pub fn pdf(stream: &[u8]) -> Vec<u8> {
    let mut p = b"%PDF-1.4\n4 0 obj << /Length ".to_vec();
    p.extend(stream.len().to_string().as_bytes());
    p.extend(b" /Filter /FlateDecode >> stream\n");
    p.extend(stream);
    p.extend(b"\nendstream endobj\n%%EOF\n");
    p
}

/// An Encapsulated PDF object (SOP Instance `sop`) holding `pdf` in
/// Encapsulated Document (0042,0011).
pub fn encapsulated_pdf(sop: &str, pdf: &[u8]) -> Vec<u8> {
    let mut b = preamble("1.2.840.10008.1.2.1");
    short(
        &mut b,
        0x0008,
        0x0016,
        b"UI",
        b"1.2.840.10008.5.1.4.1.1.104.1\0",
    );
    let mut uid = sop.as_bytes().to_vec();
    if uid.len() % 2 == 1 {
        uid.push(0);
    }
    short(&mut b, 0x0008, 0x0018, b"UI", &uid);
    short(&mut b, 0x0008, 0x0060, b"CS", b"DOC ");
    let mut doc = pdf.to_vec();
    if doc.len() % 2 == 1 {
        doc.push(0);
    }
    long_header(&mut b, 0x0042, 0x0011, b"OB", doc.len() as u32);
    b.extend(doc);
    b
}

/// An RLE Lossless object (one frame) of `rows` x `cols`, 8-bit
/// grayscale, whose single fragment is `frame` (an RLE header and its
/// segments).
pub fn rle(sop: &str, rows: u16, cols: u16, frame: &[u8]) -> Vec<u8> {
    encapsulated("1.2.840.10008.1.2.5", sop, rows, cols, frame)
}

/// A one-frame object of `rows` x `cols`, 8-bit grayscale, in the
/// encapsulated transfer syntax `ts`, whose single fragment is `frame`.
pub fn encapsulated(ts: &str, sop: &str, rows: u16, cols: u16, frame: &[u8]) -> Vec<u8> {
    let mut b = preamble(ts);
    identity(&mut b, sop);
    short(&mut b, 0x0028, 0x0002, b"US", &1u16.to_le_bytes());
    short(&mut b, 0x0028, 0x0004, b"CS", b"MONOCHROME2 ");
    short(&mut b, 0x0028, 0x0010, b"US", &rows.to_le_bytes());
    short(&mut b, 0x0028, 0x0011, b"US", &cols.to_le_bytes());
    short(&mut b, 0x0028, 0x0100, b"US", &8u16.to_le_bytes());
    short(&mut b, 0x0028, 0x0101, b"US", &8u16.to_le_bytes());
    short(&mut b, 0x0028, 0x0102, b"US", &7u16.to_le_bytes());
    short(&mut b, 0x0028, 0x0103, b"US", &0u16.to_le_bytes());
    long_header(&mut b, 0x7FE0, 0x0010, b"OB", u32::MAX);
    let item = |b: &mut Vec<u8>, e: u16, v: &[u8]| {
        b.extend(0xFFFEu16.to_le_bytes());
        b.extend(e.to_le_bytes());
        b.extend((v.len() as u32).to_le_bytes());
        b.extend(v);
    };
    item(&mut b, 0xE000, &[]);
    let mut f = frame.to_vec();
    if f.len() % 2 == 1 {
        f.push(0);
    }
    item(&mut b, 0xE000, &f);
    item(&mut b, 0xE0DD, &[]);
    b
}

/// An RLE frame header for one segment starting at byte 64, followed by
/// `segment`.
pub fn rle_frame(segment: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 64];
    f[0..4].copy_from_slice(&1u32.to_le_bytes());
    f[4..8].copy_from_slice(&64u32.to_le_bytes());
    f.extend(segment);
    f
}

/// Writes `zeros` zero bytes into `w` a megabyte at a time, so a bomb of
/// gigabytes never exists uncompressed in the test's memory.
fn write_zeros(w: &mut impl Write, zeros: u64) {
    let chunk = vec![0u8; 1 << 20];
    let mut left = zeros;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        w.write_all(&chunk[..n]).expect("deflate to memory");
        left -= n as u64;
    }
}
