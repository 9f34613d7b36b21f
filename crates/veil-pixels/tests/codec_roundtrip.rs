//! The raw codec layer on real corpus files: for one file of every
//! transfer syntax, photometric interpretation, bit depth, signedness and
//! frame count in the corpus, decode the stored samples, encode them again
//! (unchanged, then with a box filled on every frame), write the file with
//! veil-io, and check that it parses (veil-io, dicom-rs), keeps or changes
//! its transfer syntax as promised, decodes bit-identically with our
//! decoders and with dcmtk's, and that only the box changed.
#![allow(clippy::print_stderr)] // the tests print what they covered

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use veil_core::Tag;
use veil_io::{DicomFile, TsInfo, WriteMeta};
use veil_pixels::{
    black_value, fill_rects, EncodePolicy, Encoded, FrameEncoder, FrameReader, PixelError,
    RawFrame, RawLayout, RawReader, Rect,
};

const RLE: &str = "1.2.840.10008.1.2.5";
const JPEG_LS: &str = "1.2.840.10008.1.2.4.80";
const JPEG_SV1: &str = "1.2.840.10008.1.2.4.70";

/// Broken on purpose (see decode_corpus.rs): a Malformed or Decode error
/// is the right answer.
const BROKEN: &[&str] = &[
    "nested_priv_SQ.dcm",
    "JPEG2000-embedded-sequence-delimiter.dcm",
];

/// What a file looks like, for picking one file per kind.
fn kind(f: &DicomFile, frames: u32) -> Option<String> {
    let a = |e: u16| {
        f.dataset
            .get(Tag(0x0028, e))
            .and_then(|el| match &el.value {
                veil_io::Value::Bytes(b) if b.len() >= 2 => Some(if f.ts.big_endian {
                    u16::from_be_bytes([b[0], b[1]])
                } else {
                    u16::from_le_bytes([b[0], b[1]])
                }),
                _ => None,
            })
    };
    f.dataset.get(Tag(0x7FE0, 0x0010))?;
    Some(format!(
        "{} {} ba{} bs{} sgn{} spp{} pl{} {}",
        f.ts.uid,
        f.dataset.ascii(Tag(0x0028, 0x0004)).unwrap_or_default(),
        a(0x0100)?,
        a(0x0101).unwrap_or(0),
        a(0x0103).unwrap_or(0),
        a(0x0002).unwrap_or(1),
        a(0x0006).unwrap_or(0),
        if frames > 1 { "multi" } else { "single" }
    ))
}

/// The smallest file of each kind.
fn representatives(corpus: &Path) -> BTreeMap<String, PathBuf> {
    let mut pick: BTreeMap<String, (u64, PathBuf)> = BTreeMap::new();
    for p in common::files(corpus) {
        let Ok(f) = veil_io::read(&p) else { continue };
        let Ok(r) = RawReader::new(&f) else {
            // still represented, to report why
            if let Some(k) = kind(&f, 1) {
                let size = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
                let e = pick.entry(k).or_insert((size, p.clone()));
                if size < e.0 {
                    *e = (size, p);
                }
            }
            continue;
        };
        let Some(k) = kind(&f, r.frame_count()) else {
            continue;
        };
        let size = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        let e = pick.entry(k).or_insert((size, p.clone()));
        if size < e.0 {
            *e = (size, p);
        }
    }
    pick.into_iter().map(|(k, (_, p))| (k, p)).collect()
}

fn frames(r: &mut RawReader) -> Result<Vec<RawFrame>, PixelError> {
    (0..r.frame_count()).map(|i| r.frame(i)).collect()
}

fn encode(layout: &RawLayout, ts: &TsInfo, frames: &[RawFrame]) -> Encoded {
    let mut enc =
        FrameEncoder::new(layout, ts, EncodePolicy::default()).expect("encoder for this layout");
    for f in frames {
        enc.push(f).expect("encode frame");
    }
    enc.finish().expect("finish")
}

