//! Region rules: the pinned CTP and deid libraries parse completely (counts
//! derived here from the files by other means), conditions mean what CTP and
//! deid make them mean, and real corpus files are evaluated.
#![allow(clippy::print_stdout)] // the tests report counts and matches

use std::path::Path;

use dicom_core::VR;
use veil_core::Tag;
use veil_io::{DataSet, Element, Value};
use veil_rules::regions::{
    keyword_tag, Attributes, Rect, RectSpec, RegionRules, RuleList, CTP_SOURCE, CTP_TEXT,
    DEID_SOURCE, DEID_TEXT,
};
use veil_rules::Recipe;

// ---------------------------------------------------------------- helpers

/// A header as the rules see it: the data set (sequences searched, top
/// level first) and the File Meta, decoded as text.
struct Header<'a> {
    ds: &'a DataSet,
    meta: Option<&'a DataSet>,
    big_endian: bool,
}

fn text_of(e: &Element, big_endian: bool) -> Option<String> {
    let Value::Bytes(b) = &e.value else {
        return None;
    };
    let nums = |size: usize, f: &dyn Fn(&[u8]) -> String| -> String {
        b.chunks_exact(size).map(f).collect::<Vec<_>>().join("\\")
    };
    let arr = |c: &[u8], n: usize| -> [u8; 8] {
        let mut a = [0u8; 8];
        a[..n].copy_from_slice(&c[..n]);
        if big_endian {
            a[..n].reverse();
        }
        a
    };
    Some(match e.vr {
        VR::US => nums(2, &|c| {
            u16::from_le_bytes([arr(c, 2)[0], arr(c, 2)[1]]).to_string()
        }),
        VR::SS => nums(2, &|c| {
            i16::from_le_bytes([arr(c, 2)[0], arr(c, 2)[1]]).to_string()
        }),
        VR::UL => nums(4, &|c| {
            let a = arr(c, 4);
            u32::from_le_bytes([a[0], a[1], a[2], a[3]]).to_string()
        }),
        VR::SL => nums(4, &|c| {
            let a = arr(c, 4);
            i32::from_le_bytes([a[0], a[1], a[2], a[3]]).to_string()
        }),
        VR::OB | VR::OW | VR::UN | VR::OF | VR::OD | VR::FL | VR::FD => return None,
        _ => String::from_utf8_lossy(b)
            .trim_matches(|c: char| c == ' ' || c == '\0')
            .to_string(),
    })
}

fn collect(
    ds: &DataSet,
    tag: Tag,
    big_endian: bool,
    top_level: bool,
    out: &mut (Vec<String>, Vec<String>),
) {
    for e in &ds.elements {
        if e.tag == tag {
            let v = text_of(e, big_endian);
            if top_level {
                out.0.extend(v);
            } else {
                out.1.extend(v);
            }
        }
        if let Value::Sequence(items) = &e.value {
            for item in items {
                collect(item, tag, big_endian, false, out);
            }
        }
    }
}

impl Attributes for Header<'_> {
    fn values(&self, tag: Tag) -> Vec<String> {
        let mut out = (Vec::new(), Vec::new());
        if tag.0 == 0x0002 {
            if let Some(m) = self.meta {
                collect(m, tag, false, true, &mut out);
            }
        } else {
            collect(self.ds, tag, self.big_endian, true, &mut out);
        }
        out.0.extend(out.1);
        out.0
    }
}

fn kw(k: &str) -> Tag {
    keyword_tag(k).unwrap_or_else(|| panic!("keyword {k}"))
}

/// A hand-made data set from (keyword, VR, text) triples.
fn ds(items: &[(&str, VR, &str)]) -> DataSet {
    DataSet::of(items.iter().map(|(k, vr, v)| {
        let tag = kw(k);
        if *vr == VR::US {
            let n: u16 = v.parse().expect("number");
            Element::bytes(tag, VR::US, n.to_le_bytes().to_vec())
        } else {
            Element::text(tag, *vr, v)
        }
    }))
}

fn header(ds: &DataSet) -> Header<'_> {
    Header {
        ds,
        meta: None,
        big_endian: false,
    }
}

fn matches(script: &RegionRules, d: &DataSet) -> bool {
    !script.evaluate(&header(d)).rects.is_empty()
}

fn ctp(cond: &str) -> RegionRules {
    RegionRules::parse_ctp(&format!("Test\n{{ {cond} }}\n(0,0,10,10)\n"), "test.script")
        .unwrap_or_else(|e| panic!("{e}"))
}

