//! The PHI planter: makes a test set with known identifying values in every
//! place a value can hide, and a manifest of where each one went.
//!
//! Why: a verifier's recall can only be measured against values whose
//! places are known. Starting from real files (so the rest of each object
//! is realistic), the planter gives every "patient" a fake identity (names
//! from the census lists the verifier does not use for this purpose, a
//! random MRN, birth date, phone, e-mail, address, institution, device) and
//! writes it:
//! - into the identifying header attributes (top level),
//! - into free text inside clinical sentences,
//! - into a sequence three levels deep,
//! - into private LO, UN, OB (UTF-16) and SQ elements,
//! - into a Series Instance UID that embeds the MRN,
//! - into an SR content item (SR objects),
//! - into an overlay plane as a rendered bitmap (images up to 1024 px),
//! - into a JPEG COM segment inside the encapsulated frame (JPEG files),
//! - into the pixels of the first frame (uncompressed grayscale images),
//! - into the output's folder and file names.
//!
//! The manifest lists (file, place, category) for each planted value, in
//! the same place notation the verifier reports. It holds the fake values
//! too (they identify no one), so tests can OCR for them.

pub mod everywhere;
pub mod textset;

use std::path::{Path, PathBuf};

use dicom_core::VR;
use serde::Serialize;
use veil_core::Tag;
use veil_io::{BulkSource, DataSet, DicomFile, Element, Value, WriteMeta};
use veil_pixels::GrayImage;

/// One planted value.
#[derive(Debug, Clone, Serialize)]
pub struct Planted {
    /// The planted file, relative to the planted root.
    pub file: String,
    /// Where, in the verifier's notation.
    pub place: String,
    /// The verifier category it belongs to.
    pub category: &'static str,
    /// The value (fake).
    pub value: String,
}

/// A fake identity.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Family name, upper case.
    pub family: String,
    /// Given name, upper case.
    pub given: String,
    /// Record number.
    pub mrn: String,
    /// Birth date YYYYMMDD.
    pub birth: String,
    /// Accession number.
    pub accession: String,
    /// Phone.
    pub phone: String,
    /// E-mail.
    pub email: String,
    /// Street address.
    pub street: String,
    /// Institution.
    pub institution: String,
    /// Station name.
    pub station: String,
    /// Device serial number.
    pub serial: String,
    /// A referring physician's family name.
    pub physician: String,
}

/// A small deterministic generator (SplitMix64): test sets must be the
/// same on every run.
pub struct Rng(u64);

impl Rng {
    /// Seeded.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    /// Next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    fn pick<'a>(&mut self, v: &[&'a str]) -> &'a str {
        v[self.below(v.len() as u64) as usize]
    }
}

// Distinct, unambiguous names: the test is about places, not about
// telling names from words.
const FAMILIES: &[&str] = &[
    "HARRINGTON",
    "MCALLISTER",
    "FITZGERALD",
    "WHITAKER",
    "KOWALSKI",
    "ABERNATHY",
    "LINDQVIST",
    "OKONKWO",
    "VASQUEZ",
    "PEMBERTON",
    "CASTELLANO",
    "DRISCOLL",
    "HOLLOWAY",
    "NAKAMURA",
    "RUTHERFORD",
    "SINCLAIR",
    "THORNBURY",
    "BALDWIN",
    "GALLAGHER",
    "MONTGOMERY",
];
const GIVENS: &[&str] = &[
    "MARGARET",
    "CHRISTOPHER",
    "JENNIFER",
    "BENJAMIN",
    "PATRICIA",
    "NATHANIEL",
    "ELIZABETH",
    "GREGORY",
    "VERONICA",
    "TIMOTHY",
    "KATHLEEN",
    "FREDERICK",
    "DOROTHY",
    "LEONARD",
    "MARILYN",
];
const STREETS: &[&str] = &["ELM STREET", "MAPLE AVENUE", "OAKWOOD DRIVE", "CEDAR LANE"];
const CITIES: &[&str] = &["SPRINGFIELD", "RIVERTON", "LAKEWOOD", "FAIRVIEW"];

