//! Atomic file creation: write to a temporary file in the same folder,
//! fsync, rename over the final name, fsync the folder. A crash (even
//! `kill -9`) leaves either the complete file or a temporary file that
//! [`clean_temporaries`] removes on the next run, never a partial output.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// Prefix of temporary files; nothing else in an output tree starts with it.
pub const TMP_PREFIX: &str = ".veil-tmp-";

/// A file being written.
pub struct AtomicFile {
    tmp: PathBuf,
    dest: PathBuf,
    w: Option<BufWriter<File>>,
}

impl AtomicFile {
    /// Starts writing `dest` (its folder is created).
    pub fn create(dest: &Path) -> io::Result<AtomicFile> {
        AtomicFile::create_mode(dest, None)
    }

    /// Starts writing `dest` readable by its owner only (mode 0600 from the
    /// first byte, and kept by the rename): site-local reports and exports
    /// that name patients or input files.
    pub fn create_private(dest: &Path) -> io::Result<AtomicFile> {
        AtomicFile::create_mode(dest, Some(0o600))
    }

    fn create_mode(dest: &Path, mode: Option<u32>) -> io::Result<AtomicFile> {
        let dir = parent_dir(dest);
        let dir = dir.as_path();
        fs::create_dir_all(dir)?;
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // unique per process and per call: two threads may write the same
        // destination (duplicate instances) at the same time
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = dir.join(format!("{TMP_PREFIX}{}-{n}-{name}", std::process::id()));
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        if let Some(m) = mode {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(m);
        }
        #[cfg(not(unix))]
        let _ = mode;
        let f = opts.open(&tmp)?;
        Ok(AtomicFile {
            tmp,
            dest: dest.to_path_buf(),
            w: Some(BufWriter::with_capacity(256 * 1024, f)),
        })
    }

    /// The writer.
    pub fn writer(&mut self) -> &mut BufWriter<File> {
        self.w.as_mut().expect("not committed")
    }

    /// Flushes, fsyncs and renames into place.
    pub fn commit(self) -> io::Result<()> {
        self.sync()?.persist()
    }

    /// Flushes and fsyncs, without making the file visible yet.
    pub fn sync(self) -> io::Result<Pending> {
        let (f, pending) = self.close()?;
        // data and the size needed to read it back; other metadata
        // (timestamps) need not hit the disk before the rename
        f.sync_data()?;
        Ok(pending)
    }

    /// Flushes without fsync, for a batch that makes many files durable at
    /// once with [`sync_filesystem`] before renaming any of them.
    pub fn finish(self) -> io::Result<Pending> {
        Ok(self.close()?.1)
    }

    fn close(mut self) -> io::Result<(File, Pending)> {
        let w = self.w.take().expect("not committed");
        let f = w.into_inner().map_err(|e| e.into_error())?;
        let pending = Pending {
            tmp: std::mem::take(&mut self.tmp),
            dest: std::mem::take(&mut self.dest),
        };
        Ok((f, pending))
    }
}

/// A complete temporary file, not yet visible under its name. Dropping it
/// removes it.
pub struct Pending {
    tmp: PathBuf,
    dest: PathBuf,
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

impl Pending {
    /// The temporary file, complete but not yet under its name: a check
    /// (`deid --verify`) can read it before it becomes visible.
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// Makes this file's data durable on its own (fdatasync), for batches
    /// too small to be worth a whole-file-system [`sync_filesystem`].
    pub fn sync_data(&self) -> io::Result<()> {
        File::open(&self.tmp)?.sync_data()
    }

    /// Renames into place and fsyncs the folder, so the new name survives
    /// a power loss. The data must already be durable ([`AtomicFile::sync`]
    /// or [`sync_filesystem`]).
    pub fn persist(self) -> io::Result<()> {
        let dir = self.persist_deferred()?;
        sync_dir(&dir)
    }

    /// Renames into place and returns the folder, whose fsync the caller
    /// does later (once per folder for a batch, instead of once per file).
    /// The file is complete either way; until the folder is synced, a power
    /// loss may forget the new name, and a re-run then writes it again.
    pub fn persist_deferred(mut self) -> io::Result<PathBuf> {
        let tmp = std::mem::take(&mut self.tmp);
        fs::rename(&tmp, &self.dest)?;
        Ok(parent_dir(&self.dest))
    }
}

/// Makes everything written to the file system holding `dir` durable, in
/// one call (Linux `syncfs`). A batch of files written with
/// [`AtomicFile::finish`] costs one journal commit instead of one per file.
pub fn sync_filesystem(dir: &Path) -> io::Result<()> {
    let d = File::open(dir)?;
    rustix::fs::syncfs(&d).map_err(io::Error::from)
}

/// Whether an error is the storage's rather than the file's: disk full,
/// quota exceeded, read-only file system, file too large for it. Such an
/// error says nothing about the input, so the run stops (the CLI's exit
/// code 4) instead of quarantining good inputs one after another; and
/// stopping is what lets a rerun finish exactly as an uninterrupted run
/// would, since no later duplicate of a failed instance gets written.
pub fn is_storage_failure(kind: io::ErrorKind) -> bool {
    matches!(
        kind,
        io::ErrorKind::StorageFull
            | io::ErrorKind::QuotaExceeded
            | io::ErrorKind::ReadOnlyFilesystem
            | io::ErrorKind::FileTooLarge
    )
}

/// The folder of a path; `.` for a bare file name (whose parent is "").
fn parent_dir(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Fsyncs a folder (makes renames in it durable).
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.w.is_some() {
            // not committed: remove the partial file
            self.w = None;
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Writes a small file atomically.
pub fn write_all(dest: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = AtomicFile::create(dest)?;
    f.writer().write_all(bytes)?;
    f.commit()
}

/// Writes a small file atomically, readable by its owner only (0600):
/// `--report` files, verify and risk reports, consent and audit exports.
pub fn write_private(dest: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = AtomicFile::create_private(dest)?;
    f.writer().write_all(bytes)?;
    f.commit()
}

/// Removes temporary files left under `root` by a killed run. Returns how
/// many were removed.
pub fn clean_temporaries(root: &Path) -> io::Result<usize> {
    let mut n = 0;
    if !root.is_dir() {
        return Ok(0);
    }
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let ty = entry.file_type()?;
            if ty.is_dir() {
                stack.push(entry.path());
            } else if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                fs::remove_file(entry.path())?;
                n += 1;
            }
        }
    }
    Ok(n)
}

