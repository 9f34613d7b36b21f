//! FHIR Consent import/export on examples written from the FHIR R4 and R5
//! Consent structure (provision nesting, type/decision, actor, purpose,
//! period, data).

use veil_consent::{decide, export_r4, import, Actor, Decision, Provision, Request, SiteDefault};

fn read(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fhir/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn p(
    d: Decision,
    actor: Option<Actor>,
    purpose: Option<&str>,
    study: Option<&str>,
    start: Option<&str>,
    end: Option<&str>,
) -> Provision {
    Provision {
        decision: d,
        actor,
        purpose: purpose.map(str::to_string),
        start: start.map(str::to_string),
        end: end.map(str::to_string),
        study_uid: study.map(str::to_string),
    }
}

#[test]
fn r4_bundle_imports_as_the_spec_structure_says() {
    let cs = import(&read("r4-bundle.json")).unwrap();
    assert_eq!(cs.len(), 3);
    assert_eq!(cs[0].id, "consent-1001");
    assert_eq!(cs[0].patient_id.expose(), "MRN-1001");
    assert_eq!(
        cs[0].patient_system.as_deref(),
        Some("urn:oid:1.2.826.0.1.3680043.9.999")
    );
    assert_eq!(cs[0].date_time.as_deref(), Some("2024-03-15T09:30:00Z"));
    assert_eq!(
        cs[0].provisions,
        vec![
            p(Decision::Permit, None, None, None, None, None),
            p(
                Decision::Deny,
                Some(Actor::Category("ai-vendor".into())),
                Some("ai-training"),
                None,
                Some("2024-03-15T00:00:00Z"),
                Some("2030-12-31T23:59:59Z")
            ),
        ]
    );
    // an untyped root only scopes its children (purpose inherited)
    let acme = || Some(Actor::Recipient("acme-ai".into()));
    assert_eq!(
        cs[1].provisions,
        vec![
            p(
                Decision::Permit,
                acme(),
                Some("ai-training"),
                Some("1.2.840.113619.2.55.3.1"),
                None,
                None
            ),
            p(
                Decision::Deny,
                acme(),
                Some("ai-training"),
                None,
                None,
                None
            ),
            p(
                Decision::Deny,
                Some(Actor::Recipient("globex".into())),
                Some("ai-training"),
                None,
                None,
                None
            ),
        ]
    );
    assert_eq!(cs[2].status, "inactive");

    // and the rule reads them as a person would
    let req = |recipient, category, study| Request {
        recipient,
        category,
        purpose: "ai-training",
        study_uid: study,
        now: "2025-06-01T00:00:00Z",
    };
    let d = |c: &veil_consent::Consent, r| {
        decide(std::slice::from_ref(c), Some(SiteDefault::OptIn), &r).decision
    };
    assert_eq!(
        d(&cs[0], req("acme-ai", Some("ai-vendor"), "9.9")),
        Decision::Deny
    );
    assert_eq!(
        d(&cs[0], req("uni", Some("research"), "9.9")),
        Decision::Permit
    );
    assert_eq!(
        d(&cs[1], req("acme-ai", None, "1.2.840.113619.2.55.3.1")),
        Decision::Permit
    );
    assert_eq!(d(&cs[1], req("acme-ai", None, "9.9")), Decision::Deny);
    assert_eq!(d(&cs[2], req("acme-ai", None, "9.9")), Decision::Deny); // inactive: opt-in default
}

#[test]
fn r5_decision_and_exceptions() {
    let cs = import(&read("r5-consent.json")).unwrap();
    assert_eq!(cs.len(), 1);
    let c = &cs[0];
    assert_eq!(c.patient_id.expose(), "MRN-2001");
    let uni = || Some(Actor::Recipient("uni-research".into()));
    let (s, e) = (Some("2025-01-10T00:00:00Z"), Some("2026-01-09T23:59:59Z"));
    assert_eq!(
        c.provisions,
        vec![
            p(Decision::Deny, None, None, None, None, None),
            p(Decision::Permit, uni(), Some("HRESCH"), None, s, e),
            p(
                Decision::Deny,
                uni(),
                Some("HRESCH"),
                Some("1.2.3.4.5.6"),
                s,
                e
            ),
        ]
    );
}

#[test]
fn export_then_import_gives_the_same_records() {
    for f in ["r4-bundle.json", "r5-consent.json"] {
        let cs = import(&read(f)).unwrap();
        let out = export_r4(&cs);
        assert_eq!(out["resourceType"], "Bundle");
        for e in out["entry"].as_array().unwrap() {
            let r = &e["resource"];
            assert_eq!(r["resourceType"], "Consent");
            // R4 required elements
            assert!(r["scope"].is_object() && r["category"].is_array() && r["status"].is_string());
            assert!(r["patient"]["identifier"]["value"].is_string());
            // an untyped root, typed children
            assert!(r["provision"].get("type").is_none());
            for c in r["provision"]["provision"].as_array().unwrap() {
                assert!(c["type"] == "permit" || c["type"] == "deny");
            }
        }
        let again = import(&serde_json::to_string(&out).unwrap()).unwrap();
        assert_eq!(again, cs, "{f}");
        // and exporting again is byte-identical
        assert_eq!(export_r4(&again), out);
    }
}

#[test]
fn what_cannot_be_read_is_rejected_whole() {
    let no_ident = r#"{"resourceType":"Consent","status":"active","patient":{"reference":"Patient/1"},"provision":{"type":"deny"}}"#;
    assert!(import(no_ident).is_err());
    let odd_actor = r#"{"resourceType":"Consent","status":"active","patient":{"identifier":{"value":"X"}},
        "provision":{"type":"permit","provision":[{"type":"deny","actor":[{"reference":{"reference":"Practitioner/7"}}]}]}}"#;
    let e = import(odd_actor).unwrap_err().to_string();
    assert!(
        e.contains("Consent #0") && !e.contains("Practitioner/7"),
        "{e}"
    );
    let r5_no_base = r#"{"resourceType":"Consent","status":"active","subject":{"identifier":{"value":"X"}},"provision":[{"purpose":[{"code":"a"}]}]}"#;
    assert!(import(r5_no_base).is_err());
}
