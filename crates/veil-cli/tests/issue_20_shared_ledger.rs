//! Issue 20, a shared ledger under concurrency, with the `veil` binary
//! and one PostgreSQL database: 4 `veil release` processes started at
//! once, three rounds, each process with its own inputs (patients of its
//! own, some denied by consent) and its own OUT, while one thread runs
//! `veil ledger verify` and another `veil ledger checkpoint` in a loop.
//! Afterwards the ledger verifies, holds exactly the setup entries plus
//! every decision the processes reported, at positions 0..N with no gap
//! and no repeat, and each process's positions are its own. Every verify
//! and checkpoint during the run succeeded: no reader saw a half-written
//! append, nor a checkpoint ahead of the rows it read.
//!
//! Run twice: on a database with PostgreSQL's default isolation (read
//! committed), and on one whose `default_transaction_isolation` is
//! serializable, as a DBA may set it; appends must serialize on both.
#![allow(clippy::print_stderr)] // the test says what it ran

#[path = "../../veil-release/tests/common/mod.rs"]
mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use veil_store::Store;

/// Concurrent `veil release` processes per round.
const PROCS: usize = 4;
/// Rounds of PROCS processes.
const ROUNDS: usize = 3;
/// Studies (one patient each) per process and round.
const STUDIES: usize = 5;

fn veil_cmd(home: &Path, db: &str, args: &[&str]) -> Command {
    let mut c = veil_test::veil_command(env!("CARGO_BIN_EXE_veil"), home, Some(db));
    c.args(args);
    c
}

fn veil(home: &Path, db: &str, args: &[&str]) -> (i32, String) {
    veil_test::output(&mut veil_cmd(home, db, args))
}

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

fn patient(round: usize, proc_: usize, i: usize) -> String {
    format!("I20-R{round}-W{proc_}-P{i}")
}

/// Every third patient denies recipient `acme`.
fn denied(i: usize) -> bool {
    i % 3 == 1
}

fn ledger_seqs(home: &Path, db: &str) -> Vec<i64> {
    let mut st = Store::open(Some(db), home).unwrap();
    st.query("SELECT seq FROM ledger ORDER BY seq", &[])
        .unwrap()
        .iter()
        .map(|r| r[0].int().unwrap())
        .collect()
}

/// Runs `args` in a loop until `stop`, returning (runs, failures).
fn looping(
    home: PathBuf,
    db: String,
    args: &'static [&'static str],
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(usize, Vec<String>)> {
    std::thread::spawn(move || {
        let mut runs = 0;
        let mut failures = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            let (code, out) = veil(&home, &db, args);
            runs += 1;
            if code != 0 {
                failures.push(format!("{args:?} exited {code}: {out}"));
            }
        }
        (runs, failures)
    })
}

/// Verifies the ledger in this process, as fast as it can, until `stop`:
/// (runs, failures). Tighter than a `veil ledger verify` loop, so a
/// reader is far more likely to read while an append or a checkpoint
/// commits.
fn verifying(
    home: PathBuf,
    db: String,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(usize, Vec<String>)> {
    std::thread::spawn(move || {
        let mut st = Store::open(Some(&db), &home).unwrap();
        let hex = st.recorded_key("ledger").unwrap().unwrap();
        let vk = veil_ledger::verifying_key_from_hex(&hex).unwrap();
        let verifier = veil_ledger::note_verifier(&vk);
        let mut runs = 0;
        let mut failures = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            let r = veil_release::verify_store(&mut st, &[], &verifier).unwrap();
            runs += 1;
            if !r.ok {
                failures.push(format!("{:?}", r.problems));
            }
        }
        (runs, failures)
    })
}

