//! Deciding whether text read in an image identifies someone: the object's
//! own identifying values (read before de-identification), fuzzily, since
//! OCR confuses O/0, I/1/L, S/5, B/8 and drops a letter now and then, plus
//! the shapes of dates and record numbers.

use veil_core::Phi;

/// What a piece of text was taken for (never the text itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TextKind {
    /// One of the object's own identifying values.
    OwnValue,
    /// Shaped like a date.
    Date,
    /// Shaped like a record number or other identifier.
    Id,
    /// Introduced by a label such as "MRN:", "DOB", "Name".
    Labelled,
    /// Any text (the "redact all text" mode).
    AnyText,
}

impl TextKind {
    /// Name for reports.
    pub fn name(self) -> &'static str {
        match self {
            TextKind::OwnValue => "own-value",
            TextKind::Date => "date",
            TextKind::Id => "id",
            TextKind::Labelled => "labelled",
            TextKind::AnyText => "text",
        }
    }
}

/// The identifying values of one object, normalized for matching.
pub struct TextMatcher {
    tokens: Vec<Phi<String>>,
}

impl std::fmt::Debug for TextMatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TextMatcher({} tokens)", self.tokens.len())
    }
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];

/// Words that label identifying values on screens and printouts
/// (normalized: upper case, letters and digits only).
const LABELS: &[&str] = &[
    "MRN",
    "MR",
    "ID",
    "PID",
    "DOB",
    "BIRTH",
    "BORN",
    "NAME",
    "PATIENT",
    "PAT",
    "PT",
    "ACC",
    "ACCESSION",
    "SSN",
    "NHS",
    "CHART",
    "ENCOUNTER",
    "FIN",
    "CASE",
];

/// Upper case, letters and digits only.
fn norm(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_uppercase)
        .collect()
}

/// OCR's usual confusions folded to one form.
fn fold(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'O' | 'Q' | 'D' => '0',
            'I' | 'L' | '|' => '1',
            'S' => '5',
            'B' => '8',
            'Z' => '2',
            'G' => '6',
            c => c,
        })
        .collect()
}

impl TextMatcher {
    /// From the object's identifying values (names, IDs, dates, places).
    /// Dates (8 digits) also match in the other common written orders.
    pub fn new(values: &[Phi<String>]) -> TextMatcher {
        let mut tokens: Vec<String> = Vec::new();
        for v in values {
            // Why expose: matching needs the value; it never leaves this
            // struct, whose Debug shows only a count.
            let raw = v.expose();
            let whole = norm(raw);
            if whole.len() >= 3 {
                tokens.push(whole.clone());
            }
            for part in raw.split(|c: char| !c.is_alphanumeric()) {
                let p = norm(part);
                if p.len() >= 3 {
                    tokens.push(p);
                }
            }
            if whole.len() == 8 && whole.bytes().all(|b| b.is_ascii_digit()) {
                let (y, m, d) = (&whole[..4], &whole[4..6], &whole[6..]);
                tokens.push(format!("{m}{d}{y}"));
                tokens.push(format!("{d}{m}{y}"));
                tokens.push(format!("{m}{d}{}", &y[2..]));
                tokens.push(format!("{d}{m}{}", &y[2..]));
                if let Some(mon) = m
                    .parse::<usize>()
                    .ok()
                    .and_then(|m| MONTHS.get(m.checked_sub(1)?))
                {
                    tokens.push(format!("{d}{mon}{y}"));
                }
            }
        }
        tokens.sort();
        tokens.dedup();
        TextMatcher {
            tokens: tokens.into_iter().map(Phi::new).collect(),
        }
    }

    /// What a line of OCR words is taken for, if anything identifying.
    /// Words are also tried joined with their neighbours (OCR splits
    /// "02/12/1964" and "DOE^JOHN" unpredictably).
    pub fn classify(&self, words: &[&str]) -> Option<TextKind> {
        let normed: Vec<String> = words.iter().map(|w| norm(w)).collect();
        let mut candidates: Vec<String> = normed.clone();
        for i in 0..normed.len() {
            let mut acc = normed[i].clone();
            for n in normed.iter().skip(i + 1).take(3) {
                acc.push_str(n);
                candidates.push(acc.clone());
            }
        }
        if candidates.iter().any(|c| c.len() >= 3 && self.is_own(c)) {
            return Some(TextKind::OwnValue);
        }
        // a label says what follows identifies someone, however badly the
        // value itself was read
        if normed.iter().any(|w| LABELS.contains(&w.as_str())) {
            return Some(TextKind::Labelled);
        }
        // shapes on single words only: joined neighbours ("TIS0.0 MI 0.6")
        // look like record numbers by accident
        let found = normed
            .iter()
            .filter(|c| c.len() >= 3)
            .find_map(|c| shape(c));
        // shapes on the raw words too: separators tell dates apart; and
        // three numbers in a row that make a date whose separators OCR
        // dropped ("26 07 2002" read from "26.07.2002")
        found
            .or_else(|| words.iter().find_map(|w| date_with_separators(w)))
            .or_else(|| normed.windows(3).any(spaced_date).then_some(TextKind::Date))
    }

