//! One release: decide per patient-study, de-identify what is permitted,
//! verify, write the manifest, log every decision.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;
use veil_consent::{Decision, Recipient, Request};
use veil_core::count;
use veil_core::{Phi, Tag};
use veil_deid::{Key, Policy};
use veil_ledger::{Entry, Event};

use crate::publish::{self, Control, Journal, ManifestFile, ManifestStudy, Stage};
use crate::{operator, Error, Site};

/// What a verifier found in one released study.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyOutcome {
    /// No verifier is wired: recorded as `not-run`.
    NotRun,
    /// Checked, nothing found.
    Pass,
    /// Checked, this many findings: the study's output is removed (fail
    /// closed) and the decision recorded as a refusal.
    Findings(usize),
    /// The check could not run (reason without PHI): fail closed as well.
    Failed(String),
}

/// Checks the de-identified files of one study before they count as
/// released. `veil verify` (crate veil-verify) plugs in here.
pub trait Verifier {
    /// `sources` are the study's input files, `files` its output files,
    /// staged under `root` (not yet in OUT: names are checked relative to
    /// it, as they will be in OUT): the verifier harvests identifying
    /// values from the first and looks for them in the second.
    fn verify(&self, root: &Path, sources: &[PathBuf], files: &[PathBuf]) -> VerifyOutcome;
}

impl<F: Fn(&Path, &[PathBuf], &[PathBuf]) -> VerifyOutcome> Verifier for F {
    fn verify(&self, root: &Path, sources: &[PathBuf], files: &[PathBuf]) -> VerifyOutcome {
        self(root, sources, files)
    }
}

/// A release request.
#[derive(Debug, Clone)]
pub struct ReleaseRequest {
    /// Recipient name.
    pub recipient: String,
    /// Purpose of use.
    pub purpose: String,
    /// Input files or folders.
    pub inputs: Vec<PathBuf>,
    /// Output folder.
    pub out: PathBuf,
    /// Operator (`--operator`, else `$USER`).
    pub operator: Option<String>,
    /// Worker threads for de-identification.
    pub jobs: usize,
}

/// The printed summary and the command's outcome: counts only.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReleaseSummary {
    /// Release id (in the manifest and every ledger entry).
    pub release_id: String,
    /// Patient-studies found.
    pub studies: usize,
    /// Released.
    pub released: usize,
    /// Refused, by reason.
    pub refused: BTreeMap<String, usize>,
    /// Of those, refused because the patient's consent (a provision or
    /// the site default) denies this use: the patient's choice carried
    /// out, which is not a failure (see [`ReleaseSummary::exit_code`]).
    #[serde(skip)]
    pub refused_by_consent: usize,
    /// Instances released.
    pub instances_released: usize,
    /// Instances held in the review folder (not released).
    pub held_for_review: usize,
    /// Inputs that could not be read as DICOM (not released).
    pub unreadable: usize,
    /// Ledger positions written.
    pub ledger_positions: Vec<u64>,
    /// True when this is a release an interrupted run had logged, published
    /// now instead of starting a new one (counts of inputs then read 0).
    pub recovered: bool,
}

impl ReleaseSummary {
    /// Studies refused, all reasons.
    pub fn refused_total(&self) -> usize {
        self.refused.values().sum()
    }

    /// 0 when the release did what was asked: every study was released
    /// or refused because of the patient's consent (an opt-out is the
    /// patient's choice carried out, not a failure). 1 when a study was
    /// refused for another reason (ambiguous identity, nothing releasable,
    /// verification findings) or an input could not be read: a person
    /// should look.
    pub fn exit_code(&self) -> i32 {
        if self.refused_total() > self.refused_by_consent || self.unreadable > 0 {
            1
        } else {
            0
        }
    }

    /// One line, no PHI.
    pub fn line(&self) -> String {
        let reasons: Vec<String> = self
            .refused
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect();
        let first = self.ledger_positions.first();
        let last = self.ledger_positions.last();
        format!(
            "veil release {}{}: {}: {} released ({}), {} excluded{}; {} held for review, {} unreadable; ledger entries {}",
            self.release_id,
            if self.recovered {
                " (interrupted earlier; logged then, published now)"
            } else {
                ""
            },
            count(self.studies, "study", "studies"),
            self.released,
            count(self.instances_released, "instance", "instances"),
            self.refused_total(),
            if reasons.is_empty() { String::new() } else { format!(" ({})", reasons.join(", ")) },
            count(self.held_for_review, "instance", "instances"),
            count(self.unreadable, "input", "inputs"),
            match (first, last) {
                (Some(a), Some(b)) => format!("{a}..={b}"),
                _ => "none".into(),
            }
        )
    }
}

