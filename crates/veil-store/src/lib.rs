//! Veil's store: recipients, consent records, site defaults, the ledger
//! rows, checkpoints and staged outputs.
//!
//! Embedded SQLite by default (one file, `$VEIL_HOME/veil.db`, created on
//! first use), PostgreSQL when given a `postgres://` URL. Why both: a small
//! site needs nothing to install, a large one already runs PostgreSQL with
//! backups and replication. The schema is the same on both (TEXT and BIGINT
//! columns only, no engine-specific types) and is created by numbered
//! migrations recorded in `schema_migrations`, so a store can be upgraded in
//! place and its version read by anyone.
//!
//! The store holds no secret. The keys (ledger signing key, site HMAC key,
//! recipients' pseudonymization keys) are 0600 files under `$VEIL_HOME`:
//! someone who can write to the database cannot forge a signed tree head.
//! It records only their public side (`key_records`: the site key's id and
//! the ledger public key), so that a store opened with another home's keys
//! is refused and the ledger can be verified where the secret is absent.

use std::path::{Path, PathBuf};

pub mod pg;
pub mod portal;
pub mod queue;

use veil_consent::{Consent, Provision, Recipient, SiteDefault};
use veil_core::Phi;

/// Store errors. They name tables and operations, never values.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL failed.
    #[error("postgresql: {}", pg_message(.0))]
    Postgres(#[from] postgres::Error),
    /// Files under `$VEIL_HOME`.
    #[error("veil home: {0}")]
    Io(#[from] std::io::Error),
    /// A row that does not decode.
    #[error("store: {0}")]
    Corrupt(String),
    /// Something the caller asked for that cannot be done.
    #[error("{0}")]
    Invalid(String),
}

/// A PostgreSQL error's text: the server's message and SQLSTATE (the bare
/// Display says only "db error"), or the client's error with its cause
/// (a refused certificate, a failed password). Never the server's DETAIL,
/// which may quote row values.
fn pg_message(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} (SQLSTATE {})", db.message(), db.code().code());
    }
    match std::error::Error::source(e) {
        Some(src) => format!("{e}: {src}"),
        None => e.to_string(),
    }
}

/// A SQL value: the schema uses only these two types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Val {
    /// BIGINT.
    Int(Option<i64>),
    /// TEXT.
    Text(Option<String>),
}

impl Val {
    /// A text value.
    pub fn t(s: impl Into<String>) -> Val {
        Val::Text(Some(s.into()))
    }
    /// An optional text value.
    pub fn ot(s: Option<impl Into<String>>) -> Val {
        Val::Text(s.map(Into::into))
    }
    /// An integer value.
    pub fn i(n: i64) -> Val {
        Val::Int(Some(n))
    }
    /// As text (`None` for NULL or an integer).
    pub fn text(&self) -> Option<&str> {
        match self {
            Val::Text(t) => t.as_deref(),
            Val::Int(_) => None,
        }
    }
    /// As an integer.
    pub fn int(&self) -> Option<i64> {
        match self {
            Val::Int(n) => *n,
            Val::Text(_) => None,
        }
    }
}

enum Db {
    Sqlite(rusqlite::Connection),
    Pg(Box<postgres::Client>),
}

/// An open store.
pub struct Store {
    db: Db,
    home: PathBuf,
}

