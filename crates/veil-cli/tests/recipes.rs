//! Recipes do what docs/recipes.md says: the example there parses, and
//! overrides by keyword, tag, private creator and path, `strict` and the
//! pseudonym formats change the output as documented.

use std::process::Command;

use dicom_core::VR;
use veil_core::Tag;
use veil_io::{DataSet, Element, Value};

fn text(g: u16, e: u16, vr: VR, s: &str) -> Element {
    Element::text(Tag(g, e), vr, s)
}

/// `veil deid` of one object with a recipe (its text) and `extra`
/// arguments, into `tmp/out` with a new key; the object it writes.
fn deid_one(
    tmp: &std::path::Path,
    ds: &DataSet,
    recipe_text: &[u8],
    extra: &[&std::ffi::OsStr],
) -> veil_io::DicomFile {
    let input = tmp.join("in");
    veil_io::write_explicit_le(&input.join("a.dcm"), ds).unwrap();
    let recipe = tmp.join("r.toml");
    veil_io::atomic::write_all(&recipe, recipe_text).unwrap();
    let key = veil_test::new_key(env!("CARGO_BIN_EXE_veil"), tmp);
    let out = tmp.join("out");
    let st = Command::new(env!("CARGO_BIN_EXE_veil"))
        .arg("deid")
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .arg("--key")
        .arg(&key)
        .arg("--recipe")
        .arg(&recipe)
        .args(extra)
        .status()
        .unwrap();
    assert!(st.success());
    let files = veil_test::files(&out);
    assert_eq!(files.len(), 1);
    veil_io::read(&files[0]).unwrap()
}

#[test]
fn the_documented_example_parses() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/recipes.md"
    ))
    .unwrap();
    let start = doc.find("```toml\n").expect("a toml block") + 8;
    let end = start + doc[start..].find("```").unwrap();
    // the site rule files it names, beside it (one rule each, in CTP's and
    // deid's formats)
    let dir = veil_test::scratch("recipe-doc");
    veil_io::atomic::write_all(
        &dir.join("site.script"),
        b"Site\n  { Modality.equals(\"US\") * Rows.equals(\"600\") }\n  (0,0,800,40)\n",
    )
    .unwrap();
    veil_io::atomic::write_all(
        &dir.join("deid.site.dicom"),
        b"FORMAT dicom\n\n%filter graylist\n\nLABEL Site banner\n  contains Modality US\n  coordinates 0,0,800,40\n",
    )
    .unwrap();
    let recipe = veil_rules::Recipe::parse_in(&doc[start..end], Some(&dir))
        .expect("the documented recipe is valid");
    assert_eq!(recipe.name, "ai-vendor-x");
    assert_eq!(recipe.attributes.len(), 7);
    // keyword_regex, add and shift (docs/migration.md) among them
    let acts: Vec<veil_rules::OverrideAction> =
        recipe.attributes.iter().map(|a| a.action).collect();
    assert!(acts.contains(&veil_rules::OverrideAction::Add));
    assert!(acts.contains(&veil_rules::OverrideAction::Shift));
    assert!(recipe.attributes.iter().any(|a| a.keyword_regex.is_some()));
    // two rule files and the inline rule
    assert_eq!(recipe.pixels.rules.len(), 3);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn overrides_strict_and_formats() {
    let tmp = veil_test::scratch("recipes");
    let req = DataSet::of([text(0x0040, 0x0007, VR::LO, "MRI BRAIN FOR SMITHERSON")]);
    let ds = DataSet::of([
        text(0x0008, 0x0016, VR::UI, "1.2.840.10008.5.1.4.1.1.4"),
        text(0x0008, 0x0018, VR::UI, "1.2.826.0.1.3680043.2.777.1"),
        text(0x0008, 0x0060, VR::CS, "MR"),
        text(0x0008, 0x1030, VR::LO, "BRAIN WITHOUT CONTRAST"),
        text(0x0010, 0x0010, VR::PN, "SMITHERSON^JO"),
        text(0x0010, 0x0020, VR::LO, "MRN777"),
        text(0x0018, 0x0095, VR::DS, "130"),
        text(0x0018, 0x0087, VR::DS, "3"),
        text(0x0018, 0x1030, VR::LO, "T1 MPRAGE"),
        text(0x0019, 0x0010, VR::LO, "SIEMENS MR HEADER"),
        text(0x0019, 0x100C, VR::IS, "1000"),
        text(0x0019, 0x1099, VR::LO, "SMITHERSON"),
        text(0x0028, 0x0010, VR::US, "\u{2}\u{0}"),
        Element::sequence(Tag(0x0040, 0x0275), vec![req]),
    ]);
    let recipe: &[u8] = br#"
name = "test-recipe"
version = "7"
strict = true
options = ["retain-safe-private"]
[pseudonyms]
patient_id = "SUBJ-{hash:6}"
[[attribute]]
keyword = "StudyDescription"
action = "keep"
[[attribute]]
tag = "(0018,1030)"
action = "replace"
value = "PROTOCOL A"
[[attribute]]
path = "RequestAttributesSequence/ScheduledProcedureStepDescription"
action = "clean"
[[attribute]]
creator = "SIEMENS MR HEADER"
group = "0019"
element = "xx0C"
action = "replace"
value = "2000"
"#;
    let f = deid_one(&tmp, &ds, recipe, &[]);
    let d = &f.dataset;
    assert_eq!(
        d.ascii(Tag(0x0008, 0x1030)).as_deref(),
        Some("BRAIN WITHOUT CONTRAST"),
        "keyword keep"
    );
    assert_eq!(
        d.ascii(Tag(0x0018, 0x1030)).as_deref(),
        Some("PROTOCOL A"),
        "tag replace"
    );
    let pid = d.ascii(Tag(0x0010, 0x0020)).unwrap();
    assert!(
        pid.starts_with("SUBJ-") && pid.len() == 11,
        "pseudonym format: {pid}"
    );
    // strict: MagneticFieldStrength and Rows are on the strict safe list;
    // PixelBandwidth is neither there nor in E.1-1
    assert_eq!(d.ascii(Tag(0x0018, 0x0087)).as_deref(), Some("3"));
    assert!(d.get(Tag(0x0028, 0x0010)).is_some());
    assert!(
        d.get(Tag(0x0018, 0x0095)).is_none(),
        "strict removes the unlisted"
    );
    // retain-safe-private: SIEMENS MR HEADER xx0C (B value) is on E.3.10-1;
    // xx99 is on no list
    assert!(
        d.get(Tag(0x0019, 0x100C)).is_some(),
        "safe private kept by creator"
    );
    assert!(
        d.get(Tag(0x0019, 0x1099)).is_none(),
        "unsafe private removed"
    );
    assert!(d.get(Tag(0x0019, 0x0010)).is_some(), "its creator kept");
    // path clean: the name inside the request sequence is gone, the rest kept
    let Value::Sequence(items) = &d.get(Tag(0x0040, 0x0275)).unwrap().value else {
        panic!("request sequence kept")
    };
    let step = items[0].ascii(Tag(0x0040, 0x0007)).unwrap_or_default();
    assert_eq!(step, "MRI BRAIN FOR ***");
    let method = d.ascii(Tag(0x0012, 0x0063)).unwrap();
    assert!(method.contains("RECIPE test-recipe 7"), "{method}");
}

