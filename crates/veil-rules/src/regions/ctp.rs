//! CTP DicomPixelAnonymizer scripts, read as CTP reads them
//! (johnperry/CTP, `org.rsna.ctp.stdstages.anonymizer.dicom.PixelScript`
//! and `org.rsna.ctp.objects.DicomObject.matches`):
//!
//! * a signature is the text of `\{[^\}]*\}` (the first `}` closes it);
//! * its regions are every `\([^\)]*\)` between it and the next signature,
//!   kept when they split into four comma-separated integers `x,y,w,h`
//!   (CTP logs and skips the others; so does Veil, as a warning). CTP's
//!   blanking includes the right and bottom edges (`x + w`, `y + h`), so a
//!   region becomes a [`Rect`] one pixel wider and taller than written;
//! * the condition language: operands `Keyword.method("arg")` or
//!   `[gggg,eeee].method("arg")` (or `true`/`false`), `!` (not) over `*`
//!   (and) over `+` (or), left-associative, parentheses, `//` comments,
//!   whitespace and newlines anywhere;
//! * methods: equals, equalsIgnoreCase, contains, containsIgnoreCase,
//!   startsWith(IgnoreCase), endsWith(IgnoreCase), matches (Java
//!   `String.matches`: the whole value); an absent attribute is "".
//!
//! Where CTP fails quietly (an unknown keyword or method, an unquoted
//! argument, a syntax error: the signature is then false and its region
//! never blanked), Veil refuses the file with the line, so that a typo never
//! leaves text in an image.
//!
//! The label of a rule is the heading above it: the section between
//! `*****` banners, the device (a line starting in column 0) and the
//! indented sub-heading, joined with " / ". A rule with no heading of its
//! own keeps the previous one (the file lists several signatures under one
//! heading).

use regex::Regex;

use super::{
    attribute, Cond, CtpOp, Pred, Rect, RectSpec, RegionRule, RegionRules, RegionSpec, RuleError,
    RuleList, RuleRef, RuleWarning,
};

struct Headings {
    in_banner: bool,
    section: Option<String>,
    device: Option<String>,
    sub: Option<String>,
}

impl Headings {
    fn label(&self) -> String {
        let parts: Vec<&str> = [&self.section, &self.device, &self.sub]
            .into_iter()
            .filter_map(|p| p.as_deref())
            .collect();
        if parts.is_empty() {
            "(no heading)".into()
        } else {
            parts.join(" / ")
        }
    }

    /// One line of text between signatures, with rectangles removed.
    /// `at_line_start` is false for the tail of the line a `}` closes.
    fn line(&mut self, raw: &str, at_line_start: bool) {
        let t = raw.trim();
        if t.is_empty() {
            return;
        }
        if t.chars().all(|c| c == '*') {
            self.in_banner = !self.in_banner;
            return;
        }
        if self.in_banner {
            self.section = Some(t.to_string());
            self.device = None;
            self.sub = None;
        } else if at_line_start && !raw.starts_with([' ', '\t']) {
            self.device = Some(t.to_string());
            self.sub = None;
        } else {
            self.sub = Some(t.to_string());
        }
    }
}

fn line_of(text: &str, pos: usize) -> u32 {
    text[..pos].bytes().filter(|&b| b == b'\n').count() as u32 + 1
}

pub(super) fn parse(text: &str, source: &str) -> Result<RegionRules, RuleError> {
    let err = |pos: usize, message: String| RuleError {
        source: source.to_string(),
        line: line_of(text, pos),
        message,
    };
    // Signature spans, as CTP's `\{[^\}]*\}` finds them.
    let mut spans = Vec::new();
    let mut from = 0;
    while let Some(open) = text[from..].find('{').map(|i| i + from) {
        let Some(close) = text[open..].find('}').map(|i| i + open) else {
            break;
        };
        spans.push((open, close + 1));
        from = close + 1;
    }
    let mut heads = Headings {
        in_banner: false,
        section: None,
        device: None,
        sub: None,
    };
    let mut rules: Vec<RegionRule> = Vec::new();
    let mut warnings = Vec::new();
    let mut prev_end = 0;
    for i in 0..=spans.len() {
        let seg_end = spans.get(i).map_or(text.len(), |s| s.0);
        let seg = &text[prev_end..seg_end];
        // Rectangles in this stretch belong to the previous signature.
        let mut cleaned = String::with_capacity(seg.len());
        let mut rest = seg;
        let mut offset = prev_end;
        while let Some(open) = rest.find('(') {
            let Some(close) = rest[open..].find(')').map(|c| c + open) else {
                break;
            };
            cleaned.push_str(&rest[..open]);
            let inner = &rest[open + 1..close];
            let pos = offset + open;
            if i > 0 {
                match region(inner) {
                    Some(Ok(r)) => rules
                        .last_mut()
                        .expect("a signature precedes")
                        .regions
                        .push(RegionSpec {
                            rect: RectSpec::Fixed(r),
                            keep: false,
                        }),
                    Some(Err(m)) => return Err(err(pos, m)),
                    None => warnings.push(RuleWarning {
                        source: source.to_string(),
                        line: line_of(text, pos),
                        message:
                            "parenthesised text is not a region (x,y,w,h); skipped as CTP does"
                                .into(),
                    }),
                }
            }
            rest = &rest[close + 1..];
            offset += close + 1;
        }
        cleaned.push_str(rest);
        for (k, l) in cleaned.split('\n').enumerate() {
            heads.line(l, k > 0 || prev_end == 0);
        }
        let Some(&(open, close)) = spans.get(i) else {
            break;
        };
        let body = &text[open + 1..close - 1];
        let cond = Parser::new(body, open + 1)
            .parse()
            .map_err(|(pos, m)| err(pos, m))?;
        rules.push(RegionRule {
            rule: RuleRef {
                source: source.to_string(),
                line: line_of(text, open),
                label: heads.label(),
            },
            list: RuleList::Graylist,
            regions: Vec::new(),
            cond,
        });
        prev_end = close;
    }
    Ok(RegionRules::from_parts(rules, warnings))
}

