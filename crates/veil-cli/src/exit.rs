//! Exit statuses: one table for every command, printed by `veil --help`
//! and copied into the README (a test checks that the two agree).

/// Did what was asked, and nothing needs a person.
pub const OK: i32 = 0;
/// Done, but something needs a person before the result is used.
pub const ATTENTION: i32 = 1;
/// Could not run: a usage error, or an input, key, recipe or store that
/// cannot be used. Nothing was released.
pub const CANNOT_RUN: i32 = 2;
/// Another run holds OUT's lock.
pub const BUSY: i32 = 3;
/// The storage failed (disk full, quota, read-only).
pub const STORAGE: i32 = 4;

/// The table, as `veil --help` prints it and the README shows it.
pub const TABLE: &str = "\
Exit status (every command):
  0  done; nothing needs a person (a release that refused a study because of
     the patient's consent did what was asked)
  1  done, but something needs a person: inputs quarantined, a file named on
     the command line is not DICOM, verify findings, risk above the
     threshold, a volume that may still show a face (deface could not locate
     it; deface --check-only found one), a release with studies refused for
     another reason than consent, retention that could not delete, a
     ledger or disclosure proof that does not verify, a pull with accession
     numbers not found or studies not moved
  2  could not run: usage, a missing or unreadable input, a key, recipe or
     store that cannot be used, a PACS that cannot be queried; nothing was
     released
  3  busy: another run holds OUT's lock
  4  storage failure (disk full, quota, read-only): run the same command
     again once fixed";

#[cfg(test)]
mod tests {
    #[test]
    fn the_table_lists_every_status_once() {
        for code in [
            super::OK,
            super::ATTENTION,
            super::CANNOT_RUN,
            super::BUSY,
            super::STORAGE,
        ] {
            let lines = super::TABLE
                .lines()
                .filter(|l| l.starts_with(&format!("  {code}  ")))
                .count();
            assert_eq!(lines, 1, "status {code}");
        }
    }
}