/// A region rule blanks its rectangle when the rectangle fits the image;
/// one that runs off it was written for another screen layout and is
/// searched for text instead of blanked, and the report says so.
#[test]
fn region_rules_blank_only_rectangles_that_fit() {
    let tmp = veil_test::scratch("region-fit");
    let (cols, rows) = (64u16, 64u16);
    // a banner of varied values in the top 8 rows, a gradient below
    let image: Vec<u8> = (0..64 * 64)
        .map(|i| match (i / 64, i % 64) {
            (y, x) if y < 8 => (x * 4) as u8,
            (y, x) if (20..30).contains(&y) => (50 + x) as u8,
            _ => 100,
        })
        .collect();
    let ds = DataSet::of([
        text(0x0008, 0x0016, VR::UI, "1.2.840.10008.5.1.4.1.1.6.1"),
        text(0x0008, 0x0018, VR::UI, "1.2.826.0.1.3680043.2.777.2"),
        text(0x0008, 0x0060, VR::CS, "US"),
        text(0x0010, 0x0010, VR::PN, "FITTER^AL"),
        Element::bytes(Tag(0x0028, 0x0002), VR::US, 1u16.to_le_bytes().to_vec()),
        text(0x0028, 0x0004, VR::CS, "MONOCHROME2"),
        Element::bytes(Tag(0x0028, 0x0010), VR::US, rows.to_le_bytes().to_vec()),
        Element::bytes(Tag(0x0028, 0x0011), VR::US, cols.to_le_bytes().to_vec()),
        Element::bytes(Tag(0x0028, 0x0100), VR::US, 8u16.to_le_bytes().to_vec()),
        Element::bytes(Tag(0x0028, 0x0101), VR::US, 8u16.to_le_bytes().to_vec()),
        Element::bytes(Tag(0x0028, 0x0102), VR::US, 7u16.to_le_bytes().to_vec()),
        Element::bytes(Tag(0x0028, 0x0103), VR::US, 0u16.to_le_bytes().to_vec()),
        Element::bytes(Tag(0x7FE0, 0x0010), VR::OB, image.clone()),
    ]);
    let recipe: &[u8] = br#"
name = "regions"
version = "1"
options = ["clean-pixel-data"]
[pixels]
builtin_region_rules = false
[[pixels.region]]
label = "banner of this layout"
when = { Modality = "US" }
rects = [[0, 0, 64, 8]]
[[pixels.region]]
label = "banner of an 800-wide layout"
when = { Modality = "US" }
rects = [[0, 0, 800, 40]]
"#;
    let report = tmp.join("report.json");
    let f = deid_one(
        &tmp,
        &ds,
        recipe,
        &["--report".as_ref(), report.as_os_str()],
    );
    let Value::Bytes(px) = &f.dataset.get(Tag(0x7FE0, 0x0010)).unwrap().value else {
        panic!("native pixel data")
    };
    assert_ne!(px[..8 * 64], image[..8 * 64], "the fitting rule blanks");
    assert_eq!(
        px[8 * 64..],
        image[8 * 64..],
        "the rule of another layout cut into the image"
    );
    let rep = std::fs::read_to_string(&report).unwrap();
    assert!(
        rep.contains("banner of an 800-wide layout' does not fit this 64x64 image"),
        "{rep}"
    );
    let _ = std::fs::remove_dir_all(&tmp);
}
