//! The Type (PS3.5 7.4) of an attribute at a sequence path in the IOD of a
//! SOP class, from the PS3.3 module and IOD tables that highdicom 0.28.2
//! ships (generated into [`crate::generated::iod`]; provenance in
//! `rules/sources/highdicom-0.28.2/README.md`).
//!
//! Why the engine needs it: Table E.1-1 says X (remove) or Z (empty) for
//! many attributes that some IODs make Type 1 or 1C, and its compound
//! codes (X/Z, X/D, X/Z/D, Z/D) are defined by the Type ("X unless Z or D is
//! required to keep the IOD valid"). Without the Type, the output is either
//! invalid (an empty Type 1C value) or loses more than it must.

use std::fmt;

use veil_core::Tag;

use crate::generated::iod::{IODS, MODULES, NODE_PARENT, NODE_TAG, SOP_CLASSES};

/// An attribute's Type in an IOD.
///
/// The variants are ordered strictest first: a value that satisfies a
/// stricter Type satisfies every weaker one (a real value is valid where
/// an empty one is, and an empty one where absence is).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AttrType {
    /// Required, with a value.
    T1,
    /// Required with a value when a condition holds.
    T1C,
    /// Required, may be empty.
    T2,
    /// Required, may be empty, when a condition holds.
    T2C,
    /// Optional.
    T3,
}

impl AttrType {
    /// Decodes the generator's type code (1 = Type 1 ... 5 = Type 3).
    fn from_code(c: u32) -> AttrType {
        match c {
            1 => AttrType::T1,
            2 => AttrType::T1C,
            3 => AttrType::T2,
            4 => AttrType::T2C,
            _ => AttrType::T3,
        }
    }

    /// The Type as the standard writes it: `1`, `1C`, `2`, `2C` or `3`.
    pub fn as_str(self) -> &'static str {
        match self {
            AttrType::T1 => "1",
            AttrType::T1C => "1C",
            AttrType::T2 => "2",
            AttrType::T2C => "2C",
            AttrType::T3 => "3",
        }
    }

    /// Type 1 or 1C: the attribute needs a value when present.
    pub fn needs_value(self) -> bool {
        matches!(self, AttrType::T1 | AttrType::T1C)
    }

    /// Type 2 or 2C: present, but may be empty.
    pub fn may_be_empty(self) -> bool {
        matches!(self, AttrType::T2 | AttrType::T2C)
    }
}

impl fmt::Display for AttrType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An IOD of the tables (an index into them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Iod(u16);

impl Iod {
    /// The IOD of a SOP class (trailing NUL or space padding ignored);
    /// `None` for a class the tables do not know (private or retired
    /// classes, or newer than the tables).
    pub fn for_sop_class(uid: &str) -> Option<Iod> {
        let uid = uid.trim_end_matches(['\0', ' ']);
        SOP_CLASSES
            .binary_search_by(|(u, _)| (*u).cmp(uid))
            .ok()
            .map(|i| Iod(SOP_CLASSES[i].1))
    }

    /// The IOD's key in the tables, e.g. `ct-image`.
    pub fn key(self) -> &'static str {
        IODS[usize::from(self.0)].0
    }

    /// The Type of the attribute at `path` (the tags of the enclosing
    /// sequences from the top down, then the attribute's own tag), or
    /// `None` when no module of this IOD lists that path.
    ///
    /// When several modules of the IOD list the same path with different
    /// Types, the strictest wins. Why: the tables cannot say which module's
    /// condition holds for a given object (an attribute present in the
    /// object may belong to any of them), and a value valid for the
    /// strictest Type is valid for the weaker ones too, so the strictest
    /// choice never makes an object invalid; at worst it keeps a dummy
    /// value where removal would also have been valid. Example: ImageType
    /// is Type 3 in General Image but Type 1 in CT Image, and dciodvfy
    /// checks the CT Image one.
    pub fn attribute_type(self, path: impl IntoIterator<Item = Tag>) -> Option<AttrType> {
        let node = node_of(path)?;
        IODS[usize::from(self.0)]
            .1
            .iter()
            .filter_map(|&m| {
                let attrs = MODULES[usize::from(m)].1;
                let i = attrs.binary_search_by(|a| (a >> 3).cmp(&node)).ok()?;
                Some(AttrType::from_code(attrs[i] & 7))
            })
            .min()
    }
}

/// Resolves a Table E.1-1 action code that removes or empties (`X`, `Z`,
/// `X/Z`, `X/D`, `X/Z/D`, `Z/D`) against the attribute's Type where it
/// stands: `D` (a dummy or pseudonym) for Type 1 and 1C, `Z` for Type 2 and
/// 2C, `X` for Type 3. `None` for the other codes (`D`, `U`, `K`, `C`,
/// `X/Z/U*`), which already give a valid value.
///
/// Why one mapping for all six: PS3.15 defines the compound codes by the
/// Type ("X unless Z or D is required to maintain IOD conformance"), and a
/// plain `X` or `Z` on an attribute that the object's IOD makes Type 1 or
/// 1C would leave the object invalid (the dciodvfy error "Empty attribute
/// (no value) Type 1C"); the least that keeps the object valid is chosen.
pub fn resolve_code(code: &str, ty: AttrType) -> Option<&'static str> {
    if !removes(code) {
        return None;
    }
    Some(if ty.needs_value() {
        "D"
    } else if ty.may_be_empty() {
        "Z"
    } else {
        "X"
    })
}

