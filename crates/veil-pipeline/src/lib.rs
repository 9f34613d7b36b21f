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

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

// the header as region rules see it: only the pixel stage reads it
#[cfg(feature = "ocr")]
mod attrs;
#[cfg(not(feature = "ocr"))]
#[path = "no_pixels.rs"]
mod pixels;
#[cfg(feature = "ocr")]
mod pixels;

pub use pixels::PixelReport;
use rayon::prelude::*;
use veil_core::ProfileOption;
use veil_core::{Phi, QuarantineReason};
use veil_deid::{Deidentifier, Policy};

pub mod deface;
pub mod dicomdir;
pub mod object;
pub mod outmark;
#[cfg(feature = "s3")]
pub mod places;
pub mod review;

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
    /// Verify each output against its source before it becomes visible
    /// (`--verify`); an output with failing findings goes to review.
    pub verify: Option<&'a veil_verify::VerifyPolicy>,
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
    /// Found while walking the inputs and passed over: a symbolic link
    /// not followed, or one leading outside the inputs or into a loop.
    Skipped {
        /// why (no path: the row's input names it, site-local)
        why: String,
    },
}

/// One row of the site-local report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FileResult {
    /// The input path. Paths can be PHI: it prints redacted, and only the
    /// site-local report (serialization) shows it.
    #[serde(serialize_with = "site_local")]
    pub input: Phi<String>,
    /// Its outcome.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// What the pixel stage redacted (boxes and why, never text).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pixels: Option<PixelReport>,
    /// A defaced object whose source syntax has no lossless encoder in
    /// Veil: what it was written in instead (syntax names, no values).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transcoded: Option<String>,
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
    /// Symbolic links passed over (see [`Outcome::Skipped`]).
    pub skipped: usize,
    /// Bytes read from inputs that were written (OUT or review).
    pub bytes_in: u64,
    /// Inputs the pixel stage (decoding, OCR) was run on: at most one per
    /// instance, since copies are recognized before it (issue 21). Zero,
    /// and left out of the report, without the pixel options (and in
    /// the object-storage driver, which does not count it).
    #[serde(skip_serializing_if = "is_zero")]
    pub pixel_stage: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
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
    /// What went wrong with files named on the command line, one message
    /// each, naming the file as typed (the user wrote that path) and the
    /// kind of problem, never a value read from it: the command prints
    /// them, and exits 1 (a non-DICOM file named explicitly was meant to
    /// be one). Not serialized: the rows of `files` already hold them.
    #[serde(skip)]
    pub named_problems: Vec<String>,
    /// Wall time in seconds.
    pub seconds: f64,
    /// Per-file results that are not plain successes, plus all successes.
    pub files: Vec<FileResult>,
    /// Temporary files removed from an interrupted earlier run.
    pub temporaries_removed: usize,
}

impl Report {
    /// Exit status: 0 when every input was handled, 1 when some were
    /// quarantined or a file named on the command line is not DICOM.
    pub fn exit_code(&self) -> i32 {
        if self.counts.quarantined > 0 || !self.named_problems.is_empty() {
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
            "veil deid: {}: {} written, {} to review, {} already done, {}, {} quarantined, {} not DICOM, {} skipped; {:.1} MB in {:.1} s ({:.0} files/s, {:.1} MB/s); key {}",
            veil_core::count(c.inputs, "input", "inputs"),
            c.written,
            c.review,
            c.already_done,
            veil_core::count(c.duplicates, "duplicate instance", "duplicate instances"),
            c.quarantined,
            c.not_dicom,
            veil_core::count(c.skipped, "symlink", "symlinks"),
            mb,
            self.seconds,
            (c.written + c.review + c.already_done) as f64 / self.seconds.max(1e-9),
            mb / self.seconds.max(1e-9),
            self.key_id
        )
    }
}

/// Writes a PHI value into the site-local report, the one place it belongs.
fn site_local<S: serde::Serializer>(v: &Phi<String>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v.expose())
}

/// Whether this build can run the policy's pixel options: Clean Pixel
/// Data and Clean Graphics read burned-in text with OCR, which a build
/// without the `ocr` feature (the header-only `veil`) does not have. The
/// message says which option and how to get a build that has it.
pub fn pixel_options_supported(policy: &Policy) -> Result<(), String> {
    let wanted = [ProfileOption::CleanPixelData, ProfileOption::CleanGraphics];
    match policy.options().iter().find(|o| wanted.contains(o)) {
        Some(o) if !cfg!(feature = "ocr") => Err(format!(
            "the option {} reads burned-in text with OCR, and this veil was built without \
             it (feature `ocr`); build with default features, or drop the option",
            o.name()
        )),
        _ => Ok(()),
    }
}

