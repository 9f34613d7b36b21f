//! Lossless JPEG (ITU T.81 process 14) encoding, first-order prediction
//! (selection value 1), so JPEG Lossless SV1 (.4.70) sources keep their
//! transfer syntax.
//!
//! Why our own: no well-kept Rust crate writes process 14 (jpeg-encoder
//! and the image crate write DCT only), and the format is small. The
//! Huffman table is built per frame from its difference categories
//! (T.81 Annex K.2, limited to 16-bit codes), one table for all components.

use crate::raw::RawLayout;

/// Encodes one interleaved little-endian frame with sample precision
/// `precision` (2..=16 bits; every sample must be below 2^precision).
pub(crate) fn encode(layout: &RawLayout, data: &[u8], precision: u8) -> Vec<u8> {
    let bps = layout.bytes_per_sample();
    let nc = layout.spp as usize;
    let (w, h) = (layout.cols as usize, layout.rows as usize);
    let sample = |i: usize| -> i32 {
        if bps == 1 {
            data[i] as i32
        } else {
            u16::from_le_bytes([data[2 * i], data[2 * i + 1]]) as i32
        }
    };
    // Differences from the prediction (T.81 H.1.2.1), modulo 2^16.
    let mut diffs = Vec::with_capacity(w * h * nc);
    let mut freq = [0u64; 17];
    for y in 0..h {
        for x in 0..w {
            for c in 0..nc {
                let at = |x: usize, y: usize| sample((y * w + x) * nc + c);
                let pred = match (x, y) {
                    (0, 0) => 1 << (precision - 1),
                    (0, _) => at(0, y - 1),
                    _ => at(x - 1, y),
                };
                let mut d = (at(x, y) - pred) & 0xFFFF;
                if d >= 0x8000 {
                    d -= 0x10000;
                }
                let cat = category(d);
                freq[cat as usize] += 1;
                diffs.push(d);
            }
        }
    }
    let (bits, vals) = huffman_table(&freq);
    let codes = codes(&bits, &vals);

    let mut out = vec![0xFF, 0xD8];
    // SOF3: lossless, Huffman
    let mut sof = vec![precision];
    sof.extend((h as u16).to_be_bytes());
    sof.extend((w as u16).to_be_bytes());
    sof.push(nc as u8);
    for c in 0..nc {
        sof.extend([c as u8 + 1, 0x11, 0]);
    }
    segment(&mut out, 0xC3, &sof);
    let mut dht = vec![0x00];
    dht.extend_from_slice(&bits[1..=16]);
    dht.extend_from_slice(&vals);
    segment(&mut out, 0xC4, &dht);
    let mut sos = vec![nc as u8];
    for c in 0..nc {
        sos.extend([c as u8 + 1, 0x00]);
    }
    sos.extend([1, 0, 0]); // Ss = predictor 1, Se = 0, Ah/Al = 0 (Pt 0)
    segment(&mut out, 0xDA, &sos);
    let mut bw = BitWriter {
        out: &mut out,
        acc: 0,
        n: 0,
    };
    for d in diffs {
        let cat = category(d);
        let (code, len) = codes[cat as usize];
        bw.put(code as u32, len);
        if (1..16).contains(&cat) {
            let extra = if d >= 0 { d } else { d - 1 } as u32 & ((1 << cat) - 1);
            bw.put(extra, cat);
        }
    }
    bw.flush();
    out.extend([0xFF, 0xD9]);
    out
}

/// The difference category SSSS (T.81 Table H.2); -32768 is category 16
/// (no extra bits).
fn category(d: i32) -> u8 {
    if d == -0x8000 {
        16
    } else {
        (32 - d.unsigned_abs().leading_zeros()) as u8
    }
}

