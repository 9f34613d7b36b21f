//! Exports of ledger entries in the two audit formats other systems read:
//! DICOM PS3.15 Annex A.5 audit messages (XML, the RFC 3881-derived schema
//! used by IHE ATNA repositories) and FHIR R4 AuditEvent resources (JSON).
//!
//! Releases are the A.5.3.8 "Export" event (EventID 110106, action R);
//! deletions at the end of retention are "DICOM Study Deleted" (110105,
//! action D); refusals are exports that did not happen (outcome 4, minor
//! failure, with the reason). Where the standard asks for a Patient ID the
//! export carries the keyed patient reference, never the ID: the exported
//! audit trail must not become a second copy of the PHI.

use serde_json::json;

use crate::{Entry, Event};

/// Escapes text for XML attributes and content.
fn esc(s: &str) -> String {
    veil_core::escape_markup(s)
}

fn event_codes(e: &Entry) -> (&'static str, &'static str, &'static str, &'static str) {
    // (EventID code, display, action code, outcome)
    match e.event {
        Event::Release => ("110106", "Export", "R", "0"),
        Event::Refusal => ("110106", "Export", "R", "4"),
        Event::RetentionDelete => ("110105", "DICOM Study Deleted", "D", "0"),
        // consent changes touch the patient's record; site and recipient
        // changes are security configuration (DCM 110113 Security Alert)
        Event::ConsentChange => ("110110", "Patient Record", "U", "0"),
        Event::SiteDefaultChange
        | Event::RecipientChange
        | Event::RecipientKeyRotation
        | Event::RecipientRemoval => ("110113", "Security Alert", "E", "0"),
        // a reviewer's decision on a de-identified object: approving it
        // for the output folder updates what is released, rejecting it
        // deletes it
        Event::ReviewApproval => ("110103", "DICOM Instances Accessed", "U", "0"),
        Event::ReviewRejection => ("110103", "DICOM Instances Accessed", "D", "0"),
        // staff sign-ins, account changes and patient lookups: the
        // console's own security trail (DCM 110114 User Authentication)
        Event::StaffAction => ("110114", "User Authentication", "E", "0"),
    }
}

/// One entry as a DICOM PS3.15 A.5 audit message.
pub fn dicom_audit_message(e: &Entry) -> String {
    let (code, display, action, outcome) = event_codes(e);
    let mut x = String::new();
    x.push_str("<AuditMessage>\n");
    x.push_str(&format!(
        "  <EventIdentification EventActionCode=\"{action}\" EventDateTime=\"{}\" EventOutcomeIndicator=\"{outcome}\">\n",
        esc(&e.time)
    ));
    x.push_str(&format!(
        "    <EventID csd-code=\"{code}\" codeSystemName=\"DCM\" originalText=\"{display}\"/>\n"
    ));
    if e.event == Event::Refusal {
        x.push_str(&format!(
            "    <EventOutcomeDescription>{}</EventOutcomeDescription>\n",
            esc(&e.reason)
        ));
    }
    x.push_str(&format!(
        "    <PurposeOfUse csd-code=\"{}\" codeSystemName=\"urn:veil:purpose\" originalText=\"{}\"/>\n",
        esc(&e.purpose),
        esc(&e.purpose)
    ));
    x.push_str("  </EventIdentification>\n");
    x.push_str(&format!(
        "  <ActiveParticipant UserID=\"{}\" UserIsRequestor=\"true\">\n    <RoleIDCode csd-code=\"110153\" codeSystemName=\"DCM\" originalText=\"Source Role ID\"/>\n  </ActiveParticipant>\n",
        esc(&e.operator)
    ));
    x.push_str(&format!(
        "  <ActiveParticipant UserID=\"{}\" UserIsRequestor=\"false\">\n    <RoleIDCode csd-code=\"110152\" codeSystemName=\"DCM\" originalText=\"Destination Role ID\"/>\n  </ActiveParticipant>\n",
        esc(&e.recipient)
    ));
    x.push_str("  <AuditSourceIdentification AuditSourceID=\"veil\">\n    <AuditSourceTypeCode csd-code=\"4\" codeSystemName=\"DCM\" originalText=\"Application Server Process\"/>\n  </AuditSourceIdentification>\n");
    if let Some(p) = &e.patient_ref {
        x.push_str(&format!(
            "  <ParticipantObjectIdentification ParticipantObjectID=\"{}\" ParticipantObjectTypeCode=\"1\" ParticipantObjectTypeCodeRole=\"1\">\n    <ParticipantObjectIDTypeCode csd-code=\"2\" codeSystemName=\"RFC-3881\" originalText=\"Patient Number\"/>\n    <ParticipantObjectDetail type=\"veil-patient-ref\" value=\"keyed hash, not the Patient ID\"/>\n  </ParticipantObjectIdentification>\n",
            esc(p)
        ));
    }
    let study = e.output_study_uid.as_ref().or(e.study_ref.as_ref());
    if let Some(s) = study {
        x.push_str(&format!(
            "  <ParticipantObjectIdentification ParticipantObjectID=\"{}\" ParticipantObjectTypeCode=\"2\" ParticipantObjectTypeCodeRole=\"3\">\n    <ParticipantObjectIDTypeCode csd-code=\"110180\" codeSystemName=\"DCM\" originalText=\"Study Instance UID\"/>\n    <ParticipantObjectDescription>{} instances; recipe {}; key {}; ledger entry {}</ParticipantObjectDescription>\n  </ParticipantObjectIdentification>\n",
            esc(s),
            e.instances,
            esc(&e.recipe),
            esc(&e.key_id),
            e.seq
        ));
    }
    x.push_str("</AuditMessage>\n");
    x
}