impl Outcome {
    /// The outcome's name, for logs and counts (no path, no value).
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Written { .. } => "written",
            Outcome::Review { .. } => "review",
            Outcome::AlreadyDone { .. } => "already-done",
            Outcome::DuplicateInstance { .. } => "duplicate-instance",
            Outcome::Quarantined { .. } => "quarantined",
            Outcome::NotDicom => "not-dicom",
            Outcome::Skipped { .. } => "skipped",
        }
    }
}

/// Lists input files, recursively, sorted (see [`veil_io::walk`]).
pub use veil_io::walk;

impl Batch<'_> {
    /// Runs the batch. `tick` is called once per finished file (progress).
    ///
    /// Files are processed in chunks of [`CHUNK`]: the workers parse,
    /// de-identify and write every output of a chunk to a temporary file;
    /// then one `syncfs` makes the chunk durable, and the outputs are
    /// renamed into place in input order. One journal commit per chunk
    /// instead of one per file, and duplicates resolved in input order
    /// (the first input of an instance is released), whatever the thread
    /// timing. A killed run loses at most the chunk in flight.
    ///
    /// Symbolic links inside the inputs are not followed (see
    /// [`Batch::run_with`]). An error whose kind is a storage failure
    /// ([`veil_io::atomic::is_storage_failure`]: disk full, quota,
    /// read-only) stops the run: the chunk in flight is dropped, so no
    /// input is quarantined for it and a rerun completes the outputs as
    /// an uninterrupted run would.
    pub fn run(&self, tick: &(dyn Fn(usize, usize) + Sync)) -> std::io::Result<Report> {
        self.run_with(tick, veil_io::WalkOptions::default())
    }

    /// [`Batch::run`], walking the inputs as `walk` says. A folder that
    /// cannot be listed is quarantined (in the report) and the batch goes
    /// on; passed-over links are counted and named in the report.
    pub fn run_with(
        &self,
        tick: &(dyn Fn(usize, usize) + Sync),
        walk: veil_io::WalkOptions,
    ) -> std::io::Result<Report> {
        let start = Instant::now();
        pixel_options_supported(self.policy).map_err(std::io::Error::other)?;
        let walked = veil_io::walk_with(&self.inputs, walk)?;
        let files = walked.files;
        tracing::info!(
            files = files.len(),
            passed_over = walked.skipped.len(),
            jobs = self.jobs,
            "deid: inputs listed"
        );
        let mut removed = veil_io::atomic::clean_temporaries(&self.out)?;
        removed += veil_io::atomic::clean_temporaries(&self.review)?;
        let total = files.len();
        let done = AtomicUsize::new(0);
        // `jobs` bounds the CPU work (parse, decide, apply); writing is
        // mostly waiting for the disk, so more threads than jobs keep the
        // disk busy while at most `jobs` of them compute.
        let defacing = if self
            .policy
            .options()
            .contains(&ProfileOption::CleanRecognizableVisualFeatures)
        {
            Some(deface::Stage::prepare(&files, &self.review)?)
        } else {
            None
        };
        let st = RunState {
            claims: Mutex::new(HashSet::new()),
            cpu: Semaphore::new(self.jobs.max(1)),
            defacing,
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(self.jobs.max(1) * IO_THREADS_PER_JOB)
            .build()
            .map_err(std::io::Error::other)?;
        let deid = Deidentifier::new(self.policy);
        let pixel_stage = pixels::PixelStage::new(self.policy);
        let mut dirs: BTreeSet<PathBuf> = BTreeSet::new();
        let mut results: Vec<(FileResult, u64)> = Vec::with_capacity(total);
        for (path, skip) in walked.skipped {
            let outcome = match skip {
                veil_io::Skip::Unreadable(k) => Outcome::Quarantined {
                    reason: QuarantineReason::Io {
                        detail: format!("folder cannot be listed: {}", veil_io::describe(k)),
                    },
                },
                why => Outcome::Skipped {
                    why: why.to_string(),
                },
            };
            let input = Phi::new(path.display().to_string());
            let r = FileResult {
                input,
                outcome,
                pixels: None,
                transcoded: None,
            };
            results.push((r, 0));
        }
        let ticked = || tick(done.fetch_add(1, Ordering::Relaxed) + 1, total);
        for chunk in files.chunks(CHUNK) {
            let staged: Vec<Staged> = match pixel_stage.as_ref() {
                Some(p) => self.stage_pixels_once(&pool, &deid, p, &st, chunk, &ticked),
                None => pool.install(|| {
                    chunk
                        .par_iter()
                        .map(|f| {
                            let r = match self.stage_header(&deid, &st, f) {
                                Early::Done(s) => *s,
                                Early::Ready(h) => self.stage_rest(None, &st, f, *h),
                            };
                            ticked();
                            r
                        })
                        .collect()
                }),
            };
            // disk full and the like: stop before anything of this chunk
            // becomes visible (dropping `staged` removes its temporaries),
            // so no later duplicate takes the place of the failed original
            if let Some(kind) = staged.iter().find_map(|s| s.storage) {
                return Err(std::io::Error::from(kind));
            }
            // `syncfs` also flushes whatever else is dirty on the file
            // system, so a handful of files is synced one by one
            let pending: Vec<_> = staged.iter().filter_map(|s| s.pending.as_ref()).collect();
            if pending.len() > SYNC_ONE_BY_ONE {
                for root in [&self.out, &self.review] {
                    if root.is_dir() {
                        veil_io::atomic::sync_filesystem(root)?;
                    }
                }
            } else {
                for p in pending {
                    p.sync_data()?;
                }
            }
            let mut claims = st.claims.lock().unwrap_or_else(|e| e.into_inner());
            for s in staged {
                let r = self.commit(s, &mut claims, &mut dirs)?;
                // the outcome's kind and the file's place in the run: the
                // input's path is site-local (the report), never logged
                tracing::debug!(
                    file = results.len() + 1,
                    outcome = r.0.outcome.kind(),
                    "deid: file done"
                );
                results.push(r);
            }
        }
        if let Some(d) = &st.defacing {
            d.clean_up()?;
        }
        // make every rename durable: one fsync per folder
        for dir in &dirs {
            veil_io::atomic::sync_dir(dir)?;
        }
        let mut counts = Counts {
            inputs: results.len(),
            ..Counts::default()
        };
        // a file the user named that is not DICOM was meant to be one: it
        // is an error, not a silent "1 not DICOM" (inside a folder, other
        // files are expected and only counted)
        let named: Vec<String> = self
            .inputs
            .iter()
            .filter(|p| p.is_file())
            .map(|p| p.display().to_string())
            .collect();
        let mut named_problems = Vec::new();
        for (r, bytes) in &results {
            match &r.outcome {
                Outcome::Written { .. } => counts.written += 1,
                Outcome::Review { .. } => counts.review += 1,
                Outcome::AlreadyDone { .. } => counts.already_done += 1,
                Outcome::DuplicateInstance { .. } => counts.duplicates += 1,
                Outcome::Quarantined { reason } => {
                    counts.quarantined += 1;
                    if let Some(n) = named.iter().find(|n| *n == r.input.expose()) {
                        // the kind only: a reason's detail can quote the
                        // file (a transfer syntax UID made of text)
                        let kind = serde_json::to_value(reason)
                            .ok()
                            .and_then(|v| v["kind"].as_str().map(str::to_string))
                            .unwrap_or_default();
                        named_problems.push(format!(
                            "'{n}' was quarantined ({kind}); nothing was written for it \
                             (--report FILE says why)"
                        ));
                    }
                }
                Outcome::NotDicom => {
                    counts.not_dicom += 1;
                    if let Some(n) = named.iter().find(|n| *n == r.input.expose()) {
                        named_problems.push(format!(
                            "'{n}' is not a DICOM file (no Part 10 header, no data set); \
                             nothing was written for it"
                        ));
                    }
                }
                Outcome::Skipped { .. } => counts.skipped += 1,
            }
            counts.bytes_in += bytes;
        }
        counts.pixel_stage = pixel_stage.as_ref().map_or(0, |p| p.runs());
        if self.dicomdir {
            self.write_dicomdir(&results)?;
        }
        if let Some(p) = &pixel_stage {
            p.write_page(&self.review)?;
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
            named_problems,
            seconds: start.elapsed().as_secs_f64(),
            files: results.into_iter().map(|(r, _)| r).collect(),
            temporaries_removed: removed,
        })
    }

    /// A chunk under the pixel stage, so that the stage runs once per
    /// instance (issue 21): a folder holding ten copies of a 51-frame cine
    /// decoded and read all ten with OCR before the commit found nine of
    /// them to be duplicates.
    ///
    /// First every input's header is de-identified (cheap, in parallel),
    /// which gives its output SOP Instance UID: the very key the commit
    /// claims instances by ([`Batch::commit`]), so no second notion of
    /// "same instance" is introduced. Then, in input order, the first
    /// input of each instance not released by an earlier chunk goes on
    /// to the pixel stage and its output; a later input of the same
    /// instance waits. A waiting input whose predecessor claimed the
    /// instance (written, review or already done) is a duplicate without
    /// any pixel work; one whose predecessor did not (its output could
    /// not be encoded) goes on in the next round, as it would have won
    /// the commit before. So the first input in input order still wins,
    /// whatever the thread timing, and the outputs are the bytes they
    /// were. What changes is only what a duplicate costs, and that its
    /// report row has no pixel entry (the stage did not run for it).
    fn stage_pixels_once(
        &self,
        pool: &rayon::ThreadPool,
        deid: &Deidentifier,
        pixel_stage: &pixels::PixelStage,
        st: &RunState,
        chunk: &[PathBuf],
        ticked: &(dyn Fn() + Sync),
    ) -> Vec<Staged> {
        let early: Vec<Early> = pool.install(|| {
            chunk
                .par_iter()
                .map(|f| self.stage_header(deid, st, f))
                .collect()
        });
        let mut waiting: Vec<(usize, Box<object::Header>)> = Vec::new();
        let mut slots: Vec<Option<Staged>> = Vec::with_capacity(chunk.len());
        for (i, e) in early.into_iter().enumerate() {
            match e {
                Early::Done(s) => {
                    ticked();
                    slots.push(Some(*s));
                }
                Early::Ready(h) => {
                    waiting.push((i, h));
                    slots.push(None);
                }
            }
        }
        // instances released by earlier chunks, then by earlier rounds
        let mut claimed: HashSet<String> =
            st.claims.lock().unwrap_or_else(|e| e.into_inner()).clone();
        // a storage failure stops the run at this chunk: no more work
        let failed = |slots: &[Option<Staged>]| slots.iter().flatten().any(|s| s.storage.is_some());
        while !waiting.is_empty() && !failed(&slots) {
            let mut first: HashSet<String> = HashSet::new();
            let mut leaders = Vec::new();
            let mut later = Vec::new();
            for (i, h) in waiting {
                let sop = &h.d.sop_instance;
                if claimed.contains(sop) {
                    // the name is the one the stage would have given it:
                    // the pixel stage changes neither path nor UID
                    let output = object::relative_name(self.policy, &h.d, self.dicomdir);
                    slots[i] = Some(Staged::stopped(
                        &chunk[i],
                        Outcome::DuplicateInstance { output },
                    ));
                    ticked();
                } else if first.insert(sop.clone()) {
                    leaders.push((i, h));
                } else {
                    later.push((i, h));
                }
            }
            let done: Vec<(usize, Staged)> = pool.install(|| {
                leaders
                    .into_par_iter()
                    .map(|(i, h)| {
                        let s = self.stage_rest(Some(pixel_stage), st, &chunk[i], *h);
                        ticked();
                        (i, s)
                    })
                    .collect()
            });
            for (i, s) in done {
                if let Some(sop) = &s.sop {
                    claimed.insert(sop.clone());
                }
                slots[i] = Some(s);
            }
            waiting = later;
        }
        // an input left unsettled only when a storage failure stopped the
        // rounds: the chunk is dropped and the run stops, so this row is
        // never committed
        slots
            .into_iter()
            .zip(chunk)
            .map(|(s, f)| s.unwrap_or_else(|| Staged::stopped(f, Outcome::NotDicom)))
            .collect()
    }

    /// The first half of one input's work: parses it and de-identifies
    /// its header (and defaces it), holding a CPU permit.
    fn stage_header(&self, deid: &Deidentifier, st: &RunState, input: &Path) -> Early {
        let _permit = st.cpu.acquire();
        let mut deface = st.defacing.as_ref().map(|df| {
            move |d: &mut veil_deid::Deidentified| df.apply(input, &mut d.dataset, &mut d.review)
        });
        match object::prepare_header(
            deid,
            veil_io::read(input),
            deface.as_mut().map(|f| f as object::DefaceFn<'_>),
        ) {
            object::Prepared::Ready(h) => Early::Ready(h),
            object::Prepared::Stopped(outcome) => {
                Early::Done(Box::new(Staged::stopped(input, outcome)))
            }
            object::Prepared::Storage(kind) => Early::Done(Box::new(Staged::storage(input, kind))),
        }
    }

    /// The second half: the pixel stage, then the output written to a
    /// temporary file.
    fn stage_rest(
        &self,
        pixel_stage: Option<&pixels::PixelStage>,
        st: &RunState,
        input: &Path,
        header: object::Header,
    ) -> Staged {
        let staged = |outcome| Staged::stopped(input, outcome);
        // the storage failed, not the file: the run stops
        let storage = |kind| Staged::storage(input, kind);
        let permit = st.cpu.acquire();
        let core = header.finish(self.policy, pixel_stage, self.dicomdir);
        drop(permit);
        let object::Core {
            file,
            d,
            applied,
            out_ts,
            rel,
            transcoded,
        } = core;
        let root = if d.review.is_some() {
            &self.review
        } else {
            &self.out
        };
        let dest = root.join(&rel);
        let bytes = std::fs::metadata(input).map(|m| m.len()).unwrap_or(0);
        let sop = d.sop_instance.clone();
        let claimed = st
            .claims
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&sop);
        let mut outcome = match (&d.review, claimed) {
            (_, true) => return staged(Outcome::DuplicateInstance { output: rel }),
            // finished by an earlier run (resume after a crash)
            _ if dest.exists() => Outcome::AlreadyDone { output: rel },
            (Some(reason), _) => Outcome::Review {
                output: rel,
                reason: reason.clone(),
            },
            (None, _) => Outcome::Written { output: rel },
        };
        let mut pending = None;
        if !matches!(outcome, Outcome::AlreadyDone { .. }) {
            match write_temp(&dest, &d, &file, &out_ts) {
                Ok(p) => pending = Some(p),
                Err(Failed::Storage(kind)) => return storage(kind),
                Err(Failed::Output(detail)) => {
                    return staged(Outcome::Quarantined {
                        reason: QuarantineReason::Io { detail },
                    })
                }
            }
        }
        if let (Some(policy), Some(p), Outcome::Written { output }) =
            (self.verify, &pending, &outcome)
        {
            let failing = veil_verify::verify_one(&file, p.path(), output, policy);
            if !failing.is_empty() {
                // not released: the same output goes to review instead,
                // with what was found (kinds and places, never values)
                let mut kinds: Vec<&str> = failing.iter().map(|f| f.category.name()).collect();
                kinds.sort();
                kinds.dedup();
                let reason = format!("verify: {} finding(s): {}", failing.len(), kinds.join(", "));
                match write_temp(&self.review.join(output), &d, &file, &out_ts) {
                    Ok(p) => pending = Some(p),
                    Err(Failed::Storage(kind)) => return storage(kind),
                    Err(Failed::Output(detail)) => {
                        return staged(Outcome::Quarantined {
                            reason: QuarantineReason::Io { detail },
                        })
                    }
                }
                outcome = Outcome::Review {
                    output: output.clone(),
                    reason,
                };
            }
        }
        let pixels = match (pixel_stage, applied) {
            (Some(p), Some(a)) => {
                let (output, released) = match &outcome {
                    Outcome::Written { output } => (output.as_str(), true),
                    Outcome::Review { output, .. } => (output.as_str(), false),
                    _ => ("", false),
                };
                let report = a.report.clone();
                if !output.is_empty() {
                    p.record(&self.review, output, released, a);
                }
                Some(report)
            }
            _ => None,
        };
        Staged {
            input: Phi::new(input.display().to_string()),
            outcome,
            bytes,
            sop: Some(sop),
            pending,
            pixels,
            transcoded,
            storage: None,
        }
    }

    /// Makes one staged output visible (its data is already durable), in
    /// input order: an instance already released in this run is a
    /// duplicate, and its temporary file is dropped. A storage failure
    /// is returned: the run stops there, in input order.
    fn commit(
        &self,
        s: Staged,
        claims: &mut HashSet<String>,
        dirs: &mut BTreeSet<PathBuf>,
    ) -> std::io::Result<(FileResult, u64)> {
        let Staged {
            input,
            mut outcome,
            mut bytes,
            sop,
            pending,
            pixels,
            transcoded,
            storage: _,
        } = s;
        if let Some(sop) = sop {
            if !claims.insert(sop) {
                if let Outcome::Written { output }
                | Outcome::Review { output, .. }
                | Outcome::AlreadyDone { output } = &outcome
                {
                    outcome = Outcome::DuplicateInstance {
                        output: output.clone(),
                    };
                    bytes = 0;
                }
                // dropping `pending` removes the temporary file
            } else if let Some(p) = pending {
                match p.persist_deferred() {
                    Ok(dir) => {
                        dirs.insert(dir);
                    }
                    Err(e) if veil_io::atomic::is_storage_failure(e.kind()) => return Err(e),
                    Err(e) => {
                        outcome = Outcome::Quarantined {
                            reason: QuarantineReason::Io {
                                detail: format!("{:?}", e.kind()),
                            },
                        };
                        bytes = 0;
                    }
                }
            }
        }
        Ok((
            FileResult {
                input,
                outcome,
                pixels,
                transcoded,
            },
            bytes,
        ))
    }
}

