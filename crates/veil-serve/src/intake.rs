//! Received instances into the gateway's durable intake, from both
//! network layers: the DIMSE C-STORE SCP (route by called AE) and the
//! STOW-RS server (route by path segment or header).
//!
//! Why a pool of intakes: an [`Intake`] owns a store connection and is not
//! shared between threads; each association and each STOW-RS request runs
//! on a thread of its own, and serializing them all on one intake would
//! make every sender wait for every other's fsync. A thread takes an idle
//! intake (or opens one) and puts it back after the instance is durable.

use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use veil_core::Phi;
use veil_dicomweb::{FailureReason, InstanceSink, Metrics, ReceivedInstance};
use veil_dimse::{StoreHandler, StoreRefusal, StoreRequest};
use veil_gateway::{Config, Error, Intake, Receipt, SystemClock};
use veil_release::Site;

/// Intakes for the network threads, each with its own store connection.
pub struct IntakePool {
    cfg: Config,
    db: Option<String>,
    home: PathBuf,
    idle: Mutex<Vec<Intake>>,
}

impl IntakePool {
    /// A pool opening intakes on the store `db` (else `$VEIL_HOME`'s).
    pub fn new(cfg: Config, db: Option<String>, home: PathBuf) -> IntakePool {
        IntakePool {
            cfg,
            db,
            home,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Runs `f` on an intake; returns once the instance is durable (or
    /// refused). An intake whose store failed is not reused: the next
    /// instance opens a fresh connection.
    pub fn with<T>(&self, f: impl FnOnce(&mut Intake) -> Result<T, Error>) -> Result<T, Error> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut intake = match idle {
            Some(i) => i,
            None => Intake::open(
                self.cfg.clone(),
                Site::open(self.db.as_deref(), &self.home)?,
                Box::new(SystemClock),
            )?,
        };
        let r = f(&mut intake);
        if !matches!(r, Err(Error::Store(_))) {
            self.idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(intake);
        }
        r
    }
}

/// The STOW-RS Failure Reason (and, being the same codes, the C-STORE
/// status) for an intake error: the sender retries a failure of ours
/// (disk, store) and does not resend what can never be accepted.
pub fn failure_reason(e: &Error) -> FailureReason {
    match e {
        Error::Refused(_) => FailureReason::CannotUnderstand,
        Error::UnknownRoute(_) => FailureReason::NotAuthorized,
        Error::Io {
            kind: std::io::ErrorKind::StorageFull,
            ..
        }
        | Error::Busy(_) => FailureReason::OutOfResources,
        _ => FailureReason::ProcessingFailure,
    }
}

fn logged(route: &str, r: Result<Receipt, Error>) -> Result<Receipt, FailureReason> {
    r.map_err(|e| {
        let reason = failure_reason(&e);
        // the error names kinds and routes, never a value or a path
        tracing::warn!(route, error = %e, reason = reason.label(), "intake: instance refused");
        reason
    })
}

/// The C-STORE SCP's handler: route by called AE, spool, then success.
pub struct DimseIntake {
    /// The intakes.
    pub pool: Arc<IntakePool>,
    /// Counts received and refused instances.
    pub metrics: Arc<Metrics>,
}

impl StoreHandler for DimseIntake {
    fn store(&self, req: &StoreRequest, data: &mut dyn Read) -> Result<(), StoreRefusal> {
        // the SCP only accepts associations to a route's called AE
        let Some(route) = self.pool.cfg.route_for_called_ae(&req.called_ae) else {
            return Err(StoreRefusal {
                status: FailureReason::NotAuthorized.code(),
                reason: "no route for the called AE".into(),
            });
        };
        let route = route.name.clone();
        let sop = Phi::new(req.sop_instance_uid.clone());
        // streamed into the spool: the data set is never whole in memory
        let r = self.pool.with(|i| {
            i.receive_dataset(
                &route,
                &req.sop_class_uid,
                &sop,
                &req.transfer_syntax_uid,
                data,
            )
        });
        if let Err(Error::Incomplete(kind)) = &r {
            // the peer broke off: nothing is kept, no status reaches it
            return Err(StoreRefusal::processing_failure(format!(
                "data set not received: {kind:?}"
            )));
        }
        match logged(&route, r) {
            Ok(_) => {
                self.metrics.instance_received(&route);
                Ok(())
            }
            Err(reason) => {
                self.metrics.instance_failed(&route, reason.label());
                Err(StoreRefusal {
                    status: reason.code(),
                    reason: reason.label().into(),
                })
            }
        }
    }
}

/// The STOW-RS server's sink (the server counts received and refused
/// instances itself).
pub struct WebIntake {
    /// The intakes.
    pub pool: Arc<IntakePool>,
}

impl InstanceSink for WebIntake {
    fn store(&self, route: &str, instance: ReceivedInstance) -> Result<(), FailureReason> {
        let r = self.pool.with(|i| i.receive(route, &instance.bytes));
        logged(route, r).map(|_| ())
    }
}
