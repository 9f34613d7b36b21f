//! Issue 18: the gateway core driven step by step with an injected clock,
//! on real corpus files, a real site (keys, recipients, consent, ledger),
//! real de-identification and verification, and file:// destinations.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use support::{
    decisions, delivered_ids, dicom_files, fixture, fixture_on, no_connect, study, Fixture,
    TestClock, DENIED, T0,
};
use veil_core::{Phi, Tag};
use veil_gateway::{
    make_destinations, queue, Config, CourierParts, DeliveryError, Destination, DestinationUrl,
    Error, FileDestination, Route, Service,
};
use veil_ledger::Event;
use veil_release::Site;
use veil_store::queue::QueueState as Q;

#[test]
fn issue_18_two_routes_consent_ledger_and_exact_delivery() {
    if let Some(f) = fixture("gw18-routes") {
        two_routes(&f);
    }
}

#[test]
fn issue_18_two_routes_on_postgresql() {
    let Some(base) = veil_test::pg_url() else {
        return;
    };
    let url = veil_store::create_pg_database(&base, &format!("veil_gw18_{}", std::process::id()))
        .unwrap();
    if let Some(f) = fixture_on("gw18-routes-pg", Some(url)) {
        assert_eq!(f.site().store.backend(), "postgresql");
        two_routes(&f);
    }
}

/// Two routes, a permitted and a denied study on one, a study on the
/// other: exact deliveries, every decision logged once, an empty spool.
fn two_routes(f: &Fixture) {
    let mut svc = f.service(&no_connect);
    // acme: a permitted study of two instances, and a denied patient's
    // study; beta: one study
    let a1 = f.instance(0, "GW18-ALICE", &study(1), 1);
    let r = svc.receive("acme", &a1).unwrap();
    assert!(!r.duplicate);
    svc.receive("acme", &f.instance(1, "GW18-ALICE", &study(1), 2))
        .unwrap();
    // the sender's retry of an instance is kept once
    let again = svc.receive("acme", &a1).unwrap();
    assert!(again.duplicate);
    assert_eq!(again.study_id, r.study_id);
    svc.receive("acme", &f.instance(1, DENIED, &study(2), 1))
        .unwrap();
    svc.receive("beta", &f.instance(0, "GW18-BOB", &study(3), 1))
        .unwrap();
    // refused at intake, nothing kept: not DICOM, unknown route
    assert!(matches!(
        svc.receive("acme", b"not dicom at all"),
        Err(Error::Refused(_))
    ));
    assert!(matches!(
        svc.receive("nope", &a1),
        Err(Error::UnknownRoute(_))
    ));
    assert_eq!(
        svc.spool().files().len(),
        4,
        "one file per distinct instance"
    );

    // nothing is stable yet
    f.at(9);
    let rep = svc.tick().unwrap();
    assert_eq!((rep.ready, rep.released), (0, 0), "{rep:?}");
    // acme's studies are stable at 10 s, beta's at 30 s
    f.at(10);
    let rep = svc.tick().unwrap();
    assert_eq!(
        (
            rep.ready,
            rep.released,
            rep.refused,
            rep.delivered_instances
        ),
        (2, 1, 1, 2),
        "{rep:?}"
    );
    assert!(dicom_files(&f.dest("beta")).is_empty());
    f.at(30);
    let rep = svc.tick().unwrap();
    assert_eq!(
        (rep.ready, rep.released, rep.delivered_instances),
        (1, 1, 1),
        "{rep:?}"
    );
    // a tick with nothing to do does nothing
    assert_eq!(svc.tick().unwrap(), Default::default());

    // exactly the expected instances, de-identified; the denied patient's
    // study reached no one
    let acme = delivered_ids(&f.dest("acme"));
    assert_eq!(acme.len(), 2, "{acme:?}");
    let beta = delivered_ids(&f.dest("beta"));
    assert_eq!(beta.len(), 1);
    for (pid, uid) in acme.iter().chain(&beta) {
        assert!(!pid.starts_with("GW18-"), "PatientID pseudonymized");
        assert!(
            !uid.starts_with("1.2.826.0.1.3680043.9.7718."),
            "UID pseudonymized"
        );
    }
    assert_eq!(acme[0].1, acme[1].1, "one study");
    assert_ne!(acme[0].0, beta[0].0, "recipients get unlinkable pseudonyms");

    // every decision is in the ledger, once
    let mut d = decisions(f);
    d.sort_by(|a, b| a.1.cmp(&b.1).then(a.2.cmp(&b.2)));
    assert_eq!(d.len(), 3, "{d:?}");
    let refused: Vec<_> = d.iter().filter(|x| x.0 == Event::Refusal).collect();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].1, "acme");
    assert!(refused[0].2.starts_with("consent:"), "{:?}", refused[0]);
    assert_eq!(d.iter().filter(|x| x.0 == Event::Release).count(), 2);
    let mut site = f.site();
    assert!(site.verify_ledger().unwrap().ok);
    // verified before release (veil verify's check), never skipped
    for e in site.entries().unwrap() {
        if e.operator == "veil-serve" && e.event == Event::Release {
            assert_eq!(e.verification, "pass");
        }
    }

    // the spool is empty, and the queue says what happened, without PHI
    assert_eq!(svc.spool().files(), Vec::<PathBuf>::new());
    let st = queue::status(&mut svc.site().store).unwrap();
    assert_eq!(st.counts["acme"]["delivered"], 1);
    assert_eq!(st.counts["acme"]["refused"], 1);
    assert_eq!(st.counts["beta"]["delivered"], 1);
    assert!(st.open.is_empty());
    let text = st.lines().join("\n") + &format!("{st:?}");
    for phi in ["GW18-", "1.2.826.0.1.3680043.9.7718."] {
        assert!(!text.contains(phi), "{text}");
    }
}

