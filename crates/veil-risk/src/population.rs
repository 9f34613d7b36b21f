//! The population table (`--population FILE`): how many people of the
//! population the release was drawn from fall in each class.
//!
//! CSV, UTF-8, one header line then one line per class:
//!
//! ```text
//! # blank lines and lines starting with '#' are ignored
//! sex,age,count
//! F,40,1200
//! M,40,1150
//! ```
//!
//! * The header names every quasi-identifier in use (the names `veil risk`
//!   reports: `age`, `sex`, ... or keywords), in any order, and `count`;
//!   any other column is an error, so a typo cannot silently change a class.
//! * Values are written as the report writes them: ages in whole years,
//!   dates `YYYYMMDD` (or already coarser, `YYYYMM`, `YYYY`), numbers
//!   without trailing zeros; an empty field is "absent"; several values of
//!   one patient are joined with `|` in sorted order.
//! * Fields may be double-quoted (`"A, B"`, `""` for a quote).
//! * `count` is a positive integer; repeated classes add up.

use std::collections::BTreeSet;

use crate::quasi::Quasi;
use crate::RiskError;

/// Joins several values of one patient's quasi-identifier.
pub const SET_SEP: &str = "|";

/// A parsed population table, columns in the order of the quasi list.
#[derive(Debug, Clone, PartialEq)]
pub struct Population {
    /// Each row: the class's values (a set per quasi-identifier) and count.
    pub rows: Vec<(Vec<BTreeSet<String>>, u64)>,
}

fn split_csv(line: &str, n: usize) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            ('"', true) => quoted = false,
            ('"', false) if cur.trim().is_empty() && !was_quoted => {
                cur.clear();
                quoted = true;
                was_quoted = true;
            }
            (',', false) => {
                out.push(if was_quoted {
                    std::mem::take(&mut cur)
                } else {
                    std::mem::take(&mut cur).trim().to_string()
                });
                was_quoted = false;
            }
            (c, _) => cur.push(c),
        }
    }
    if quoted {
        return Err(format!("line {n}: unterminated quote"));
    }
    out.push(if was_quoted {
        cur
    } else {
        cur.trim().to_string()
    });
    Ok(out)
}

/// Splits a field into a patient's set of values.
pub(crate) fn value_set(field: &str) -> BTreeSet<String> {
    field
        .split(SET_SEP)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

impl Population {
    /// Parses the CSV text for these quasi-identifiers. Errors name lines
    /// and columns, never values.
    pub fn parse(text: &str, quasi: &[Quasi]) -> Result<Population, RiskError> {
        let bad = |m: String| RiskError::Population(m);
        let mut lines = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim_end_matches('\r')))
            .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
        let (hn, header) = lines
            .next()
            .ok_or_else(|| bad("empty population table".into()))?;
        let header = split_csv(header.trim_start_matches('\u{feff}'), hn).map_err(bad)?;
        let mut count_col = None;
        let mut col_of = vec![None; quasi.len()];
        for (c, name) in header.iter().enumerate() {
            if name == "count" && count_col.is_none() {
                count_col = Some(c);
                continue;
            }
            match quasi.iter().position(|q| &q.name == name) {
                Some(i) if col_of[i].is_none() => col_of[i] = Some(c),
                Some(_) => return Err(bad(format!("column '{name}' appears twice"))),
                None => {
                    return Err(bad(format!(
                        "column '{name}' is not a quasi-identifier in use (in use: {})",
                        quasi
                            .iter()
                            .map(|q| q.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )))
                }
            }
        }
        let count_col = count_col.ok_or_else(|| bad("no 'count' column".into()))?;
        if let Some(i) = col_of.iter().position(Option::is_none) {
            return Err(bad(format!("no column for '{}'", quasi[i].name)));
        }
        let mut rows = Vec::new();
        for (n, line) in lines {
            let f = split_csv(line, n).map_err(bad)?;
            if f.len() != header.len() {
                return Err(bad(format!(
                    "line {n}: {} fields, the header has {}",
                    f.len(),
                    header.len()
                )));
            }
            let count: u64 = f[count_col]
                .parse()
                .ok()
                .filter(|&c| c > 0)
                .ok_or_else(|| bad(format!("line {n}: count must be a positive integer")))?;
            let values = col_of
                .iter()
                .map(|c| value_set(&f[c.expect("checked above")]))
                .collect();
            rows.push((values, count));
        }
        Ok(Population { rows })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_quoted_reordered_and_rejects_typos() {
        let q = Quasi::parse_list(&["sex", "manufacturer"]).unwrap();
        let p = Population::parse(
            "# comment\n\nmanufacturer,count,sex\r\n\"ACME, Inc.\",12,F\n\"say \"\"hi\"\"\",3,\nGE|ACME,7,M\n",
            &q,
        )
        .unwrap();
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        assert_eq!(p.rows[0], (vec![set(&["F"]), set(&["ACME, Inc."])], 12));
        assert_eq!(p.rows[1], (vec![set(&[]), set(&["say \"hi\""])], 3));
        assert_eq!(p.rows[2], (vec![set(&["M"]), set(&["ACME", "GE"])], 7));
        for bad in [
            "",
            "sex,count\nF,1",        // no manufacturer column
            "sex,manufacturer\nF,A", // no count
            "sex,manufacturer,colour,count\nF,A,red,1",
            "sex,manufacturer,count\nF,A,0",
            "sex,manufacturer,count\nF,A,-3",
            "sex,manufacturer,count\nF,A",
            "sex,manufacturer,count\nF,\"A,1",
        ] {
            assert!(Population::parse(bad, &q).is_err(), "{bad:?}");
        }
    }
}
