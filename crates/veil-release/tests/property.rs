//! The property: for random patients, consents (imported or set, including
//! withdrawals between releases), site defaults and release requests over
//! real corpus images, no study whose patient's consent refuses
//! (recipient, purpose) ever appears in any output, every permitted study
//! does, and every decision has exactly one ledger entry, which names the
//! patient and study only by keyed hashes.
//!
//! The oracle below restates the README's decision rule independently of
//! `veil_consent::decide`.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use veil_consent::{Actor, Decision, Provision, SiteDefault};
use veil_core::Phi;
use veil_ledger::Event;
use veil_release::{ReleaseRequest, Site};

const RECIPIENTS: [(&str, &str, &[&str]); 2] = [
    ("acme", "ai-vendor", &["ai-training"]),
    ("uni", "research", &["ai-training", "research"]),
];
const PURPOSES: [&str; 2] = ["ai-training", "research"];

#[derive(Debug, Clone)]
struct Prov {
    deny: bool,
    actor: u8,   // 0 any, 1 acme, 2 uni, 3 category ai-vendor, 4 category research
    purpose: u8, // 0 any, 1 ai-training, 2 research
    study: Option<u8>,
}

/// recipient, purpose, and a consent change (patient, provision) first
type Req = (u8, u8, Option<(u8, Prov)>);

#[derive(Debug, Clone)]
struct Scenario {
    studies: Vec<u8>, // per patient: 1..=2 studies
    consents: Vec<Vec<Prov>>,
    defaults: [u8; 2], // per purpose: 0 unset, 1 opt-in, 2 opt-out
    requests: Vec<Req>,
}

fn prov() -> impl Strategy<Value = Prov> {
    (any::<bool>(), 0u8..5, 0u8..3, proptest::option::of(0u8..2)).prop_map(
        |(deny, actor, purpose, study)| Prov {
            deny,
            actor,
            purpose,
            study,
        },
    )
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (1usize..=4).prop_flat_map(|n| {
        (
            proptest::collection::vec(1u8..=2, n),
            proptest::collection::vec(proptest::collection::vec(prov(), 0..4), n),
            [0u8..3, 0u8..3],
            proptest::collection::vec(
                (0u8..2, 0u8..2, proptest::option::of((0..n as u8, prov()))),
                1..=3,
            ),
        )
            .prop_map(|(studies, consents, defaults, requests)| Scenario {
                studies,
                consents,
                defaults,
                requests,
            })
    })
}

fn study_uid(case: usize, p: usize, s: usize) -> String {
    format!("1.2.826.0.1.3680043.9.7777.{case}.{p}.{s}")
}

fn to_provision(p: &Prov, case: usize, patient: usize, nstudies: u8) -> Provision {
    Provision {
        decision: if p.deny {
            Decision::Deny
        } else {
            Decision::Permit
        },
        actor: match p.actor {
            1 => Some(Actor::Recipient("acme".into())),
            2 => Some(Actor::Recipient("uni".into())),
            3 => Some(Actor::Category("ai-vendor".into())),
            4 => Some(Actor::Category("research".into())),
            _ => None,
        },
        purpose: match p.purpose {
            1 => Some("ai-training".into()),
            2 => Some("research".into()),
            _ => None,
        },
        start: None,
        end: None,
        study_uid: p
            .study
            .map(|s| study_uid(case, patient, (s % nstudies) as usize)),
    }
}

/// The rule, restated: most specific (recipient > category > anyone, then
/// study > all, then purpose > any) wins, deny wins ties, else the default
/// (unset = opt-in).
fn oracle(provs: &[Provision], default: u8, recipient: usize, purpose: &str, study: &str) -> bool {
    let (name, cat, allowed) = RECIPIENTS[recipient];
    if !allowed.contains(&purpose) {
        return false;
    }
    let matching: Vec<(u8, u8, u8, bool)> = provs
        .iter()
        .filter_map(|p| {
            let a = match &p.actor {
                None => 0,
                Some(Actor::Category(c)) if c == cat => 1,
                Some(Actor::Recipient(r)) if r == name => 2,
                Some(_) => return None,
            };
            if p.purpose.as_deref().is_some_and(|x| x != purpose)
                || p.study_uid.as_deref().is_some_and(|s| s != study)
            {
                return None;
            }
            Some((
                a,
                p.study_uid.is_some() as u8,
                p.purpose.is_some() as u8,
                p.decision == Decision::Deny,
            ))
        })
        .collect();
    match matching.iter().map(|m| (m.0, m.1, m.2)).max() {
        None => default == 2,
        Some(top) => !matching.iter().any(|m| (m.0, m.1, m.2) == top && m.3),
    }
}

static CASE: AtomicUsize = AtomicUsize::new(0);

