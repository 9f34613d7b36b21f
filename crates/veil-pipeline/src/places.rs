//! `veil deid` when the inputs or OUT are in object storage
//! (`s3://bucket/prefix`, [`veil_io::place`]).
//!
//! Why a second driver beside [`crate::Batch`]: the batch's commit rests
//! on local files (temporary files fsynced and renamed in input order, a
//! lock file on OUT). Objects have neither rename nor locks, but a PUT (or
//! a completed multipart upload) is all-or-nothing, which is what the
//! commit is for. So each object goes through the same per-object core
//! ([`crate::object::deid_object`]: the same bytes and names), and the
//! rules that span inputs are applied here in input order: the first
//! input of an instance is released, a later one is a duplicate; an
//! output that exists (an earlier run finished it) is left alone, so a
//! run killed midway and run again ends with the same objects and no
//! partial one. Inputs are processed `jobs` at a time in chunks, so at most
//! a chunk of outputs is held in memory.
//!
//! Duplicates here keep their own rule and cost (issue 21): they are
//! settled by output name after every input of the chunk went through the
//! whole core, pixel stage included, so a copy of an instance still pays
//! for decoding and OCR. The local batch recognizes copies before the
//! pixel stage ([`crate::Batch`]); doing the same here would mean
//! splitting [`deid_object`] in two around the pixel stage for a driver
//! whose inputs are read whole over the network anyway. Which input wins
//! is the same in both (the first in input order), and so are the bytes.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Instant;

use veil_core::Phi;
use veil_deid::Policy;
use veil_io::objects::ObjectError;
use veil_io::place::{Input, Inputs, Root};

use crate::object::{deid_object, ObjectOptions, ObjectOutcome, ObjectResult};
use crate::{Counts, FileResult, Outcome, Report};

/// Inputs per chunk: outputs held in memory before they are written.
const CHUNK: usize = 64;

/// What to run.
pub struct PlacedBatch<'a> {
    /// Where the inputs are (a local file or folder, or `s3://...`).
    pub inputs: &'a Inputs,
    /// OUT.
    pub out: &'a Root,
    /// The review folder or prefix.
    pub review: &'a Root,
    /// Worker threads.
    pub jobs: usize,
    /// The policy.
    pub policy: &'a Policy,
}