/// Why an output could not be written.
enum Failed {
    /// The storage's failure (disk full, quota, read-only): stops the run.
    Storage(std::io::ErrorKind),
    /// This output's (quarantines its input), in words without values.
    Output(String),
}

/// Writes a de-identified object to a complete temporary file beside
/// `dest` (made visible later, in input order, by the chunk's commit).
fn write_temp(
    dest: &Path,
    d: &veil_deid::Deidentified,
    file: &veil_io::DicomFile,
    ts: &veil_io::TsInfo,
) -> Result<veil_io::atomic::Pending, Failed> {
    let meta = object::write_meta(d);
    let storage = veil_io::atomic::is_storage_failure;
    let f =
        veil_io::write_pending(dest, &meta, ts, &d.dataset, &file.source).map_err(|e| match e {
            veil_io::WriteError::Io(k) if storage(k) => Failed::Storage(k),
            e => Failed::Output(e.to_string()),
        })?;
    f.finish().map_err(|e| match e.kind() {
        k if storage(k) => Failed::Storage(k),
        k => Failed::Output(format!("{k:?}")),
    })
}

/// One input after the parallel stage: its provisional outcome and the
/// temporary output waiting for the chunk's commit.
struct Staged {
    input: Phi<String>,
    outcome: Outcome,
    bytes: u64,
    sop: Option<String>,
    pending: Option<veil_io::atomic::Pending>,
    pixels: Option<PixelReport>,
    transcoded: Option<String>,
    /// A storage failure while staging (the run stops).
    storage: Option<std::io::ErrorKind>,
}

