//! `veil deface` and `veil deid --option clean-recognizable-visual-features`
//! on real heads (`veil_test::heads`: scripts/fetch-heads.sh into
//! target/heads, or `VEIL_HEADS`): NIfTI in and out, a DICOM series made from a head in and
//! out, the same head as one Enhanced MR object, a batch, and refused
//! series.
#![allow(clippy::print_stderr)] // tests report what they measured

use std::path::{Path, PathBuf};
use std::process::Command;

use dicom_core::VR;
use veil_core::Tag;
use veil_deface::volume::{self, Volume};
use veil_io::{DataSet, Element, Value};

const VEIL: &str = env!("CARGO_BIN_EXE_veil");

/// How many voxels of two volumes on one grid differ.
fn changed(a: &Volume, b: &Volume) -> usize {
    a.data.iter().zip(&b.data).filter(|(x, y)| x != y).count()
}

/// The heads cache (scripts/fetch-heads.sh; scripts/test.sh fetches it).
fn heads() -> Option<PathBuf> {
    veil_test::heads()
}

fn ds_text(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{x:.6}"))
        .collect::<Vec<_>>()
        .join("\\")
}

/// LPS position of voxel (0, 0, k) of `vol`.
fn lps_position(vol: &Volume, k: usize) -> [f64; 3] {
    let p = vol.to_world([0.0, 0.0, k as f64]);
    [-p[0], -p[1], p[2]]
}

/// `vol`'s slice geometry in DICOM terms: Image Orientation (Patient)
/// (row then column direction, LPS), the unit slice normal, and Pixel
/// Spacing (row spacing, column spacing).
fn slice_geometry(vol: &Volume) -> ([f64; 6], [f64; 3], [f64; 2]) {
    let a = vol.affine;
    let col = |c: usize| [-a[0][c], -a[1][c], a[2][c]];
    let norm = |v: [f64; 3]| {
        let n = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
        [v[0] / n, v[1] / n, v[2] / n]
    };
    let sp = vol.spacing();
    let (r, c) = (norm(col(0)), norm(col(1)));
    (
        [r[0], r[1], r[2], c[0], c[1], c[2]],
        norm(col(2)),
        [sp[1], sp[0]],
    )
}

/// Slice `k` of `vol` as int16 little-endian samples, rows of i.
fn slice_pixels(vol: &Volume, k: usize) -> Vec<u8> {
    let [nx, ny, _] = vol.dims;
    let mut px = Vec::with_capacity(nx * ny * 2);
    for j in 0..ny {
        for i in 0..nx {
            let v = vol.data[vol.index(i, j, k)]
                .round()
                .clamp(-32768.0, 32767.0) as i16;
            px.extend_from_slice(&v.to_le_bytes());
        }
    }
    px
}

fn us(t: Tag, v: u16) -> Element {
    Element::bytes(t, VR::US, v.to_le_bytes().to_vec())
}

/// The patient, study and Image Pixel attributes every test object
/// shares (int16 MONOCHROME2 of `vol`'s slice size).
fn common_module(vol: &Volume, uid: &str, sop_class: &str, sop: &str) -> Vec<Element> {
    vec![
        Element::text(Tag(0x0008, 0x0016), VR::UI, sop_class),
        Element::text(Tag(0x0008, 0x0018), VR::UI, sop),
        Element::text(Tag(0x0008, 0x0060), VR::CS, "MR"),
        Element::text(Tag(0x0010, 0x0010), VR::PN, "HEAD^TEST"),
        Element::text(Tag(0x0010, 0x0020), VR::LO, "HEAD-1"),
        Element::text(Tag(0x0020, 0x000D), VR::UI, &format!("{uid}.100")),
        Element::text(Tag(0x0020, 0x000E), VR::UI, &format!("{uid}.200")),
        us(Tag(0x0028, 0x0002), 1),
        Element::text(Tag(0x0028, 0x0004), VR::CS, "MONOCHROME2"),
        us(Tag(0x0028, 0x0010), vol.dims[1] as u16),
        us(Tag(0x0028, 0x0011), vol.dims[0] as u16),
        us(Tag(0x0028, 0x0100), 16),
        us(Tag(0x0028, 0x0101), 16),
        us(Tag(0x0028, 0x0102), 15),
        us(Tag(0x0028, 0x0103), 1),
    ]
}

