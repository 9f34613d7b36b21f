//! Records the commit this `veil` was built from, for `veil --version`:
//! a report or a bug needs to say which code ran, and the crate version
//! alone does not change between commits. Outside a git checkout (a
//! source archive) the commit is "unknown".
#![allow(clippy::print_stdout)]

use std::process::Command;

/// `git ARGS` in this crate's folder, trimmed; None when git or the
/// checkout is missing.
fn git(args: &[&str]) -> Option<String> {
    let o = Command::new("git").args(args).output().ok()?;
    if !o.status.success() {
        return None;
    }
    let s = String::from_utf8(o.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn main() {
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=VEIL_COMMIT={commit}");
    // build again when HEAD moves: HEAD itself (another branch) and the
    // branch's ref (a new commit), wherever this checkout keeps them
    for p in [
        git(&["rev-parse", "--git-path", "HEAD"]),
        git(&["symbolic-ref", "-q", "HEAD"]).and_then(|r| git(&["rev-parse", "--git-path", &r])),
        git(&["rev-parse", "--git-path", "packed-refs"]),
    ]
    .into_iter()
    .flatten()
    // a path that does not exist would make cargo rerun this every build
    .filter(|p| std::path::Path::new(p).exists())
    {
        println!("cargo:rerun-if-changed={p}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
