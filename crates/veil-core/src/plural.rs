//! Counts in words for the summaries people read ("1 file", "2 files"):
//! one helper, so every command's summary agrees.

/// `n` and the noun, singular for exactly one: `count(1, "file",
/// "files")` is "1 file", `count(0, ..)` is "0 files".
pub fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn one_is_singular_and_the_rest_plural() {
        assert_eq!(count(0, "file", "files"), "0 files");
        assert_eq!(count(1, "file", "files"), "1 file");
        assert_eq!(count(2, "study", "studies"), "2 studies");
    }
}
