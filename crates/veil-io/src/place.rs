//! Where inputs are read and outputs written, local or in S3, behind one
//! blocking API: what `veil deid` on `s3://` and the Python package (and
//! through it the Spark job) share.
//!
//! Why one type for both kinds: the rules that make a release safe are
//! the same wherever the bytes live. Inputs are listed in one order (the
//! local walk's, sorted; object keys sorted), so "the first input of an
//! instance is released" picks the same input everywhere. An output
//! appears only complete (a local temporary file renamed after fsync; an
//! object written by one PUT or a multipart upload completed last), so a
//! reader never sees half an output and a rerun can skip what exists.
//! Names and keys can carry PHI: errors name the operation and the kind of
//! failure, never the path or key.

use std::path::{Component, Path, PathBuf};

use crate::objects::{Bucket, Location, ObjectError, S3Options};

/// An input folder or file, or an S3 prefix to read from.
pub enum Inputs {
    /// Local files and folders.
    Local(PathBuf),
    /// Objects below a bucket's prefix.
    S3(Bucket),
}

/// One input: a local path or an object key (relative to the prefix).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Input {
    /// A local file.
    Local(PathBuf),
    /// An object key below the prefix.
    Key(String),
}

impl Inputs {
    /// Opens `location` for reading (S3 credentials and endpoint from the
    /// environment).
    pub fn open(location: &str) -> Result<Inputs, ObjectError> {
        Ok(match Location::parse(location)? {
            Location::Local(p) => Inputs::Local(p),
            Location::S3 { bucket, prefix } => {
                Inputs::S3(Bucket::open(&bucket, &prefix, &S3Options::default())?)
            }
        })
    }

    /// Every input with its size, in `veil deid`'s order: the local walk
    /// (sorted paths, bookkeeping files left out, links not followed), or
    /// the keys sorted.
    pub fn list(&self) -> Result<Vec<(Input, u64)>, ObjectError> {
        match self {
            Inputs::Local(p) => {
                let files = crate::walk(std::slice::from_ref(p)).map_err(|e| io("list", &e))?;
                files
                    .into_iter()
                    .map(|f| {
                        let n = std::fs::metadata(&f).map_err(|e| io("list", &e))?.len();
                        Ok((Input::Local(f), n))
                    })
                    .collect()
            }
            Inputs::S3(b) => Ok(b
                .list()?
                .into_iter()
                .filter(|(k, _)| {
                    let name = k.rsplit('/').next().unwrap_or(k);
                    !crate::is_bookkeeping(std::ffi::OsStr::new(name))
                })
                .map(|(k, n)| (Input::Key(k), n))
                .collect()),
        }
    }

    /// The input's bytes.
    pub fn read(&self, input: &Input) -> Result<Vec<u8>, ObjectError> {
        match (self, input) {
            (_, Input::Local(p)) => std::fs::read(p).map_err(|e| io("read", &e)),
            (Inputs::S3(b), Input::Key(k)) => b.get(k),
            (Inputs::Local(_), Input::Key(_)) => Err(ObjectError::Location {
                field: "input",
                reason: "is an object key, but the inputs are local",
            }),
        }
    }
}

/// An output root (OUT or a review folder): a local folder or an S3
/// prefix. Relative names are Veil's own (pseudonyms, `/`-separated).
pub enum Root {
    /// A local folder.
    Local(PathBuf),
    /// A bucket and prefix.
    S3(Bucket),
}

impl Root {
    /// Opens `location` for writing (S3 credentials and endpoint from the
    /// environment).
    pub fn open(location: &str) -> Result<Root, ObjectError> {
        Ok(match Location::parse(location)? {
            Location::Local(p) => Root::Local(p),
            Location::S3 { bucket, prefix } => {
                Root::S3(Bucket::open(&bucket, &prefix, &S3Options::default())?)
            }
        })
    }

    /// Whether this root is in S3.
    pub fn is_s3(&self) -> bool {
        matches!(self, Root::S3(_))
    }