/// One patient-study of the inputs. The identifiers stay in memory only.
struct Group {
    patient: Option<Phi<String>>,
    study: String,
    files: Vec<PathBuf>,
    sops: BTreeSet<String>,
    /// What the site-local study index keeps (see
    /// [`veil_store::portal::StudyIndexRow`]): the first non-empty
    /// StudyDate and StudyDescription seen, and every modality.
    date: String,
    description: String,
    modalities: BTreeSet<String>,
}

/// A fresh release id (64 random bits, hex). A failing random source is an
/// error: a constant id would merge unrelated releases in the ledger, the
/// manifests and the staging folder.
fn new_release_id() -> Result<String, Error> {
    release_id_from(getrandom::getrandom)
}

fn release_id_from(
    fill: impl FnOnce(&mut [u8]) -> Result<(), getrandom::Error>,
) -> Result<String, Error> {
    let mut b = [0u8; 8];
    fill(&mut b).map_err(|e| {
        Error::Invalid(format!(
            "the system's random source failed ({e}); no release id, nothing released"
        ))
    })?;
    Ok(veil_ledger::hex(&b))
}

/// The summary's class of a refusal reason: the text before the first ':'.
/// Why a patient-study is not released, decided before de-identification.
struct Refusal {
    /// The ledger's reason (no PHI).
    why: String,
    /// The patient's consent (a provision or the site default) denies this
    /// use: carried out, not a failure. A consent record that differs from
    /// the ledger is not an opt-out; it is tampering, and a failure.
    opt_out: bool,
}

impl Refusal {
    fn other(why: &str) -> Self {
        Refusal {
            why: why.to_string(),
            opt_out: false,
        }
    }
}

fn reason_class(why: &str) -> String {
    why.split(':').next().unwrap_or(why).to_string()
}

fn plus_days(now: &str, days: u32) -> String {
    chrono::DateTime::parse_from_rfc3339(now)
        .map(|t| (t + chrono::Duration::days(i64::from(days))).with_timezone(&chrono::Utc))
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|_| now.to_string())
}

/// A release to one recipient for one purpose, checked and loaded once:
/// what every study's decision relies on. `veil release` prepares one per
/// run; the gateway (`veil serve`) one per study it decides, so a
/// recipient, recipe, key or consent change made while it runs applies to
/// the next study.
pub struct Prepared {
    rec: Recipient,
    purpose: String,
    policy: Policy,
    coverage: crate::integrity::Coverage,
    default: Option<veil_consent::SiteDefault>,
    operator: String,
    now: String,
    release_id: String,
}

impl Prepared {
    /// The release id its ledger entries carry.
    pub fn release_id(&self) -> &str {
        &self.release_id
    }
}

/// Where a study is de-identified and verified before it is logged.
pub struct Workspace<'a> {
    /// Outputs are written below this folder (named from pseudonyms).
    pub staged_root: &'a Path,
    /// Instances the pipeline holds for review go here.
    pub review: &'a Path,
    /// Worker threads for de-identification.
    pub jobs: usize,
    /// Checks each permitted study; `None` records `not-run`.
    pub verifier: Option<&'a dyn Verifier>,
}

/// One patient-study decided, not yet logged: its ledger entry and, when
/// released, its verified outputs staged in the [`Workspace`].
#[derive(Debug)]
pub struct StudyDecision {
    /// The entry to append (its position is assigned by the append).
    pub entry: Entry,
    /// Released: the output files, relative to the staging root (named
    /// from pseudonyms, no PHI). Empty when refused.
    pub outputs: Vec<String>,
    /// Refused because the patient's consent denies this use (not a
    /// failure; see [`ReleaseSummary::exit_code`]).
    pub opt_out: bool,
    /// Instances the pipeline held for review.
    pub held_for_review: usize,
    manifest: Option<ManifestStudy>,
}

impl VerifyOutcome {
    /// The outcome of a check that counts failing files (as
    /// `veil_verify::set::release_check` does): an error is
    /// [`VerifyOutcome::Failed`] with its kind only (no path), which fails
    /// closed like findings do.
    pub fn from_check(r: std::io::Result<usize>) -> VerifyOutcome {
        match r {
            Ok(0) => VerifyOutcome::Pass,
            Ok(n) => VerifyOutcome::Findings(n),
            Err(e) => VerifyOutcome::Failed(format!("{:?}", e.kind())),
        }
    }
}

