//! `veil risk` on the de-identified corpus: the JSON numbers are consistent
//! with each other and with the exit status, a `[generalize]` recipe never
//! raises the risk (and the suggested one achieves what it predicted), a
//! population table switches to journalist risk, and errors exit 2 without
//! naming files.
#![allow(clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const VEIL: &str = env!("CARGO_BIN_EXE_veil");

/// `VEIL_CORPUS`, else the corpus that scripts/fetch-corpus.sh leaves in
/// target/, else skip.
fn corpus() -> Option<PathBuf> {
    if std::env::var_os("VEIL_CORPUS").is_none() {
        let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/corpus/base");
        if d.is_dir() {
            return Some(d);
        }
    }
    veil_test::corpus()
}

fn deid(corpus: &Path, out: &Path, key: &Path, recipe: &Path) {
    let st = Command::new(VEIL)
        .arg("deid")
        .arg(corpus)
        .arg("--out")
        .arg(out)
        .arg("--key")
        .arg(key)
        .arg("--recipe")
        .arg(recipe)
        .output()
        .unwrap();
    // 1: some inputs quarantined (the corpus has broken files on purpose)
    assert!(matches!(st.status.code(), Some(0 | 1)), "{st:?}");
}

fn risk(out: &Path, json: &Path, args: &[&str]) -> (Output, Value) {
    let o = Command::new(VEIL)
        .arg("risk")
        .arg(out)
        .arg("--json")
        .arg(json)
        .args(args)
        .output()
        .unwrap();
    assert!(matches!(o.status.code(), Some(0 | 1)), "{o:?}");
    let v = serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap();
    (o, v)
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap()
}
fn u(v: &Value) -> usize {
    v.as_u64().unwrap() as usize
}

/// The report agrees with itself and with the exit status (no population).
fn check(r: &Value, o: &Output) {
    let thr = f(&r["threshold"]);
    let (n, j, k) = (u(&r["records"]), u(&r["classes"]), u(&r["k"]));
    assert!(k >= 1 && n >= 1);
    let sizes = r["class_sizes"].as_array().unwrap();
    assert_eq!(u(&sizes[0]["size"]), k, "k is the smallest class");
    assert_eq!(sizes.iter().map(|s| u(&s["records"])).sum::<usize>(), n);
    assert_eq!(sizes.iter().map(|s| u(&s["classes"])).sum::<usize>(), j);
    let (pmax, pavg) = (f(&r["prosecutor"]["max"]), f(&r["prosecutor"]["avg"]));
    assert!((pmax - 1.0 / k as f64).abs() < 1e-12);
    assert!((pavg - j as f64 / n as f64).abs() < 1e-12, "avg = J/n");
    for x in [pmax, pavg, f(&r["marketer"]), f(&r["max_risk"])] {
        assert!(x > 0.0 && x <= 1.0, "{x}");
    }
    // listed iff above: exactly the records in classes with 1/f > threshold
    let expected: usize = sizes
        .iter()
        .filter(|s| 1.0 / f(&s["size"]) > thr)
        .map(|s| u(&s["records"]))
        .sum();
    let listed = r["records_at_risk"].as_array().unwrap();
    assert_eq!(listed.len(), expected);
    for x in listed {
        let risk = f(&x["risk"]);
        assert!(risk > thr && risk <= 1.0);
        assert!((risk - 1.0 / f(&x["class_size"])).abs() < 1e-12);
        let p = x["patient"].as_str().unwrap();
        assert!(p.starts_with("VP") || p.starts_with("(folder VP"), "{p}");
    }
    assert_eq!(r["above_threshold"], !listed.is_empty());
    assert_eq!(o.status.code(), Some(i32::from(!listed.is_empty())));
}