#[cfg(unix)]
#[test]
fn issue_18_spool_is_private_and_names_carry_no_phi() {
    use std::os::unix::fs::PermissionsExt;
    let Some(f) = fixture("gw18-spool") else {
        return;
    };
    // a spool folder made by someone else, open to all, is tightened
    let spool = f.home.join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut svc = f.service(&no_connect);
    svc.receive("acme", &f.instance(0, "GW18-CAROL", &study(4), 1))
        .unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    for d in [spool.clone(), spool.join("in"), spool.join("work")] {
        assert_eq!(mode(&d), 0o700, "{}", d.display());
    }
    // one service per spool
    let second = Service::open(
        f.config(),
        f.site(),
        Box::new(TestClock(f.clock.clone())),
        &no_connect,
    );
    assert!(
        matches!(second, Err(Error::Busy(_))),
        "a second service is refused"
    );
    let files = svc.spool().files();
    assert_eq!(files.len(), 1);
    assert_eq!(mode(&files[0]), 0o600);
    let name = files[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(!name.contains("GW18") && !name.contains("7718"), "{name}");
    // the queue row names the study by the ledger's keyed reference
    let st = queue::status(&mut svc.site().store).unwrap();
    let site = Site::open(None, &f.home).unwrap();
    assert_eq!(st.open[0].study_ref, site.study_ref(&study(4)));
    assert_eq!(st.open[0].state, "receiving");
}

/// A file:// destination that fails while `down` is set.
struct Flaky {
    inner: FileDestination,
    down: Arc<AtomicBool>,
}

impl Destination for Flaky {
    fn deliver(&mut self, name: &str, file: &Path) -> Result<(), DeliveryError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(DeliveryError("test: peer refused the association".into()));
        }
        self.inner.deliver(name, file)
    }
}

