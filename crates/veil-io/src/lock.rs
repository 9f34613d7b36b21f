//! One writer per output folder.
//!
//! Two runs writing the same OUT remove each other's temporaries (each
//! starts by cleaning those of a killed run), so one quarantines good
//! inputs and the other fails, and files go missing. [`OutLock::acquire`]
//! takes an exclusive `flock` on `OUT/.veil-lock`, which names its holder
//! (pid and host) for the refusal message. The kernel drops the lock when
//! the holder exits, however it exits, so a lock left by a crash cannot
//! block the next run: its file is found unlocked but not empty, which is
//! how a stale lock is recognised and taken over.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};

/// Name of the lock file inside the locked folder.
pub const LOCK_NAME: &str = ".veil-lock";

/// Why a folder could not be locked.
#[derive(Debug)]
pub enum LockError {
    /// Another live run holds it.
    Busy {
        /// Who holds it, as the holder wrote it (`pid N on host H`), or
        /// `unknown` when it had not written it yet.
        holder: String,
    },
    /// The folder or its lock file could not be created or locked.
    Io(io::Error),
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::Busy { holder } => write!(
                f,
                "another veil run is writing this output folder ({holder}); \
                 wait for it to finish or choose another --out"
            ),
            LockError::Io(e) => write!(f, "cannot lock the output folder: {:?}", e.kind()),
        }
    }
}

impl From<io::Error> for LockError {
    fn from(e: io::Error) -> Self {
        LockError::Io(e)
    }
}

/// An exclusive lock on a folder, held until dropped (or the process
/// ends). Dropping it removes the lock file.
#[derive(Debug)]
pub struct OutLock {
    path: PathBuf,
    file: File,
    stale: Option<String>,
}

impl OutLock {
    /// Creates `dir` if needed and locks it, without waiting: a folder
    /// locked by a live run is [`LockError::Busy`].
    pub fn acquire(dir: &Path) -> Result<OutLock, LockError> {
        fs::create_dir_all(dir)?;
        let path = dir.join(LOCK_NAME);
        loop {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&path)?;
            match flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => {}
                Err(rustix::io::Errno::WOULDBLOCK) => {
                    let holder = read_holder(&mut file).unwrap_or_else(|| "unknown".into());
                    return Err(LockError::Busy { holder });
                }
                Err(e) => return Err(LockError::Io(e.into())),
            }
            // the holder removes the file (still locked) when it finishes:
            // a lock taken on the removed file guards nothing, so retry on
            // the file now under the name
            let mine = file.metadata()?;
            match fs::metadata(&path) {
                Ok(m) if m.ino() == mine.ino() && m.dev() == mine.dev() => {}
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            }
            // a holder that finished removed its file; one that was
            // killed left it, unlocked, with its name in it
            let stale = read_holder(&mut file);
            file.set_len(0)?;
            file.rewind()?;
            writeln!(file, "pid {} on host {}", std::process::id(), host())?;
            file.sync_data()?;
            return Ok(OutLock { path, file, stale });
        }
    }

    /// The holder named in a lock file left by a run that died without
    /// releasing it (this lock took it over), if there was one.
    pub fn stale(&self) -> Option<&str> {
        self.stale.as_deref()
    }
}

impl Drop for OutLock {
    fn drop(&mut self) {
        // removed while still locked; the lock goes when `file` closes
        let _ = fs::remove_file(&self.path);
        let _ = self.file.sync_data();
    }
}

/// The holder line of a lock file, if it has one.
fn read_holder(file: &mut File) -> Option<String> {
    let mut s = String::new();
    file.rewind().ok()?;
    file.take(200).read_to_string(&mut s).ok()?;
    let line = s.lines().next()?.trim();
    (!line.is_empty()).then(|| line.to_string())
}

/// This machine's name, for the holder line (a shared folder may be
/// written from several hosts).
fn host() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_and_released_on_drop() {
        let d = std::env::temp_dir().join(format!("veil-lock-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        let a = OutLock::acquire(&d).unwrap();
        assert!(a.stale().is_none());
        let text = fs::read_to_string(d.join(LOCK_NAME)).unwrap();
        assert!(text.starts_with(&format!("pid {} on host ", std::process::id())));
        // flock is per open file: a second open in the same process conflicts
        match OutLock::acquire(&d) {
            Err(LockError::Busy { holder }) => assert_eq!(holder, text.trim()),
            other => panic!("expected Busy, got {other:?}"),
        }
        drop(a);
        assert!(!d.join(LOCK_NAME).exists(), "lock file removed on release");
        // a lock file left unlocked (its holder was killed) is taken over
        crate::atomic::write_all(&d.join(LOCK_NAME), b"pid 4000000 on host elsewhere\n").unwrap();
        let b = OutLock::acquire(&d).unwrap();
        assert_eq!(b.stale(), Some("pid 4000000 on host elsewhere"));
        drop(b);
        fs::remove_dir_all(&d).unwrap();
    }
}
