//! Times move with dates under Retain Longitudinal Temporal Information
//! with Modified Dates: a DA+TM pair and a DT move as one instant by the
//! patient's offset, so every interval between two of them, in one object
//! or across the patient's objects, is exactly what it was, across
//! midnight and the new year, with fractional seconds and UTC offsets.
//! `[dates] keep_times = true` keeps times of day and moves dates by whole
//! days.

use dicom_core::VR;
use veil_core::Tag;
use veil_deid::{Deidentifier, Key, Policy};
use veil_io::{DataSet, DicomFile, Element};
use veil_rules::Recipe;

fn text(g: u16, e: u16, vr: VR, s: &str) -> Element {
    Element::text(Tag(g, e), vr, s)
}

/// A tag as (group, element).
type G = (u16, u16);

/// (date tag, time tag) pairs of the data dictionary, and DT tags.
const PAIRS: &[(G, G)] = &[
    ((0x0008, 0x0020), (0x0008, 0x0030)), // Study
    ((0x0008, 0x0021), (0x0008, 0x0031)), // Series
    ((0x0008, 0x0022), (0x0008, 0x0032)), // Acquisition
    ((0x0008, 0x0023), (0x0008, 0x0033)), // Content
    ((0x0008, 0x0012), (0x0008, 0x0013)), // InstanceCreation
];
const DTS: &[G] = &[(0x0008, 0x002A)]; // AcquisitionDateTime

fn object(n: u32, pairs: &[(&str, &str)], dt: &str) -> DataSet {
    let mut ds = DataSet::of([
        text(0x0008, 0x0016, VR::UI, "1.2.840.10008.5.1.4.1.1.2"),
        text(
            0x0008,
            0x0018,
            VR::UI,
            &format!("1.2.826.0.1.3680043.2.4455.{n}"),
        ),
        text(0x0010, 0x0010, VR::PN, "DOE^JANE"),
        text(0x0010, 0x0020, VR::LO, "PID-TIMES-1"),
        text(0x0008, 0x002A, VR::DT, dt),
        // a lone time: moves by the time of day, modulo a day
        text(0x0018, 0x1201, VR::TM, "235959"),
    ]);
    for (((dg, de), (tg, te)), (d, t)) in PAIRS.iter().zip(pairs) {
        ds.put(text(*dg, *de, VR::DA, d));
        ds.put(text(*tg, *te, VR::TM, t));
    }
    ds
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    era * 146097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719468
}

/// Microseconds since 1970 of `YYYYMMDD` + `HHMMSS.FFFFFF` (+ `&ZZXX`).
fn instant(date: &str, time: &str) -> i128 {
    let n = |s: &str| s.parse::<i64>().unwrap();
    let days = days_from_civil(n(&date[..4]), n(&date[4..6]), n(&date[6..8]));
    let (time, zone) = match time.find(['+', '-']) {
        Some(i) => time.split_at(i),
        None => (time, ""),
    };
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    // HH and HHMM times are read as HH0000 and HHMM00
    let hms = format!("{hms:0<6}");
    let secs = n(&hms[..2]) * 3600 + n(&hms[2..4]) * 60 + n(&hms[4..6]);
    let micros = format!("{frac:0<6}").parse::<i64>().unwrap();
    let zone_secs = if zone.is_empty() {
        0
    } else {
        let sign = if zone.starts_with('-') { -1 } else { 1 };
        sign * (n(&zone[1..3]) * 3600 + n(&zone[3..5]) * 60)
    };
    ((days * 86400 + secs - zone_secs) as i128) * 1_000_000 + micros as i128
}

fn get(ds: &DataSet, (g, e): G) -> String {
    String::from_utf8_lossy(ds.bytes(Tag(g, e)).unwrap())
        .trim_matches([' ', '\0'])
        .to_string()
}

fn instants(ds: &DataSet) -> Vec<i128> {
    let mut v: Vec<i128> = PAIRS
        .iter()
        .map(|(d, t)| instant(&get(ds, *d), &get(ds, *t)))
        .collect();
    for t in DTS {
        let dt = get(ds, *t);
        v.push(instant(&dt[..8], &dt[8..]));
    }
    v
}

