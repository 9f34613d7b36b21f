//! Issue 20, a shared PostgreSQL store: several processes (releases,
//! `veil serve`, workers) open a store at the same moment, the first time
//! or after an upgrade that brings migrations. Each must find the schema
//! whole, and every migration must run once.

use veil_store::{Store, Val};

/// Six threads open the store at `db(round)` at once, three rounds.
fn first_opens(tag: &str, db: impl Fn(usize) -> String) {
    for round in 0..3 {
        let db = db(round);
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(6));
        let threads: Vec<_> = (0..6)
            .map(|i| {
                let db = db.clone();
                let barrier = barrier.clone();
                let tag = tag.to_string();
                std::thread::spawn(move || {
                    let home = std::env::temp_dir().join(format!(
                        "veil-i20-migrate-{tag}-{}-{round}-{i}",
                        std::process::id()
                    ));
                    barrier.wait();
                    let r = Store::open(Some(&db), &home).map(|mut s| s.schema_version());
                    let _ = std::fs::remove_dir_all(&home);
                    r.map_err(|e| e.to_string())
                        .and_then(|v| v.map_err(|e| e.to_string()))
                })
            })
            .collect();
        for t in threads {
            let v = t.join().unwrap();
            assert!(
                matches!(v, Ok(n) if n >= 7),
                "round {round}: a concurrent first open failed: {v:?}"
            );
        }
        let home = std::env::temp_dir().join(format!(
            "veil-i20-migrate-{tag}-{}-check",
            std::process::id()
        ));
        let mut s = Store::open(Some(&db), &home).unwrap();
        let n = s
            .query(
                "SELECT COUNT(*), COUNT(DISTINCT version) FROM schema_migrations",
                &[],
            )
            .unwrap();
        assert_eq!(n[0][0], n[0][1], "each migration recorded once");
        assert_eq!(n[0][0], Val::i(s.schema_version().unwrap()));
        let _ = std::fs::remove_dir_all(&home);
    }
}

#[test]
fn issue_20_concurrent_first_opens_migrate_once_on_postgresql() {
    let Some(base) = veil_test::pg_url() else {
        return;
    };
    first_opens("pg", |round| {
        veil_store::create_pg_database(
            &base,
            &format!("veil_i20_migrate_{}_{round}", std::process::id()),
        )
        .unwrap()
    });
}

#[test]
fn issue_20_concurrent_first_opens_migrate_once_on_sqlite() {
    let dir = veil_test::scratch("i20-migrate-sqlite");
    first_opens("sqlite", |round| {
        dir.join(format!("{round}.db"))
            .to_str()
            .unwrap()
            .to_string()
    });
    std::fs::remove_dir_all(&dir).unwrap();
}