/// Writes the source with the new pixel data, as the pipeline will.
fn write(src: &DicomFile, enc: &Encoded, out: &Path) {
    let mut ds = src.dataset.clone();
    enc.apply_to(&mut ds);
    // some corpus files carry invalid UIDs on purpose
    let uid = |e: u16, d: &str| {
        ds.ascii(Tag(0x0008, e))
            .filter(|u| !u.is_empty() && u.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
            .unwrap_or_else(|| d.to_string())
    };
    let meta = WriteMeta {
        sop_class: uid(0x0016, "1.2.840.10008.5.1.4.1.1.7"),
        sop_instance: uid(0x0018, "2.25.1"),
    };
    veil_io::write_file(out, &meta, &enc.ts, &ds, &src.source).expect("write output");
}

/// Decompresses (or rewrites) `file` with dcmtk to Explicit VR Little
/// Endian and returns the new file.
fn dcmtk_native(file: &Path, ts: &str) -> PathBuf {
    let tool = match ts {
        RLE => "dcmdrle",
        JPEG_LS | "1.2.840.10008.1.2.4.81" => "dcmdjpls",
        JPEG_SV1 | "1.2.840.10008.1.2.4.57" | "1.2.840.10008.1.2.4.50" => "dcmdjpeg",
        _ => "dcmconv",
    };
    let out = file.with_extension("dcmtk.dcm");
    let mut cmd = Command::new(tool);
    match tool {
        "dcmconv" => {
            cmd.arg("+te");
        }
        // lossless: keep YBR_FULL as stored (dcmtk converts to RGB by
        // default, as our decoder does for lossy JPEG)
        "dcmdjpeg" if ts != "1.2.840.10008.1.2.4.50" => {
            cmd.arg("+cn");
        }
        _ => {}
    }
    let res = cmd
        .arg(file)
        .arg(&out)
        .output()
        .unwrap_or_else(|e| panic!("run {tool} (install dcmtk): {e}"));
    assert!(
        res.status.success(),
        "{tool} failed: {}",
        String::from_utf8_lossy(&res.stderr)
    );
    out
}

/// Reads every frame of a written file with our decoders.
fn reread(path: &Path) -> (RawLayout, Vec<RawFrame>, String) {
    let f = veil_io::read(path).expect("output parses with veil-io");
    let mut r = RawReader::new(&f).expect("output has readable pixels");
    let frames = frames(&mut r).expect("output frames decode");
    (r.layout().clone(), frames, f.ts.uid.clone())
}

/// The transfer syntax an output must have.
fn expected_ts(source: &str) -> &str {
    match source {
        "1.2.840.10008.1.2.4.50"
        | "1.2.840.10008.1.2.4.51"
        | "1.2.840.10008.1.2.4.81"
        | "1.2.840.10008.1.2.4.90"
        | "1.2.840.10008.1.2.4.91" => JPEG_LS,
        s => s,
    }
}

/// Sample `i` of a frame as a word.
fn word(l: &RawLayout, f: &RawFrame, i: usize) -> u16 {
    if l.bits_alloc == 8 {
        f.data[i] as u16
    } else {
        u16::from_le_bytes([f.data[2 * i], f.data[2 * i + 1]])
    }
}

/// Column, row and sample number of sample `i` (independent of
/// fill_rects): subsampled YBR_FULL_422 gives the left pixel of a pair.
fn place(l: &RawLayout, i: usize) -> (usize, usize, usize) {
    let cols = l.cols as usize;
    if l.subsampled() {
        let (row, rest) = (i / (cols * 2), i % (cols * 2));
        let (pair, k) = (rest / 4, rest % 4);
        let x = pair * 2 + if k == 1 { 1 } else { 0 };
        (x, row, [0, 0, 1, 2][k])
    } else {
        let spp = l.spp as usize;
        ((i / spp) % cols, i / spp / cols, i % spp)
    }
}

/// Round trip and fill for one file; returns frames checked.
fn check_file(path: &Path, scratch: &Path, n: usize) -> Result<(u32, Option<String>), PixelError> {
    let src = veil_io::read(path).expect("corpus file parses");
    let mut r = RawReader::new(&src)?;
    let layout = r.layout().clone();
    let original = frames(&mut r)?;
    let want_ts = expected_ts(&src.ts.uid);

    // 1. no change: bit-identical, with ours and with dcmtk
    let enc = encode(&layout, &src.ts, &original);
    let transcoded = enc.transcoded.clone();
    assert_eq!(enc.ts.uid, want_ts, "output transfer syntax");
    assert_eq!(transcoded.is_some(), want_ts != src.ts.uid);
    let lossy = matches!(
        src.ts.uid.as_str(),
        "1.2.840.10008.1.2.4.50"
            | "1.2.840.10008.1.2.4.51"
            | "1.2.840.10008.1.2.4.81"
            | "1.2.840.10008.1.2.4.91"
    );
    let says_lossy = enc
        .header
        .iter()
        .any(|e| e.tag == Tag(0x0028, 0x2110) && e.value == veil_io::Value::Bytes(b"01".to_vec()));
    assert_eq!(says_lossy, lossy, "Lossy Image Compression kept truthful");
    let out = scratch.join(format!("{n}.dcm"));
    write(&src, &enc, &out);
    dicom_object::open_file(&out).expect("output parses with dicom-rs");
    let (l2, again, ts2) = reread(&out);
    assert_eq!(ts2, want_ts);
    assert_eq!(
        (l2.rows, l2.cols, l2.spp, l2.bits_alloc),
        (layout.rows, layout.cols, layout.spp, layout.bits_alloc)
    );
    assert_eq!(l2.photometric, layout.photometric);
    assert_eq!(again.len(), original.len(), "frame count");
    for (a, b) in original.iter().zip(&again) {
        assert!(
            a.data == b.data,
            "frame {} differs after re-encoding",
            a.index
        );
    }
    let peer = dcmtk_native(&out, &ts2);
    let (_, by_dcmtk, _) = reread(&peer);
    assert_eq!(by_dcmtk.len(), original.len());
    for (a, b) in original.iter().zip(&by_dcmtk) {
        assert!(
            a.data == b.data,
            "frame {} differs as dcmtk decodes it",
            a.index
        );
    }

    // 2. a box on every frame: exactly the box changes
    let rect = Rect {
        x: layout.cols / 4,
        y: layout.rows / 3,
        w: (layout.cols / 3).max(1),
        h: (layout.rows / 5).max(1),
    };
    let mut filled = original.clone();
    let fills: Vec<Vec<u16>> = filled
        .iter_mut()
        .map(|f| {
            let v = black_value(&layout, f);
            fill_rects(&layout, f, &[rect], &v);
            v
        })
        .collect();
    let enc = encode(&layout, &src.ts, &filled);
    let out = scratch.join(format!("{n}-filled.dcm"));
    write(&src, &enc, &out);
    let (_, back, _) = reread(&out);
    let in_rect = |x: usize, y: usize| {
        let (x0, y0) = (rect.x as usize, rect.y as usize);
        let in_x = if layout.subsampled() {
            // a pair shares chroma: the box widens to whole pairs
            x / 2 >= x0 / 2 && x / 2 < (x0 + rect.w as usize).div_ceil(2)
        } else {
            x >= x0 && x < x0 + rect.w as usize
        };
        in_x && y >= y0 && y < y0 + rect.h as usize
    };
    let mut inside = 0usize;
    for ((o, b), fill) in original.iter().zip(&back).zip(&fills) {
        for i in 0..layout.samples() {
            let (x, y, c) = place(&layout, i);
            if in_rect(x, y) {
                inside += 1;
                let want = fill.get(c).or(fill.first()).copied().unwrap();
                assert_eq!(word(&layout, b, i), want, "sample inside the box");
            } else {
                assert_eq!(
                    word(&layout, b, i),
                    word(&layout, o, i),
                    "sample outside the box"
                );
            }
        }
    }
    assert!(inside > 0, "the box covers samples");

    // 3. the fill displays as black: as our 8-bit reader renders it
    // (window, MONOCHROME1 inversion, palette, luma), every pixel of the box
    // is as dark as the darkest pixel of the frame
    let f = veil_io::read(&out).expect("parses");
    let mut shown = FrameReader::new(&f).expect("frame reader");
    for i in 0..shown.frame_count() {
        let img = shown.frame(i).expect("renders").image;
        let darkest = img.pixels().map(|p| p.0[0]).min().unwrap();
        for y in rect.y..(rect.y + rect.h).min(layout.rows) {
            for x in rect.x..(rect.x + rect.w).min(layout.cols) {
                assert_eq!(
                    img.get_pixel(x, y).0[0],
                    darkest,
                    "box pixel displays as black"
                );
            }
        }
    }
    Ok((original.len() as u32, transcoded))
}

#[test]
fn every_kind_round_trips_bit_identically_and_fills_only_the_box() {
    let Some(corpus) = common::corpus() else {
        return;
    };
    let scratch = veil_test::scratch("codec-roundtrip");
    let (mut ok, mut multi, mut frames_done) = (0, 0, 0);
    let mut bad = Vec::new();
    for (n, (k, path)) in representatives(&corpus).into_iter().enumerate() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let t = Instant::now();
        match check_file(&path, &scratch, n) {
            Ok((frames, transcoded)) => {
                ok += 1;
                frames_done += frames;
                multi += (frames > 1) as u32;
                eprintln!(
                    "ok   {k}: {name}, {frames} frames, {:?}{}",
                    t.elapsed(),
                    transcoded.map(|s| format!(", {s}")).unwrap_or_default()
                );
            }
            Err(e) => {
                eprintln!("skip {k}: {name}: {e}");
                if !(e.is_unsupported() || BROKEN.iter().any(|b| name.ends_with(b))) {
                    bad.push(format!("{name}: {e}"));
                }
            }
        }
    }
    eprintln!("{ok} kinds round-tripped ({multi} multi-frame, {frames_done} frames)");
    assert!(bad.is_empty(), "unexpected failures: {bad:#?}");
    assert!(ok >= 40, "too few kinds covered: {ok}");
    assert!(multi >= 8, "too few multi-frame files: {multi}");
    let _ = std::fs::remove_dir_all(&scratch);
}