fn objects() -> Vec<DataSet> {
    vec![
        object(
            1,
            &[
                ("20181211", "235959.5"),
                ("20181211", "235959.999999"),
                ("20181212", "000000"),
                ("20181212", "000000.000001"),
                ("20181211", "2359"),
            ],
            "20181211235959.5+0100",
        ),
        object(
            2,
            &[
                ("20181231", "235959"),
                ("20190101", "000000.25"),
                ("20181231", "120000"),
                ("20190101", "0001"),
                ("20181231", "23"),
            ],
            "20181231230000-0500",
        ),
    ]
}

fn policy(recipe: Recipe) -> Policy {
    let opts = ["retain-long-modified-dates".parse().unwrap()];
    Policy::new(recipe, &opts, Key::from_bytes([11; 32])).unwrap()
}

#[test]
fn intervals_between_all_instants_of_a_patient_are_kept_exactly() {
    let p = policy(Recipe::default());
    let d = Deidentifier::new(&p);
    let (mut before, mut after) = (Vec::new(), Vec::new());
    for ds in objects() {
        before.extend(instants(&ds));
        let out = d.run(&DicomFile::in_memory(ds.clone())).unwrap();
        after.extend(instants(&out.dataset));
        // no time of day is left as it was
        for (_, t) in PAIRS {
            assert_ne!(get(&ds, *t), get(&out.dataset, *t), "{t:04X?}");
        }
        assert_ne!(
            get(&ds, (0x0018, 0x1201)),
            get(&out.dataset, (0x0018, 0x1201))
        );
        assert_ne!(
            get(&ds, (0x0008, 0x002A))[8..12],
            get(&out.dataset, (0x0008, 0x002A))[8..12]
        );
        // the UTC offset and the fraction are kept
        let dt = get(&out.dataset, (0x0008, 0x002A));
        assert!(dt.ends_with("+0100") || dt.ends_with("-0500"), "{dt}");
    }
    let shift = after[0] - before[0];
    assert_ne!(
        shift % (86_400 * 1_000_000),
        0,
        "the offset has a time part"
    );
    for i in 0..before.len() {
        for j in 0..before.len() {
            assert_eq!(
                before[j] - before[i],
                after[j] - after[i],
                "interval {i}->{j} changed"
            );
        }
    }
}

#[test]
fn keep_times_keeps_times_of_day_and_moves_dates_by_whole_days() {
    let recipe = Recipe::parse("[dates]\nkeep_times = true").unwrap();
    let p = policy(recipe);
    let d = Deidentifier::new(&p);
    for ds in objects() {
        let out = d.explain(&DicomFile::in_memory(ds.clone())).unwrap();
        for ((dtag, _), (_, t)) in PAIRS.iter().zip(PAIRS) {
            assert_eq!(get(&ds, *t), get(&out.dataset, *t));
            assert_ne!(get(&ds, *dtag), get(&out.dataset, *dtag));
        }
        let before = instants(&ds);
        let after = instants(&out.dataset);
        let shift = after[0] - before[0];
        assert_eq!(shift % (86_400 * 1_000_000), 0);
        assert!(before.iter().zip(&after).all(|(b, a)| a - b == shift));
        // explain says which applied
        let study_time = out
            .decisions
            .iter()
            .find(|x| x.path.to_string() == "(0008,0030)")
            .unwrap();
        assert!(study_time.why.contains("keep_times"), "{}", study_time.why);
    }
    let out = Deidentifier::new(&policy(Recipe::default()))
        .explain(&DicomFile::in_memory(objects().remove(0)))
        .unwrap();
    let study_time = out
        .decisions
        .iter()
        .find(|x| x.path.to_string() == "(0008,0030)")
        .unwrap();
    assert!(
        study_time.why.contains("times of day move together"),
        "{}",
        study_time.why
    );
}

#[test]
fn without_modified_dates_times_follow_the_table() {
    let p = Policy::new(Recipe::default(), &[], Key::from_bytes([11; 32])).unwrap();
    let out = Deidentifier::new(&p)
        .run(&DicomFile::in_memory(objects().remove(0)))
        .unwrap();
    // StudyTime is Z in the Basic Profile: emptied
    assert_eq!(get(&out.dataset, (0x0008, 0x0030)), "");
}