impl Site {
    /// Checks and loads what a release to `recipient` for `purpose` relies
    /// on (the recipient and its registration for the purpose, its recipe
    /// and key, the consent coverage against the ledger, the site default)
    /// before anything is de-identified or logged.
    pub fn prepare_release(
        &mut self,
        recipient: &str,
        purpose: &str,
        operator: Option<&str>,
    ) -> Result<Prepared, Error> {
        let rec = self.release_recipient(recipient, purpose)?;
        self.prepare_for(rec, purpose, operator)
    }

    fn prepare_for(
        &mut self,
        rec: Recipient,
        purpose: &str,
        op: Option<&str>,
    ) -> Result<Prepared, Error> {
        let recipe = veil_rules::Recipe::parse(&rec.recipe_toml)
            .map_err(|e| Error::Invalid(e.to_string()))?;
        let key = Key::load(Path::new(&rec.key_file))
            .map_err(|e| Error::Key(format!("recipient key: {e}")))?;
        if key.id() != rec.key_id {
            return Err(Error::Key(
                "the recipient's key file does not match its registered key id".into(),
            ));
        }
        // the recipient's pins and the site default, against the ledger
        let coverage = self.check_release_inputs(&rec, purpose)?;
        let policy = Policy::new(recipe, &[], key).map_err(|e| Error::Invalid(e.to_string()))?;
        Ok(Prepared {
            default: self.store.default_for(purpose)?,
            operator: operator(op),
            now: veil_consent::now(),
            release_id: new_release_id()?,
            purpose: purpose.to_string(),
            rec,
            policy,
            coverage,
        })
    }

    /// Decides, de-identifies and verifies the instances of one study as
    /// `veil release` does (the same code): the gateway's unit of work.
    /// `files` are read and grouped by (PatientID, StudyInstanceUID), so a
    /// study UID seen under two PatientIDs is refused as ambiguous. One
    /// decision per group; nothing is logged here ([`Site::log_decisions`]).
    pub fn decide_study(
        &mut self,
        p: &Prepared,
        files: &[PathBuf],
        work: &Workspace<'_>,
    ) -> Result<Vec<StudyDecision>, Error> {
        let Inputs {
            groups, ambiguous, ..
        } = read_inputs(files)?;
        groups
            .values()
            .map(|g| self.decide_one(p, g, &ambiguous, work))
            .collect()
    }