fn ts(uid: &str) -> TsInfo {
    TsInfo {
        uid: uid.into(),
        big_endian: false,
        deflated: false,
        encapsulated: uid != TsInfo::explicit_le().uid,
    }
}

/// Our encoders on more kinds than the corpus has compressed: every
/// native kind (8/16 bits, signed, 10–16 bits stored, MONOCHROME1/2, RGB,
/// palette, multi-frame) written as RLE, JPEG Lossless SV1 and JPEG-LS,
/// decoded bit-identically by our decoders (dicom-rs codecs, jpeg-decoder)
/// and by dcmtk.
#[test]
fn native_kinds_encode_in_every_lossless_syntax() {
    let Some(corpus) = common::corpus() else {
        return;
    };
    let scratch = veil_test::scratch("codec-cross");
    let mut done = BTreeMap::<&str, u32>::new();
    for (n, (k, path)) in representatives(&corpus).into_iter().enumerate() {
        let src = veil_io::read(&path).expect("parses");
        // (big endian headers would need rewriting in little endian first)
        if src.ts.encapsulated || src.ts.big_endian {
            continue;
        }
        let Ok(mut r) = RawReader::new(&src) else {
            continue;
        };
        let layout = r.layout().clone();
        // the subsampled layout is native-only; keep the test short
        if layout.subsampled() || layout.frame_len() * r.frame_count() as usize > 8 << 20 {
            continue;
        }
        let original = frames(&mut r).expect("decodes");
        for target in [RLE, JPEG_SV1, JPEG_LS] {
            let enc = encode(&layout, &ts(target), &original);
            assert_eq!(enc.ts.uid, target);
            let out = scratch.join(format!("{n}-{target}.dcm"));
            write(&src, &enc, &out);
            dicom_object::open_file(&out).expect("output parses with dicom-rs");
            let (_, ours, _) = reread(&out);
            let (_, theirs, _) = reread(&dcmtk_native(&out, target));
            for (o, (a, b)) in original.iter().zip(ours.iter().zip(&theirs)) {
                assert!(
                    o.data == a.data,
                    "{k} as {target}: frame {} differs",
                    o.index
                );
                assert!(
                    o.data == b.data,
                    "{k} as {target}: frame {} differs (dcmtk)",
                    o.index
                );
            }
            assert_eq!((ours.len(), theirs.len()), (original.len(), original.len()));
            *done.entry(target).or_default() += 1;
        }
    }
    eprintln!("native kinds encoded: {done:?}");
    assert!(done.values().all(|n| *n >= 20), "too few kinds: {done:?}");
    let _ = std::fs::remove_dir_all(&scratch);
}

