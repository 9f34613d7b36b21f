//! Issue 17, everyday management with the `veil` binary and real files:
//! `recipient list|show|update|remove`, `consent list`, and `release
//! --dry-run`, which decides like a release and writes nothing, not even
//! to the ledger.

use std::path::Path;

const VEIL: &str = env!("CARGO_BIN_EXE_veil");

fn veil(home: &Path, args: &[&str]) -> (i32, String) {
    veil_test::output(veil_test::veil_command(VEIL, home, None).args(args))
}

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

fn ledger_size(home: &Path) -> u64 {
    let out = veil_test::ok(veil(home, &["ledger", "verify", "--json"]));
    serde_json::from_str::<serde_json::Value>(&out).unwrap()["entries"]
        .as_u64()
        .unwrap()
}

#[test]
fn issue_17_recipients_consents_and_a_dry_run() {
    let Some(corpus) = veil_test::corpus() else {
        return;
    };
    let home = veil_test::scratch("i17-manage");
    veil_test::ok(veil(&home, &["init"]));
    let recipe = home.join("r.toml");
    veil_io::atomic::write_all(&recipe, b"name = \"vendor\"\nversion = \"1\"\n").unwrap();
    veil_test::ok(veil(
        &home,
        &[
            "recipient",
            "add",
            "acme-ai",
            "--purpose",
            "ai-training",
            "--category",
            "ai-vendor",
            "--recipe",
            &s(&recipe),
            "--retention-days",
            "30",
        ],
    ));
    veil_test::ok(veil(
        &home,
        &["consent", "default", "ai-training", "opt-out"],
    ));
    let input = home.join("in");
    std::fs::create_dir_all(&input).unwrap();
    for n in [
        "pydicom-3.0.2/pydicom__data__test_files__CT_small.dcm",
        "pydicom-3.0.2/pydicom__data__test_files__MR_small.dcm",
    ] {
        std::fs::copy(
            corpus.join(n),
            input.join(Path::new(n).file_name().unwrap()),
        )
        .unwrap();
    }
    // CT_small's PatientID is 1CT1: deny it
    veil_test::ok(veil(
        &home,
        &["consent", "set", "1CT1", "--deny", "--recipient", "acme-ai"],
    ));

    // list and show: the key id, never the key
    let list = veil_test::ok(veil(&home, &["recipient", "list"]));
    assert!(
        list.contains("acme-ai") && list.contains("vendor 1") && list.contains("1 recipient\n"),
        "{list}"
    );
    let show = veil_test::ok(veil(&home, &["recipient", "show", "acme-ai", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&show).unwrap();
    assert_eq!(v["category"], "ai-vendor");
    let key = std::fs::read_to_string(home.join("keys/acme-ai.key")).unwrap();
    assert!(!show.contains(key.trim()), "the key is never printed");
    assert_eq!(
        veil(&home, &["recipient", "show", "nobody"]).0,
        2,
        "unknown recipient"
    );

    // consent list: the site default and the provision
    let consents = veil_test::ok(veil(&home, &["consent", "list"]));
    assert!(
        consents.contains("ai-training") && consents.contains("opt-out"),
        "{consents}"
    );
    assert!(
        consents.contains("patient 1CT1") && consents.contains("deny recipient acme-ai"),
        "{consents}"
    );
    let one = veil_test::ok(veil(&home, &["consent", "list", "--patient-id", "OTHER"]));
    assert!(one.contains("0 consent records"), "{one}");

    // dry run: one study permitted, one refused by consent; nothing
    // written, nothing logged
    let n0 = ledger_size(&home);
    let out = home.join("out");
    let dry = veil_test::ok(veil(
        &home,
        &[
            "release",
            "--recipient",
            "acme-ai",
            "--purpose",
            "ai-training",
            &s(&input),
            "--out",
            &s(&out),
            "--dry-run",
            "--json",
        ],
    ));
    let d: serde_json::Value = serde_json::from_str(&dry).unwrap();
    assert_eq!(d["dry_run"], true);
    assert_eq!(d["studies"], 2, "{d}");
    assert_eq!(d["would_release"], 1, "{d}");
    assert_eq!(d["would_refuse"]["consent"], 1, "{d}");
    assert_eq!(ledger_size(&home), n0, "a dry run logs nothing");
    for p in [
        out.clone(),
        home.join(".out.veil-release"),
        home.join("out.review"),
    ] {
        assert!(!p.exists(), "a dry run wrote {}", p.display());
    }

    // update --recipe re-reads the file: the new label is pinned and used
    veil_io::atomic::write_all(&recipe, b"name = \"vendor\"\nversion = \"2\"\n").unwrap();
    let msg = veil_test::ok(veil(
        &home,
        &[
            "recipient",
            "update",
            "acme-ai",
            "--recipe",
            &s(&recipe),
            "--retention-days",
            "7",
        ],
    ));
    assert!(
        msg.contains("recipe vendor 2") && msg.contains("7 days"),
        "{msg}"
    );
    assert_eq!(ledger_size(&home), n0 + 1, "the update is pinned");
    let (code, msg) = veil(
        &home,
        &[
            "release",
            "--recipient",
            "acme-ai",
            "--purpose",
            "ai-training",
            &s(&input),
            "--out",
            &s(&out),
        ],
    );
    assert!(code == 0 || code == 1, "{msg}");
    assert!(msg.contains("1 released"), "{msg}");
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["recipe"], "vendor 2");
    assert_eq!(m["retention_days"], 7);

    // remove: it receives nothing more, the ledger keeps its history
    let n1 = ledger_size(&home);
    veil_test::ok(veil(&home, &["recipient", "remove", "acme-ai"]));
    assert_eq!(ledger_size(&home), n1 + 1);
    let list = veil_test::ok(veil(&home, &["recipient", "list"]));
    assert!(
        !list.contains("acme-ai") && list.contains("0 recipients"),
        "{list}"
    );
    let (code, msg) = veil(
        &home,
        &[
            "release",
            "--recipient",
            "acme-ai",
            "--purpose",
            "ai-training",
            &s(&input),
            "--out",
            &s(&home.join("out2")),
        ],
    );
    assert_eq!(code, 2, "{msg}");
    assert!(msg.contains("was removed"), "{msg}");
    assert_eq!(ledger_size(&home), n1 + 1);
    let (code, msg) = veil(
        &home,
        &[
            "recipient",
            "add",
            "acme-ai",
            "--purpose",
            "x",
            "--recipe",
            &s(&recipe),
            "--retention-days",
            "1",
        ],
    );
    assert_eq!(code, 2, "{msg}");
    assert!(msg.contains("was removed"), "{msg}");
    let (code, msg) = veil(&home, &["ledger", "verify"]);
    assert_eq!(code, 0, "{msg}");
    std::fs::remove_dir_all(&home).unwrap();
}