    /// One patient-study: consent, then de-identification and verification
    /// of what is permitted (failing closed), into an entry to log.
    fn decide_one(
        &mut self,
        p: &Prepared,
        g: &Group,
        ambiguous: &BTreeSet<String>,
        work: &Workspace<'_>,
    ) -> Result<StudyDecision, Error> {
        let rec = &p.rec;
        let staged_root = work.staged_root;
        let patient_ref = g.patient.as_ref().map(|x| self.patient_ref(x));
        let inputs_digest = self.inputs_ref(&g.sops.iter().map(String::as_str).collect::<Vec<_>>());
        if let Some(pr) = &patient_ref {
            self.index_pending(
                &p.release_id,
                &inputs_digest,
                veil_store::portal::StudyIndexRow {
                    ledger_seq: 0,
                    patient_ref: pr.clone(),
                    study_date: g.date.clone(),
                    modalities: g.modalities.iter().cloned().collect::<Vec<_>>().join(","),
                    description: g.description.clone(),
                    instances: g.files.len() as i64,
                },
            );
        }
        let study_ref = (!g.study.is_empty()).then(|| self.study_ref(&g.study));
        let mut d = StudyDecision {
            entry: Entry {
                v: 1,
                seq: 0,
                time: p.now.clone(),
                event: Event::Refusal,
                release_id: p.release_id.clone(),
                recipient: rec.name.clone(),
                purpose: p.purpose.clone(),
                recipe: rec.recipe_label.clone(),
                key_id: rec.key_id.clone(),
                patient_ref,
                study_ref,
                output_study_uid: None,
                instances: g.files.len() as u64,
                inputs_digest: Some(inputs_digest),
                output_digest: None,
                verification: "not-run".into(),
                operator: p.operator.clone(),
                reason: String::new(),
                refers_to: None,
            },
            outputs: Vec::new(),
            opt_out: false,
            held_for_review: 0,
            manifest: None,
        };
        match self.decide_group(
            g,
            ambiguous,
            rec,
            &p.purpose,
            &p.coverage,
            p.default,
            &p.now,
        )? {
            Err(r) => {
                d.entry.reason = r.why;
                d.opt_out = r.opt_out;
                return Ok(d);
            }
            Ok(rule) => d.entry.reason = rule,
        }
        let batch = veil_pipeline::Batch {
            inputs: g.files.clone(),
            out: staged_root.to_path_buf(),
            review: work.review.to_path_buf(),
            jobs: work.jobs.max(1),
            policy: &p.policy,
            dicomdir: false,
            // verified per study below, through the hook
            verify: None,
        };
        let rep = batch.run(&|_, _| {}).map_err(Error::io("de-identifying"))?;
        let mut outs: BTreeSet<String> = BTreeSet::new();
        for r in &rep.files {
            match &r.outcome {
                veil_pipeline::Outcome::Written { output }
                | veil_pipeline::Outcome::AlreadyDone { output }
                | veil_pipeline::Outcome::DuplicateInstance { output }
                    if staged_root.join(output).is_file() =>
                {
                    outs.insert(output.clone());
                }
                _ => {}
            }
        }
        d.held_for_review = rep.counts.review;
        if outs.is_empty() {
            d.entry.reason =
                "nothing releasable: every instance quarantined or held for review".into();
            return Ok(d);
        }
        let paths: Vec<PathBuf> = outs.iter().map(|o| staged_root.join(o)).collect();
        let outcome = work
            .verifier
            .map(|v| v.verify(staged_root, &g.files, &paths))
            .unwrap_or(VerifyOutcome::NotRun);
        d.entry.verification = match &outcome {
            VerifyOutcome::NotRun => "not-run".into(),
            VerifyOutcome::Pass => "pass".into(),
            VerifyOutcome::Findings(n) => format!("fail: {n} findings"),
            VerifyOutcome::Failed(why) => format!("error: {why}"),
        };
        if let VerifyOutcome::Findings(_) | VerifyOutcome::Failed(_) = outcome {
            // fail closed: nothing of this study may be published; a
            // file that cannot be removed stops the release (unlogged,
            // so the next run discards all of it)
            for p in &paths {
                std::fs::remove_file(p)
                    .map_err(Error::io("removing a study that failed verification"))?;
            }
            d.entry.reason = "verification: findings in the de-identified output".into();
            return Ok(d);
        }
        let mut mfiles = Vec::new();
        for (o, p) in outs.iter().zip(&paths) {
            mfiles.push(ManifestFile {
                path: o.clone(),
                sha256: publish::file_sha256(p)?,
            });
        }
        let out_study = veil_io::read(&paths[0])
            .ok()
            .and_then(|d| d.dataset.ascii(Tag(0x0020, 0x000D)))
            .unwrap_or_default();
        d.entry.event = Event::Release;
        d.entry.output_study_uid = Some(out_study.clone());
        d.entry.output_digest = Some(publish::output_digest(&mfiles));
        d.manifest = Some(ManifestStudy {
            study_instance_uid: out_study,
            instances: outs.len(),
            output_digest: d.entry.output_digest.clone().unwrap_or_default(),
            verification: d.entry.verification.clone(),
            ledger_position: 0,
            files: mfiles,
        });
        d.outputs = outs.into_iter().collect();
        Ok(d)
    }
}

impl Site {
    /// Runs a release (see the crate documentation and the README's
    /// "Consent and disclosures"). `verifier` checks each released study;
    /// `None` records `not-run`.
    pub fn release(
        &mut self,
        req: &ReleaseRequest,
        verifier: Option<&dyn Verifier>,
    ) -> Result<ReleaseSummary, Error> {
        self.release_with(req, verifier, &|_, _| {})
    }

