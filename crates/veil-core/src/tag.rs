//! Tags, tag patterns (the wildcard rows of PS3.15 Table E.1-1) and paths
//! through sequences.
//!
//! Veil has its own small `Tag` so this vocabulary crate needs no DICOM
//! dependency; conversions to dicom-rs types live in `veil-io`.

use std::fmt;

/// A DICOM attribute tag (group, element).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct Tag(pub u16, pub u16);

impl Tag {
    /// Private attributes live in odd groups (PS3.5 7.8).
    pub fn is_private(self) -> bool {
        self.0 % 2 == 1
    }

    /// A private creator element reserves a block: (gggg,0010)-(gggg,00FF).
    pub fn is_private_creator(self) -> bool {
        self.is_private() && (0x0010..=0x00FF).contains(&self.1)
    }

    /// Group length elements (gggg,0000) are retired outside the meta group.
    pub fn is_group_length(self) -> bool {
        self.1 == 0
    }

    /// Parses `(GGGG,EEEE)`, `GGGG,EEEE` or `GGGGEEEE`.
    pub fn parse(s: &str) -> Option<Tag> {
        let t: String = s
            .chars()
            .filter(|c| !matches!(c, '(' | ')' | ',' | ' '))
            .collect();
        if t.len() != 8 {
            return None;
        }
        let g = u16::from_str_radix(&t[..4], 16).ok()?;
        let e = u16::from_str_radix(&t[4..], 16).ok()?;
        Some(Tag(g, e))
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({:04X},{:04X})", self.0, self.1)
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Which tags a rule row applies to. Table E.1-1 mixes exact tags with
/// wildcard rows (curves `(50XX,XXXX)`, overlays `(60XX,3000)`, private
/// attributes "where GGGG is odd").
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum TagPattern {
    /// One tag.
    Exact(Tag),
    /// Tags whose group and element, masked, equal the given values
    /// (an `X` digit in the table masks to 0).
    Masked {
        /// group value after masking
        group: u16,
        /// mask for the group
        group_mask: u16,
        /// element value after masking
        element: u16,
        /// mask for the element
        element_mask: u16,
    },
    /// Every attribute in an odd group.
    OddGroup,
}

impl TagPattern {
    /// Does the pattern cover this tag?
    pub fn matches(&self, tag: Tag) -> bool {
        match *self {
            TagPattern::Exact(t) => t == tag,
            TagPattern::Masked {
                group,
                group_mask,
                element,
                element_mask,
            } => tag.0 & group_mask == group && tag.1 & element_mask == element,
            TagPattern::OddGroup => tag.is_private(),
        }
    }

    /// Parses the tag column of Table E.1-1: `(GGGG,EEEE)` with `X` for any
    /// hex digit, or the "WHERE GGGG IS ODD" sentence.
    pub fn parse(s: &str) -> Option<TagPattern> {
        let s = s.trim();
        if s.to_ascii_uppercase().contains("WHERE GGGG IS ODD") {
            return Some(TagPattern::OddGroup);
        }
        let t: String = s
            .chars()
            .filter(|c| !matches!(c, '(' | ')' | ',' | ' '))
            .collect();
        if t.len() != 8 {
            return None;
        }
        if !t.contains(['X', 'x']) {
            return Tag::parse(&t).map(TagPattern::Exact);
        }
        let (mut val, mut mask) = (0u32, 0u32);
        for c in t.chars() {
            val <<= 4;
            mask <<= 4;
            if c != 'X' && c != 'x' {
                val |= c.to_digit(16)?;
                mask |= 0xF;
            }
        }
        Some(TagPattern::Masked {
            group: (val >> 16) as u16,
            group_mask: (mask >> 16) as u16,
            element: val as u16,
            element_mask: mask as u16,
        })
    }

    /// Exact rows win over wildcard rows when both match.
    pub fn specificity(&self) -> u32 {
        match self {
            TagPattern::Exact(_) => 32,
            TagPattern::Masked {
                group_mask,
                element_mask,
                ..
            } => group_mask.count_ones() + element_mask.count_ones(),
            TagPattern::OddGroup => 1,
        }
    }
}

/// Where an attribute sits: the tags of the enclosing sequences with item
/// indices, then the attribute. Displayed as `(0008,1115)[0]/(0008,1155)`.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct TagPath(pub Vec<(Tag, Option<usize>)>);

impl TagPath {
    /// A path with one more step.
    pub fn child(&self, tag: Tag, item: Option<usize>) -> TagPath {
        let mut v = self.0.clone();
        v.push((tag, item));
        TagPath(v)
    }

    /// The attribute at the end of the path.
    pub fn last(&self) -> Option<Tag> {
        self.0.last().map(|s| s.0)
    }

    /// Number of sequence levels above the attribute.
    pub fn depth(&self) -> usize {
        self.0.len().saturating_sub(1)
    }
}

impl fmt::Display for TagPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (tag, item)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("/")?;
            }
            write!(f, "{tag}")?;
            if let Some(n) = item {
                write!(f, "[{n}]")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for TagPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for TagPath {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_parse_and_match() {
        let curve = TagPattern::parse("(50XX,XXXX)").unwrap();
        assert!(curve.matches(Tag(0x5002, 0x3000)));
        assert!(!curve.matches(Tag(0x6000, 0x3000)));
        let ovl = TagPattern::parse("(60XX,3000)").unwrap();
        assert!(ovl.matches(Tag(0x601E, 0x3000)));
        assert!(!ovl.matches(Tag(0x6000, 0x0010)));
        let odd = TagPattern::parse("(GGGG,EEEE) WHERE GGGG IS ODD").unwrap();
        assert!(odd.matches(Tag(0x0009, 0x1001)));
        assert!(!odd.matches(Tag(0x0008, 0x1001)));
        assert_eq!(
            TagPattern::parse("(0010,0010)"),
            Some(TagPattern::Exact(Tag(0x10, 0x10)))
        );
        assert!(TagPattern::Exact(Tag(1, 1)).specificity() > ovl.specificity());
    }

    #[test]
    fn path_display() {
        let p = TagPath::default()
            .child(Tag(0x0008, 0x1115), Some(0))
            .child(Tag(0x0008, 0x1155), None);
        assert_eq!(p.to_string(), "(0008,1115)[0]/(0008,1155)");
        assert_eq!(p.depth(), 1);
    }
}
