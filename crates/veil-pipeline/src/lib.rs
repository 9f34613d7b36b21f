//! The batch data path: read -> decide/apply -> route -> write -> report.
//!
//! Per file: [`veil_io::read`] parses the header (bulk data stays on
//! disk), [`veil_deid::Deidentifier::run`] decides and applies, the result
//! goes to OUT, to the review folder (may carry burned-in text, documents)
//! or to the quarantine list (with a reason), and [`veil_io::write_file`]
//! writes it atomically. A file that fails never stops the batch.
//!
//! Output names come only from pseudonymous values. Input paths appear only
//! in the [`Report`], which is for the site's eyes and is written outside
//! OUT by the caller.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use rayon::prelude::*;
use veil_core::QuarantineReason;
use veil_core::Tag;
use veil_deid::{pseudonym, Deidentifier, Policy};
use veil_io::DirEntry;
use veil_io::WriteMeta;

/// What to run.
pub struct Batch<'a> {
    /// Input files or folders (recursive).
    pub inputs: Vec<PathBuf>,
    /// Output root.
    pub out: PathBuf,
    /// Review root.
    pub review: PathBuf,
    /// Worker threads.
    pub jobs: usize,
    /// The policy.
    pub policy: &'a Policy,
    /// Write `OUT/DICOMDIR`; output File IDs then follow PS3.10's rules
    /// (8 characters of A-Z, 0-9, no extension).
    pub dicomdir: bool,
}

/// How one input ended.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum Outcome {
    /// Written to OUT (path relative to OUT).
    Written {
        /// relative output path
        output: String,
    },
    /// Written to the review folder.
    Review {
        /// relative path under the review folder
        output: String,
        /// why
        reason: String,
    },
    /// Already present from an earlier run (resumed).
    AlreadyDone {
        /// relative output path
        output: String,
    },
    /// Another input of this run is the same instance (same SOP Instance
    /// UID, e.g. the same image in another transfer syntax); the instance
    /// is released once.
    DuplicateInstance {
        /// relative output path of the instance
        output: String,
    },
    /// Not released; the input stays where it is.
    Quarantined {
        /// why
        reason: QuarantineReason,
    },
    /// Not DICOM: not copied.
    NotDicom,
}

/// One row of the site-local report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FileResult {
    /// The input path. Site-local: paths can be PHI.
    pub input: String,
    /// Its outcome.
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// Counts for the summary line and the report.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Counts {
    /// Inputs seen.
    pub inputs: usize,
    /// Written to OUT.
    pub written: usize,
    /// Written to review.
    pub review: usize,
    /// Skipped because an earlier run finished them.
    pub already_done: usize,
    /// Inputs that repeat an instance already released in this run.
    pub duplicates: usize,
    /// Quarantined.
    pub quarantined: usize,
    /// Not DICOM.
    pub not_dicom: usize,
    /// Bytes read from inputs that were written (OUT or review).
    pub bytes_in: u64,
}

/// The batch report (site-local).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// Reminder that the report names input files.
    pub notice: &'static str,
    /// Veil version.
    pub veil_version: &'static str,
    /// Options in force.
    pub options: Vec<String>,
    /// Recipe name and version.
    pub recipe: String,
    /// Id of the key (a hash; never the key).
    pub key_id: String,
    /// Counts.
    pub counts: Counts,
    /// Wall time in seconds.
    pub seconds: f64,
    /// Per-file results that are not plain successes, plus all successes.
    pub files: Vec<FileResult>,
    /// Temporary files removed from an interrupted earlier run.
    pub temporaries_removed: usize,
}

impl Report {
    /// Exit status: 0 when every input was handled, 1 when some were
    /// quarantined.
    pub fn exit_code(&self) -> i32 {
        if self.counts.quarantined > 0 {
            1
        } else {
            0
        }
    }

    /// The one-line summary (no PHI).
    pub fn summary(&self) -> String {
        let c = &self.counts;
        let mb = c.bytes_in as f64 / 1e6;
        format!(
            "veil deid: {} inputs: {} written, {} to review, {} already done, {} duplicate instances, {} quarantined, {} not DICOM; {:.1} MB in {:.1} s ({:.0} files/s, {:.1} MB/s); key {}",
            c.inputs,
            c.written,
            c.review,
            c.already_done,
            c.duplicates,
            c.quarantined,
            c.not_dicom,
            mb,
            self.seconds,
            (c.written + c.review + c.already_done) as f64 / self.seconds.max(1e-9),
            mb / self.seconds.max(1e-9),
            self.key_id
        )
    }
}