/// Encode and decode throughput for 512x512 16-bit frames (a real CT
/// slice, repeated), per output syntax, printed for docs/benchmarks.md.
#[test]
fn throughput_512x512_16bit() {
    let Some(corpus) = common::corpus() else {
        return;
    };
    let scratch = veil_test::scratch("codec-speed");
    let path = common::find(&corpus, "CT-MONO2-16-ankle.dcm");
    let src = veil_io::read(&path).expect("parses");
    let mut r = RawReader::new(&src).expect("raw reader");
    let layout = r.layout().clone();
    assert_eq!(
        (layout.rows, layout.cols, layout.bits_alloc),
        (512, 512, 16)
    );
    let one = r.frame(0).expect("frame");
    const N: u32 = 16;
    let frames: Vec<RawFrame> = (0..N)
        .map(|index| RawFrame {
            index,
            data: one.data.clone(),
        })
        .collect();
    let mut multi = src.clone();
    multi.dataset.put(veil_io::Element {
        tag: Tag(0x0028, 0x0008),
        vr: dicom_core::VR::IS,
        value: veil_io::Value::Bytes(format!("{N} ").into_bytes()),
    });
    for target in ["1.2.840.10008.1.2.1", RLE, JPEG_SV1, JPEG_LS] {
        let t = Instant::now();
        let enc = encode(&layout, &ts(target), &frames);
        let enc_s = t.elapsed().as_secs_f64();
        let out = scratch.join(format!("{target}.dcm"));
        write(&multi, &enc, &out);
        let f = veil_io::read(&out).expect("parses");
        let mut r = RawReader::new(&f).expect("raw reader");
        let t = Instant::now();
        for i in 0..N {
            assert!(r.frame(i).expect("decodes").data == one.data);
        }
        let dec_s = t.elapsed().as_secs_f64();
        let size = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
        eprintln!(
            "{target}: encode {:.0} frames/s, decode {:.0} frames/s, {:.2} bytes/sample",
            N as f64 / enc_s,
            N as f64 / dec_s,
            size as f64 / (N as f64 * 512.0 * 512.0)
        );
    }
    let _ = std::fs::remove_dir_all(&scratch);
}

