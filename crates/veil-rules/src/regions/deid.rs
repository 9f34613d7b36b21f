//! pydicom/deid recipe filters, read as deid 0.3 reads them
//! (`deid/config/utils.py` `load_deid`, `parse_label`, `parse_member`;
//! `deid/dicom/filter.py`; `deid/dicom/pixels/detect.py`; `clean.py`):
//!
//! * `%filter NAME` opens a section (Veil knows `whitelist`, `graylist`,
//!   `blacklist`); other `%` sections (`%header`) are not region rules;
//! * `LABEL name # comment` starts a rule; its lines run to the next
//!   `LABEL` or `%` line. `# ...` lines are comments;
//! * a criterion line is `[+|||] action Field [value]` with actions
//!   `contains`, `notcontains`, `equals`, `notequals` (field and value) and
//!   `missing`, `empty`, `present` (field only). Inside a line, `||` and
//!   `+` split it where the rest holds another action word (deid's
//!   `parse_member`: the first of the two operators, and only when the rest
//!   contains a filter word, so `AS+` or `A+B` stay in a value);
//! * `contains` is `re.search` ignoring case (values are regular
//!   expressions: `CT|MR`), `equals` compares trimmed text ignoring case,
//!   `missing`/`present` test presence and `empty` an empty value;
//! * evaluation is left to right **without precedence**: within a line the
//!   inner operators, then the lines joined by their leading `+` (and) or
//!   `||` (or), a line without one joining by and (`evaluate_group`);
//! * `coordinates x0,y0,x1,y1` (corners, end exclusive: `clean.py` masks
//!   `[y0:y1, x0:x1]`), `ctpcoordinates x,y,w,h`, `keepcoordinates` /
//!   `ctpkeepcoordinates` (keep, not blank), `all` and `from:Sequence`
//!   (ultrasound regions). A rule with coordinates and no criterion always
//!   matches; with neither it never does.
//!
//! Departures, each toward flagging or blanking more: deid 0.3.21's
//! `detect.py` flattens all lines' flags before evaluating and so ignores
//! the line joiners (every line ends up and-ed, and the `||` lines of the
//! "Burned In Annotation" blacklist rule never fire); Veil follows the
//! joiners, as deid's documentation and its earlier `detect.py` do. An
//! unrecognised criterion line is an error (deid warns and drops it, which
//! widens the rule silently). Unknown keywords (the file has `Manfacturer`)
//! are absent attributes, as in deid, and listed as warnings.

use regex::Regex;

use super::{
    attribute, Cond, Pred, Rect, RectSpec, RegionRule, RegionRules, RegionSpec, RuleError,
    RuleList, RuleRef, RuleWarning,
};

/// deid's filter action words (`deid.config.standards.filters`).
const FILTERS: [&str; 7] = [
    "contains",
    "notcontains",
    "equals",
    "notequals",
    "missing",
    "present",
    "empty",
];

#[derive(Clone, Copy)]
enum Join {
    And,
    Or,
}

fn join(op: Join, a: Cond, b: Cond) -> Cond {
    match op {
        Join::And => Cond::And(Box::new(a), Box::new(b)),
        Join::Or => Cond::Or(Box::new(a), Box::new(b)),
    }
}

fn starts_with_ci(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len()
        && s.is_char_boundary(prefix.len())
        && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

pub(super) fn parse(text: &str, source: &str) -> Result<RegionRules, RuleError> {
    let err = |line: usize, message: String| RuleError {
        source: source.to_string(),
        line: line as u32,
        message,
    };
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty())
        .collect();
    let mut rules = Vec::new();
    let mut warnings = Vec::new();
    let mut list: Option<RuleList> = None;
    let mut i = 0;
    while i < lines.len() {
        let (n, line) = lines[i];
        i += 1;
        if line.starts_with('#') {
            continue;
        }
        if let Some(sec) = line.strip_prefix('%') {
            let sec = sec.split('#').next().unwrap_or("").trim();
            let mut parts = sec.split_whitespace();
            let kind = parts.next().unwrap_or("").to_ascii_lowercase();
            let name = parts.collect::<Vec<_>>().join(" ").to_ascii_lowercase();
            list = if kind == "filter" {
                Some(match name.as_str() {
                    "whitelist" => RuleList::Whitelist,
                    "graylist" | "greylist" => RuleList::Graylist,
                    "blacklist" => RuleList::Blacklist,
                    _ => {
                        return Err(err(
                            n,
                            "filter section must be whitelist, graylist or blacklist".into(),
                        ))
                    }
                })
            } else {
                None
            };
            continue;
        }
        let Some(list) = list else {
            continue; // FORMAT, %header actions, text outside filters
        };
        if !starts_with_ci(line, "LABEL") {
            return Err(err(n, "a filter section holds LABEL blocks only".into()));
        }
        let label = line[5..].split('#').next().unwrap_or("").trim();
        let mut members = Vec::new();
        while i < lines.len() {
            let (_, l) = lines[i];
            if starts_with_ci(l, "LABEL") || l.starts_with('%') {
                break;
            }
            members.push(lines[i]);
            i += 1;
        }
        let mut cond: Option<Cond> = None;
        let mut regions = Vec::new();
        for (m_line, member) in members {
            if member.starts_with('#') {
                continue;
            }
            if let Some(spec) = coordinates(member).map_err(|m| err(m_line, m))? {
                regions.push(spec);
                continue;
            }
            let (op, rest) = if let Some(r) = member.strip_prefix('+') {
                (Some(Join::And), r.trim())
            } else if let Some(r) = member.strip_prefix("||") {
                (Some(Join::Or), r.trim())
            } else {
                (None, member)
            };
            let lower = rest.to_lowercase();
            if !FILTERS.iter().any(|f| lower.starts_with(f)) {
                return Err(err(
                    m_line,
                    "not a criterion (contains, notcontains, equals, notequals, missing, empty, present) nor coordinates".into(),
                ));
            }
            let c =
                line_condition(rest, m_line, source, &mut warnings).map_err(|m| err(m_line, m))?;
            cond = Some(match cond {
                None => c,
                Some(acc) => join(op.unwrap_or(Join::And), acc, c),
            });
        }
        let cond = cond.unwrap_or(Cond::Const(!regions.is_empty()));
        rules.push(RegionRule {
            rule: RuleRef {
                source: source.to_string(),
                line: n as u32,
                label: if label.is_empty() {
                    "(unnamed)".into()
                } else {
                    label.to_string()
                },
            },
            list,
            regions,
            cond,
        });
    }
    Ok(RegionRules::from_parts(rules, warnings))
}