impl Identity {
    /// A random identity.
    pub fn random(r: &mut Rng) -> Identity {
        let family = r.pick(FAMILIES).to_string();
        let given = r.pick(GIVENS).to_string();
        let mrn = format!("{}", 3_000_000 + r.below(6_000_000));
        let birth = format!(
            "{}{:02}{:02}",
            1930 + r.below(70),
            1 + r.below(12),
            1 + r.below(28)
        );
        Identity {
            email: format!(
                "{}.{}@mailbox.example",
                given.to_lowercase(),
                family.to_lowercase()
            ),
            phone: format!(
                "{}-{}-{:04}",
                201 + r.below(700),
                200 + r.below(700),
                r.below(10000)
            ),
            street: format!(
                "{} {}, {}",
                10 + r.below(980),
                r.pick(STREETS),
                r.pick(CITIES)
            ),
            institution: format!("{} MEMORIAL HOSPITAL", r.pick(CITIES)),
            station: format!("CTSTATION{}", 10 + r.below(89)),
            serial: format!("SN{}", 100_000 + r.below(800_000)),
            accession: format!("ACC{}", 10_000_000 + r.below(80_000_000)),
            physician: r.pick(FAMILIES).to_string(),
            family,
            given,
            mrn,
            birth,
        }
    }

    fn date_us(&self) -> String {
        format!(
            "{}/{}/{}",
            &self.birth[4..6],
            &self.birth[6..8],
            &self.birth[0..4]
        )
    }
}

/// What went wrong with one file (skipped, never fatal to the set).
#[derive(Debug)]
pub struct Skip(pub String);

fn text(tag: (u16, u16), vr: VR, v: &str) -> Element {
    let mut b = v.as_bytes().to_vec();
    if b.len() % 2 == 1 {
        b.push(if vr == VR::UI { 0 } else { b' ' });
    }
    Element::bytes(Tag(tag.0, tag.1), vr, b)
}

struct Ctx<'a> {
    rel: &'a str,
    out: &'a mut Vec<Planted>,
}

impl Ctx<'_> {
    fn note(&mut self, place: &str, category: &'static str, value: &str) {
        self.out.push(Planted {
            file: self.rel.to_string(),
            place: place.to_string(),
            category,
            value: value.to_string(),
        });
    }
}

