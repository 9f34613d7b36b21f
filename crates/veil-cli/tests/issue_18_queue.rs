//! Issue 18: `veil queue status|retry|drop --config veil.toml` on a queue
//! the gateway core filled (a destination that fails parks studies in
//! dead-letter), and configuration errors that name the field.

#[path = "../../veil-release/tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use veil_gateway::{Clock, Config, DeliveryError, Destination, Route, Service};

fn veil(home: &Path, args: &[&str]) -> (i32, String) {
    veil_test::output(veil_test::veil_command(env!("CARGO_BIN_EXE_veil"), home, None).args(args))
}

struct TestClock(Arc<AtomicI64>);

impl Clock for TestClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

struct Down;

impl Destination for Down {
    fn deliver(&mut self, _: &str, _: &Path) -> Result<(), DeliveryError> {
        Err(DeliveryError("test: peer down".into()))
    }
}

#[test]
fn issue_18_queue_status_retry_drop() {
    let Some(corpus) = veil_test::corpus() else {
        return;
    };
    let home = veil_test::scratch("gw18-cli-queue");
    veil_test::ok(veil(&home, &["init"]));
    let recipe = home.join("r.toml");
    veil_io::atomic::write_all(&recipe, b"name = \"gw\"\nversion = \"1\"\n").unwrap();
    let r = recipe.to_str().unwrap();
    veil_test::ok(veil(
        &home,
        &[
            "recipient",
            "add",
            "acme",
            "--purpose",
            "ai-training",
            "--recipe",
            r,
            "--retention-days",
            "30",
        ],
    ));
    veil_test::ok(veil(
        &home,
        &["consent", "default", "ai-training", "opt-out"],
    ));
    let dest = home.join("dest");
    let cfg_path = home.join("veil.toml");
    let text = format!(
        "[queue]\nmax_attempts = 1\n\n[[route]]\nname = \"acme\"\ncalled_ae = \"VEIL_ACME\"\nrecipient = \"acme\"\npurpose = \"ai-training\"\nstudy_stable_seconds = 5\ndestination = \"file://{}\"\n",
        dest.display()
    );
    veil_io::atomic::write_all(&cfg_path, text.as_bytes()).unwrap();
    let cfg = cfg_path.to_str().unwrap();
    let out = veil_test::ok(veil(&home, &["queue", "status", "--config", cfg]));
    assert!(out.contains("the queue is empty"), "{out}");

    // two studies parked by a destination that is down
    let clock = Arc::new(AtomicI64::new(1_800_000_000));
    let site = veil_release::Site::open(None, &home).unwrap();
    let down = |_: &Route| -> Option<Box<dyn Destination>> { Some(Box::new(Down)) };
    let mut svc = Service::open(
        Config::parse(&text).unwrap(),
        site,
        Box::new(TestClock(clock.clone())),
        &down,
    )
    .unwrap();
    let srcs = common::sources(&corpus);
    let mut ids = Vec::new();
    for (n, patient) in ["GW18-CLI-A", "GW18-CLI-B"].iter().enumerate() {
        let p = home.join(format!("src{n}.dcm"));
        common::plant(
            &srcs[n],
            &p,
            patient,
            &format!("1.2.826.0.1.3680043.9.7719.{n}"),
            1,
        );
        ids.push(
            svc.receive("acme", &std::fs::read(&p).unwrap())
                .unwrap()
                .study_id,
        );
    }
    clock.store(1_800_000_010, Ordering::SeqCst);
    let rep = svc.tick().unwrap();
    assert_eq!((rep.released, rep.dead_lettered), (2, 2), "{rep:?}");
    drop(svc);

    let out = veil_test::ok(veil(&home, &["queue", "status", "--config", cfg]));
    assert!(out.contains("route acme: 2 dead-letter"), "{out}");
    assert!(out.contains("delivery: test: peer down"), "{out}");
    assert!(
        !out.contains("GW18") && !out.contains("7719"),
        "no PHI: {out}"
    );
    let json = veil_test::ok(veil(&home, &["queue", "status", "--config", cfg, "--json"]));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["open"].as_array().unwrap().len(), 2);

    // retry one, drop the other
    let out = veil_test::ok(veil(&home, &["queue", "retry", &ids[0], "--config", cfg]));
    assert!(out.contains("delivering"), "{out}");
    let out = veil_test::ok(veil(&home, &["queue", "drop", &ids[1], "--config", cfg]));
    assert!(out.contains("dropped; 1 instance deleted"), "{out}");
    let (code, out) = veil(&home, &["queue", "drop", &ids[1], "--config", cfg]);
    assert_ne!(code, 0, "a dropped study cannot be dropped again: {out}");
    let (code, out) = veil(&home, &["queue", "retry", "nosuchid", "--config", cfg]);
    assert!(
        code != 0 && out.contains("no queue study nosuchid"),
        "{out}"
    );

    // the peer is back: the retried study is delivered, the dropped one not
    let site = veil_release::Site::open(None, &home).unwrap();
    let none = |_: &Route| -> Option<Box<dyn Destination>> { None };
    let mut svc = Service::open(
        Config::parse(&text).unwrap(),
        site,
        Box::new(TestClock(clock)),
        &none,
    )
    .unwrap();
    let rep = svc.tick().unwrap();
    assert_eq!(rep.delivered_studies, 1, "{rep:?}");
    assert_eq!(veil_test::files(&dest).len(), 1);
    assert!(svc.spool().files().is_empty());
    let out = veil_test::ok(veil(&home, &["queue", "status", "--config", cfg]));
    assert!(
        out.contains("1 delivered") && out.contains("1 dropped"),
        "{out}"
    );

    // a configuration error names the field
    let bad = home.join("bad.toml");
    veil_io::atomic::write_all(&bad, text.replace("file://", "ftp://").as_bytes()).unwrap();
    let (code, out) = veil(
        &home,
        &["queue", "status", "--config", bad.to_str().unwrap()],
    );
    assert_ne!(code, 0);
    assert!(
        out.contains("route[0].destination: unknown scheme 'ftp'"),
        "{out}"
    );
    std::fs::remove_dir_all(&home).unwrap();
}
