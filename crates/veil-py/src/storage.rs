//! Inputs and output roots from Python, local or `s3://bucket/prefix`
//! ([`veil_io::place`]): how the Spark job's executors read and write
//! through Veil (Spark here cannot reach `s3a://`), with the same rules as
//! `veil deid`: one input order, outputs that appear only complete, the
//! OUT marker and the review index.

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::PyBytes;
use veil_io::place::{Input, Inputs as PlaceInputs, Root as PlaceRoot};

use crate::{Policy, VeilError};

fn err(e: veil_io::objects::ObjectError) -> PyErr {
    // the operation and the kind of failure: never a key or path
    VeilError::new_err(e.to_string())
}

/// Inputs to read: a local file or folder, or `s3://bucket/prefix`
/// (credentials and endpoint from the environment: AWS_ACCESS_KEY_ID,
/// AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL).
#[pyclass(frozen, module = "veil._veil")]
pub(crate) struct Inputs {
    inner: PlaceInputs,
}

#[pymethods]
impl Inputs {
    #[new]
    fn new(py: Python<'_>, location: String) -> PyResult<Inputs> {
        let inner = py
            .allow_threads(|| PlaceInputs::open(&location))
            .map_err(err)?;
        Ok(Inputs { inner })
    }

    /// Every input as (name, size), in `veil deid`'s order: a local path,
    /// or an object key relative to the prefix. Bookkeeping files
    /// (`.veil-out.json`, `.veil-review.json`) are left out.
    fn list(&self, py: Python<'_>) -> PyResult<Vec<(String, u64)>> {
        let list = py.allow_threads(|| self.inner.list()).map_err(err)?;
        Ok(list
            .into_iter()
            .map(|(i, n)| {
                let name = match i {
                    Input::Local(p) => p.to_string_lossy().into_owned(),
                    Input::Key(k) => k,
                };
                (name, n)
            })
            .collect())
    }

    /// The bytes of the input `name` (as `list` gives it).
    fn read<'py>(&self, py: Python<'py>, name: String) -> PyResult<Bound<'py, PyBytes>> {
        let input = match &self.inner {
            PlaceInputs::Local(_) => Input::Local(PathBuf::from(name)),
            PlaceInputs::S3(_) => Input::Key(name),
        };
        let b = py.allow_threads(|| self.inner.read(&input)).map_err(err)?;
        Ok(PyBytes::new(py, &b))
    }
}

/// An output root (OUT or a review folder): a local folder or
/// `s3://bucket/prefix`. Names are Veil's relative output names.
#[pyclass(frozen, module = "veil._veil")]
pub(crate) struct Root {
    inner: PlaceRoot,
    /// As given: OUT's name in the review index and in errors.
    location: String,
}

#[pymethods]
impl Root {
    #[new]
    fn new(py: Python<'_>, location: String) -> PyResult<Root> {
        let inner = py
            .allow_threads(|| PlaceRoot::open(&location))
            .map_err(err)?;
        Ok(Root { inner, location })
    }

    /// Writes `name` so that it appears only complete. `durable=False`
    /// leaves out the fsyncs of a local root: call `sync()` after a
    /// batch of writes (one journal commit for all of them).
    #[pyo3(signature = (name, data, durable=true))]
    fn write(
        &self,
        py: Python<'_>,
        name: String,
        data: PyBackedBytes,
        durable: bool,
    ) -> PyResult<()> {
        py.allow_threads(|| {
            if durable {
                self.inner.write(&name, &data)
            } else {
                self.inner.write_deferred(&name, &data)
            }
        })
        .map_err(err)
    }

    /// Makes the writes and renames done with `durable=False` durable (a
    /// local root's file system synced once; nothing for S3).
    fn sync(&self, py: Python<'_>) -> PyResult<()> {
        py.allow_threads(|| self.inner.sync()).map_err(err)
    }