impl PlacedBatch<'_> {
    /// Runs the batch; `tick(done, total)` reports progress. Stops at the
    /// first storage failure (an object store or folder that cannot be
    /// written), as the local batch stops on a full disk.
    pub fn run(&self, tick: &(dyn Fn(usize, usize) + Sync)) -> Result<Report, ObjectError> {
        let started = Instant::now();
        let list = self.inputs.list()?;
        let total = list.len();
        let mut counts = Counts {
            inputs: total,
            ..Counts::default()
        };
        let mut files = Vec::with_capacity(total);
        let mut claimed: HashSet<String> = HashSet::new();
        let opts = ObjectOptions::default();
        let mut done = 0;
        for chunk in list.chunks(CHUNK) {
            let results = self.deid_chunk(chunk, &opts)?;
            let (settled, pixels): (Vec<_>, Vec<_>) = results
                .into_iter()
                .map(|(r, px)| (self.decide(r, &mut claimed), px))
                .unzip();
            let outcomes = self.put_all(settled)?;
            for (((input, size), outcome), px) in chunk.iter().zip(outcomes).zip(pixels) {
                match &outcome {
                    Outcome::Written { .. } => counts.written += 1,
                    Outcome::Review { .. } => counts.review += 1,
                    Outcome::AlreadyDone { .. } => counts.already_done += 1,
                    Outcome::DuplicateInstance { .. } => counts.duplicates += 1,
                    Outcome::Quarantined { .. } => counts.quarantined += 1,
                    Outcome::NotDicom => counts.not_dicom += 1,
                    Outcome::Skipped { .. } => counts.skipped += 1,
                }
                if matches!(
                    outcome,
                    Outcome::Written { .. } | Outcome::Review { .. } | Outcome::AlreadyDone { .. }
                ) {
                    counts.bytes_in += size;
                }
                files.push(FileResult {
                    input: Phi::new(match input {
                        Input::Local(p) => p.display().to_string(),
                        Input::Key(k) => k.clone(),
                    }),
                    outcome,
                    pixels: px,
                    transcoded: None,
                });
            }
            done += chunk.len();
            tick(done, total);
        }
        let s = crate::outmark::Settings::of(self.policy, None);
        Ok(Report {
            notice: "SITE-LOCAL: this report names input files, whose paths can identify patients. Do not release it with the output.",
            veil_version: env!("CARGO_PKG_VERSION"),
            options: s.options,
            recipe: s.recipe,
            key_id: s.key_id,
            counts,
            named_problems: Vec::new(),
            seconds: started.elapsed().as_secs_f64(),
            files,
            temporaries_removed: 0,
        })
    }

    /// De-identifies a chunk on `jobs` threads; results in input order.
    #[allow(clippy::type_complexity)]
    fn deid_chunk(
        &self,
        chunk: &[(Input, u64)],
        opts: &ObjectOptions,
    ) -> Result<Vec<(ObjectResult, Option<crate::PixelReport>)>, ObjectError> {
        let slots: Vec<Mutex<Option<Result<ObjectResult, ObjectError>>>> =
            chunk.iter().map(|_| Mutex::new(None)).collect();
        let next = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..self.jobs.clamp(1, chunk.len().max(1)) {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some((input, _)) = chunk.get(i) else {
                        break;
                    };
                    let r = self
                        .inputs
                        .read(input)
                        .map(|bytes| deid_object(self.policy, bytes, opts));
                    *slots[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
                });
            }
        });
        slots
            .into_iter()
            .map(|m| {
                let r = m
                    .into_inner()
                    .unwrap_or_else(|e| e.into_inner())
                    .unwrap_or(Err(ObjectError::Location {
                        field: "input",
                        reason: "was not processed",
                    }))?;
                let pixels = r.pixels.clone();
                Ok((r, pixels))
            })
            .collect()
    }

    /// Applies the rules across inputs to one result, in input order: the
    /// first input of an instance is released (its output still to be
    /// put), a later one is a duplicate. No I/O.
    fn decide(&self, r: ObjectResult, claimed: &mut HashSet<String>) -> Settled<'_> {
        let (name, bytes) = match (r.name, r.output) {
            (Some(n), Some(b)) => (n, b),
            _ => return Settled::Done(stopped(r.outcome)),
        };
        let (root, released) = match &r.outcome {
            ObjectOutcome::Written => (
                self.out,
                Outcome::Written {
                    output: name.clone(),
                },
            ),
            ObjectOutcome::Review { reason } => (
                self.review,
                Outcome::Review {
                    output: name.clone(),
                    reason: reason.clone(),
                },
            ),
            other => return Settled::Done(stopped(other.clone())),
        };
        if !claimed.insert(name.clone()) {
            return Settled::Done(Outcome::DuplicateInstance { output: name });
        }
        Settled::Put {
            root,
            name,
            bytes,
            released,
        }
    }

    /// Puts a chunk's released outputs, many at once (each a HEAD, then a
    /// PUT unless an earlier run finished it): an object store answers
    /// requests in parallel, and the names are distinct once decided, so
    /// the order of the writes does not matter. Outcomes in input order.
    fn put_all(&self, settled: Vec<Settled<'_>>) -> Result<Vec<Outcome>, ObjectError> {
        let slots: Vec<Mutex<Option<Settled<'_>>>> =
            settled.into_iter().map(|s| Mutex::new(Some(s))).collect();
        let next = std::sync::atomic::AtomicUsize::new(0);
        let failed: Mutex<Option<ObjectError>> = Mutex::new(None);
        let threads = (self.jobs.max(1) * PUTS_PER_JOB).min(slots.len().max(1));
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(slot) = slots.get(i) else { break };
                    let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
                    let Some(Settled::Put {
                        root,
                        name,
                        bytes,
                        released,
                    }) = slot.take()
                    else {
                        continue;
                    };
                    let done = match root.exists(&name) {
                        Ok(true) => Ok(Outcome::AlreadyDone { output: name }),
                        Ok(false) => root.write(&name, &bytes).map(|()| released),
                        Err(e) => Err(e),
                    };
                    match done {
                        Ok(o) => *slot = Some(Settled::Done(o)),
                        Err(e) => {
                            failed
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .get_or_insert(e);
                        }
                    }
                });
            }
        });
        if let Some(e) = failed.into_inner().unwrap_or_else(|e| e.into_inner()) {
            return Err(e);
        }
        Ok(slots
            .into_iter()
            .map(
                |m| match m.into_inner().unwrap_or_else(|e| e.into_inner()) {
                    Some(Settled::Done(o)) => o,
                    // every Put became Done, or the run stopped above
                    _ => Outcome::NotDicom,
                },
            )
            .collect())
    }
}