/// `x,y,w,h` as CTP's `Signature.addRegion`: `None` unless four fields.
fn region(inner: &str) -> Option<Result<Rect, String>> {
    let f: Vec<&str> = inner.split(',').collect();
    if f.len() != 4 {
        return None;
    }
    let n: Result<Vec<i64>, _> = f.iter().map(|s| s.trim().parse::<i64>()).collect();
    let Ok(n) = n else {
        return Some(Err("region fields must be integers".into()));
    };
    if n[2] <= 0 || n[3] <= 0 {
        return Some(Err("region width and height must be positive".into()));
    }
    let fits = |v: i64| i32::try_from(v).is_ok();
    if !n.iter().all(|&v| fits(v)) {
        return Some(Err("region out of range".into()));
    }
    // CTP blanks columns x..=x+w and rows y..=y+h (`Regions.getRangesFor`
    // keeps rows with `y <= row <= y + h`; `DICOMPixelAnonymizer.
    // blankRegions` fills up to `right + 1`): one more of each than w x h.
    Some(Ok(Rect {
        x: n[0] as i32,
        y: n[1] as i32,
        w: n[2] as u32 + 1,
        h: n[3] as u32 + 1,
    }))
}

enum Tok {
    Operand(Cond),
    Lp,
    Rp,
    Not,
    And,
    Or,
    End,
}

/// Recursive descent equivalent to CTP's operator-precedence parser
/// (precedences `+` 1, `*` 2, `!` 3; a binary operator pops those of equal
/// or higher precedence, so chains are left-associative).
struct Parser<'a> {
    s: &'a str,
    base: usize,
    i: usize,
    next: Option<(usize, Tok)>,
}

type PResult<T> = Result<T, (usize, String)>;

impl<'a> Parser<'a> {
    fn new(s: &'a str, base: usize) -> Self {
        Parser {
            s,
            base,
            i: 0,
            next: None,
        }
    }

    fn parse(mut self) -> PResult<Cond> {
        let c = self.expr()?;
        match self.take()? {
            (_, Tok::End) => Ok(c),
            (p, _) => Err((p, "unexpected text after the condition".into())),
        }
    }

    fn expr(&mut self) -> PResult<Cond> {
        let mut c = self.term()?;
        while matches!(self.peek()?, Tok::Or) {
            self.take()?;
            c = Cond::Or(Box::new(c), Box::new(self.term()?));
        }
        Ok(c)
    }

    fn term(&mut self) -> PResult<Cond> {
        let mut c = self.factor()?;
        while matches!(self.peek()?, Tok::And) {
            self.take()?;
            c = Cond::And(Box::new(c), Box::new(self.factor()?));
        }
        Ok(c)
    }

    fn factor(&mut self) -> PResult<Cond> {
        match self.take()? {
            (_, Tok::Not) => Ok(Cond::Not(Box::new(self.factor()?))),
            (_, Tok::Lp) => {
                let c = self.expr()?;
                match self.take()? {
                    (_, Tok::Rp) => Ok(c),
                    (p, _) => Err((p, "')' expected".into())),
                }
            }
            (_, Tok::Operand(c)) => Ok(c),
            (p, _) => Err((p, "an operand, '!' or '(' expected".into())),
        }
    }

    fn peek(&mut self) -> PResult<&Tok> {
        if self.next.is_none() {
            let t = self.token()?;
            self.next = Some(t);
        }
        Ok(&self.next.as_ref().expect("just set").1)
    }