impl Staged {
    /// An input that ends here, with nothing written.
    fn stopped(input: &Path, outcome: Outcome) -> Staged {
        Staged {
            input: Phi::new(input.display().to_string()),
            outcome,
            bytes: 0,
            sop: None,
            pending: None,
            pixels: None,
            transcoded: None,
            storage: None,
        }
    }

    /// A storage failure while staging `input` (the run stops).
    fn storage(input: &Path, kind: std::io::ErrorKind) -> Staged {
        Staged {
            storage: Some(kind),
            ..Staged::stopped(input, Outcome::NotDicom)
        }
    }
}

/// An input after [`Batch::stage_header`].
enum Early {
    /// It ends there (not DICOM, quarantined, a storage failure).
    Done(Box<Staged>),
    /// Its header is decided; the pixel stage and the output are next.
    Ready(Box<object::Header>),
}

/// Inputs per group commit.
const CHUNK: usize = 256;

/// Up to this many outputs in a chunk are fsynced one by one.
const SYNC_ONE_BY_ONE: usize = 16;

impl Batch<'_> {
    /// Writes OUT/DICOMDIR from the headers of the released outputs.
    fn write_dicomdir(&self, results: &[(FileResult, u64)]) -> std::io::Result<()> {
        let outputs = results.iter().filter_map(|(r, _)| {
            let rel = match &r.outcome {
                Outcome::Written { output } | Outcome::AlreadyDone { output } => output,
                _ => return None,
            };
            let f = veil_io::read(&self.out.join(rel)).ok()?;
            Some((rel.clone(), f))
        });
        let (entries, uid) = dicomdir::entries(self.policy, outputs);
        veil_io::write_dicomdir(&self.out, &entries, &uid).map_err(|e| match e {
            // keeps the kind, so a full disk is reported as one
            veil_io::WriteError::Io(k) => std::io::Error::from(k),
            e => std::io::Error::other(e.to_string()),
        })
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

/// State shared by the workers of one run.
struct RunState {
    /// SOP Instance UIDs released by earlier chunks.
    claims: Mutex<HashSet<String>>,
    /// Bounds CPU-bound work to `jobs` threads.
    cpu: Semaphore,
    /// The defacing stage's plan, when the option is set.
    defacing: Option<deface::Stage>,
}
