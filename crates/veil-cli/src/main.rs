//! `veil`: command-line glue. Parses flags, builds the policy, calls the
//! library crates and prints. No de-identification logic lives here.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use veil_core::ProfileOption;
use veil_deid::{Deidentifier, Key, Policy};
use veil_rules::Recipe;

mod consent;
mod deface;
mod exit;
mod ledger;
mod logging;
mod out;
#[cfg(feature = "s3")]
mod places;
mod portal;
mod progress;
mod pull;
mod queue;
mod recipe;
mod release;
mod review;
mod risk;
mod verify;

/// `veil --version`: the crate version and the commit it was built from
/// (see build.rs).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("VEIL_COMMIT"),
    ")"
);

#[derive(Parser)]
#[command(
    name = "veil",
    version = VERSION,
    about = "Veil: a privacy gateway for medical images",
    after_long_help = exit::TABLE
)]
struct Cli {
    /// The store: a postgres:// URL or an SQLite file (default:
    /// $VEIL_HOME/veil.db, $VEIL_HOME defaulting to ~/.local/share/veil).
    #[arg(long, global = true, env = "VEIL_DB_URL", hide_env_values = true)]
    db: Option<String>,
    /// No progress bar or progress lines.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// More detail on stderr: -v the steps of a run, -vv each file's
    /// outcome (counts and kinds; never a value or a path found inside an
    /// input folder).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Format of logs and messages on stderr.
    #[arg(long, global = true, value_enum, default_value_t = logging::LogFormat::Text)]
    log_format: logging::LogFormat,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args, Clone)]
