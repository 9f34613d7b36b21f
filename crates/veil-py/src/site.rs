//! `veil.Site`: `veil release` from Python, so that Spark executors (or any
//! worker) can release for a recipient and append their decisions to the
//! site's ledger, shared by every process when it lives in PostgreSQL.
//!
//! Why a whole release and not a per-object call: consent is decided per
//! patient-study, the study is verified as a whole before it is logged,
//! and each decision is one ledger entry. [`veil_release::Site`] does all
//! of that; this is a thin shell over it, with the same OUT lock and the
//! same verifier as the CLI.

use std::path::PathBuf;
use std::sync::Mutex;

use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use veil_core::Tag;

use crate::VeilError;

pyo3::create_exception!(
    _veil,
    SiteError,
    VeilError,
    "The site cannot be opened or the release cannot run (keys, store, recipient, purpose, OUT)."
);

/// A Veil site: `$VEIL_HOME` (its keys) and its store (`$VEIL_DB_URL`, a
/// PostgreSQL URL, or the SQLite store in the home). Opening it sets up
/// nothing: the keys and the store must exist (`veil init`).
#[pyclass(frozen, module = "veil._veil")]
pub(crate) struct Site {
    inner: Mutex<veil_release::Site>,
}

fn site_err(e: impl std::fmt::Display) -> PyErr {
    SiteError::new_err(e.to_string())
}

#[pymethods]
impl Site {
    /// Opens the site as `veil` does: `home` defaults to `$VEIL_HOME`,
    /// `db` to `$VEIL_DB_URL` (else the SQLite store in the home).
    #[new]
    #[pyo3(signature = (home=None, db=None))]
    fn new(py: Python<'_>, home: Option<PathBuf>, db: Option<String>) -> PyResult<Site> {
        let db = db.or_else(|| std::env::var("VEIL_DB_URL").ok());
        let home = home.unwrap_or_else(veil_store::default_home);
        let site = py
            .allow_threads(|| {
                veil_store::secure_home(&home).map_err(|e| e.to_string())?;
                veil_release::Site::open(db.as_deref(), &home).map_err(|e| e.to_string())
            })
            .map_err(site_err)?;
        Ok(Site {
            inner: Mutex::new(site),
        })
    }

    /// `veil release --json`: decides each patient-study of `inputs`
    /// (local files or folders) for `recipient` and `purpose` under
    /// consent, de-identifies with the recipient's recipe and key,
    /// verifies each study before it is logged, logs every decision and
    /// publishes into `out` (new or empty; locked as `veil release` locks
    /// it). Returns the summary as a dict (`release_id`, `studies`,
    /// `released`, `refused` by reason, `ledger_positions`, `exit_code`,
    /// ...). Releases the GIL.
    #[pyo3(signature = (recipient, purpose, inputs, out, operator=None, jobs=1))]
    #[allow(clippy::too_many_arguments)] // the CLI's flags, one by one
    fn release<'py>(
        &self,
        py: Python<'py>,
        recipient: String,
        purpose: String,
        inputs: Vec<PathBuf>,
        out: PathBuf,
        operator: Option<String>,
        jobs: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        let jobs = jobs.max(1);
        let req = veil_release::ReleaseRequest {
            recipient,
            purpose,
            inputs,
            out,
            operator,
            jobs,
        };
        self.call(py, |site| {
            let _lock = veil_io::lock::OutLock::acquire(&req.out).map_err(site_err)?;
            let verifier = |root: &std::path::Path, sources: &[PathBuf], files: &[PathBuf]| {
                veil_release::VerifyOutcome::from_check(veil_verify::set::release_check(
                    root, sources, files, jobs,
                ))
            };
            let sum = site
                .release_with(&req, Some(&verifier), &|_, _| {})
                .map_err(site_err)?;
            let mut v = serde_json::to_value(&sum).map_err(site_err)?;
            v["exit_code"] = sum.exit_code().into();
            Ok(v)
        })
    }

    /// `veil release --dry-run --json`: the same checks and decisions, as
    /// counts per reason, without de-identifying, writing or logging. With
    /// no inputs it only checks the recipient and purpose. Releases the GIL.
    #[pyo3(signature = (recipient, purpose, inputs=Vec::new()))]
    fn dry_run<'py>(
        &self,
        py: Python<'py>,
        recipient: String,
        purpose: String,
        inputs: Vec<PathBuf>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let req = veil_release::ReleaseRequest {
            recipient,
            purpose,
            inputs,
            out: PathBuf::new(),
            operator: None,
            jobs: 1,
        };
        self.call(py, |site| {
            let d = site.release_dry_run(&req).map_err(site_err)?;
            serde_json::to_value(&d).map_err(site_err)
        })
    }

    fn __repr__(&self) -> String {
        "Site(...)".into()
    }
}

impl Site {
    /// Runs `f` on the site without the GIL; its JSON value becomes a
    /// Python object.
    fn call<'py>(
        &self,
        py: Python<'py>,
        f: impl FnOnce(&mut veil_release::Site) -> PyResult<serde_json::Value> + Send,
    ) -> PyResult<Bound<'py, PyAny>> {
        let json = py.allow_threads(|| -> PyResult<String> {
            let mut site = self
                .inner
                .lock()
                .map_err(|_| SiteError::new_err("the site was poisoned by a failed call"))?;
            serde_json::to_string(&f(&mut site)?).map_err(site_err)
        })?;
        py.import("json")?.call_method1("loads", (json,))
    }
}

/// A keyed digest of the object's Study Instance UID, for grouping the
/// inputs of one study on one worker (as `veil release` groups them)
/// without moving the UID itself around a cluster. `salt` (32 bytes) is
/// the job's own random key, so the digest links nothing outside the job.
/// Releases the GIL.
#[pyfunction]
pub(crate) fn study_group(
    py: Python<'_>,
    data: PyBackedBytes,
    salt: PyBackedBytes,
) -> PyResult<String> {
    let salt = salt_of(salt)?;
    py.allow_threads(move || {
        let f = veil_io::read_bytes(data.to_vec()).map_err(|e| crate::not_dicom(&e.reason))?;
        Ok(group_digest(salt, "study-group", &f, Tag(0x0020, 0x000D)))
    })
}

/// For the defacing stage (`clean-recognizable-visual-features`): a keyed
/// digest of the Series Instance UID of a CT or MR object, which
/// `veil deid` defaces series by series; None for any other object. The
/// salt as for [`study_group`]. Releases the GIL.
#[pyfunction]
pub(crate) fn series_group(
    py: Python<'_>,
    data: PyBackedBytes,
    salt: PyBackedBytes,
) -> PyResult<Option<String>> {
    let salt = salt_of(salt)?;
    py.allow_threads(move || {
        let f = veil_io::read_bytes(data.to_vec()).map_err(|e| crate::not_dicom(&e.reason))?;
        Ok(veil_pipeline::deface::is_volume_modality(&f.dataset)
            .then(|| group_digest(salt, "series-group", &f, Tag(0x0020, 0x000E))))
    })
}

fn salt_of(salt: PyBackedBytes) -> PyResult<[u8; 32]> {
    <[u8; 32]>::try_from(&*salt).map_err(|_| VeilError::new_err("the salt must be 32 bytes"))
}

/// HMAC of one UID of the object under the job's salt, hex.
fn group_digest(salt: [u8; 32], label: &str, f: &veil_io::DicomFile, tag: Tag) -> String {
    let uid = f.dataset.ascii(tag).unwrap_or_default();
    let mac = veil_deid::Key::from_bytes(salt).mac(label, uid.as_bytes());
    mac.iter().map(|b| format!("{b:02x}")).collect()
}
