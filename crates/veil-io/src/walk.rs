//! Listing input files.
//!
//! A symbolic link found inside an input folder is not followed by
//! default: a link to a file outside the tree would otherwise be released
//! as if it belonged to it, and a link to an ancestor folder loops. A path
//! given on the command line is the user's choice and is followed (as
//! `find -H` does). With [`WalkOptions::follow_symlinks`], links are
//! followed only to targets inside the given inputs (compared on canonical
//! paths), and a folder reached a second time (a loop) is skipped.
//! A folder that cannot be listed is reported and the walk goes on.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// How to walk.
#[derive(Debug, Clone, Copy, Default)]
pub struct WalkOptions {
    /// Follow symbolic links found inside the inputs (staying inside them).
    pub follow_symlinks: bool,
}

/// Why a path found while walking was not listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// A symbolic link, not followed (the default).
    Symlink,
    /// A symbolic link whose target is outside every input.
    OutsideInputs,
    /// A symbolic link to a folder already walked (a loop, or a second
    /// link to the same folder).
    Loop,
    /// A symbolic link whose target does not exist.
    Dangling,
    /// A folder that could not be listed (the error kind).
    Unreadable(io::ErrorKind),
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skip::Symlink => f.write_str("symbolic link, not followed (see --follow-symlinks)"),
            Skip::OutsideInputs => f.write_str("symbolic link to a target outside the inputs"),
            Skip::Loop => f.write_str("symbolic link to a folder already walked (loop)"),
            Skip::Dangling => f.write_str("symbolic link to nothing"),
            Skip::Unreadable(k) => write!(f, "folder cannot be listed: {}", describe(*k)),
        }
    }
}

/// The files found, sorted, and what was passed over (site-local: these
/// are discovered paths).
#[derive(Debug, Default)]
pub struct Walked {
    /// Regular files, sorted, without repeats.
    pub files: Vec<PathBuf>,
    /// Paths not listed, and why, sorted.
    pub skipped: Vec<(PathBuf, Skip)>,
}

/// Lists the files under the given files and folders, recursively, sorted
/// and without repeats, so every stage sees inputs in the same order and
/// runs are reproducible. Symbolic links inside folders are not followed;
/// a folder that cannot be listed is an error (use [`walk_with`] to go on
/// past it).
pub fn walk(inputs: &[PathBuf]) -> io::Result<Vec<PathBuf>> {
    let w = walk_with(inputs, WalkOptions::default())?;
    if let Some((_, Skip::Unreadable(k))) = w
        .skipped
        .iter()
        .find(|(_, s)| matches!(s, Skip::Unreadable(_)))
    {
        return Err(io::Error::from(*k));
    }
    Ok(w.files)
}

/// Lists the files under the given files and folders (see the module
/// documentation). An input that does not exist or cannot be listed is an
/// error whose message names it ([`input_error`]): the user typed that
/// path, so echoing it tells them nothing new, while paths found below it
/// go only to [`Walked::skipped`] (site-local).
pub fn walk_with(inputs: &[PathBuf], opts: WalkOptions) -> io::Result<Walked> {
    let mut w = Walker {
        opts,
        roots: Vec::new(),
        dirs: HashSet::new(),
        files: Vec::new(),
        skipped: Vec::new(),
    };
    for i in inputs {
        w.roots
            .push(fs::canonicalize(i).map_err(|e| input_error(i, &e))?);
    }
    for i in inputs {
        w.top(i).map_err(|e| input_error(i, &e))?;
    }
    let mut files = std::mem::take(&mut w.files);
    files.sort();
    files.dedup_by(|a, b| a.0 == b.0);
    if opts.follow_symlinks {
        // one file reached by two names (a link inside the inputs) is
        // listed once, under its first name
        let mut seen = HashSet::new();
        files.retain(|(_, id)| seen.insert(*id));
    }
    w.skipped.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(Walked {
        files: files.into_iter().map(|(p, _)| p).collect(),
        skipped: w.skipped,
    })
}

struct Walker {
    opts: WalkOptions,
    /// Canonical inputs: followed links must stay inside one.
    roots: Vec<PathBuf>,
    /// Folders walked, by (device, inode).
    dirs: HashSet<(u64, u64)>,
    files: Vec<(PathBuf, (u64, u64))>,
    skipped: Vec<(PathBuf, Skip)>,
}

impl Walker {
    /// A path the user gave: followed if it is a link; errors stop the walk.
    fn top(&mut self, p: &Path) -> io::Result<()> {
        let md = fs::metadata(p)?;
        if md.is_dir() {
            self.dirs.insert((md.dev(), md.ino()));
            let entries = list(p)?;
            for e in entries {
                self.found(&e);
            }
        } else if md.is_file() {
            self.files.push((p.to_path_buf(), (md.dev(), md.ino())));
        }
        Ok(())
    }