/// The migrations, in order. Each runs once, in a transaction, and is
/// recorded in `schema_migrations`. Append only: never edit a released one.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "recipients, consents, site defaults, ledger, checkpoints, staged outputs",
        "CREATE TABLE recipients (
        name TEXT PRIMARY KEY,
        category TEXT,
        contact TEXT,
        address TEXT,
        purposes TEXT NOT NULL,
        recipe_toml TEXT NOT NULL,
        recipe_label TEXT NOT NULL,
        key_file TEXT NOT NULL,
        key_id TEXT NOT NULL,
        retention_days BIGINT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE consents (
        id TEXT PRIMARY KEY,
        patient_ref TEXT NOT NULL,
        patient_id TEXT NOT NULL,
        patient_system TEXT,
        status TEXT NOT NULL,
        date_time TEXT,
        provisions TEXT NOT NULL,
        source TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX consents_patient_ref ON consents (patient_ref);
    CREATE TABLE site_defaults (
        purpose TEXT PRIMARY KEY,
        mode TEXT NOT NULL
    );
    CREATE TABLE ledger (
        seq BIGINT PRIMARY KEY,
        entry TEXT NOT NULL,
        leaf_hash TEXT NOT NULL,
        head_sig TEXT NOT NULL
    );
    CREATE TABLE checkpoints (
        size BIGINT PRIMARY KEY,
        root TEXT NOT NULL,
        time TEXT NOT NULL,
        key_id TEXT NOT NULL,
        signature TEXT NOT NULL
    );
    CREATE TABLE staged (
        ledger_seq BIGINT PRIMARY KEY,
        recipient TEXT NOT NULL,
        out_root TEXT NOT NULL,
        files TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        deleted_at TEXT
    );",
    ),
    (
        2,
        "key records: the site key's id and the ledger public key",
        // Which keys this store belongs to: `site` -> the site HMAC key's id
        // (a hash, never the key), `ledger` -> the ledger's Ed25519 public key
        // (hex). Checked on every open, so a store used with another
        // $VEIL_HOME (other patient references) is refused.
        "CREATE TABLE key_records (
        role TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        recorded_at TEXT NOT NULL
    );",
    ),
    (
        3,
        "consents append-only: one row per version of a record",
        // why: a re-import or a later `consent set` used to DELETE the row
        // with the same id, so one file could erase another patient's
        // record; now a change is a new version and nothing is deleted
        "CREATE TABLE consent_versions (
        id TEXT NOT NULL,
        version BIGINT NOT NULL,
        patient_ref TEXT NOT NULL,
        patient_id TEXT NOT NULL,
        patient_system TEXT,
        status TEXT NOT NULL,
        date_time TEXT,
        provisions TEXT NOT NULL,
        source TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (id, version)
    );
    INSERT INTO consent_versions (id, version, patient_ref, patient_id, patient_system, status, date_time, provisions, source, updated_at)
        SELECT id, 1, patient_ref, patient_id, patient_system, status, date_time, provisions, source, updated_at FROM consents;
    DROP TABLE consents;
    ALTER TABLE consent_versions RENAME TO consents;
    CREATE INDEX consents_patient_ref ON consents (patient_ref);",
    ),
    (
        4,
        "recipients can be removed; the row stays for the ledger's history",
        // why: `veil recipient remove` must stop a recipient from receiving
        // without erasing who received what; a removed name is not reused
        "ALTER TABLE recipients ADD COLUMN removed_at TEXT;",
    ),
    (
        5,
        "gateway queue: studies per route, their spooled instances and staged outputs",
        // why in the store: `veil serve` must resume after a crash from
        // what was committed, and `veil queue` reads the same rows. Times
        // are unix seconds (the service's clock can be injected in
        // tests); no column holds PHI: studies and instances are keyed
        // hashes, spool files random names, outputs pseudonymous names.
        "CREATE TABLE queue_studies (
        id TEXT PRIMARY KEY,
        route TEXT NOT NULL,
        study_key TEXT NOT NULL,
        state TEXT NOT NULL,
        instances BIGINT NOT NULL,
        first_received_at BIGINT NOT NULL,
        last_received_at BIGINT NOT NULL,
        decision TEXT,
        reason TEXT,
        ledger_seqs TEXT,
        attempts BIGINT NOT NULL,
        next_attempt_at BIGINT,
        updated_at BIGINT NOT NULL,
        cleared_at BIGINT
    );
    CREATE INDEX queue_studies_state ON queue_studies (state);
    CREATE INDEX queue_studies_route_key ON queue_studies (route, study_key);
    CREATE TABLE queue_instances (
        study_id TEXT NOT NULL,
        instance_key TEXT NOT NULL,
        spool_name TEXT NOT NULL,
        received_at BIGINT NOT NULL,
        PRIMARY KEY (study_id, instance_key)
    );
    CREATE TABLE queue_outputs (
        study_id TEXT NOT NULL,
        name TEXT NOT NULL,
        delivered_at BIGINT,
        PRIMARY KEY (study_id, name)
    );",
    ),
    (
        6,
        "portal and console: invitations, accounts, sessions, sign-in attempts, staff lookups, flags",
        // why: the patient portal and the staff console (issue 19) keep
        // their state next to the ledger it refers to. Patients appear only
        // as the ledger's keyed reference (patient_ref), never as an ID;
        // invitation and session tokens only as SHA-256 hashes, passwords
        // only as argon2id PHC strings, TOTP secrets not at all (a random
        // nonce the secret is derived from under the site key). Times are
        // unix seconds, as in the queue, so tests can inject a clock.
        "CREATE TABLE portal_invitations (
        token_hash TEXT PRIMARY KEY,
        patient_ref TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        used_at BIGINT
    );
    CREATE INDEX portal_invitations_patient ON portal_invitations (patient_ref);
    CREATE TABLE portal_patients (
        patient_ref TEXT PRIMARY KEY,
        password_hash TEXT NOT NULL,
        totp_nonce TEXT,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    );
    CREATE TABLE portal_staff (
        name TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        totp_nonce TEXT,
        disabled BIGINT NOT NULL,
        created_at BIGINT NOT NULL
    );
    CREATE TABLE portal_sessions (
        token_hash TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        subject TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        last_seen_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        csrf_token TEXT NOT NULL
    );
    CREATE INDEX portal_sessions_subject ON portal_sessions (kind, subject);
    CREATE TABLE portal_attempts (
        attempt_key TEXT NOT NULL,
        at BIGINT NOT NULL,
        outcome TEXT NOT NULL
    );
    CREATE INDEX portal_attempts_key ON portal_attempts (attempt_key, at);
    CREATE TABLE portal_lookups (
        id TEXT PRIMARY KEY,
        staff_role TEXT NOT NULL,
        patient_ref TEXT NOT NULL,
        at BIGINT NOT NULL
    );
    CREATE INDEX portal_lookups_patient ON portal_lookups (patient_ref);
    CREATE TABLE portal_flags (
        id TEXT PRIMARY KEY,
        patient_ref TEXT NOT NULL,
        ledger_seq BIGINT,
        source TEXT NOT NULL,
        rule_name TEXT,
        reason TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    );
    CREATE INDEX portal_flags_patient ON portal_flags (patient_ref);",
    ),
    (
        7,
        "site-local study index (PHI-adjacent: never leaves the site), flag keys",
        "CREATE TABLE study_index (
        ledger_seq BIGINT PRIMARY KEY,
        patient_ref TEXT NOT NULL,
        study_date TEXT NOT NULL,
        modalities TEXT NOT NULL,
        description TEXT NOT NULL,
        instances BIGINT NOT NULL
    );
    CREATE INDEX study_index_patient ON study_index (patient_ref);
    ALTER TABLE portal_flags ADD COLUMN flag_key TEXT;
    CREATE UNIQUE INDEX portal_flags_key ON portal_flags (flag_key);",
    ),
];

/// The default `$VEIL_HOME`: `$XDG_DATA_HOME/veil`, else
/// `~/.local/share/veil`.
pub fn default_home() -> PathBuf {
    if let Some(h) = std::env::var_os("VEIL_HOME") {
        return PathBuf::from(h);
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(x).join("veil");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/share/veil")
}

/// Puts a SQLite database in WAL mode. Why the retries: switching a new
/// database to WAL takes an exclusive lock, and SQLite answers "database
/// is locked" at once, without the busy timeout, while another connection
/// does the same; several processes opening a new store at once (issue
/// 20) then failed. A database already in WAL mode answers at once.
fn wal(c: &rusqlite::Connection) -> Result<(), StoreError> {
    let mut tries = 0;
    loop {
        match c.pragma_update(None, "journal_mode", "WAL") {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy && tries < 3000 =>
            {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            r => return Ok(r?),
        }
    }
}

/// Rewrites `?` placeholders as `$1, $2, ...` for PostgreSQL.
fn pg_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(c);
        }
    }
    out
}

/// The PostgreSQL advisory lock key that migrations take turns on
/// ("veilmigr"; advisory locks are per database).
const MIGRATION_LOCK: i64 = 0x7665_696c_6d69_6772;

/// How many prepared SQLite statements a store keeps (see [`Store::open`]).
const STATEMENT_CACHE: usize = 128;

