//! The text set's metric can fail and can succeed: built from the real
//! corpus (quick set), scored with no redaction at all (nothing may count
//! as unreadable) and with the oracle redaction (everything must, with no
//! non-text pixel changed), and a broken output must count as a decode
//! failure.

#![allow(clippy::print_stderr)] // tests report their measurements
use std::path::Path;

use veil_plant::textset::{self, BuildOptions, Manifest, OutputMap, SetSize};

fn build(name: &str) -> Option<(std::path::PathBuf, Manifest)> {
    let corpus = veil_test::corpus()?;
    let root = veil_test::scratch(name);
    let m = textset::build(
        &root,
        &BuildOptions {
            corpus,
            seed: 11,
            size: SetSize::Quick,
        },
    )
    .expect("build the quick text set (needs dcmtk, libgdcm-tools)");
    Some((root, m))
}

fn identity(m: &Manifest, in_dir: &Path) -> OutputMap {
    OutputMap {
        outputs: m
            .files
            .iter()
            .map(|f| (f.file.clone(), in_dir.join(&f.file)))
            .collect(),
        review: Default::default(),
    }
}

#[test]
fn unredacted_oracle_and_broken_outputs() {
    let Some((root, m)) = build("textset") else {
        return;
    };
    let in_dir = root.join("in");
    // the quick set still spans photometric interpretations and syntaxes
    let pis: std::collections::BTreeSet<&str> = m.files.iter().map(|f| f.pi.as_str()).collect();
    for pi in [
        "MONOCHROME1",
        "MONOCHROME2",
        "RGB",
        "PALETTE COLOR",
        "YBR_FULL_422",
    ] {
        assert!(pis.contains(pi), "quick set lacks {pi}: {pis:?}");
    }
    assert!(m.files.iter().any(|f| f.lossy) && m.files.iter().any(|f| f.frames > 1));
    assert!(m
        .files
        .iter()
        .all(|f| f.lines.iter().all(|l| l.glyph_pixels > 0)));
    // every file is its own instance
    let uids: std::collections::BTreeSet<String> = m
        .files
        .iter()
        .map(|f| {
            veil_io::read(&in_dir.join(&f.file))
                .expect("read")
                .dataset
                .ascii(veil_core::Tag(0x0008, 0x0018))
                .expect("SOP Instance UID")
        })
        .collect();
    assert_eq!(uids.len(), m.files.len());

    // OUT = IN: nothing erased, nothing unreadable
    let ev = textset::evaluate(&m, &in_dir, &identity(&m, &in_dir)).expect("evaluate");
    eprintln!("identity: {}", ev.summary());
    assert_eq!(ev.evaluated_lines, ev.lines);
    assert!(ev.lines >= 20, "{} lines", ev.lines);
    assert!(ev.recall_percent <= 1.0, "{}", ev.summary());
    assert_eq!(ev.nontext_lossless.changed + ev.nontext_lossy.changed, 0);
    assert_eq!(ev.decode_failures, 0);

    // the oracle: every box filled, nothing else touched
    let out = root.join("oracle");
    let map = textset::oracle_redact(&m, &in_dir, &out).expect("oracle");
    let ev = textset::evaluate(&m, &in_dir, &map).expect("evaluate");
    eprintln!("oracle: {}", ev.summary());
    assert_eq!(ev.unreadable_lines, ev.lines, "{}", ev.summary());
    assert_eq!(ev.nontext_lossless.changed, 0);
    assert!(ev.nontext_lossless.total > 0);
    assert_eq!(ev.decode_failures, 0);

    // a truncated output is a decode failure and its lines count as read;
    // a review entry is counted apart
    let mut map = map;
    let first = m.files[0].file.clone();
    let bytes = std::fs::read(&map.outputs[&first]).expect("read output");
    let broken = root.join("broken.dcm");
    veil_io::atomic::write_all(&broken, &bytes[..bytes.len() / 2]).expect("write");
    map.outputs.insert(first, broken);
    let second = m.files[1].file.clone();
    map.outputs.remove(&second);
    map.review.insert(second);
    let ev = textset::evaluate(&m, &in_dir, &map).expect("evaluate");
    eprintln!("broken: {}", ev.summary());
    assert_eq!(ev.decode_failures, 1);
    assert_eq!(ev.review_files, 1);
    assert_eq!(ev.review_lines, m.files[1].lines.len());
    assert_eq!(
        ev.unreadable_lines,
        ev.evaluated_lines - m.files[0].lines.len()
    );
    let _ = std::fs::remove_dir_all(&root);
}

/// Glyphs changed but still legible (moved halfway towards the
/// background, so every glyph pixel differs from the input and the text
/// still stands out): criterion (a) alone would call these lines erased;
/// the Tesseract read-back must catch most of the high-contrast ones.
#[test]
fn changed_but_legible_text_counts_as_readable() {
    let Some((root, m)) = build("textset-legible") else {
        return;
    };
    let in_dir = root.join("in");
    let out = root.join("faded");
    let map = textset::rewrite_set(&m, &in_dir, &out, |p, fe| {
        for l in &fe.lines {
            let glyphs = textset::line_glyphs(l, p.cols, p.rows);
            let [x, y, _, _] = l.bbox;
            for f in 0..p.frames {
                if l.frame.is_some_and(|lf| lf != f) {
                    continue;
                }
                // the background just left of the line (inside the ring)
                let bg: Vec<i32> = p.at(f, x.saturating_sub(2), y).to_vec();
                for &(gx, gy) in &glyphs {
                    let s = p.at_mut(f, gx, gy);
                    for (c, b) in s.iter_mut().zip(&bg) {
                        *c = (*c + *b) / 2;
                    }
                }
            }
        }
        p.settle_422();
    })
    .expect("rewrite");
    let ev = textset::evaluate(&m, &in_dir, &map).expect("evaluate");
    eprintln!("faded: {}", ev.summary());
    let big_high: Vec<_> = ev
        .details
        .iter()
        .filter(|d| {
            let f = m.files.iter().find(|f| f.file == d.file).expect("file");
            let l = &f.lines[d.index];
            l.contrast == "high" && l.px_height >= 16 && !f.lossy
        })
        .collect();
    let read = big_high.iter().filter(|d| !d.unreadable).count();
    eprintln!(
        "high-contrast lines of 16 px and more read back: {read}/{}",
        big_high.len()
    );
    assert!(!big_high.is_empty());
    assert!(
        read * 4 >= big_high.len() * 3,
        "OCR read back only {read} of {} faded high-contrast lines",
        big_high.len()
    );
    assert!(ev.recall_percent < 60.0, "{}", ev.summary());
    let _ = std::fs::remove_dir_all(&root);
}