    /// Whether `name` exists.
    fn exists(&self, py: Python<'_>, name: String) -> PyResult<bool> {
        py.allow_threads(|| self.inner.exists(&name)).map_err(err)
    }

    /// The bytes of `name`, or None.
    fn read<'py>(&self, py: Python<'py>, name: String) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let b = py.allow_threads(|| self.inner.read(&name)).map_err(err)?;
        Ok(b.map(|b| PyBytes::new(py, &b)))
    }

    /// Moves `src` to `dst` within the root; `dst` appears only complete.
    /// `durable=False`: without the folder's fsync (see `sync`).
    #[pyo3(signature = (src, dst, durable=true))]
    fn rename(&self, py: Python<'_>, src: String, dst: String, durable: bool) -> PyResult<()> {
        py.allow_threads(|| {
            if durable {
                self.inner.rename(&src, &dst)
            } else {
                self.inner.rename_deferred(&src, &dst)
            }
        })
        .map_err(err)
    }

    /// Removes `name` (nothing when it does not exist).
    fn remove(&self, py: Python<'_>, name: String) -> PyResult<()> {
        py.allow_threads(|| self.inner.remove(&name)).map_err(err)
    }

    /// Claims this OUT for `policy` as `veil deid` does: writes the OUT
    /// marker (`.veil-out.json`: key id, recipe and its SHA-256, options)
    /// when there is none, and refuses an OUT written with another key,
    /// recipe or options unless `force_new_key`.
    #[pyo3(signature = (policy, force_new_key=false))]
    fn claim(&self, py: Python<'_>, policy: &Policy, force_new_key: bool) -> PyResult<()> {
        let settings = policy.settings();
        py.allow_threads(|| {
            veil_pipeline::places::claim(&self.inner, &settings, force_new_key)
                .map_err(VeilError::new_err)
        })
    }

    /// Adds the objects `held` ((name, reason) pairs) to this review
    /// folder's index (`.veil-review.json`), as `veil deid` records what
    /// it sends to review for `out` (another Root); refused when the
    /// index belongs to another OUT or key.
    fn record_review(
        &self,
        py: Python<'_>,
        out: &Root,
        policy: &Policy,
        held: Vec<(String, String)>,
    ) -> PyResult<()> {
        let settings = policy.settings();
        py.allow_threads(|| -> PyResult<()> {
            // a local OUT by its absolute path, as `veil deid` records it
            let out_name = match &out.inner {
                PlaceRoot::Local(p) => std::path::absolute(p)
                    .map_err(|e| VeilError::new_err(format!("review index: {:?}", e.kind())))?,
                PlaceRoot::S3(_) => PathBuf::from(&out.location),
            };
            veil_pipeline::places::record_review(
                &self.inner,
                out_name,
                &settings,
                held.iter().map(|(a, b)| (a, b)),
            )
            .map_err(VeilError::new_err)
        })
    }

    /// Writes this OUT's `DICOMDIR` for the outputs `names` (relative
    /// names, as `deid_bytes(..., dicomdir=True)` gave them), from their
    /// headers, as `veil deid --dicomdir` writes it.
    fn write_dicomdir(&self, py: Python<'_>, policy: &Policy, names: Vec<String>) -> PyResult<()> {
        let policy = std::sync::Arc::clone(&policy.policy);
        py.allow_threads(|| -> PyResult<()> {
            let mut outputs = Vec::with_capacity(names.len());
            for n in names {
                if let Some(b) = self.inner.read(&n).map_err(err)? {
                    outputs.push((n, b));
                }
            }
            let bytes = veil_pipeline::dicomdir::encode(&policy, outputs)
                .map_err(|e| VeilError::new_err(format!("DICOMDIR: {e}")))?;
            self.inner.write("DICOMDIR", &bytes).map_err(err)
        })
    }

    fn __repr__(&self) -> String {
        // the location can name a study: not shown
        format!("Root(s3={})", self.inner.is_s3())
    }
}