fn segment(out: &mut Vec<u8>, marker: u8, body: &[u8]) {
    out.extend([0xFF, marker]);
    out.extend(((body.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(body);
}

/// BITS (index 1..=16: number of codes of each length) and HUFFVAL, from
/// symbol frequencies, by T.81 Annex K.2 (with the reserved all-ones code).
fn huffman_table(freq: &[u64; 17]) -> ([u8; 33], Vec<u8>) {
    let mut f = [0u64; 18];
    f[..17].copy_from_slice(freq);
    f[17] = 1; // reserved symbol: no code of all ones
    let mut size = [0usize; 18];
    let mut others = [usize::MAX; 18];
    loop {
        let least = |skip: usize| {
            let mut best: Option<usize> = None;
            for v in 0..18 {
                if f[v] > 0 && v != skip && best.is_none_or(|b| f[v] <= f[b]) {
                    best = Some(v);
                }
            }
            best
        };
        let Some(mut v1) = least(usize::MAX) else {
            break;
        };
        let Some(mut v2) = least(v1) else {
            break;
        };
        f[v1] += f[v2];
        f[v2] = 0;
        size[v1] += 1;
        while others[v1] != usize::MAX {
            v1 = others[v1];
            size[v1] += 1;
        }
        others[v1] = v2;
        size[v2] += 1;
        while others[v2] != usize::MAX {
            v2 = others[v2];
            size[v2] += 1;
        }
    }
    let mut bits = [0u8; 33];
    for s in size.iter().filter(|s| **s > 0) {
        bits[*s] += 1;
    }
    for i in (17..=32).rev() {
        while bits[i] > 0 {
            let mut j = i - 2;
            while bits[j] == 0 {
                j -= 1;
            }
            bits[i] -= 2;
            bits[i - 1] += 1;
            bits[j + 1] += 2;
            bits[j] -= 1;
        }
    }
    let mut i = 16;
    while bits[i] == 0 {
        i -= 1;
    }
    bits[i] -= 1; // drop the reserved code
    let mut syms: Vec<usize> = (0..17).filter(|v| size[*v] > 0).collect();
    syms.sort_by_key(|v| (size[*v], *v));
    let vals = syms.into_iter().map(|v| v as u8).collect();
    (bits, vals)
}

/// Code and length per symbol (T.81 Annex C).
fn codes(bits: &[u8; 33], vals: &[u8]) -> [(u16, u8); 17] {
    let mut out = [(0u16, 0u8); 17];
    let mut code = 0u32;
    let mut k = 0;
    for len in 1..=16u8 {
        for _ in 0..bits[len as usize] {
            out[vals[k] as usize] = (code as u16, len);
            code += 1;
            k += 1;
        }
        code <<= 1;
    }
    out
}

struct BitWriter<'a> {
    out: &'a mut Vec<u8>,
    acc: u64,
    n: u8,
}

impl BitWriter<'_> {
    fn put(&mut self, v: u32, len: u8) {
        if len == 0 {
            return;
        }
        self.acc = (self.acc << len) | (v as u64 & ((1u64 << len) - 1));
        self.n += len;
        while self.n >= 8 {
            let b = (self.acc >> (self.n - 8)) as u8;
            self.out.push(b);
            if b == 0xFF {
                self.out.push(0); // byte stuffing
            }
            self.n -= 8;
        }
    }

    fn flush(&mut self) {
        if self.n > 0 {
            let pad = 8 - self.n;
            self.put((1 << pad) - 1, pad);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(cols: u32, rows: u32, spp: u16, bits: u16) -> RawLayout {
        RawLayout {
            rows,
            cols,
            spp,
            bits_alloc: bits,
            bits_stored: bits,
            high_bit: bits - 1,
            signed: false,
            photometric: if spp == 3 { "RGB" } else { "MONOCHROME2" }.into(),
            planar_in_source: false,
            palette: None,
        }
    }

    /// Decodes with jpeg-decoder (what dicom-pixeldata uses) and compares.
    fn round_trip(l: &RawLayout, data: &[u8], precision: u8) {
        let jpeg = encode(l, data, precision);
        let mut d = jpeg_decoder::Decoder::new(&jpeg[..]);
        let back = d.decode().expect("jpeg-decoder reads our stream");
        assert!(back == data, "decoded samples differ");
    }

    /// Differences of ±32768 (category 16, no extra bits), full-range
    /// noise (every category) and 8-bit color.
    #[test]
    fn extreme_differences_and_noise_round_trip() {
        let l = layout(64, 8, 1, 16);
        let alt: Vec<u8> = (0..64 * 8)
            .flat_map(|i| if i % 2 == 0 { 0u16 } else { 0x8000 }.to_le_bytes())
            .collect();
        round_trip(&l, &alt, 16);
        let mut x = 1u32;
        let mut rnd = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        let noise: Vec<u8> = (0..64 * 8)
            .flat_map(|_| (rnd() as u16).to_le_bytes())
            .collect();
        round_trip(&l, &noise, 16);
        let l = layout(33, 7, 3, 8);
        let rgb: Vec<u8> = (0..33 * 7 * 3).map(|_| rnd() as u8).collect();
        round_trip(&l, &rgb, 8);
    }

    /// Skewed frequencies would give codes of 17+ bits; the table is
    /// limited to 16 and keeps the all-ones code free (Kraft sum < 1).
    #[test]
    fn huffman_codes_are_at_most_16_bits() {
        let mut freq = [0u64; 17];
        let (mut a, mut b) = (1u64, 1u64);
        for f in freq.iter_mut() {
            *f = a;
            (a, b) = (b, a + b);
        }
        let (bits, vals) = huffman_table(&freq);
        assert_eq!(vals.len(), 17);
        assert!(bits[17..].iter().all(|n| *n == 0));
        let kraft: f64 = (1..=16).map(|l| bits[l] as f64 / (1u64 << l) as f64).sum();
        assert!(kraft < 1.0, "{kraft}");
    }
}