    fn local(dir: &Path, rel: &str) -> Result<PathBuf, ObjectError> {
        let p = Path::new(rel);
        if rel.is_empty() || !p.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(ObjectError::Location {
                field: "output name",
                reason: "is not a plain relative path",
            });
        }
        Ok(dir.join(p))
    }

    /// The local path of `rel`, its folders made (for `op`'s errors).
    fn local_target(dir: &Path, rel: &str, op: &'static str) -> Result<PathBuf, ObjectError> {
        let p = Root::local(dir, rel)?;
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io(op, &e))?;
        }
        Ok(p)
    }

    /// Writes `rel` so that it appears only complete: a temporary file,
    /// fsync, rename (parents made as needed); or one object.
    pub fn write(&self, rel: &str, bytes: &[u8]) -> Result<(), ObjectError> {
        match self {
            Root::Local(d) => {
                let p = Root::local_target(d, rel, "write")?;
                crate::atomic::write_all(&p, bytes).map_err(|e| io("write", &e))
            }
            Root::S3(b) => b.put_complete(rel, bytes),
        }
    }

    /// Writes `rel` as [`Root::write`] does, but locally without the fsyncs
    /// (of the file and of its folder): for a writer that makes a whole
    /// partition durable at once with [`Root::sync`], one journal commit
    /// instead of two per file. `rel` still appears only complete; until
    /// the sync, a power loss may forget it. In S3 the same as `write`.
    pub fn write_deferred(&self, rel: &str, bytes: &[u8]) -> Result<(), ObjectError> {
        match self {
            Root::Local(d) => {
                let p = Root::local_target(d, rel, "write")?;
                let mut f = crate::atomic::AtomicFile::create(&p).map_err(|e| io("write", &e))?;
                std::io::Write::write_all(f.writer(), bytes).map_err(|e| io("write", &e))?;
                f.finish()
                    .and_then(|pending| pending.persist_deferred())
                    .map(|_| ())
                    .map_err(|e| io("write", &e))
            }
            Root::S3(b) => b.put_complete(rel, bytes),
        }
    }

    /// Makes what [`Root::write_deferred`] and [`Root::rename_deferred`]
    /// did durable: locally one `syncfs` of the root's file system; in S3
    /// nothing (a completed PUT is durable).
    pub fn sync(&self) -> Result<(), ObjectError> {
        match self {
            Root::Local(d) if d.exists() => {
                crate::atomic::sync_filesystem(d).map_err(|e| io("sync", &e))
            }
            _ => Ok(()),
        }
    }

    /// Whether `rel` exists (a rerun skips it).
    pub fn exists(&self, rel: &str) -> Result<bool, ObjectError> {
        match self {
            Root::Local(d) => Ok(Root::local(d, rel)?.exists()),
            Root::S3(b) => b.exists(rel),
        }
    }

    /// The bytes of `rel`, or `None` when it does not exist.
    pub fn read(&self, rel: &str) -> Result<Option<Vec<u8>>, ObjectError> {
        if !self.exists(rel)? {
            return Ok(None);
        }
        match self {
            Root::Local(d) => std::fs::read(Root::local(d, rel)?)
                .map(Some)
                .map_err(|e| io("read", &e)),
            Root::S3(b) => b.get(rel).map(Some),
        }
    }

    /// Moves `from` to `to` within the root: a rename (the folder fsynced
    /// after), or, in S3, a copy written whole and then the old object
    /// deleted, so `to` appears only complete either way.
    pub fn rename(&self, from: &str, to: &str) -> Result<(), ObjectError> {
        self.rename_deferred(from, to)?;
        match self {
            Root::Local(d) => match Root::local(d, to)?.parent() {
                Some(parent) => crate::atomic::sync_dir(parent).map_err(|e| io("rename", &e)),
                None => Ok(()),
            },
            Root::S3(_) => Ok(()),
        }
    }

    /// [`Root::rename`] without the folder's fsync locally (see
    /// [`Root::sync`]); in S3 the same.
    pub fn rename_deferred(&self, from: &str, to: &str) -> Result<(), ObjectError> {
        match self {
            Root::Local(d) => {
                let a = Root::local(d, from)?;
                let b = Root::local_target(d, to, "rename")?;
                std::fs::rename(&a, &b).map_err(|e| io("rename", &e))
            }
            Root::S3(bucket) => {
                let bytes = bucket.get(from)?;
                bucket.put_complete(to, &bytes)?;
                bucket.delete(from)
            }
        }
    }

    /// Removes `rel` (nothing when it does not exist); locally also an
    /// empty folder (what a staging area leaves).
    pub fn remove(&self, rel: &str) -> Result<(), ObjectError> {
        match self {
            Root::Local(d) => {
                let p = Root::local(d, rel)?;
                let r = if p.is_dir() {
                    std::fs::remove_dir(&p)
                } else {
                    std::fs::remove_file(&p)
                };
                match r {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(io("remove", &e)),
                }
            }
            Root::S3(b) => b.delete(rel),
        }
    }
}

fn io(op: &'static str, e: &std::io::Error) -> ObjectError {
    ObjectError::Io { op, kind: e.kind() }
}