#[test]
fn issue_18_dead_letter_after_max_attempts_then_retry_and_drop() {
    let Some(f) = fixture("gw18-deadletter") else {
        return;
    };
    let down = Arc::new(AtomicBool::new(true));
    let d2 = down.clone();
    let acme_dir = f.dest("acme");
    let connect = move |r: &Route| -> Option<Box<dyn Destination>> {
        match &r.destination {
            DestinationUrl::File { dir } if *dir == acme_dir => Some(Box::new(Flaky {
                inner: FileDestination::new(dir),
                down: d2.clone(),
            })),
            _ => None,
        }
    };
    let mut svc = f.service(&connect);
    let r = svc
        .receive("acme", &f.instance(0, "GW18-DAN", &study(5), 1))
        .unwrap();
    let id = r.study_id;
    let state = |svc: &mut Service| svc.site().store.queue_study(&id).unwrap().unwrap();
    f.at(10);
    let rep = svc.tick().unwrap();
    assert_eq!((rep.released, rep.failures), (1, 1), "{rep:?}");
    assert_eq!(
        (state(&mut svc).state, state(&mut svc).attempts),
        (Q::Delivering, 1)
    );
    // backoff: not due again before 10 s, then 20 s
    f.at(19);
    assert_eq!(svc.tick().unwrap().failures, 0);
    f.at(20);
    assert_eq!(svc.tick().unwrap().failures, 1);
    f.at(39);
    assert_eq!(svc.tick().unwrap().failures, 0);
    f.at(40);
    let rep = svc.tick().unwrap();
    assert_eq!((rep.failures, rep.dead_lettered), (1, 1), "{rep:?}");
    let s = state(&mut svc);
    assert_eq!(s.state, Q::DeadLetter);
    assert_eq!(
        s.reason.as_deref(),
        Some("delivery: test: peer refused the association")
    );
    // parked: no more attempts; its files stay for a retry
    f.at(10_000);
    assert_eq!(svc.tick().unwrap().failures, 0);
    assert!(!svc.spool().files().is_empty());
    assert!(dicom_files(&f.dest("acme")).is_empty());
    let st = queue::status(&mut svc.site().store).unwrap();
    assert_eq!(st.open[0].state, "dead-letter");
    assert_eq!(st.open[0].attempts, 3);

    // the peer is back: retry delivers, once, and empties the spool
    down.store(false, Ordering::SeqCst);
    assert_eq!(
        queue::retry(&mut svc.site().store, &id, T0 + 10_000).unwrap(),
        Q::Delivering
    );
    let rep = svc.tick().unwrap();
    assert_eq!(
        (rep.delivered_instances, rep.delivered_studies),
        (1, 1),
        "{rep:?}"
    );
    assert_eq!(dicom_files(&f.dest("acme")).len(), 1);
    assert!(svc.spool().files().is_empty());
    assert!(
        queue::retry(&mut svc.site().store, &id, T0 + 10_001).is_err(),
        "only a dead-letter study"
    );

    // a second study parked, then dropped: deleted from the spool, never
    // delivered; its decision stays in the ledger
    down.store(true, Ordering::SeqCst);
    let r2 = svc
        .receive("acme", &f.instance(1, "GW18-EVE", &study(6), 1))
        .unwrap();
    for t in [10_020, 10_030, 10_050] {
        f.at(t);
        svc.tick().unwrap();
    }
    let s2 = svc.site().store.queue_study(&r2.study_id).unwrap().unwrap();
    assert_eq!(s2.state, Q::DeadLetter);
    let spool = svc.spool().clone();
    let n = queue::drop_study(&mut svc.site().store, &spool, &r2.study_id, T0 + 10_060).unwrap();
    assert_eq!(n, 1);
    assert!(svc.spool().files().is_empty());
    down.store(false, Ordering::SeqCst);
    svc.tick().unwrap();
    assert_eq!(
        dicom_files(&f.dest("acme")).len(),
        1,
        "a dropped study is not delivered"
    );
    assert_eq!(
        decisions(&f).len(),
        2,
        "both decisions were logged, once each"
    );
}

/// A file:// destination that counts deliveries per name.
struct Counting {
    inner: FileDestination,
    calls: Arc<Mutex<BTreeMap<String, usize>>>,
}

impl Destination for Counting {
    fn deliver(&mut self, name: &str, file: &Path) -> Result<(), DeliveryError> {
        self.inner.deliver(name, file)?;
        *self
            .calls
            .lock()
            .unwrap()
            .entry(name.to_string())
            .or_default() += 1;
        Ok(())
    }
}

#[test]
fn issue_18_crash_at_every_step_delivers_exactly_once() {
    if veil_test::corpus().is_some() {
        crash_at_every_step("gw18-crash", &|_| None);
    }
}

#[test]
fn issue_18_crash_at_every_step_on_postgresql() {
    let Some(base) = veil_test::pg_url() else {
        return;
    };
    if veil_test::corpus().is_some() {
        crash_at_every_step("gw18-crash-pg", &|k| {
            let name = format!("veil_gw18_crash_{}_{k}", std::process::id());
            Some(veil_store::create_pg_database(&base, &name).unwrap())
        });
    }
}