/// Plants one identity into one source file, writing `root/<rel>` where
/// `rel` carries the name and MRN. Returns the planted values.
pub fn plant_file(
    src: &Path,
    root: &Path,
    index: usize,
    id: &Identity,
) -> Result<Vec<Planted>, Skip> {
    let f = veil_io::read(src).map_err(|e| Skip(e.reason.to_string()))?;
    if f.is_dicomdir() || f.ts.deflated {
        return Err(Skip("DICOMDIR or deflated".into()));
    }
    let sop_class = f
        .dataset
        .ascii(Tag(0x0008, 0x0016))
        .ok_or_else(|| Skip("no SOP class".into()))?;
    let rel = format!("{}_{}/{}/IMG{index:05}.dcm", id.family, id.given, id.mrn);
    let mut planted = Vec::new();
    let mut c = Ctx {
        rel: &rel,
        out: &mut planted,
    };
    for (cat, v) in [("name", &id.family), ("name", &id.given), ("id", &id.mrn)] {
        c.note("filename", cat, v);
    }
    let mut ds = f.dataset.clone();
    let pn = format!("{}^{}", id.family, id.given);
    // drop character sets we would not encode into
    ds.remove(Tag(0x0008, 0x0005));

    // top level
    let top: [((u16, u16), VR, String, &'static str); 11] = [
        ((0x0010, 0x0010), VR::PN, pn.clone(), "name"),
        ((0x0010, 0x0020), VR::LO, id.mrn.clone(), "id"),
        ((0x0010, 0x0030), VR::DA, id.birth.clone(), "date"),
        ((0x0008, 0x0050), VR::SH, id.accession.clone(), "id"),
        (
            (0x0008, 0x0080),
            VR::LO,
            id.institution.clone(),
            "institution",
        ),
        ((0x0008, 0x0081), VR::ST, id.street.clone(), "address"),
        (
            (0x0008, 0x0090),
            VR::PN,
            format!("{}^JOHN", id.physician),
            "name",
        ),
        ((0x0010, 0x2154), VR::SH, id.phone.clone(), "phone"),
        ((0x0010, 0x2155), VR::LT, id.email.clone(), "email"),
        ((0x0008, 0x1010), VR::SH, id.station.clone(), "device"),
        ((0x0018, 0x1000), VR::LO, id.serial.clone(), "device"),
    ];
    for (tag, vr, v, cat) in &top {
        ds.put(text(*tag, *vr, v));
        c.note(&Tag(tag.0, tag.1).to_string(), cat, v);
    }

    // free text in clinical sentences
    let s1 = format!("CT head for {} {}", title(&id.given), title(&id.family));
    ds.put(text((0x0008, 0x1030), VR::LO, &s1));
    c.note("(0008,1030)", "name", &id.family);
    let s0 = format!(
        "Referred {}; MRN {}; {} {} reports headache.",
        id.date_us(),
        id.mrn,
        title(&id.given),
        title(&id.family)
    );
    ds.put(text((0x0010, 0x21B0), VR::LT, &s0));
    for (cat, v) in [
        ("name", &id.family),
        ("id", &id.mrn),
        ("date", &id.date_us()),
    ] {
        c.note("(0010,21B0)", cat, v);
    }
    let s2 = format!(
        "Pt {} called from {}; reply to {}. Lives at {}.",
        title(&id.family),
        id.phone,
        id.email,
        id.street
    );
    ds.put(text((0x0020, 0x4000), VR::LT, &s2));
    for (cat, v) in [
        ("name", &id.family),
        ("phone", &id.phone),
        ("email", &id.email),
        ("address", &id.street),
    ] {
        c.note("(0020,4000)", cat, v);
    }

    // three sequences deep
    let deep = DataSet::of([
        text(
            (0x0040, 0xA160),
            VR::UT,
            &format!("Reviewed by {} {}", title(&id.given), title(&id.family)),
        ),
        text((0x0040, 0xA123), VR::PN, &pn),
    ]);
    let l2 = DataSet::of([Element::sequence(Tag(0x0040, 0xA730), vec![deep])]);
    let l1 = DataSet::of([Element::sequence(Tag(0x0040, 0xA730), vec![l2])]);
    ds.put(Element::sequence(Tag(0x0008, 0x1111), vec![l1]));
    c.note(
        "(0008,1111)[0]/(0040,A730)[0]/(0040,A730)[0]/(0040,A160)",
        "name",
        &id.family,
    );
    c.note(
        "(0008,1111)[0]/(0040,A730)[0]/(0040,A730)[0]/(0040,A123)",
        "name",
        &id.family,
    );

    // private LO, UN, OB (UTF-16), SQ
    ds.put(text((0x0011, 0x0010), VR::LO, "VEIL PLANTED"));
    ds.put(text((0x0011, 0x1001), VR::LO, &pn));
    c.note("(0011,1001)", "name", &id.family);
    let mut un = format!("ID={}", id.mrn).into_bytes();
    if un.len() % 2 == 1 {
        un.push(0);
    }
    ds.put(Element::bytes(Tag(0x0011, 0x1002), VR::UN, un));
    c.note("(0011,1002)", "id", &id.mrn);
    let utf16: Vec<u8> = format!("Patient {} {}", title(&id.given), title(&id.family))
        .encode_utf16()
        .flat_map(|u| u.to_le_bytes())
        .collect();
    ds.put(Element::bytes(Tag(0x0011, 0x1003), VR::OB, utf16));
    c.note("(0011,1003)", "name", &id.family);
    let item = DataSet::of([
        text((0x0011, 0x0010), VR::LO, "VEIL PLANTED"),
        text(
            (0x0011, 0x1001),
            VR::LO,
            &format!(
                "{}-{}-{}",
                &id.birth[0..4],
                &id.birth[4..6],
                &id.birth[6..8]
            ),
        ),
    ]);
    ds.put(Element::sequence(Tag(0x0011, 0x1004), vec![item]));
    c.note("(0011,1004)[0]/(0011,1001)", "date", &id.birth);

    // a UID embedding the MRN
    let series = format!("1.2.826.0.1.3680043.10.{}.{}", id.mrn, index);
    ds.put(text((0x0020, 0x000E), VR::UI, &series));
    c.note("(0020,000E)", "id", &id.mrn);

    // SR content item
    if sop_class.starts_with("1.2.840.10008.5.1.4.1.1.88.") {
        if let Some(Element {
            value: Value::Sequence(items),
            ..
        }) = ds.get_mut(Tag(0x0040, 0xA730))
        {
            let n = items.len();
            items.push(DataSet::of([
                text((0x0040, 0xA010), VR::CS, "CONTAINS"),
                text((0x0040, 0xA040), VR::CS, "TEXT"),
                text(
                    (0x0040, 0xA160),
                    VR::UT,
                    &format!("Dictated by Dr {} {}", title(&id.given), title(&id.family)),
                ),
            ]));
            c.note(&format!("(0040,A730)[{n}]/(0040,A160)"), "name", &id.family);
        }
    }

    // overlay bitmap and burned-in pixels
    let rows = ds.u16(Tag(0x0028, 0x0010), f.ts.big_endian);
    let cols = ds.u16(Tag(0x0028, 0x0011), f.ts.big_endian);
    let burned = format!("{} {}", id.family, id.mrn);
    if let (Some(r), Some(cl)) = (rows, cols) {
        if (128..=1024).contains(&r)
            && (128..=1024).contains(&cl)
            && ds.get(Tag(0x6000, 0x3000)).is_none()
        {
            if let Some(bits) = overlay(&burned, cl as u32, r as u32) {
                let le = !f.ts.big_endian;
                let u16b = |v: u16| if le { v.to_le_bytes() } else { v.to_be_bytes() };
                ds.put(Element::bytes(
                    Tag(0x6000, 0x0010),
                    VR::US,
                    u16b(r).to_vec(),
                ));
                ds.put(Element::bytes(
                    Tag(0x6000, 0x0011),
                    VR::US,
                    u16b(cl).to_vec(),
                ));
                ds.put(text((0x6000, 0x0040), VR::CS, "G"));
                let origin: Vec<u8> = [1i16, 1]
                    .iter()
                    .flat_map(|v| if le { v.to_le_bytes() } else { v.to_be_bytes() })
                    .collect();
                ds.put(Element::bytes(Tag(0x6000, 0x0050), VR::SS, origin));
                ds.put(Element::bytes(
                    Tag(0x6000, 0x0100),
                    VR::US,
                    u16b(1).to_vec(),
                ));
                ds.put(Element::bytes(
                    Tag(0x6000, 0x0102),
                    VR::US,
                    u16b(0).to_vec(),
                ));
                // OW is a run of 16-bit words: in a big-endian file each
                // word's bytes are swapped
                let mut bits = bits;
                if !le {
                    bits.chunks_exact_mut(2).for_each(|w| w.swap(0, 1));
                }
                ds.put(Element::bytes(Tag(0x6000, 0x3000), VR::OW, bits));
                c.note("overlay", "name", &id.family);
                c.note("overlay", "id", &id.mrn);
            }
        }
        // text a person could read: images of at least 128 pixels a side
        if !f.ts.encapsulated && r >= 128 && cl >= 128 && burn(&mut ds, &f, &burned).is_some() {
            c.note("pixels", "name", &id.family);
            c.note("pixels", "id", &id.mrn);
        }
    }

    let dest = root.join(&rel);
    let meta = WriteMeta {
        sop_class,
        sop_instance: ds
            .ascii(Tag(0x0008, 0x0018))
            .ok_or_else(|| Skip("no SOP instance".into()))?,
    };
    veil_io::write_file(&dest, &meta, &f.ts, &ds, &f.source).map_err(|e| Skip(e.to_string()))?;
    // JPEG COM segment in the first fragment
    if f.ts.encapsulated && jpeg_com(&dest, &format!("{pn} {}", id.mrn)).is_some() {
        c.note("(7FE0,0010)", "name", &id.family);
        c.note("(7FE0,0010)", "id", &id.mrn);
    }
    Ok(planted)
}

fn title(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f
            .to_uppercase()
            .chain(c.flat_map(char::to_lowercase))
            .collect(),
        None => String::new(),
    }
}