/// Writes `vol` as a single-frame MR series (int16, one file per slice
/// along k), positions and orientation from its affine (RAS+ to LPS). With
/// `shift`, slice `shift.0` is displaced by `shift.1` mm along the normal
/// (an uneven series), and with `tilt` every slice moves `tilt` mm along
/// the columns per slice (gantry tilt).
fn write_series(
    vol: &Volume,
    dir: &Path,
    uid: &str,
    shift: Option<(usize, f64)>,
    tilt: f64,
) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let (iop, knorm, sp) = slice_geometry(vol);
    let mut files = Vec::new();
    for k in 0..vol.dims[2] {
        let mut p = lps_position(vol, k);
        if let Some((s, d)) = shift {
            if k == s {
                for (c, x) in p.iter_mut().enumerate() {
                    *x += d * knorm[c];
                }
            }
        }
        for (c, x) in p.iter_mut().enumerate() {
            *x += tilt * k as f64 * iop[3 + c];
        }
        let sop = format!("{uid}.{}", k + 1);
        let mut ds = DataSet::of(common_module(vol, uid, "1.2.840.10008.5.1.4.1.1.4", &sop));
        for e in [
            Element::text(Tag(0x0020, 0x0013), VR::IS, &(k + 1).to_string()),
            Element::text(Tag(0x0020, 0x0032), VR::DS, &ds_text(&p)),
            Element::text(Tag(0x0020, 0x0037), VR::DS, &ds_text(&iop)),
            Element::text(Tag(0x0028, 0x0030), VR::DS, &ds_text(&sp)),
            Element::bytes(Tag(0x7FE0, 0x0010), VR::OW, slice_pixels(vol, k)),
        ] {
            ds.put(e);
        }
        // Slices are named out of order on purpose: sorting is by position.
        let f = dir.join(format!("s{:04}.dcm", (k * 7919) % 10007));
        veil_io::write_explicit_le(&f, &ds).unwrap();
        files.push(f);
    }
    files
}

const ENHANCED_MR: &str = "1.2.840.10008.5.1.4.1.1.4.1";

/// A sequence of one item.
fn seq1(t: Tag, item: Vec<Element>) -> Element {
    Element::sequence(t, vec![DataSet::of(item)])
}

/// An AT value (group, element), little endian.
fn at(t: Tag, v: Tag) -> Element {
    let mut b = v.0.to_le_bytes().to_vec();
    b.extend_from_slice(&v.1.to_le_bytes());
    Element::bytes(t, VR::AT, b)
}

