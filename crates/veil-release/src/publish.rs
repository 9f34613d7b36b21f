//! Where a release lives before it is published, how it is published, how
//! an interrupted one is recovered, and which files retention may delete.
//!
//! Why: OUT is what a recipient gets. A file must never sit there unless
//! the signed ledger logs it and it passed verification, whatever fails
//! and whenever the process dies. So a release is built in a folder Veil
//! owns beside OUT (the *control folder* `.<OUT name>.veil-release`, mode
//! 0700, on OUT's file system so that publishing is a rename), verified
//! there, logged, and only then renamed into OUT, the files first and
//! `manifest.json` last.
//!
//! Each release has `<id>.staging/` in the control folder: `files/` (the
//! de-identified tree) and `journal.json` (its stage and, once verified,
//! the manifest with every file's SHA-256). After publishing, an
//! `<id>.published` marker stays and the staging folder goes. Whether a
//! release was logged is read from the ledger itself, never from the
//! journal: the ledger append and a journal write cannot be one atomic
//! step, and the ledger is the record that counts. On the next run (or
//! `veil release --recover`), a staged release the ledger does not know is
//! discarded, and one it logs is published after every file's SHA-256 is
//! checked against the manifest, whose per-study digests must equal the
//! `output_digest`s the ledger signed.
//!
//! Retention trusts the database for nothing but which ledger entry ended
//! its retention: the folder must carry Veil's `.published` marker for that
//! release, the file list comes from OUT's manifest only when its digest
//! equals the signed entry's, paths are plain relative names inside OUT
//! (no `..`, no symlink), and a file is deleted only if its SHA-256 is
//! still the released one.

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use veil_ledger::{Entry, Event};

use crate::Error;

/// Suffix of the control folder's name, beside OUT.
pub(crate) const CONTROL_SUFFIX: &str = ".veil-release";
/// Names in OUT starting with this are Veil's own bookkeeping (the lock
/// file, temporaries), not content: they do not make OUT "not empty".
const OWN_PREFIX: &str = ".veil-";

/// How far a staged release got. Informational except [`Stage::Logged`],
/// which, when the ledger has no entry for the release, means the ledger
/// lost entries (truncated, or another store): recovery then refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Stage {
    /// De-identifying and verifying into `files/`.
    Staging,
    /// Verified; the manifest is final but for the ledger positions.
    Verified,
    /// The ledger append committed.
    Logged,
}

/// `journal.json` of a staged release.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Journal {
    pub release_id: String,
    pub stage: Stage,
    pub recipient: String,
    pub purpose: String,
    /// The manifest to publish (from [`Stage::Verified`] on).
    pub manifest: Option<serde_json::Value>,
}

/// One released study in the manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ManifestStudy {
    pub study_instance_uid: String,
    pub instances: usize,
    pub output_digest: String,
    pub verification: String,
    pub ledger_position: u64,
    pub files: Vec<ManifestFile>,
}

/// One released file: its path under OUT and its SHA-256.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ManifestFile {
    pub path: String,
    pub sha256: String,
}

/// The digest the ledger records for a study: SHA-256 over its files'
/// `path sha256` lines, in manifest order.
pub(crate) fn output_digest(files: &[ManifestFile]) -> String {
    let mut h = Sha256::new();
    for f in files {
        h.update(format!("{} {}\n", f.path, f.sha256).as_bytes());
    }
    veil_ledger::hex(&h.finalize())
}

