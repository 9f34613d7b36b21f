//! `veil._veil`: Veil from Python, a thin shell over the library crates.
//!
//! De-identification is [`veil_pipeline::object::deid_object`], the same
//! per-object core as `veil deid`, so the output bytes are the same. Every
//! call releases the GIL while it works; [`Policy`] is immutable and shared
//! freely between threads. Exceptions name the kind of problem, never a
//! value read from a file or the key.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyDict, PyList, PyString};
use veil_core::{ProfileOption, QuarantineReason};
use veil_pipeline::object::{deid_object, ObjectOptions, ObjectOutcome, ObjectResult};

mod site;
mod storage;

create_exception!(
    _veil,
    VeilError,
    PyException,
    "Base class of Veil's errors."
);
create_exception!(
    _veil,
    KeyFileError,
    VeilError,
    "The key file cannot be used (missing, readable by group or others, not 64 hex digits)."
);
create_exception!(
    _veil,
    RecipeError,
    VeilError,
    "The recipe cannot be read or is invalid."
);
create_exception!(
    _veil,
    PolicyError,
    VeilError,
    "The policy cannot be built (unknown option, or an option this build cannot run)."
);
create_exception!(
    _veil,
    NotDicomError,
    VeilError,
    "The data is not a DICOM object Veil can parse."
);

/// A pseudonymization key. Its repr shows the key id (a hash), never the key.
#[pyclass(frozen, module = "veil._veil")]
struct Key {
    key: veil_deid::Key,
}

#[pymethods]
impl Key {
    /// Loads a key file as `veil deid --key` does: it must be readable by
    /// its owner only (mode 0600) and hold 64 hex digits.
    #[staticmethod]
    fn load(path: PathBuf) -> PyResult<Key> {
        let key = veil_deid::Key::load(&path).map_err(|e| KeyFileError::new_err(e.to_string()))?;
        Ok(Key { key })
    }

    /// The key id: a hash of the key, as reports show it.
    #[getter]
    fn id(&self) -> String {
        self.key.id()
    }

    fn __repr__(&self) -> String {
        format!("Key(id={})", self.key.id())
    }
}

/// A de-identification policy: key, recipe and PS3.15 options.
#[pyclass(frozen, module = "veil._veil")]
struct Policy {
    policy: Arc<veil_deid::Policy>,
    /// The recipe's text as given (file bytes or TOML), for the OUT
    /// marker's SHA-256; `None` for the built-in recipe.
    recipe_text: Option<Vec<u8>>,
}

impl Policy {
    /// What the OUT marker records of this policy.
    fn settings(&self) -> veil_pipeline::outmark::Settings {
        veil_pipeline::outmark::Settings::of(&self.policy, self.recipe_text.as_deref())
    }
}

/// A recipe given as a path (`str` without `=` or a newline, or a
/// `PathLike`), or as TOML text.
fn recipe_of(recipe: &Bound<'_, PyAny>) -> PyResult<(veil_rules::Recipe, Vec<u8>)> {
    let err = |e: veil_rules::RecipeError| RecipeError::new_err(e.to_string());
    let load = |path: &Path| -> PyResult<(veil_rules::Recipe, Vec<u8>)> {
        let r = veil_rules::Recipe::load(path).map_err(err)?;
        let text = std::fs::read(path).map_err(|e| {
            RecipeError::new_err(format!("recipe: cannot read the file: {:?}", e.kind()))
        })?;
        Ok((r, text))
    };
    if let Ok(s) = recipe.downcast::<PyString>() {
        let text = s.to_cow()?;
        if text.contains('\n') || text.contains('=') {
            let r = veil_rules::Recipe::parse(&text).map_err(err)?;
            return Ok((r, text.as_bytes().to_vec()));
        }
        return load(Path::new(text.as_ref()));
    }
    let path: PathBuf = recipe.extract().map_err(|_| {
        RecipeError::new_err("recipe: expected a path or TOML text (str or os.PathLike)")
    })?;
    load(&path)
}

#[pymethods]
impl Policy {
    /// Builds a policy as `veil deid --key K [--recipe R] [--option O ...]`.
    #[new]
    #[pyo3(signature = (key, recipe=None, options=Vec::new()))]
    fn new(key: &Key, recipe: Option<&Bound<'_, PyAny>>, options: Vec<String>) -> PyResult<Policy> {
        let (recipe, recipe_text) = match recipe {
            Some(r) => {
                let (r, t) = recipe_of(r)?;
                (r, Some(t))
            }
            None => (veil_rules::Recipe::default(), None),
        };
        let mut opts = Vec::new();
        for o in &options {
            let opt: ProfileOption = o.parse().map_err(|_| {
                PolicyError::new_err(format!(
                    "unknown option '{o}' (PS3.15 option names in kebab-case, as `veil deid --option`)"
                ))
            })?;
            opts.push(opt);
        }
        let policy =
            veil_deid::Policy::new(recipe, &opts, key.key.clone()).map_err(|e| match e {
                veil_deid::PolicyError::Recipe(e) => RecipeError::new_err(e.to_string()),
            })?;
        veil_pipeline::pixel_options_supported(&policy).map_err(PolicyError::new_err)?;
        Ok(Policy {
            policy: Arc::new(policy),
            recipe_text,
        })
    }