/// Writes `vol` as one Enhanced MR Image Storage object at `path`: one
/// frame per slice, stored in reverse slice order on purpose (sorting is
/// by position), Plane Position per frame, Plane Orientation and Pixel
/// Measures shared, and the Enhanced MR modules' attributes dciodvfy asks
/// for. With `cine`, only two frames, both at the first slice's position
/// (a time series: not a volume).
fn write_enhanced(vol: &Volume, path: &Path, uid: &str, cine: bool) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let (iop, _, sp) = slice_geometry(vol);
    let nz = vol.dims[2];
    let order: Vec<usize> = if cine {
        vec![0, 1]
    } else {
        (0..nz).rev().collect()
    };
    let text = |g: u16, e: u16, vr: VR, v: &str| Element::text(Tag(g, e), vr, v);
    let dim_org = format!("{uid}.300");
    // DERIVED: the acquisition macros an ORIGINAL image needs (coils,
    // timing, pulse sequence) say nothing this test is about
    let image_type = "DERIVED\\PRIMARY\\M\\NONE";
    let mut pixels = Vec::new();
    let mut per_frame = Vec::new();
    for &k in &order {
        pixels.extend(slice_pixels(vol, k));
        let pos = lps_position(vol, if cine { 0 } else { k });
        let index = if cine { 1 } else { (k + 1) as u32 };
        per_frame.push(DataSet::of([
            seq1(
                Tag(0x0020, 0x9111),
                vec![
                    text(0x0018, 0x9074, VR::DT, "20240101120000"),
                    text(0x0018, 0x9151, VR::DT, "20240101120000"),
                    Element::bytes(Tag(0x0018, 0x9220), VR::FD, 1.0f64.to_le_bytes().to_vec()),
                    Element::bytes(Tag(0x0020, 0x9157), VR::UL, index.to_le_bytes().to_vec()),
                ],
            ),
            seq1(
                Tag(0x0020, 0x9113),
                vec![text(0x0020, 0x0032, VR::DS, &ds_text(&pos))],
            ),
        ]));
    }
    let frame_type = |t: u16| {
        vec![
            text(0x0008, t, VR::CS, image_type),
            text(0x0008, 0x9205, VR::CS, "MONOCHROME"),
            text(0x0008, 0x9206, VR::CS, "VOLUME"),
            text(0x0008, 0x9207, VR::CS, "NONE"),
            text(0x0008, 0x9208, VR::CS, "MAGNITUDE"),
            text(0x0008, 0x9209, VR::CS, "T1"),
        ]
    };
    let shared = DataSet::of([
        seq1(Tag(0x0018, 0x9226), frame_type(0x9007)),
        seq1(
            Tag(0x0020, 0x9071),
            vec![
                seq1(
                    Tag(0x0008, 0x2218),
                    vec![
                        text(0x0008, 0x0100, VR::SH, "T-D1100"),
                        text(0x0008, 0x0102, VR::SH, "SRT"),
                        text(0x0008, 0x0104, VR::LO, "Head"),
                    ],
                ),
                text(0x0020, 0x9072, VR::CS, "U"),
            ],
        ),
        seq1(
            Tag(0x0020, 0x9116),
            vec![text(0x0020, 0x0037, VR::DS, &ds_text(&iop))],
        ),
        seq1(
            Tag(0x0028, 0x9145),
            vec![
                text(0x0028, 0x1052, VR::DS, "0"),
                text(0x0028, 0x1053, VR::DS, "1"),
                text(0x0028, 0x1054, VR::LO, "US"),
            ],
        ),
        seq1(
            Tag(0x0028, 0x9110),
            vec![
                text(0x0018, 0x0050, VR::DS, &ds_text(&[vol.spacing()[2]])),
                text(0x0028, 0x0030, VR::DS, &ds_text(&sp)),
            ],
        ),
    ]);
    let mut ds = DataSet::of(common_module(vol, uid, ENHANCED_MR, &format!("{uid}.1")));
    let mut more = frame_type(0x0008);
    more.extend([
        text(0x0008, 0x0020, VR::DA, "20240101"),
        text(0x0008, 0x0023, VR::DA, "20240101"),
        text(0x0008, 0x002A, VR::DT, "20240101120000"),
        text(0x0008, 0x0030, VR::TM, "120000"),
        text(0x0008, 0x0033, VR::TM, "120000"),
        text(0x0008, 0x0050, VR::SH, ""),
        text(0x0008, 0x0070, VR::LO, "VEIL TEST"),
        text(0x0008, 0x0090, VR::PN, ""),
        text(0x0008, 0x1090, VR::LO, "PHANTOM"),
        text(0x0010, 0x0030, VR::DA, ""),
        text(0x0010, 0x0040, VR::CS, ""),
        text(0x0018, 0x0087, VR::DS, "3"),
        text(0x0018, 0x1000, VR::LO, "1"),
        text(0x0018, 0x1020, VR::LO, "1"),
        text(0x0018, 0x9004, VR::CS, "RESEARCH"),
        text(0x0018, 0x9005, VR::SH, "T1"),
        text(0x0018, 0x9008, VR::CS, "GRADIENT"),
        text(0x0018, 0x9064, VR::CS, "NONE"),
        text(0x0018, 0x9100, VR::CS, "1H"),
        text(0x0018, 0x5100, VR::CS, "HFS"),
        text(0x0020, 0x0010, VR::SH, ""),
        text(0x0020, 0x0011, VR::IS, "1"),
        text(0x0020, 0x0013, VR::IS, "1"),
        text(0x0020, 0x0052, VR::UI, &format!("{uid}.400")),
        text(0x0020, 0x1040, VR::LO, ""),
        seq1(
            Tag(0x0020, 0x9221),
            vec![text(0x0020, 0x9164, VR::UI, &dim_org)],
        ),
        seq1(
            Tag(0x0020, 0x9222),
            vec![
                text(0x0020, 0x9164, VR::UI, &dim_org),
                at(Tag(0x0020, 0x9165), Tag(0x0020, 0x0032)),
                at(Tag(0x0020, 0x9167), Tag(0x0020, 0x9113)),
            ],
        ),
        text(0x0028, 0x0008, VR::IS, &order.len().to_string()),
        text(0x0028, 0x0301, VR::CS, "NO"),
        text(0x0028, 0x2110, VR::CS, "00"),
        text(0x2050, 0x0020, VR::CS, "IDENTITY"),
        Element::sequence(Tag(0x0040, 0x0555), vec![]),
        Element::sequence(Tag(0x5200, 0x9229), vec![shared]),
        Element::sequence(Tag(0x5200, 0x9230), per_frame),
        Element::bytes(Tag(0x7FE0, 0x0010), VR::OW, pixels),
    ]);
    for e in more {
        ds.put(e);
    }
    veil_io::write_explicit_le(path, &ds).unwrap();
}

