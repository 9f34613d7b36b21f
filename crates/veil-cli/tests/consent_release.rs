//! The consent and disclosure commands end to end, as a site runs them:
//! recipients with their own keys, FHIR consent import, a release that
//! refuses what consent denies and ambiguous studies, a withdrawal that
//! lists whom to notify, disclosures with inclusion proofs, retention,
//! audit exports; and no patient identifier in any output but the site's
//! own consent export.

#[path = "../../veil-release/tests/common/mod.rs"]
mod common;

use std::path::Path;

fn veil(home: &Path, args: &[&str]) -> (i32, String) {
    veil_test::output(veil_test::veil_command(env!("CARGO_BIN_EXE_veil"), home, None).args(args))
}

const PHI: [&str; 5] = ["E2E-ALICE", "E2E-BOB", "E2E-CAROL", "E2E-DAVE", "9.7779."];

fn no_phi(what: &str, text: &str) {
    for p in PHI {
        assert!(!text.contains(p), "{what} contains {p}: {text}");
    }
}

#[test]
fn release_withdraw_disclose_retain() {
    let Some(corpus) = veil_test::corpus() else {
        return;
    };
    let home = veil_test::scratch("consent-release");
    let (code, out) = veil(&home, &["init"]);
    assert_eq!(code, 0, "{out}");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let recipe = home.join("r.toml");
    veil_io::atomic::write_all(&recipe, b"name = \"vendor-x\"\nversion = \"2\"\n").unwrap();

    let (code, out) = veil(
        &home,
        &[
            "recipient",
            "add",
            "acme",
            "--purpose",
            "ai-training",
            "--recipe",
            &s(&recipe),
            "--retention-days",
            "0",
            "--category",
            "ai-vendor",
            "--contact",
            "dpo@acme.example",
        ],
    );
    assert_eq!(code, 0, "{out}");
    let key = std::fs::read_to_string(home.join("keys/acme.key")).unwrap();
    assert!(!out.contains(key.trim()), "the key is never printed");
    assert_eq!(
        veil(
            &home,
            &[
                "recipient",
                "add",
                "uni",
                "--purpose",
                "research",
                "--recipe",
                &s(&recipe),
                "--retention-days",
                "365"
            ]
        )
        .0,
        0
    );
    assert_eq!(
        veil(
            &home,
            &[
                "recipient",
                "add",
                "acme",
                "--purpose",
                "x",
                "--recipe",
                &s(&recipe),
                "--retention-days",
                "1"
            ]
        )
        .0,
        2,
        "duplicate name"
    );
    #[cfg(unix)]
    for k in ["keys/acme.key", "keys/uni.key", "ledger.key", "site.key"] {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(home.join(k))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600,
            "{k}"
        );
    }

    // Alice refuses AI vendors (FHIR R4); the site is opt-out for ai-training
    let consent = home.join("consents.json");
    veil_io::atomic::write_all(&consent, br#"{"resourceType":"Consent","id":"c-alice","status":"active",
      "scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},
      "category":[{"coding":[{"system":"http://loinc.org","code":"59284-0"}]}],
      "patient":{"identifier":{"value":"E2E-ALICE"}},
      "provision":{"type":"permit","provision":[{"type":"deny",
        "actor":[{"reference":{"identifier":{"system":"urn:veil:recipient-category","value":"ai-vendor"}}}],
        "purpose":[{"system":"urn:veil:purpose","code":"ai-training"}]}]}}"#).unwrap();
    let (code, out) = veil(&home, &["consent", "import", &s(&consent)]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("imported 1 consent records from source default: 1 new versions"),
        "{out}"
    );
    assert_eq!(
        veil(&home, &["consent", "default", "ai-training", "opt-out"]).0,
        0
    );

    let srcs = common::sources(&corpus);
    let input = home.join("in");
    let study = |n: &str| format!("1.2.826.0.1.3680043.9.7779.{n}");
    common::plant(&srcs[0], &input.join("a.dcm"), "E2E-ALICE", &study("1"), 1);
    common::plant(&srcs[1], &input.join("b1.dcm"), "E2E-BOB", &study("2"), 1);
    common::plant(&srcs[0], &input.join("b2.dcm"), "E2E-BOB", &study("3"), 1);
    common::plant(&srcs[1], &input.join("b3.dcm"), "E2E-BOB", &study("3"), 2);
    // one study under two PatientIDs: ambiguous, refused
    common::plant(&srcs[0], &input.join("c.dcm"), "E2E-CAROL", &study("4"), 1);
    common::plant(&srcs[1], &input.join("d.dcm"), "E2E-DAVE", &study("4"), 2);

    let out1 = home.join("out1");
    let (code, out) = veil(
        &home,
        &[
            "release",
            "--recipient",
            "acme",
            "--purpose",
            "ai-training",
            &s(&input),
            "--out",
            &s(&out1),
        ],
    );
    assert_eq!(code, 1, "some studies refused: {out}");
    assert!(
        out.contains("5 studies: 2 released (3 instances), 3 excluded (2 ambiguous, 1 consent)"),
        "{out}"
    );
    no_phi("release summary", &out);
    let manifest = std::fs::read_to_string(out1.join("manifest.json")).unwrap();
    no_phi("manifest", &manifest);
    let m: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    assert_eq!(m["studies_released"], 2);
    assert_eq!(m["recipe"], "vendor-x 2");
    assert_eq!(common::output_studies(&out1).len(), 2);

    // Bob's disclosures, with proofs
    let (code, out) = veil(&home, &["disclosures", "--patient-id", "E2E-BOB", "--json"]);
    assert_eq!(code, 0, "{out}");
    no_phi("disclosures", &out);
    let d: serde_json::Value = serde_json::from_str(&out).unwrap();
    let es = d["entries"].as_array().unwrap();
    assert_eq!(es.len(), 2);
    assert!(es.iter().all(|e| e["proof_ok"] == true
        && e["entry"]["event"] == "release"
        && e["entry"]["verification"] == "pass"
        && e["entry"]["operator"] == "tester"));

    // Bob withdraws: past recipient listed, future releases refused
    let (code, out) = veil(
        &home,
        &[
            "consent",
            "set",
            "E2E-BOB",
            "--deny",
            "--recipient",
            "acme",
            "--purpose",
            "ai-training",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("acme (dpo@acme.example): 2 studies for ai-training"),
        "{out}"
    );
    no_phi("consent set", &out);
    let out2 = home.join("out2");
    let (code, out) = veil(
        &home,
        &[
            "release",
            "--recipient",
            "acme",
            "--purpose",
            "ai-training",
            &s(&input),
            "--out",
            &s(&out2),
        ],
    );
    assert_eq!(code, 1);
    assert!(out.contains("5 studies: 0 released"), "{out}");
    assert!(common::output_studies(&out2).is_empty());
    let (_, out) = veil(&home, &["disclosures", "--patient-id", "E2E-BOB"]);
    assert!(
        out.contains("refusal") && out.contains("to notify"),
        "{out}"
    );

    // purpose not registered, unknown recipient: cannot run (issue 17:
    // an unregistered purpose is an error before anything is logged)
    let (code, out) = veil(
        &home,
        &[
            "release",
            "--recipient",
            "uni",
            "--purpose",
            "ai-training",
            &s(&input),
            "--out",
            &s(&home.join("out3")),
        ],
    );
    assert_eq!(code, 2);
    assert!(
        out.contains("not registered for purpose ai-training"),
        "{out}"
    );
    assert_eq!(
        veil(
            &home,
            &[
                "release",
                "--recipient",
                "nobody",
                "--purpose",
                "x",
                &s(&input),
                "--out",
                &s(&home.join("o4"))
            ]
        )
        .0,
        2
    );

    // retention 0 days: acme's staged copies are deleted, each logged
    let (code, out) = veil(&home, &["retention", "run"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("2 staged studies past retention deleted (3 files)"),
        "{out}"
    );
    assert!(common::output_studies(&out1).is_empty());

    // the ledger verifies, is checkpointed, and exports
    let (code, out) = veil(&home, &["ledger", "verify"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(veil(&home, &["ledger", "checkpoint"]).0, 0);
    let (code, xml) = veil(&home, &["ledger", "export", "--format", "dicom"]);
    assert_eq!(code, 0);
    assert!(xml.contains("csd-code=\"110106\"") && xml.contains("csd-code=\"110105\""));
    no_phi("DICOM audit export", &xml);
    let (_, fhir) = veil(&home, &["ledger", "export", "--format", "fhir"]);
    let b: serde_json::Value = serde_json::from_str(&fhir).unwrap();
    // releases, refusals, deletions, and the changes: 2 recipients, 1
    // import, 1 default, 1 consent set
    // (the release for an unregistered purpose logs nothing: issue 17)
    assert_eq!(b["entry"].as_array().unwrap().len(), 5 + 5 + 2 + 5);
    no_phi("FHIR audit export", &fhir);
    let (code, out) = veil(&home, &["ledger", "verify", "--json"]);
    assert_eq!(code, 0);
    no_phi("ledger verify", &out);

    // the site's own consent export does hold the IDs (it is for its consent systems)
    let (code, out) = veil(&home, &["consent", "export"]);
    assert_eq!(code, 0);
    assert!(out.contains("E2E-ALICE") && out.contains("E2E-BOB"));
    std::fs::remove_dir_all(&home).unwrap();
}