    /// [`Site::release`], calling `tick(done, total)` as each study is
    /// decided (progress; counts only).
    pub fn release_with(
        &mut self,
        req: &ReleaseRequest,
        verifier: Option<&dyn Verifier>,
        tick: &dyn Fn(usize, usize),
    ) -> Result<ReleaseSummary, Error> {
        // the recipient and purpose first: a typo must stop the run before
        // anything is written, to OUT or to the ledger
        let rec = self.release_recipient(&req.recipient, &req.purpose)?;
        // 0. finish or discard what an interrupted run left beside OUT;
        //    then OUT must be empty: each release gets its own folder, so
        //    everything in it is that release's, logged and verified
        let ctl = Control::open(&req.out)?;
        let (recovered, _) = self.recover_at(&ctl)?;
        if publish::out_has_content(&ctl.out)? {
            let here = publish::manifest_release_id(&ctl.out);
            // the same request, killed after logging: its release is done
            if let Some((sum, _, _)) = recovered.into_iter().find(|(s, r, p)| {
                Some(&s.release_id) == here.as_ref() && *r == req.recipient && *p == req.purpose
            }) {
                return Ok(sum);
            }
            return Err(Error::Invalid(
                "OUT is not empty: a release is published into a new or empty folder (this one holds an earlier release or other files)".into(),
            ));
        }
        let prep = self.prepare_for(rec, &req.purpose, req.operator.as_deref())?;
        let release_id = prep.release_id.clone();
        let mut summary = ReleaseSummary {
            release_id: release_id.clone(),
            ..Default::default()
        };
        // everything is de-identified and verified here, outside OUT; an
        // error before the ledger append leaves it for the next run to
        // discard
        let mut journal = Journal {
            release_id: release_id.clone(),
            stage: Stage::Staging,
            recipient: prep.rec.name.clone(),
            purpose: req.purpose.clone(),
            manifest: None,
        };
        ctl.begin(&journal)?;
        let staged_root = ctl.files(&release_id);

        // 1. headers: group by (PatientID, StudyInstanceUID)
        let Inputs {
            groups,
            unreadable,
            ambiguous,
        } = read_inputs(&req.inputs)?;
        summary.unreadable = unreadable;

        // 2. decide, 3. de-identify, verify
        let review = {
            let mut s = req.out.clone().into_os_string();
            s.push(".review");
            PathBuf::from(s)
        };
        let work = Workspace {
            staged_root: &staged_root,
            review: &review,
            jobs: req.jobs,
            verifier,
        };
        let mut entries = Vec::new();
        let mut staged = Vec::new();
        let mut manifest_studies = Vec::new();
        summary.studies = groups.len();
        for (done, g) in groups.values().enumerate() {
            tick(done, groups.len());
            let d = self.decide_one(&prep, g, &ambiguous, &work)?;
            summary.held_for_review += d.held_for_review;
            match d.manifest {
                Some(m) if d.entry.event == Event::Release => {
                    summary.released += 1;
                    summary.instances_released += d.outputs.len();
                    manifest_studies.push(m);
                    staged.push(Some(veil_store::Staged {
                        ledger_seq: 0,
                        recipient: prep.rec.name.clone(),
                        out_root: ctl.out.display().to_string(),
                        files: d.outputs,
                        created_at: prep.now.clone(),
                        expires_at: plus_days(&prep.now, prep.rec.retention_days),
                    }));
                }
                _ => {
                    *summary
                        .refused
                        .entry(reason_class(&d.entry.reason))
                        .or_default() += 1;
                    summary.refused_by_consent += usize::from(d.opt_out);
                    staged.push(None);
                }
            }
            entries.push(d.entry);
        }
        tick(groups.len(), groups.len());

        // 4. the manifest into the journal, 5. the ledger, 6. publish
        let manifest = serde_json::json!({
            "notice": "De-identified release. This manifest holds no patient identifiers: studies are named by their pseudonymous UIDs.",
            "veil_version": env!("CARGO_PKG_VERSION"),
            "release_id": release_id,
            "created": prep.now,
            "recipient": prep.rec.name,
            "purpose": req.purpose,
            "recipe": prep.rec.recipe_label,
            "key_id": prep.rec.key_id,
            "retention_days": prep.rec.retention_days,
            "studies_released": summary.released,
            "studies_excluded": summary.refused_total(),
            "instances_released": summary.instances_released,
            "studies": manifest_studies,
        });
        journal.stage = Stage::Verified;
        journal.manifest = Some(manifest);
        ctl.write_journal(&journal)?;
        summary.ledger_positions = match self.append(entries, staged) {
            Ok(p) => p,
            Err(e) => self.failed_append(&ctl, &release_id, e)?,
        };
        let after_log = |e: Error| {
            Error::Invalid(format!(
                "release {release_id} is logged but not yet published ({e}); `veil release --recover --out OUT` publishes it"
            ))
        };
        journal.stage = Stage::Logged;
        ctl.write_journal(&journal).map_err(after_log)?;
        let logged = self.release_entries(&release_id)?;
        ctl.publish(&release_id, &logged.iter().collect::<Vec<_>>())
            .map_err(after_log)?;
        Ok(summary)
    }