/// Lists input files, recursively, sorted so runs are reproducible.
pub fn walk(inputs: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for i in inputs {
        walk_one(i, &mut out)?;
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn walk_one(p: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let md = std::fs::metadata(p)?;
    if md.is_dir() {
        for e in std::fs::read_dir(p)? {
            walk_one(&e?.path(), out)?;
        }
    } else if md.is_file() {
        out.push(p.to_path_buf());
    }
    Ok(())
}

impl Batch<'_> {
    /// Runs the batch. `tick` is called once per finished file (progress).
    pub fn run(&self, tick: &(dyn Fn(usize, usize) + Sync)) -> std::io::Result<Report> {
        let start = Instant::now();
        let files = walk(&self.inputs)?;
        let mut removed = veil_io::atomic::clean_temporaries(&self.out)?;
        removed += veil_io::atomic::clean_temporaries(&self.review)?;
        let total = files.len();
        let done = AtomicUsize::new(0);
        // `jobs` bounds the CPU work (parse, decide, apply); writing is
        // mostly waiting for the disk (every output is fsynced before its
        // rename), so more threads than jobs keep the disk busy while at
        // most `jobs` of them compute.
        let st = RunState {
            claims: Mutex::new(HashMap::new()),
            cpu: Semaphore::new(self.jobs.max(1)),
            dirs: Mutex::new(BTreeSet::new()),
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(self.jobs.max(1) * IO_THREADS_PER_JOB)
            .build()
            .map_err(std::io::Error::other)?;
        let deid = Deidentifier::new(self.policy);
        let mut results: Vec<Processed> = pool.install(|| {
            files
                .par_iter()
                .enumerate()
                .map(|(idx, f)| {
                    let r = self.one(&deid, &st, idx, f);
                    tick(done.fetch_add(1, Ordering::Relaxed) + 1, total);
                    r
                })
                .collect()
        });
        // Of several inputs with the same SOP Instance UID, the first in
        // input order is released (deterministically, whatever the thread
        // timing); the others are reported as duplicates.
        // make every rename durable: one fsync per folder
        for dir in st.dirs.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            veil_io::atomic::sync_dir(dir)?;
        }
        let claims = st.claims.into_inner().unwrap_or_default();
        for (r, bytes, claim) in &mut results {
            if let (
                Some((sop, idx)),
                Outcome::Written { output } | Outcome::Review { output, .. },
            ) = (claim.as_ref(), &r.outcome)
            {
                if claims.get(sop).map(|c| c.0) != Some(*idx) {
                    r.outcome = Outcome::DuplicateInstance {
                        output: output.clone(),
                    };
                    *bytes = 0;
                }
            }
        }
        let mut counts = Counts {
            inputs: total,
            ..Counts::default()
        };
        for (r, bytes, _) in &results {
            match &r.outcome {
                Outcome::Written { .. } => counts.written += 1,
                Outcome::Review { .. } => counts.review += 1,
                Outcome::AlreadyDone { .. } => counts.already_done += 1,
                Outcome::DuplicateInstance { .. } => counts.duplicates += 1,
                Outcome::Quarantined { .. } => counts.quarantined += 1,
                Outcome::NotDicom => counts.not_dicom += 1,
            }
            counts.bytes_in += bytes;
        }
        if self.dicomdir {
            self.write_dicomdir(&results)?;
        }
        Ok(Report {
            notice: "SITE-LOCAL: this report names input files, whose paths can identify patients. Do not release it with the output.",
            veil_version: env!("CARGO_PKG_VERSION"),
            options: self.policy.options().iter().map(|o| o.name().to_string()).collect(),
            recipe: match &self.policy.recipe().version {
                Some(v) => format!("{} {v}", self.policy.recipe().name),
                None => self.policy.recipe().name.clone(),
            },
            key_id: self.policy.key_id(),
            counts,
            seconds: start.elapsed().as_secs_f64(),
            files: results.into_iter().map(|(r, _, _)| r).collect(),
            temporaries_removed: removed,
        })
    }

    fn one(&self, deid: &Deidentifier, st: &RunState, idx: usize, input: &Path) -> Processed {
        let (outcome, bytes, claim) = self.process(deid, st, idx, input);
        (
            FileResult {
                input: input.display().to_string(),
                outcome,
            },
            bytes,
            claim,
        )
    }

    fn process(
        &self,
        deid: &Deidentifier,
        st: &RunState,
        idx: usize,
        input: &Path,
    ) -> (Outcome, u64, Option<Claim>) {
        let permit = st.cpu.acquire();
        let file = match veil_io::read(input) {
            Ok(f) => f,
            Err(e) if e.reason == QuarantineReason::NotDicom => {
                return (Outcome::NotDicom, 0, None)
            }
            Err(e) => return (Outcome::Quarantined { reason: e.reason }, 0, None),
        };
        if file.is_dicomdir() {
            let reason = QuarantineReason::Dicomdir;
            return (Outcome::Quarantined { reason }, 0, None);
        }
        let d = match deid.run(&file) {
            Ok(d) => d,
            Err(reason) => return (Outcome::Quarantined { reason }, 0, None),
        };
        drop(permit);
        let rel = if self.dicomdir {
            d.path
                .iter()
                .map(|c| pseudonym::format_id(self.policy.key(), "{hash:8}", "file-id", c, None))
                .collect::<Vec<_>>()
                .join("/")
        } else {
            format!(
                "{}/{}/{}/{}.dcm",
                d.path[0], d.path[1], d.path[2], d.path[3]
            )
        };
        let root = if d.review.is_some() {
            &self.review
        } else {
            &self.out
        };
        let dest = root.join(&rel);
        let size = std::fs::metadata(input).map(|m| m.len()).unwrap_or(0);
        let sop = d.sop_instance.clone();
        {
            let mut c = st.claims.lock().unwrap_or_else(|e| e.into_inner());
            match c.get(&sop) {
                Some(&(other, _)) if other < idx => {
                    return (Outcome::DuplicateInstance { output: rel }, 0, None)
                }
                Some(_) => {}
                None if dest.exists() => {
                    // finished by an earlier run (resume after a crash)
                    c.insert(sop.clone(), (usize::MIN, dest.clone()));
                    return (Outcome::AlreadyDone { output: rel }, size, None);
                }
                None => {}
            }
        }
        let meta = WriteMeta {
            sop_class: d.sop_class.clone(),
            sop_instance: sop.clone(),
        };
        let io_fail = |detail: String| {
            let reason = QuarantineReason::Io { detail };
            (Outcome::Quarantined { reason }, 0, None)
        };
        let synced = match veil_io::write_synced(&dest, &meta, &file.ts, &d.dataset, &file.source) {
            Ok(s) => s,
            Err(e) => return io_fail(e.to_string()),
        };
        {
            let mut c = st.claims.lock().unwrap_or_else(|e| e.into_inner());
            let previous = match c.get(&sop) {
                Some((other, _)) if *other < idx => {
                    return (Outcome::DuplicateInstance { output: rel }, 0, None);
                }
                Some((_, path)) => Some(path.clone()),
                None => None,
            };
            match synced.persist_deferred() {
                Ok(dir) => {
                    st.dirs
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(dir);
                }
                Err(e) => return io_fail(format!("{:?}", e.kind())),
            }
            // a later input of the same instance was released first, to
            // another place (its header differs): this one replaces it
            if let Some(p) = previous.filter(|p| *p != dest) {
                let _ = std::fs::remove_file(p);
            }
            c.insert(sop.clone(), (idx, dest.clone()));
        }
        let claim = Some((sop, idx));
        match d.review {
            Some(reason) => (
                Outcome::Review {
                    output: rel,
                    reason,
                },
                size,
                claim,
            ),
            None => (Outcome::Written { output: rel }, size, claim),
        }
    }
}

impl Batch<'_> {
    /// Writes OUT/DICOMDIR from the headers of the released outputs.
    fn write_dicomdir(&self, results: &[Processed]) -> std::io::Result<()> {
        let mut entries = Vec::new();
        for (r, _, _) in results {
            let rel = match &r.outcome {
                Outcome::Written { output } | Outcome::AlreadyDone { output } => output,
                _ => continue,
            };
            let Ok(f) = veil_io::read(&self.out.join(rel)) else {
                continue;
            };
            entries.push(DirEntry {
                file_id: rel.split('/').map(str::to_string).collect(),
                ts_uid: f.ts.uid.clone(),
                dataset: f.dataset,
            });
        }
        let mut sops: Vec<String> = entries
            .iter()
            .filter_map(|e| e.dataset.ascii(Tag(0x0008, 0x0018)))
            .collect();
        sops.sort_unstable();
        let uid = pseudonym::uid(self.policy.key(), &format!("DICOMDIR {}", sops.join(" ")));
        veil_io::write_dicomdir(&self.out, &entries, &uid)
            .map_err(|e| std::io::Error::other(e.to_string()))
    }
}

