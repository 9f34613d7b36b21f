//! Writing a DICOMDIR (PS3.3 Annex F, PS3.10 8.6) for an output tree.
//!
//! Why Veil writes its own instead of copying: an input DICOMDIR lists
//! names and IDs of the original patients, so it is never copied; the new
//! one is built from the de-identified outputs only. Record offsets count
//! bytes from the start of the file (the preamble), so every record is
//! encoded once to learn its size, then the offsets are filled in.

use std::path::Path;

use dicom_core::VR;
use veil_core::Tag;

use crate::dataset::{DataSet, Element, Value};
use crate::read::{Source, TsInfo};
use crate::write::{encode_dataset, file_header, BulkSource, WriteError, WriteMeta};

/// One referenced file: its File ID components and its (de-identified)
/// header, from which the record keys are taken.
#[derive(Debug, Clone)]
pub struct DirEntry {
    /// File ID components (each at most 8 characters of A-Z, 0-9, `_`).
    pub file_id: Vec<String>,
    /// The file's data set (header; bulk values are not needed).
    pub dataset: DataSet,
    /// The file's transfer syntax UID.
    pub ts_uid: String,
}

/// How a record key must be present (PS3.3 F.5 key types).
#[derive(Clone, Copy)]
enum Key {
    /// Type 1: copied, or this dummy when the file has none.
    One(&'static str),
    /// Type 2: copied, or present and empty.
    Two,
    /// Type 1C/3: copied only when the file has it.
    IfPresent,
}

/// Group, element, VR and presence of one record key.
type RecordKey = (u16, u16, VR, Key);

/// Keys each record type carries besides the hierarchy keys (PS3.3 F.5:
/// SR, waveform, RT, presentation and encapsulated-document records),
/// copied from the referenced (de-identified) file.
const RECORD_KEYS: &[(&str, &[RecordKey])] = &[
    (
        "SR DOCUMENT",
        &[
            (0x0008, 0x0023, VR::DA, Key::One("19000101")),
            (0x0008, 0x0033, VR::TM, Key::One("000000")),
            (0x0040, 0xA043, VR::SQ, Key::IfPresent),
            (0x0040, 0xA491, VR::CS, Key::One("PARTIAL")),
            (0x0040, 0xA493, VR::CS, Key::One("UNVERIFIED")),
        ],
    ),
    (
        "WAVEFORM",
        &[
            (0x0008, 0x0023, VR::DA, Key::One("19000101")),
            (0x0008, 0x0033, VR::TM, Key::One("000000")),
        ],
    ),
    (
        "RAW DATA",
        &[
            (0x0008, 0x0023, VR::DA, Key::One("19000101")),
            (0x0008, 0x0033, VR::TM, Key::One("000000")),
        ],
    ),
    ("RT DOSE", &[(0x3004, 0x000A, VR::CS, Key::One("PLAN"))]),
    (
        "RT STRUCTURE SET",
        &[
            (0x3006, 0x0002, VR::SH, Key::One("STRUCTURES")),
            (0x3006, 0x0008, VR::DA, Key::Two),
            (0x3006, 0x0009, VR::TM, Key::Two),
        ],
    ),
    (
        "RT PLAN",
        &[
            (0x300A, 0x0002, VR::SH, Key::One("PLAN")),
            (0x300A, 0x0006, VR::DA, Key::Two),
            (0x300A, 0x0007, VR::TM, Key::Two),
        ],
    ),
    (
        "RT TREAT RECORD",
        &[
            (0x0008, 0x0023, VR::DA, Key::One("19000101")),
            (0x0008, 0x0033, VR::TM, Key::One("000000")),
        ],
    ),
    (
        "PRESENTATION",
        &[
            (0x0008, 0x1115, VR::SQ, Key::IfPresent),
            (0x0070, 0x0080, VR::CS, Key::One("PRESENTATION")),
            (0x0070, 0x0081, VR::LO, Key::Two),
            (0x0070, 0x0082, VR::DA, Key::One("19000101")),
            (0x0070, 0x0083, VR::TM, Key::One("000000")),
            (0x0070, 0x0084, VR::PN, Key::Two),
        ],
    ),
    (
        "ENCAP DOC",
        &[
            (0x0008, 0x0023, VR::DA, Key::Two),
            (0x0008, 0x0033, VR::TM, Key::Two),
            (0x0042, 0x0010, VR::ST, Key::Two),
            (0x0042, 0x0012, VR::LO, Key::One("application/pdf")),
        ],
    ),
];

/// The hierarchy records (PS3.3 F.5.1-3) and the keys each copies from
/// the first file below it; the study and series UIDs are added apart,
/// since an emptied one gets a dummy derived from the File ID.
const LEVELS: [(&str, &[RecordKey]); 3] = [
    (
        "PATIENT",
        &[
            (0x0010, 0x0010, VR::PN, Key::Two),
            (0x0010, 0x0020, VR::LO, Key::One("NOPATIENTID")),
        ],
    ),
    (
        "STUDY",
        &[
            (0x0008, 0x0020, VR::DA, Key::One("19000101")),
            (0x0008, 0x0030, VR::TM, Key::One("000000")),
            (0x0008, 0x0050, VR::SH, Key::Two),
            (0x0008, 0x1030, VR::LO, Key::Two),
            (0x0020, 0x0010, VR::SH, Key::One("1")),
        ],
    ),
    (
        "SERIES",
        &[
            (0x0008, 0x0060, VR::CS, Key::One("OT")),
            (0x0020, 0x0011, VR::IS, Key::One("1")),
        ],
    ),
];

/// Adds a record under `parent` (a hierarchy record, or none for a
/// patient) and returns its index.
fn add(nodes: &mut Vec<Node>, ds: DataSet, parent: Option<Option<(usize, &str)>>) -> usize {
    nodes.push(Node {
        ds,
        children: vec![],
    });
    let i = nodes.len() - 1;
    if let Some(Some((p, _))) = parent {
        nodes[p].children.push(i);
    }
    i
}

/// Directory record type by SOP Class UID (PS3.3 Table F.4-1, F.5): an
/// entry ending in `.` is a prefix, others match exactly; everything else
/// is an IMAGE record.
const RECORD_TYPES: &[(&str, &str)] = &[
    ("1.2.840.10008.5.1.4.1.1.88.", "SR DOCUMENT"),
    ("1.2.840.10008.5.1.4.1.1.481.2", "RT DOSE"),
    ("1.2.840.10008.5.1.4.1.1.481.3", "RT STRUCTURE SET"),
    ("1.2.840.10008.5.1.4.1.1.481.5", "RT PLAN"),
    ("1.2.840.10008.5.1.4.1.1.481.4", "RT TREAT RECORD"),
    ("1.2.840.10008.5.1.4.1.1.11.", "PRESENTATION"),
    ("1.2.840.10008.5.1.4.1.1.9.", "WAVEFORM"),
    ("1.2.840.10008.5.1.4.1.1.104.", "ENCAP DOC"),
    ("1.2.840.10008.5.1.4.1.1.66", "RAW DATA"),
];

fn record_type(sop_class: &str) -> &'static str {
    RECORD_TYPES
        .iter()
        .find(|(p, _)| {
            if p.ends_with('.') {
                sop_class.starts_with(p)
            } else {
                sop_class == *p
            }
        })
        .map(|(_, t)| *t)
        .unwrap_or("IMAGE")
}