impl Store {
    /// Opens the store: PostgreSQL when `url` is a `postgres://` or
    /// `postgresql://` URL, else SQLite at `url` (a path) or
    /// `$VEIL_HOME/veil.db`. Creates `$VEIL_HOME` (0700, or tightens it:
    /// see [`secure_home`]) and runs pending migrations. A PostgreSQL URL
    /// follows [`pg`]: TLS by `sslmode`, no password in the URL.
    pub fn open(url: Option<&str>, home: &Path) -> Result<Store, StoreError> {
        secure_home(home)?;
        let db = match url {
            Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => {
                Db::Pg(Box::new(pg::connect(u)?))
            }
            other => {
                let path = match other {
                    Some(p) => PathBuf::from(p.strip_prefix("sqlite://").unwrap_or(p)),
                    None => home.join("veil.db"),
                };
                private_db_file(&path)?;
                let c = rusqlite::Connection::open(&path)?;
                c.busy_timeout(std::time::Duration::from_secs(30))?;
                wal(&c)?;
                c.pragma_update(None, "synchronous", "FULL")?;
                // statements are prepared once and kept (exec and query
                // use the cache): compiling the SQL was the largest cost
                // of a patient portal page (a fifth of `veil serve`'s CPU
                // under scripts/bench-portal.sh); a few dozen distinct
                // statements cover every caller
                c.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
                Db::Sqlite(c)
            }
        };
        let mut s = Store {
            db,
            home: home.to_path_buf(),
        };
        s.migrate()?;
        Ok(s)
    }