#[test]
fn risk_on_the_deidentified_corpus() {
    let Some(corpus) = corpus() else { return };
    let tmp = veil_test::scratch("risk");
    let key = veil_test::new_key(VEIL, &tmp);
    // a release that keeps patient characteristics, shifted dates and devices
    let rich = "name = \"rich\"\noptions = [\"retain-patient-characteristics\", \
                \"retain-long-modified-dates\", \"retain-device-identity\"]\n";
    let recipe = tmp.join("rich.toml");
    veil_io::atomic::write_all(&recipe, rich.as_bytes()).unwrap();
    let out = tmp.join("out");
    deid(&corpus, &out, &key, &recipe);

    // defaults, default threshold, JSON and HTML
    let html = tmp.join("risk.html");
    let (o, r) = risk(
        &out,
        &tmp.join("a.json"),
        &["--html", html.to_str().unwrap()],
    );
    check(&r, &o);
    let stdout = String::from_utf8_lossy(&o.stdout);
    eprintln!("defaults: {stdout}");
    assert!(!stdout.contains(corpus.to_str().unwrap()));
    assert_eq!(r["quasi_identifiers"].as_array().unwrap().len(), 12);
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>") && !page.contains("<script"));

    // fewer quasi-identifiers, a looser threshold
    let q = [
        "--quasi",
        "age,sex,height,weight,study-date,manufacturer,model",
    ];
    let (o, a) = risk(
        &out,
        &tmp.join("b.json"),
        &[q[0], q[1], "--threshold", "0.5"],
    );
    check(&a, &o);
    eprintln!("7 quasi, 0.5: {}", String::from_utf8_lossy(&o.stdout));

    // apply the first suggestion (or a fixed generalization when none)
    let suggestion = a["search"]["suggestions"].get(0).cloned();
    let section = match &suggestion {
        Some(s) => s["recipe"].as_str().unwrap().to_string(),
        None => "[generalize]\nage_band_years = 10\ndates = \"year\"\n\
                 drop = [\"PatientSize\", \"PatientWeight\"]\n"
            .to_string(),
    };
    let recipe = tmp.join("gen.toml");
    veil_io::atomic::write_all(&recipe, format!("{rich}{section}").as_bytes()).unwrap();
    let out2 = tmp.join("out2");
    deid(&corpus, &out2, &key, &recipe);
    let (o, b) = risk(
        &out2,
        &tmp.join("c.json"),
        &[q[0], q[1], "--threshold", "0.5"],
    );
    check(&b, &o);
    eprintln!("generalized: {}", String::from_utf8_lossy(&o.stdout));
    assert_eq!(b["records"], a["records"], "the same patients");
    assert!(f(&b["max_risk"]) <= f(&a["max_risk"]));
    assert!(f(&b["prosecutor"]["avg"]) <= f(&a["prosecutor"]["avg"]));
    assert!(u(&b["k"]) >= u(&a["k"]));
    let at = |r: &Value| r["records_at_risk"].as_array().unwrap().len();
    assert!(at(&b) <= at(&a));
    if let Some(s) = suggestion {
        // what the lattice predicted is what the engine delivered
        assert_eq!(s["k"], b["k"]);
        assert_eq!(u(&s["records_at_risk"]), at(&b));
        assert!((f(&s["avg_risk"]) - f(&b["prosecutor"]["avg"])).abs() < 1e-12);
    }

    // population: every (sex, age) class of the release has 1000 people,
    // so journalist risk is 1/1000 and nobody is above 0.09
    let (_, all) = risk(
        &out,
        &tmp.join("d.json"),
        &["--quasi", "sex,age", "--threshold", "0.000001"],
    );
    // one row per class (the listed records repeat classes)
    let rows: std::collections::BTreeSet<String> = all["records_at_risk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            let v = &x["values"];
            format!(
                "\"{}\",\"{}\",1000\n",
                v["age"].as_str().unwrap(),
                v["sex"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        all["records_at_risk"].as_array().unwrap().len(),
        u(&all["records"])
    );
    let csv = String::from("age,sex,count\n") + &rows.into_iter().collect::<String>();
    let pop = tmp.join("pop.csv");
    veil_io::atomic::write_all(&pop, csv.as_bytes()).unwrap();
    let (o, p) = risk(
        &out,
        &tmp.join("e.json"),
        &["--quasi", "sex,age", "--population", pop.to_str().unwrap()],
    );
    assert_eq!(p["measure"], "journalist");
    assert_eq!(f(&p["journalist"]["max"]), 0.001);
    assert!((f(&p["marketer"]) - 0.001).abs() < 1e-12);
    assert_eq!(p["population_unmatched"], 0);
    assert_eq!(p["records_at_risk"].as_array().unwrap().len(), 0);
    assert_eq!(o.status.code(), Some(0));
    // the prosecutor figures are still there, and above
    assert!(f(&p["prosecutor"]["max"]) > 0.09);
}

#[test]
fn cannot_run_exits_2_without_naming_files() {
    let tmp = veil_test::scratch("risk-errors");
    let missing = tmp.join("no-such-release-XYZ");
    let out = tmp.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let run = |args: &[&str]| {
        let o = Command::new(VEIL).arg("risk").args(args).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(!err.contains(tmp.to_str().unwrap()), "{err}");
        err
    };
    let o = out.to_str().unwrap();
    run(&[missing.to_str().unwrap()]);
    assert!(run(&[o]).contains("no DICOM objects"));
    assert!(run(&[o, "--quasi", "PatientSise"]).contains("unknown quasi-identifier"));
    run(&[o, "--threshold", "0"]);
    run(&[o, "--threshold", "1.5"]);
    let inside = out.join("r.json");
    assert!(run(&[o, "--json", inside.to_str().unwrap()]).contains("outside OUT"));
    let pop = tmp.join("pop.csv");
    veil_io::atomic::write_all(&pop, b"sex,colour,count\nF,red,3\n").unwrap();
    assert!(
        run(&[o, "--quasi", "sex", "--population", pop.to_str().unwrap()])
            .contains("population table")
    );
}