/// Whether an E.1-1 action code may remove or empty the attribute, so that
/// [`resolve_code`] fits it to the Type (callers skip the lookup otherwise).
pub fn removes(code: &str) -> bool {
    matches!(code, "X" | "Z" | "X/Z" | "X/D" | "X/Z/D" | "Z/D")
}

/// Shorthand for [`Iod::for_sop_class`] then [`Iod::attribute_type`].
pub fn attribute_type(sop_class: &str, path: impl IntoIterator<Item = Tag>) -> Option<AttrType> {
    Iod::for_sop_class(sop_class)?.attribute_type(path)
}

/// Walks the trie of tag paths: each step finds the child (parent, tag) by
/// binary search in the node list, which the generator sorted by
/// (parent, tag).
fn node_of(path: impl IntoIterator<Item = Tag>) -> Option<u32> {
    let mut node = 0u32;
    for tag in path {
        let t = (u32::from(tag.0) << 16) | u32::from(tag.1);
        // the children of `node` are a contiguous run of NODE_PARENT
        let lo = NODE_PARENT.partition_point(|&p| p < node);
        let hi = lo + NODE_PARENT[lo..].partition_point(|&p| p == node);
        let i = NODE_TAG[lo..hi].binary_search(&t).ok()?;
        node = u32::try_from(lo + i + 1).ok()?;
    }
    (node != 0).then_some(node)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CT: &str = "1.2.840.10008.5.1.4.1.1.2";
    const RAS: Tag = Tag(0x0040, 0x0275); // RequestAttributesSequence

    #[test]
    fn types_in_the_ct_image_iod() {
        let ct = Iod::for_sop_class(CT).expect("CT Image Storage is known");
        assert_eq!(ct.key(), "ct-image");
        // ImageType: Type 3 in General Image, Type 1 in CT Image: strictest
        assert_eq!(ct.attribute_type([Tag(0x0008, 0x0008)]), Some(AttrType::T1));
        // PatientName: Type 2 (Patient module)
        assert_eq!(ct.attribute_type([Tag(0x0010, 0x0010)]), Some(AttrType::T2));
        // OperatorsName: Type 3 (General Series)
        assert_eq!(ct.attribute_type([Tag(0x0008, 0x1070)]), Some(AttrType::T3));
        // RequestAttributesSequence is Type 3; ScheduledProcedureStepID
        // is Type 1C inside it and in no module of the IOD at the top level
        assert_eq!(ct.attribute_type([RAS]), Some(AttrType::T3));
        assert_eq!(
            ct.attribute_type([RAS, Tag(0x0040, 0x0009)]),
            Some(AttrType::T1C)
        );
        assert_eq!(ct.attribute_type([Tag(0x0040, 0x0009)]), None);
        // a code sequence macro inside the request: CodeMeaning Type 1
        assert_eq!(
            ct.attribute_type([RAS, Tag(0x0040, 0x0008), Tag(0x0008, 0x0104)]),
            Some(AttrType::T1)
        );
        // padding as read from a file
        assert_eq!(
            attribute_type("1.2.840.10008.5.1.4.1.1.2\0", [Tag(0x0010, 0x0010)]),
            Some(AttrType::T2)
        );
    }

    #[test]
    fn removal_codes_resolve_by_type() {
        for code in ["X", "Z", "X/Z", "X/D", "X/Z/D", "Z/D"] {
            assert_eq!(resolve_code(code, AttrType::T1), Some("D"));
            assert_eq!(resolve_code(code, AttrType::T1C), Some("D"));
            assert_eq!(resolve_code(code, AttrType::T2), Some("Z"));
            assert_eq!(resolve_code(code, AttrType::T2C), Some("Z"));
            assert_eq!(resolve_code(code, AttrType::T3), Some("X"));
        }
        for code in ["D", "U", "K", "C", "X/Z/U*"] {
            assert_eq!(resolve_code(code, AttrType::T1), None);
            assert_eq!(resolve_code(code, AttrType::T3), None);
        }
    }

    #[test]
    fn unknown_is_none() {
        // a private SOP class
        assert_eq!(attribute_type("1.2.3.4", [Tag(0x0010, 0x0010)]), None);
        let ct = Iod::for_sop_class(CT).expect("known");
        // a private tag, an empty path, a path under a non-sequence
        assert_eq!(ct.attribute_type([Tag(0x0009, 0x1010)]), None);
        assert_eq!(ct.attribute_type([]), None);
        assert_eq!(
            ct.attribute_type([Tag(0x0010, 0x0010), Tag(0x0010, 0x0020)]),
            None
        );
    }

    #[test]
    fn every_sop_class_and_module_index_resolves() {
        for (uid, i) in SOP_CLASSES {
            assert!(usize::from(*i) < IODS.len(), "{uid}");
            assert_eq!(Iod::for_sop_class(uid).map(|i| i.0), Some(*i));
        }
        for (_, mods) in IODS {
            assert!(mods.iter().all(|&m| usize::from(m) < MODULES.len()));
        }
        // every node is reachable through its own path
        for n in 1..=NODE_TAG.len() {
            let mut path = Vec::new();
            let mut cur = n;
            while cur != 0 {
                let t = NODE_TAG[cur - 1];
                path.push(Tag((t >> 16) as u16, t as u16));
                cur = NODE_PARENT[cur - 1] as usize;
            }
            path.reverse();
            assert_eq!(node_of(path), u32::try_from(n).ok());
        }
    }
}