    fn take(&mut self) -> PResult<(usize, Tok)> {
        match self.next.take() {
            Some(t) => Ok(t),
            None => self.token(),
        }
    }

    fn pos(&self) -> usize {
        self.base + self.i
    }

    /// Whitespace and `//` comments (CTP `Tokenizer.skipWhitespace`).
    fn skip_ws(&mut self) {
        let b = self.s.as_bytes();
        while self.i < b.len() {
            if b[self.i].is_ascii_whitespace() {
                self.i += 1;
            } else if b[self.i] == b'/' && b.get(self.i + 1) == Some(&b'/') {
                while self.i < b.len() && b[self.i] != b'\n' {
                    self.i += 1;
                }
            } else {
                break;
            }
        }
    }

    /// Text up to `delim` outside double quotes (CTP `Operand.getField`),
    /// consuming the delimiter; `None` at the end of the text.
    fn field(&mut self, delim: char) -> Option<&'a str> {
        let start = self.i;
        let mut quoted = false;
        for (k, c) in self.s[start..].char_indices() {
            if c == '"' {
                quoted = !quoted;
            }
            if !quoted && c == delim {
                self.i = start + k + c.len_utf8();
                return Some(&self.s[start..start + k]);
            }
        }
        self.i = self.s.len();
        None
    }

    fn token(&mut self) -> PResult<(usize, Tok)> {
        self.skip_ws();
        let p = self.pos();
        let Some(c) = self.s[self.i..].chars().next() else {
            return Ok((p, Tok::End));
        };
        let simple = match c {
            '(' => Some(Tok::Lp),
            ')' => Some(Tok::Rp),
            '!' => Some(Tok::Not),
            '*' => Some(Tok::And),
            '+' => Some(Tok::Or),
            _ => None,
        };
        if let Some(t) = simple {
            self.i += 1;
            return Ok((p, t));
        }
        if c != '[' && !c.is_alphabetic() {
            return Err((p, format!("unexpected character '{c}'")));
        }
        self.operand(p).map(|c| (p, Tok::Operand(c)))
    }

    fn operand(&mut self, p: usize) -> PResult<Cond> {
        let missing = |what: &str| (p, format!("operand without {what}"));
        // `true` / `false` stand alone; anything else is `Name.method("arg")`.
        let rest = &self.s[self.i..];
        for (word, v) in [("true", true), ("false", false)] {
            if let Some(after) = rest.strip_prefix(word) {
                if !after.starts_with(|c: char| c.is_alphanumeric() || c == '.') {
                    self.i += word.len();
                    return Ok(Cond::Const(v));
                }
            }
        }
        let ident = self.field('.').ok_or_else(|| missing("'.method'"))?.trim();
        let method = self.field('(').ok_or_else(|| missing("'('"))?.trim();
        let arg = self.field(')').ok_or_else(|| missing("')'"))?.trim();
        let arg = arg
            .strip_prefix('"')
            .and_then(|a| a.strip_suffix('"'))
            .filter(|_| arg.len() > 1)
            .ok_or_else(|| {
                (
                    p,
                    format!("{ident}.{method}: the argument must be a quoted string"),
                )
            })?;
        let tag = if ident.starts_with('[') {
            attribute(ident)
                .ok_or_else(|| (p, format!("'{ident}' is not a tag like [0008,0070]")))?
        } else {
            super::keyword_tag(ident)
                .ok_or_else(|| (p, format!("unknown DICOM keyword '{ident}'")))?
        };
        let op = match method {
            "equals" => CtpOp::Equals,
            "equalsIgnoreCase" => CtpOp::EqualsIgnoreCase,
            "contains" => CtpOp::Contains,
            "containsIgnoreCase" => CtpOp::ContainsIgnoreCase,
            "startsWith" => CtpOp::StartsWith,
            "startsWithIgnoreCase" => CtpOp::StartsWithIgnoreCase,
            "endsWith" => CtpOp::EndsWith,
            "endsWithIgnoreCase" => CtpOp::EndsWithIgnoreCase,
            "matches" => {
                let re = Regex::new(&format!("^(?:{arg})$"))
                    .map_err(|_| (p, format!("{ident}.matches: invalid regular expression")))?;
                return Ok(Cond::Test(Some(tag), Pred::CtpMatches(re)));
            }
            m => return Err((p, format!("unknown method '{m}' (CTP knows equals, equalsIgnoreCase, contains, containsIgnoreCase, startsWith, startsWithIgnoreCase, endsWith, endsWithIgnoreCase, matches)"))),
        };
        Ok(Cond::Test(Some(tag), Pred::Ctp(op, arg.to_string())))
    }
}
