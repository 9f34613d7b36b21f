//! Intake and the service's step function (see the crate documentation
//! for the crash-safety argument).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use veil_core::{Phi, Tag};
use veil_release::{Site, VerifyOutcome, Workspace};
use veil_store::queue::{QueueState as Q, QueueStudy};

use crate::spool::{random_hex, Spool};
use crate::{
    Clock, Config, ConfigError, Destination, DestinationUrl, Error, FileDestination, Route,
};

/// The operator the gateway's ledger entries name.
const OPERATOR: &str = "veil-serve";

/// What [`Intake::receive`] recorded. Once it is returned, the instance
/// is durable: the network layer sends its success status then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The queue study it joined.
    pub study_id: String,
    /// The study already held this instance (a sender's retry): the new
    /// copy was discarded, the old one stands.
    pub duplicate: bool,
}

/// Receives instances into the spool and the queue. The network layers
/// may open one per thread (each its own store connection: SQLite in WAL
/// mode and PostgreSQL both serialize the short transactions).
pub struct Intake {
    cfg: Config,
    site: Site,
    spool: Spool,
    clock: Box<dyn Clock>,
}

impl Intake {
    /// An intake over `site` (its store and its site key, which names
    /// studies and instances by keyed hashes).
    pub fn open(cfg: Config, site: Site, clock: Box<dyn Clock>) -> Result<Intake, Error> {
        let spool = Spool::open(&cfg.spool_dir(site.store.home()))?;
        Ok(Intake {
            cfg,
            site,
            spool,
            clock,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Receives one instance for `route`: `part10` is a DICOM Part 10 file
    /// (preamble, File Meta, data set; the DIMSE layer builds the meta
    /// from the presentation context). Returns only once the instance is
    /// fsynced in the spool and recorded in the queue: acknowledge it
    /// (C-STORE success, STOW-RS 200) only then. An error means nothing
    /// was kept: send a failure status.
    pub fn receive(&mut self, route: &str, part10: &[u8]) -> Result<Receipt, Error> {
        if self.cfg.route(route).is_none() {
            return Err(Error::UnknownRoute(route.to_string()));
        }
        let d = veil_io::read_bytes(part10.to_vec())
            .map_err(|_| Error::Refused("not a readable DICOM instance"))?;
        // the same reading as `veil release` (padding trimmed), so the
        // queue's study key is the ledger's study_ref
        let uid = |t: Tag| d.dataset.ascii(t).filter(|s| !s.is_empty()).map(Phi::new);
        let study = uid(Tag(0x0020, 0x000D)).ok_or(Error::Refused("no StudyInstanceUID"))?;
        let sop = uid(Tag(0x0008, 0x0018)).ok_or(Error::Refused("no SOPInstanceUID"))?;
        let study_key = self.site.study_ref(study.expose());
        let instance_key = self.site.instance_ref(&sop);
        let name = self.spool.put(part10)?;
        let now = self.clock.now();
        let r = random_hex(8).and_then(|id| {
            self.site
                .store
                .queue_receive(route, &study_key, &instance_key, &name, &id, now)
                .map_err(Error::from)
        });
        let r = match r {
            Ok(r) => r,
            Err(e) => {
                // not recorded, so not acknowledged: the sender retries
                let _ = self.spool.remove_instance(&name);
                return Err(e);
            }
        };
        let duplicate = r.already.is_some();
        if duplicate {
            self.spool.remove_instance(&name)?;
        }
        tracing::debug!(route, study = %r.study_id, duplicate, "received an instance");
        Ok(Receipt {
            study_id: r.study_id,
            duplicate,
        })
    }
}

impl Intake {
    /// Receives a data set as a C-STORE carries it (the DIMSE layer's
    /// seam): the SOP Class and Instance UIDs of the command set, the
    /// presentation context's transfer syntax, and the data set's bytes
    /// in it. The Part 10 file is built here (preamble, File Meta by
    /// `veil_io`), then [`Intake::receive`]d.
    pub fn receive_dataset(
        &mut self,
        route: &str,
        sop_class: &str,
        sop_instance: &Phi<String>,
        transfer_syntax: &str,
        dataset: &[u8],
    ) -> Result<Receipt, Error> {
        let meta = veil_io::WriteMeta {
            sop_class: sop_class.to_string(),
            sop_instance: sop_instance.expose().clone(),
        };
        let ts = veil_io::TsInfo {
            uid: transfer_syntax.to_string(),
            big_endian: false,
            deflated: false,
            encapsulated: false,
        };
        let mut part10 = veil_io::file_header(&meta, &ts)
            .map_err(|_| Error::Refused("no File Meta can be built for this instance"))?;
        part10.extend_from_slice(dataset);
        self.receive(route, &part10)
    }
}

/// What one [`Service::tick`] did: counts only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Studies that became ready (stable).
    pub ready: u64,
    /// Studies decided and released.
    pub released: usize,
    /// Studies decided and refused.
    pub refused: usize,
    /// Instances delivered.
    pub delivered_instances: usize,
    /// Studies whose every instance is delivered.
    pub delivered_studies: usize,
    /// Failed attempts (processing or delivery).
    pub failures: usize,
    /// Studies parked in `dead-letter`.
    pub dead_lettered: usize,
    /// Studies whose spool files were deleted.
    pub cleared: usize,
    /// What happened, per study and route, for metrics (`veil serve`
    /// feeds its Prometheus counters and histograms from these: the
    /// counts above have no route).
    pub events: Vec<StudyEvent>,
}

/// One study's step in a tick: its route and what happened, never its
/// identity (metrics are labelled by route only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StudyEvent {
    /// Decided and released.
    Released {
        /// The route.
        route: String,
    },
    /// Decided and refused.
    Refused {
        /// The route.
        route: String,
    },
    /// An attempt failed (it is retried, or parked).
    Failed {
        /// The route.
        route: String,
        /// A delivery failed (else the processing before the decision).
        delivery: bool,
    },
    /// Every output of the study is delivered.
    Delivered {
        /// The route.
        route: String,
        /// How long this delivery attempt took.
        took: std::time::Duration,
        /// Seconds from the study's last received instance to now.
        since_last_received: u64,
    },
}

/// The gateway's service core: intake plus the step that decides and
/// delivers. `veil serve` calls [`Service::tick`] every second or so.
pub struct Service {
    intake: Intake,
    destinations: BTreeMap<String, Box<dyn Destination>>,
    jobs: usize,
    crash_after: Option<usize>,
    /// One service per spool: two would deliver the same studies and
    /// sweep each other's fresh files. Held until dropped (the kernel
    /// drops it when the process dies, however it dies).
    _lock: veil_io::lock::OutLock,
}

/// Counts one durable step of a tick (a commit, a confirmed delivery, a
/// deletion) for [`Service::crash_after`]: `Err` once the count is spent.
fn step(left: &mut Option<usize>) -> Result<(), Error> {
    match left {
        None => Ok(()),
        Some(0) => Err(Error::Stopped),
        Some(n) => {
            *n -= 1;
            if *n == 0 {
                Err(Error::Stopped)
            } else {
                Ok(())
            }
        }
    }
}

impl Service {
    /// Opens the service: checks each route's recipient and purpose
    /// against the store (an error names the route's field), makes each
    /// route's destination (`connect` first, given the whole route since
    /// a network layer needs more than the URL, e.g. a token file; for the network layers'
    /// schemes; `file://` is built in), and recovers the spool after a
    /// crash (see [`Spool::sweep`]). Start intake only after this returns.
    pub fn open(
        cfg: Config,
        mut site: Site,
        clock: Box<dyn Clock>,
        connect: &dyn Fn(&Route) -> Option<Box<dyn Destination>>,
    ) -> Result<Service, Error> {
        let mut destinations = BTreeMap::new();
        for (i, r) in cfg.routes.iter().enumerate() {
            site.prepare_release(&r.recipient, &r.purpose, Some(OPERATOR))
                .map_err(|e| ConfigError::Field {
                    field: format!("route[{i}].recipient"),
                    message: e.to_string(),
                })?;
            let d = connect(r).or_else(|| match &r.destination {
                DestinationUrl::File { dir } => {
                    Some(Box::new(FileDestination::new(dir)) as Box<dyn Destination>)
                }
                _ => None,
            });
            let Some(d) = d else {
                return Err(ConfigError::Field {
                    field: format!("route[{i}].destination"),
                    message: "no delivery for this scheme is linked into this build".into(),
                }
                .into());
            };
            destinations.insert(r.name.clone(), d);
        }
        let intake = Intake::open(cfg, site, clock)?;
        let lock = veil_io::lock::OutLock::acquire(intake.spool.root()).map_err(|e| match e {
            veil_io::lock::LockError::Busy { holder } => Error::Busy(holder),
            veil_io::lock::LockError::Io(e) => Error::io("locking the spool")(e),
        })?;
        let mut s = Service {
            intake,
            destinations,
            jobs: 1,
            crash_after: None,
            _lock: lock,
        };
        s.recover()?;
        Ok(s)
    }

