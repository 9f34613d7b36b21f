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
        let dir = dest.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir)?;
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!("{TMP_PREFIX}{}-{name}", std::process::id()));
        let f = File::create(&tmp)?;
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

    /// Flushes and fsyncs, without making the file visible yet (so a
    /// caller can decide under a lock whether to [`Synced::persist`]).
    pub fn sync(mut self) -> io::Result<Synced> {
        let w = self.w.take().expect("not committed");
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        Ok(Synced {
            tmp: std::mem::take(&mut self.tmp),
            dest: std::mem::take(&mut self.dest),
        })
    }
}

/// A complete, fsynced temporary file. Dropping it removes it.
pub struct Synced {
    tmp: PathBuf,
    dest: PathBuf,
}

impl Drop for Synced {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

impl Synced {
    /// Renames into place and fsyncs the folder.
    pub fn persist(mut self) -> io::Result<()> {
        let tmp = std::mem::take(&mut self.tmp);
        fs::rename(&tmp, &self.dest)?;
        if let Some(dir) = self.dest.parent() {
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
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