    /// `$VEIL_HOME`.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// `sqlite` or `postgresql`.
    pub fn backend(&self) -> &'static str {
        match self.db {
            Db::Sqlite(_) => "sqlite",
            Db::Pg(_) => "postgresql",
        }
    }

    /// The schema version (highest migration applied).
    pub fn schema_version(&mut self) -> Result<i64, StoreError> {
        let r = self.query("SELECT MAX(version) FROM schema_migrations", &[])?;
        Ok(r.first().and_then(|r| r[0].int()).unwrap_or(0))
    }

    /// Runs the pending migrations. Several processes may open one store
    /// at the same moment (a shared PostgreSQL store after an upgrade, or
    /// on first use: issue 20): on PostgreSQL they take turns on a
    /// session advisory lock, here the right tool since on a new database
    /// no table exists yet to lock (and even `CREATE TABLE IF NOT EXISTS`
    /// fails when two run at once); on SQLite each migration's `BEGIN
    /// IMMEDIATE` serializes them. Either way a migration checks, inside
    /// its transaction, that nobody applied it meanwhile.
    fn migrate(&mut self) -> Result<(), StoreError> {
        let pg = matches!(self.db, Db::Pg(_));
        if pg {
            self.batch(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))?;
        }
        let r = self.migrate_locked();
        if pg {
            // a failed unlock leaves the lock to the end of the session
            let _ = self.batch(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"));
        }
        r
    }

    fn migrate_locked(&mut self) -> Result<(), StoreError> {
        self.batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version BIGINT PRIMARY KEY,
                name TEXT NOT NULL,
                applied_at TEXT NOT NULL
            )",
        )?;
        let have = self.schema_version()?;
        for (v, name, sql) in MIGRATIONS {
            if *v <= have {
                continue;
            }
            self.transaction(|s| {
                if s.schema_version()? >= *v {
                    return Ok(());
                }
                s.batch(sql)?;
                s.exec(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    &[Val::i(*v), Val::t(*name), Val::t(veil_consent::now())],
                )?;
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Runs statements without parameters.
    pub fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        match &mut self.db {
            Db::Sqlite(c) => c.execute_batch(sql)?,
            Db::Pg(c) => c.batch_execute(sql)?,
        }
        Ok(())
    }

    /// Runs one statement with `?` parameters; returns rows changed.
    pub fn exec(&mut self, sql: &str, params: &[Val]) -> Result<u64, StoreError> {
        match &mut self.db {
            Db::Sqlite(c) => {
                let p: Vec<rusqlite::types::Value> = params.iter().map(to_sqlite).collect();
                Ok(c.prepare_cached(sql)?
                    .execute(rusqlite::params_from_iter(p))? as u64)
            }
            Db::Pg(c) => {
                let boxed = to_pg(params);
                let refs: Vec<&(dyn postgres::types::ToSql + Sync)> =
                    boxed.iter().map(|b| b.as_ref()).collect();
                Ok(c.execute(pg_sql(sql).as_str(), &refs)?)
            }
        }
    }

    /// Runs a query with `?` parameters.
    pub fn query(&mut self, sql: &str, params: &[Val]) -> Result<Vec<Vec<Val>>, StoreError> {
        match &mut self.db {
            Db::Sqlite(c) => {
                let p: Vec<rusqlite::types::Value> = params.iter().map(to_sqlite).collect();
                let mut st = c.prepare_cached(sql)?;
                let n = st.column_count();
                let rows = st.query_map(rusqlite::params_from_iter(p), |r| {
                    (0..n)
                        .map(|i| {
                            Ok(match r.get_ref(i)? {
                                rusqlite::types::ValueRef::Null => Val::Text(None),
                                rusqlite::types::ValueRef::Integer(n) => Val::i(n),
                                rusqlite::types::ValueRef::Text(t) => {
                                    Val::t(String::from_utf8_lossy(t).into_owned())
                                }
                                rusqlite::types::ValueRef::Real(f) => Val::i(f as i64),
                                rusqlite::types::ValueRef::Blob(b) => {
                                    Val::t(String::from_utf8_lossy(b).into_owned())
                                }
                            })
                        })
                        .collect::<Result<Vec<_>, rusqlite::Error>>()
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            }
            Db::Pg(c) => {
                let boxed = to_pg(params);
                let refs: Vec<&(dyn postgres::types::ToSql + Sync)> =
                    boxed.iter().map(|b| b.as_ref()).collect();
                let rows = c.query(pg_sql(sql).as_str(), &refs)?;
                let mut out = Vec::with_capacity(rows.len());
                for r in rows {
                    let mut v = Vec::with_capacity(r.len());
                    for (i, col) in r.columns().iter().enumerate() {
                        use postgres::types::Type;
                        v.push(match *col.type_() {
                            Type::INT8 => Val::Int(r.try_get(i)?),
                            Type::INT4 => Val::Int(r.try_get::<_, Option<i32>>(i)?.map(i64::from)),
                            _ => Val::Text(r.try_get(i)?),
                        });
                    }
                    out.push(v);
                }
                Ok(out)
            }
        }
    }

    /// Runs `f` in a transaction that holds the write lock on the ledger
    /// (SQLite `BEGIN IMMEDIATE`, PostgreSQL a table lock), so two releases
    /// cannot append at the same position. Rolls back on error.
    ///
    /// A shared ledger (issue 20): any number of processes (`veil
    /// release`, `veil serve`, workers) append to one PostgreSQL ledger.
    /// Each append reads the rows, computes the next position and the
    /// signed tree head after each new entry, and inserts them, all in
    /// this transaction. What makes that one sequence:
    ///
    /// - `LOCK TABLE ledger IN SHARE ROW EXCLUSIVE MODE` conflicts with
    ///   itself and with every INSERT, UPDATE or DELETE on the ledger, so
    ///   writers run one after another (the next waits for the previous
    ///   COMMIT). It does not conflict with ACCESS SHARE, the lock of a
    ///   plain SELECT: readers (`veil ledger verify`, the portal, proofs)
    ///   are never blocked and never block an append.
    /// - The transaction is READ COMMITTED whatever the server's
    ///   `default_transaction_isolation`: each statement then reads what
    ///   was committed when it started, so the rows read after the lock is
    ///   granted include the previous writer's. Under REPEATABLE READ or
    ///   SERIALIZABLE the snapshot would be the one of the first query
    ///   (`has_table`, before the lock): the append would compute a taken
    ///   position and fail (duplicate key, or SQLSTATE 40001), as the test
    ///   `issue_20_appends_serialize_under_a_serializable_default` showed.
    ///   Nothing is lost by it: every Veil transaction takes this lock, so
    ///   they are already totally ordered.
    /// - Why not `pg_advisory_xact_lock`: it would serialize Veil's
    ///   writers just as well and not block readers either, but it is
    ///   taken by a SELECT (under REPEATABLE READ that SELECT is the
    ///   snapshot, taken before the wait), and it guards only against
    ///   writers that know its key; the table lock also holds off a
    ///   stray INSERT by another client, and needs no agreed number.
    ///
    /// Readers see whole appends or none: the rows of one append commit
    /// together, and one SELECT reads one snapshot. Every row carries the
    /// signed head of the log up to it, so any committed prefix verifies
    /// on its own. The consent versions, recipients, staged outputs and
    /// study index rows written with an entry commit in the same
    /// transaction, under the same lock.
    pub fn transaction<T>(
        &mut self,
        f: impl FnOnce(&mut Store) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match self.db {
            Db::Sqlite(_) => self.batch("BEGIN IMMEDIATE")?,
            Db::Pg(_) => self.batch("BEGIN ISOLATION LEVEL READ COMMITTED")?,
        }
        if matches!(self.db, Db::Pg(_)) && self.has_table("ledger")? {
            self.batch("LOCK TABLE ledger IN SHARE ROW EXCLUSIVE MODE")?;
        }
        match f(self) {
            Ok(v) => {
                self.batch("COMMIT")?;
                Ok(v)
            }
            Err(e) => {
                let _ = self.batch("ROLLBACK");
                Err(e)
            }
        }
    }

    fn has_table(&mut self, name: &str) -> Result<bool, StoreError> {
        let r = self.query(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = ? AND table_schema = current_schema()",
            &[Val::t(name)],
        )?;
        Ok(r.first().and_then(|r| r[0].int()).unwrap_or(0) > 0)
    }

    // ---- key records --------------------------------------------------------

    /// The recorded public value for a key role (`site`: the site key's
    /// id; `ledger`: the ledger public key, hex), if recorded.
    pub fn recorded_key(&mut self, role: &str) -> Result<Option<String>, StoreError> {
        let r = self.query(
            "SELECT value FROM key_records WHERE role = ?",
            &[Val::t(role)],
        )?;
        Ok(r.first().and_then(|r| r[0].text()).map(str::to_string))
    }

    /// Records the public value for a key role. Refuses to replace a
    /// different recorded value: a store belongs to one set of keys.
    pub fn record_key(&mut self, role: &str, value: &str) -> Result<(), StoreError> {
        match self.recorded_key(role)? {
            Some(v) if v == value => Ok(()),
            Some(_) => Err(StoreError::Invalid(format!(
                "the store already records a different {role} key"
            ))),
            None => {
                self.exec(
                    "INSERT INTO key_records (role, value, recorded_at) VALUES (?, ?, ?)",
                    &[Val::t(role), Val::t(value), Val::t(veil_consent::now())],
                )?;
                Ok(())
            }
        }
    }

    /// Whether the store holds anything written under the keys (consent
    /// records, ledger rows, checkpoints): such a store cannot be tied to
    /// keys by simply recording whatever keys open it.
    pub fn holds_keyed_data(&mut self) -> Result<bool, StoreError> {
        for t in ["consents", "ledger", "checkpoints"] {
            let r = self.query(&format!("SELECT COUNT(*) FROM {t}"), &[])?;
            if r.first().and_then(|r| r[0].int()).unwrap_or(0) > 0 {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// (patient_ref, PatientID) of every consent record: lets `veil key
    /// adopt` check a site key against the references it must reproduce.
    pub fn consent_refs(&mut self) -> Result<Vec<(String, Phi<String>)>, StoreError> {
        let rows = self.query("SELECT patient_ref, patient_id FROM consents", &[])?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r[0].text().unwrap_or_default().to_string(),
                    Phi::new(r[1].text().unwrap_or_default().to_string()),
                )
            })
            .collect())
    }

    // ---- recipients -------------------------------------------------------

    /// Adds a recipient; refuses an existing name.
    pub fn add_recipient(&mut self, r: &Recipient) -> Result<(), StoreError> {
        if self.recipient(&r.name)?.is_some() {
            return Err(StoreError::Invalid(format!(
                "recipient {} already exists",
                r.name
            )));
        }

        self.exec(
            "INSERT INTO recipients (name, category, contact, address, purposes, recipe_toml, recipe_label, key_file, key_id, retention_days, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            &[
                Val::t(&r.name),
                Val::ot(r.category.clone()),
                Val::ot(r.contact.clone()),
                Val::ot(r.address.clone()),
                Val::t(serde_json::to_string(&r.purposes).unwrap_or_default()),
                Val::t(&r.recipe_toml),
                Val::t(&r.recipe_label),
                Val::t(&r.key_file),
                Val::t(&r.key_id),
                Val::i(i64::from(r.retention_days)),
                Val::t(veil_consent::now()),
            ],
        )?;
        Ok(())
    }

    /// Points a recipient at a new pseudonymization key (inside
    /// [`Store::transaction`], with the ledger entry that pins it).
    pub fn set_recipient_key(
        &mut self,
        name: &str,
        key_file: &str,
        key_id: &str,
    ) -> Result<(), StoreError> {
        let n = self.exec(
            "UPDATE recipients SET key_file = ?, key_id = ? WHERE name = ?",
            &[Val::t(key_file), Val::t(key_id), Val::t(name)],
        )?;
        if n != 1 {
            return Err(StoreError::Invalid(format!("no recipient named {name}")));
        }
        Ok(())
    }

    /// Replaces a current recipient's registration (inside
    /// [`Store::transaction`], with the ledger entry that pins it). The
    /// name and key stay (`rotate-key` changes the key).
    pub fn update_recipient(&mut self, r: &Recipient) -> Result<(), StoreError> {
        let n = self.exec(
            "UPDATE recipients SET category = ?, contact = ?, address = ?, purposes = ?, recipe_toml = ?, recipe_label = ?, retention_days = ? WHERE name = ? AND removed_at IS NULL",
            &[
                Val::ot(r.category.clone()),
                Val::ot(r.contact.clone()),
                Val::ot(r.address.clone()),
                Val::t(serde_json::to_string(&r.purposes).unwrap_or_default()),
                Val::t(&r.recipe_toml),
                Val::t(&r.recipe_label),
                Val::i(i64::from(r.retention_days)),
                Val::t(&r.name),
            ],
        )?;
        if n != 1 {
            return Err(StoreError::Invalid(format!(
                "no recipient named {}",
                r.name
            )));
        }
        Ok(())
    }

    /// Marks a recipient removed (inside [`Store::transaction`], with its
    /// ledger entry). The row stays: the ledger's history names it, its
    /// staged releases still expire, and the name is not reused.
    pub fn remove_recipient(&mut self, name: &str, when: &str) -> Result<(), StoreError> {
        let n = self.exec(
            "UPDATE recipients SET removed_at = ? WHERE name = ? AND removed_at IS NULL",
            &[Val::t(when), Val::t(name)],
        )?;
        if n != 1 {
            return Err(StoreError::Invalid(format!("no recipient named {name}")));
        }
        Ok(())
    }

    /// Whether a recipient of this name was removed.
    pub fn recipient_removed(&mut self, name: &str) -> Result<bool, StoreError> {
        let rows = self.query(
            "SELECT COUNT(*) FROM recipients WHERE name = ? AND removed_at IS NOT NULL",
            &[Val::t(name)],
        )?;
        Ok(rows
            .first()
            .and_then(|r| r.first())
            .and_then(Val::int)
            .unwrap_or(0)
            > 0)
    }

    /// One current (not removed) recipient.
    pub fn recipient(&mut self, name: &str) -> Result<Option<Recipient>, StoreError> {
        let rows = self.query(
            "SELECT name, category, contact, address, purposes, recipe_toml, recipe_label, key_file, key_id, retention_days FROM recipients WHERE name = ? AND removed_at IS NULL",
            &[Val::t(name)],
        )?;
        rows.first().map(|r| recipient_row(r)).transpose()
    }

    /// All recipients, by name.
    pub fn recipients(&mut self) -> Result<Vec<Recipient>, StoreError> {
        let rows = self.query(
            "SELECT name, category, contact, address, purposes, recipe_toml, recipe_label, key_file, key_id, retention_days FROM recipients WHERE removed_at IS NULL ORDER BY name",
            &[],
        )?;
        rows.iter().map(|r| recipient_row(r)).collect()
    }

    // ---- consents ---------------------------------------------------------

    /// Appends a version of a consent record (inside
    /// [`Store::transaction`]): version 1 for a new id, the next version
    /// when the content differs from the latest, nothing when it is the
    /// same (a re-import is idempotent). Never deletes or overwrites:
    /// history is kept and the latest version is the current one. An id
    /// already used for another patient is refused. `patient_ref` is the
    /// keyed hash used to find the record without scanning identifiers.
    pub fn append_consent(
        &mut self,
        c: &Consent,
        patient_ref: &str,
        source: &str,
    ) -> Result<Option<ConsentVersion>, StoreError> {
        let latest = self
            .query(
                &format!("{CONSENT_COLS} WHERE id = ? ORDER BY version DESC LIMIT 1"),
                &[Val::t(&c.id)],
            )?
            .first()
            .map(|r| consent_row(r))
            .transpose()?;
        let version = match latest {
            Some(l) if l.patient_ref != patient_ref => {
                return Err(StoreError::Invalid(
                    "a consent record id is already used for another patient in this source".into(),
                ))
            }
            Some(l)
                if l.consent.patient_id.expose() == c.patient_id.expose()
                    && l.consent.patient_system == c.patient_system
                    && l.consent.status == c.status
                    && l.consent.date_time == c.date_time
                    && l.consent.provisions == c.provisions
                    && l.source == source =>
            {
                return Ok(None)
            }
            Some(l) => l.version + 1,
            None => 1,
        };
        self.exec(
            "INSERT INTO consents (id, version, patient_ref, patient_id, patient_system, status, date_time, provisions, source, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            &[
                Val::t(&c.id),
                Val::i(version),
                Val::t(patient_ref),
                Val::t(c.patient_id.expose()),
                Val::ot(c.patient_system.clone()),
                Val::t(&c.status),
                Val::ot(c.date_time.clone()),
                Val::t(serde_json::to_string(&c.provisions).map_err(|e| StoreError::Corrupt(e.to_string()))?),
                Val::t(source),
                Val::t(veil_consent::now()),
            ],
        )?;
        Ok(Some(ConsentVersion {
            consent: c.clone(),
            version,
            patient_ref: patient_ref.to_string(),
            source: source.to_string(),
        }))
    }

    /// Every stored version of one patient's consent records, by id and
    /// version (the rows a decision must be checked against).
    pub fn consent_versions_for(
        &mut self,
        patient_ref: &str,
    ) -> Result<Vec<ConsentVersion>, StoreError> {
        let rows = self.query(
            &format!("{CONSENT_COLS} WHERE patient_ref = ? ORDER BY id, version"),
            &[Val::t(patient_ref)],
        )?;
        rows.iter().map(|r| consent_row(r)).collect()
    }

    /// The current (latest) version of each of one patient's records.
    pub fn consents_for(&mut self, patient_ref: &str) -> Result<Vec<Consent>, StoreError> {
        Ok(current_versions(self.consent_versions_for(patient_ref)?))
    }

    /// The current version of every consent record.
    pub fn all_consents(&mut self) -> Result<Vec<Consent>, StoreError> {
        let rows = self.query(&format!("{CONSENT_COLS} ORDER BY id, version"), &[])?;
        Ok(current_versions(
            rows.iter()
                .map(|r| consent_row(r))
                .collect::<Result<_, _>>()?,
        ))
    }

    /// Sets the site default for a purpose.
    pub fn set_default(&mut self, purpose: &str, d: SiteDefault) -> Result<(), StoreError> {
        self.exec(
            "DELETE FROM site_defaults WHERE purpose = ?",
            &[Val::t(purpose)],
        )?;
        self.exec(
            "INSERT INTO site_defaults (purpose, mode) VALUES (?, ?)",
            &[Val::t(purpose), Val::t(d.as_str())],
        )?;
        Ok(())
    }

    /// The site default for a purpose, if set.
    pub fn default_for(&mut self, purpose: &str) -> Result<Option<SiteDefault>, StoreError> {
        let r = self.query(
            "SELECT mode FROM site_defaults WHERE purpose = ?",
            &[Val::t(purpose)],
        )?;
        Ok(r.first()
            .and_then(|r| r[0].text())
            .and_then(SiteDefault::parse))
    }

    /// Every site default, by purpose.
    pub fn defaults(&mut self) -> Result<Vec<(String, SiteDefault)>, StoreError> {
        let rows = self.query(
            "SELECT purpose, mode FROM site_defaults ORDER BY purpose",
            &[],
        )?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let purpose = r.first()?.text()?.to_string();
                let mode = r.get(1)?.text().and_then(SiteDefault::parse)?;
                Some((purpose, mode))
            })
            .collect())
    }

    // ---- ledger -----------------------------------------------------------

    /// Every ledger row, in position order.
    pub fn ledger_rows(&mut self) -> Result<Vec<veil_ledger_row::StoredRow>, StoreError> {
        // positions start at 0: every row, without a second copy of the
        // row mapping
        self.ledger_rows_from(i64::MIN)
    }

    /// The ledger rows at positions `from` and after, in position order:
    /// what a reader holding the first `from` rows (the portal's ledger
    /// cache) needs to catch up, without reading the whole log again
    /// (`seq` is the primary key, so this is an index range scan).
    pub fn ledger_rows_from(
        &mut self,
        from: i64,
    ) -> Result<Vec<veil_ledger_row::StoredRow>, StoreError> {
        let rows = self.query(
            "SELECT seq, entry, leaf_hash, head_sig FROM ledger WHERE seq >= ? ORDER BY seq",
            &[Val::i(from)],
        )?;
        rows.iter()
            .map(|r| {
                Ok(veil_ledger_row::StoredRow {
                    seq: r[0]
                        .int()
                        .ok_or_else(|| StoreError::Corrupt("ledger.seq".into()))?,
                    entry: r[1].text().unwrap_or_default().to_string(),
                    leaf_hash: r[2].text().unwrap_or_default().to_string(),
                    head_sig: r[3].text().unwrap_or_default().to_string(),
                })
            })
            .collect()
    }

    /// Appends one ledger row (inside [`Store::transaction`]).
    pub fn insert_ledger_row(&mut self, r: &veil_ledger_row::StoredRow) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO ledger (seq, entry, leaf_hash, head_sig) VALUES (?, ?, ?, ?)",
            &[
                Val::i(r.seq),
                Val::t(&r.entry),
                Val::t(&r.leaf_hash),
                Val::t(&r.head_sig),
            ],
        )?;
        Ok(())
    }

    /// Records a checkpoint: (size, root, time, key id, signature).
    pub fn insert_checkpoint(&mut self, c: &CheckpointRow) -> Result<(), StoreError> {
        self.exec("DELETE FROM checkpoints WHERE size = ?", &[Val::i(c.size)])?;
        self.exec(
            "INSERT INTO checkpoints (size, root, time, key_id, signature) VALUES (?, ?, ?, ?, ?)",
            &[
                Val::i(c.size),
                Val::t(&c.root),
                Val::t(&c.time),
                Val::t(&c.key_id),
                Val::t(&c.signature),
            ],
        )?;
        Ok(())
    }

    /// Every checkpoint, by size.
    pub fn checkpoints(&mut self) -> Result<Vec<CheckpointRow>, StoreError> {
        let rows = self.query(
            "SELECT size, root, time, key_id, signature FROM checkpoints ORDER BY size",
            &[],
        )?;
        Ok(rows
            .iter()
            .map(|r| CheckpointRow {
                size: r[0].int().unwrap_or(0),
                root: r[1].text().unwrap_or_default().into(),
                time: r[2].text().unwrap_or_default().into(),
                key_id: r[3].text().unwrap_or_default().into(),
                signature: r[4].text().unwrap_or_default().into(),
            })
            .collect())
    }

    // ---- staged outputs -----------------------------------------------------

    /// Records a released study's files, to delete when retention ends.
    pub fn insert_staged(&mut self, s: &Staged) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO staged (ledger_seq, recipient, out_root, files, created_at, expires_at, deleted_at) VALUES (?, ?, ?, ?, ?, ?, NULL)",
            &[
                Val::i(s.ledger_seq),
                Val::t(&s.recipient),
                Val::t(&s.out_root),
                Val::t(serde_json::to_string(&s.files).unwrap_or_default()),
                Val::t(&s.created_at),
                Val::t(&s.expires_at),
            ],
        )?;
        Ok(())
    }

    /// Staged outputs not yet deleted whose retention ended at `now`.
    pub fn expired_staged(&mut self, now: &str) -> Result<Vec<Staged>, StoreError> {
        let rows = self.query(
            "SELECT ledger_seq, recipient, out_root, files, created_at, expires_at FROM staged WHERE deleted_at IS NULL AND expires_at <= ? ORDER BY ledger_seq",
            &[Val::t(now)],
        )?;
        rows.iter()
            .map(|r| {
                Ok(Staged {
                    ledger_seq: r[0].int().unwrap_or(-1),
                    recipient: r[1].text().unwrap_or_default().into(),
                    out_root: r[2].text().unwrap_or_default().into(),
                    files: serde_json::from_str(r[3].text().unwrap_or("[]"))
                        .map_err(|_| StoreError::Corrupt("staged.files".into()))?,
                    created_at: r[4].text().unwrap_or_default().into(),
                    expires_at: r[5].text().unwrap_or_default().into(),
                })
            })
            .collect()
    }

    /// Marks a staged output deleted.
    pub fn mark_deleted(&mut self, ledger_seq: i64, when: &str) -> Result<(), StoreError> {
        self.exec(
            "UPDATE staged SET deleted_at = ? WHERE ledger_seq = ?",
            &[Val::t(when), Val::i(ledger_seq)],
        )?;
        Ok(())
    }
}