fn brain_unchanged(before: &Volume, after: &Volume, brain: &Volume) -> f64 {
    let mut n = 0usize;
    let mut same = 0usize;
    for ((b, x), y) in brain.data.iter().zip(&before.data).zip(&after.data) {
        if *b > 0.0 {
            n += 1;
            same += (x == y) as usize;
        }
    }
    same as f64 / n as f64
}

/// `veil deface --json ARGS...`, which must succeed; its JSON line.
fn deface<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> serde_json::Value {
    let r = Command::new(VEIL)
        .args(["deface", "--json"])
        .args(args)
        .output()
        .unwrap();
    assert_eq!(
        r.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    serde_json::from_slice(&r.stdout).expect("one JSON line")
}

/// `veil deid IN --option clean-recognizable-visual-features` into `out`
/// and `review`, with a new key in `dir`, which must exit 0 or 1 (1:
/// something went to review); its exit code.
fn deid_defacing(dir: &Path, input: &Path, out: &Path, review: &Path) -> i32 {
    let key = veil_test::new_key(VEIL, dir);
    let r = Command::new(VEIL)
        .arg("deid")
        .arg(input)
        .arg("--out")
        .arg(out)
        .arg("--review")
        .arg(review)
        .arg("--key")
        .arg(&key)
        .args(["--option", "clean-recognizable-visual-features"])
        .output()
        .unwrap();
    let code = r.status.code().unwrap_or(-1);
    assert!(
        (0..=1).contains(&code),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    code
}

fn has_code(ds: &DataSet) -> bool {
    match ds.get(Tag(0x0012, 0x0064)).map(|e| &e.value) {
        Some(Value::Sequence(items)) => items
            .iter()
            .any(|i| i.ascii(Tag(0x0008, 0x0100)).as_deref() == Some("113102")),
        _ => false,
    }
}

#[test]
fn nifti_in_nifti_out_same_header_brain_kept() {
    let Some(h) = heads() else { return };
    let dir = veil_test::scratch("deface-nifti");
    let out = dir.join("out.nii.gz");
    let mask = dir.join("mask.nii.gz");
    let summary = deface(&[
        h.join("ch2.nii.gz"),
        out.clone(),
        "--mask-out".into(),
        mask.clone(),
        "--qc".into(),
        dir.join("qc.png"),
    ]);
    assert_eq!(summary["modality"], "MR");
    let qc = std::fs::read(dir.join("qc.png")).unwrap();
    assert!(qc.starts_with(b"\x89PNG"), "QC picture written");
    // The face check sees the face before and none after.
    let check = |f: &Path| {
        Command::new(VEIL)
            .args(["deface", "--check-only"])
            .arg(f)
            .status()
            .unwrap()
            .code()
    };
    assert_eq!(
        check(&h.join("ch2.nii.gz")),
        Some(1),
        "face in the original"
    );
    assert_eq!(check(&out), Some(0), "no face after defacing");
    let (before, hb) = volume::read_nifti(&h.join("ch2.nii.gz")).unwrap();
    let (after, ha) = volume::read_nifti(&out).unwrap();
    assert_eq!(format!("{hb:?}"), format!("{ha:?}"), "header kept");
    assert_eq!(before.affine, after.affine);
    let bet = Volume::read_nifti(&h.join("ch2bet.nii.gz")).unwrap();
    let kept = brain_unchanged(&before, &after, &bet);
    assert!(kept >= 0.999, "ch2bet brain voxels unchanged: {kept}");
    let m = Volume::read_nifti(&mask).unwrap();
    let removed = m.data.iter().filter(|&&v| v > 0.0).count();
    // The face of ch2 (eyes, nose, brows, cheeks) is well over 100 ml.
    assert!(removed > 100_000, "removed {removed}");
    // Removed voxels hold the background, the rest is untouched.
    let fill = summary["fill"].as_f64().unwrap() as f32;
    for ((mv, b), a) in m.data.iter().zip(&before.data).zip(&after.data) {
        if *mv > 0.0 {
            assert!((a - fill).abs() <= 0.5, "removed voxel not background");
        } else {
            assert_eq!(a, b);
        }
    }
}

#[test]
fn dicom_series_in_same_series_out_and_in_a_batch() {
    let Some(h) = heads() else { return };
    let dir = veil_test::scratch("deface-dicom");
    let (vol, _) = volume::read_nifti(&h.join("ch2.nii.gz")).unwrap();
    // Flip the slice order and the columns: the same head in patient
    // space, stored differently.
    let mut flipped = vol.clone();
    let [nx, ny, nz] = vol.dims;
    for k in 0..nz {
        for j in 0..ny {
            for i in 0..nx {
                let at = flipped.index(i, j, k);
                flipped.data[at] = vol.data[vol.index(nx - 1 - i, j, nz - 1 - k)];
            }
        }
    }
    for r in 0..3 {
        flipped.affine[r][3] +=
            vol.affine[r][0] * (nx - 1) as f64 + vol.affine[r][2] * (nz - 1) as f64;
        flipped.affine[r][0] = -vol.affine[r][0];
        flipped.affine[r][2] = -vol.affine[r][2];
    }
    let series = dir.join("series");
    let inputs = write_series(&flipped, &series, "2.25.1234", None, 0.0);
    let out = dir.join("out");
    deface(&[&series, &out]);
    let outs = veil_test::files(&out);
    assert_eq!(outs.len(), inputs.len(), "every instance kept");
    let mut sops_in: Vec<String> = inputs
        .iter()
        .map(|f| {
            veil_io::read(f)
                .unwrap()
                .dataset
                .ascii(Tag(0x0008, 0x0018))
                .unwrap()
        })
        .collect();
    let mut sops_out = Vec::new();
    for f in &outs {
        let d = veil_io::read(f).unwrap();
        assert!(
            has_code(&d.dataset),
            "113102 in DeidentificationMethodCodeSequence"
        );
        sops_out.push(d.dataset.ascii(Tag(0x0008, 0x0018)).unwrap());
    }
    sops_in.sort();
    sops_out.sort();
    assert_eq!(sops_in, sops_out);
    // Same result in patient space as the NIfTI path on the unflipped head.
    let after = Volume::read_dicom_series(&out).unwrap();
    let direct = veil_deface::deface(&vol, &Default::default()).unwrap();
    let bet = Volume::read_nifti(&h.join("ch2bet.nii.gz")).unwrap();
    let mut differ = 0usize;
    let mut brain_changed = 0usize;
    for k in 0..nz {
        for j in 0..ny {
            for i in 0..nx {
                let a = after.data[after.index(nx - 1 - i, j, nz - 1 - k)];
                let b = direct.volume.data[vol.index(i, j, k)].round();
                differ += (a != b) as usize;
                if bet.data[vol.index(i, j, k)] > 0.0 && a != vol.data[vol.index(i, j, k)].round() {
                    brain_changed += 1;
                }
            }
        }
    }
    let total = nx * ny * nz;
    assert!(
        differ * 1000 < total,
        "{differ} of {total} voxels differ from the NIfTI path"
    );
    assert!(brain_changed * 1000 < bet.data.iter().filter(|&&v| v > 0.0).count());

    // The same series in a batch, with a lone localizer beside it.
    let loc = dir.join("series/localizer.dcm");
    let src = veil_io::read(&inputs[0]).unwrap();
    let mut one = src.dataset.clone();
    one.put(Element::text(Tag(0x0008, 0x0018), VR::UI, "2.25.999.1"));
    one.put(Element::text(Tag(0x0020, 0x000E), VR::UI, "2.25.999.2"));
    let meta = veil_io::WriteMeta {
        sop_class: "1.2.840.10008.5.1.4.1.1.4".into(),
        sop_instance: "2.25.999.1".into(),
    };
    veil_io::write_file(&loc, &meta, &src.ts, &one, &src.source).unwrap();
    let bout = dir.join("batch");
    let review = dir.join("review");
    deid_defacing(&dir, &series, &bout, &review);
    let written = veil_test::files(&bout);
    assert_eq!(
        written.len(),
        inputs.len(),
        "the defaced series is released"
    );
    let reviewed = veil_test::files(&review);
    assert_eq!(
        reviewed.len(),
        1,
        "the localizer goes to review: {reviewed:?}"
    );
    assert!(
        !review.join(".veil-deface").exists(),
        "parked pixels removed"
    );
    let released = Volume::read_dicom_series(&bout).unwrap();
    let same = after
        .data
        .iter()
        .zip(&released.data)
        .filter(|(a, b)| a == b)
        .count();
    assert_eq!(same, total, "the batch defaces as `veil deface` does");
    for f in &written {
        assert!(has_code(&veil_io::read(f).unwrap().dataset));
    }
}

/// Runs a peer tool on every file of `from` into `to` (same names).
fn transcode(from: &[PathBuf], to: &Path, tool: &str, args: &[&str]) -> Vec<PathBuf> {
    std::fs::create_dir_all(to).unwrap();
    from.iter()
        .map(|f| {
            let dest = to.join(f.file_name().unwrap());
            let r = Command::new(tool)
                .args(args)
                .arg(f)
                .arg(&dest)
                .output()
                .unwrap_or_else(|e| panic!("{tool} not runnable: {e}"));
            assert!(r.status.success(), "{tool} failed");
            dest
        })
        .collect()
}

/// A head series stored compressed (RLE, JPEG lossless, JPEG 2000
/// lossless, by dcmtk and GDCM) or big endian is defaced exactly as the
/// same series stored uncompressed: the decoded samples are the same, so
/// the defaced volume is too. The output keeps the source's transfer
/// syntax where Veil has a lossless encoder for it (JPEG 2000 becomes
/// JPEG-LS lossless, and the note says so), alone and in a batch.
#[test]
fn compressed_and_big_endian_series_deface_as_the_native_one() {
    let Some(h) = heads() else { return };
    let dir = veil_test::scratch("deface-compressed");
    let (vol, _) = volume::read_nifti(&h.join("ch2.nii.gz")).unwrap();
    let inputs = write_series(&vol, &dir.join("native"), "2.25.4321", None, 0.0);
    let native = deface(&[dir.join("native"), dir.join("native-out")]);
    assert!(native["note"].is_null());
    let want = Volume::read_dicom_series(&dir.join("native-out")).unwrap();
    let before = Volume::read_dicom_series(&dir.join("native")).unwrap();
    let removed = changed(&want, &before);
    assert!(
        removed > 10_000,
        "the face was removed ({removed} voxels changed)"
    );
    let ts_of = |f: &Path| veil_io::read(f).unwrap().ts.uid;
    let cases: [(&str, &str, &[&str], &str); 4] = [
        ("rle", "dcmcrle", &[], "1.2.840.10008.1.2.5"),
        ("jpeg-ll", "dcmcjpeg", &["+e1"], "1.2.840.10008.1.2.4.70"),
        ("big-endian", "dcmconv", &["+tb"], "1.2.840.10008.1.2.2"),
        ("j2k", "gdcmconv", &["--j2k"], "1.2.840.10008.1.2.4.80"),
    ];
    for (name, tool, args, out_ts) in cases {
        let series = dir.join(name);
        let files = transcode(&inputs, &series, tool, args);
        let out = dir.join(format!("{name}-out"));
        let r = deface(&[&series, &out]);
        assert_eq!(
            r["note"].is_string(),
            name == "j2k",
            "{name}: transcoding said only where it happened: {r}"
        );
        let outs = veil_test::files(&out);
        assert_eq!(outs.len(), files.len(), "{name}: every instance kept");
        for f in &outs {
            assert_eq!(ts_of(f), out_ts, "{name}: output syntax");
        }
        let got = Volume::read_dicom_series(&out).unwrap();
        assert!(
            got.data == want.data,
            "{name}: defaced as the native series"
        );
        if name == "jpeg-ll" {
            // and in a batch
            let bout = dir.join("batch");
            let code = deid_defacing(&dir, &series, &bout, &dir.join("review"));
            assert_eq!(code, 0, "nothing to review");
            let written = veil_test::files(&bout);
            assert_eq!(written.len(), files.len(), "the defaced series is released");
            for f in &written {
                assert_eq!(ts_of(f), out_ts, "batch output syntax");
                assert!(has_code(&veil_io::read(f).unwrap().dataset));
            }
            let released = Volume::read_dicom_series(&bout).unwrap();
            assert!(
                released.data == want.data,
                "the batch defaces as `veil deface` does"
            );
        }
    }
}

#[test]
fn uneven_or_tilted_series_are_refused_with_the_reason() {
    let Some(h) = heads() else { return };
    let dir = veil_test::scratch("deface-refuse");
    let (vol, _) = volume::read_nifti(&h.join("ch2.nii.gz")).unwrap();
    // A smaller piece is enough: the series is refused before defacing.
    let small = Volume {
        dims: [vol.dims[0], vol.dims[1], 8],
        data: vol.data[..vol.dims[0] * vol.dims[1] * 8].to_vec(),
        affine: vol.affine,
    };
    for (name, shift, tilt, want) in [
        ("uneven", Some((4, 0.6)), 0.0, "uneven slice spacing"),
        ("tilt", None, 0.3, "gantry tilt"),
    ] {
        let s = dir.join(name);
        write_series(&small, &s, "2.25.77", shift, tilt);
        let r = Command::new(VEIL)
            .args(["deface"])
            .arg(&s)
            .arg(dir.join(format!("{name}-out")))
            .output()
            .unwrap();
        assert_eq!(r.status.code(), Some(2));
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(err.contains(want), "{name}: {err}");
        assert!(
            !err.contains(s.to_string_lossy().as_ref()),
            "no path in the message"
        );
    }
}

/// `veil verify ROOT --faces`: its face findings as "KIND DETECTOR"
/// (KIND nifti or series), sorted; the report goes into `dir`.
fn face_findings(dir: &Path, root: &Path) -> Vec<String> {
    let rep = dir.join("report.json");
    let st = Command::new(VEIL)
        .arg("verify")
        .arg(root)
        .args(["--faces", "--json"])
        .arg(&rep)
        .output()
        .unwrap();
    assert!(matches!(st.status.code(), Some(0 | 1)), "verify ran");
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&rep).unwrap()).unwrap();
    let mut v: Vec<String> = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["category"] == "face")
        .map(|f| {
            let file = f["file"].as_str().unwrap();
            let kind = if file.ends_with(".nii.gz") {
                "nifti"
            } else {
                "series"
            };
            format!("{kind} {}", f["detector"].as_str().unwrap())
        })
        .collect();
    v.sort();
    v
}

