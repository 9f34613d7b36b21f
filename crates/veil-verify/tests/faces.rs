//! `--faces` on real heads (scripts/fetch-heads.sh): the original Colin27
//! head is a finding of both checks (the geometric one and the cascade),
//! its defaced copy is neither's.

use veil_deface::volume::{read_nifti, write_nifti};
use veil_verify::{verify_tree, Category, Options, VerifyPolicy};

fn faces(out: &std::path::Path) -> Vec<String> {
    let opts = Options {
        out: out.to_path_buf(),
        sources: Vec::new(),
        policy: VerifyPolicy::default(),
        jobs: 1,
        dciodvfy: false,
        patterns: false,
        pixels: false,
        faces: true,
        site_local: false,
    };
    let report = verify_tree(&opts).expect("verify");
    report
        .findings
        .iter()
        .filter(|f| f.finding.category == Category::Face)
        .map(|f| {
            format!(
                "{} {} {} {}",
                f.finding.file, f.finding.detector, f.finding.excerpt, f.fails
            )
        })
        .collect()
}

#[test]
fn a_head_with_a_face_is_a_finding_its_defaced_copy_is_not() {
    let Some(heads) = veil_test::heads() else {
        return;
    };
    let dir = veil_test::scratch("verify-faces");
    let (with, without) = (dir.join("with"), dir.join("without"));
    let (vol, header) = read_nifti(&heads.join("ch2.nii.gz")).expect("read ch2");
    write_nifti(&with.join("head.nii.gz"), &vol, &header).expect("write");
    let d = veil_deface::deface(&vol, &Default::default()).expect("deface");
    write_nifti(&without.join("head.nii.gz"), &d.volume, &header).expect("write");

    let mut found = faces(&with);
    found.sort();
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found[0].starts_with("head.nii.gz face-cascade a face detected in "),
        "{found:?}"
    );
    assert!(
        found[1].starts_with("head.nii.gz face-geometry a nose stands"),
        "{found:?}"
    );
    assert!(
        found.iter().all(|f| f.ends_with("true")),
        "a face fails verification"
    );
    assert!(faces(&without).is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}