/// Concurrent puts per job: they wait on the network, not the CPU.
const PUTS_PER_JOB: usize = 4;

/// A result after the rules across inputs.
enum Settled<'a> {
    /// Final.
    Done(Outcome),
    /// Released: to be written to `root` unless it is there already.
    Put {
        root: &'a Root,
        name: String,
        bytes: Vec<u8>,
        released: Outcome,
    },
}

/// The batch's outcome of an object that is not written.
fn stopped(o: ObjectOutcome) -> Outcome {
    match o {
        ObjectOutcome::Quarantined { reason } => Outcome::Quarantined { reason },
        // written or review without an output cannot happen; not DICOM
        _ => Outcome::NotDicom,
    }
}

/// Claims an OUT in object storage (or a local one reached this way) for
/// `settings`, as [`crate::outmark::claim`] does a local folder: writes
/// the marker when there is none, refuses another key, recipe or options
/// unless `force_new_key`. Objects have no lock: two runs claiming a new
/// OUT at once with different settings could both pass; the marker then
/// holds the last.
pub fn claim(
    out: &Root,
    settings: &crate::outmark::Settings,
    force_new_key: bool,
) -> Result<(), String> {
    let existing = match out.read(veil_io::OUT_MARKER).map_err(|e| e.to_string())? {
        Some(b) => Some(crate::outmark::parse(&b, "OUT").map_err(|e| e.to_string())?),
        None => None,
    };
    if let Some(json) = crate::outmark::claimed(existing, "OUT", settings, force_new_key)
        .map_err(|e| e.to_string())?
    {
        out.write(veil_io::OUT_MARKER, &json)
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Adds the objects `held` ((name, reason)) to the review index of
/// `review`, for `out` (named `out_name` in it: a local OUT by its
/// absolute path, as the local batch records it, else its URI).
pub fn record_review<'a>(
    review: &Root,
    out_name: std::path::PathBuf,
    settings: &crate::outmark::Settings,
    held: impl Iterator<Item = (&'a String, &'a String)>,
) -> Result<(), String> {
    let mut held = held.peekable();
    if held.peek().is_none() {
        return Ok(());
    }
    let existing = match review
        .read(veil_io::REVIEW_INDEX)
        .map_err(|e| e.to_string())?
    {
        Some(b) => Some(
            serde_json::from_slice(&b)
                .map_err(|_| "the review folder's index is not a Veil review index".to_string())?,
        ),
        None => None,
    };
    let index =
        crate::review::with_held(existing, out_name, &settings.key_id, &settings.recipe, held)
            .map_err(|e| e.to_string())?;
    let json = serde_json::to_vec_pretty(&index).map_err(|e| e.to_string())?;
    review
        .write(veil_io::REVIEW_INDEX, &json)
        .map_err(|e| e.to_string())
}
