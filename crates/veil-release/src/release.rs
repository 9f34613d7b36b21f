//! One release: decide per patient-study, de-identify what is permitted,
//! verify, write the manifest, log every decision.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};
use veil_consent::{Decision, Request};
use veil_core::{Phi, Tag};
use veil_deid::{Key, Policy};
use veil_ledger::{Entry, Event};

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
    /// `sources` are the study's input files, `files` its released
    /// output files: the verifier harvests identifying values from the
    /// first and looks for them in the second.
    fn verify(&self, sources: &[PathBuf], files: &[PathBuf]) -> VerifyOutcome;
}

impl<F: Fn(&[PathBuf], &[PathBuf]) -> VerifyOutcome> Verifier for F {
    fn verify(&self, sources: &[PathBuf], files: &[PathBuf]) -> VerifyOutcome {
        self(sources, files)
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
    /// Instances released.
    pub instances_released: usize,
    /// Instances held in the review folder (not released).
    pub held_for_review: usize,
    /// Inputs that could not be read as DICOM (not released).
    pub unreadable: usize,
    /// Ledger positions written.
    pub ledger_positions: Vec<u64>,
}

impl ReleaseSummary {
    /// Studies refused, all reasons.
    pub fn refused_total(&self) -> usize {
        self.refused.values().sum()
    }