    fn is_own(&self, c: &str) -> bool {
        let fc = fold(c);
        self.tokens.iter().any(|t| {
            let t = t.expose();
            if t.len() < 3 {
                return false;
            }
            let ft = fold(t);
            if fc == ft
                || (ft.len() >= 4 && fc.contains(&ft))
                || (fc.len() >= 5 && ft.contains(&fc))
            {
                return true;
            }
            let allowed = match ft.len() {
                0..=4 => 0,
                5..=7 => 1,
                8..=11 => 2,
                _ => 3,
            };
            allowed > 0
                && fc.len().abs_diff(ft.len()) <= allowed
                && levenshtein(&fc, &ft) <= allowed
        })
    }
}

/// Dates and record numbers by shape, on normalized text.
fn shape(c: &str) -> Option<TextKind> {
    let digits = c.bytes().filter(u8::is_ascii_digit).count();
    let f = fold(c);
    let fdigits = f.bytes().filter(u8::is_ascii_digit).count();
    if (f.len() == 8 || f.len() == 6) && fdigits == f.len() {
        let y = &f[..4];
        if y.starts_with("19")
            || y.starts_with("20")
            || f[4..].starts_with("19")
            || f[4..].starts_with("20")
        {
            return Some(TextKind::Date);
        }
    }
    if MONTHS.iter().any(|m| c.contains(m)) && digits >= 3 {
        return Some(TextKind::Date);
    }
    // record numbers: five or more digits (folded, at least three of them
    // real), or six or more characters of which at least four are digits
    if (fdigits >= 5 && digits >= 3 && fdigits * 4 >= f.len() * 3) || (c.len() >= 6 && digits >= 4)
    {
        return Some(TextKind::Id);
    }
    None
}

/// `12/02/1964`, `1964-02-12`, `12.02.64` and the like.
fn date_with_separators(w: &str) -> Option<TextKind> {
    let parts: Vec<&str> = w.split(['/', '-', '.']).filter(|p| !p.is_empty()).collect();
    (parts.len() == 3
        && parts
            .iter()
            .all(|p| (1..=4).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit())))
    .then_some(TextKind::Date)
}

/// Day, month and a four-digit year (19xx or 20xx) as three separate
/// numbers, in either order: stricter than [`date_with_separators`],
/// since any three numbers on a screen are next to each other somewhere.
fn spaced_date(t: &[String]) -> bool {
    let num = |s: &String| -> Option<u32> {
        (!s.is_empty() && s.len() <= 4 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (Some(a), Some(b), Some(c)) = (num(&t[0]), num(&t[1]), num(&t[2])) else {
        return false;
    };
    let year = |v: u32, s: &String| s.len() == 4 && (1900..2100).contains(&v);
    let day_month =
        |x: u32, y: u32| (1..=31).contains(&x) && (1..=31).contains(&y) && (x <= 12 || y <= 12);
    (year(c, &t[2]) && t[0].len() <= 2 && t[1].len() <= 2 && day_month(a, b))
        || (year(a, &t[0]) && t[1].len() <= 2 && t[2].len() <= 2 && day_month(b, c))
}

fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_date_whose_separators_ocr_dropped_is_a_date() {
        let m = m(&[]);
        assert_eq!(m.classify(&["26", "07", "2002"]), Some(TextKind::Date));
        assert_eq!(m.classify(&["2002", "7", "26"]), Some(TextKind::Date));
        assert_eq!(m.classify(&["26", "7", "260"]), None);
        assert_eq!(m.classify(&["40", "50", "2002"]), None);
    }

    fn m(v: &[&str]) -> TextMatcher {
        TextMatcher::new(
            &v.iter()
                .map(|s| Phi::new(s.to_string()))
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn own_values_match_despite_ocr_errors() {
        let t = m(&["HARTWELL^MARGARET", "7228796", "19640212"]);
        assert_eq!(
            t.classify(&["HARTWEL,", "MARGARET"]),
            Some(TextKind::OwnValue)
        );
        assert_eq!(t.classify(&["ID:", "72287g6"]), Some(TextKind::OwnValue));
        assert_eq!(t.classify(&["02/12/1964"]), Some(TextKind::OwnValue));
        assert_eq!(t.classify(&["12-FEB-1964"]), Some(TextKind::OwnValue));
        assert_eq!(
            t.classify(&["Margaret", "Hartwell"]),
            Some(TextKind::OwnValue)
        );
    }

    #[test]
    fn shapes_and_harmless_text() {
        let t = m(&[]);
        assert_eq!(t.classify(&["03/07/2017"]), Some(TextKind::Date));
        assert_eq!(t.classify(&["ACQ", "00079241539"]), Some(TextKind::Id));
        assert_eq!(t.classify(&["L12-5"]), None);
        assert_eq!(t.classify(&["TIS0.0", "MI", "0.6"]), None);
        assert_eq!(t.classify(&["R"]), None);
        assert_eq!(t.classify(&["MRN:", "826¢R22"]), Some(TextKind::Labelled));
        assert_eq!(
            t.classify(&["Pat.", "Name:", "x"]),
            Some(TextKind::Labelled)
        );
    }
}