/// `veil verify --faces` (issue 21): on a head as a NIfTI file and as a
/// DICOM series, both checks report the face (`face-geometry`, the
/// defacer's own nose measure, and `face-cascade`, verify's own reader,
/// renders and face detector); on `veil deface`'s outputs, neither does.
#[test]
fn verify_faces_reports_both_checks_and_nothing_after_defacing() {
    let Some(h) = heads() else { return };
    let dir = veil_test::scratch("verify-faces-cli");
    let (vol, header) = volume::read_nifti(&h.join("ch2.nii.gz")).unwrap();
    let orig = dir.join("orig");
    volume::write_nifti(&orig.join("head.nii.gz"), &vol, &header).unwrap();
    write_series(&vol, &orig.join("series"), "2.25.4321", None, 0.0);
    let faces = |root: &Path| face_findings(&dir, root);
    assert_eq!(
        faces(&orig),
        [
            "nifti face-cascade",
            "nifti face-geometry",
            "series face-cascade",
            "series face-geometry"
        ]
    );
    let out = dir.join("out");
    deface(&[orig.join("head.nii.gz"), out.join("head.nii.gz")]);
    deface(&[orig.join("series"), out.join("series")]);
    assert_eq!(faces(&out), Vec::<String>::new(), "no face after defacing");
    let _ = std::fs::remove_dir_all(&dir);
}