/// Stops after 1, 2, ... durable steps, as a kill -9 would; reopens from
/// the store and spool; finishes; until a run needs no restart. `db(k)`
/// is the store of run k.
fn crash_at_every_step(tag: &str, db: &dyn Fn(usize) -> Option<String>) {
    let mut k = 1;
    loop {
        let f = fixture_on(&format!("{tag}-{k}"), db(k)).unwrap();
        let calls: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
        let c2 = calls.clone();
        let connect = move |r: &Route| -> Option<Box<dyn Destination>> {
            match &r.destination {
                DestinationUrl::File { dir } => Some(Box::new(Counting {
                    inner: FileDestination::new(dir),
                    calls: c2.clone(),
                })),
                _ => None,
            }
        };
        let mut svc = f.service(&connect);
        svc.receive("acme", &f.instance(0, "GW18-FAY", &study(7), 1))
            .unwrap();
        svc.receive("acme", &f.instance(1, "GW18-FAY", &study(7), 2))
            .unwrap();
        svc.receive("acme", &f.instance(0, DENIED, &study(8), 1))
            .unwrap();
        // an instance written to the spool but never recorded (killed
        // before its row committed, so never acknowledged)
        svc.spool().put(b"orphan").unwrap();
        svc.crash_after(Some(k));
        f.at(10);
        let crashed = match svc.tick() {
            Err(Error::Stopped) => true,
            Ok(_) => false,
            Err(e) => panic!("step {k}: {e}"),
        };
        drop(svc);
        let mut svc = f.service(&connect);
        for _ in 0..3 {
            svc.tick().unwrap();
        }
        // exactly once at the recipient, exactly one decision per study,
        // an empty spool
        let got = delivered_ids(&f.dest("acme"));
        assert_eq!(got.len(), 2, "step {k}: {got:?}");
        let calls = calls.lock().unwrap().clone();
        assert_eq!(calls.len(), 2, "step {k}: {calls:?}");
        let repeats: usize = calls.values().map(|n| n - 1).sum();
        assert!(
            repeats <= 1,
            "step {k}: only an instance confirmed but not yet recorded is sent again: {calls:?}"
        );
        let d = decisions(&f);
        assert_eq!(d.len(), 2, "step {k}: {d:?}");
        assert_eq!(svc.spool().files(), Vec::<PathBuf>::new(), "step {k}");
        let st = queue::status(&mut svc.site().store).unwrap();
        assert!(st.open.is_empty(), "step {k}: {st:?}");
        std::fs::remove_dir_all(&f.home).unwrap();
        if !crashed {
            assert!(k > 8, "every durable step was a crash point ({k})");
            break;
        }
        k += 1;
    }
}

