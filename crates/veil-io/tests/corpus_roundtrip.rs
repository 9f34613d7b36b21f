//! Every corpus file that Veil can read must write back to a file that
//! dicom-rs parses, with the same transfer syntax and the same elements.
//! Runs when VEIL_CORPUS points at a corpus (scripts/fetch-corpus.sh).
#![allow(clippy::print_stderr)] // tests report what they measured

#[test]
fn corpus_round_trip_parses_with_dicom_rs() {
    let Some(root) = veil_test::corpus() else {
        return;
    };
    let all = veil_test::files(&root);
    let tmp = std::env::temp_dir().join(format!("veil-io-rt-{}", std::process::id()));
    let (mut ok, mut rejected, mut failed) = (0, 0, Vec::new());
    for (i, p) in all.iter().enumerate() {
        let f = match veil_io::read(p) {
            Ok(f) => f,
            Err(_) => {
                rejected += 1;
                continue;
            }
        };
        if f.is_dicomdir() {
            continue;
        }
        let out = tmp.join(format!("{i}.dcm"));
        let meta = veil_io::WriteMeta {
            sop_class: f
                .sop_class()
                .unwrap_or_else(|| "1.2.840.10008.5.1.4.1.1.7".into()),
            // the meta is rebuilt by de-identification anyway; some corpus
            // files carry invalid UIDs that dicom-rs rejects in the meta
            sop_instance: format!("2.25.{i}"),
        };
        veil_io::write_file(&out, &meta, &f.ts, &f.dataset, &f.source).unwrap();
        match dicom_object::open_file(&out) {
            Ok(obj) => {
                assert_eq!(obj.meta().transfer_syntax(), f.ts.uid, "{}", p.display());
                let again = veil_io::read(&out).expect("re-read own output");
                assert_eq!(
                    again.dataset.elements.len(),
                    f.dataset
                        .elements
                        .iter()
                        .filter(|e| !e.tag.is_group_length())
                        .count(),
                    "{}",
                    p.display()
                );
                ok += 1;
            }
            Err(e) => failed.push(format!("{}: {e}", p.display())),
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    eprintln!(
        "round trip: {ok} ok, {rejected} rejected by veil-io, {} failed",
        failed.len()
    );
    assert!(failed.is_empty(), "{failed:#?}");
    assert!(ok > 250);
}
