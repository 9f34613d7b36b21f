//! Keyed pseudonyms: UIDs, identifiers, date offsets. All stateless: the
//! same key and input give the same output anywhere, with no mapping table.

use crate::key::Key;

/// UIDs under the DICOM root name standard things (SOP classes, transfer
/// syntaxes, coding schemes), never an instance, so they are kept.
pub fn is_standard_uid(uid: &str) -> bool {
    uid.starts_with("1.2.840.10008.")
}

/// Replaces an instance UID by `2.25.<128 bits of HMAC>` (PS3.5 B.2:
/// a UUID-derived UID, at most 44 characters).
pub fn uid(key: &Key, original: &str) -> String {
    let d = key.mac("uid", original.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    format!("2.25.{}", u128::from_be_bytes(b))
}

/// Remaps each value of a (possibly multi-valued) UI element.
pub fn uid_list(key: &Key, value: &str) -> String {
    value
        .split('\\')
        .map(|u| {
            let u = u.trim_matches(|c| c == '\0' || c == ' ');
            if u.is_empty() || is_standard_uid(u) {
                u.to_string()
            } else {
                uid(key, u)
            }
        })
        .collect::<Vec<_>>()
        .join("\\")
}

const B32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

fn base32(bytes: &[u8], n: usize) -> String {
    let mut out = String::with_capacity(n);
    let mut acc: u64 = 0;
    let mut bits = 0;
    for &b in bytes {
        acc = (acc << 8) | b as u64;
        bits += 8;
        while bits >= 5 && out.len() < n {
            bits -= 5;
            out.push(B32[((acc >> bits) & 31) as usize] as char);
        }
        if out.len() >= n {
            break;
        }
    }
    out
}

/// Fills a pseudonym format: `{hash:N}` becomes N base-32 characters of
/// HMAC(label, value); `{patient_id}` the patient pseudonym when given.
pub fn format_id(
    key: &Key,
    format: &str,
    label: &str,
    value: &str,
    patient_id: Option<&str>,
) -> String {
    let d = key.mac(label, value.as_bytes());
    let mut out = String::new();
    let mut rest = format;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let Some(j) = rest[i..].find('}') else {
            out.push_str(&rest[i..]);
            rest = "";
            break;
        };
        let field = &rest[i + 1..i + j];
        if let Some(n) = field.strip_prefix("hash:") {
            let n: usize = n.parse().unwrap_or(12).clamp(1, 51);
            out.push_str(&base32(&d, n));
        } else if field == "hash" {
            out.push_str(&base32(&d, 12));
        } else if field == "patient_id" {
            out.push_str(patient_id.unwrap_or(""));
        }
        rest = &rest[i + j + 1..];
    }
    out.push_str(rest);
    out
}

/// The per-patient date offset in days, within `[min, max]`, from the key
/// and the issuer-qualified Patient ID. Every date of one patient moves by
/// the same amount, so intervals are preserved exactly.
pub fn date_offset(key: &Key, issuer: &str, patient_id: &str, min: i32, max: i32) -> i32 {
    let d = key.mac(
        "date-shift",
        format!("{issuer}\u{1}{patient_id}").as_bytes(),
    );
    let span = (max as i64 - min as i64 + 1).max(1) as u64;
    let r = u64::from_be_bytes(d[..8].try_into().expect("8 bytes"));
    (min as i64 + (r % span) as i64) as i32
}

/// Minutes in a day: the time-of-day part of the offset is below it.
pub const DAY_MINUTES: i64 = 24 * 60;

/// The time-of-day part of the per-patient offset, in whole minutes in
/// `[1, 1440)` (never 0, so no time of day stays as it was), keyed like [`date_offset`] (its own label, so it is
/// independent of the day part). Whole minutes, not seconds, so that a time
/// written to the minute (`HHMM`) keeps its precision and every interval
/// stays exact.
pub fn time_offset(key: &Key, issuer: &str, patient_id: &str) -> i64 {
    let d = key.mac(
        "time-shift",
        format!("{issuer}\u{1}{patient_id}").as_bytes(),
    );
    let r = u64::from_be_bytes(d[..8].try_into().expect("8 bytes"));
    1 + (r % (DAY_MINUTES as u64 - 1)) as i64
}