/// The ledger row type, re-exported under a stable path so this crate need
/// not depend on the ledger's crypto.
pub mod veil_ledger_row {
    /// A row as the store holds it (see `veil_ledger::StoredRow`).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct StoredRow {
        /// Position column.
        pub seq: i64,
        /// Entry JSON.
        pub entry: String,
        /// Leaf hash (hex).
        pub leaf_hash: String,
        /// Signed head after this entry (hex).
        pub head_sig: String,
    }
}

/// A checkpoint row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointRow {
    /// Entries covered.
    pub size: i64,
    /// Root (hex).
    pub root: String,
    /// Time (RFC 3339 UTC).
    pub time: String,
    /// Signing key id.
    pub key_id: String,
    /// Signature (hex).
    pub signature: String,
}

/// A staged (released) output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staged {
    /// The release entry.
    pub ledger_seq: i64,
    /// Recipient.
    pub recipient: String,
    /// The OUT folder.
    pub out_root: String,
    /// Files relative to OUT.
    pub files: Vec<String>,
    /// When released.
    pub created_at: String,
    /// When retention ends.
    pub expires_at: String,
}

fn recipient_row(r: &[Val]) -> Result<Recipient, StoreError> {
    let t = |i: usize| r[i].text().map(str::to_string);
    Ok(Recipient {
        name: t(0).unwrap_or_default(),
        category: t(1),
        contact: t(2),
        address: t(3),
        purposes: serde_json::from_str(r[4].text().unwrap_or("[]"))
            .map_err(|_| StoreError::Corrupt("recipients.purposes".into()))?,
        recipe_toml: t(5).unwrap_or_default(),
        recipe_label: t(6).unwrap_or_default(),
        key_file: t(7).unwrap_or_default(),
        key_id: t(8).unwrap_or_default(),
        retention_days: r[9].int().unwrap_or(0).clamp(0, u32::MAX as i64) as u32,
    })
}