/// All entries as one XML document (a list of audit messages).
pub fn dicom_audit_messages(entries: &[Entry]) -> String {
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<AuditMessages>\n");
    for e in entries {
        x.push_str(&dicom_audit_message(e));
    }
    x.push_str("</AuditMessages>\n");
    x
}

/// One entry as a FHIR R4 AuditEvent.
pub fn fhir_audit_event(e: &Entry) -> serde_json::Value {
    let (code, display, action, outcome) = event_codes(e);
    let mut entity = Vec::new();
    if let Some(p) = &e.patient_ref {
        entity.push(json!({
            "what": {"identifier": {"system": "urn:veil:patient-ref", "value": p}},
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1", "display": "Person"},
            "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1", "display": "Patient"}
        }));
    }
    if let Some(s) = e.output_study_uid.as_ref() {
        entity.push(json!({
            "what": {"identifier": {"system": "urn:dicom:uid", "value": format!("urn:oid:{s}")}},
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2", "display": "System Object"},
            "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "3", "display": "Report"},
            "detail": [
                {"type": "instances", "valueString": e.instances.to_string()},
                {"type": "output-digest", "valueString": e.output_digest.clone().unwrap_or_default()}
            ]
        }));
    } else if let Some(s) = e.study_ref.as_ref() {
        entity.push(json!({
            "what": {"identifier": {"system": "urn:veil:study-ref", "value": s}},
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2", "display": "System Object"}
        }));
    }
    let mut ev = json!({
        "resourceType": "AuditEvent",
        "id": format!("veil-ledger-{}", e.seq),
        "type": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": code, "display": display},
        "action": action,
        "recorded": e.time,
        "outcome": outcome,
        "purposeOfEvent": [{"coding": [{"system": "urn:veil:purpose", "code": e.purpose}]}],
        "agent": [
            {"who": {"display": e.operator}, "requestor": true,
             "type": {"coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110153", "display": "Source Role ID"}]}},
            {"who": {"identifier": {"system": "urn:veil:recipient", "value": e.recipient}}, "requestor": false,
             "type": {"coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110152", "display": "Destination Role ID"}]}}
        ],
        "source": {"observer": {"display": "veil"},
                   "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4", "display": "Application Server"}]},
        "entity": entity
    });
    if e.event == Event::Refusal {
        ev["outcomeDesc"] = json!(e.reason);
    }
    ev
}

/// All entries as a FHIR Bundle of type collection.
pub fn fhir_audit_bundle(entries: &[Entry]) -> serde_json::Value {
    json!({
        "resourceType": "Bundle",
        "type": "collection",
        "entry": entries.iter().map(|e| json!({"resource": fhir_audit_event(e)})).collect::<Vec<_>>()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(event: Event) -> Entry {
        Entry {
            v: 1,
            seq: 3,
            time: "2025-02-03T04:05:06Z".into(),
            event,
            release_id: "r1".into(),
            recipient: "acme<ai>".into(),
            purpose: "ai-training".into(),
            recipe: "r 1".into(),
            key_id: "abcd".into(),
            patient_ref: Some("pp".into()),
            study_ref: Some("ss".into()),
            output_study_uid: Some("2.25.1".into()),
            instances: 2,
            inputs_digest: None,
            output_digest: Some("dd".into()),
            verification: "not-run".into(),
            operator: "op".into(),
            reason: "consent".into(),
            refers_to: None,
        }
    }

    #[test]
    fn dicom_export_message_has_the_a5_shape() {
        let x = dicom_audit_message(&e(Event::Release));
        assert!(x.contains(
            "<EventID csd-code=\"110106\" codeSystemName=\"DCM\" originalText=\"Export\"/>"
        ));
        assert!(x.contains("EventActionCode=\"R\""));
        assert!(x.contains("csd-code=\"110152\""));
        assert!(x.contains("UserID=\"acme&lt;ai&gt;\""));
        assert!(x.contains("ParticipantObjectID=\"2.25.1\""));
        let d = dicom_audit_message(&e(Event::RetentionDelete));
        assert!(d.contains("110105") && d.contains("EventActionCode=\"D\""));
        let r = dicom_audit_message(&e(Event::Refusal));
        assert!(r.contains("EventOutcomeIndicator=\"4\""));
    }

    #[test]
    fn fhir_audit_event_has_the_r4_shape() {
        let v = fhir_audit_event(&e(Event::Release));
        assert_eq!(v["resourceType"], "AuditEvent");
        assert_eq!(v["type"]["code"], "110106");
        assert_eq!(v["action"], "R");
        assert_eq!(
            v["entity"][1]["what"]["identifier"]["value"],
            "urn:oid:2.25.1"
        );
        assert_eq!(
            fhir_audit_bundle(&[e(Event::Refusal)])["entry"][0]["resource"]["outcome"],
            "4"
        );
    }
}