    /// Fault injection for crash tests: after `steps` more durable steps
    /// (each commit, confirmed delivery or deletion of a tick), the tick
    /// returns [`Error::Stopped`] on the spot, as if the process were
    /// killed there; the test then drops the service and opens a new one
    /// on the same store and spool. `None` (the default) never stops.
    pub fn crash_after(&mut self, steps: Option<usize>) {
        self.crash_after = steps;
    }

    /// Worker threads for de-identifying one study (default 1).
    pub fn set_jobs(&mut self, jobs: usize) {
        self.jobs = jobs.max(1);
    }

    /// The intake (one store connection shared with the step).
    pub fn intake(&mut self) -> &mut Intake {
        &mut self.intake
    }

    /// [`Intake::receive`] on the service's own intake.
    pub fn receive(&mut self, route: &str, part10: &[u8]) -> Result<Receipt, Error> {
        self.intake.receive(route, part10)
    }

    /// The site (its store holds the queue and the ledger).
    pub fn site(&mut self) -> &mut Site {
        &mut self.intake.site
    }

    /// The spool.
    pub fn spool(&self) -> &Spool {
        &self.intake.spool
    }

    /// Deletes what a crash left in the spool that no recorded study
    /// accounts for.
    fn recover(&mut self) -> Result<(), Error> {
        let store = &mut self.intake.site.store;
        let live: BTreeSet<String> = store.queue_live_spool_names()?.into_iter().collect();
        // a ready study's work folder is a decision cut short: its next
        // attempt starts afresh, so it is not kept either
        let work: BTreeSet<String> = store
            .queue_studies(&[Q::Decided, Q::Delivering, Q::DeadLetter])?
            .into_iter()
            .filter(|s| s.cleared_at.is_none())
            .map(|s| s.id)
            .collect();
        self.intake.spool.sweep(&live, &work)?;
        Ok(())
    }