/// Mean absolute difference of two 8-bit frames (optionally inside or
/// outside a box).
fn mean_diff(l: &RawLayout, a: &RawFrame, b: &RawFrame, rect: Rect, inside: bool) -> f64 {
    let (mut sum, mut n) = (0u64, 0u64);
    for i in 0..l.samples() {
        let (x, y, _) = place(l, i);
        let within = x >= rect.x as usize
            && x < (rect.x + rect.w) as usize
            && y >= rect.y as usize
            && y < (rect.y + rect.h) as usize;
        if within == inside {
            sum += (a.data[i] as i64 - b.data[i] as i64).unsigned_abs();
            n += 1;
        }
    }
    sum as f64 / n.max(1) as f64
}

/// JPEG Baseline stays JPEG Baseline only when lossy re-compression is
/// allowed: then the output decodes (ours and dcmtk) close to the source,
/// the box is black, and the header says it is lossy.
#[test]
fn jpeg_baseline_recompressed_only_when_allowed() {
    let Some(corpus) = common::corpus() else {
        return;
    };
    let scratch = veil_test::scratch("codec-lossy");
    let mut done = 0;
    for (n, (k, path)) in representatives(&corpus).into_iter().enumerate() {
        let src = veil_io::read(&path).expect("parses");
        if src.ts.uid != "1.2.840.10008.1.2.4.50" {
            continue;
        }
        let mut r = RawReader::new(&src).expect("raw reader");
        let layout = r.layout().clone();
        let original = frames(&mut r).expect("decodes");
        let rect = Rect {
            x: layout.cols / 4,
            y: layout.rows / 4,
            w: layout.cols / 2,
            h: layout.rows / 2,
        };
        let mut filled = original.clone();
        for f in &mut filled {
            let black = black_value(&layout, f);
            fill_rects(&layout, f, &[rect], &black);
        }
        let lossy = EncodePolicy { allow_lossy: true };
        let mut enc = FrameEncoder::new(&layout, &src.ts, lossy).expect("encoder");
        for f in &filled {
            enc.push(f).expect("encode");
        }
        let enc = enc.finish().expect("finish");
        assert_eq!(enc.ts.uid, src.ts.uid, "{k}: syntax kept");
        assert!(enc.transcoded.is_some(), "{k}: the report hears of it");
        let code = |t: u16| {
            enc.header
                .iter()
                .find(|e| e.tag == Tag(0x0028, t))
                .map(|e| e.value.clone())
        };
        assert_eq!(code(0x2110), Some(veil_io::Value::Bytes(b"01".to_vec())));
        let out = scratch.join(format!("{n}.dcm"));
        write(&src, &enc, &out);
        let (_, ours, _) = reread(&out);
        let (_, theirs, _) = reread(&dcmtk_native(&out, &src.ts.uid));
        assert_eq!((ours.len(), theirs.len()), (original.len(), original.len()));
        for (((o, f), a), b) in original.iter().zip(&filled).zip(&ours).zip(&theirs) {
            // an 8-pixel margin around the box edge rings in JPEG
            let inner = Rect {
                x: rect.x + 8,
                y: rect.y + 8,
                w: rect.w.saturating_sub(16),
                h: rect.h.saturating_sub(16),
            };
            let outside = mean_diff(&layout, o, a, rect, false);
            let box_mean = mean_diff(&layout, f, a, inner, true);
            let peer = mean_diff(&layout, a, b, rect, false);
            if o.index == 0 {
                eprintln!("{k}: mean |diff| outside {outside:.2}, box {box_mean:.2}, ours vs dcmtk {peer:.2}");
            }
            // (tiny test images, a few pixels wide, only have to decode:
            // chroma subsampling dominates there)
            if layout.rows >= 32 && layout.cols >= 32 {
                assert!(outside < 4.0, "{k}: second generation too lossy: {outside}");
                assert!(box_mean < 2.0, "{k}: box not black: {box_mean}");
                assert!(peer < 2.0, "{k}: dcmtk decodes differently: {peer}");
            }
        }
        // and without the recipe's consent: lossless JPEG-LS, as above
        let mut enc =
            FrameEncoder::new(&layout, &src.ts, EncodePolicy::default()).expect("encoder");
        enc.push(&filled[0]).expect("encode");
        assert_eq!(enc.ts().uid, JPEG_LS);
        done += 1;
    }
    assert!(done >= 3, "JPEG Baseline kinds: {done}");
    let _ = std::fs::remove_dir_all(&scratch);
}