fn run(sc: &Scenario, corpus: &Path) {
    let case = CASE.fetch_add(1, Ordering::SeqCst);
    let home = veil_test::scratch(&format!("release-prop-{case}"));
    Site::init(None, &home).unwrap();
    let mut site = Site::open(None, &home).unwrap();
    let recipe = home.join("r.toml");
    veil_io::atomic::write_all(&recipe, b"name = \"prop\"\nversion = \"1\"\n").unwrap();
    for (name, cat, purposes) in RECIPIENTS {
        site.add_recipient(
            name,
            Some(cat.into()),
            None,
            None,
            purposes.iter().map(|s| s.to_string()).collect(),
            &recipe,
            30,
        )
        .unwrap();
    }
    for (i, d) in sc.defaults.iter().enumerate() {
        match d {
            1 => site.set_default(PURPOSES[i], SiteDefault::OptIn).unwrap(),
            2 => site.set_default(PURPOSES[i], SiteDefault::OptOut).unwrap(),
            _ => {}
        }
    }
    let srcs = common::sources(corpus);
    let input = home.join("in");
    let mut model: Vec<Vec<Provision>> = Vec::new();
    for (p, &ns) in sc.studies.iter().enumerate() {
        for s in 0..ns as usize {
            common::plant(
                &srcs[(p + s) % 2],
                &input.join(format!("p{p}s{s}.dcm")),
                &format!("PAT-{case}-{p}"),
                &study_uid(case, p, s),
                1,
            );
        }
        let mut provs = Vec::new();
        for pr in &sc.consents[p] {
            let pv = to_provision(pr, case, p, ns);
            site.set_consent(&Phi::new(format!("PAT-{case}-{p}")), pv.clone())
                .unwrap();
            provs.retain(|q: &Provision| !q.same_scope(&pv));
            provs.push(pv);
        }
        model.push(provs);
    }
    let mut expected_entries = 0;
    for (k, (r, pu, change)) in sc.requests.iter().enumerate() {
        if let Some((p, pr)) = change {
            let p = *p as usize;
            let pv = to_provision(pr, case, p, sc.studies[p]);
            site.set_consent(&Phi::new(format!("PAT-{case}-{p}")), pv.clone())
                .unwrap();
            model[p].retain(|q| !q.same_scope(&pv));
            model[p].push(pv);
        }
        let (name, _, _) = RECIPIENTS[*r as usize];
        let purpose = PURPOSES[*pu as usize];
        let out = home.join(format!("out{k}"));
        let before = site.entries().unwrap().len();
        let res = site.release(
            &ReleaseRequest {
                recipient: name.into(),
                purpose: purpose.into(),
                inputs: vec![input.clone()],
                out: out.clone(),
                operator: Some("prop".into()),
                jobs: 1,
            },
            None,
        );
        // a purpose the recipient is not registered for is an error before
        // anything is written: no output, no ledger entry
        let registered = RECIPIENTS[*r as usize].2.contains(&purpose);
        if !registered {
            assert!(res.is_err(), "an unregistered purpose must be refused");
            assert_eq!(site.entries().unwrap().len(), before, "nothing logged");
            assert!(common::output_studies(&out).is_empty(), "nothing written");
            continue;
        }
        let sum = res.unwrap();
        let key = veil_deid::Key::load(&home.join("keys").join(format!("{name}.key"))).unwrap();
        let got = common::output_studies(&out);
        let entries = site.entries().unwrap();
        let new = &entries[before..];
        let nstudies: usize = sc.studies.iter().map(|&n| n as usize).sum();
        assert_eq!(new.len(), nstudies, "one ledger entry per patient-study");
        expected_entries += nstudies;
        assert_eq!(sum.studies, nstudies);
        for (p, &ns) in sc.studies.iter().enumerate() {
            let pref = site.patient_ref(&Phi::new(format!("PAT-{case}-{p}")));
            for s in 0..ns as usize {
                let uid = study_uid(case, p, s);
                let permit = oracle(
                    &model[p],
                    sc.defaults[*pu as usize],
                    *r as usize,
                    purpose,
                    &uid,
                );
                let pseudo = veil_deid::pseudonym::uid(&key, &uid);
                assert_eq!(
                    got.contains(&pseudo),
                    permit,
                    "patient {p} study {s}: output vs rule"
                );
                let sref = site.study_ref(&uid);
                let e: Vec<_> = new
                    .iter()
                    .filter(|e| e.study_ref.as_deref() == Some(&sref))
                    .collect();
                assert_eq!(e.len(), 1, "exactly one decision entry for the study");
                assert_eq!(e[0].patient_ref.as_deref(), Some(pref.as_str()));
                assert_eq!(
                    e[0].event,
                    if permit {
                        Event::Release
                    } else {
                        Event::Refusal
                    }
                );
            }
        }
        // nothing identifying in the manifest, the ledger or the summary
        let mut texts = vec![sum.line()];
        if let Ok(m) = std::fs::read_to_string(out.join("manifest.json")) {
            texts.push(m);
        }
        texts.extend(
            site.store
                .ledger_rows()
                .unwrap()
                .into_iter()
                .map(|r| r.entry),
        );
        for t in texts {
            assert!(!t.contains("PAT-") && !t.contains("9.7777."), "PHI leaked");
        }
    }
    let v = site.verify_ledger().unwrap();
    // besides the decisions, the log holds the recipient, default and
    // consent changes
    let all = site.entries().unwrap();
    let decisions = all
        .iter()
        .filter(|e| matches!(e.event, Event::Release | Event::Refusal))
        .count();
    assert!(
        v.ok && decisions == expected_entries && v.entries as usize == all.len(),
        "{:?}",
        v.problems
    );
    std::fs::remove_dir_all(&home).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn denied_studies_never_leave_and_every_decision_is_logged(sc in scenario()) {
        if let Some(corpus) = veil_test::corpus() {
            run(&sc, &corpus);
        }
    }
}