fn put(ds: &mut DataSet, tag: (u16, u16), vr: VR, v: &str) {
    ds.put(Element::bytes(Tag(tag.0, tag.1), vr, v.as_bytes().to_vec()));
}

/// Directory records need Type 1 keys that de-identification may have
/// emptied (dates, IDs). As dcmmkdir's `--invent` does, an empty key gets a
/// dummy value, which carries no information.
fn or_dummy<'a>(v: &'a str, dummy: &'a str) -> &'a str {
    if v.is_empty() {
        dummy
    } else {
        v
    }
}

fn put_ul(ds: &mut DataSet, tag: (u16, u16), v: u32) {
    ds.put(Element::bytes(
        Tag(tag.0, tag.1),
        VR::UL,
        v.to_le_bytes().to_vec(),
    ));
}

/// Copies a key from the referenced file, or writes the dummy.
fn copy_key(r: &mut DataSet, from: &DataSet, (g, e, vr, key): RecordKey) {
    let tag = Tag(g, e);
    match from.get(tag) {
        Some(el) if matches!(&el.value, Value::Sequence(items) if !items.is_empty()) => {
            r.put(el.clone())
        }
        // the DICOMDIR declares no character set: only ASCII values are copied
        Some(el) if matches!(&el.value, Value::Bytes(b) if !b.is_empty() && b.is_ascii()) => {
            r.put(Element {
                tag,
                vr,
                value: el.value.clone(),
            })
        }
        _ => match key {
            Key::One(dummy) => put(r, (g, e), vr, dummy),
            Key::Two if vr == VR::SQ => r.put(Element {
                tag,
                vr,
                value: Value::Sequence(vec![]),
            }),
            Key::Two => put(r, (g, e), vr, ""),
            Key::IfPresent => {}
        },
    }
}