    /// A path found inside an input folder.
    fn found(&mut self, p: &Path) {
        // Veil's own marker and queue index are not inputs or outputs
        if p.file_name().is_some_and(crate::is_bookkeeping) {
            return;
        }
        let lmd = match fs::symlink_metadata(p) {
            Ok(m) => m,
            Err(e) => {
                return self
                    .skipped
                    .push((p.to_path_buf(), Skip::Unreadable(e.kind())))
            }
        };
        let via_link = lmd.file_type().is_symlink();
        let md = if via_link {
            if !self.opts.follow_symlinks {
                return self.skipped.push((p.to_path_buf(), Skip::Symlink));
            }
            let target = match fs::canonicalize(p) {
                Ok(t) => t,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return self.skipped.push((p.to_path_buf(), Skip::Dangling))
                }
                // ELOOP: a chain of links that never ends
                Err(e) if rustix::io::Errno::from_io_error(&e) == Some(rustix::io::Errno::LOOP) => {
                    return self.skipped.push((p.to_path_buf(), Skip::Loop))
                }
                Err(e) => {
                    return self
                        .skipped
                        .push((p.to_path_buf(), Skip::Unreadable(e.kind())))
                }
            };
            if !self.roots.iter().any(|r| target.starts_with(r)) {
                return self.skipped.push((p.to_path_buf(), Skip::OutsideInputs));
            }
            match fs::metadata(&target) {
                Ok(m) => m,
                Err(e) => {
                    return self
                        .skipped
                        .push((p.to_path_buf(), Skip::Unreadable(e.kind())))
                }
            }
        } else {
            lmd
        };
        let id = (md.dev(), md.ino());
        if md.is_dir() {
            if !self.dirs.insert(id) {
                if via_link {
                    self.skipped.push((p.to_path_buf(), Skip::Loop));
                }
                // a real folder walked already through a link: its files
                // are listed
                return;
            }
            match list(p) {
                Ok(entries) => {
                    for e in entries {
                        self.found(&e);
                    }
                }
                Err(e) => self
                    .skipped
                    .push((p.to_path_buf(), Skip::Unreadable(e.kind()))),
            }
        } else if md.is_file() {
            self.files.push((p.to_path_buf(), id));
        }
    }
}

/// `e`, met on an input the user named, as "cannot read input 'scans/':
/// permission denied": the kind is kept (callers still tell a storage
/// failure from the rest), and the message says which input and why in
/// words instead of `PermissionDenied`.
pub fn input_error(input: &Path, e: &io::Error) -> io::Error {
    io::Error::new(
        e.kind(),
        format!(
            "cannot read input '{}': {}",
            input.display(),
            describe(e.kind())
        ),
    )
}

/// An error kind in words, for messages ("permission denied", "no such
/// file or folder").
pub fn describe(kind: io::ErrorKind) -> String {
    match kind {
        io::ErrorKind::NotFound => "no such file or folder".into(),
        io::ErrorKind::PermissionDenied => "permission denied".into(),
        io::ErrorKind::NotADirectory => "not a folder".into(),
        io::ErrorKind::IsADirectory => "is a folder".into(),
        io::ErrorKind::UnexpectedEof => "ends too early (truncated)".into(),
        io::ErrorKind::InvalidData => "not valid data".into(),
        // the standard library's own words ("no storage space", ...)
        k => k.to_string(),
    }
}

/// A folder's entries, sorted (so the walk, and which of two names of one
/// file is kept, does not depend on the file system's order).
fn list(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut v = fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<io::Result<Vec<_>>>()?;
    v.sort();
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("veil-walk-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn links_skipped_by_default_and_followed_inside_the_inputs() {
        let d = scratch("links");
        let inp = d.join("in");
        fs::create_dir_all(inp.join("a")).unwrap();
        crate::atomic::write_all(&inp.join("a/1"), b"x").unwrap();
        crate::atomic::write_all(&d.join("outside"), b"y").unwrap();
        symlink(d.join("outside"), inp.join("to-outside")).unwrap();
        symlink(&inp, inp.join("a/loop")).unwrap();
        symlink(inp.join("a/1"), inp.join("alias")).unwrap();
        symlink(d.join("nothing"), inp.join("dangling")).unwrap();

        let w = walk_with(std::slice::from_ref(&inp), WalkOptions::default()).unwrap();
        assert_eq!(w.files, vec![inp.join("a/1")]);
        assert_eq!(w.skipped.len(), 4);
        assert!(w.skipped.iter().all(|(_, s)| *s == Skip::Symlink));

        let follow = WalkOptions {
            follow_symlinks: true,
        };
        let w = walk_with(std::slice::from_ref(&inp), follow).unwrap();
        assert_eq!(w.files, vec![inp.join("a/1")], "alias listed once");
        let why: Vec<_> = w
            .skipped
            .iter()
            .map(|(p, s)| (p.strip_prefix(&inp).unwrap().to_path_buf(), *s))
            .collect();
        assert_eq!(
            why,
            vec![
                (PathBuf::from("a/loop"), Skip::Loop),
                (PathBuf::from("dangling"), Skip::Dangling),
                (PathBuf::from("to-outside"), Skip::OutsideInputs),
            ]
        );
        // a link given on the command line is followed
        let w = walk_with(&[inp.join("alias")], WalkOptions::default()).unwrap();
        assert_eq!(w.files, vec![inp.join("alias")]);
        fs::remove_dir_all(&d).unwrap();
    }
}
