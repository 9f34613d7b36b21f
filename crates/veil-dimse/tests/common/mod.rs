//! Shared helpers for the DIMSE tests: dcmtk peers started on loopback and
//! stopped by PID, corpus file selection, a recording store handler.
#![allow(dead_code, clippy::print_stderr)]

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use veil_dimse::{read_part10_info, Part10Info, Scp, ScpConfig, StoreRefusal, StoreRequest};

/// A port free at the time of asking (for dcmtk peers, which cannot be
/// told to bind port 0).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// A child process killed by PID when dropped.
pub struct Proc {
    pub child: Child,
    pub name: &'static str,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a dcmtk server and waits until its port answers.
/// Its output goes to `NAME.log` in `cwd`, for when a test fails.
pub fn spawn_server(name: &'static str, args: &[&str], port: u16, cwd: &Path) -> Proc {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(cwd.join(format!("{name}.log")))
        .expect("log file");
    let child = Command::new(name)
        .args(args)
        .current_dir(cwd)
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("{name} must be installed (dcmtk): {e}"));
    let p = Proc { child, name };
    let until = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < until, "{name} did not start");
        std::thread::sleep(Duration::from_millis(30));
    }
    p
}

/// Runs a dcmtk client; returns (success, combined output).
pub fn run(name: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(name)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{name} must be installed (dcmtk): {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Corpus files (readable Part 10, at most `max_size` bytes) with their
/// meta, sorted by path. `None` when the corpus is absent (skip), unless
/// VEIL_REQUIRE_CORPUS is set (then veil_test panics).
pub fn corpus_files(max_size: u64) -> Option<Vec<(PathBuf, Part10Info)>> {
    let root = veil_test::corpus()?;
    let files = veil_test::files(&root);
    assert!(!files.is_empty(), "corpus at {} is empty", root.display());
    Some(
        files
            .into_iter()
            .filter(|p| {
                std::fs::metadata(p)
                    .map(|m| m.len() <= max_size)
                    .unwrap_or(false)
            })
            .filter_map(|p| read_part10_info(&p).ok().map(|i| (p, i)))
            .filter(|(_, i)| {
                veil_dimse::STORAGE_SOP_CLASSES.contains(&i.sop_class.as_str())
                    && !i.sop_instance.is_empty()
            })
            .collect(),
    )
}

/// The first `n` files of a transfer syntax with distinct SOP instances.
pub fn pick(files: &[(PathBuf, Part10Info)], ts: &str, n: usize) -> Vec<(PathBuf, Part10Info)> {
    let mut seen = std::collections::HashSet::new();
    files
        .iter()
        .filter(|(_, i)| i.ts == ts && seen.insert(i.sop_instance.clone()))
        .take(n)
        .cloned()
        .collect()
}

/// The data set bytes of a Part 10 file.
pub fn dataset_bytes(path: &Path) -> Vec<u8> {
    let info = read_part10_info(path).expect("part 10");
    let all = std::fs::read(path).expect("read");
    all[info.offset as usize..].to_vec()
}

/// One instance as a handler received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub req: StoreRequest,
    pub bytes: Vec<u8>,
}

pub type Inbox = Arc<Mutex<Vec<Received>>>;

/// A handler that keeps every instance in memory.
pub fn recording() -> (Inbox, Arc<dyn veil_dimse::StoreHandler>) {
    let inbox: Inbox = Arc::new(Mutex::new(Vec::new()));
    let i = inbox.clone();
    let h = move |req: &StoreRequest, data: &mut dyn Read| -> Result<(), StoreRefusal> {
        let mut bytes = Vec::new();
        data.read_to_end(&mut bytes)
            .map_err(|_| StoreRefusal::processing_failure("read failed"))?;
        i.lock().expect("inbox").push(Received {
            req: req.clone(),
            bytes,
        });
        Ok(())
    };
    (inbox, Arc::new(h))
}

/// An SCP on an ephemeral loopback port.
pub fn start_scp(config: ScpConfig, handler: Arc<dyn veil_dimse::StoreHandler>) -> Scp {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    Scp::start(l, config, handler).expect("start scp")
}

/// The usual test config: allows PACS and ORTHANC, serves VEIL and VEIL_B.
pub fn config() -> ScpConfig {
    ScpConfig {
        allowed_calling_aes: vec!["PACS".into(), "DCMQR".into()],
        called_aes: vec!["VEIL".into(), "VEIL_B".into()],
        artim_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(5),
        ..ScpConfig::default()
    }
}

pub fn init_log() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_max_level(tracing::Level::INFO)
        .try_init();
}
