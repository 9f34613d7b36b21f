//! Shared by the test files: where the corpus is.
#![allow(dead_code, clippy::print_stderr)]

use std::path::{Path, PathBuf};

pub use veil_test::{corpus, files};

/// A corpus file by the end of its name.
pub fn find(corpus: &Path, suffix: &str) -> PathBuf {
    files(corpus)
        .into_iter()
        .find(|p| p.to_string_lossy().ends_with(suffix))
        .unwrap_or_else(|| panic!("corpus file *{suffix} missing"))
}