    /// The options in force (kebab-case names).
    #[getter]
    fn options(&self) -> Vec<String> {
        self.policy
            .options()
            .iter()
            .map(|o| o.name().to_string())
            .collect()
    }

    /// The key id (a hash of the key).
    #[getter]
    fn key_id(&self) -> String {
        self.policy.key_id()
    }

    /// De-identifies one object held in memory: the same output bytes and
    /// name as `veil deid` with this policy (`dicomdir`: named as with
    /// `veil deid --dicomdir`). Releases the GIL.
    #[pyo3(signature = (data, dicomdir=false))]
    fn deid_bytes(&self, py: Python<'_>, data: PyBackedBytes, dicomdir: bool) -> Result {
        let policy = Arc::clone(&self.policy);
        let opts = ObjectOptions {
            dicomdir_names: dicomdir,
        };
        let r = py.allow_threads(move || deid_object(&policy, data.to_vec(), &opts));
        Result::of(r, true)
    }

    /// De-identifies the instances of one CT or MR series held in memory,
    /// defacing the series as a volume when the policy has
    /// `clean-recognizable-visual-features`: the same bytes as `veil deid`
    /// gives those instances. One Result per input, in order. Releases the
    /// GIL.
    #[pyo3(signature = (series, dicomdir=false))]
    fn deid_series(
        &self,
        py: Python<'_>,
        series: Vec<PyBackedBytes>,
        dicomdir: bool,
    ) -> PyResult<Vec<Result>> {
        let policy = Arc::clone(&self.policy);
        let opts = ObjectOptions {
            dicomdir_names: dicomdir,
        };
        let rs = py
            .allow_threads(move || {
                let series = series.iter().map(|b| b.to_vec()).collect();
                veil_pipeline::object::deid_series(&policy, series, &opts)
            })
            .map_err(|e| {
                pyo3::exceptions::PyOSError::new_err(format!(
                    "deid_series: I/O error: {:?}",
                    e.kind()
                ))
            })?;
        Ok(rs.into_iter().map(|r| Result::of(r, true)).collect())
    }

    /// De-identifies the file `src` and writes the output to the file
    /// `dst` atomically (temporary file, fsync, rename) when its outcome
    /// is "written"; nothing is written otherwise. Returns the Result
    /// without the bytes. Releases the GIL.
    fn deid_file(&self, py: Python<'_>, src: PathBuf, dst: PathBuf) -> PyResult<Result> {
        let policy = Arc::clone(&self.policy);
        let r = py.allow_threads(move || -> std::io::Result<ObjectResult> {
            let data = std::fs::read(&src)?;
            let r = deid_object(&policy, data, &ObjectOptions::default());
            if let (ObjectOutcome::Written, Some(out)) = (&r.outcome, &r.output) {
                veil_io::atomic::write_all(&dst, out)?;
            }
            Ok(r)
        });
        // the kind of failure, not the path (paths can identify patients)
        let r = r.map_err(|e| {
            pyo3::exceptions::PyOSError::new_err(format!("deid_file: I/O error: {:?}", e.kind()))
        })?;
        Ok(Result::of(r, false))
    }

    fn __repr__(&self) -> String {
        format!(
            "Policy(key_id={}, recipe={:?}, options={:?})",
            self.policy.key_id(),
            self.policy.recipe().name,
            self.options()
        )
    }
}

/// The result of one object.
#[pyclass(frozen, module = "veil._veil")]
struct Result {
    /// The output file's bytes (outcomes "written" and "review"), else None.
    output: Option<Vec<u8>>,
    /// "written", "review", "quarantined" or "not-dicom".
    #[pyo3(get)]
    outcome: &'static str,
    /// Why it was not released (rule and kind names, never values).
    #[pyo3(get)]
    reason: Option<String>,
    /// The output's relative name, as `veil deid` names it under OUT.
    #[pyo3(get)]
    name: Option<String>,
}

impl Result {
    fn of(r: ObjectResult, with_bytes: bool) -> Result {
        Result {
            outcome: r.outcome.kind(),
            reason: r.outcome.reason(),
            name: r.name,
            output: if with_bytes { r.output } else { None },
        }
    }
}