    /// After an append that reported an error: a commit can succeed and
    /// still report one (a connection lost after COMMIT), so the ledger
    /// itself says whether the release was logged. Logged: its positions,
    /// and publishing goes on. Not logged: the staged copy is discarded
    /// and the error says nothing was published.
    fn failed_append(&mut self, ctl: &Control, id: &str, e: Error) -> Result<Vec<u64>, Error> {
        match self.release_entries(id) {
            Ok(l) if !l.is_empty() => Ok(l.iter().map(|e| e.seq).collect()),
            Ok(_) => {
                let left = match ctl.discard(id) {
                    Ok(()) => String::new(),
                    Err(d) => format!(
                        "; its staged copy could not be removed ({d}): the next `veil release` into OUT removes it"
                    ),
                };
                Err(Error::Invalid(format!(
                    "the ledger append failed ({e}): release {id} was not logged and nothing was published to OUT{left}"
                )))
            }
            Err(_) => Err(Error::Invalid(format!(
                "the ledger append failed ({e}) and the ledger cannot be read: release {id} stays staged outside OUT and nothing was published; `veil release --recover --out OUT` publishes it if it was logged, else discards it"
            ))),
        }
    }

    /// Finishes what interrupted releases into `out` left beside it:
    /// publishes those the ledger logs, discards those it does not (see
    /// the `publish` module). `veil release` does this first, every time.
    pub fn recover(&mut self, out: &Path) -> Result<Recovery, Error> {
        let ctl = Control::locate(out)?;
        let (published, discarded) = self.recover_at(&ctl)?;
        Ok(Recovery {
            published: published.into_iter().map(|(s, _, _)| s).collect(),
            discarded,
        })
    }

    /// [`Site::recover`]; returns each published release's summary, with
    /// its recipient and purpose, and how many staged releases were
    /// discarded.
    #[allow(clippy::type_complexity)]
    fn recover_at(
        &mut self,
        ctl: &Control,
    ) -> Result<(Vec<(ReleaseSummary, String, String)>, usize), Error> {
        let pending = ctl.pending()?;
        let mut discarded = 0;
        if pending.is_empty() {
            return Ok((Vec::new(), 0));
        }
        let all = self.entries()?;
        let mut out = Vec::new();
        for id in pending {
            let logged: Vec<&Entry> = all
                .iter()
                .filter(|e| {
                    e.release_id == id && matches!(e.event, Event::Release | Event::Refusal)
                })
                .collect();
            if logged.is_empty() {
                if ctl
                    .journal(&id)
                    .ok()
                    .flatten()
                    .is_some_and(|j| j.stage == Stage::Logged)
                {
                    return Err(Error::Invalid(format!(
                        "staged release {id} was logged, but the ledger has no entry for it (a truncated ledger, or another store); it was kept, not published: run `veil ledger verify`"
                    )));
                }
                ctl.discard(&id)?;
                discarded += 1;
                continue;
            }
            let instances =
                if ctl.marker(&id).is_file() && ctl.journal(&id).ok().flatten().is_none() {
                    // published; only the removal of its staging folder was cut short
                    std::fs::remove_dir_all(ctl.staging(&id))
                        .map_err(Error::io("removing a published release's staging folder"))?;
                    publish::manifest_instances(&ctl.out)
                } else {
                    ctl.publish(&id, &logged)?
                };
            let mut s = ReleaseSummary {
                release_id: id.clone(),
                studies: logged.len(),
                instances_released: instances,
                recovered: true,
                ..Default::default()
            };
            for e in &logged {
                s.ledger_positions.push(e.seq);
                if e.event == Event::Release {
                    s.released += 1;
                } else {
                    *s.refused.entry(reason_class(&e.reason)).or_default() += 1;
                }
            }
            out.push((s, logged[0].recipient.clone(), logged[0].purpose.clone()));
        }
        Ok((out, discarded))
    }

    /// The `release` and `refusal` entries of one release, in order.
    fn release_entries(&mut self, id: &str) -> Result<Vec<Entry>, Error> {
        Ok(self
            .entries()?
            .into_iter()
            .filter(|e| e.release_id == id && matches!(e.event, Event::Release | Event::Refusal))
            .collect())
    }
}

