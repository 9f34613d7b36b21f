//! One object, in memory: the per-object core of the batch (read ->
//! de-identify -> pixel stage -> output transfer syntax -> relative name),
//! shared by [`crate::Batch`] and [`deid_object`] so both give the same
//! bytes for the same input and policy.
//!
//! What only a batch can do stays in the batch: resuming (an output
//! already in OUT), duplicate instances across inputs, `--verify`, the
//! review page of the pixel stage, DICOMDIR, and defacing, which works on
//! a whole series (Clean Recognizable Visual Features: a single CT, MR or
//! PT object goes to review with [`veil_deid::DEFACE_PENDING`] as its
//! reason, as it would in a batch without the defacing stage).

use veil_core::QuarantineReason;
use veil_deid::{pseudonym, Deidentified, Deidentifier, Policy};
use veil_io::{DicomFile, ReadError, TsInfo, WriteMeta};

use crate::pixels::{Applied, PixelReport, PixelStage};
use crate::Outcome;

/// What the defacing stage did to one object: the output's transfer
/// syntax when it changed, and what it was transcoded to when not lossless.
pub(crate) type Defaced = Option<(TsInfo, Option<String>)>;

/// The defacing stage for one object (batch only).
pub(crate) type DefaceFn<'a> = &'a mut dyn FnMut(&mut Deidentified) -> std::io::Result<Defaced>;

/// An object de-identified and ready to encode.
pub(crate) struct Core {
    /// The parsed source (bulk values are read from it when encoding).
    pub file: DicomFile,
    /// The de-identified object.
    pub d: Deidentified,
    /// What the pixel stage did, when it ran.
    pub applied: Option<Applied>,
    /// The output's transfer syntax.
    pub out_ts: TsInfo,
    /// The output's name relative to OUT (or the review folder).
    pub rel: String,
    /// The syntax a defaced object was written in instead of its own.
    pub transcoded: Option<String>,
}

/// How the core ended for one object: `T` is [`Core`] (ready to encode)
/// or [`Header`] (the core's first half, before the pixel stage).
pub(crate) enum Prepared<T = Core> {
    /// Not released: not DICOM, or quarantined.
    Stopped(Outcome),
    /// The storage failed (the defacing stage's files), not the object.
    Storage(std::io::ErrorKind),
    /// Ready for what comes next.
    Ready(Box<T>),
}

/// An object whose header is decided (and whose series' defacing has
/// been applied), before the pixel stage. Why a stop here: the output's
/// SOP Instance UID, the key a batch releases an instance by, is known
/// now, so a batch can recognize a later copy of an instance before it
/// pays for decoding and OCR (issue 21), whereas the pixel stage is the
/// one costly step and cannot change that UID.
pub(crate) struct Header {
    /// The parsed source.
    pub file: DicomFile,
    /// The de-identified object, its pixels not yet cleaned.
    pub d: Deidentified,
    defaced: Defaced,
}

/// The per-object core. `deface` runs the defacing stage on the
/// de-identified object (batch only).
pub(crate) fn prepare(
    policy: &Policy,
    deid: &Deidentifier<'_>,
    pixel_stage: Option<&PixelStage>,
    read: Result<DicomFile, ReadError>,
    deface: Option<DefaceFn<'_>>,
    dicomdir: bool,
) -> Prepared {
    match prepare_header(deid, read, deface) {
        Prepared::Ready(h) => Prepared::Ready(Box::new(h.finish(policy, pixel_stage, dicomdir))),
        Prepared::Stopped(o) => Prepared::Stopped(o),
        Prepared::Storage(k) => Prepared::Storage(k),
    }
}

/// The core's first half: read, de-identify the header, deface.
pub(crate) fn prepare_header(
    deid: &Deidentifier<'_>,
    read: Result<DicomFile, ReadError>,
    deface: Option<DefaceFn<'_>>,
) -> Prepared<Header> {
    let file = match read {
        Ok(f) => f,
        Err(e) if e.reason == QuarantineReason::NotDicom => {
            return Prepared::Stopped(Outcome::NotDicom)
        }
        Err(e) => return Prepared::Stopped(Outcome::Quarantined { reason: e.reason }),
    };
    if file.is_dicomdir() {
        let reason = QuarantineReason::Dicomdir;
        return Prepared::Stopped(Outcome::Quarantined { reason });
    }
    let mut d = match deid.run(&file) {
        Ok(d) => d,
        Err(reason) => return Prepared::Stopped(Outcome::Quarantined { reason }),
    };
    // the defacing stage replaces head CT/MR pixels with its volume's
    let mut defaced = None;
    if let Some(df) = deface {
        match df(&mut d) {
            Ok(done) => defaced = done,
            Err(e) if veil_io::atomic::is_storage_failure(e.kind()) => {
                return Prepared::Storage(e.kind())
            }
            Err(e) => {
                let detail = format!("{:?}", e.kind());
                return Prepared::Stopped(Outcome::Quarantined {
                    reason: QuarantineReason::Io { detail },
                });
            }
        }
    }
    Prepared::Ready(Box::new(Header { file, d, defaced }))
}