/// One stored version of a consent record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentVersion {
    /// The record as of this version.
    pub consent: Consent,
    /// 1, 2, ...: the highest is the current one.
    pub version: i64,
    /// The keyed patient reference it is filed under.
    pub patient_ref: String,
    /// Where it came from (`fhir-import:NAME`, `veil consent set`).
    pub source: String,
}

const CONSENT_COLS: &str = "SELECT id, patient_id, patient_system, status, date_time, provisions, version, patient_ref, source FROM consents";

fn consent_row(r: &[Val]) -> Result<ConsentVersion, StoreError> {
    let t = |i: usize| r[i].text().map(str::to_string);
    let provisions: Vec<Provision> = serde_json::from_str(r[5].text().unwrap_or("[]"))
        .map_err(|_| StoreError::Corrupt("consents.provisions".into()))?;
    Ok(ConsentVersion {
        consent: Consent {
            id: t(0).unwrap_or_default(),
            patient_id: Phi::new(t(1).unwrap_or_default()),
            patient_system: t(2),
            status: t(3).unwrap_or_default(),
            date_time: t(4),
            provisions,
        },
        version: r[6]
            .int()
            .ok_or_else(|| StoreError::Corrupt("consents.version".into()))?,
        patient_ref: t(7).unwrap_or_default(),
        source: t(8).unwrap_or_default(),
    })
}