struct PolicyArgs {
    /// Pseudonymization key file (0600). Default: $VEIL_KEY_FILE.
    #[arg(long, env = "VEIL_KEY_FILE", hide_env_values = true)]
    key: Option<PathBuf>,
    /// Recipe (TOML).
    #[arg(long)]
    recipe: Option<PathBuf>,
    /// A PS3.15 option, e.g. retain-long-modified-dates (repeatable).
    #[arg(long = "option", value_name = "NAME")]
    options: Vec<ProfileOption>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Set up a site: $VEIL_HOME (0700), the store, site.key and the ledger
    /// key ($VEIL_LEDGER_KEY_FILE or $VEIL_HOME/ledger.key), both 0600, and
    /// record their public ids in the store. The only command that creates
    /// them; never overwrites a key.
    Init {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Key management.
    Key {
        #[command(subcommand)]
        cmd: KeyCmd,
    },
    /// De-identify DICOM files and folders into OUT.
    Deid {
        /// Input files or folders (recursive).
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// Folder for objects that need a person's review (default: OUT.review).
        #[arg(long)]
        review: Option<PathBuf>,
        /// Worker threads (default: all cores).
        #[arg(long)]
        jobs: Option<usize>,
        /// Write the site-local JSON report here (must be outside OUT).
        #[arg(long)]
        report: Option<PathBuf>,
        /// Write a new DICOMDIR for OUT (File IDs then follow PS3.10:
        /// 8-character components, no extension).
        #[arg(long)]
        dicomdir: bool,
        /// Verify every output against its source before release (as
        /// `veil verify` does); an output with findings goes to review.
        #[arg(long)]
        verify: bool,
        /// Verification policy for --verify (TOML, see `veil verify`).
        #[arg(long, requires = "verify")]
        verify_policy: Option<PathBuf>,
        /// Follow symbolic links found inside the inputs, to targets inside
        /// the inputs only (default: links are skipped, and named in the
        /// report).
        #[arg(long)]
        follow_symlinks: bool,
        /// Write into an OUT made with another key, recipe or options
        /// (refused without it: the pseudonym sets would not link).
        #[arg(long)]
        force_new_key: bool,
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// Dry run on one file: every attribute, the action and why (no values).
    Explain {
        /// The file.
        file: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// Remove the face from a head MR or CT (NIfTI file or one DICOM series
    /// folder). Exit 0 defaced, 1 face not found with confidence (review),
    /// 2 could not run.
    Deface(deface::DefaceArgs),
    /// Re-identification risk of a de-identified folder (k-anonymity,
    /// prosecutor/journalist/marketer risk, generalizations). Exit 0 within
    /// the threshold, 1 above, 2 could not run.
    Risk(risk::RiskArgs),
    /// Independent check of a release for residual PHI (headers, bytes,
    /// file names, pixels) and structure. Exit 0 clean, 1 findings, 2
    /// could not run.
    Verify(verify::VerifyArgs),
    /// Data recipients.
    Recipient {
        #[command(subcommand)]
        cmd: consent::RecipientCmd,
    },
    /// Patients' consent.
    Consent {
        #[command(subcommand)]
        cmd: consent::ConsentCmd,
    },
    /// Decide per study, de-identify for a recipient, log every decision.
    Release(release::ReleaseArgs),
    /// The review folder as a queue: list, approve (into OUT), reject
    /// (deleted); every decision is logged with the reviewer.
    Review {
        #[command(subcommand)]
        cmd: review::ReviewCmd,
    },
    /// Every release and refusal about one patient, with inclusion proofs.
    Disclosures {
        /// The PatientID.
        #[arg(long)]
        patient_id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The disclosure ledger.
    Ledger {
        #[command(subcommand)]
        cmd: ledger::LedgerCmd,
    },
    /// Recipes: import a CTP script or a deid recipe.
    Recipe {
        #[command(subcommand)]
        cmd: recipe::RecipeCmd,
    },
    /// Staged outputs past their recipient's retention.
    Retention {
        #[command(subcommand)]
        cmd: RetentionCmd,
    },
    /// Run the gateway in the foreground: DICOM C-STORE and DICOMweb
    /// STOW-RS in, per-study consent, de-identification and verification,
    /// delivery per route. SIGTERM or SIGINT drains and stops (exit 0).
    Serve {
        /// The gateway's configuration (veil.toml).
        #[arg(long)]
        config: PathBuf,
    },
    /// A research request: for each accession number in the list, C-FIND
    /// the route's `source` PACS and C-MOVE each study found to the running
    /// `veil serve` (the route's called AE), which decides and delivers it.
    /// Stdout gives counts only; per-accession lines go to --report.
    Pull {
        /// The gateway's configuration (veil.toml).
        #[arg(long)]
        config: PathBuf,
        /// The route whose `source` is queried and whose `called_ae`
        /// receives the studies.
        #[arg(long)]
        route: String,
        /// Accession numbers, one a line; blank lines and # comments are
        /// skipped.
        #[arg(long)]
        accession_list: PathBuf,
        /// Site-local report (mode 0600; it names accession numbers): one
        /// tab-separated line per accession number.
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// The gateway's queue (`veil serve`): status, retry, drop.
    Queue {
        #[command(subcommand)]
        cmd: queue::QueueCmd,
    },
    /// The patient portal: invitations (one-time sign-up links).
    Portal {
        #[command(subcommand)]
        cmd: portal::PortalCmd,
    },
    /// Staff console accounts.
    Staff {
        #[command(subcommand)]
        cmd: portal::StaffCmd,
    },
}

#[derive(Subcommand)]
enum RetentionCmd {
    /// Delete staged outputs past retention; each deletion is logged.
    Run {
        /// Evaluate as of this time instead of now (YYYY-MM-DD or RFC 3339).
        #[arg(long)]
        now: Option<String>,
    },
}

/// Opens the site ($VEIL_HOME set up by `veil init`; no key is created).
fn site(db: Option<&str>) -> Result<veil_release::Site, String> {
    let home = secure_home()?;
    veil_release::Site::open(db, &home).map_err(|e| e.to_string())
}

/// $VEIL_HOME, tightened to 0700 if group or others could open it (said
/// on stderr, with the old mode).
fn secure_home() -> Result<PathBuf, String> {
    let home = veil_store::default_home();
    if let Some(old) = veil_store::secure_home(&home).map_err(|e| e.to_string())? {
        logging::notice(&format!(
            "{} was mode {old:o}; tightened to 700 (it holds the keys and the store)",
            home.display()
        ));
    }
    Ok(home)
}

#[derive(Subcommand)]
enum KeyCmd {
    /// Create a new random key file (mode 0600). The key is never printed.
    New {
        /// Where to write it.
        path: PathBuf,
    },
    /// Tie a store written before key records to the site.key and ledger
    /// key in place, after checking them against its consents and ledger.
    Adopt,
}

fn main() -> ExitCode {
    #[cfg(feature = "ocr")]
    veil_pixels::ocr::limit_openmp_teams();
    let cli = Cli::parse();
    logging::init(cli.verbose, cli.log_format);
    match run(cli) {
        Ok(code) => ExitCode::from(code as u8),
        Err(msg) => {
            logging::error(&msg);
            ExitCode::from(exit::CANNOT_RUN as u8)
        }
    }
}

fn policy(args: &PolicyArgs, explain: bool) -> Result<Policy, String> {
    let key = match &args.key {
        Some(p) => Key::load(p).map_err(|e| e.to_string())?,
        // a key injected into the environment by a secret store
        None if std::env::var_os("VEIL_KEY").is_some() => {
            let hex =
                std::env::var("VEIL_KEY").map_err(|_| "VEIL_KEY is not valid text".to_string())?;
            Key::from_hex(&hex).map_err(|e| format!("VEIL_KEY: {e}"))?
        }
        // explain shows decisions, not values: it can run with a throwaway key
        None if explain => Key::generate().map_err(|e| e.to_string())?,
        None => {
            return Err(
                "no key: pass --key FILE, or set VEIL_KEY_FILE (a key file) or VEIL_KEY \
             (64 hex digits); create a key file with `veil key new FILE`"
                    .into(),
            )
        }
    };
    let recipe = match &args.recipe {
        Some(p) => Recipe::load(p).map_err(|e| e.to_string())?,
        None => Recipe::default(),
    };
    let policy = Policy::new(recipe, &args.options, key).map_err(|e| e.to_string())?;
    veil_pipeline::pixel_options_supported(&policy)?;
    Ok(policy)
}

/// Writes to stdout; a closed pipe (`veil explain F | head`) ends quietly,
/// as in ripgrep, instead of panicking.
fn emit(text: &str) -> Result<(), String> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(format!("writing output: {:?}", e.kind())),
    }
}

/// The default worker count: every core.
fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Whether `child` is `parent` or below it, on resolved paths (see
/// [`resolve`]): a lexical check passes `x/../OUT/report.json`, or a link
/// into OUT.
fn inside(child: &Path, parent: &Path) -> bool {
    resolve(child).starts_with(resolve(parent))
}

/// `p` as the file system will resolve it, whether or not it exists yet:
/// its longest existing prefix canonicalized (links and `..` resolved),
/// then the rest, which does not exist, so no link can redirect it and
/// its `..` are taken lexically.
fn resolve(p: &Path) -> PathBuf {
    use std::path::Component;
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let comps: Vec<Component> = abs.components().collect();
    for n in (1..=comps.len()).rev() {
        let prefix: PathBuf = comps[..n].iter().collect();
        let Ok(mut c) = std::fs::canonicalize(&prefix) else {
            continue;
        };
        for comp in &comps[n..] {
            match comp {
                Component::ParentDir => {
                    c.pop();
                }
                Component::CurDir => {}
                other => c.push(other),
            }
        }
        return c;
    }
    abs
}

/// Takes OUT's lock for a writing command (one writer per OUT, see
/// [`veil_io::lock`]). `Err` is the exit status, the reason printed.
fn lock_out(out: &Path) -> Result<veil_io::lock::OutLock, i32> {
    use veil_io::lock::{LockError, OutLock};
    match OutLock::acquire(out) {
        Ok(l) => {
            if let Some(h) = l.stale() {
                logging::notice(&format!(
                    "{}: taking over a stale lock left by a run that ended without \
                     releasing it ({h})",
                    out.display()
                ));
            }
            Ok(l)
        }
        Err(e @ LockError::Busy { .. }) => {
            logging::error(&format!("{}: {e}", out.display()));
            Err(exit::BUSY)
        }
        Err(LockError::Io(e)) => Err(io_failure(&e, out)),
    }
}

/// Prints an I/O failure of a run writing under `out`: a storage failure
/// gets its own message and exit status, anything else exit 2.
fn io_failure(e: &std::io::Error, out: &Path) -> i32 {
    let what = match e.kind() {
        std::io::ErrorKind::StorageFull => "no space left on the device",
        std::io::ErrorKind::QuotaExceeded => "disk quota exceeded",
        std::io::ErrorKind::ReadOnlyFilesystem => "read-only file system",
        std::io::ErrorKind::FileTooLarge => "file too large for the file system",
        // the error's own words: an input's error names the input the
        // user typed ("cannot read input 'scans/': permission denied")
        _ => {
            logging::error(&e.to_string());
            return exit::CANNOT_RUN;
        }
    };
    logging::error(&format!(
        "storage failure writing under {}: {what}. The run stopped; no input \
         was quarantined for it. Free space (or make it writable) and run the same command \
         again: it completes the outputs as an uninterrupted run would.",
        out.display()
    ));
    exit::STORAGE
}

fn run(cli: Cli) -> Result<i32, String> {
    let db = cli.db.as_deref();
    let quiet = cli.quiet;
    match cli.cmd {
        Cmd::Deface(args) => deface::run(args, quiet),
        Cmd::Risk(args) => risk::run(args, quiet),
        Cmd::Recipe { cmd } => recipe::run(cmd),
        Cmd::Verify(args) => verify::run(args, quiet),
        Cmd::Recipient { cmd } => consent::recipient(db, cmd),
        Cmd::Consent { cmd } => consent::consent(db, cmd),
        Cmd::Release(a) => release::release(db, a, quiet),
        Cmd::Review { cmd } => review::review(db, cmd),
        Cmd::Disclosures { patient_id, json } => release::disclosures(db, patient_id, json),
        Cmd::Ledger { cmd } => ledger::ledger(db, cmd),
        Cmd::Queue { cmd } => queue::queue(db, cmd),
        Cmd::Portal { cmd } => portal::portal(db, cmd),
        Cmd::Staff { cmd } => portal::staff(db, cmd),
        Cmd::Serve { config } => {
            let opts = veil_serve::Options {
                config,
                db: db.map(str::to_string),
                home: secure_home()?,
            };
            veil_serve::serve(&opts).map_err(|e| e.to_string())?;
            Ok(0)
        }
        Cmd::Pull {
            config,
            route,
            accession_list,
            report,
        } => pull::pull(&config, &route, &accession_list, report.as_deref()),
        Cmd::Retention {
            cmd: RetentionCmd::Run { now },
        } => release::retention(db, now),
        Cmd::Init { json } => {
            let home = secure_home()?;
            let r = veil_release::Site::init(db, &home).map_err(|e| e.to_string())?;
            if json {
                emit(&(serde_json::to_string_pretty(&r).map_err(|e| e.to_string())? + "\n"))?;
            } else {
                let said = |created: bool| if created { "created" } else { "kept" };
                emit(&format!(
                    "{}{} ({} store)\n  site key   {} {} (id {})\n  ledger key {} {} (id {})\n\
                     Back up both key files now, apart from the database: without site.key no \
                     consent matches, without the ledger key nothing can be appended.\n",
                    if r.already_initialized {
                        "already initialized: "
                    } else {
                        "initialized "
                    },
                    home.display(),
                    r.backend,
                    said(r.site_key_created),
                    r.site_key,
                    r.site_key_id,
                    said(r.ledger_key_created),
                    r.ledger_key,
                    r.ledger_key_id
                ))?;
            }
            Ok(0)
        }
        Cmd::Key { cmd: KeyCmd::Adopt } => {
            let home = secure_home()?;
            let r = veil_release::Site::adopt(db, &home).map_err(|e| e.to_string())?;
            emit(&format!(
                "adopted: site key id {} reproduces all {} consent references; ledger key id {} \
                 verifies all {} entries; both recorded in the store\n",
                r.site_key_id, r.consents_checked, r.ledger_key_id, r.ledger_entries_checked
            ))?;
            Ok(0)
        }
        Cmd::Key {
            cmd: KeyCmd::New { path },
        } => {
            let k = Key::create_file(&path).map_err(|e| e.to_string())?;
            emit(&format!(
                "created key file (mode 0600), key id {}\n",
                k.id()
            ))?;
            Ok(0)
        }
        Cmd::Deid {
            inputs,
            out,
            review,
            jobs,
            report,
            dicomdir,
            verify,
            verify_policy,
            follow_symlinks,
            force_new_key,
            policy: pargs,
        } => {
            let policy = policy(&pargs, false)?;
            let vpolicy = match (&verify_policy, verify) {
                (Some(p), _) => Some(veil_verify::VerifyPolicy::load(p)?),
                (None, true) => Some(veil_verify::VerifyPolicy::default()),
                (None, false) => None,
            };
            let review = review.unwrap_or_else(|| {
                let mut s = out.clone().into_os_string();
                s.push(".review");
                PathBuf::from(s)
            });
            #[cfg(feature = "s3")]
            if inputs
                .iter()
                .chain([&out, &review])
                .any(|p| places::is_remote(p))
            {
                if dicomdir || verify || verify_policy.is_some() || follow_symlinks {
                    return Err(
                        "--dicomdir, --verify, --verify-policy and --follow-symlinks are not \
                         supported with s3:// locations yet"
                            .into(),
                    );
                }
                return places::deid(
                    &policy,
                    places::Args {
                        inputs: &inputs,
                        out: &out,
                        review: &review,
                        jobs: jobs.unwrap_or_else(cores),
                        report: report.as_deref(),
                        recipe: pargs.recipe.as_deref(),
                        force_new_key,
                        quiet,
                    },
                );
            }
            if let Some(r) = report.as_deref().filter(|r| !veil_io::atomic::is_stdout(r)) {
                if inside(r, &out) {
                    return Err("the report names input files; write it outside OUT".into());
                }
            }
            if inside(&review, &out) || inside(&out, &review) {
                return Err("the review folder and OUT must not be inside one another".into());
            }
            for i in &inputs {
                if inside(&out, i) {
                    return Err("OUT must not be inside an input folder".into());
                }
                // its un-reviewed copies would be read again as inputs
                if inside(&review, i) {
                    return Err(format!(
                        "the review folder '{}' must not be inside the input '{}'",
                        review.display(),
                        i.display()
                    ));
                }
            }
            let _lock = match lock_out(&out) {
                Ok(l) => l,
                Err(code) => return Ok(code),
            };
            out::claim(&out, pargs.recipe.as_deref(), &policy, force_new_key)?;
            let jobs = jobs.unwrap_or_else(cores);
            let progress = progress::Progress::new("veil deid", "files", quiet);
            let batch = veil_pipeline::Batch {
                inputs,
                out,
                review,
                jobs,
                policy: &policy,
                dicomdir,
                verify: vpolicy.as_ref(),
            };
            let tick = |done: usize, total: usize| progress.tick(done, total);
            let walk = veil_io::WalkOptions { follow_symlinks };
            let rep = match batch.run_with(&tick, walk) {
                Ok(r) => r,
                Err(e) => return Ok(io_failure(&e, &batch.out)),
            };
            progress.finish();
            tracing::info!(
                inputs = rep.counts.inputs,
                written = rep.counts.written,
                review = rep.counts.review,
                quarantined = rep.counts.quarantined,
                not_dicom = rep.counts.not_dicom,
                seconds = rep.seconds,
                "deid: done"
            );
            veil_pipeline::review::record(&batch.review, &batch.out, &rep).map_err(|e| {
                format!(
                    "cannot write the review index in '{}': {e}",
                    batch.review.display()
                )
            })?;
            if let Some(r) = &report {
                let json = serde_json::to_vec_pretty(&rep).map_err(|e| e.to_string())?;
                if let Err(e) = veil_io::atomic::write_report(r, &json) {
                    return Ok(io_failure(&e, r));
                }
            }
            out::summary(&format!("{}\n", rep.summary()), [&report])?;
            for m in &rep.named_problems {
                logging::error(m);
            }
            if rep.counts.quarantined > 0 && report.is_none() {
                logging::notice(
                    "some files were quarantined; pass --report FILE to see which and why",
                );
            }
            Ok(rep.exit_code())
        }
        Cmd::Explain {
            file,
            json,
            policy: pargs,
        } => {
            let policy = policy(&pargs, true)?;
            let f = veil_io::read(&file).map_err(|e| e.to_string())?;
            let d = Deidentifier::new(&policy)
                .explain(&f)
                .map_err(|e| e.to_string())?;
            use std::fmt::Write as _;
            let mut text = String::new();
            if json {
                let v = serde_json::json!({
                    "options": policy.options().iter().map(|o| o.name()).collect::<Vec<_>>(),
                    "review": d.review,
                    "decisions": d.decisions,
                });
                text = serde_json::to_string_pretty(&v).map_err(|e| e.to_string())? + "\n";
            } else {
                let _ = writeln!(
                    text,
                    "{:<40} {:<36} {:<2} {:<28} WHY",
                    "ATTRIBUTE", "KEYWORD", "VR", "ACTION"
                );
                for x in &d.decisions {
                    let act = match serde_json::to_value(&x.action) {
                        Ok(serde_json::Value::String(s)) => s,
                        Ok(other) => other.to_string(),
                        Err(_) => String::new(),
                    };
                    let _ = writeln!(
                        text,
                        "{:<40} {:<36} {:<2} {:<28} {}",
                        x.path.to_string(),
                        x.keyword,
                        x.vr,
                        act,
                        x.why
                    );
                }
                if let Some(r) = &d.review {
                    let _ = writeln!(text, "-> review: {r}");
                }
            }
            emit(&text)?;
            Ok(0)
        }
    }
}