/// Threads per CPU job: the extra ones wait on the disk.
const IO_THREADS_PER_JOB: usize = 8;

/// A counting semaphore bounding CPU-bound sections to `jobs` threads.
struct Semaphore {
    free: Mutex<usize>,
    cv: std::sync::Condvar,
}

struct Permit<'a>(&'a Semaphore);

impl Semaphore {
    fn new(n: usize) -> Self {
        Semaphore {
            free: Mutex::new(n),
            cv: std::sync::Condvar::new(),
        }
    }

    fn acquire(&self) -> Permit<'_> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while *free == 0 {
            free = self.cv.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        *free -= 1;
        Permit(self)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.0.cv.notify_one();
    }
}

/// A file's result, the input bytes it accounts for, and its claim.
type Processed = (FileResult, u64, Option<Claim>);

/// (SOP Instance UID, input index) of a released instance.
type Claim = (String, usize);

/// State shared by the workers of one run.
struct RunState {
    /// SOP Instance UID -> the input index that released it, and where.
    claims: Mutex<HashMap<String, (usize, PathBuf)>>,
    /// Bounds CPU-bound work to `jobs` threads.
    cpu: Semaphore,
    /// Folders that received renames, fsynced once at the end.
    dirs: Mutex<BTreeSet<PathBuf>>,
}
