//! Issue 22: FHIR Consent shapes Veil cannot read safely are errors, never
//! silently narrowed or widened; records without an `id` get one from
//! their content; the input is bounded (size, resources, nesting,
//! provisions).

use veil_consent::{import, import_with, Decision, FhirError, Limits};

/// An R4 Consent for patient `pid` whose root provision is `provision`.
fn r4(pid: &str, provision: &str) -> String {
    format!(
        r#"{{"resourceType":"Consent","status":"active","patient":{{"identifier":{{"value":"{pid}"}}}},"provision":{provision}}}"#
    )
}

fn invalid(text: &str, field: &str) {
    match import(text) {
        Err(FhirError::Invalid { what, .. }) => assert!(what.contains(field), "{what}"),
        other => panic!("expected an error about {field}, got {other:?}"),
    }
}

#[test]
fn issue_22_data_reference_without_value_is_an_error() {
    // on main this deny read as "all studies... of study ''", i.e. nothing
    let t = r4(
        "P1",
        r#"{"type":"deny","data":[{"meaning":"related","reference":{"identifier":{"system":"urn:dicom:uid"}}}]}"#,
    );
    invalid(&t, "no value");
    let t = r4(
        "P1",
        r#"{"type":"deny","data":[{"reference":{"identifier":{"system":"urn:dicom:uid","value":"urn:oid:"}}}]}"#,
    );
    invalid(&t, "no value");
}

#[test]
fn issue_22_non_array_actor_purpose_data_are_errors() {
    // each was ignored on main, so the permit applied to every recipient,
    // purpose or study
    let actor = r#"{"reference":{"identifier":{"system":"urn:veil:recipient","value":"acme"}}}"#;
    let purpose = r#"{"system":"urn:veil:purpose","code":"ai-training"}"#;
    let data = r#"{"reference":{"identifier":{"system":"urn:dicom:uid","value":"urn:oid:1.2.3"}}}"#;
    for (field, v) in [("actor", actor), ("purpose", purpose), ("data", data)] {
        let t = r4("P1", &format!(r#"{{"type":"permit","{field}":{v}}}"#));
        invalid(&t, &format!("`{field}` is not an array"));
        // the array form is accepted and narrows
        let t = r4("P1", &format!(r#"{{"type":"permit","{field}":[{v}]}}"#));
        let cs = import(&t).unwrap();
        assert_eq!(cs[0].provisions.len(), 1);
    }
    // a nested provision that is an object, not an array, was skipped
    // with its deny
    let t = r4(
        "P1",
        r#"{"type":"permit","provision":{"type":"deny","purpose":[{"code":"ai-training"}]}}"#,
    );
    invalid(&t, "`provision` is not an array");
    // a type that is not a string was skipped too
    invalid(&r4("P1", r#"{"type":["deny"]}"#), "`type` is not a string");
    // an R4 root provision that is an array emitted nothing
    invalid(&r4("P1", r#"[{"type":"deny"}]"#), "not an object");
}

#[test]
fn issue_22_records_without_an_id_get_a_content_derived_id() {
    let deny = r4("P1", r#"{"type":"deny"}"#);
    let permit = r4("P2", r#"{"type":"permit"}"#);
    let a = import(&deny).unwrap();
    let b = import(&permit).unwrap();
    // on main both were "import-0": storing the second replaced the first
    assert_ne!(a[0].id, b[0].id);
    assert!(a[0].id.starts_with("sha256-"), "{}", a[0].id);
    assert_eq!(a[0].provisions[0].decision, Decision::Deny);
    // the same content gives the same id (re-import is idempotent)
    assert_eq!(import(&deny).unwrap()[0].id, a[0].id);
    let both = import(&format!("[{deny},{permit}]")).unwrap();
    assert_eq!(
        (both[0].id.as_str(), both[1].id.as_str()),
        (a[0].id.as_str(), b[0].id.as_str())
    );
}

#[test]
fn issue_22_input_size_resources_depth_and_provisions_are_bounded() {
    let one = r4("P1", r#"{"type":"deny"}"#);
    let limits = Limits {
        max_bytes: 100,
        ..Limits::default()
    };
    assert!(matches!(
        import_with(&one, &limits),
        Err(FhirError::Limit(_))
    ));

    let many = format!("[{}]", [one.as_str(); 11].join(","));
    let limits = Limits {
        max_resources: 10,
        ..Limits::default()
    };
    let e = import_with(&many, &limits).unwrap_err();
    assert!(e.to_string().contains("11 resources"), "{e}");
    assert_eq!(import(&many).unwrap().len(), 11);

    // 10,000 nested provisions: a clear error, not a parser or stack failure
    let deep = format!(
        r#"{{"resourceType":"Consent","patient":{{"identifier":{{"value":"P"}}}},"provision":{}{}}}"#,
        r#"{"provision":["#.repeat(10_000),
        "]}".repeat(10_000)
    );
    let e = import(&deep).unwrap_err();
    assert!(e.to_string().contains("nested deeper than 64"), "{e}");
    // brackets inside strings do not count
    let t = r4(
        "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
        r#"{"type":"deny"}"#,
    );
    assert_eq!(import(&t).unwrap().len(), 1);

    // 100 actors x 100 purposes x 100 studies would be a million provisions
    let list = |f: &dyn Fn(usize) -> String| (0..100).map(f).collect::<Vec<_>>().join(",");
    let actors = list(&|i| {
        format!(
            r#"{{"reference":{{"identifier":{{"system":"urn:veil:recipient","value":"r{i}"}}}}}}"#
        )
    });
    let purposes = list(&|i| format!(r#"{{"code":"p{i}"}}"#));
    let data = list(&|i| {
        format!(
            r#"{{"reference":{{"identifier":{{"system":"urn:dicom:uid","value":"1.2.{i}"}}}}}}"#
        )
    });
    let t = r4(
        "P1",
        &format!(r#"{{"type":"deny","actor":[{actors}],"purpose":[{purposes}],"data":[{data}]}}"#),
    );
    let e = import(&t).unwrap_err();
    assert!(e.to_string().contains("more than 10000 provisions"), "{e}");
}