/// A lossy codec's ringing carries samples past Bits Stored where the
/// codestream's precision is wider than Bits Stored (a 12-bit image in a
/// 16-bit JPEG 2000 codestream, as some writers make them): letters of
/// 4095 come back as 4096 and more. Masked to 12 bits those turn to
/// 0..a few, the far end of the range, and the letters to speckle for
/// the screen; the frame reader clamps them (unsigned, lossy,
/// encapsulated).
#[test]
fn lossy_overshoot_past_bits_stored_is_clamped() {
    let Some(corpus) = common::corpus() else {
        return;
    };
    let scratch = veil_test::scratch("codec-overshoot");
    let mut src = veil_io::read(&common::find(&corpus, "CT-MONO2-16-ankle.dcm")).expect("parses");
    let mut layout = RawReader::new(&src).expect("raw reader").layout().clone();
    let cols = layout.cols as usize;
    let bar = |x: usize, y: usize| (100..112).contains(&y) && (100..300).contains(&x) && x % 8 < 3;
    let data: Vec<u8> = (0..layout.rows as usize * cols)
        .flat_map(|i| {
            // on a textured background (as a CR's), which the codec's
            // rate has to spend itself on
            let noise = (i as u64).wrapping_mul(6_364_136_223_846_793_005) >> 54;
            let v: u16 = if bar(i % cols, i / cols) {
                4095
            } else {
                3000 + noise as u16
            };
            v.to_le_bytes()
        })
        .collect();
    let frame = RawFrame { index: 0, data };
    let set = |ds: &mut veil_io::DataSet, stored: u16| {
        for (e, v) in [(0x0101u16, stored), (0x0102, stored - 1), (0x0103, 0)] {
            ds.put(veil_io::Element {
                tag: Tag(0x0028, e),
                vr: dicom_core::VR::US,
                value: veil_io::Value::Bytes(v.to_le_bytes().to_vec()),
            });
        }
    };
    // written with 16 bits stored, so the codestream is 16-bit
    (layout.bits_stored, layout.high_bit, layout.signed) = (16, 15, false);
    set(&mut src.dataset, 16);
    let native = scratch.join("native.dcm");
    write(
        &src,
        &encode(&layout, &ts("1.2.840.10008.1.2.1"), &[frame]),
        &native,
    );
    let lossy = scratch.join("lossy.dcm");
    let res = Command::new("gdcmconv")
        .args(["--j2k", "--lossy", "-r", "100"])
        .arg(&native)
        .arg(&lossy)
        .output()
        .expect("run gdcmconv (install libgdcm-tools)");
    assert!(
        res.status.success(),
        "gdcmconv: {}",
        String::from_utf8_lossy(&res.stderr)
    );
    // then said to hold 12
    let mut f = veil_io::read(&lossy).expect("parses");
    assert_eq!(f.ts.uid, "1.2.840.10008.1.2.4.91");
    set(&mut f.dataset, 12);
    let twelve = scratch.join("twelve.dcm");
    let meta = WriteMeta {
        sop_class: "1.2.840.10008.5.1.4.1.1.2".into(),
        sop_instance: "2.25.2".into(),
    };
    veil_io::write_file(&twelve, &meta, &f.ts, &f.dataset, &f.source).expect("write");
    let f = veil_io::read(&twelve).expect("parses");
    // the codec did overshoot (else this test shows nothing)
    let obj = dicom_object::open_file(&twelve).expect("dicom-rs opens it");
    let decoded = dicom_pixeldata::PixelDecoder::decode_pixel_data(&obj).expect("decodes");
    let words: Vec<u16> = decoded
        .data()
        .chunks_exact(2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .collect();
    assert!(
        words.iter().any(|&w| w > 4095),
        "no sample past 12 bits: max {:?}",
        words.iter().max()
    );
    let values = FrameReader::new(&f)
        .expect("frame reader")
        .frame(0)
        .expect("frame")
        .values
        .expect("grayscale values");
    let (mut on, mut low) = (0, 0);
    for (i, &v) in values.iter().enumerate() {
        if bar(i % cols, i / cols) {
            on += 1;
            low += u32::from(v < 3000);
        }
        assert!((0..=4095).contains(&v), "value {v} outside 12 bits");
    }
    assert_eq!(
        low, 0,
        "{low} of {on} letter pixels read far below their 4095"
    );
    // and the samples a cleaned image is written back from are clamped
    // alike (masked, the letters would show as black specks outside any
    // box)
    let raw = &frames(&mut RawReader::new(&f).expect("raw reader")).expect("decodes")[0];
    for (i, b) in raw.data.chunks_exact(2).enumerate() {
        let w = u16::from_le_bytes([b[0], b[1]]);
        assert!(w <= 4095, "sample {w} past 12 bits");
        assert!(!bar(i % cols, i / cols) || w >= 3000, "letter sample {w}");
    }
    let _ = std::fs::remove_dir_all(&scratch);
}