#[pymethods]
impl Result {
    /// The output file's bytes, or None.
    #[getter]
    fn output<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        self.output.as_deref().map(|b| PyBytes::new(py, b))
    }

    fn __repr__(&self) -> String {
        format!(
            "Result(outcome={:?}, name={:?}, reason={:?}, output={})",
            self.outcome,
            self.name,
            self.reason,
            match &self.output {
                Some(b) => format!("<{} bytes>", b.len()),
                None => "None".into(),
            }
        )
    }
}

pub(crate) fn not_dicom(reason: &QuarantineReason) -> PyErr {
    NotDicomError::new_err(reason.to_string())
}

/// Verifies a de-identified object: what `veil verify` finds that fails
/// (category and place, never values). With `source`, values of the
/// source are looked for in the output too. Releases the GIL.
#[pyfunction]
#[pyo3(signature = (output, source=None))]
fn verify_bytes<'py>(
    py: Python<'py>,
    output: PyBackedBytes,
    source: Option<PyBackedBytes>,
) -> PyResult<Bound<'py, PyList>> {
    let found = py.allow_threads(move || -> PyResult<Vec<veil_verify::Finding>> {
        let src = match source {
            Some(b) => veil_io::read_bytes(b.to_vec()).map_err(|e| not_dicom(&e.reason))?,
            None => veil_io::DicomFile::in_memory(veil_io::DataSet::default()),
        };
        // the scanner reads a file: the output goes to a private temporary
        // folder, removed afterwards
        let io = |e: std::io::Error| {
            pyo3::exceptions::PyOSError::new_err(format!("verify: I/O error: {:?}", e.kind()))
        };
        let scratch = veil_io::atomic::PrivateDir::new("veil-py").map_err(io)?;
        let path = scratch.path().join("output.dcm");
        veil_io::atomic::write_private(&path, &output).map_err(io)?;
        let policy = veil_verify::VerifyPolicy::default();
        Ok(veil_verify::verify_one(&src, &path, "output.dcm", &policy))
    })?;
    let list = PyList::empty(py);
    for f in found {
        let d = PyDict::new(py);
        d.set_item("category", f.category.name())?;
        d.set_item("place", f.place.as_str())?;
        d.set_item("detector", &f.detector)?;
        list.append(d)?;
    }
    Ok(list)
}

/// What the engine would do to each element of `data` under `policy`, as
/// `veil explain --json` prints it: a dict with `options`, `review` and
/// `decisions` (each: path, keyword, vr, action, why). No values.
#[pyfunction]
fn explain<'py>(
    py: Python<'py>,
    data: PyBackedBytes,
    policy: &Policy,
) -> PyResult<Bound<'py, PyAny>> {
    let p = Arc::clone(&policy.policy);
    let json = py.allow_threads(move || -> PyResult<String> {
        let f = veil_io::read_bytes(data.to_vec()).map_err(|e| not_dicom(&e.reason))?;
        let d = veil_deid::Deidentifier::new(&p)
            .explain(&f)
            .map_err(|r| VeilError::new_err(r.to_string()))?;
        let v = serde_json::json!({
            "options": p.options().iter().map(|o| o.name()).collect::<Vec<_>>(),
            "review": d.review,
            "decisions": d.decisions,
        });
        serde_json::to_string(&v).map_err(|e| VeilError::new_err(e.to_string()))
    })?;
    py.import("json")?.call_method1("loads", (json,))
}

/// The Python module `veil._veil`.
#[pymodule]
fn _veil(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<Key>()?;
    m.add_class::<Policy>()?;
    m.add_class::<Result>()?;
    m.add_class::<storage::Inputs>()?;
    m.add_class::<storage::Root>()?;
    m.add("OUT_MARKER", veil_io::OUT_MARKER)?;
    m.add("REVIEW_INDEX", veil_io::REVIEW_INDEX)?;
    m.add_function(wrap_pyfunction!(verify_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(explain, m)?)?;
    m.add_class::<site::Site>()?;
    m.add_function(wrap_pyfunction!(site::study_group, m)?)?;
    m.add_function(wrap_pyfunction!(site::series_group, m)?)?;
    m.add("SiteError", py.get_type::<site::SiteError>())?;
    m.add("VeilError", py.get_type::<VeilError>())?;
    m.add("KeyFileError", py.get_type::<KeyFileError>())?;
    m.add("RecipeError", py.get_type::<RecipeError>())?;
    m.add("PolicyError", py.get_type::<PolicyError>())?;
    m.add("NotDicomError", py.get_type::<NotDicomError>())?;
    Ok(())
}