/// SHA-256 of a file, hex.
pub(crate) fn file_sha256(p: &Path) -> Result<String, Error> {
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

/// A path under OUT as Veil writes them: relative, plain names only (no
/// `..`, no root, no `.`). Anything else is refused, wherever it came from.
pub(crate) fn plain_relative(p: &str) -> Option<&Path> {
    let path = Path::new(p);
    (!p.is_empty() && path.components().all(|c| matches!(c, Component::Normal(_)))).then_some(path)
}

/// A release id as Veil makes them (16 hex digits): anything else found in
/// the control folder is not ours to touch.
fn valid_id(id: &str) -> bool {
    id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// OUT and the control folder beside it.
pub(crate) struct Control {
    /// OUT, absolute, its parent resolved (OUT itself may not exist yet).
    pub out: PathBuf,
    /// `<parent>/.<OUT name>.veil-release`.
    pub dir: PathBuf,
}

impl Control {
    /// The control folder of `out`, without creating anything.
    pub fn locate(out: &Path) -> Result<Control, Error> {
        let abs = std::path::absolute(out).map_err(Error::io("resolving OUT"))?;
        let (Some(parent), Some(name)) = (abs.parent(), abs.file_name()) else {
            return Err(Error::Invalid("OUT must be a folder below /".into()));
        };
        if name == "." || name == ".." {
            return Err(Error::Invalid("OUT must end in a folder name".into()));
        }
        let parent = std::fs::canonicalize(parent).map_err(Error::io("resolving OUT's parent"))?;
        let mut ctl = std::ffi::OsString::from(".");
        ctl.push(name);
        ctl.push(CONTROL_SUFFIX);
        Ok(Control {
            out: parent.join(name),
            dir: parent.join(ctl),
        })
    }

    /// The control folder of `out`, created (0700) with OUT's parent.
    /// Refuses a control folder that is a symlink or not a folder, and an
    /// OUT on another file system (a mount point): publishing must be a
    /// rename.
    pub fn open(out: &Path) -> Result<Control, Error> {
        if let Some(p) = std::path::absolute(out)
            .map_err(Error::io("resolving OUT"))?
            .parent()
        {
            std::fs::create_dir_all(p).map_err(Error::io("creating OUT's parent"))?;
        }
        let c = Control::locate(out)?;
        match std::fs::symlink_metadata(&c.dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(Error::Invalid(format!(
                    "{} exists and is not Veil's release folder",
                    c.dir.display()
                )))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                private_dir(&c.dir).map_err(Error::io("creating the release staging folder"))?
            }
            Err(e) => return Err(Error::io("reading the release staging folder")(e)),
        }
        set_private(&c.dir).map_err(Error::io("securing the release staging folder"))?;
        #[cfg(unix)]
        if c.out.exists() {
            use std::os::unix::fs::MetadataExt;
            let dev = |p: &Path| std::fs::metadata(p).map(|m| m.dev());
            if dev(&c.out).map_err(Error::io("reading OUT"))?
                != dev(&c.dir).map_err(Error::io("reading the release staging folder"))?
            {
                return Err(Error::Invalid(
                    "OUT is a mount point: releases are staged beside OUT and published by rename; give a folder inside it".into(),
                ));
            }
        }
        Ok(c)
    }

    /// The staging folder of a release.
    pub fn staging(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.staging"))
    }

    /// Where a release's files are staged (the pipeline's OUT).
    pub fn files(&self, id: &str) -> PathBuf {
        self.staging(id).join("files")
    }

    fn journal_path(&self, id: &str) -> PathBuf {
        self.staging(id).join("journal.json")
    }

    /// The marker saying that Veil published this release into OUT.
    pub fn marker(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.published"))
    }

    /// Starts a release: its staging folder (0700) and journal.
    pub fn begin(&self, j: &Journal) -> Result<(), Error> {
        private_dir(&self.staging(&j.release_id))
            .map_err(Error::io("creating the release staging folder"))?;
        self.write_journal(j)
    }

    /// Records a stage (atomically: a crash leaves the old or the new one).
    pub fn write_journal(&self, j: &Journal) -> Result<(), Error> {
        let bytes = serde_json::to_vec_pretty(j).map_err(|e| Error::Invalid(e.to_string()))?;
        veil_io::atomic::write_all(&self.journal_path(&j.release_id), &bytes)
            .map_err(Error::io("writing the release journal"))
    }

    /// The journal, if the release got that far.
    pub fn journal(&self, id: &str) -> Result<Option<Journal>, Error> {
        match std::fs::read(self.journal_path(id)) {
            Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|_| {
                Error::Invalid(format!(
                    "the journal of staged release {id} does not parse; nothing was published"
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("reading the release journal")(e)),
        }
    }

    /// Ids of the releases still staged here.
    pub fn pending(&self) -> Result<Vec<String>, Error> {
        let rd = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("listing the release staging folder")(e)),
        };
        let mut ids = Vec::new();
        for e in rd {
            let e = e.map_err(Error::io("listing the release staging folder"))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(id) = name.strip_suffix(".staging").filter(|id| valid_id(id)) {
                ids.push(id.to_string());
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Removes a staged release that was never logged. A removal that
    /// fails is an error: the next run tries again.
    pub fn discard(&self, id: &str) -> Result<(), Error> {
        match std::fs::remove_dir_all(self.staging(id)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("removing an unlogged staged release")(e)),
        }
        veil_io::atomic::sync_dir(&self.dir)
            .map_err(Error::io("syncing the release staging folder"))
    }

    /// Moves a logged release into OUT: checks every staged file against
    /// the manifest and the manifest's studies against the ledger entries
    /// of the release (`logged`: its `release` and `refusal` entries),
    /// then renames the files, writes `manifest.json` last, leaves the
    /// `.published` marker and removes the staging folder. Safe to repeat
    /// after a crash at any point. Returns the instances published.
    pub fn publish(&self, id: &str, logged: &[&Entry]) -> Result<usize, Error> {
        let mismatch = |what: &str| {
            Error::Invalid(format!(
                "staged release {id} does not match its ledger entries ({what}); nothing more was published: run `veil ledger verify`"
            ))
        };
        let j = self
            .journal(id)?
            .filter(|j| j.stage >= Stage::Verified && j.release_id == id)
            .ok_or_else(|| mismatch("no verified journal"))?;
        let mut manifest = j.manifest.ok_or_else(|| mismatch("no manifest"))?;
        let mut studies: Vec<ManifestStudy> = serde_json::from_value(manifest["studies"].clone())
            .map_err(|_| mismatch("manifest"))?;
        let released: Vec<&&Entry> = logged
            .iter()
            .filter(|e| e.event == Event::Release)
            .collect();
        if released.len() != studies.len() {
            return Err(mismatch("number of released studies"));
        }
        let files = self.files(id);
        let mut moves = Vec::new();
        for st in &mut studies {
            let digest = output_digest(&st.files);
            let e = released
                .iter()
                .find(|e| e.output_digest.as_deref() == Some(digest.as_str()))
                .filter(|_| st.output_digest == digest)
                .ok_or_else(|| mismatch("output digest"))?;
            if e.verification != "pass" && e.verification != "not-run" {
                return Err(mismatch("verification"));
            }
            st.ledger_position = e.seq;
            for f in &st.files {
                let rel = plain_relative(&f.path).ok_or_else(|| mismatch("file path"))?;
                let (src, dst) = (files.join(rel), self.out.join(rel));
                if src.is_file() {
                    if file_sha256(&src)? != f.sha256 {
                        return Err(mismatch("a staged file's SHA-256"));
                    }
                    moves.push((src, dst));
                } else if !(dst.is_file() && file_sha256(&dst)? == f.sha256) {
                    // neither staged nor already moved by the interrupted run
                    return Err(mismatch("a staged file is missing"));
                }
            }
        }
        let mut dirs = std::collections::BTreeSet::new();
        for (src, dst) in moves {
            let dir = dst.parent().unwrap_or(&self.out).to_path_buf();
            std::fs::create_dir_all(&dir).map_err(Error::io("creating a folder in OUT"))?;
            std::fs::rename(&src, &dst).map_err(Error::io("publishing a file into OUT"))?;
            dirs.insert(dir);
        }
        for d in &dirs {
            veil_io::atomic::sync_dir(d).map_err(Error::io("syncing OUT"))?;
        }
        let instances = studies.iter().map(|s| s.instances).sum();
        if !studies.is_empty() || self.out.is_dir() {
            manifest["studies"] =
                serde_json::to_value(&studies).map_err(|e| Error::Invalid(e.to_string()))?;
            let bytes =
                serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Invalid(e.to_string()))?;
            veil_io::atomic::write_all(&self.out.join("manifest.json"), &bytes)
                .map_err(Error::io("writing the manifest"))?;
        }
        let marker = serde_json::json!({ "release_id": id, "out": self.out.display().to_string() });
        veil_io::atomic::write_all(&self.marker(id), marker.to_string().as_bytes())
            .map_err(Error::io("writing the release's published marker"))?;
        std::fs::remove_dir_all(self.staging(id))
            .map_err(Error::io("removing a published release's staging folder"))?;
        veil_io::atomic::sync_dir(&self.dir)
            .map_err(Error::io("syncing the release staging folder"))?;
        Ok(instances)
    }
}

/// Whether OUT holds anything but Veil's own bookkeeping files.
pub(crate) fn out_has_content(out: &Path) -> Result<bool, Error> {
    let rd = match std::fs::read_dir(out) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            return Err(Error::Invalid("OUT exists and is not a folder".into()))
        }
        Err(e) => return Err(Error::io("reading OUT")(e)),
    };
    for e in rd {
        let e = e.map_err(Error::io("reading OUT"))?;
        if !e.file_name().to_string_lossy().starts_with(OWN_PREFIX) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The release id recorded in `OUT/manifest.json`, if any.
pub(crate) fn manifest_release_id(out: &Path) -> Option<String> {
    let b = std::fs::read(out.join("manifest.json")).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&b).ok()?;
    v["release_id"].as_str().map(str::to_string)
}

/// The instances `OUT/manifest.json` says were released (0 without one).
pub(crate) fn manifest_instances(out: &Path) -> usize {
    std::fs::read(out.join("manifest.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["instances_released"].as_u64())
        .unwrap_or(0) as usize
}

/// What retention may delete for one released study.
pub(crate) enum Retain {
    /// Checked files to delete, and how many listed files were left
    /// because their content is no longer the released one.
    Delete {
        /// Absolute paths, each a regular file inside the release root.
        files: Vec<PathBuf>,
        /// The release root (canonical), for removing emptied folders.
        root: PathBuf,
        /// Files whose SHA-256 differs from the released one: kept.
        changed: usize,
    },
    /// Not Veil's to delete: why (no path, no value).
    Refuse(String),
}

/// Works out, without trusting the database, which files of a released
/// study retention may delete. `out_root` and `db_files` come from the
/// store (anyone who can write it can change them); `entry` is the signed
/// ledger entry the staged row points to.
pub(crate) fn retention_plan(out_root: &str, db_files: &[String], entry: Option<&Entry>) -> Retain {
    let refuse = |why: &str| Retain::Refuse(why.to_string());
    let Some(e) = entry.filter(|e| e.event == Event::Release) else {
        return refuse("the staged row names no release entry of the ledger");
    };
    let Some(digest) = e.output_digest.as_deref() else {
        return refuse("the release entry has no output digest");
    };
    if !valid_id(&e.release_id) {
        return refuse("the release entry's id is not Veil's");
    }
    // the folder must be one Veil published this very release into
    let Ok(root) = std::fs::canonicalize(out_root) else {
        return refuse("the release folder is gone");
    };
    let Ok(ctl) = Control::locate(&root) else {
        return refuse("the release folder has no parent");
    };
    let real_file = |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file());
    let real_dir = |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir());
    if !real_dir(&ctl.dir) || !real_file(&ctl.marker(&e.release_id)) {
        return refuse("not a folder Veil published this release into");
    }
    // the file list: the manifest's, only if the ledger signed its digest
    let mpath = root.join("manifest.json");
    let manifest = real_file(&mpath)
        .then(|| std::fs::read(&mpath).ok())
        .flatten()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
    let Some(m) = manifest.filter(|m| m["release_id"].as_str() == Some(e.release_id.as_str()))
    else {
        return refuse("the folder's manifest is not this release's");
    };
    let studies: Vec<ManifestStudy> =
        serde_json::from_value(m["studies"].clone()).unwrap_or_default();
    let Some(study) = studies
        .into_iter()
        .find(|s| s.output_digest == digest && output_digest(&s.files) == digest)
    else {
        return refuse("the manifest does not hold the study the ledger signed");
    };
    let mut listed: Vec<&str> = study.files.iter().map(|f| f.path.as_str()).collect();
    let mut given: Vec<&str> = db_files.iter().map(String::as_str).collect();
    listed.sort_unstable();
    given.sort_unstable();
    if listed != given {
        return refuse("the staged row's file list differs from the signed one");
    }
    let mut files = Vec::new();
    let mut changed = 0;
    for f in &study.files {
        let Some(rel) = plain_relative(&f.path) else {
            return refuse("a file path is not a plain relative name");
        };
        // every folder on the way a real folder, the file a regular file:
        // no symlink is followed out of the root
        let mut p = root.clone();
        let mut ok = true;
        let n = rel.components().count();
        for (i, c) in rel.components().enumerate() {
            p.push(c);
            ok &= if i + 1 == n {
                real_file(&p)
            } else {
                real_dir(&p)
            };
            if !ok {
                break;
            }
        }
        if !ok || !std::fs::canonicalize(&p).is_ok_and(|c| c.starts_with(&root)) {
            continue; // gone (or replaced by something that is not the release's file)
        }
        match file_sha256(&p) {
            Ok(h) if h == f.sha256 => files.push(p),
            _ => changed += 1,
        }
    }
    Retain::Delete {
        files,
        root,
        changed,
    }
}

/// Creates a folder readable by its owner only.
fn private_dir(p: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(p)
}

/// Tightens an existing folder to 0700.
fn set_private(p: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700))?;
    }
    #[cfg(not(unix))]
    let _ = p;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_paths() {
        assert!(plain_relative("a/b.dcm").is_some());
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "./a", "a/.."] {
            assert!(plain_relative(bad).is_none(), "{bad}");
        }
    }
}