/// A coordinates line, or `None` when the line is something else.
fn coordinates(member: &str) -> Result<Option<RegionSpec>, String> {
    let kinds = [
        ("ctpkeepcoordinates", true, true),
        ("ctpcoordinates", true, false),
        ("keepcoordinates", false, true),
        ("coordinates", false, false),
    ];
    let Some(&(word, ctp, keep)) = kinds.iter().find(|(w, _, _)| starts_with_ci(member, w)) else {
        return Ok(None);
    };
    let value = member[word.len()..].trim();
    let rect = if value.eq_ignore_ascii_case("all") {
        RectSpec::Fixed(Rect::ALL)
    } else if let Some(field) = value.strip_prefix("from:") {
        RectSpec::FromRegions(
            attribute(field).ok_or_else(|| format!("{word} from: names no known attribute"))?,
        )
    } else {
        let n: Vec<i64> = value
            .split(',')
            .map(|s| s.trim().parse::<i64>())
            .collect::<Result<_, _>>()
            .map_err(|_| format!("{word} needs four integers"))?;
        if n.len() != 4 {
            return Err(format!("{word} needs four integers"));
        }
        let (x, y, w, h) = if ctp {
            (n[0], n[1], n[2], n[3])
        } else {
            (n[0], n[1], n[2] - n[0], n[3] - n[1])
        };
        if x < 0 || y < 0 || w <= 0 || h <= 0 {
            return Err(format!("{word} gives an empty or negative region"));
        }
        if [x, y, w, h].iter().any(|&v| v > i64::from(i32::MAX)) {
            return Err(format!("{word} out of range"));
        }
        RectSpec::Fixed(Rect {
            x: x as i32,
            y: y as i32,
            w: w as u32,
            h: h as u32,
        })
    };
    Ok(Some(RegionSpec { rect, keep }))
}

/// One criterion line as deid's `parse_member` splits it, evaluated left to
/// right.
fn line_condition(
    line: &str,
    n: usize,
    source: &str,
    warnings: &mut Vec<RuleWarning>,
) -> Result<Cond, String> {
    let mut queue = std::collections::VecDeque::from([line.to_string()]);
    let mut ops: Vec<Join> = Vec::new();
    let mut tests: Vec<Cond> = Vec::new();
    while let Some(m) = queue.pop_front() {
        let m = m.trim().to_string();
        let or = m.find("||");
        let and = m.find('+');
        let op = match (or, and) {
            (Some(o), Some(a)) if o >= a => Some("+"),
            (Some(_), _) => Some("||"),
            (None, Some(_)) => Some("+"),
            (None, None) => None,
        };
        let mut head = m.as_str();
        if let Some(op) = op {
            let (h, rest) = m.split_once(op).expect("found above");
            if FILTERS.iter().any(|w| rest.contains(w)) {
                queue.push_back(rest.trim().to_string());
                ops.push(if op == "+" { Join::And } else { Join::Or });
                head = h;
            }
        }
        tests.push(criterion(head, n, source, warnings)?);
    }
    let mut it = tests.into_iter();
    let mut acc = it.next().ok_or("empty criterion")?;
    for (op, t) in ops.into_iter().zip(it) {
        acc = join(op, acc, t);
    }
    Ok(acc)
}

fn criterion(
    text: &str,
    n: usize,
    source: &str,
    warnings: &mut Vec<RuleWarning>,
) -> Result<Cond, String> {
    let text = text.trim_start();
    let (action, rest) = text
        .split_once(' ')
        .ok_or("a criterion needs an action and a field")?;
    let action = action.trim().to_lowercase();
    let (field, value) = match action.as_str() {
        "contains" | "notcontains" | "equals" | "notequals" => {
            let (f, v) = rest
                .split_once(' ')
                .ok_or_else(|| format!("{action} needs a field and a value"))?;
            (f.trim(), Some(v.trim()))
        }
        "missing" | "empty" | "present" => (rest.trim(), None),
        _ => return Err(format!("'{action}' is not a filter action")),
    };
    let tag = attribute(field);
    if tag.is_none() {
        warnings.push(RuleWarning {
            source: source.to_string(),
            line: n as u32,
            message: format!("unknown attribute '{field}': absent, as in deid"),
        });
    }
    let pred = match (action.as_str(), value) {
        ("contains" | "notcontains", Some(v)) => {
            let re = Regex::new(&format!("(?i){v}"))
                .map_err(|_| format!("{action} {field}: invalid regular expression"))?;
            Pred::DeidContains(re, action == "notcontains")
        }
        ("equals" | "notequals", Some(v)) => {
            Pred::DeidEquals(v.to_lowercase(), action == "notequals")
        }
        ("missing", _) => Pred::Missing,
        ("present", _) => Pred::Present,
        _ => Pred::Empty,
    };
    Ok(Cond::Test(tag, pred))
}