#[test]
fn issue_18_config_errors_name_the_field() {
    let base = r#"
[dicom]
port = 11112
allowed_calling_aes = ["PACS"]

[[route]]
name = "acme"
called_ae = "VEIL_ACME"
recipient = "acme-ai"
purpose = "ai-training"
study_stable_seconds = 10
destination = "dicom://RECIP@127.0.0.1:4243"
source = "dicom://PACS@127.0.0.1:4242"
"#;
    let c = Config::parse(base).unwrap();
    assert_eq!(
        c.routes[0].destination,
        DestinationUrl::Dicom {
            ae: "RECIP".into(),
            host: "127.0.0.1".into(),
            port: 4243
        }
    );
    assert!(c.dicom.allows("PACS") && !c.dicom.allows("OTHER"));
    assert_eq!(c.route_for_called_ae("VEIL_ACME").unwrap().name, "acme");
    let route2 = |extra: &str| {
        format!("{base}\n[[route]]\nname = \"b\"\ncalled_ae = \"VEIL_B\"\nrecipient = \"r\"\npurpose = \"p\"\n{extra}\n")
    };
    let err = |text: &str| Config::parse(text).unwrap_err().to_string();
    let cases: Vec<(String, &str)> = vec![
        (route2("destination = \"ftp://x/y\""), "route[1].destination: unknown scheme 'ftp'"),
        (route2("destination = \"file://relative\""), "route[1].destination: expected file:///absolute/dir"),
        (route2("destination = \"dicom://X@h:port\""), "route[1].destination: port 'port' is not a number"),
        (route2(""), "route[1].destination: missing"),
        (route2("destination = \"file:///d\"\ndestinaton = 1"), "route[1].destinaton: unknown field"),
        (route2("destination = \"file:///d\"\nstudy_stable_seconds = \"ten\""), "route[1].study_stable_seconds: invalid type"),
        (route2("destination = \"file:///d\"\nsource = \"file:///x\""), "route[1].source: a source is a PACS"),
        (base.replace("port = 11112", "port = 70000"), "dicom.port:"),
        (base.replace("port = 11112", "port = 11112\nmax_pdu = 4096"), "dicom.max_pdu: must be 16384 to 1048576 bytes"),
        (base.replace("[\"PACS\"]", "[\"WAY_TOO_LONG_AE_TITLE\"]"), "dicom.allowed_calling_aes[0]: an AE title is 1 to 16 characters"),
        (format!("{base}\n[queue]\nmax_attempts = 0\n"), "queue.max_attempts: must be at least 1"),
        (format!("{base}\n[queue]\nbackoff = 3\n"), "queue.backoff: unknown field"),
        (format!("{base}\n[http]\n"), "http.listen: missing"),
        (base.replace("[\"PACS\"]", "[\"PACS\"]\ntls = { cert = \"/c\" }"), "dicom.tls.key: missing"),
        (base.replace("[\"PACS\"]", "[\"PACS\"]\ntls = { cert = \"/c\", key = \"/k\", pin = 1 }"), "dicom.tls.pin: unknown field"),
        (format!("{base}\n[http]\nlisten = \"nowhere\"\n"), "http.listen:"),
        (format!("{base}\n[spool]\ndir = \"rel\"\n"), "spool.dir: must be an absolute path"),
        (format!("{base}\n[dicomm]\nport = 1\n"), "dicomm: unknown section"),
        (format!("{base}\n[http]\nlisten = \"127.0.0.1:8080\"\ntokens = [\"veil_secret\"]\n"), "http.tokens[0]: expected a token's SHA-256"),
        (format!("{base}\n[http]\nlisten = \"127.0.0.1:8080\"\nmetrics_open = \"yes\"\n"), "http.metrics_open: invalid type"),
        (base.replace("[\"PACS\"]", "[\"PACS\"]\nae_title = \"\""), "dicom.ae_title: an AE title is 1 to 16 characters"),
        (base.replace("[\"PACS\"]", "[\"PACS\"]\nbind = \"localhost\""), "dicom.bind: invalid"),
        (route2("destination = \"file:///d\"\ntoken_file = \"/t\""), "route[1].token_file: only a dicomweb+http(s):// destination takes a token"),
        (route2("destination = \"dicomweb+http://h/p\"\ntoken_file = \"t\""), "route[1].token_file: must be an absolute path"),
        (route2("destination = \"file:///d\"\ndestination_tls = { ca = \"/ca\" }"), "route[1].destination_tls: only a dicom:// destination takes DICOM TLS"),
        (route2("destination = \"dicom://R@h:1\"\ndestination_tls = { ca = \"/ca\", cert = \"/c\" }"), "route[1].destination_tls: cert and key go together"),
        (route2("destination = \"dicom://R@h:1\"\ndestination_tls = { cert = \"/c\", key = \"/k\" }"), "route[1].destination_tls.ca: missing"),
        (route2("destination = \"dicom://R@h:1\"\ndestination_tls = { ca = \"/ca\", pin = 1 }"), "route[1].destination_tls.pin: unknown field"),
        (route2("destination = \"dicom://R@h:1\"\nsource_tls = { ca = \"/ca\" }"), "route[1].source_tls: no source to call"),
        (format!("{base}\n[queue]\nparallel_deliveries = 0\n"), "queue.parallel_deliveries: must be 1 to 16"),
        (base.replace("[[route]]\n", "").replace("name = \"acme\"\ncalled_ae = \"VEIL_ACME\"\nrecipient = \"acme-ai\"\npurpose = \"ai-training\"\nstudy_stable_seconds = 10\ndestination = \"dicom://RECIP@127.0.0.1:4243\"\nsource = \"dicom://PACS@127.0.0.1:4242\"\n", ""), "route: at least one"),
    ];
    for (text, want) in &cases {
        let got = err(text);
        assert!(got.starts_with(want), "want {want:?}, got {got:?}");
    }
    // duplicate route names and called AEs
    let dup_name = format!("{base}\n[[route]]\nname = \"acme\"\ncalled_ae = \"OTHER\"\nrecipient = \"r\"\npurpose = \"p\"\ndestination = \"file:///d\"\n");
    assert_eq!(
        err(&dup_name),
        "route[1].name: 'acme' is also route[0]'s name"
    );
    let dup_ae = format!("{base}\n[[route]]\nname = \"b\"\ncalled_ae = \"VEIL_ACME\"\nrecipient = \"r\"\npurpose = \"p\"\ndestination = \"file:///d\"\n");
    assert_eq!(
        err(&dup_ae),
        "route[1].called_ae: 'VEIL_ACME' is also route[0]'s called AE"
    );
}