impl Header {
    /// The core's second half: the pixel stage, the output's transfer
    /// syntax and name. It never changes `d.sop_instance` (see [`Header`]).
    pub(crate) fn finish(
        self,
        policy: &Policy,
        pixel_stage: Option<&PixelStage>,
        dicomdir: bool,
    ) -> Core {
        let Header {
            file,
            mut d,
            defaced,
        } = self;
        // the pixel stage reads the source and changes the output's pixels
        // (not those of a defaced slice: they come from the new volume)
        let applied = match pixel_stage {
            Some(p) if d.review.is_none() && defaced.is_none() => {
                let a = p.apply(&file, &mut d, policy);
                if let Some(r) = &a.review {
                    d.review = Some(r.clone());
                }
                Some(a)
            }
            _ => None,
        };
        let (defaced_ts, transcoded) = defaced.unzip();
        let out_ts = applied
            .as_ref()
            .and_then(|a| a.ts.clone())
            .or(defaced_ts)
            .unwrap_or_else(|| file.ts.clone());
        let rel = relative_name(policy, &d, dicomdir);
        Core {
            file,
            d,
            applied,
            out_ts,
            rel,
            transcoded: transcoded.flatten(),
        }
    }
}

/// The output's name under OUT: `patient/study/series/instance.dcm`, or
/// with DICOMDIR, PS3.10 File IDs (8 characters of A-Z, 0-9 each).
pub(crate) fn relative_name(policy: &Policy, d: &Deidentified, dicomdir: bool) -> String {
    if dicomdir {
        d.path
            .iter()
            .map(|c| pseudonym::format_id(policy.key(), "{hash:8}", "file-id", c, None))
            .collect::<Vec<_>>()
            .join("/")
    } else {
        format!(
            "{}/{}/{}/{}.dcm",
            d.path[0], d.path[1], d.path[2], d.path[3]
        )
    }
}

/// The File Meta of an output.
pub(crate) fn write_meta(d: &Deidentified) -> WriteMeta {
    WriteMeta {
        sop_class: d.sop_class.clone(),
        sop_instance: d.sop_instance.clone(),
    }
}

/// Options for [`deid_object`].
#[derive(Debug, Clone, Default)]
pub struct ObjectOptions {
    /// Name the output as `veil deid --dicomdir` does (PS3.10 File IDs).
    pub dicomdir_names: bool,
}

/// How one object ended. No values: reasons are rule and kind names.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum ObjectOutcome {
    /// Released: the batch would write it to OUT.
    Written,
    /// The batch would write it to the review folder.
    Review {
        /// why
        reason: String,
    },
    /// Not released.
    Quarantined {
        /// why
        reason: QuarantineReason,
    },
    /// Not DICOM.
    NotDicom,
}

impl ObjectOutcome {
    /// The outcome's name: `written`, `review`, `quarantined`, `not-dicom`.
    pub fn kind(&self) -> &'static str {
        match self {
            ObjectOutcome::Written => "written",
            ObjectOutcome::Review { .. } => "review",
            ObjectOutcome::Quarantined { .. } => "quarantined",
            ObjectOutcome::NotDicom => "not-dicom",
        }
    }

    /// Why it was not released (no values), or None when written.
    pub fn reason(&self) -> Option<String> {
        match self {
            ObjectOutcome::Written | ObjectOutcome::NotDicom => None,
            ObjectOutcome::Review { reason } => Some(reason.clone()),
            ObjectOutcome::Quarantined { reason } => Some(reason.to_string()),
        }
    }
}

/// The result for one object.
#[derive(Debug)]
pub struct ObjectResult {
    /// How it ended.
    pub outcome: ObjectOutcome,
    /// The output's name relative to OUT (or the review folder), exactly
    /// as `veil deid` names it; None when nothing is written.
    pub name: Option<String>,
    /// The output file's bytes (written and review outcomes): the same
    /// bytes `veil deid` writes for this input and policy.
    pub output: Option<Vec<u8>>,
    /// What the pixel stage redacted, when it ran.
    pub pixels: Option<PixelReport>,
}

impl ObjectResult {
    fn stopped(outcome: ObjectOutcome) -> ObjectResult {
        ObjectResult {
            outcome,
            name: None,
            output: None,
            pixels: None,
        }
    }
}