/// What [`Site::recover`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Recovery {
    /// Releases an interrupted run had logged, published now.
    pub published: Vec<ReleaseSummary>,
    /// Staged releases the ledger does not know (never logged), removed.
    pub discarded: usize,
}

/// The inputs of a release, read and grouped.
struct Inputs {
    /// By (PatientID, StudyInstanceUID).
    groups: BTreeMap<(String, String), Group>,
    /// Files that could not be read as DICOM, and DICOMDIRs.
    unreadable: usize,
    /// Study UIDs found under more than one PatientID.
    ambiguous: BTreeSet<String>,
}

/// Reads the headers of every input and groups them by (PatientID,
/// StudyInstanceUID): the unit a consent decision and a ledger entry are
/// about. Shared by the release and its dry run, so both decide on the
/// same groups.
fn read_inputs(inputs: &[PathBuf]) -> Result<Inputs, Error> {
    let files = veil_pipeline::walk(inputs).map_err(Error::io("listing the inputs"))?;
    let mut groups: BTreeMap<(String, String), Group> = BTreeMap::new();
    let mut unreadable = 0;
    for f in &files {
        let Ok(d) = veil_io::read(f) else {
            unreadable += 1;
            continue;
        };
        if d.is_dicomdir() {
            unreadable += 1;
            continue;
        }
        let pid = d
            .dataset
            .ascii(Tag(0x0010, 0x0020))
            .filter(|s| !s.is_empty());
        let study = d.dataset.ascii(Tag(0x0020, 0x000D)).unwrap_or_default();
        let sop = d.dataset.ascii(Tag(0x0008, 0x0018)).unwrap_or_default();
        let g = groups
            .entry((pid.clone().unwrap_or_default(), study.clone()))
            .or_insert_with(|| Group {
                patient: pid.map(Phi::new),
                study,
                files: Vec::new(),
                sops: BTreeSet::new(),
                date: String::new(),
                description: String::new(),
                modalities: BTreeSet::new(),
            });
        g.files.push(f.clone());
        g.sops.insert(sop);
        let text = |t: Tag| {
            d.dataset
                .ascii(t)
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        if g.date.is_empty() {
            g.date = text(Tag(0x0008, 0x0020));
        }
        if g.description.is_empty() {
            g.description = text(Tag(0x0008, 0x1030));
        }
        for t in [Tag(0x0008, 0x0061), Tag(0x0008, 0x0060)] {
            for m in text(t).split('\\') {
                let m = m.trim();
                if !m.is_empty() {
                    g.modalities.insert(m.to_string());
                }
            }
        }
    }
    let mut patients_of_study: BTreeMap<&str, usize> = BTreeMap::new();
    for g in groups.values() {
        *patients_of_study.entry(g.study.as_str()).or_default() += 1;
    }
    let ambiguous: BTreeSet<String> = patients_of_study
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(s, _)| s.to_string())
        .collect();
    Ok(Inputs {
        groups,
        unreadable,
        ambiguous,
    })
}

/// What `veil release --dry-run` found: the decisions, as counts. Nothing
/// was de-identified, written or logged.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DryRun {
    /// Always true: says what this summary is.
    pub dry_run: bool,
    /// Patient-studies found.
    pub studies: usize,
    /// Studies the consent rules permit (they would still be
    /// de-identified and verified before release).
    pub would_release: usize,
    /// Instances in those studies.
    pub instances: usize,
    /// Studies that would be refused, by reason.
    pub would_refuse: BTreeMap<String, usize>,
    /// Permitted studies by the consent rule that permits them.
    pub permitted_by: BTreeMap<String, usize>,
    /// Inputs that could not be read as DICOM.
    pub unreadable: usize,
}

