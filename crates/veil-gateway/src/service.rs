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
        self.receive_from(route, part10, &mut std::io::empty())
    }

    /// Receives a data set as a C-STORE carries it (the DIMSE layer's
    /// seam): the SOP Class and Instance UIDs of the command set, the
    /// presentation context's transfer syntax, and the data set's bytes
    /// as they arrive (streamed into the spool, never whole in memory).
    /// The Part 10 file's preamble and File Meta are built here
    /// (`veil_io`). Acknowledge only on `Ok`, as for [`Intake::receive`].
    pub fn receive_dataset(
        &mut self,
        route: &str,
        sop_class: &str,
        sop_instance: &Phi<String>,
        transfer_syntax: &str,
        dataset: &mut dyn std::io::Read,
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
        let head = veil_io::file_header(&meta, &ts)
            .map_err(|_| Error::Refused("no File Meta can be built for this instance"))?;
        self.receive_from(route, &head, dataset)
    }

    /// The one intake path: spool `head` then `rest` durably, read the
    /// spooled file's header (bulk values stay on disk) for the study and
    /// instance, record it in the queue. What is refused or not recorded
    /// is deleted again, so it was never acknowledged.
    fn receive_from(
        &mut self,
        route: &str,
        head: &[u8],
        rest: &mut dyn std::io::Read,
    ) -> Result<Receipt, Error> {
        if self.cfg.route(route).is_none() {
            return Err(Error::UnknownRoute(route.to_string()));
        }
        let name = self.spool.put_from(head, rest)?;
        match self.admit(route, &name) {
            Ok(r) => Ok(r),
            Err(e) => {
                let _ = self.spool.remove_instance(&name);
                Err(e)
            }
        }
    }

    fn admit(&mut self, route: &str, name: &str) -> Result<Receipt, Error> {
        let d = veil_io::read(&self.spool.instance(name))
            .map_err(|_| Error::Refused("not a readable DICOM instance"))?;
        // the same reading as `veil release` (padding trimmed), so the
        // queue's study key is the ledger's study_ref
        let uid = |t: Tag| d.dataset.ascii(t).filter(|s| !s.is_empty()).map(Phi::new);
        let study = uid(Tag(0x0020, 0x000D)).ok_or(Error::Refused("no StudyInstanceUID"))?;
        let sop = uid(Tag(0x0008, 0x0018)).ok_or(Error::Refused("no SOPInstanceUID"))?;
        let study_key = self.site.study_ref(study.expose());
        let instance_key = self.site.instance_ref(&sop);
        let now = self.clock.now();
        let id = random_hex(8)?;
        // not recorded, so not acknowledged: the caller deletes the file
        // and the sender retries
        let r = self
            .site
            .store
            .queue_receive(route, &study_key, &instance_key, name, &id, now)?;
        let duplicate = r.already.is_some();
        if duplicate {
            self.spool.remove_instance(name)?;
        }
        tracing::debug!(route, study = %r.study_id, duplicate, "received an instance");
        Ok(Receipt {
            study_id: r.study_id,
            duplicate,
        })
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

impl TickReport {
    /// Adds another part of the same tick (the courier thread's).
    fn merge(&mut self, o: TickReport) {
        self.ready += o.ready;
        self.released += o.released;
        self.refused += o.refused;
        self.delivered_instances += o.delivered_instances;
        self.delivered_studies += o.delivered_studies;
        self.failures += o.failures;
        self.dead_lettered += o.dead_lettered;
        self.cleared += o.cleared;
        self.events.extend(o.events);
    }
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
    /// The thread delivering while the tick decides (see
    /// [`Service::deliver_concurrently`]).
    courier: Option<Couriers>,
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

/// Every route's destination: `connect`'s (the network layers' schemes),
/// else the built-in `file://`. An error names the route's field.
pub fn make_destinations(
    cfg: &Config,
    connect: &dyn Fn(&Route) -> Option<Box<dyn Destination>>,
) -> Result<BTreeMap<String, Box<dyn Destination>>, Error> {
    let mut destinations = BTreeMap::new();
    for (i, r) in cfg.routes.iter().enumerate() {
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
    Ok(destinations)
}

/// What one courier thread needs of its own
/// ([`Service::deliver_concurrently`]).
pub struct CourierParts {
    /// A connection to the service's store.
    pub store: veil_store::Store,
    /// Its clock (delivery times).
    pub clock: Box<dyn Clock>,
    /// A destination per route (from [`make_destinations`]): one
    /// association at a time each.
    pub destinations: BTreeMap<String, Box<dyn Destination>>,
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
        for (i, r) in cfg.routes.iter().enumerate() {
            site.prepare_release(&r.recipient, &r.purpose, Some(OPERATOR))
                .map_err(|e| ConfigError::Field {
                    field: format!("route[{i}].recipient"),
                    message: e.to_string(),
                })?;
        }
        let destinations = make_destinations(&cfg, connect)?;
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
            courier: None,
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

    /// Delivers on threads of their own, one per [`CourierParts`] (each
    /// its own store connection and destinations), while ticks decide the
    /// next studies; each thread delivers one study at a time.
    ///
    /// Why: deciding (deid, verify, ledger) is CPU work and delivering is
    /// mostly waiting on the recipient; one after the other, a study
    /// waits for both, and the gateway runs at the sum of their costs
    /// rather than the larger. Several couriers keep a recipient that
    /// stores associations in parallel busy. The crash argument is
    /// unchanged: each thread commits its own steps in the order the
    /// serial tick does, a study reaches a courier only after its decision
    /// committed, and only one courier holds a study at a time. Couriers
    /// outlive ticks (a tick never waits for a delivery); each tick
    /// collects what they finished. Fault injection
    /// ([`Service::crash_after`]) counts the steps of one thread and is
    /// for services without couriers.
    pub fn deliver_concurrently(&mut self, couriers: Vec<CourierParts>) -> Result<(), Error> {
        if self.courier.is_none() && !couriers.is_empty() {
            self.courier = Some(Couriers::start(
                couriers,
                self.intake.spool.clone(),
                self.intake.cfg.clone(),
            )?);
        }
        Ok(())
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
        let ready: Vec<QueueStudy> = self.studies(&[Q::Ready])?.into_iter().filter(due).collect();
        // decided before a crash, and due deliveries (a retry, or cut short)
        let decided = self.studies(&[Q::Decided])?;
        let delivering: Vec<QueueStudy> = self
            .studies(&[Q::Delivering])?
            .into_iter()
            .filter(due)
            .collect();
        if self.courier.is_some() {
            self.tick_concurrent(ready, decided, delivering, now, &mut rep)?;
        } else {
            for s in &ready {
                self.decide(s, now, &mut rep)?;
            }
            let mut to_deliver = Vec::new();
            for s in decided.iter().chain(&ready) {
                to_deliver.extend(self.after_decision(s, now, &mut rep)?);
            }
            let mut courier = self.own_courier();
            for s in delivering.iter().chain(&to_deliver) {
                courier.deliver(s, now, &mut rep)?;
            }
        }
        // finished before a crash cut their cleanup short (not one the
        // courier is finishing now)
        let busy = self
            .courier
            .as_ref()
            .map(|c| c.in_flight.clone())
            .unwrap_or_default();
        for s in self.intake.site.store.queue_uncleared()? {
            if busy.contains(&s.id) {
                continue;
            }
            self.own_courier().clear(&s, now, &mut rep)?;
        }
        Ok(rep)
    }

    /// A tick with a courier: collects what it finished since the last
    /// tick, hands it due deliveries it does not hold yet, then decides
    /// `ready` one study after another, handing each released study over
    /// as soon as its decision committed.
    fn tick_concurrent(
        &mut self,
        ready: Vec<QueueStudy>,
        decided: Vec<QueueStudy>,
        delivering: Vec<QueueStudy>,
        now: i64,
        rep: &mut TickReport,
    ) -> Result<(), Error> {
        let failed = self.courier.as_mut().and_then(|c| c.collect(rep));
        for s in delivering {
            self.hand_over(s);
        }
        for s in decided.iter().chain(&ready) {
            if ready.iter().any(|r| r.id == s.id) {
                self.decide(s, now, rep)?;
            }
            if let Some(d) = self.after_decision(s, now, rep)? {
                self.hand_over(d);
            }
        }
        // a delivery that could not commit (the store): its study stays
        // delivering and is handed over again at the next tick
        failed.map_or(Ok(()), Err)
    }

    /// Waits until the courier has delivered everything handed over (a
    /// graceful stop: SIGTERM drains), and returns what it did since the
    /// last tick. Without a courier there is nothing to wait for.
    pub fn drain(&mut self) -> Result<TickReport, Error> {
        let mut rep = TickReport::default();
        let Some(mut c) = self.courier.take() else {
            return Ok(rep);
        };
        c.tx.take();
        for h in std::mem::take(&mut c.handles) {
            // a set of destinations comes back: later ticks deliver
            // serially
            if let Ok(d) = h.join() {
                if self.destinations.is_empty() {
                    self.destinations = d;
                }
            }
        }
        match c.collect(&mut rep) {
            Some(e) => Err(e),
            None => Ok(rep),
        }
    }

    fn hand_over(&mut self, s: QueueStudy) {
        if let Some(c) = self.courier.as_mut() {
            c.send(s);
        }
    }

    /// After `s`'s decision committed (this tick or before a crash): a
    /// released study moves to delivery (returned, as it now stands), a
    /// refused one is finished and cleared. A study not in `decided`
    /// (its decision failed, it is retried later) is left alone.
    fn after_decision(
        &mut self,
        s: &QueueStudy,
        now: i64,
        rep: &mut TickReport,
    ) -> Result<Option<QueueStudy>, Error> {
        let store = &mut self.intake.site.store;
        let Some(s) = store.queue_study(&s.id)? else {
            return Ok(None);
        };
        if s.state != Q::Decided {
            return Ok(None);
        }
        if s.decision.as_deref() == Some("released") {
            store.queue_transition(&s.id, &[Q::Decided], Q::Delivering, now)?;
            step(&mut self.crash_after)?;
            Ok(Some(s))
        } else {
            store.queue_transition(&s.id, &[Q::Decided], Q::Refused, now)?;
            step(&mut self.crash_after)?;
            self.own_courier().clear(&s, now, rep)?;
            Ok(None)
        }
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
                return self.own_courier().failed(
                    s,
                    "processing: no readable instance",
                    false,
                    now,
                    rep,
                );
            }
            Err(e) => {
                let why = format!("processing: {e}");
                return self.own_courier().failed(s, &why, false, now, rep);
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

    /// Delivery, failures and clearing on the service's own store
    /// connection and destinations (serial ticks).
    fn own_courier(&mut self) -> Courier<'_> {
        Courier {
            store: &mut self.intake.site.store,
            spool: &self.intake.spool,
            cfg: &self.intake.cfg,
            destinations: &mut self.destinations,
            crash_after: &mut self.crash_after,
        }
    }
}

/// Delivery, failures and clearing, over one store connection: the
/// service's own (serial ticks) or a second one (a courier thread, see
/// [`Service::deliver_concurrently`]).
struct Courier<'a> {
    store: &'a mut veil_store::Store,
    spool: &'a Spool,
    cfg: &'a Config,
    destinations: &'a mut BTreeMap<String, Box<dyn Destination>>,
    crash_after: &'a mut Option<usize>,
}

impl Courier<'_> {
    /// Delivers the outputs of one study not yet marked delivered.
    fn deliver(&mut self, s: &QueueStudy, now: i64, rep: &mut TickReport) -> Result<(), Error> {
        let Some(dest) = self.destinations.get_mut(&s.route) else {
            return Ok(());
        };
        let started = std::time::Instant::now();
        let store = &mut *self.store;
        let out = self.spool.work(&s.id).join("out");
        let pending: Vec<String> = store
            .queue_outputs(&s.id)?
            .into_iter()
            .filter(|(_, done)| !done)
            .map(|(n, _)| n)
            .collect();
        let files: Vec<std::path::PathBuf> = pending.iter().map(|n| out.join(n)).collect();
        let mut failure = dest.begin_study(&files).err();
        if failure.is_none() {
            for (name, file) in pending.iter().zip(&files) {
                if let Err(e) = dest.deliver(name, file) {
                    failure = Some(e);
                    break;
                }
                step(self.crash_after)?;
                // after the destination confirmed it, never before: a
                // crash in between repeats this one (idempotent by name)
                store.queue_output_delivered(&s.id, name, now)?;
                step(self.crash_after)?;
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
        step(self.crash_after)?;
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
        let next = self.cfg.queue.next_attempt(attempts, now);
        self.store.queue_attempt_failed(&s.id, why, next, now)?;
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
        crate::queue::clear(self.store, self.spool, &s.id, now)?;
        step(self.crash_after)?;
        rep.cleared += 1;
        Ok(())
    }
}

/// The couriers on threads of their own ([`Service::deliver_concurrently`]):
/// studies go in over one channel (each taken by one courier), each comes
/// back with its part of a tick report once delivered (or failed).
struct Couriers {
    tx: Option<std::sync::mpsc::Sender<QueueStudy>>,
    done: std::sync::mpsc::Receiver<(String, Result<TickReport, Error>)>,
    /// Studies handed over and not yet collected.
    in_flight: BTreeSet<String>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Each gives its destinations back when it ends.
    handles: Vec<std::thread::JoinHandle<BTreeMap<String, Box<dyn Destination>>>>,
}

impl Couriers {
    fn start(parts: Vec<CourierParts>, spool: Spool, cfg: Config) -> Result<Couriers, Error> {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};
        let (tx, rx) = std::sync::mpsc::channel::<QueueStudy>();
        let rx = Arc::new(Mutex::new(rx));
        let (done_tx, done) = std::sync::mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::new();
        for (n, p) in parts.into_iter().enumerate() {
            let CourierParts {
                mut store,
                clock,
                mut destinations,
            } = p;
            let (rx, done_tx, stopping) = (rx.clone(), done_tx.clone(), stop.clone());
            let (spool, cfg) = (spool.clone(), cfg.clone());
            let h = std::thread::Builder::new()
                .name(format!("veil-courier-{n}"))
                .spawn(move || {
                    loop {
                        // one study at a time; the lock is held only to take it
                        let next = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        let Ok(s) = next else { break };
                        if stopping.load(Ordering::SeqCst) {
                            // shutting down: what is left stays delivering
                            // in the store, for the next start
                            break;
                        }
                        let mut none = None;
                        let mut c = Courier {
                            store: &mut store,
                            spool: &spool,
                            cfg: &cfg,
                            destinations: &mut destinations,
                            crash_after: &mut none,
                        };
                        // the study's time of delivery, not of its hand-over
                        let now = clock.now();
                        let mut rep = TickReport::default();
                        let r = c.deliver(&s, now, &mut rep).map(|()| rep);
                        if done_tx.send((s.id, r)).is_err() {
                            break;
                        }
                    }
                    destinations
                })
                .map_err(Error::io("starting a delivery thread"))?;
            handles.push(h);
        }
        Ok(Couriers {
            tx: Some(tx),
            done,
            in_flight: BTreeSet::new(),
            stop,
            handles,
        })
    }

    /// Hands `s` over unless it is already on its way.
    fn send(&mut self, s: QueueStudy) {
        if self.in_flight.contains(&s.id) {
            return;
        }
        let id = s.id.clone();
        if self.tx.as_ref().is_some_and(|tx| tx.send(s).is_ok()) {
            self.in_flight.insert(id);
        }
    }

    /// Merges what the couriers finished into `rep`; returns the first
    /// error they met (the rest of their work stands).
    fn collect(&mut self, rep: &mut TickReport) -> Option<Error> {
        let mut first = None;
        while let Ok((id, r)) = self.done.try_recv() {
            self.in_flight.remove(&id);
            match r {
                Ok(part) => rep.merge(part),
                Err(e) => {
                    first.get_or_insert(e);
                }
            }
        }
        first
    }
}

impl Drop for Couriers {
    /// Finishes the studies being delivered (an instance is never cut off
    /// halfway by us) and leaves the rest to the next start.
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.tx.take();
        for h in std::mem::take(&mut self.handles) {
            let _ = h.join();
        }
    }
}