/// The latest version of each record, from versions sorted by id, version.
pub fn current_versions(versions: Vec<ConsentVersion>) -> Vec<Consent> {
    let mut out: Vec<Consent> = Vec::new();
    for v in versions {
        match out.last_mut() {
            Some(last) if last.id == v.consent.id => *last = v.consent,
            _ => out.push(v.consent),
        }
    }
    out
}

fn to_sqlite(v: &Val) -> rusqlite::types::Value {
    use rusqlite::types::Value as V;
    match v {
        Val::Int(Some(n)) => V::Integer(*n),
        Val::Text(Some(s)) => V::Text(s.clone()),
        Val::Int(None) | Val::Text(None) => V::Null,
    }
}

fn to_pg(params: &[Val]) -> Vec<Box<dyn postgres::types::ToSql + Sync>> {
    params
        .iter()
        .map(|v| -> Box<dyn postgres::types::ToSql + Sync> {
            match v {
                Val::Int(n) => Box::new(*n),
                Val::Text(s) => Box::new(s.clone()),
            }
        })
        .collect()
}

/// Creates `$VEIL_HOME` with mode 0700 (it holds the keys and the
/// database), or tightens an existing one that group or others can enter
/// to 0700, and its `keys/` folder likewise. Returns the old mode of a
/// home it tightened.
///
/// Why tighten rather than refuse: the home is Veil's own folder, nothing
/// else should need to read it, and a refusal would only make the operator
/// type the same `chmod`. A home Veil cannot tighten (another user's) is
/// refused with the reason.
pub fn secure_home(home: &Path) -> Result<Option<u32>, StoreError> {
    let refuse = |e: std::io::Error| {
        StoreError::Invalid(format!(
            "VEIL_HOME {}: {e} (it must be a folder only its owner can open, mode 0700)",
            home.display()
        ))
    };
    let old = private_dir(home).map_err(refuse)?;
    let keys = home.join("keys");
    if keys.is_dir() {
        private_dir(&keys).map_err(refuse)?;
    }
    Ok(old)
}

