//! The durable spool: received instances wait here (they are PHI) until
//! their study is delivered or refused.
//!
//! Layout, mode 0700 throughout, no PHI in any name:
//! - `in/<random>.dcm`: one received instance (128 random bits, hex);
//! - `work/<study id>/out/...`: a study's de-identified outputs, named
//!   from pseudonyms by the pipeline, staged for delivery;
//! - `work/<study id>/review/`: instances the pipeline held for review.
//!
//! An instance is written to a temporary file, fsynced, renamed, and its
//! folder fsynced ([`veil_io::atomic`]) before [`Spool::put`] returns; the
//! caller records it in the store only then, and acknowledges only after
//! that. A file in `in/` that the store does not record was therefore never
//! acknowledged: the sender still has it, and [`Spool::sweep`] deletes it.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::Error;

/// The spool folder.
#[derive(Debug, Clone)]
pub struct Spool {
    root: PathBuf,
}

/// A random name: 128 bits, hex.
pub(crate) fn random_hex(bytes: usize) -> Result<String, Error> {
    let mut b = vec![0u8; bytes];
    getrandom::getrandom(&mut b).map_err(|_| Error::Random)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

impl Spool {
    /// Opens (creating) the spool at `root`: mode 0700, or tightened to it.
    pub fn open(root: &Path) -> Result<Spool, Error> {
        for d in [root.to_path_buf(), root.join("in"), root.join("work")] {
            veil_store::private_dir(&d).map_err(Error::io("creating the spool"))?;
        }
        Ok(Spool {
            root: root.to_path_buf(),
        })
    }

    /// The spool folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file of a spooled instance.
    pub fn instance(&self, name: &str) -> PathBuf {
        self.root.join("in").join(name)
    }

    /// A study's work folder (outputs and review).
    pub fn work(&self, study_id: &str) -> PathBuf {
        self.root.join("work").join(study_id)
    }

    /// Writes one instance durably under a fresh random name and returns
    /// the name. On return the bytes and the name are on disk.
    pub fn put(&self, bytes: &[u8]) -> Result<String, Error> {
        self.put_from(bytes, &mut std::io::empty())
    }

    /// As [`Spool::put`], for an instance that arrives as `head` (built
    /// here: preamble and File Meta) followed by what `rest` yields (the
    /// data set as the network delivers it). Why streamed: a C-STORE of a
    /// 100 MB cine held in memory while it is spooled costs its size per
    /// association; written through, it costs a buffer. A failure reading
    /// `rest` is [`Error::Incomplete`] (the sender broke off); nothing is
    /// left behind either way.
    pub fn put_from(&self, head: &[u8], rest: &mut dyn std::io::Read) -> Result<String, Error> {
        let name = format!("{}.dcm", random_hex(16)?);
        let mut f = veil_io::atomic::AtomicFile::create_private(&self.instance(&name))
            .map_err(Error::io("spooling an instance"))?;
        let w = f.writer();
        w.write_all(head)
            .map_err(Error::io("spooling an instance"))?;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = match rest.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::Incomplete(e.kind())),
            };
            w.write_all(&buf[..n])
                .map_err(Error::io("spooling an instance"))?;
        }
        f.commit().map_err(Error::io("spooling an instance"))?;
        Ok(name)
    }

    /// Deletes one spooled instance (gone already is fine: a crash may
    /// have come after the deletion and before it was recorded).
    pub fn remove_instance(&self, name: &str) -> Result<bool, Error> {
        remove_file(&self.instance(name))
    }

    /// Deletes a study's work folder (gone already is fine).
    pub fn remove_work(&self, study_id: &str) -> Result<bool, Error> {
        match std::fs::remove_dir_all(self.work(study_id)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io("deleting a study's work folder")(e)),
        }
    }

    /// Deletes what no live study accounts for: temporaries of a killed
    /// write, instances the store does not record (never acknowledged),
    /// and work folders of studies not in `work_ids`. Run before intake
    /// starts (a concurrent intake's file exists before its record).
    /// Returns how many entries were deleted.
    pub fn sweep(
        &self,
        live: &BTreeSet<String>,
        work_ids: &BTreeSet<String>,
    ) -> Result<usize, Error> {
        let mut n = 0;
        let list = |d: &Path| -> Result<Vec<(String, PathBuf)>, Error> {
            let rd = std::fs::read_dir(d).map_err(Error::io("listing the spool"))?;
            let mut v = Vec::new();
            for e in rd {
                let e = e.map_err(Error::io("listing the spool"))?;
                v.push((e.file_name().to_string_lossy().into_owned(), e.path()));
            }
            Ok(v)
        };
        for (name, p) in list(&self.root.join("in"))? {
            if !live.contains(&name) && remove_file(&p)? {
                n += 1;
            }
        }
        for (id, _) in list(&self.root.join("work"))? {
            if !work_ids.contains(&id) && self.remove_work(&id)? {
                n += 1;
            }
        }
        if n > 0 {
            tracing::info!(
                entries = n,
                "spool: deleted what no recorded study accounts for (never acknowledged, or left by a crash)"
            );
        }
        Ok(n)
    }

    /// Every file below the spool but the service's lock file.
    pub fn files(&self) -> Vec<PathBuf> {
        fn walk(d: &Path, out: &mut Vec<PathBuf>) {
            let Ok(rd) = std::fs::read_dir(d) else {
                return;
            };
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else if e.file_name() != veil_io::lock::LOCK_NAME {
                    out.push(p);
                }
            }
        }
        let mut v = Vec::new();
        walk(&self.root, &mut v);
        v.sort();
        v
    }
}

fn remove_file(p: &Path) -> Result<bool, Error> {
    match std::fs::remove_file(p) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io("deleting a spooled instance")(e)),
    }
}
