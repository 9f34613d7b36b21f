//! Test fixtures: copies of real corpus files whose PatientID,
//! StudyInstanceUID, SeriesInstanceUID and SOP Instance UID are rewritten
//! with veil-io, so a test decides who the patients are.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use dicom_core::VR;
use veil_core::Tag;
use veil_io::{Element, WriteMeta};

/// The small real CT and MR images the fixtures are made from.
pub fn sources(corpus: &Path) -> Vec<PathBuf> {
    [
        "pydicom__data__test_files__CT_small.dcm",
        "pydicom__data__test_files__MR_small.dcm",
    ]
    .iter()
    .map(|n| corpus.join("pydicom-3.0.2").join(n))
    .collect()
}

/// Writes a copy of `src` to `dst` as instance `n` of study `study` of
/// patient `patient`.
pub fn plant(src: &Path, dst: &Path, patient: &str, study: &str, n: usize) {
    let mut f = veil_io::read(src).expect("corpus file reads");
    let sop = format!("{study}.{n}");
    let put = |f: &mut veil_io::DicomFile, g, e, vr, v: &str| {
        let mut v = v.to_string();
        if v.len() % 2 == 1 {
            v.push(if vr == VR::UI { '\0' } else { ' ' });
        }
        f.dataset.put(Element::text(Tag(g, e), vr, &v));
    };
    put(&mut f, 0x0010, 0x0020, VR::LO, patient);
    put(&mut f, 0x0020, 0x000D, VR::UI, study);
    put(&mut f, 0x0020, 0x000E, VR::UI, &format!("{study}.9"));
    put(&mut f, 0x0008, 0x0018, VR::UI, &sop);
    let meta = WriteMeta {
        sop_class: f.dataset.ascii(Tag(0x0008, 0x0016)).unwrap_or_default(),
        sop_instance: sop,
    };
    veil_io::write_file(dst, &meta, &f.ts, &f.dataset, &f.source).expect("fixture written");
}

/// Sets the AccessionNumber of a fixture written by [`plant`] (what a
/// query by accession number, `veil pull`, finds it by).
pub fn set_accession(path: &Path, accession: &str) {
    let mut f = veil_io::read(path).expect("fixture reads");
    let mut v = accession.to_string();
    if v.len() % 2 == 1 {
        v.push(' ');
    }
    f.dataset
        .put(Element::text(Tag(0x0008, 0x0050), VR::SH, &v));
    let meta = WriteMeta {
        sop_class: f.dataset.ascii(Tag(0x0008, 0x0016)).unwrap_or_default(),
        sop_instance: f.dataset.ascii(Tag(0x0008, 0x0018)).unwrap_or_default(),
    };
    veil_io::write_file(path, &meta, &f.ts, &f.dataset, &f.source).expect("fixture written");
}

/// Every StudyInstanceUID found in the DICOM files under `out`.
pub fn output_studies(out: &Path) -> std::collections::BTreeSet<String> {
    veil_test::files(out)
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
        .filter_map(|p| veil_io::read(p).ok())
        .filter_map(|d| d.dataset.ascii(Tag(0x0020, 0x000D)))
        .collect()
}