/// A light reader, many times a second until `stop`: the checkpoints,
/// then the rows (verify_store's order). Each read must be a whole log:
/// positions 0..n, never fewer rows than the previous read, the signed
/// head of the last row valid for all n rows, and no checkpoint beyond
/// them. (runs, failures).
fn heads(
    home: PathBuf,
    db: String,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(usize, Vec<String>)> {
    std::thread::spawn(move || {
        let mut st = Store::open(Some(&db), &home).unwrap();
        let hex = st.recorded_key("ledger").unwrap().unwrap();
        let vk = veil_ledger::verifying_key_from_hex(&hex).unwrap();
        let mut runs = 0;
        let mut last = 0;
        let mut failures = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            let cp = st.checkpoints().unwrap().last().map_or(0, |c| c.size);
            let rows = st.ledger_rows().unwrap();
            runs += 1;
            let n = rows.len();
            let leaves: Vec<veil_ledger::Hash> = rows
                .iter()
                .map(|r| veil_ledger::merkle::leaf_hash(r.entry.as_bytes()))
                .collect();
            let root = veil_ledger::merkle::root(&leaves);
            let head_ok = rows.last().is_none_or(|r| {
                veil_ledger::check_signature(
                    &vk,
                    &veil_ledger::head_message(n as u64, &root),
                    &r.head_sig,
                )
            });
            let contiguous = rows.iter().enumerate().all(|(i, r)| r.seq == i as i64);
            if !head_ok || !contiguous || n < last || cp as usize > n {
                failures.push(format!(
                    "read {runs}: {n} rows (previous {last}), contiguous {contiguous}, \
                     head {head_ok}, checkpoint {cp}"
                ));
            }
            last = n;
        }
        (runs, failures)
    })
}