    /// 0 when every study found was released, 1 when any was refused.
    pub fn exit_code(&self) -> i32 {
        if self.refused_total() > 0 {
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
            "veil release {}: {} studies: {} released ({} instances), {} excluded{}; {} instances held for review, {} inputs unreadable; ledger entries {}",
            self.release_id,
            self.studies,
            self.released,
            self.instances_released,
            self.refused_total(),
            if reasons.is_empty() { String::new() } else { format!(" ({})", reasons.join(", ")) },
            self.held_for_review,
            self.unreadable,
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
}

#[derive(Serialize)]
struct ManifestStudy {
    study_instance_uid: String,
    instances: usize,
    output_digest: String,
    verification: String,
    ledger_position: u64,
    files: Vec<ManifestFile>,
}

#[derive(Serialize)]
struct ManifestFile {
    path: String,
    sha256: String,
}

fn sha256_hex(bytes: &[u8]) -> String {
    veil_ledger::hex(&Sha256::digest(bytes))
}

fn file_sha256(p: &Path) -> Result<String, Error> {
    use std::io::Read;
    let mut f = std::fs::File::open(p).map_err(Error::io("reading an output"))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(Error::io("reading an output"))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(veil_ledger::hex(&h.finalize()))
}

fn random_id() -> String {
    let mut b = [0u8; 8];
    let _ = getrandom::getrandom(&mut b);
    veil_ledger::hex(&b)
}

fn plus_days(now: &str, days: u32) -> String {
    chrono::DateTime::parse_from_rfc3339(now)
        .map(|t| (t + chrono::Duration::days(i64::from(days))).with_timezone(&chrono::Utc))
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|_| now.to_string())
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
        let rec = self.store.recipient(&req.recipient)?.ok_or_else(|| {
            Error::Invalid(format!(
                "no recipient named {}; add it with `veil recipient add`",
                req.recipient
            ))
        })?;
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
        let coverage = self.check_release_inputs(&rec, &req.purpose)?;
        let policy =
            Policy::new(recipe, &[], key.clone()).map_err(|e| Error::Invalid(e.to_string()))?;
        let operator = operator(req.operator.as_deref());
        let now = veil_consent::now();
        let release_id = random_id();
        let mut summary = ReleaseSummary {
            release_id: release_id.clone(),
            ..Default::default()
        };

        // 1. headers: group by (PatientID, StudyInstanceUID)
        let files = veil_pipeline::walk(&req.inputs).map_err(Error::io("listing the inputs"))?;
        let mut groups: BTreeMap<(String, String), Group> = BTreeMap::new();
        for f in &files {
            let Ok(d) = veil_io::read(f) else {
                summary.unreadable += 1;
                continue;
            };
            if d.is_dicomdir() {
                summary.unreadable += 1;
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
                });
            g.files.push(f.clone());
            g.sops.insert(sop);
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

        // 2. decide, 3. de-identify, verify
        let default = self.store.default_for(&req.purpose)?;
        let purpose_ok = rec.purposes.iter().any(|p| p == &req.purpose);
        let review = {
            let mut s = req.out.clone().into_os_string();
            s.push(".review");
            PathBuf::from(s)
        };
        let mut entries = Vec::new();
        let mut staged = Vec::new();
        let mut manifest_studies = Vec::new();
        summary.studies = groups.len();
        for g in groups.values() {
            let patient_ref = g.patient.as_ref().map(|p| self.patient_ref(p));
            let study_ref = (!g.study.is_empty()).then(|| self.study_ref(&g.study));
            let sops: Vec<&str> = g.sops.iter().map(String::as_str).collect();
            let mut e = Entry {
                v: 1,
                seq: 0,
                time: now.clone(),
                event: Event::Refusal,
                release_id: release_id.clone(),
                recipient: rec.name.clone(),
                purpose: req.purpose.clone(),
                recipe: rec.recipe_label.clone(),
                key_id: rec.key_id.clone(),
                patient_ref: patient_ref.clone(),
                study_ref,
                output_study_uid: None,
                instances: g.files.len() as u64,
                inputs_digest: Some(sha256_hex(sops.join("\n").as_bytes())),
                output_digest: None,
                verification: "not-run".into(),
                operator: operator.clone(),
                reason: String::new(),
                refers_to: None,
            };
            let refuse = |e: &mut Entry, why: &str, summary: &mut ReleaseSummary| {
                e.reason = why.to_string();
                *summary
                    .refused
                    .entry(why.split(':').next().unwrap_or(why).to_string())
                    .or_default() += 1;
            };
            if g.patient.is_none() {
                refuse(&mut e, "ambiguous: no PatientID", &mut summary);
                entries.push(e);
                staged.push(None);
                continue;
            }
            if g.study.is_empty() {
                refuse(&mut e, "ambiguous: no StudyInstanceUID", &mut summary);
            } else if ambiguous.contains(&g.study) {
                refuse(
                    &mut e,
                    "ambiguous: study under several PatientIDs",
                    &mut summary,
                );
            } else if !purpose_ok {
                refuse(&mut e, "purpose not registered for recipient", &mut summary);
            }
            if !e.reason.is_empty() {
                entries.push(e);
                staged.push(None);
                continue;
            }
            let pref = patient_ref.clone().unwrap_or_default();
            // only consent rows that are exactly the logged versions count
            let consents = match self.covered_consents(&coverage, &pref)? {
                Ok(c) => c,
                Err(why) => {
                    refuse(&mut e, &why, &mut summary);
                    entries.push(e);
                    staged.push(None);
                    continue;
                }
            };
            let o = veil_consent::decide(
                &consents,
                default,
                &Request {
                    recipient: &rec.name,
                    category: rec.category.as_deref(),
                    purpose: &req.purpose,
                    study_uid: &g.study,
                    now: &now,
                },
            );
            if o.decision == Decision::Deny {
                refuse(&mut e, &format!("consent: {}", o.rule), &mut summary);
                entries.push(e);
                staged.push(None);
                continue;
            }
            e.reason = format!("consent: {}", o.rule);
            let batch = veil_pipeline::Batch {
                inputs: g.files.clone(),
                out: req.out.clone(),
                review: review.clone(),
                jobs: req.jobs.max(1),
                policy: &policy,
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
                        if req.out.join(output).is_file() =>
                    {
                        outs.insert(output.clone());
                    }
                    _ => {}
                }
            }
            summary.held_for_review += rep.counts.review;
            if outs.is_empty() {
                refuse(
                    &mut e,
                    "nothing releasable: every instance quarantined or held for review",
                    &mut summary,
                );
                entries.push(e);
                staged.push(None);
                continue;
            }
            let paths: Vec<PathBuf> = outs.iter().map(|o| req.out.join(o)).collect();
            let outcome = verifier
                .map(|v| v.verify(&g.files, &paths))
                .unwrap_or(VerifyOutcome::NotRun);
            e.verification = match &outcome {
                VerifyOutcome::NotRun => "not-run".into(),
                VerifyOutcome::Pass => "pass".into(),
                VerifyOutcome::Findings(n) => format!("fail: {n} findings"),
                VerifyOutcome::Failed(why) => format!("error: {why}"),
            };
            if let VerifyOutcome::Findings(_) | VerifyOutcome::Failed(_) = outcome {
                // fail closed: nothing of this study stays in OUT
                for p in &paths {
                    let _ = std::fs::remove_file(p);
                }
                refuse(
                    &mut e,
                    "verification: findings in the de-identified output",
                    &mut summary,
                );
                entries.push(e);
                staged.push(None);
                continue;
            }
            let mut mfiles = Vec::new();
            let mut digest_text = String::new();
            for (o, p) in outs.iter().zip(&paths) {
                let h = file_sha256(p)?;
                digest_text.push_str(&format!("{o} {h}\n"));
                mfiles.push(ManifestFile {
                    path: o.clone(),
                    sha256: h,
                });
            }
            let out_study = veil_io::read(&paths[0])
                .ok()
                .and_then(|d| d.dataset.ascii(Tag(0x0020, 0x000D)))
                .unwrap_or_default();
            e.event = Event::Release;
            e.output_study_uid = Some(out_study.clone());
            e.output_digest = Some(sha256_hex(digest_text.as_bytes()));
            summary.released += 1;
            summary.instances_released += outs.len();
            manifest_studies.push(ManifestStudy {
                study_instance_uid: out_study,
                instances: outs.len(),
                output_digest: e.output_digest.clone().unwrap_or_default(),
                verification: e.verification.clone(),
                ledger_position: 0,
                files: mfiles,
            });
            let abs_out = std::path::absolute(&req.out).unwrap_or_else(|_| req.out.clone());
            staged.push(Some(veil_store::Staged {
                ledger_seq: 0,
                recipient: rec.name.clone(),
                out_root: abs_out.display().to_string(),
                files: outs.into_iter().collect(),
                created_at: now.clone(),
                expires_at: plus_days(&now, rec.retention_days),
            }));
            entries.push(e);
        }