/// Creates `dir` (and its parents) with mode 0700, or tightens an existing
/// one; returns the old mode when it tightened.
pub fn private_dir(dir: &Path) -> std::io::Result<Option<u32>> {
    if !dir.exists() {
        let mut b = std::fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            b.mode(0o700);
        }
        b.create(dir)?;
        return Ok(None);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(dir)?;
        if !meta.is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a folder",
            ));
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode & 0o700))?;
            return Ok(Some(mode));
        }
    }
    Ok(None)
}

/// Makes the SQLite file (created empty if missing) and its `-wal` and
/// `-shm` companions readable by their owner only. SQLite gives the
/// companions the database file's mode, so creating it 0600 before SQLite
/// opens it covers them too.
fn private_db_file(path: &Path) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    match opts.open(path) {
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    #[cfg(unix)]
    for suffix in ["", "-wal", "-shm"] {
        use std::os::unix::fs::PermissionsExt;
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let p = PathBuf::from(p);
        if let Ok(m) = std::fs::metadata(&p) {
            let mode = m.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode & 0o600))?;
            }
        }
    }
    Ok(())
}

/// Creates a fresh database on a PostgreSQL server and returns its URL
/// (for tests: each gets its own database). `base` is a URL to an existing
/// database on that server.
pub fn create_pg_database(base: &str, name: &str) -> Result<String, StoreError> {
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(StoreError::Invalid(
            "database names are [A-Za-z0-9_]".into(),
        ));
    }
    let mut c = pg::connect(base)?;
    c.batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))?;
    c.batch_execute(&format!("CREATE DATABASE {name}"))?;
    let (head, query) = match base.split_once('?') {
        Some((h, q)) => (h, format!("?{q}")),
        None => (base, String::new()),
    };
    let root = match head.rfind('/') {
        Some(i) if i > head.find("//").map(|j| j + 1).unwrap_or(0) => &head[..i],
        _ => head,
    };
    Ok(format!("{root}/{name}{query}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders() {
        assert_eq!(pg_sql("a = ? AND b = ?"), "a = $1 AND b = $2");
    }

    #[cfg(unix)]
    #[test]
    fn issue_22_home_db_and_companions_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let home = std::env::temp_dir().join(format!("veil-store-modes-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&home);
        // a pre-existing home anyone can enter, with a keys/ folder like it
        std::fs::create_dir_all(home.join("keys")).unwrap();
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(home.join("keys"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        let mut s = Store::open(None, &home).unwrap();
        s.set_default("ai-training", SiteDefault::OptOut).unwrap();
        assert_eq!(mode(&home), 0o700, "an existing looser home is tightened");
        assert_eq!(mode(&home.join("veil.db")), 0o600);
        assert_eq!(mode(&home.join("veil.db-wal")), 0o600);
        assert_eq!(mode(&home.join("veil.db-shm")), 0o600);
        drop(s);
        // a fresh home is created 0700
        let fresh = home.join("fresh");
        let _s = Store::open(None, &fresh).unwrap();
        assert_eq!(mode(&fresh), 0o700);
        assert_eq!(mode(&fresh.join("veil.db")), 0o600);
        std::fs::remove_dir_all(&home).unwrap();
    }

    #[test]
    fn consents_of_a_version_1_store_are_kept_and_versioned() {
        let home = std::env::temp_dir().join(format!("veil-store-v1-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&home);
        std::fs::create_dir_all(&home).unwrap();
        {
            // a store as migration 1 left it, with one consent row
            let c = rusqlite::Connection::open(home.join("veil.db")).unwrap();
            c.execute_batch(
                "CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL);
                 INSERT INTO schema_migrations VALUES (1, 'v1', '2025-01-01T00:00:00Z');",
            )
            .unwrap();
            c.execute_batch(MIGRATIONS[0].2).unwrap();
            c.execute_batch(
                "INSERT INTO consents VALUES ('import-0', 'ref1', 'P1', NULL, 'active', NULL, '[]', 'fhir-import', '2025-01-01T00:00:00Z')",
            )
            .unwrap();
        }
        let mut s = Store::open(None, &home).unwrap();
        assert_eq!(s.schema_version().unwrap(), 7);
        let v = s.consent_versions_for("ref1").unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!((v[0].consent.id.as_str(), v[0].version), ("import-0", 1));
        // a changed record is a new version; the old one stays
        let mut c = v[0].consent.clone();
        c.status = "inactive".into();
        let n = s
            .append_consent(&c, "ref1", "fhir-import")
            .unwrap()
            .unwrap();
        assert_eq!(n.version, 2);
        assert!(s
            .append_consent(&c, "ref1", "fhir-import")
            .unwrap()
            .is_none());
        assert_eq!(s.consent_versions_for("ref1").unwrap().len(), 2);
        assert_eq!(s.consents_for("ref1").unwrap()[0].status, "inactive");
        // the same id for another patient is refused
        assert!(s.append_consent(&c, "ref2", "fhir-import").is_err());
        std::fs::remove_dir_all(&home).unwrap();
    }

    #[test]
    fn sqlite_store_is_created_and_migrated_once() {
        let home = std::env::temp_dir().join(format!("veil-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&home);
        let mut s = Store::open(None, &home).unwrap();
        assert_eq!(s.schema_version().unwrap(), 7);
        assert!(home.join("veil.db").is_file());
        s.set_default("ai-training", SiteDefault::OptOut).unwrap();
        drop(s);
        let mut s = Store::open(None, &home).unwrap();
        assert_eq!(
            s.default_for("ai-training").unwrap(),
            Some(SiteDefault::OptOut)
        );
        assert_eq!(s.default_for("x").unwrap(), None);
        let n = s
            .query("SELECT COUNT(*) FROM schema_migrations", &[])
            .unwrap();
        assert_eq!(n[0][0].int(), Some(MIGRATIONS.len() as i64));
        std::fs::remove_dir_all(&home).unwrap();
    }
}