/// De-identifies one object held in memory, as `veil deid` does each of
/// its inputs: the same decisions, pixel stage, transfer syntax, name and
/// output bytes. Thread-safe: a policy can be shared by many threads.
///
/// A policy with Clean Pixel Data or Clean Graphics in a build without
/// OCR sends the object to review (fail closed); see
/// [`crate::pixel_options_supported`].
pub fn deid_object(policy: &Policy, bytes: Vec<u8>, opts: &ObjectOptions) -> ObjectResult {
    if let Err(why) = crate::pixel_options_supported(policy) {
        return ObjectResult::stopped(ObjectOutcome::Review { reason: why });
    }
    let deid = Deidentifier::new(policy);
    let pixel_stage = PixelStage::new(policy);
    finish(
        policy,
        &deid,
        pixel_stage.as_ref(),
        veil_io::read_bytes(bytes),
        None,
        opts,
    )
}

/// De-identifies the instances of one CT or MR series held in memory, as
/// `veil deid --option clean-recognizable-visual-features` does when they
/// are its inputs: the series is assembled and defaced as a volume
/// ([`crate::deface::Stage`]), then each instance goes through the same
/// core as [`deid_object`]. One result per input, in order. Why the whole
/// series at once: a face is removed from a volume, not an image, so a
/// caller spreading work over machines (the Spark job) must hand each
/// series to one worker whole. The instances are parked in a private
/// temporary folder while the series is read (removed afterwards).
pub fn deid_series(
    policy: &Policy,
    inputs: Vec<Vec<u8>>,
    opts: &ObjectOptions,
) -> std::io::Result<Vec<ObjectResult>> {
    if let Err(why) = crate::pixel_options_supported(policy) {
        let r = || {
            ObjectResult::stopped(ObjectOutcome::Review {
                reason: why.clone(),
            })
        };
        return Ok(inputs.iter().map(|_| r()).collect());
    }
    let scratch = veil_io::atomic::PrivateDir::new("veil-series")?;
    let mut files = Vec::with_capacity(inputs.len());
    for (i, b) in inputs.iter().enumerate() {
        let p = scratch.path().join(format!("{i}.dcm"));
        veil_io::atomic::write_private(&p, b)?;
        files.push(p);
    }
    let stage = crate::deface::Stage::prepare(&files, scratch.path())?;
    let deid = Deidentifier::new(policy);
    let pixel_stage = PixelStage::new(policy);
    let results = files
        .iter()
        .zip(inputs)
        .map(|(path, bytes)| {
            let mut deface =
                |d: &mut Deidentified| stage.apply(path, &mut d.dataset, &mut d.review);
            finish(
                policy,
                &deid,
                pixel_stage.as_ref(),
                veil_io::read_bytes(bytes),
                Some(&mut deface),
                opts,
            )
        })
        .collect();
    stage.clean_up()?;
    Ok(results)
}

/// The core on one parsed object, then its encoding: the result.
fn finish(
    policy: &Policy,
    deid: &Deidentifier<'_>,
    pixel_stage: Option<&PixelStage>,
    read: Result<DicomFile, ReadError>,
    deface: Option<DefaceFn<'_>>,
    opts: &ObjectOptions,
) -> ObjectResult {
    let core = match prepare(policy, deid, pixel_stage, read, deface, opts.dicomdir_names) {
        Prepared::Ready(c) => c,
        Prepared::Stopped(Outcome::Quarantined { reason }) => {
            return ObjectResult::stopped(ObjectOutcome::Quarantined { reason })
        }
        Prepared::Stopped(_) => return ObjectResult::stopped(ObjectOutcome::NotDicom),
        Prepared::Storage(kind) => {
            let detail = format!("{kind:?}");
            let reason = QuarantineReason::Io { detail };
            return ObjectResult::stopped(ObjectOutcome::Quarantined { reason });
        }
    };
    let output = match veil_io::encode_file(
        &write_meta(&core.d),
        &core.out_ts,
        &core.d.dataset,
        &core.file.source,
    ) {
        Ok(b) => b,
        Err(e) => {
            let reason = QuarantineReason::Io {
                detail: e.to_string(),
            };
            return ObjectResult::stopped(ObjectOutcome::Quarantined { reason });
        }
    };
    let outcome = match &core.d.review {
        Some(reason) => ObjectOutcome::Review {
            reason: reason.clone(),
        },
        None => ObjectOutcome::Written,
    };
    ObjectResult {
        outcome,
        name: Some(core.rel),
        output: Some(output),
        pixels: core.applied.map(|a| a.report),
    }
}