/// Text rendered one word per line, as a mask: 255 on the glyphs, 128 on
/// a one-pixel outline around them (scanners draw annotation text with a
/// shadow or outline so it stays legible on any background). 16 to 32 px
/// high, smaller only where a word would not fit the width (never below
/// 10 px). The block goes where the frame is flattest (`frame`, if given),
/// so it does not land on the image's own annotations.
fn mask(text: &str, w: u32, h: u32, frame: Option<&GrayImage>) -> Option<GrayImage> {
    let mut img = GrayImage::new(w, h);
    let mut px = (h as f32 / 12.0).clamp(16.0, 32.0);
    let widest = text.split(' ').max_by_key(|s| s.len()).unwrap_or(text);
    while px > 10.0 && veil_pixels::text::measure_text(widest, px).ok()?.0 as f32 > w as f32 * 0.8 {
        px -= 1.0;
    }
    let (bw, _) = veil_pixels::text::measure_text(widest, px).ok()?;
    let lines = text.split(' ').count() as u32;
    let bh = (px * 1.4) as u32 * lines;
    let (x0, y0) = match frame {
        Some(f) if f.dimensions() == (w, h) => flattest(f, bw + 4, bh + 4),
        _ => (w / 16, h / 16),
    };
    let mut y = y0 + 2;
    for word in text.split(' ') {
        veil_pixels::text::draw_text(&mut img, word, x0 + 2, y, px, 255).ok()?;
        y += (px * 1.4) as u32;
    }
    // glyphs 255, a one-pixel ring around them 128, the rest 0
    let glyph = |x: i64, y: i64| {
        x >= 0
            && y >= 0
            && x < w as i64
            && y < h as i64
            && img.get_pixel(x as u32, y as u32).0[0] >= 128
    };
    let mut out = GrayImage::new(w, h);
    for yy in 0..h as i64 {
        for xx in 0..w as i64 {
            let v = if glyph(xx, yy) {
                255
            } else if (-1..=1).any(|dy| (-1..=1).any(|dx| glyph(xx + dx, yy + dy))) {
                128
            } else {
                0
            };
            out.get_pixel_mut(xx as u32, yy as u32).0[0] = v;
        }
    }
    let img = out;
    Some(img)
}