#[test]
fn issue_18_routes_are_checked_against_the_store_at_start() {
    let Some(f) = fixture("gw18-start") else {
        return;
    };
    let site = || Site::open(None, &f.home).unwrap();
    let clock = || Box::new(TestClock(f.clock.clone()));
    // an unregistered recipient; a purpose the recipient is not registered for
    let cfg = Config::parse(
        &f.config
            .replace("recipient = \"beta\"", "recipient = \"gamma\""),
    )
    .unwrap();
    let e = Service::open(cfg, site(), clock(), &no_connect)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.starts_with("route[1].recipient: no recipient named gamma"),
        "{e}"
    );
    let cfg = Config::parse(
        &f.config
            .replace("purpose = \"research\"", "purpose = \"marketing\""),
    )
    .unwrap();
    let e = Service::open(cfg, site(), clock(), &no_connect)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.starts_with("route[1].recipient: recipient beta is not registered for purpose marketing"),
        "{e}"
    );
    // a scheme no linked layer delivers to
    let cfg = Config::parse(&f.config.replace(
        &format!("file://{}/dest-beta", f.home.display()),
        "dicom://RECIP@127.0.0.1:4243",
    ))
    .unwrap();
    let e = Service::open(cfg, site(), clock(), &no_connect)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.starts_with("route[1].destination: no delivery for this scheme"),
        "{e}"
    );
}

#[test]
fn issue_18_a_failing_decision_is_retried_parked_and_retried_by_hand() {
    let Some(f) = fixture("gw18-process-fail") else {
        return;
    };
    let mut svc = f.service(&no_connect);
    let id = svc
        .receive("acme", &f.instance(0, "GW18-GUS", &study(9), 1))
        .unwrap()
        .study_id;
    // the recipient's key file is gone: nothing can be de-identified, so
    // nothing is decided or logged, and the attempt counts
    let key = f.home.join("keys/acme.key");
    let aside = f.home.join("acme.key.aside");
    std::fs::rename(&key, &aside).unwrap();
    let before = decisions(&f).len();
    for (t, failures) in [(10, 1), (15, 0), (20, 1), (39, 0), (40, 1)] {
        f.at(t);
        assert_eq!(svc.tick().unwrap().failures, failures, "at {t}");
    }
    let s = svc.site().store.queue_study(&id).unwrap().unwrap();
    assert_eq!((s.state, s.attempts), (Q::DeadLetter, 3));
    let why = s.reason.unwrap();
    assert!(why.starts_with("processing: recipient key"), "{why}");
    assert!(
        !why.contains(&f.home.display().to_string()),
        "no path: {why}"
    );
    assert_eq!(decisions(&f).len(), before, "nothing logged");
    assert_eq!(svc.spool().files().len(), 1, "the instance is kept");
    // the key is back: a retry decides it again, from the decision on
    std::fs::rename(&aside, &key).unwrap();
    assert_eq!(
        queue::retry(&mut svc.site().store, &id, T0 + 50).unwrap(),
        Q::Ready
    );
    let rep = svc.tick().unwrap();
    assert_eq!((rep.released, rep.delivered_studies), (1, 1), "{rep:?}");
    assert_eq!(dicom_files(&f.dest("acme")).len(), 1);
    assert!(svc.spool().files().is_empty());
}