/// An ASCII value of the header, or "" (DICOMDIR keys here are ASCII).
fn text(ds: &DataSet, g: u16, e: u16) -> String {
    ds.ascii(Tag(g, e))
        .filter(|s| s.is_ascii())
        .unwrap_or_default()
}

/// A UID for a hierarchy level whose UID was emptied: derived from the File
/// ID component, which is already a keyed pseudonym.
fn dummy_uid(component: &str) -> String {
    let n = component.bytes().fold(0u128, |acc, b| {
        acc.wrapping_mul(131).wrapping_add(b as u128)
    });
    format!("2.25.{}", n % 10u128.pow(38))
}

fn record(kind: &str) -> DataSet {
    let mut r = DataSet::default();
    put_ul(&mut r, (0x0004, 0x1400), 0);
    r.put(Element::bytes(
        Tag(0x0004, 0x1410),
        VR::US,
        0xFFFFu16.to_le_bytes().to_vec(),
    ));
    put_ul(&mut r, (0x0004, 0x1420), 0);
    put(&mut r, (0x0004, 0x1430), VR::CS, kind);
    r
}

/// A record and the indices (in the flat record list) of its children.
struct Node {
    ds: DataSet,
    children: Vec<usize>,
}

/// Writes `root/DICOMDIR` for the entries (atomically).
pub fn write_dicomdir(
    root: &Path,
    entries: &[DirEntry],
    sop_instance: &str,
) -> Result<(), WriteError> {
    let (meta, ts, top) = dicomdir_dataset(entries, sop_instance)?;
    crate::write::write_file(
        &root.join("DICOMDIR"),
        &meta,
        &ts,
        &top,
        &Source::Memory(Default::default()),
    )
}

/// The bytes [`write_dicomdir`] writes, for a root that is not a local
/// folder (an S3 prefix).
pub fn encode_dicomdir(entries: &[DirEntry], sop_instance: &str) -> Result<Vec<u8>, WriteError> {
    let (meta, ts, top) = dicomdir_dataset(entries, sop_instance)?;
    crate::write::encode_file(&meta, &ts, &top, &Source::Memory(Default::default()))
}

