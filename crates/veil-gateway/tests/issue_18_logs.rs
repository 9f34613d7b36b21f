//! Issue 18: the gateway's logs say each step and carry no PHI or path.
//! A test binary of its own: a scoped subscriber sees every event only
//! when no other test registers the same call sites first on another
//! thread (tracing caches their interest per process).

mod support;

use std::sync::{Arc, Mutex};

use support::{fixture, no_connect, study, DENIED};

/// Collects what the service logs, at every level.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn issue_18_logs_carry_no_phi_and_no_path() {
    let Some(f) = fixture("gw18-logs") else {
        return;
    };
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let mut svc = f.service(&no_connect);
        svc.receive("acme", &f.instance(0, "GW18-IDA", &study(11), 1))
            .unwrap();
        svc.receive("acme", &f.instance(1, DENIED, &study(12), 1))
            .unwrap();
        // never recorded: swept at the next start, and that is logged
        svc.spool().put(b"orphan").unwrap();
        drop(svc);
        let mut svc = f.service(&no_connect);
        f.at(10);
        let rep = svc.tick().unwrap();
        assert_eq!((rep.released, rep.refused), (1, 1), "{rep:?}");
    });
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    for said in [
        "received an instance",
        "spool: deleted what no recorded study accounts for",
        "queue: study decided and logged",
        "queue: study delivered",
        "spool: deleted a finished study's instances",
    ] {
        assert!(text.contains(said), "{said:?} not logged:\n{text}");
    }
    for phi in [
        "GW18-",
        "1.2.826.0.1.3680043.9.7718.",
        &f.home.display().to_string(),
    ] {
        assert!(!text.contains(phi), "{phi} in the logs:\n{text}");
    }
}
