//! What the issue 18 tests share: a real site (keys, recipients,
//! consent, ledger), corpus instances, an injected clock.
#![allow(dead_code)]

#[path = "../../../veil-release/tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use veil_consent::{Decision, Provision, SiteDefault};
use veil_core::{Phi, Tag};
use veil_gateway::{Clock, Config, Destination, Route, Service};
use veil_ledger::Event;
use veil_release::Site;

pub struct TestClock(pub Arc<AtomicI64>);

impl Clock for TestClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

pub const T0: i64 = 1_800_000_000;
pub const DENIED: &str = "GW18-DENIED";

/// A site with recipients `acme` (ai-training) and `beta` (research),
/// both site defaults opt-out (permit unless denied), and patient
/// [`DENIED`] denying everything.
pub struct Fixture {
    pub home: PathBuf,
    corpus: PathBuf,
    pub clock: Arc<AtomicI64>,
    pub config: String,
    /// The store: `None` for the embedded SQLite, else a PostgreSQL URL.
    db: Option<String>,
}

pub fn fixture(name: &str) -> Option<Fixture> {
    fixture_on(name, None)
}

pub fn fixture_on(name: &str, db: Option<String>) -> Option<Fixture> {
    let corpus = veil_test::corpus()?;
    let home = veil_test::scratch(name);
    Site::init(db.as_deref(), &home).unwrap();
    let mut site = Site::open(db.as_deref(), &home).unwrap();
    let recipe = home.join("r.toml");
    veil_io::atomic::write_all(&recipe, b"name = \"gw\"\nversion = \"1\"\n").unwrap();
    for (r, p) in [("acme", "ai-training"), ("beta", "research")] {
        site.add_recipient(r, None, None, None, vec![p.into()], &recipe, 30)
            .unwrap();
        site.set_default(p, SiteDefault::OptOut).unwrap();
    }
    site.set_consent(
        &Phi::new(DENIED.to_string()),
        Provision {
            decision: Decision::Deny,
            actor: None,
            purpose: None,
            start: None,
            end: None,
            study_uid: None,
        },
    )
    .unwrap();
    let config = format!(
        r#"
[dicom]
port = 11112
allowed_calling_aes = ["PACS"]

[spool]
dir = "{spool}"

[queue]
max_attempts = 3
backoff_seconds = 10

[[route]]
name = "acme"
called_ae = "VEIL_ACME"
recipient = "acme"
purpose = "ai-training"
study_stable_seconds = 10
destination = "file://{home}/dest-acme"

[[route]]
name = "beta"
called_ae = "VEIL_BETA"
recipient = "beta"
purpose = "research"
study_stable_seconds = 30
destination = "file://{home}/dest-beta"
"#,
        spool = home.join("spool").display(),
        home = home.display()
    );
    Some(Fixture {
        home,
        corpus,
        clock: Arc::new(AtomicI64::new(T0)),
        config,
        db,
    })
}

impl Fixture {
    pub fn site(&self) -> Site {
        Site::open(self.db.as_deref(), &self.home).unwrap()
    }

    pub fn config(&self) -> Config {
        Config::parse(&self.config).unwrap()
    }

    pub fn service(&self, connect: &dyn Fn(&Route) -> Option<Box<dyn Destination>>) -> Service {
        let site = self.site();
        Service::open(
            self.config(),
            site,
            Box::new(TestClock(self.clock.clone())),
            connect,
        )
        .unwrap()
    }

    pub fn at(&self, t: i64) {
        self.clock.store(T0 + t, Ordering::SeqCst);
    }

    /// The bytes of a corpus file (0: CT, 1: MR) as instance `n` of
    /// `study` of `patient`.
    pub fn instance(&self, src: usize, patient: &str, study: &str, n: usize) -> Vec<u8> {
        let srcs = common::sources(&self.corpus);
        let p = self
            .home
            .join("src")
            .join(format!("{patient}-{n}-{src}.dcm"));
        common::plant(&srcs[src], &p, patient, study, n);
        std::fs::read(&p).unwrap()
    }

    /// The bytes of the corpus file `rel` as instance `n` of `study` of
    /// `patient`.
    pub fn instance_of(&self, rel: &str, patient: &str, study: &str, n: usize) -> Vec<u8> {
        let p = self
            .home
            .join("src")
            .join(format!("{patient}-{n}-other.dcm"));
        common::plant(&self.corpus.join(rel), &p, patient, study, n);
        std::fs::read(&p).unwrap()
    }

    pub fn dest(&self, route: &str) -> PathBuf {
        self.home.join(format!("dest-{route}"))
    }
}

pub fn no_connect(_: &Route) -> Option<Box<dyn Destination>> {
    None
}

pub fn study(n: u32) -> String {
    format!("1.2.826.0.1.3680043.9.7718.{n}")
}

pub fn dicom_files(dir: &Path) -> Vec<PathBuf> {
    veil_test::files(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
        .collect()
}

/// (PatientID, StudyInstanceUID) of every delivered file.
pub fn delivered_ids(dir: &Path) -> Vec<(String, String)> {
    dicom_files(dir)
        .iter()
        .map(|p| {
            let d = veil_io::read(p).unwrap();
            (
                d.dataset.ascii(Tag(0x0010, 0x0020)).unwrap_or_default(),
                d.dataset.ascii(Tag(0x0020, 0x000D)).unwrap_or_default(),
            )
        })
        .collect()
}

/// The gateway's decisions in the ledger: (event, recipient, reason).
pub fn decisions(f: &Fixture) -> Vec<(Event, String, String)> {
    let mut site = f.site();
    site.entries()
        .unwrap()
        .into_iter()
        .filter(|e| e.operator == "veil-serve")
        .map(|e| (e.event, e.recipient, e.reason))
        .collect()
}
