//! RLE Lossless encoding (PS3.5 Annex G): the inverse of `rle_decode` in
//! decode.rs, with the same segment layout (one PackBits segment per sample
//! and byte, most significant byte first).

use crate::raw::RawLayout;

/// Encodes one interleaved little-endian frame as an RLE frame: the
/// 64-byte header (segment count and 15 offsets) and the segments, each
/// padded to an even length.
pub(crate) fn encode(layout: &RawLayout, data: &[u8]) -> Vec<u8> {
    let bps = layout.bytes_per_sample();
    let spp = layout.spp as usize;
    let pixels = layout.rows as usize * layout.cols as usize;
    let cols = layout.cols as usize;
    let nseg = spp * bps;
    let mut out = vec![0u8; 64];
    out[..4].copy_from_slice(&(nseg as u32).to_le_bytes());
    let mut plane = Vec::with_capacity(pixels);
    for seg in 0..nseg {
        let offset = out.len() as u32;
        out[4 + 4 * seg..8 + 4 * seg].copy_from_slice(&offset.to_le_bytes());
        let (sample, msb_index) = (seg / bps, seg % bps);
        let byte = bps - 1 - msb_index;
        plane.clear();
        plane.extend((0..pixels).map(|p| data[(p * spp + sample) * bps + byte]));
        // Rows are packed separately: PS3.5 G.3.1 forbids runs across rows.
        for row in plane.chunks(cols) {
            packbits(row, &mut out);
        }
        if out.len() % 2 == 1 {
            out.push(0);
        }
    }
    out
}

/// PackBits: runs of 2..128 equal bytes as (1 - n, byte), everything else
/// as literal groups of up to 128 bytes (n - 1, bytes).
fn packbits(src: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    let mut lit_start = 0;
    let flush = |from: usize, to: usize, out: &mut Vec<u8>| {
        let mut s = from;
        while s < to {
            let n = (to - s).min(128);
            out.push((n - 1) as u8);
            out.extend_from_slice(&src[s..s + n]);
            s += n;
        }
    };
    while i < src.len() {
        let mut run = 1;
        while i + run < src.len() && src[i + run] == src[i] && run < 128 {
            run += 1;
        }
        // A run of 2 inside literals costs as much as leaving it there.
        if run >= 3 || (run == 2 && lit_start == i) {
            flush(lit_start, i, out);
            out.push((1i16 - run as i16) as i8 as u8);
            out.push(src[i]);
            i += run;
            lit_start = i;
        } else {
            i += run;
        }
    }
    flush(lit_start, src.len(), out);
}