impl DryRun {
    /// One line, no PHI.
    pub fn line(&self) -> String {
        let list = |m: &BTreeMap<String, usize>| {
            m.iter()
                .map(|(k, v)| format!("{v} {k}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let refused: usize = self.would_refuse.values().sum();
        format!(
            "veil release --dry-run: {}: {} would be released ({}; {}), {} would be refused{}; {} unreadable; nothing was written or logged",
            count(self.studies, "study", "studies"),
            self.would_release,
            count(self.instances, "instance", "instances"),
            if self.permitted_by.is_empty() { "none".to_string() } else { list(&self.permitted_by) },
            refused,
            if refused == 0 { String::new() } else { format!(" ({})", list(&self.would_refuse)) },
            count(self.unreadable, "input", "inputs")
        )
    }
}

impl Site {
    /// The recipient a release goes to, if it exists and is registered for
    /// `purpose`; otherwise an error naming the known ones. Checked before
    /// anything is written: a typo in either used to run a release that
    /// logged a refusal for every study.
    fn release_recipient(&mut self, name: &str, purpose: &str) -> Result<Recipient, Error> {
        if self.store.recipient_removed(name)? {
            return Err(Error::Invalid(format!(
                "recipient {name} was removed: it cannot receive (its ledger history is kept)"
            )));
        }
        let rec = self.store.recipient(name)?.ok_or_else(|| {
            let known: Vec<String> = self
                .store
                .recipients()
                .map(|v| v.into_iter().map(|r| r.name).collect())
                .unwrap_or_default();
            Error::Invalid(format!(
                "no recipient named {name}; known recipients: {}; add one with `veil recipient add`",
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            ))
        })?;
        if !rec.purposes.iter().any(|p| p == purpose) {
            return Err(Error::Invalid(format!(
                "recipient {} is not registered for purpose {purpose}; its purposes: {}. Nothing was released or logged (`veil recipient update {} --purpose ...` registers more)",
                rec.name,
                rec.purposes.join(", "),
                rec.name
            )));
        }
        Ok(rec)
    }

    /// Decides one patient-study before de-identification: `Ok` with the
    /// consent rule that permits it, or `Err` with the refusal reason.
    #[allow(clippy::too_many_arguments)]
    fn decide_group(
        &mut self,
        g: &Group,
        ambiguous: &BTreeSet<String>,
        rec: &Recipient,
        purpose: &str,
        coverage: &crate::integrity::Coverage,
        default: Option<veil_consent::SiteDefault>,
        now: &str,
    ) -> Result<Result<String, Refusal>, Error> {
        let Some(patient) = &g.patient else {
            return Ok(Err(Refusal::other("ambiguous: no PatientID")));
        };
        if g.study.is_empty() {
            return Ok(Err(Refusal::other("ambiguous: no StudyInstanceUID")));
        }
        if ambiguous.contains(&g.study) {
            return Ok(Err(Refusal::other(
                "ambiguous: study under several PatientIDs",
            )));
        }
        let pref = self.patient_ref(patient);
        // only consent rows that are exactly the logged versions count
        let consents = match self.covered_consents(coverage, &pref)? {
            Ok(c) => c,
            Err(why) => return Ok(Err(Refusal::other(&why))),
        };
        let o = veil_consent::decide(
            &consents,
            default,
            &Request {
                recipient: &rec.name,
                category: rec.category.as_deref(),
                purpose,
                study_uid: &g.study,
                now,
            },
        );
        Ok(if o.decision == Decision::Deny {
            Err(Refusal {
                why: format!("consent: {}", o.rule),
                opt_out: true,
            })
        } else {
            Ok(format!("consent: {}", o.rule))
        })
    }

    /// `veil release --dry-run`: the same checks and decisions as
    /// [`Site::release`], as counts per reason, without de-identifying,
    /// writing anything (OUT, staging, review) or appending to the ledger.
    pub fn release_dry_run(&mut self, req: &ReleaseRequest) -> Result<DryRun, Error> {
        let rec = self.release_recipient(&req.recipient, &req.purpose)?;
        let coverage = self.check_release_inputs(&rec, &req.purpose)?;
        let Inputs {
            groups,
            unreadable,
            ambiguous,
        } = read_inputs(&req.inputs)?;
        let default = self.store.default_for(&req.purpose)?;
        let now = veil_consent::now();
        let mut d = DryRun {
            dry_run: true,
            studies: groups.len(),
            unreadable,
            ..Default::default()
        };
        for g in groups.values() {
            match self.decide_group(g, &ambiguous, &rec, &req.purpose, &coverage, default, &now)? {
                Ok(rule) => {
                    d.would_release += 1;
                    d.instances += g.files.len();
                    *d.permitted_by.entry(rule).or_default() += 1;
                }
                Err(r) => *d.would_refuse.entry(reason_class(&r.why)).or_default() += 1,
            }
        }
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_22_a_failing_random_source_is_an_error_not_a_zero_id() {
        let r = release_id_from(|_| Err(getrandom::Error::UNSUPPORTED));
        assert!(r.is_err(), "{r:?}");
        let id = release_id_from(|b| {
            b.fill(0xab);
            Ok(())
        })
        .unwrap();
        assert_eq!(id, "abababababababab");
    }
}