/// dciodvfy's errors (values left out) on `p`, or `None` where dciodvfy
/// is not installed (scripts/system-deps.sh installs it).
fn dciodvfy(p: &Path) -> Option<std::collections::BTreeSet<String>> {
    if !Path::new("/usr/bin/dciodvfy").exists() {
        return None;
    }
    let e = veil_verify::set::dciodvfy_errors(p).expect("run dciodvfy");
    Some(e.iter().map(|l| l.to_string()).collect())
}

/// The one object under `dir`, parsed.
fn only_object(dir: &Path) -> (PathBuf, veil_io::DicomFile) {
    let files = veil_test::files(dir);
    assert_eq!(files.len(), 1, "one object: {files:?}");
    let f = veil_io::read(&files[0]).unwrap();
    (files[0].clone(), f)
}

/// Issue 21: an Enhanced MR object (one object, a frame per slice,
/// geometry in the functional groups) is defaced exactly as the classic
/// series of the same head: one object out, same SOP Instance UID and
/// transfer syntax, code 113102, the same voxels after sorting; `veil
/// verify --faces` finds the face before and none after; dciodvfy finds
/// no error on the output that it did not find on the input.
#[test]
fn enhanced_mr_object_defaced_as_the_classic_series() {
    let Some(h) = heads() else { return };
    let dir = veil_test::scratch("deface-enhanced");
    let (vol, _) = volume::read_nifti(&h.join("ch2.nii.gz")).unwrap();
    write_series(&vol, &dir.join("classic"), "2.25.5151", None, 0.0);
    let input = dir.join("enhanced/head.dcm");
    write_enhanced(&vol, &input, "2.25.6161", false);
    let classic = deface(&[dir.join("classic"), dir.join("classic-out")]);
    let out = dir.join("enhanced-out");
    let enhanced = deface(&[dir.join("enhanced"), out.clone()]);
    eprintln!("classic: {classic}\nenhanced: {enhanced}");
    assert_eq!(enhanced["instances"], 1);
    assert_eq!(enhanced["frames"], vol.dims[2]);
    for k in [
        "removed_voxels",
        "brain_voxels",
        "brain_voxels_unchanged_fraction",
    ] {
        assert_eq!(enhanced[k], classic[k], "{k} as for the classic series");
    }
    let src = veil_io::read(&input).unwrap();
    let (out_file, got) = only_object(&out);
    for t in [
        (0x0008, 0x0016),
        (0x0008, 0x0018),
        (0x0020, 0x000E),
        (0x0028, 0x0008),
    ] {
        assert_eq!(
            got.dataset.ascii(Tag(t.0, t.1)),
            src.dataset.ascii(Tag(t.0, t.1)),
            "{t:04X?} kept"
        );
    }
    assert_eq!(got.ts.uid, src.ts.uid, "same transfer syntax");
    assert!(has_code(&got.dataset), "113102 added");
    let want = Volume::read_dicom_series(&dir.join("classic-out")).unwrap();
    let after = Volume::read_dicom_series(&out).unwrap();
    assert_eq!(after.dims, want.dims);
    for (a, b) in after
        .affine
        .iter()
        .flatten()
        .zip(want.affine.iter().flatten())
    {
        assert!((a - b).abs() < 1e-3, "same grid in patient space");
    }
    let differ = changed(&after, &want);
    assert_eq!(differ, 0, "frame by frame as the classic series' slices");
    let before = Volume::read_dicom_series(&dir.join("enhanced")).unwrap();
    let removed = changed(&before, &after);
    eprintln!("enhanced: {removed} voxels changed");
    assert!(removed > 10_000, "the face was removed ({removed})");

    let faces = face_findings(&dir, &dir.join("enhanced"));
    eprintln!("verify --faces on the original: {faces:?}");
    assert_eq!(faces, ["series face-cascade", "series face-geometry"]);
    let faces = face_findings(&dir, &out);
    eprintln!("verify --faces after defacing: {faces:?}");
    assert!(faces.is_empty(), "no face after defacing: {faces:?}");

    if let (Some(e_in), Some(e_out)) = (dciodvfy(&input), dciodvfy(&out_file)) {
        let new: Vec<&String> = e_out.difference(&e_in).collect();
        eprintln!(
            "dciodvfy: {} errors on the input, {} on the output, {} new",
            e_in.len(),
            e_out.len(),
            new.len()
        );
        assert!(new.is_empty(), "new dciodvfy errors: {new:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 21, in a batch: the enhanced object is a series of its own and
/// is released defaced with code 113102; a multi-frame object whose
/// frames lie at one position (a cine) is not a volume and goes to review
/// with the reason.
#[test]
fn enhanced_object_in_a_batch_and_a_cine_to_review() {
    let Some(h) = heads() else { return };
    let dir = veil_test::scratch("deface-enhanced-batch");
    let (vol, _) = volume::read_nifti(&h.join("ch2.nii.gz")).unwrap();
    let input = dir.join("in");
    write_enhanced(&vol, &input.join("head.dcm"), "2.25.7171", false);
    write_enhanced(&vol, &input.join("cine.dcm"), "2.25.8181", true);
    let (bout, review) = (dir.join("out"), dir.join("review"));
    deid_defacing(&dir, &input, &bout, &review);
    let (_, got) = only_object(&bout);
    assert!(has_code(&got.dataset), "released with 113102");
    assert_eq!(
        got.dataset.ascii(Tag(0x0028, 0x0008)).as_deref(),
        Some(vol.dims[2].to_string().as_str())
    );
    let after = Volume::read_dicom_series(&bout).unwrap();
    // the head alone (the input folder holds two series)
    let alone = dir.join("head");
    std::fs::create_dir_all(&alone).unwrap();
    std::fs::copy(input.join("head.dcm"), alone.join("head.dcm")).unwrap();
    let before = Volume::read_dicom_series(&alone).unwrap();
    let removed = changed(&before, &after);
    eprintln!("batch: {removed} voxels changed");
    assert!(removed > 10_000, "defaced in the batch ({removed})");
    assert_eq!(veil_test::files(&review).len(), 1, "the cine is held");
    let r = Command::new(VEIL)
        .args(["review", "list"])
        .arg(&review)
        .arg("--json")
        .output()
        .unwrap();
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&r.stdout).unwrap();
    eprintln!("review: {rows:?}");
    assert_eq!(rows.len(), 1);
    let reason = rows[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("frames at the same position: more than one stack or time point"),
        "{reason}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