/// Splits one TM value (`HH`, `HHMM`, `HHMMSS.FFFFFF`, or the old
/// `HH:MM:SS`) into minutes of the day and the rest (seconds and fraction,
/// kept verbatim). `None` if it is not a time.
fn split_tm(v: &str) -> Option<(i64, String)> {
    let t: String = v.chars().filter(|c| *c != ':').collect();
    if !t.is_ascii() || t.len() < 2 {
        return None;
    }
    let num = |s: &str| -> Option<i64> {
        (s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let h = num(&t[..2])?;
    // an `HH` time is read as `HH00`: minute precision is what the shift needs
    let m = if t.len() >= 4 { num(&t[2..4])? } else { 0 };
    if t.len() == 3 || h > 23 || m > 59 {
        return None;
    }
    let rest = t.get(4..).unwrap_or("").to_string();
    if !rest.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    Some((h * 60 + m, rest))
}

/// Whole days that a time crosses when shifted by `minutes` (0 or 1 for an
/// offset in `[0, 1440)`): the paired date moves by them too, so that a
/// DA+TM pair moves as one instant. Reads the first value; 0 when it is not
/// a time (the time is then removed, and the date moves by whole days).
pub fn tm_carry(v: &str, minutes: i64) -> i32 {
    let first = v.split('\\').next().unwrap_or("").trim();
    match split_tm(first) {
        Some((m, _)) => (m + minutes).div_euclid(DAY_MINUTES) as i32,
        None => 0,
    }
}

/// Shifts a TM value (multi-valued or a range `A-B`) by `minutes` modulo a
/// day, keeping seconds and fraction. `None` if a value is not a time.
pub fn shift_tm_value(v: &str, minutes: i64) -> Option<String> {
    let one = |x: &str| -> Option<String> {
        let (m, rest) = split_tm(x)?;
        let n = (m + minutes).rem_euclid(DAY_MINUTES);
        Some(format!("{:02}{:02}{rest}", n / 60, n % 60))
    };
    map_values(v, |x| match x.split_once('-') {
        Some((a, b)) => Some(format!("{}-{}", map_values(a, one)?, map_values(b, one)?)),
        None => one(x),
    })
}

/// Days since 1970-01-01 for a civil date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719468;
    let era = if z >= 0 { z } else { z - 146096 } / 146097;
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Shifts one DA value (`YYYYMMDD`, or the partial `YYYYMM` / `YYYY`, and
/// the old `YYYY.MM.DD`), keeping its precision. `None` if it is not a date.
pub fn shift_date(s: &str, days: i32) -> Option<String> {
    let t: String = s.chars().filter(|c| *c != '.').collect();
    if !t.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let (y, m, d, prec) = match t.len() {
        8 => (
            t[..4].parse().ok()?,
            t[4..6].parse().ok()?,
            t[6..].parse().ok()?,
            8,
        ),
        6 => (t[..4].parse().ok()?, t[4..6].parse().ok()?, 1, 6),
        4 => (t.parse().ok()?, 1, 1, 4),
        _ => return None,
    };
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let (y2, m2, d2) = civil_from_days(days_from_civil(y, m, d) + days as i64);
    if !(0..=9999).contains(&y2) {
        return None;
    }
    Some(match prec {
        8 => format!("{y2:04}{m2:02}{d2:02}"),
        6 => format!("{y2:04}{m2:02}"),
        _ => format!("{y2:04}"),
    })
}

/// Applies `one` to each value of a multi-valued string, keeping empty
/// values; `None` if any value fails.
fn map_values(v: &str, one: impl Fn(&str) -> Option<String>) -> Option<String> {
    v.split('\\')
        .map(|x| {
            let x = x.trim();
            if x.is_empty() {
                Some(String::new())
            } else {
                one(x)
            }
        })
        .collect::<Option<Vec<_>>>()
        .map(|v| v.join("\\"))
}

/// Shifts a DA value that may be multi-valued or a range (`A-B`, `-B`,
/// `A-`).
pub fn shift_da_value(v: &str, days: i32) -> Option<String> {
    map_values(v, |one| match one.split_once('-') {
        Some((a, b)) => Some(format!(
            "{}-{}",
            map_values(a, |d| shift_date(d, days))?,
            map_values(b, |d| shift_date(d, days))?
        )),
        None => shift_date(one, days),
    })
}

/// Shifts DT values (`YYYYMMDDHHMMSS.FFFFFF&ZZXX`; the offset may start
/// with `-`, so DT ranges are not split) by `days` and `minutes`, as one
/// instant: a DT with a time of day moves by both, crossing midnight into
/// the date; one with a date only (or coarser) moves by whole days. The UTC
/// offset suffix and the precision are kept (an `HH` time gains its
/// minutes, which the shift needs).
pub fn shift_dt_value(v: &str, days: i32, minutes: i64) -> Option<String> {
    map_values(v, |one| {
        // DT is ASCII by its grammar (PS3.5 6.2); a value that is not (a
        // crafted or mis-encoded file: fuzzing found one) fails here
        // rather than being cut inside a character
        if !one.is_ascii() {
            return None;
        }
        let (date, rest) = one.split_at(one.len().min(8));
        if date.len() < 4 {
            return None;
        }
        // the time part: digits up to the UTC offset suffix
        let cut = rest.find(['+', '-']).unwrap_or(rest.len());
        let (time, zone) = rest.split_at(cut);
        if date.len() < 8 || time.is_empty() || minutes == 0 {
            return Some(format!("{}{rest}", shift_date(date, days)?));
        }
        let (m, secs) = split_tm(time)?;
        let total = m + minutes;
        let carry = total.div_euclid(DAY_MINUTES) as i32;
        let n = total.rem_euclid(DAY_MINUTES);
        Some(format!(
            "{}{:02}{:02}{secs}{zone}",
            shift_date(date, days + carry)?,
            n / 60,
            n % 60
        ))
    })
}

/// HIPAA Safe Harbor: ages over 89 are reported as 90 or older.
pub fn cap_age(v: &str) -> String {
    let t = v.trim();
    if t.len() == 4 && t.ends_with('Y') {
        if let Ok(n) = t[..3].parse::<u32>() {
            if n > 89 {
                return "090Y".into();
            }
        }
    }
    t.to_string()
}

#[cfg(test)]
mod tests {

    #[test]
    fn issue_22_fuzz_dt_value_that_is_not_ascii_fails_without_a_panic() {
        // a multi-byte character across the 8-byte date part
        assert_eq!(shift_dt_value("202001\u{20ac}1212", 3, 0), None);
        assert_eq!(shift_dt_value("20200101\\2020\u{e9}", 3, 7), None);
        assert_eq!(
            shift_dt_value("20200101120000", 1, 0).as_deref(),
            Some("20200102120000")
        );
    }
    use super::*;

    #[test]
    fn uid_is_valid_and_stable() {
        let k = Key::from_bytes([3; 32]);
        let u = uid(&k, "1.2.3.4");
        assert!(u.starts_with("2.25."));
        assert!(u.len() <= 64);
        assert!(u[5..].chars().all(|c| c.is_ascii_digit()));
        assert!(!u[5..].starts_with('0') || u.len() == 6);
        assert_eq!(u, uid(&k, "1.2.3.4"));
        assert_ne!(u, uid(&Key::from_bytes([4; 32]), "1.2.3.4"));
        assert_eq!(uid_list(&k, "1.2.840.10008.1.2"), "1.2.840.10008.1.2");
    }

    #[test]
    fn formats() {
        let k = Key::from_bytes([3; 32]);
        let p = format_id(&k, "VP{hash:12}", "patient-id", "12345", None);
        assert_eq!(p.len(), 14);
        assert!(p.starts_with("VP"));
        assert_eq!(
            format_id(&k, "ANON^{patient_id}", "patient-name", "X", Some("VPABC")),
            "ANON^VPABC"
        );
    }

    #[test]
    fn dates_shift_and_keep_intervals() {
        assert_eq!(shift_date("20200301", -1).unwrap(), "20200229");
        assert_eq!(shift_date("20210101", 365).unwrap(), "20220101");
        assert_eq!(shift_date("202003", -1).unwrap(), "202002");
        assert_eq!(shift_date("2020.03.01", -1).unwrap(), "20200229");
        assert!(shift_date("2020-03-01", 1).is_none());
        assert_eq!(
            shift_da_value("20200101-20200110", 10).unwrap(),
            "20200111-20200120"
        );
        assert_eq!(
            shift_dt_value("20200101120000.000+0100", -1, 0).unwrap(),
            "20191231120000.000+0100"
        );
        let k = Key::from_bytes([5; 32]);
        let o = date_offset(&k, "", "PID", -100, -10);
        assert!((-100..=-10).contains(&o));
        assert_eq!(o, date_offset(&k, "", "PID", -100, -10));
        for d in [-1000, 0, 10000, 20000] {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
    }

    #[test]
    fn times_move_with_dates_as_one_instant() {
        // 23:59:59.5 plus 1 minute crosses midnight: the paired date moves
        assert_eq!(shift_tm_value("235959.5", 1).unwrap(), "000059.5");
        assert_eq!(tm_carry("235959.5", 1), 1);
        assert_eq!(tm_carry("000000", 1439), 0);
        assert_eq!(shift_tm_value("0000", 1439).unwrap(), "2359");
        assert_eq!(shift_tm_value("23", 90).unwrap(), "0030");
        assert_eq!(shift_tm_value("12:30:15", 30).unwrap(), "130015");
        assert_eq!(
            shift_tm_value("080000-093000\\1000", 60).unwrap(),
            "090000-103000\\1100"
        );
        assert!(shift_tm_value("2460", 1).is_none());
        assert!(shift_tm_value("ab", 1).is_none());
        assert_eq!(
            shift_dt_value("20181231235959.123456+0100", -1, 2).unwrap(),
            "20181231000159.123456+0100"
        );
        assert_eq!(
            shift_dt_value("20181231-0500", 10, 2).unwrap(),
            "20190110-0500"
        );
        assert_eq!(shift_dt_value("2018", 400, 5).unwrap(), "2019");
        let k = Key::from_bytes([5; 32]);
        let t = time_offset(&k, "", "PID");
        assert!((1..DAY_MINUTES).contains(&t));
        assert_eq!(t, time_offset(&k, "", "PID"));
    }

    #[test]
    fn ages() {
        assert_eq!(cap_age("091Y"), "090Y");
        assert_eq!(cap_age("089Y"), "089Y");
        assert_eq!(cap_age("012M"), "012M");
    }
}