/// The top-left corner of the flattest `bw` x `bh` block on a coarse grid
/// (lowest spread of gray values).
fn flattest(f: &GrayImage, bw: u32, bh: u32) -> (u32, u32) {
    let (w, h) = f.dimensions();
    if bw >= w || bh >= h {
        return (0, 0);
    }
    let mut best = (u64::MAX, (w / 16, h / 16));
    let step_x = (w / 24).max(1);
    let step_y = (h / 24).max(1);
    let mut y = 0;
    while y + bh < h {
        let mut x = 0;
        while x + bw < w {
            let (mut lo, mut hi, mut sum) = (255u8, 0u8, 0u64);
            for yy in (y..y + bh).step_by(2) {
                for xx in (x..x + bw).step_by(2) {
                    let v = f.get_pixel(xx, yy).0[0];
                    lo = lo.min(v);
                    hi = hi.max(v);
                    sum += v as u64;
                }
            }
            let score = (hi - lo) as u64 * 1_000_000 + sum;
            if score < best.0 {
                best = (score, (x, y));
            }
            x += step_x;
        }
        y += step_y;
    }
    best.1
}

/// A 1-bit overlay plane (OverlayBitsAllocated 1, packed LSB first).
fn overlay(text: &str, w: u32, h: u32) -> Option<Vec<u8>> {
    let m = mask(text, w, h, None)?;
    let n = (w * h) as usize;
    let mut bits = vec![0u8; n.div_ceil(16) * 2];
    for (i, p) in m.pixels().enumerate() {
        if p.0[0] == 255 {
            bits[i / 8] |= 1 << (i % 8);
        }
    }
    Some(bits)
}

/// Burns text into the first frame of native grayscale pixel data.
fn burn(ds: &mut DataSet, f: &DicomFile, text: &str) -> Option<()> {
    let be = f.ts.big_endian;
    let spp = ds.u16(Tag(0x0028, 0x0002), be).unwrap_or(1);
    let photometric = ds.ascii(Tag(0x0028, 0x0004)).unwrap_or_default();
    if spp != 1 || !photometric.starts_with("MONOCHROME") {
        return None;
    }
    let rows = ds.u16(Tag(0x0028, 0x0010), be)? as u32;
    let cols = ds.u16(Tag(0x0028, 0x0011), be)? as u32;
    let alloc = ds.u16(Tag(0x0028, 0x0100), be)?;
    let stored = ds.u16(Tag(0x0028, 0x0101), be).unwrap_or(alloc);
    let signed = ds.u16(Tag(0x0028, 0x0103), be).unwrap_or(0) == 1;
    let el = ds.get(Tag(0x7FE0, 0x0010))?;
    let mut px = match &el.value {
        Value::Bytes(b) => b.clone(),
        Value::Bulk { offset, len } => BulkSource::open(&f.source)
            .ok()?
            .read_range(*offset, *len)
            .ok()?,
        _ => return None,
    };
    let n = (rows * cols) as usize;
    let frame0 = veil_pixels::FrameReader::new(f)
        .ok()
        .and_then(|mut r| r.frame(0).ok())
        .map(|fr| fr.image);
    let m = mask(text, cols, rows, frame0.as_ref())?;
    let mono1 = photometric == "MONOCHROME1";
    match alloc {
        8 if px.len() >= n => {
            let hi = ((1u32 << stored.min(8)) - 1) as u8;
            let (v, o) = if mono1 { (0, hi) } else { (hi, 0) };
            for (i, p) in m.pixels().enumerate() {
                match p.0[0] {
                    255 => px[i] = v,
                    128 => px[i] = o,
                    _ => {}
                }
            }
        }
        16 if px.len() >= 2 * n => {
            let max: u16 = if signed {
                (1u16 << (stored - 1)) - 1
            } else {
                ((1u32 << stored) - 1) as u16
            };
            let min: u16 = if signed {
                (-(1i32 << (stored - 1)) as i16) as u16 & (((1u32 << stored) - 1) as u16)
            } else {
                0
            };
            // the text is the brightest thing on screen for any window,
            // its outline the darkest
            let (v, o) = if mono1 { (min, max) } else { (max, min) };
            for (i, p) in m.pixels().enumerate() {
                let val = match p.0[0] {
                    255 => v,
                    128 => o,
                    _ => continue,
                };
                let b = if be {
                    val.to_be_bytes()
                } else {
                    val.to_le_bytes()
                };
                px[2 * i] = b[0];
                px[2 * i + 1] = b[1];
            }
        }
        _ => return None,
    }
    let vr = el.vr;
    ds.put(Element::bytes(Tag(0x7FE0, 0x0010), vr, px));
    // the header's window may hide the text: remove it so readers window
    // on the data
    ds.remove(Tag(0x0028, 0x1050));
    ds.remove(Tag(0x0028, 0x1051));
    Some(())
}