/// The DICOMDIR's File Meta, transfer syntax and data set.
fn dicomdir_dataset(
    entries: &[DirEntry],
    sop_instance: &str,
) -> Result<(WriteMeta, TsInfo, DataSet), WriteError> {
    let ts = TsInfo::explicit_le();
    // hierarchy keys of each entry: patient, study, series, instance
    let keyed: Vec<(&DirEntry, [String; 4])> = entries
        .iter()
        .map(|e| {
            let ds = &e.dataset;
            let comp = |i: usize| e.file_id.get(i).map(String::as_str).unwrap_or("");
            let or_uid = |v: String, i: usize| if v.is_empty() { dummy_uid(comp(i)) } else { v };
            (
                e,
                [
                    or_dummy(&text(ds, 0x0010, 0x0020), "NOPATIENTID").to_string(),
                    or_uid(text(ds, 0x0020, 0x000D), 1),
                    or_uid(text(ds, 0x0020, 0x000E), 2),
                    text(ds, 0x0008, 0x0018),
                ],
            )
        })
        .collect();
    let mut sorted: Vec<&(&DirEntry, [String; 4])> = keyed.iter().collect();
    sorted.sort_by(|a, b| a.1.cmp(&b.1));
    // Build the tree in sequence order: patient, its studies, each study's
    // series, each series' instances. `open[level]` is the record of the
    // current patient/study/series and the key it was opened for.
    let mut nodes: Vec<Node> = Vec::new();
    let mut roots: Vec<usize> = Vec::new();
    let mut open: [Option<(usize, &str)>; 3] = [None; 3];
    for (e, keys) in sorted {
        let ds = &e.dataset;
        for (level, (kind, level_keys)) in LEVELS.iter().enumerate() {
            if open[level].is_some_and(|(_, k)| k == keys[level]) {
                continue;
            }
            let mut r = record(kind);
            for &key in *level_keys {
                copy_key(&mut r, ds, key);
            }
            // the level's own UID (study, series), possibly a dummy
            if level > 0 {
                let uid_tag = if level == 1 { 0x000D } else { 0x000E };
                put(&mut r, (0x0020, uid_tag), VR::UI, &keys[level]);
            }
            let i = add(&mut nodes, r, level.checked_sub(1).map(|l| open[l]));
            if level == 0 {
                roots.push(i);
            }
            open[level] = Some((i, keys[level].as_str()));
            open[level + 1..].fill(None);
        }
        let sop_class = text(ds, 0x0008, 0x0016);
        let kind = record_type(&sop_class);
        let mut r = record(kind);
        put(&mut r, (0x0004, 0x1500), VR::CS, &e.file_id.join("\\"));
        put(&mut r, (0x0004, 0x1510), VR::UI, &sop_class);
        put(&mut r, (0x0004, 0x1511), VR::UI, &text(ds, 0x0008, 0x0018));
        put(&mut r, (0x0004, 0x1512), VR::UI, &e.ts_uid);
        copy_key(&mut r, ds, (0x0020, 0x0013, VR::IS, Key::One("1")));
        if let Some((_, keys)) = RECORD_KEYS.iter().find(|(k, _)| *k == kind) {
            for &key in *keys {
                copy_key(&mut r, ds, key);
            }
        }
        if r.ascii(Tag(0x0040, 0xA493)).as_deref() == Some("VERIFIED") {
            // Type 1C when verified; in the SR it sits in the Verifying
            // Observer Sequence
            let observed = match ds.get(Tag(0x0040, 0xA073)).map(|e| &e.value) {
                Some(Value::Sequence(items)) => items.first().map(|i| text(i, 0x0040, 0xA030)),
                _ => None,
            };
            let v = observed
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| "19000101000000".into());
            put(&mut r, (0x0040, 0xA030), VR::DT, &v);
        }
        add(&mut nodes, r, Some(open[2]));
    }

    let meta = WriteMeta {
        sop_class: "1.2.840.10008.1.3.10".into(),
        sop_instance: sop_instance.to_string(),
    };
    let header_len = file_header(&meta, &ts)?.len() as u64;
    let mut none = BulkSource::open(&Source::Memory(Default::default()))?;
    let mut top = DataSet::default();
    put(&mut top, (0x0004, 0x1130), VR::CS, "");
    put_ul(&mut top, (0x0004, 0x1200), 0);
    put_ul(&mut top, (0x0004, 0x1202), 0);
    top.put(Element::bytes(Tag(0x0004, 0x1212), VR::US, vec![0, 0]));
    top.put(Element {
        tag: Tag(0x0004, 0x1220),
        vr: VR::SQ,
        value: Value::Sequence(vec![]),
    });
    let mut buf = Vec::new();
    encode_dataset(&mut buf, &ts, &top, &mut none)?;
    // the empty sequence ends with its 8-byte delimiter
    let mut offset = header_len + buf.len() as u64 - 8;
    // each item: 8-byte header, content, 8-byte item delimiter
    let mut offsets = Vec::with_capacity(nodes.len());
    for n in &nodes {
        let mut b = Vec::new();
        encode_dataset(&mut b, &ts, &n.ds, &mut none)?;
        offsets.push(offset);
        offset += 16 + b.len() as u64;
    }
    let to_u32 = |o: u64| {
        u32::try_from(o).map_err(|_| WriteError::Encode("DICOMDIR larger than 4 GiB".into()))
    };
    let link = |siblings: &[usize], nodes: &mut Vec<Node>| -> Result<(), WriteError> {
        for (k, &i) in siblings.iter().enumerate() {
            let next = siblings.get(k + 1).map(|&j| offsets[j]).unwrap_or(0);
            put_ul(&mut nodes[i].ds, (0x0004, 0x1400), to_u32(next)?);
            let lower = nodes[i].children.first().map(|&j| offsets[j]).unwrap_or(0);
            put_ul(&mut nodes[i].ds, (0x0004, 0x1420), to_u32(lower)?);
        }
        Ok(())
    };
    link(&roots, &mut nodes)?;
    for i in 0..nodes.len() {
        let children = nodes[i].children.clone();
        link(&children, &mut nodes)?;
    }
    put_ul(
        &mut top,
        (0x0004, 0x1200),
        to_u32(roots.first().map(|&i| offsets[i]).unwrap_or(0))?,
    );
    put_ul(
        &mut top,
        (0x0004, 0x1202),
        to_u32(roots.last().map(|&i| offsets[i]).unwrap_or(0))?,
    );
    top.put(Element {
        tag: Tag(0x0004, 0x1220),
        vr: VR::SQ,
        value: Value::Sequence(nodes.into_iter().map(|n| n.ds).collect()),
    });
    Ok((meta, ts, top))
}