    /// One step: marks stable studies ready, decides them, delivers what
    /// is due, retries, parks, and clears the spool of finished studies.
    /// An error is the store's or the spool's (the step stops where it
    /// was; the next one resumes from the committed state).
    pub fn tick(&mut self) -> Result<TickReport, Error> {
        let now = self.intake.clock.now();
        let mut rep = TickReport::default();
        let routes: Vec<(String, u64)> = self
            .intake
            .cfg
            .routes
            .iter()
            .map(|r| (r.name.clone(), r.study_stable_seconds))
            .collect();
        for (name, stable) in &routes {
            let cutoff = now.saturating_sub(i64::try_from(*stable).unwrap_or(i64::MAX));
            rep.ready += self.intake.site.store.queue_mark_ready(name, cutoff, now)?;
            step(&mut self.crash_after)?;
        }
        let due = |s: &QueueStudy| s.next_attempt_at.is_none_or(|t| t <= now);
        for s in self.studies(&[Q::Ready])? {
            if due(&s) {
                self.decide(&s, now, &mut rep)?;
            }
        }
        for s in self.studies(&[Q::Decided])? {
            let store = &mut self.intake.site.store;
            if s.decision.as_deref() == Some("released") {
                store.queue_transition(&s.id, &[Q::Decided], Q::Delivering, now)?;
                step(&mut self.crash_after)?;
            } else {
                store.queue_transition(&s.id, &[Q::Decided], Q::Refused, now)?;
                step(&mut self.crash_after)?;
                self.clear(&s, now, &mut rep)?;
            }
        }
        for s in self.studies(&[Q::Delivering])? {
            if due(&s) {
                self.deliver(&s, now, &mut rep)?;
            }
        }
        // finished before a crash cut their cleanup short
        for s in self.intake.site.store.queue_uncleared()? {
            self.clear(&s, now, &mut rep)?;
        }
        Ok(rep)
    }