        // 4. the ledger, then the manifest
        let released_idx: Vec<usize> = entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.event == Event::Release)
            .map(|(i, _)| i)
            .collect();
        let positions = self.append(entries, staged)?;
        for (m, i) in manifest_studies.iter_mut().zip(&released_idx) {
            m.ledger_position = positions[*i];
        }
        summary.ledger_positions = positions;
        if !manifest_studies.is_empty() || req.out.is_dir() {
            let manifest = serde_json::json!({
                "notice": "De-identified release. This manifest holds no patient identifiers: studies are named by their pseudonymous UIDs.",
                "veil_version": env!("CARGO_PKG_VERSION"),
                "release_id": release_id,
                "created": now,
                "recipient": rec.name,
                "purpose": req.purpose,
                "recipe": rec.recipe_label,
                "key_id": rec.key_id,
                "retention_days": rec.retention_days,
                "studies_released": summary.released,
                "studies_excluded": summary.refused_total(),
                "instances_released": summary.instances_released,
                "studies": manifest_studies,
            });
            let bytes =
                serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Invalid(e.to_string()))?;
            veil_io::atomic::write_all(&req.out.join("manifest.json"), &bytes)
                .map_err(Error::io("writing the manifest"))?;
        }
        Ok(summary)
    }
}