fn deid(body: &str) -> RegionRules {
    RegionRules::parse_deid(
        &format!("FORMAT dicom\n%filter graylist\nLABEL test\n{body}\n  coordinates 0,0,10,10\n"),
        "test.dicom",
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

// ------------------------------------------------ the pinned libraries

#[test]
fn ctp_library_parses_completely() {
    let rules = RegionRules::parse_ctp(CTP_TEXT, CTP_SOURCE).expect("CTP library parses");
    // Independent counts: signatures open with '{' (the file has no other
    // braces); rectangles are the '(' on lines without letters (condition
    // lines always name an attribute).
    let openers = CTP_TEXT.matches('{').count();
    let rect_lines: usize = CTP_TEXT
        .lines()
        .filter(|l| !l.chars().any(|c| c.is_alphabetic()))
        .map(|l| l.matches('(').count())
        .sum();
    let rects: usize = rules.rules().iter().map(|r| r.regions.len()).sum();
    println!(
        "CTP {CTP_SOURCE}: {} rules ({openers} '{{' openers), {rects} rectangles ({rect_lines} counted), {} warnings",
        rules.len(),
        rules.warnings().len()
    );
    assert_eq!(rules.len(), openers);
    assert_eq!(rules.len(), 52, "the pinned file has 52 signatures");
    assert_eq!(rects, rect_lines);
    assert_eq!(rects, 62);
    assert!(rules.warnings().is_empty(), "{:?}", rules.warnings());
    let lines: Vec<&str> = CTP_TEXT.lines().collect();
    for r in rules.rules() {
        assert_eq!(r.list, RuleList::Graylist);
        assert!(!r.regions.is_empty(), "{}", r.rule);
        assert!(lines[r.rule.line as usize - 1].contains('{'), "{}", r.rule);
        assert!(
            !r.rule.label.is_empty() && r.rule.label != "(no heading)",
            "{}",
            r.rule
        );
        for s in &r.regions {
            let RectSpec::Fixed(rect) = s.rect else {
                panic!("CTP has fixed rectangles only")
            };
            assert!(rect.w > 0 && rect.h > 0, "{}", r.rule);
        }
    }
    for r in rules.rules() {
        println!(
            "  {}:{} {} -> {} rect(s)",
            r.rule.source,
            r.rule.line,
            r.rule.label,
            r.regions.len()
        );
    }
    // Headings: section / device / sub-heading, inherited by the next rule.
    let first = &rules.rules()[0];
    assert_eq!(first.rule.label, "CT / GE / CT Dose Series");
    assert_eq!(rules.rules()[1].rule.label, "CT / GE / CT Dose Series");
    assert!(rules
        .rules()
        .iter()
        .any(|r| r.rule.label == "US / Philips / IU22"));
}

#[test]
fn deid_library_parses_completely() {
    let rules = RegionRules::parse_deid(DEID_TEXT, DEID_SOURCE).expect("deid recipe parses");
    // Independent counts per section from the LABEL and coordinates lines.
    let (mut labels, mut coords) = (std::collections::BTreeMap::new(), 0);
    let mut section = String::new();
    for l in DEID_TEXT.lines().map(str::trim) {
        if let Some(s) = l.strip_prefix('%') {
            section = s.replace("filter", "").trim().to_string();
        } else if l.starts_with("LABEL") {
            *labels.entry(section.clone()).or_insert(0usize) += 1;
        } else if l.contains("coordinates ") && !section.is_empty() {
            coords += 1;
        }
    }
    let count = |list: RuleList| rules.rules().iter().filter(|r| r.list == list).count();
    let rects: usize = rules.rules().iter().map(|r| r.regions.len()).sum();
    println!(
        "deid {DEID_SOURCE}: {} rules (LABEL lines {labels:?}), whitelist {}, graylist {}, blacklist {}, {rects} rectangles ({coords} coordinates lines)",
        rules.len(),
        count(RuleList::Whitelist),
        count(RuleList::Graylist),
        count(RuleList::Blacklist)
    );
    for w in rules.warnings() {
        println!("  warning: {w}");
    }
    assert_eq!(rules.len(), labels.values().sum::<usize>());
    assert_eq!(rules.len(), 118);
    assert_eq!(count(RuleList::Whitelist), labels["whitelist"]);
    assert_eq!(count(RuleList::Graylist), labels["graylist"]);
    assert_eq!(count(RuleList::Blacklist), labels["blacklist"]);
    assert_eq!(rects, coords);
    // The file misspells Manufacturer three times; deid sees absent fields.
    assert_eq!(rules.warnings().len(), 3, "{:?}", rules.warnings());
    assert!(rules
        .warnings()
        .iter()
        .all(|w| w.message.starts_with("unknown attribute")));
    let lines: Vec<&str> = DEID_TEXT.lines().collect();
    for r in rules.rules() {
        let l = lines[r.rule.line as usize - 1];
        assert!(
            l.trim_start().starts_with("LABEL") && l.contains(&r.rule.label),
            "{}",
            r.rule
        );
        for s in &r.regions {
            let RectSpec::Fixed(rect) = s.rect else {
                panic!("no from: regions in the default recipe")
            };
            assert!(rect.w > 0 && rect.h > 0, "{}", r.rule);
        }
    }
    // coordinates are corners, ctpcoordinates x,y,w,h
    let r = |label: &str| {
        rules
            .rules()
            .iter()
            .find(|r| r.rule.label == label)
            .unwrap_or_else(|| panic!("{label}"))
    };
    assert_eq!(
        r("3D Lab reconstructions").regions[0].rect,
        RectSpec::Fixed(Rect {
            x: 450,
            y: 0,
            w: 222,
            h: 85
        })
    );
    assert_eq!(
        r("ATL HDI 5000").regions[1].rect,
        RectSpec::Fixed(Rect {
            x: 240,
            y: 0,
            w: 190,
            h: 16
        })
    );
}

#[test]
fn builtin_is_both_in_order() {
    let b = RegionRules::builtin();
    assert_eq!(b.len(), 52 + 118);
    assert_eq!(b.rules()[0].rule.source, CTP_SOURCE);
    assert_eq!(b.rules()[52].rule.source, DEID_SOURCE);
}

// --------------------------------------------------------- CTP semantics

#[test]
fn ctp_operators_precedence_and_methods() {
    let us_none = ds(&[("Modality", VR::CS, "US")]);
    let ct_siemens = ds(&[
        ("Modality", VR::CS, "CT"),
        ("Manufacturer", VR::LO, "SIEMENS"),
    ]);
    let ct_ge = ds(&[
        ("Modality", VR::CS, "CT"),
        ("Manufacturer", VR::LO, "GE MEDICAL"),
    ]);
    // '*' binds tighter than '+'
    let r = ctp(r#"Modality.equals("US") + Modality.equals("CT") * Manufacturer.contains("GE")"#);
    assert!(matches(&r, &us_none));
    assert!(!matches(&r, &ct_siemens));
    assert!(matches(&r, &ct_ge));
    // parentheses
    let r = ctp(r#"(Modality.equals("US") + Modality.equals("CT")) * Manufacturer.contains("GE")"#);
    assert!(!matches(&r, &us_none));
    assert!(matches(&r, &ct_ge));
    // '!' binds tightest: (!a) * b
    let r = ctp(r#"!Manufacturer.contains("GE") * Modality.equals("CT")"#);
    assert!(matches(&r, &ct_siemens));
    assert!(!matches(&r, &ct_ge));
    assert!(!matches(&r, &us_none));
    let r = ctp(r#"!(Manufacturer.contains("GE") * Modality.equals("CT"))"#);
    assert!(matches(&r, &us_none));
    // case
    assert!(!matches(
        &ctp(r#"Manufacturer.equals("ge medical")"#),
        &ct_ge
    ));
    assert!(matches(
        &ctp(r#"Manufacturer.equalsIgnoreCase("ge medical")"#),
        &ct_ge
    ));
    assert!(!matches(
        &ctp(r#"Manufacturer.contains("medical")"#),
        &ct_ge
    ));
    assert!(matches(
        &ctp(r#"Manufacturer.containsIgnoreCase("medical")"#),
        &ct_ge
    ));
    assert!(matches(&ctp(r#"Manufacturer.startsWith("GE ")"#), &ct_ge));
    assert!(matches(
        &ctp(r#"Manufacturer.startsWithIgnoreCase("ge ")"#),
        &ct_ge
    ));
    assert!(matches(&ctp(r#"Manufacturer.endsWith("DICAL")"#), &ct_ge));
    assert!(!matches(&ctp(r#"Manufacturer.endsWith("dical")"#), &ct_ge));
    assert!(matches(
        &ctp(r#"Manufacturer.endsWithIgnoreCase("dical")"#),
        &ct_ge
    ));
    // matches is a whole-value regular expression (Java String.matches)
    let logiq = ds(&[("ManufacturerModelName", VR::LO, "LOGIQE9")]);
    assert!(matches(
        &ctp(r#"ManufacturerModelName.matches("LOGIQ ?E9")"#),
        &logiq
    ));
    assert!(!matches(
        &ctp(r#"ManufacturerModelName.matches("LOGIQ")"#),
        &logiq
    ));
    // tags, numbers, multi-valued text, an absent attribute is ""
    let img = ds(&[
        ("Rows", VR::US, "512"),
        ("ImageType", VR::CS, "DERIVED\\SECONDARY\\SCREEN SAVE"),
    ]);
    assert!(matches(&ctp(r#"[0028,0010].equals("512")"#), &img));
    assert!(matches(
        &ctp(r#"ImageType.equals("DERIVED\SECONDARY\SCREEN SAVE")"#),
        &img
    ));
    assert!(matches(
        &ctp(r#"ImageType.containsIgnoreCase("secondary")"#),
        &img
    ));
    assert!(matches(&ctp(r#"StationName.equals("")"#), &img));
    assert!(!matches(&ctp(r#"StationName.contains("X")"#), &img));
    // multi-line, comments, a space before '(' as in the pinned file
    let r = ctp("Rows.equals(\"512\") * // the size\n   ImageType.containsIgnoreCase (\"SCREEN\")");
    assert!(matches(&r, &img));
    assert!(matches(&ctp("true"), &img));
    assert!(!matches(&ctp("false"), &img));
}

#[test]
fn nested_keywords_are_found_in_sequences() {
    // GE dose screens: CodeMeaning sits in a code sequence, not at the top.
    let item = ds(&[("CodeMeaning", VR::LO, "IEC Body Dosimetry Phantom")]);
    let d = DataSet::of([
        Element::text(kw("Modality"), VR::CS, "CT"),
        Element::sequence(kw("CTDIPhantomTypeCodeSequence"), vec![item]),
    ]);
    let h = header(&d);
    assert_eq!(
        h.values(kw("CodeMeaning")),
        vec!["IEC Body Dosimetry Phantom"]
    );
    assert!(matches(
        &ctp(r#"CodeMeaning.containsIgnoreCase("IEC Body Dosimetry Phantom")"#),
        &d
    ));
    assert!(matches(&deid("  contains CodeMeaning body dosimetry"), &d));
}

#[test]
fn ctp_errors_name_file_and_line_only() {
    let text = "Heading\n{ Modality.equals(\"US\") *\n  Manufactrer.equals(\"X\") }\n(0,0,1,1)\n";
    let e = RegionRules::parse_ctp(text, "site.script").unwrap_err();
    assert_eq!((e.source.as_str(), e.line), ("site.script", 3), "{e}");
    assert!(
        e.to_string()
            .contains("unknown DICOM keyword 'Manufactrer'"),
        "{e}"
    );
    for bad in [
        r#"Modality.equal("US")"#,
        r#"Modality.equals(US)"#,
        r#"Modality.equals("US") *"#,
        r#"(Modality.equals("US")"#,
        r#"Modality.matches("(")"#,
        r#"Modality.equals("US") ? Rows.equals("1")"#,
    ] {
        let r = RegionRules::parse_ctp(&format!("{{ {bad} }} (0,0,1,1)"), "x.script");
        assert!(r.is_err(), "{bad}");
    }
    assert!(RegionRules::parse_ctp("{ Rows.equals(\"1\") } (0,0,0,5)", "x").is_err());
    // CTP skips parenthesised text that is not four numbers; so does Veil
    let r = RegionRules::parse_ctp(
        "Logiq (LOGIQ9)\n{ Rows.equals(\"1\") }\n(0,0,5,5)\nNext (a)\n",
        "x",
    )
    .unwrap();
    assert_eq!(r.rules()[0].regions.len(), 1);
    assert_eq!(
        r.rules()[0].regions[0].rect,
        RectSpec::Fixed(Rect {
            x: 0,
            y: 0,
            w: 6,
            h: 6
        }),
        "CTP blanks x..=x+w, y..=y+h"
    );
    assert_eq!(r.warnings().len(), 1, "{:?}", r.warnings());
}

#[test]
fn rectangles_clip_and_count_from_the_far_edge() {
    let r = Rect {
        x: -100,
        y: -20,
        w: 100,
        h: 20,
    };
    assert_eq!(
        r.clip(640, 480),
        Some(Rect {
            x: 540,
            y: 460,
            w: 100,
            h: 20
        })
    );
    let r = Rect {
        x: 0,
        y: 0,
        w: 1229,
        h: 69,
    };
    assert_eq!(
        r.clip(800, 600),
        Some(Rect {
            x: 0,
            y: 0,
            w: 800,
            h: 69
        })
    );
    assert_eq!(
        Rect {
            x: 900,
            y: 0,
            w: 10,
            h: 10
        }
        .clip(800, 600),
        None
    );
    assert_eq!(
        Rect::ALL.clip(64, 32),
        Some(Rect {
            x: 0,
            y: 0,
            w: 64,
            h: 32
        })
    );
}

// -------------------------------------------------------- deid semantics

#[test]
fn deid_joiners_left_to_right_without_precedence() {
    let mk = |m: &str, man: &str| ds(&[("Modality", VR::CS, m), ("Manufacturer", VR::LO, man)]);
    // ((CT or MR) and GE): no precedence of '+' over '||'
    let r = deid("  contains Modality CT || contains Modality MR + contains Manufacturer GE");
    assert!(matches(&r, &mk("MR", "GE")));
    assert!(matches(&r, &mk("CT", "GE")));
    assert!(
        !matches(&r, &mk("CT", "SIEMENS")),
        "precedence would say yes"
    );
    // lines: ((a and b) or c), the LightSpeed form
    let r = deid(
        "  contains Modality CT\n  + contains Manufacturer GE\n  || contains Manufacturer Acme",
    );
    assert!(matches(&r, &mk("CT", "GE")));
    assert!(matches(&r, &mk("US", "ACME")));
    assert!(!matches(&r, &mk("US", "GE")));
    // lines without a joiner are and-ed
    let r = deid("  contains Modality CT\n  contains Manufacturer GE");
    assert!(!matches(&r, &mk("CT", "Siemens")));
    assert!(matches(&r, &mk("CT", "GE")));
}

#[test]
fn deid_actions_and_values() {
    let d = ds(&[
        ("Modality", VR::CS, "US"),
        ("ManufacturerModelName", VR::LO, "SOMATOM Definition AS+"),
        ("ImageType", VR::CS, "DERIVED\\SECONDARY"),
        ("StationName", VR::SH, ""),
        ("Rows", VR::US, "600"),
    ]);
    // values are case-insensitive regular expressions
    assert!(matches(&deid("  contains Modality ct|us"), &d));
    assert!(!matches(&deid("  contains Modality CT|MR"), &d));
    // '+' inside a value stays in it when no filter word follows
    assert!(matches(
        &deid("  contains ManufacturerModelName SOMATOM Definition AS+"),
        &d
    ));
    assert!(matches(
        &deid("  contains ImageType DERIVED.SECONDARY|X+Y"),
        &d
    ));
    assert!(matches(&deid("  notcontains Modality CT"), &d));
    assert!(!matches(&deid("  notcontains Modality us"), &d));
    assert!(matches(&deid("  equals Modality us"), &d));
    assert!(!matches(&deid("  equals Modality u"), &d));
    assert!(matches(&deid("  notequals Modality CT"), &d));
    assert!(matches(&deid("  equals Rows 600"), &d));
    assert!(matches(&deid("  missing PatientComments"), &d));
    assert!(!matches(&deid("  missing Modality"), &d));
    assert!(matches(&deid("  present Modality"), &d));
    assert!(matches(&deid("  empty StationName"), &d));
    assert!(!matches(&deid("  empty Modality"), &d));
    assert!(
        !matches(&deid("  empty PatientComments"), &d),
        "absent is not empty"
    );
    // an unknown field is absent, as in deid
    assert!(!matches(&deid("  contains Manfacturer X"), &d));
    assert!(matches(&deid("  missing Manfacturer"), &d));
    assert!(matches(&deid("  contains 0x00080060 US"), &d));
}

#[test]
fn deid_lists_coordinates_and_errors() {
    let text = "FORMAT dicom\n%filter whitelist\nLABEL clean # who\n  contains BurnedInAnnotation NO\n\
                %filter graylist\nLABEL both\n  contains Modality US\n  coordinates 10,20,110,70\n  ctpcoordinates 10,20,100,50\n  keepcoordinates 0,0,5,5\n\
                LABEL flag only\n  contains Modality US\n\
                LABEL always\n  coordinates all\n\
                %filter blacklist\nLABEL review\n  present Modality\n%header\nREMOVE PatientID\n";
    let r = RegionRules::parse_deid(text, "t.dicom").unwrap();
    assert_eq!(r.len(), 5);
    let d = ds(&[
        ("Modality", VR::CS, "US"),
        ("BurnedInAnnotation", VR::CS, "NO"),
    ]);
    let m = r.evaluate(&header(&d));
    assert_eq!(m.whitelisted.as_ref().unwrap().label, "clean");
    assert_eq!(m.blacklisted.as_ref().unwrap().label, "review");
    assert_eq!(m.flagged.len(), 1);
    assert_eq!(m.flagged[0].label, "flag only");
    let want = Rect {
        x: 10,
        y: 20,
        w: 100,
        h: 50,
    };
    assert_eq!(
        m.rects.iter().map(|(r, _)| *r).collect::<Vec<_>>(),
        vec![want, want, Rect::ALL]
    );
    assert_eq!(m.keep.len(), 1);
    assert_eq!(
        (m.rects[0].1.source.as_str(), m.rects[0].1.line),
        ("t.dicom", 6)
    );
    for (bad, line) in [
        ("%filter graylist\nLABEL x\n  contians Modality US\n", 3),
        ("%filter greenlist\nLABEL x\n", 1),
        ("%filter graylist\nLABEL x\n  coordinates 10,10,5,20\n", 3),
        ("%filter graylist\nLABEL x\n  contains Modality\n", 3),
        ("%filter graylist\nLABEL x\n  contains Modality (\n", 3),
    ] {
        let e = RegionRules::parse_deid(bad, "b.dicom").unwrap_err();
        assert_eq!(e.line, line, "{bad}: {e}");
    }
}

#[test]
fn ultrasound_regions_from_the_header() {
    let text = "%filter graylist\nLABEL us\n  contains Modality US\n  coordinates from:SequenceOfUltrasoundRegions\n";
    let r = RegionRules::parse_deid(text, "t.dicom").unwrap();
    let ul = |k: &str, v: u32| Element::bytes(kw(k), VR::UL, v.to_le_bytes().to_vec());
    let item = DataSet::of([
        ul("RegionLocationMinX0", 10),
        ul("RegionLocationMinY0", 20),
        ul("RegionLocationMaxX1", 110),
        ul("RegionLocationMaxY1", 220),
    ]);
    let d = DataSet::of([
        Element::text(kw("Modality"), VR::CS, "US"),
        Element::sequence(kw("SequenceOfUltrasoundRegions"), vec![item]),
    ]);
    let m = r.evaluate(&header(&d));
    assert_eq!(
        m.rects[0].0,
        Rect {
            x: 10,
            y: 20,
            w: 100,
            h: 200
        }
    );
    // without regions in the header the rule can only flag
    let m = r.evaluate(&header(&ds(&[("Modality", VR::CS, "US")])));
    assert!(m.rects.is_empty());
    assert_eq!(m.flagged.len(), 1);
}

// ------------------------------------------------- built-in, made-up objects

#[test]
fn a_ge_dose_report_matches_ctp_and_deid() {
    let phantom = ds(&[("CodeMeaning", VR::LO, "IEC Body Dosimetry Phantom")]);
    let mut d = ds(&[
        ("Modality", VR::CS, "CT"),
        ("Manufacturer", VR::LO, "GE MEDICAL SYSTEMS"),
        ("ManufacturerModelName", VR::LO, "LightSpeed VCT"),
        ("SeriesDescription", VR::LO, "Dose Report"),
        ("ImageType", VR::CS, "DERIVED\\SECONDARY\\SCREEN SAVE"),
        ("BurnedInAnnotation", VR::CS, "YES"),
        ("Rows", VR::US, "512"),
        ("Columns", VR::US, "512"),
    ]);
    d.put(Element::sequence(
        kw("CTDIPhantomTypeCodeSequence"),
        vec![phantom],
    ));
    let m = RegionRules::builtin().evaluate(&header(&d));
    println!("GE dose report:");
    for (r, why) in &m.rects {
        println!("  blank {r:?} <- {why}");
    }
    println!(
        "  flagged {:?}",
        m.flagged
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    );
    println!(
        "  blacklisted {:?}",
        m.blacklisted.as_ref().map(ToString::to_string)
    );
    let has = |src: &str, label: &str, rect: Rect| {
        m.rects
            .iter()
            .any(|(r, w)| w.source == src && w.label == label && *r == rect)
    };
    let rect = |w, h| Rect { x: 0, y: 0, w, h };
    // CTP rectangles include their right and bottom edges (one more pixel)
    assert!(
        has(CTP_SOURCE, "CT / GE / CT Dose Series", rect(513, 201)),
        "CodeMeaning, nested"
    );
    assert!(has(CTP_SOURCE, "CT / GE / CT Dose Series", rect(513, 111)));
    assert!(has(
        CTP_SOURCE,
        "CT / GE / 512 x 512 screen captures",
        rect(513, 26)
    ));
    assert!(has(DEID_SOURCE, "LightSpeed Dose Report", rect(512, 121)));
    assert!(has(DEID_SOURCE, "CT Dose Series", rect(512, 200)));
    assert_eq!(
        m.blacklisted.as_ref().map(|r| r.label.as_str()),
        Some("Stanford Blacklist secondary or derived catchall")
    );
    assert!(m.whitelisted.is_none());
    // Without the GE header, only the rules that do not test the maker
    // remain: CTP's "Dose Report" series description and deid's generic ones.
    d.put(Element::text(kw("Manufacturer"), VR::LO, "ACME"));
    d.put(Element::text(kw("ManufacturerModelName"), VR::LO, "X1"));
    d.remove(kw("CTDIPhantomTypeCodeSequence"));
    let m = RegionRules::builtin().evaluate(&header(&d));
    let ctp_rects: Vec<Rect> = m
        .rects
        .iter()
        .filter(|(_, w)| w.source == CTP_SOURCE)
        .map(|(r, _)| *r)
        .collect();
    assert_eq!(ctp_rects, vec![rect(513, 111)], "{:?}", m.rects);
    assert!(
        !m.rects.iter().any(|(_, w)| w.label.contains("LightSpeed")
            || w.label == "Screen Captures"
            || w.label == "CT Dose Series"),
        "{:?}",
        m.rects
    );
}

#[test]
fn a_philips_ultrasound_matches_its_banner() {
    let d = ds(&[
        ("Modality", VR::CS, "US"),
        ("Manufacturer", VR::LO, "Philips Medical Systems"),
        ("ManufacturerModelName", VR::LO, "iU22"),
        ("Rows", VR::US, "480"),
        ("Columns", VR::US, "640"),
    ]);
    let m = RegionRules::builtin().evaluate(&header(&d));
    let rects: Vec<String> = m
        .rects
        .iter()
        .map(|(r, w)| format!("{r:?} <- {w}"))
        .collect();
    println!("Philips iU22 480x640: {rects:#?}");
    // CTP blanks 641 x 48 (edges included): clipped to the image, the
    // 640 columns of the top 48 rows.
    let ctp_rect = Rect {
        x: 0,
        y: 0,
        w: 641,
        h: 48,
    };
    assert!(m
        .rects
        .iter()
        .any(|(r, w)| w.source == CTP_SOURCE && *r == ctp_rect));
    assert_eq!(
        ctp_rect.clip(640, 480),
        Some(Rect {
            x: 0,
            y: 0,
            w: 640,
            h: 48
        })
    );
    assert!(m
        .rects
        .iter()
        .any(|(r, w)| w.source == DEID_SOURCE && w.label == "Philips IU22" && r.h == 47));
}

// ------------------------------------------------------------- recipes

#[test]
fn a_recipe_adds_files_and_inline_rules() {
    let sources = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules/sources");
    let r = Recipe::parse_in(
        r#"
        name = "site"
        options = ["clean-pixel-data", "clean-graphics"]
        [pixels]
        builtin_region_rules = false
        region_rules = ["ctp_DicomPixelAnonymizer.script", "pydicom_deid_deid.dicom"]
        redact_all_text = "always"
        allow_lossy_recompression = false
        [[pixels.region]]
        label = "Acme banner"
        when = { Modality = "US", Manufacturer = "~acme", "(0028,0010)" = 600 }
        rects = [[0, 0, 800, 60], [-100, -20, 100, 20]]
        "#,
        Some(&sources),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.pixels.redact_all_text, veil_rules::RedactAllText::Always);
    let all = r.region_rules();
    assert_eq!(
        all.len(),
        52 + 118 + 1,
        "files and the inline rule, no builtin"
    );
    assert_eq!(
        all.rules()[0].rule.source,
        "ctp_DicomPixelAnonymizer.script"
    );
    assert_eq!(all.rules()[52].rule.source, "pydicom_deid_deid.dicom");
    let d = ds(&[
        ("Modality", VR::CS, "US"),
        ("Manufacturer", VR::LO, "ACME Imaging"),
        ("Rows", VR::US, "600"),
    ]);
    let m = all.evaluate(&header(&d));
    let acme: Vec<Rect> = m
        .rects
        .iter()
        .filter(|(_, w)| w.label == "Acme banner")
        .map(|(r, _)| *r)
        .collect();
    assert_eq!(
        acme,
        vec![
            Rect {
                x: 0,
                y: 0,
                w: 800,
                h: 60
            },
            Rect {
                x: -100,
                y: -20,
                w: 100,
                h: 20
            }
        ]
    );
    let d = ds(&[
        ("Modality", VR::CS, "US"),
        ("Manufacturer", VR::LO, "Other"),
        ("Rows", VR::US, "600"),
    ]);
    assert!(!all
        .evaluate(&header(&d))
        .rects
        .iter()
        .any(|(_, w)| w.label == "Acme banner"));
    // defaults: builtin on, auto, lossless
    let r = Recipe::parse("").unwrap();
    assert!(r.pixels.builtin_region_rules && !r.pixels.allow_lossy_recompression);
    assert_eq!(r.region_rules().len(), 170);
    // errors
    for bad in [
        "[pixels]\nregion_rules = [\"no-such-file.script\"]",
        "[pixels]\nredact_all_text = \"sometimes\"",
        "[pixels]\ncolour = 1",
        "[[pixels.region]]\nwhen = { Modallity = \"US\" }\nrects = [[0,0,1,1]]",
        "[[pixels.region]]\nwhen = { Modality = \"US\" }\nrects = [[0,0,0,1]]",
        "[[pixels.region]]\nwhen = { Modality = \"US\" }\nrects = []",
        "[[pixels.region]]\nwhen = { Modality = true }\nrects = [[0,0,1,1]]",
    ] {
        assert!(Recipe::parse(bad).is_err(), "{bad}");
    }
}

// --------------------------------------------------------------- corpus

/// Every text value of `tag` at any depth, padding trimmed.
fn anywhere(ds: &DataSet, tag: Tag) -> Vec<String> {
    let mut out = Vec::new();
    for e in &ds.elements {
        if e.tag == tag {
            if let Value::Bytes(b) = &e.value {
                out.push(
                    String::from_utf8_lossy(b)
                        .trim_matches(|c: char| c == ' ' || c == '\0')
                        .to_string(),
                );
            }
        }
        if let Value::Sequence(items) = &e.value {
            for i in items {
                out.extend(anywhere(i, tag));
            }
        }
    }
    out
}

#[test]
fn corpus_files_evaluate() {
    let Some(corpus) = veil_test::corpus() else {
        return;
    };
    let rules = RegionRules::builtin();
    let bia = rules
        .rules()
        .iter()
        .find(|r| r.rule.label == "Marked as Clean Catch All")
        .expect("deid whitelist rule");
    let no_type = rules
        .rules()
        .iter()
        .find(|r| r.rule.label == "Stanford Blacklist Missing ImageType")
        .expect("deid blacklist rule");
    let (mut read, mut with_rects, mut black, mut white, mut flagged) = (0, 0, 0, 0, 0);
    let mut why = std::collections::BTreeMap::<String, usize>::new();
    for path in veil_test::files(&corpus) {
        let Ok(f) = veil_io::read(&path) else {
            continue;
        };
        read += 1;
        let h = Header {
            ds: &f.dataset,
            meta: f.meta.as_ref().map(|m| &m.elements),
            big_endian: f.ts.big_endian,
        };
        let m = rules.evaluate(&h);
        // Independent checks of two deid rules against the raw header, searched
        // here with a plain walk (the rules see nested values too).
        let bia_values = anywhere(&f.dataset, kw("BurnedInAnnotation"));
        assert_eq!(
            bia.matches(&h),
            bia_values.iter().any(|v| v.to_lowercase().contains("no")),
            "{}",
            path.display()
        );
        let image_type = anywhere(&f.dataset, kw("ImageType"));
        assert_eq!(
            no_type.matches(&h),
            image_type.is_empty() || image_type.iter().any(String::is_empty),
            "{}",
            path.display()
        );
        for (list, r) in [("blacklist", &m.blacklisted), ("whitelist", &m.whitelisted)] {
            if let Some(r) = r {
                *why.entry(format!("{list}: {}", r.label)).or_default() += 1;
            }
        }
        with_rects += usize::from(!m.rects.is_empty());
        black += usize::from(m.blacklisted.is_some());
        white += usize::from(m.whitelisted.is_some());
        flagged += usize::from(!m.flagged.is_empty());
        if !m.rects.is_empty() || !m.flagged.is_empty() {
            let rel = path.strip_prefix(&corpus).unwrap_or(&path);
            println!("{}:", rel.display());
            for (r, w) in &m.rects {
                println!("  blank {r:?} <- {w}");
            }
            for w in &m.flagged {
                println!("  flag <- {w}");
            }
        }
    }
    println!(
        "corpus: {read} objects read; {with_rects} with rectangles, {flagged} flagged without place, {black} blacklisted, {white} whitelisted"
    );
    for (k, n) in &why {
        println!("  {n:4} {k}");
    }
    assert!(read > 100, "the corpus has a few hundred readable objects");
    assert!(
        black > 0,
        "the corpus has secondary captures and derived CT/MR"
    );
}