    fn studies(&mut self, states: &[Q]) -> Result<Vec<QueueStudy>, Error> {
        let routes: BTreeSet<&str> = self
            .intake
            .cfg
            .routes
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        let all = self.intake.site.store.queue_studies(states)?;
        let (mine, other): (Vec<_>, Vec<_>) = all
            .into_iter()
            .partition(|s| routes.contains(s.route.as_str()));
        if !other.is_empty() {
            // kept for `veil queue`: a route removed from veil.toml
            tracing::warn!(
                studies = other.len(),
                "queue: studies of routes no longer configured are left as they are"
            );
        }
        Ok(mine)
    }

    /// Decides one ready study and commits the decision with its ledger
    /// entries. A failure before the commit counts as an attempt.
    fn decide(&mut self, s: &QueueStudy, now: i64, rep: &mut TickReport) -> Result<(), Error> {
        let Some(route) = self.intake.cfg.route(&s.route).cloned() else {
            return Ok(());
        };
        let spool = self.intake.spool.clone();
        // a partial folder of an attempt cut short: start afresh
        spool.remove_work(&s.id)?;
        let work = spool.work(&s.id);
        let (out, review) = (work.join("out"), work.join("review"));
        for d in [&work, &out, &review] {
            veil_store::private_dir(d).map_err(Error::io("creating a study's work folder"))?;
        }
        let files: Vec<PathBuf> = self
            .intake
            .site
            .store
            .queue_instances(&s.id)?
            .iter()
            .map(|(_, name)| spool.instance(name))
            .collect();
        let jobs = self.jobs;
        let site = &mut self.intake.site;
        let decided = (|| -> Result<_, Error> {
            let prep = site.prepare_release(&route.recipient, &route.purpose, Some(OPERATOR))?;
            let verifier = |root: &std::path::Path, src: &[PathBuf], outs: &[PathBuf]| {
                VerifyOutcome::from_check(veil_verify::set::release_check(root, src, outs, jobs))
            };
            let ds = site.decide_study(
                &prep,
                &files,
                &Workspace {
                    staged_root: &out,
                    review: &review,
                    jobs,
                    verifier: Some(&verifier),
                },
            )?;
            // the outputs are on disk before the decision that points at
            // them commits
            veil_io::atomic::sync_filesystem(&work)
                .map_err(Error::io("syncing a study's outputs"))?;
            Ok(ds)
        })();
        let ds = match decided {
            Ok(ds) if !ds.is_empty() => ds,
            Ok(_) => {
                return self.failed(s, "processing: no readable instance", false, now, rep);
            }
            Err(e) => {
                let why = format!("processing: {e}");
                return self.failed(s, &why, false, now, rep);
            }
        };
        let outputs: Vec<String> = ds.iter().flat_map(|d| d.outputs.clone()).collect();
        let released = !outputs.is_empty();
        let held: usize = ds.iter().map(|d| d.held_for_review).sum();
        let reason = if released {
            // the gateway has no review queue yet: what the pipeline held
            // is not delivered, and is deleted with the study; say so
            (held > 0).then(|| {
                tracing::warn!(route = %s.route, study = %s.id, held, "queue: instances held for review are not delivered");
                format!(
                    "{} held for review, not delivered",
                    veil_core::count(held, "instance", "instances")
                )
            })
        } else {
            Some(
                ds.iter()
                    .map(|d| d.entry.reason.clone())
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        };
        let entries = ds.into_iter().map(|d| d.entry).collect();
        let id = s.id.clone();
        self.intake.site.log_decisions(entries, |st, pos| {
            st.queue_decide(&id, released, reason.as_deref(), pos, &outputs, now)
        })?;
        step(&mut self.crash_after)?;
        let route = s.route.clone();
        if released {
            rep.released += 1;
            rep.events.push(StudyEvent::Released { route });
        } else {
            rep.refused += 1;
            rep.events.push(StudyEvent::Refused { route });
        }
        tracing::info!(
            route = %s.route,
            study = %s.id,
            released,
            instances = outputs.len(),
            "queue: study decided and logged"
        );
        Ok(())
    }

    /// Delivers the outputs of one study not yet marked delivered.
    fn deliver(&mut self, s: &QueueStudy, now: i64, rep: &mut TickReport) -> Result<(), Error> {
        let Some(dest) = self.destinations.get_mut(&s.route) else {
            return Ok(());
        };
        let started = std::time::Instant::now();
        let store = &mut self.intake.site.store;
        let out = self.intake.spool.work(&s.id).join("out");
        let pending: Vec<String> = store
            .queue_outputs(&s.id)?
            .into_iter()
            .filter(|(_, done)| !done)
            .map(|(n, _)| n)
            .collect();
        let mut failure = dest.begin_study().err();
        if failure.is_none() {
            for name in &pending {
                if let Err(e) = dest.deliver(name, &out.join(name)) {
                    failure = Some(e);
                    break;
                }
                step(&mut self.crash_after)?;
                // after the destination confirmed it, never before: a
                // crash in between repeats this one (idempotent by name)
                store.queue_output_delivered(&s.id, name, now)?;
                step(&mut self.crash_after)?;
                rep.delivered_instances += 1;
            }
            if let Err(e) = dest.end_study() {
                failure.get_or_insert(e);
            }
        } else {
            let _ = dest.end_study();
        }
        if let Some(e) = failure {
            let why = format!("delivery: {e}");
            return self.failed(s, &why, true, now, rep);
        }
        store.queue_transition(&s.id, &[Q::Delivering], Q::Delivered, now)?;
        step(&mut self.crash_after)?;
        rep.delivered_studies += 1;
        rep.events.push(StudyEvent::Delivered {
            route: s.route.clone(),
            took: started.elapsed(),
            since_last_received: u64::try_from(now.saturating_sub(s.last_received_at)).unwrap_or(0),
        });
        tracing::info!(route = %s.route, study = %s.id, "queue: study delivered");
        self.clear(s, now, rep)
    }

    /// A failed attempt: retried after a backoff, or parked.
    fn failed(
        &mut self,
        s: &QueueStudy,
        why: &str,
        delivery: bool,
        now: i64,
        rep: &mut TickReport,
    ) -> Result<(), Error> {
        let attempts = u32::try_from(s.attempts + 1).unwrap_or(u32::MAX);
        let next = self.intake.cfg.queue.next_attempt(attempts, now);
        self.intake
            .site
            .store
            .queue_attempt_failed(&s.id, why, next, now)?;
        rep.failures += 1;
        rep.events.push(StudyEvent::Failed {
            route: s.route.clone(),
            delivery,
        });
        if next.is_none() {
            rep.dead_lettered += 1;
        }
        tracing::warn!(
            route = %s.route,
            study = %s.id,
            attempts,
            parked = next.is_none(),
            "queue: attempt failed"
        );
        Ok(())
    }

    fn clear(&mut self, s: &QueueStudy, now: i64, rep: &mut TickReport) -> Result<(), Error> {
        crate::queue::clear(&mut self.intake.site.store, &self.intake.spool, &s.id, now)?;
        step(&mut self.crash_after)?;
        rep.cleared += 1;
        Ok(())
    }
}