/// Whether a report path means standard output (`-`).
pub fn is_stdout(dest: &Path) -> bool {
    dest.as_os_str() == "-"
}

/// Writes a report (`--report`, `--json`, `--html`, exports) the way its
/// target asks. `-` is standard output. A regular file or a name that does
/// not exist yet is written atomically and readable by its owner only
/// ([`write_private`]). Anything else the user named (a symbolic link, a
/// FIFO, a character device such as `/dev/stdout`) is written through,
/// never replaced: renaming a temporary file over `/dev/stdout` (as root)
/// or over a link would destroy the special file and leave the report
/// where nobody reads it. A link to a regular file has that file's content
/// replaced (as the shell's `>` does); a FIFO or a device is opened for
/// writing as it is.
pub fn write_report(dest: &Path, bytes: &[u8]) -> io::Result<()> {
    if is_stdout(dest) {
        let mut out = io::stdout().lock();
        return match out.write_all(bytes).and_then(|()| out.flush()) {
            // `veil verify --json - | head` ends quietly
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
            r => r,
        };
    }
    let through = match fs::symlink_metadata(dest) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => return Err(e),
        Ok(m) => !m.file_type().is_file(),
    };
    if !through {
        return write_private(dest, bytes);
    }
    // truncate only a regular file behind a link: O_TRUNC means nothing to
    // a FIFO or a terminal, and a pipe must not lose what was written to it
    let regular_target = fs::metadata(dest).is_ok_and(|m| m.is_file());
    let mut f = fs::OpenOptions::new()
        .write(true)
        // a link to nothing yet: its target is created, as by the shell
        .create(true)
        .truncate(regular_target)
        .open(dest)?;
    f.write_all(bytes)?;
    f.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};

    #[test]
    fn reports_replace_regular_files_and_write_through_the_rest() {
        let d = std::env::temp_dir().join(format!("veil-report-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        // absent, then a regular file: atomic, 0600
        let f = d.join("r.json");
        write_report(&f, b"one").unwrap();
        write_report(&f, b"two").unwrap();
        assert_eq!(fs::read(&f).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // a link: still a link, its target replaced in place
        let l = d.join("link.json");
        std::os::unix::fs::symlink(&f, &l).unwrap();
        write_report(&l, b"3").unwrap();
        assert!(fs::symlink_metadata(&l).unwrap().file_type().is_symlink());
        assert_eq!(fs::read(&f).unwrap(), b"3");
        // a link to nothing yet: its target is created
        let target = d.join("later.json");
        let dangling = d.join("dangling.json");
        std::os::unix::fs::symlink(&target, &dangling).unwrap();
        write_report(&dangling, b"4").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"4");
        // a character device: written through, not replaced
        write_report(Path::new("/dev/null"), b"nothing").unwrap();
        assert!(fs::symlink_metadata("/dev/null")
            .unwrap()
            .file_type()
            .is_char_device());
        let left: Vec<_> = fs::read_dir(&d)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(TMP_PREFIX))
            .collect();
        assert!(left.is_empty(), "no temporary left");
        fs::remove_dir_all(&d).unwrap();
    }
}

/// A private temporary folder (mode 0700, a random name under the
/// system's temporary folder), removed with everything in it on drop. For
/// work that must go through files briefly (reading a series, scanning an
/// output) when the caller holds the objects in memory.
#[derive(Debug)]
pub struct PrivateDir(std::path::PathBuf);

impl PrivateDir {
    /// Creates one; `what` starts its name (no values).
    pub fn new(what: &str) -> io::Result<PrivateDir> {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let mut r = [0u8; 8];
        getrandom::getrandom(&mut r).map_err(|_| io::Error::other("no random source"))?;
        let dir = std::env::temp_dir().join(format!(
            "{what}-{}-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            u64::from_le_bytes(r)
        ));
        let mut b = std::fs::DirBuilder::new();
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            b.mode(0o700);
        }
        b.create(&dir)?;
        Ok(PrivateDir(dir))
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