#[test]
fn issue_18_a_data_set_as_c_store_carries_it_is_received_and_released() {
    let Some(f) = fixture("gw18-dataset") else {
        return;
    };
    let mut svc = f.service(&no_connect);
    let part10 = f.instance(0, "GW18-HAL", &study(10), 1);
    // the data set after the File Meta (its group length says where)
    assert_eq!(&part10[128..132], b"DICM");
    let meta_len = u32::from_le_bytes(part10[140..144].try_into().unwrap()) as usize;
    let dataset = &part10[144 + meta_len..];
    let file = veil_io::read_bytes(part10.clone()).unwrap();
    let class = file.dataset.ascii(Tag(0x0008, 0x0016)).unwrap();
    let sop = Phi::new(file.dataset.ascii(Tag(0x0008, 0x0018)).unwrap());
    let r = svc
        .intake()
        .receive_dataset("acme", &class, &sop, &file.ts.uid, &mut &dataset[..])
        .unwrap();
    // the same instance as a Part 10 file is the same instance
    assert!(svc.receive("acme", &part10).unwrap().duplicate);
    f.at(10);
    let rep = svc.tick().unwrap();
    assert_eq!((rep.released, rep.delivered_instances), (1, 1), "{rep:?}");
    assert_eq!(delivered_ids(&f.dest("acme")).len(), 1);
    let st = svc.site().store.queue_study(&r.study_id).unwrap().unwrap();
    assert_eq!(st.state, Q::Delivered);
    // a data set that is not DICOM is refused, nothing kept
    let e = svc.intake().receive_dataset(
        "acme",
        &class,
        &sop,
        &file.ts.uid,
        &mut &b"\x01\x02garbage"[..],
    );
    assert!(matches!(e, Err(Error::Refused(_))), "{e:?}");
    assert!(svc.spool().files().is_empty());
    // a sender that breaks off halfway (the data set streams into the
    // spool): Incomplete, and nothing is left in the spool
    struct BreaksOff<'a>(&'a [u8]);
    impl std::io::Read for BreaksOff<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0.is_empty() {
                return Err(std::io::ErrorKind::ConnectionReset.into());
            }
            let n = buf.len().min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    let half = &dataset[..dataset.len() / 2];
    let e = svc
        .intake()
        .receive_dataset("acme", &class, &sop, &file.ts.uid, &mut BreaksOff(half));
    assert!(
        matches!(
            e,
            Err(Error::Incomplete(std::io::ErrorKind::ConnectionReset))
        ),
        "{e:?}"
    );
    assert!(svc.spool().files().is_empty());
}

#[test]
fn issue_18_an_instance_sent_again_after_delivery_leaves_one_copy() {
    let Some(f) = fixture("gw18-resend") else {
        return;
    };
    let mut svc = f.service(&no_connect);
    let bytes = f.instance(0, "GW18-JO", &study(13), 1);
    let first = svc.receive("acme", &bytes).unwrap();
    f.at(10);
    assert_eq!(svc.tick().unwrap().delivered_instances, 1);
    let before = veil_test::tree(&f.dest("acme"));
    // the sender never saw the acknowledgement and sends it again
    let again = svc.receive("acme", &bytes).unwrap();
    assert_ne!(again.study_id, first.study_id, "a new queue study");
    assert!(!again.duplicate);
    f.at(20);
    let rep = svc.tick().unwrap();
    assert_eq!((rep.released, rep.delivered_instances), (1, 1), "{rep:?}");
    assert_eq!(
        veil_test::tree(&f.dest("acme")),
        before,
        "the same name, the same bytes: one copy"
    );
    assert_eq!(decisions(&f).len(), 2, "each decision made is logged");
    assert!(svc.spool().files().is_empty());
}

#[test]
fn issue_18_instances_held_for_review_are_counted_and_not_delivered() {
    let Some(f) = fixture("gw18-review") else {
        return;
    };
    let mut svc = f.service(&no_connect);
    // an ultrasound the pipeline holds for review (burned-in text it
    // cannot clear without pixel cleaning), beside a CT it releases
    let id = svc
        .receive("acme", &f.instance(0, "GW18-KIM", &study(14), 1))
        .unwrap()
        .study_id;
    svc.receive(
        "acme",
        &f.instance_of(
            "pydicom-data-1.0.0/data_store__data__US1_UNCR.dcm",
            "GW18-KIM",
            &study(14),
            2,
        ),
    )
    .unwrap();
    f.at(10);
    let rep = svc.tick().unwrap();
    assert_eq!((rep.released, rep.delivered_instances), (1, 1), "{rep:?}");
    let s = svc.site().store.queue_study(&id).unwrap().unwrap();
    assert_eq!(s.state, Q::Delivered);
    assert_eq!(
        s.reason.as_deref(),
        Some("1 instance held for review, not delivered")
    );
    assert_eq!(dicom_files(&f.dest("acme")).len(), 1);
    assert!(svc.spool().files().is_empty());
}