fn suite(tag: &str, db: &str, corpus: &Path) {
    let t0 = Instant::now();
    let home = veil_test::scratch(&format!("i20-shared-{tag}"));
    let ok = |(code, out): (i32, String)| assert_eq!(code, 0, "{out}");
    ok(veil(&home, db, &["init"]));
    let recipe = home.join("r.toml");
    veil_io::atomic::write_all(&recipe, b"name = \"t\"\nversion = \"1\"\n").unwrap();
    ok(veil(
        &home,
        db,
        &[
            "recipient",
            "add",
            "acme",
            "--purpose",
            "ai-training",
            "--recipe",
            &s(&recipe),
            "--retention-days",
            "30",
        ],
    ));
    ok(veil(
        &home,
        db,
        &["consent", "default", "ai-training", "opt-out"],
    ));
    // inputs and consents first, so the rounds append releases only
    let srcs = common::sources(corpus);
    for r in 0..ROUNDS {
        for p in 0..PROCS {
            for i in 0..STUDIES {
                let who = patient(r, p, i);
                common::plant(
                    &srcs[i % 2],
                    &home.join(format!("in-{r}-{p}/{i}.dcm")),
                    &who,
                    &format!("1.2.826.0.1.3680043.9.7720.{r}.{p}.{i}"),
                    1,
                );
                if denied(i) {
                    ok(veil(
                        &home,
                        db,
                        &["consent", "set", &who, "--deny", "--recipient", "acme"],
                    ));
                }
            }
        }
    }
    let setup = ledger_seqs(&home, db).len();

    let stop = Arc::new(AtomicBool::new(false));
    let reader = looping(home.clone(), db.into(), &["ledger", "verify"], stop.clone());
    let inproc = verifying(home.clone(), db.into(), stop.clone());
    let light = heads(home.clone(), db.into(), stop.clone());
    let checkpointer = looping(
        home.clone(),
        db.into(),
        &["ledger", "checkpoint"],
        stop.clone(),
    );
    let mut decisions = 0;
    let mut runs: Vec<Vec<u64>> = Vec::new();
    let t_rounds = Instant::now();
    for r in 0..ROUNDS {
        let children: Vec<_> = (0..PROCS)
            .map(|p| {
                let input = s(&home.join(format!("in-{r}-{p}")));
                let out = s(&home.join(format!("out-{r}-{p}")));
                veil_cmd(
                    &home,
                    db,
                    &[
                        "release",
                        "--recipient",
                        "acme",
                        "--purpose",
                        "ai-training",
                        &input,
                        "--out",
                        &out,
                        "--jobs",
                        "1",
                        "--json",
                    ],
                )
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
            })
            .collect();
        for (p, c) in children.into_iter().enumerate() {
            let o = c.wait_with_output().unwrap();
            let text = String::from_utf8_lossy(&o.stdout).into_owned()
                + &String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(0), "round {r} process {p}: {text}");
            let sum: serde_json::Value = serde_json::from_slice(&o.stdout).expect("--json summary");
            let released = sum["released"].as_u64().unwrap() as usize;
            let refused: usize = sum["refused"]
                .as_object()
                .unwrap()
                .values()
                .map(|v| v.as_u64().unwrap() as usize)
                .sum();
            let positions: Vec<u64> = sum["ledger_positions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .collect();
            let want_refused = (0..STUDIES).filter(|i| denied(*i)).count();
            assert_eq!(
                (released, refused),
                (STUDIES - want_refused, want_refused),
                "round {r} process {p}: {text}"
            );
            assert_eq!(
                positions.len(),
                released + refused,
                "one entry per decision"
            );
            decisions += positions.len();
            runs.push(positions);
        }
    }
    let rounds_s = t_rounds.elapsed().as_secs_f64();
    stop.store(true, Ordering::SeqCst);
    let (verifies, verify_failures) = reader.join().unwrap();
    let (checkpoints, checkpoint_failures) = checkpointer.join().unwrap();
    let (reads, read_failures) = inproc.join().unwrap();
    let (head_reads, head_failures) = light.join().unwrap();
    assert!(
        head_failures.is_empty(),
        "{} of {head_reads} reads beside the appends saw a partial log; first: {}",
        head_failures.len(),
        head_failures[0]
    );
    assert!(
        read_failures.is_empty(),
        "{} of {reads} verifications read beside the appends failed; first: {}",
        read_failures.len(),
        read_failures[0]
    );
    assert!(
        verify_failures.is_empty(),
        "{} of {verifies} concurrent `veil ledger verify` failed; first: {}",
        verify_failures.len(),
        verify_failures[0]
    );
    assert!(
        checkpoint_failures.is_empty(),
        "{} of {checkpoints} concurrent `veil ledger checkpoint` failed; first: {}",
        checkpoint_failures.len(),
        checkpoint_failures[0]
    );

    // one sequence, no gap, no fork, nothing but what was reported
    let (code, out) = veil(&home, db, &["ledger", "verify"]);
    assert_eq!(code, 0, "{out}");
    let seqs = ledger_seqs(&home, db);
    assert_eq!(seqs.len(), setup + decisions, "{out}");
    assert!(
        seqs.iter().enumerate().all(|(i, q)| *q == i as i64),
        "positions 0..{} with no gap or repeat",
        seqs.len()
    );
    // each process's positions: its own, contiguous (one transaction),
    // after the setup, and together exactly the appended ones
    let mut seen = BTreeSet::new();
    for p in &runs {
        assert!(p.windows(2).all(|w| w[1] == w[0] + 1), "{p:?}");
        for q in p {
            assert!(*q as usize >= setup, "{q} is a setup position");
            assert!(seen.insert(*q), "position {q} reported by two processes");
        }
    }
    assert_eq!(seen.len(), decisions);
    eprintln!(
        "{tag}: {ROUNDS} rounds of {PROCS} concurrent releases, {decisions} entries after {setup} \
         setup entries, in {rounds_s:.1}s ({verifies} `veil ledger verify`, {reads} \
         in-process verifications, {head_reads} head reads, {checkpoints} checkpoints \
         meanwhile, all passed); \
         {:.1}s in all",
        t0.elapsed().as_secs_f64()
    );
    std::fs::remove_dir_all(&home).unwrap();
}

#[test]
fn issue_20_four_releases_append_to_one_postgresql_ledger() {
    let Some(corpus) = veil_test::corpus() else {
        return;
    };
    let Some(base) = veil_test::pg_url() else {
        return;
    };
    let db =
        veil_store::create_pg_database(&base, &format!("veil_i20_shared_{}", std::process::id()))
            .unwrap();
    suite("read-committed", &db, &corpus);
}

#[test]
fn issue_20_appends_serialize_under_a_serializable_default() {
    let Some(corpus) = veil_test::corpus() else {
        return;
    };
    let Some(base) = veil_test::pg_url() else {
        return;
    };
    let name = format!("veil_i20_serial_{}", std::process::id());
    let db = veil_store::create_pg_database(&base, &name).unwrap();
    let mut c = veil_store::pg::connect(&base).unwrap();
    c.batch_execute(&format!(
        "ALTER DATABASE {name} SET default_transaction_isolation TO 'serializable'"
    ))
    .unwrap();
    suite("serializable", &db, &corpus);
}