/// Inserts a COM segment after SOI in the first fragment of an
/// encapsulated JPEG file, fixing the item length and the offset table.
fn jpeg_com(path: &Path, comment: &str) -> Option<()> {
    let f = veil_io::read(path).ok()?;
    let (offset, _len) = match f.dataset.get(Tag(0x7FE0, 0x0010))?.value {
        Value::Encapsulated { offset, len } => (offset as usize, len),
        _ => return None,
    };
    let mut bytes = std::fs::read(path).ok()?;
    let item = |b: &[u8], at: usize| -> Option<u32> {
        (b.get(at..at + 4)? == [0xFE, 0xFF, 0x00, 0xE0])
            .then(|| u32::from_le_bytes(b[at + 4..at + 8].try_into().expect("4 bytes")))
    };
    let bot_len = item(&bytes, offset)? as usize;
    let frag = offset + 8 + bot_len;
    let frag_len = item(&bytes, frag)? as usize;
    let data = frag + 8;
    if bytes.get(data..data + 2)? != [0xFF, 0xD8] || frag_len < 4 {
        return None;
    }
    let mut text = comment.as_bytes().to_vec();
    if text.len() % 2 == 1 {
        text.push(b' ');
    }
    let seg_len = (text.len() + 2) as u16;
    let mut seg = vec![0xFF, 0xFE];
    seg.extend(seg_len.to_be_bytes());
    seg.extend(&text);
    let delta = seg.len() as u32;
    bytes[frag + 4..frag + 8].copy_from_slice(&(frag_len as u32 + delta).to_le_bytes());
    // offsets of later frames move by the inserted length
    for k in 1..bot_len / 4 {
        let at = offset + 8 + 4 * k;
        let v = u32::from_le_bytes(bytes[at..at + 4].try_into().ok()?);
        bytes[at..at + 4].copy_from_slice(&(v + delta).to_le_bytes());
    }
    bytes.splice(data + 2..data + 2, seg);
    veil_io::atomic::write_all(path, &bytes).ok()
}

/// Plants identities into every readable file of `sources` (one identity
/// per `per_patient` files), writing under `root`. Returns the manifest and
/// the number of files skipped.
pub fn plant_set(
    sources: &[PathBuf],
    root: &Path,
    seed: u64,
    per_patient: usize,
) -> (Vec<Planted>, usize) {
    let mut r = Rng::new(seed);
    let mut id = Identity::random(&mut r);
    let mut all = Vec::new();
    let mut skipped = 0;
    let mut done = 0usize;
    for (i, s) in sources.iter().enumerate() {
        if done > 0 && done % per_patient.max(1) == 0 {
            id = Identity::random(&mut r);
        }
        match plant_file(s, root, i, &id) {
            Ok(p) => {
                all.extend(p);
                done += 1;
            }
            Err(_) => skipped += 1,
        }
    }
    (all, skipped)
}