#[test]
fn issue_18_a_courier_thread_delivers_while_ticks_decide() {
    if let Some(f) = fixture("gw18-courier") {
        courier(&f);
    }
}

#[test]
fn issue_18_a_courier_thread_on_postgresql() {
    let Some(base) = veil_test::pg_url() else {
        return;
    };
    let url =
        veil_store::create_pg_database(&base, &format!("veil_gw18_courier_{}", std::process::id()))
            .unwrap();
    if let Some(f) = fixture_on("gw18-courier-pg", Some(url)) {
        courier(&f);
    }
}

/// `veil serve`'s mode: deliveries on threads of their own (two), each
/// over its own store connection, handed over as decisions commit; ticks
/// never wait for them. Several studies, a denied one, a destination that fails
/// once: each instance delivered exactly once, every decision logged
/// once, the queue finished and the spool empty; `drain` waits for what
/// was handed over.
fn courier(f: &Fixture) {
    let calls: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
    let c2 = calls.clone();
    let fail_once = Arc::new(AtomicBool::new(true));
    let connect = move |r: &Route| -> Option<Box<dyn Destination>> {
        match &r.destination {
            DestinationUrl::File { dir } if r.name == "acme" => Some(Box::new(FailsOnce {
                inner: Counting {
                    inner: FileDestination::new(dir),
                    calls: c2.clone(),
                },
                fail: fail_once.clone(),
            })),
            _ => None,
        }
    };
    let mut svc = f.service(&connect);
    // two couriers, as veil serve's default: the failing-once destination
    // is shared, so whichever courier comes first meets the failure
    let couriers = (0..2)
        .map(|_| CourierParts {
            store: f.site().store,
            clock: Box::new(TestClock(f.clock.clone())),
            destinations: make_destinations(&f.config(), &connect).unwrap(),
        })
        .collect();
    svc.deliver_concurrently(couriers).unwrap();
    for n in 0..6u32 {
        for i in 0..2 {
            let patient = if n == 3 { DENIED } else { "GW18-COURIER" };
            svc.receive("acme", &f.instance(i, patient, &study(40 + n), i + 1))
                .unwrap();
        }
    }
    f.at(10);
    let mut total = svc.tick().unwrap();
    // the first attempt of one study failed; its retry is due after the
    // backoff; ticks go on collecting what the courier finished
    let t = std::time::Instant::now();
    let mut clock = 10;
    while !queue::status(&mut svc.site().store)
        .unwrap()
        .open
        .is_empty()
    {
        assert!(t.elapsed().as_secs() < 120, "the courier never finished");
        std::thread::sleep(std::time::Duration::from_millis(50));
        clock += 1;
        f.at(clock);
        let rep = svc.tick().unwrap();
        total.released += rep.released;
        total.delivered_instances += rep.delivered_instances;
        total.delivered_studies += rep.delivered_studies;
        total.failures += rep.failures;
    }
    let rest = svc.drain().unwrap();
    total.delivered_instances += rest.delivered_instances;
    assert_eq!(total.released, 5, "{total:?}");
    assert_eq!(total.failures, 1, "{total:?}");
    assert_eq!(total.delivered_instances, 10, "{total:?}");
    let got = delivered_ids(&f.dest("acme"));
    assert_eq!(got.len(), 10, "{got:?}");
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 10);
    assert!(calls.values().all(|&n| n == 1), "{calls:?}");
    assert_eq!(decisions(f).len(), 6);
    assert!(f.site().verify_ledger().unwrap().ok);
    assert_eq!(svc.spool().files(), Vec::<PathBuf>::new());
    // after drain the destinations are back: a later study is delivered
    // by the tick itself
    svc.receive("acme", &f.instance(0, "GW18-COURIER", &study(49), 1))
        .unwrap();
    f.at(clock + 100);
    let rep = svc.tick().unwrap();
    assert_eq!(rep.delivered_instances, 1, "{rep:?}");
}

/// Fails its first delivery, then passes everything to `inner`.
struct FailsOnce {
    inner: Counting,
    fail: Arc<AtomicBool>,
}

impl Destination for FailsOnce {
    fn deliver(&mut self, name: &str, file: &Path) -> Result<(), DeliveryError> {
        if self.fail.swap(false, Ordering::SeqCst) {
            return Err(DeliveryError("down once".into()));
        }
        self.inner.deliver(name, file)
    }
}
