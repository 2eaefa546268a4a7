//! Audit events as FHIR R4 (4.0.1) AuditEvent resources, coded the way the IHE Basic Audit Log
//! Patterns (BALP) code theirs: DICOM (DCM) event types for authentication, security and export
//! events; `rest` with a FHIR restful-interaction subtype for reads and writes of records; the
//! patient as an entity of type Person (1) and role Patient (1); the ISO 21089 `disclose`
//! lifecycle subtype on disclosures. Only ids and codes are written, never names or content.
//!
//! No BALP profile is claimed in `meta.profile`: BALP's RESTful profiles require a server agent
//! with its network address and a data entity that references a FHIR resource, and describe
//! successful outcomes only; Ward's records are not FHIR resources and its failed and denied
//! events are exported too. The resources are valid base R4 AuditEvents.

use serde::Serialize;
use ward_domain::audit::AuditAction;
use ward_domain::disclosure;
use ward_store::AuditRecord;

const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";
const EVENT_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-event-type";
const RESTFUL: &str = "http://hl7.org/fhir/restful-interaction";
const LIFECYCLE: &str = "http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle";
const ENTITY_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-entity-type";
const OBJECT_ROLE: &str = "http://terminology.hl7.org/CodeSystem/object-role";
const SOURCE_TYPE: &str = "http://terminology.hl7.org/CodeSystem/security-source-type";
const SECURITY_ROLE: &str = "http://terminology.hl7.org/CodeSystem/extra-security-role-type";

/// Identifier systems for Ward's ids (opaque UUIDs, or the log index for `audit-event`).
pub const USER_SYSTEM: &str = "urn:ward:user";
/// Devices registered at sign-in.
pub const DEVICE_SYSTEM: &str = "urn:ward:device";
/// Patient records (the opaque id, never an MRN).
pub const PATIENT_SYSTEM: &str = "urn:ward:patient";
/// The audit log (its origin) and its events (their index).
pub const LOG_SYSTEM: &str = "urn:ward:audit-log";
/// Reason and purpose codes.
pub const PURPOSE_SYSTEM: &str = "urn:ward:purpose";
/// Ward's own action names, as an extra subtype so nothing is lost in the mapping.
pub const ACTION_SYSTEM: &str = "urn:ward:audit-action";

/// An R4 AuditEvent with the elements Ward fills.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    resource_type: &'static str,
    id: String,
    #[serde(rename = "type")]
    kind: Coding,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    subtype: Vec<Coding>,
    action: &'static str,
    recorded: String,
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome_desc: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    purpose_of_event: Vec<CodeableConcept>,
    agent: Vec<Agent>,
    source: Source,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    entity: Vec<Entity>,
}

#[derive(Debug, Clone, Serialize)]
struct Coding {
    system: &'static str,
    code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    display: Option<&'static str>,
}

fn coding(system: &'static str, code: impl Into<String>, display: &'static str) -> Coding {
    Coding { system, code: code.into(), display: Some(display) }
}

fn code(system: &'static str, code: impl Into<String>) -> Coding {
    Coding { system, code: code.into(), display: None }
}

#[derive(Debug, Serialize)]
struct CodeableConcept {
    coding: Vec<Coding>,
}

#[derive(Debug, Serialize)]
struct Identifier {
    system: &'static str,
    value: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Reference {
    #[serde(skip_serializing_if = "Option::is_none")]
    reference: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    identifier: Identifier,
}

fn by_id(system: &'static str, value: impl Into<String>) -> Reference {
    Reference { reference: None, kind: None, identifier: Identifier { system, value: value.into() } }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Agent {
    #[serde(rename = "type")]
    kind: CodeableConcept,
    #[serde(skip_serializing_if = "Option::is_none")]
    who: Option<Reference>,
    requestor: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    network: Option<Network>,
}

#[derive(Debug, Serialize)]
struct Network {
    address: String,
    /// 2 = IP address.
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Debug, Serialize)]
struct Source {
    site: String,
    observer: Reference,
    #[serde(rename = "type")]
    kind: Vec<Coding>,
}

#[derive(Debug, Serialize)]
struct Entity {
    what: Reference,
    #[serde(rename = "type")]
    kind: Coding,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<Coding>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    detail: Vec<EntityDetail>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct EntityDetail {
    #[serde(rename = "type")]
    kind: String,
    value_string: String,
}

/// DICOM and FHIR codes for one Ward action: event type, subtypes and the C/R/U/D/E action.
fn classify(action: Option<AuditAction>) -> (Coding, Vec<Coding>, &'static str) {
    use AuditAction as A;
    let dcm = |c: &str, d: &'static str| coding(DCM, c, d);
    let rest = || coding(EVENT_TYPE, "rest", "RESTful Operation");
    let interaction = |c: &'static str| code(RESTFUL, c);
    let Some(action) = action else {
        return (dcm("110100", "Application Activity"), vec![], "E");
    };
    match action {
        A::Login | A::MfaVerify | A::StepUp | A::OidcLogin => (dcm("110114", "User Authentication"), vec![dcm("110122", "Login")], "E"),
        A::Logout | A::SessionRevoke | A::SessionIdleTimeout | A::OidcLogout => {
            (dcm("110114", "User Authentication"), vec![dcm("110123", "Logout")], "E")
        }
        A::TokenRefresh => (dcm("110114", "User Authentication"), vec![], "E"),
        A::RefreshReuse => (dcm("110113", "Security Alert"), vec![dcm("110126", "Node Authentication")], "E"),
        A::PasswordChange
        | A::TotpConfirm
        | A::TotpRemove
        | A::RecoveryCodes
        | A::WebAuthnRename
        | A::WebAuthnRemove
        | A::PasswordReset
        | A::UserDisable
        | A::UserEnable => (dcm("110113", "Security Alert"), vec![dcm("110137", "User Security Attributes Changed")], "U"),
        A::WebAuthnCloneSuspected => (dcm("110113", "Security Alert"), vec![dcm("110126", "Node Authentication")], "E"),
        A::TotpEnroll | A::WebAuthnRegister => {
            (dcm("110113", "Security Alert"), vec![dcm("110137", "User Security Attributes Changed")], "C")
        }
        A::UserRole => (dcm("110113", "Security Alert"), vec![dcm("110136", "Security Roles Changed")], "U"),
        A::ScimUser | A::ScimGroup | A::ScimDeprovision | A::ScimToken | A::OidcConfig => {
            (dcm("110113", "Security Alert"), vec![dcm("110137", "User Security Attributes Changed")], "U")
        }
        A::SessionsRevokeAll => (dcm("110113", "Security Alert"), vec![dcm("110137", "User Security Attributes Changed")], "E"),
        A::UserCreate => (dcm("110113", "Security Alert"), vec![dcm("110137", "User Security Attributes Changed")], "C"),
        A::OrgCreate => (dcm("110113", "Security Alert"), vec![dcm("110129", "Security Configuration")], "C"),
        A::OrgPolicy => (dcm("110113", "Security Alert"), vec![dcm("110129", "Security Configuration")], "U"),
        A::DirectoryRead => (rest(), vec![interaction("search-type")], "E"),
        A::PatientCreate
        | A::ConversationCreate
        | A::MemberAdd
        | A::MessageSend
        | A::MessageForward
        | A::AttachmentUpload
        | A::AuthorizationRecord => (rest(), vec![interaction("create")], "C"),
        A::PatientRead | A::ConversationRead | A::MessageRead | A::StreamReplay | A::AttachmentDownload | A::BreakGlassRead => {
            (rest(), vec![interaction("read")], "R")
        }
        A::CareTeam => (rest(), vec![interaction("update")], "U"),
        A::MemberRemove | A::MessageRecall => (rest(), vec![interaction("delete")], "D"),
        A::AuditLogRead => (dcm("110101", "Audit Log Used"), vec![], "R"),
        A::AuditExport | A::EvidenceExport => (dcm("110106", "Export"), vec![], "R"),
        // Actions added later map here until they are given codes of their own.
        _ => (dcm("110100", "Application Activity"), vec![], "E"),
    }
}

/// Which entity type and role a target record gets.
fn target_codes(kind: &str) -> (Coding, Option<Coding>) {
    match kind {
        "user" => (coding(ENTITY_TYPE, "1", "Person"), Some(coding(OBJECT_ROLE, "11", "Security User Entity"))),
        "session" => (coding(ENTITY_TYPE, "2", "System Object"), Some(coding(OBJECT_ROLE, "13", "Security Resource"))),
        "org" => (coding(ENTITY_TYPE, "3", "Organization"), None),
        _ => (coding(ENTITY_TYPE, "2", "System Object"), Some(coding(OBJECT_ROLE, "4", "Domain Resource"))),
    }
}

/// RFC 3339 UTC with milliseconds, as an R4 `instant` needs.
pub fn instant(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// Maps one stored event. `origin` is the log's origin (the observer).
pub fn audit_event(r: &AuditRecord, origin: &str) -> AuditEvent {
    let action = AuditAction::parse(&r.action);
    let (kind, mut subtype, act) = classify(action);
    let disclosure = disclosure::classify(&r.action, &r.outcome, r.actor_user_id, &r.detail);
    if disclosure.is_some() {
        subtype.push(coding(LIFECYCLE, "disclose", "Disclose Record Lifecycle Event"));
    }
    subtype.push(code(ACTION_SYSTEM, r.action.clone()));
    let (outcome, outcome_desc) = match r.outcome.as_str() {
        "success" => ("0", None),
        // A refused or failed request (bad password, policy denial); Ward records no event for
        // requests that failed inside the server (their change rolled back), so 8 and 12 do not occur.
        other => ("4", Some(other.to_owned())),
    };
    let network =
        r.source_ip.as_deref().filter(|ip| ip.parse::<std::net::IpAddr>().is_ok()).map(|ip| Network { address: ip.to_owned(), kind: "2" });
    let mut agent = Vec::new();
    let user_type = || CodeableConcept { coding: vec![coding(SECURITY_ROLE, "humanuser", "human user")] };
    match (r.actor_user_id, r.actor_device_id) {
        (user, Some(device)) => {
            if let Some(u) = user {
                agent.push(Agent { kind: user_type(), who: Some(by_id(USER_SYSTEM, u.to_string())), requestor: true, network: None });
            }
            agent.push(Agent {
                kind: CodeableConcept { coding: vec![coding(DCM, "110153", "Source Role ID")] },
                who: Some(by_id(DEVICE_SYSTEM, device.to_string())),
                requestor: user.is_none(),
                network,
            });
        }
        (Some(u), None) => agent.push(Agent { kind: user_type(), who: Some(by_id(USER_SYSTEM, u.to_string())), requestor: true, network }),
        // No known user: an unknown name at sign-in, or the operator's `ward` command.
        (None, None) => agent.push(Agent { kind: user_type(), who: None, requestor: true, network }),
    }
    let mut purpose_of_event = Vec::new();
    if let Some(d) = &disclosure {
        purpose_of_event.push(CodeableConcept { coding: vec![code(PURPOSE_SYSTEM, d.purpose.clone())] });
    }
    let mut entity = Vec::new();
    if let Some(p) = r.patient_id {
        entity.push(Entity {
            what: Reference {
                reference: Some(format!("Patient/{p}")),
                kind: Some("Patient"),
                identifier: Identifier { system: PATIENT_SYSTEM, value: p.to_string() },
            },
            kind: coding(ENTITY_TYPE, "1", "Person"),
            role: Some(coding(OBJECT_ROLE, "1", "Patient")),
            detail: vec![],
        });
    }
    if let (Some(kind), Some(id)) = (&r.target_type, &r.target_id)
        && !(kind == "patient" && r.patient_id.is_some_and(|p| p.to_string() == *id))
    {
        let (t, role) = target_codes(kind);
        entity.push(Entity { what: by_id(target_system(kind), id.clone()), kind: t, role, detail: vec![] });
    }
    // The Ward log entry itself: its index, leaf hash and details (codes, counts and ids only),
    // so each resource can be traced to the verifiable log.
    let mut detail = vec![EntityDetail { kind: "leaf_hash".into(), value_string: r.leaf().leaf_hash().to_string() }];
    if let Some(req) = &r.request_id {
        detail.push(EntityDetail { kind: "request_id".into(), value_string: req.clone() });
    }
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(&r.detail) {
        for (k, v) in map {
            let value_string = match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            detail.push(EntityDetail { kind: k, value_string });
        }
    }
    entity.push(Entity {
        what: by_id(LOG_SYSTEM, format!("{origin}#{}", r.idx)),
        kind: coding(ENTITY_TYPE, "2", "System Object"),
        role: Some(coding(OBJECT_ROLE, "13", "Security Resource")),
        detail,
    });
    AuditEvent {
        resource_type: "AuditEvent",
        id: format!("ward-audit-{}", r.idx),
        kind,
        subtype,
        action: act,
        recorded: instant(r.occurred_at),
        outcome,
        outcome_desc,
        purpose_of_event,
        agent,
        source: Source {
            site: origin.to_owned(),
            observer: by_id(LOG_SYSTEM, origin),
            kind: vec![coding(SOURCE_TYPE, "4", "Application Server")],
        },
        entity,
    }
}

/// The identifier system of a target record kind: `urn:ward:<kind>`.
fn target_system(kind: &str) -> &'static str {
    match kind {
        "user" => USER_SYSTEM,
        "patient" => PATIENT_SYSTEM,
        "conversation" => "urn:ward:conversation",
        "message" => "urn:ward:message",
        "session" => "urn:ward:session",
        "org" => "urn:ward:org",
        _ => "urn:ward:record",
    }
}

/// The R4 Bundle that wraps the exported resources (streamed: see `super::Encoder`).
pub(super) fn bundle_head(origin: &str, now_ms: i64) -> String {
    let head = serde_json::json!({
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": instant(now_ms),
        "meta": {"source": format!("{LOG_SYSTEM}:{origin}")},
    })
    .to_string();
    // Reopen the object to append the entries.
    format!("{},\"entry\":[", &head[..head.len() - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(action: &str, outcome: &str, detail: &str) -> AuditRecord {
        AuditRecord {
            idx: 7,
            occurred_at: 1_767_225_600_123,
            org_id: Some(uuid::Uuid::nil()),
            actor_user_id: Some(uuid::Uuid::from_u128(1)),
            actor_device_id: Some(uuid::Uuid::from_u128(2)),
            action: action.into(),
            outcome: outcome.into(),
            target_type: Some("conversation".into()),
            target_id: Some(uuid::Uuid::from_u128(3).to_string()),
            patient_id: Some(uuid::Uuid::from_u128(4)),
            source_ip: Some("10.0.0.5".into()),
            request_id: None,
            detail: detail.into(),
        }
    }

    #[test]
    fn instants_are_utc_with_milliseconds() {
        assert_eq!(instant(1_767_225_600_123), "2026-01-01T00:00:00.123Z");
        assert_eq!(instant(0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn every_action_gets_a_type_and_a_crude_action() {
        for a in AuditAction::ALL {
            let (t, _, act) = classify(Some(*a));
            assert!(!t.code.is_empty());
            assert!(matches!(act, "C" | "R" | "U" | "D" | "E"), "{}", a.as_str());
        }
        assert_eq!(classify(Some(AuditAction::Login)).1[0].code, "110122");
        assert_eq!(classify(Some(AuditAction::Logout)).1[0].code, "110123");
        assert_eq!(classify(Some(AuditAction::AuditExport)).0.code, "110106");
        assert_eq!(classify(Some(AuditAction::MessageRead)).1[0].code, "read");
    }

    #[test]
    fn a_disclosure_is_marked_and_carries_its_purpose() {
        let member = uuid::Uuid::from_u128(9);
        let r = record("member.add", "success", &format!(r#"{{"member":"{member}","outside_care_team":true,"reason":"consult"}}"#));
        let v = serde_json::to_value(audit_event(&r, "audit.example/log")).unwrap();
        assert_eq!(v["action"], "C");
        assert_eq!(v["outcome"], "0");
        assert!(v["subtype"].as_array().unwrap().iter().any(|c| c["code"] == "disclose"));
        assert_eq!(v["purposeOfEvent"][0]["coding"][0]["code"], "consult");
        assert_eq!(v["entity"][0]["what"]["reference"], format!("Patient/{}", uuid::Uuid::from_u128(4)));
        assert_eq!(v["agent"][0]["who"]["identifier"]["value"], uuid::Uuid::from_u128(1).to_string());
        assert_eq!(v["agent"][1]["network"]["address"], "10.0.0.5");
        assert_eq!(v["source"]["observer"]["identifier"]["value"], "audit.example/log");
    }

    #[test]
    fn failures_are_minor_failures_with_the_outcome_as_a_code() {
        let v = serde_json::to_value(audit_event(&record("auth.login", "denied", "{}"), "o")).unwrap();
        assert_eq!(v["outcome"], "4");
        assert_eq!(v["outcomeDesc"], "denied");
        assert!(v.get("purposeOfEvent").is_none());
    }
}
