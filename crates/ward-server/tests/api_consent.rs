//! Consent registry, notice templates and patient notices over real HTTPS: recording,
//! superseding and revoking consents (unsecured PHI only with the warning version and the
//! patient's insistence), admin-only templates checked by the outbound content policy, sends
//! refused without consent or with clinical detail, roles and tenancy, and a canary: the
//! blocked clinical terms reach neither the logs, the audit log nor the error bodies.

mod common;

use common::{Harness, Reply, Session, captured, logs};
use reqwest::Method;
use serde_json::{Value, json};
use ward_domain::role::Role;
use ward_store::{Backend, on_both_backends};

on_both_backends!(consent_templates_and_notices);

/// Clinical terms the requests carry and the policy blocks; they must never be stored or logged.
const BLOCKED_TERMS: [&str; 2] = ["sertraline", "depression"];

fn consents(p: &str) -> String {
    format!("/api/v1/patients/{p}/consents")
}

fn notices(p: &str) -> String {
    format!("/api/v1/patients/{p}/notices")
}

const TEMPLATES: &str = "/api/v1/org/notice-templates";

fn assert_clean(what: &str, text: &str) {
    let lower = text.to_ascii_lowercase();
    for term in BLOCKED_TERMS {
        assert!(!lower.contains(term), "`{term}` reached {what}");
    }
}

/// A patient record created over the API; its id.
async fn new_patient(h: &Harness, by: &Session, mrn: &str, care_team: Value) -> String {
    let r = h.post("/api/v1/patients", &by.access, json!({"mrn": mrn, "display_name": "Jamie Doe", "care_team": care_team})).await;
    r.expect(201).body["id"].as_str().unwrap().to_owned()
}

fn categories(r: &Reply) -> Vec<String> {
    r.body["categories"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_owned()).collect()
}

async fn consent_templates_and_notices(backend: Backend) {
    captured();
    let Some(h) = Harness::start(backend).await else { return };
    let (a, b) = (h.org("consenta", vec![]).await, h.org("consentb", vec![]).await);
    let admin = h.login(&h.account(&a, "admin@consenta", Role::Admin).await).await;
    let doc = h.login(&h.account(&a, "doc@consenta", Role::Clinician).await).await;
    let staff = h.login(&h.account(&a, "staff@consenta", Role::Staff).await).await;
    let nurse = h.login(&h.account(&a, "nurse@consenta", Role::Nurse).await).await;
    let officer = h.login(&h.account(&a, "officer@consenta", Role::ComplianceOfficer).await).await;
    let p = new_patient(&h, &doc, "C-1", json!([doc.account.id, staff.account.id])).await;
    let patient_acc =
        h.account_for_patient(&a, "jamie@consenta", Role::Patient, Some(ward_domain::ids::PatientId(p.parse().unwrap()))).await;
    let me = h.login(&patient_acc).await;
    let b_doc = h.login(&h.account(&b, "doc@consentb", Role::Clinician).await).await;
    let p_b = new_patient(&h, &b_doc, "B-1", json!([b_doc.account.id])).await;

    // --- consent -------------------------------------------------------------------------------
    let sms = h.post(&consents(&p), &doc.access, json!({"channel": "sms_notices"})).await.expect(201);
    assert_eq!((sms.body["channel"].as_str(), sms.body["current"].as_bool()), (Some("sms_notices"), Some(true)));
    assert_eq!(sms.body["recorded_by"], json!(doc.account.id));
    h.post(&consents(&p), &doc.access, json!({"channel": "fax"})).await.expect_problem(400, "invalid_body");
    let r = h.post(&consents(&p), &doc.access, json!({"channel": "unsecured_phi", "patient_insists": true})).await;
    let r = r.expect_problem(422, "validation_failed");
    assert!(r.body["detail"].as_str().unwrap().contains("warning_version"), "{}", r.body);
    let r = h.post(&consents(&p), &doc.access, json!({"channel": "unsecured_phi", "warning_version": "risk-v3"})).await;
    assert!(r.expect_problem(422, "validation_failed").body["detail"].as_str().unwrap().contains("insist"));
    h.post(&consents(&p), &doc.access, json!({"channel": "sms_notices", "patient_insists": true}))
        .await
        .expect_problem(422, "validation_failed");
    let u = h
        .post(&consents(&p), &staff.access, json!({"channel": "unsecured_phi", "warning_version": "risk-v3", "patient_insists": true}))
        .await;
    assert_eq!(u.expect(201).body["warning_version"], "risk-v3");
    // The patient records their own; another patient's record does not exist for them.
    h.post(&consents(&p), &me.access, json!({"channel": "portal"})).await.expect(201);
    h.post(&consents(&p_b), &me.access, json!({"channel": "portal"})).await.expect_problem(404, "not_found");
    // Off the care team, or a compliance officer: refused. Another tenant's patient: not found.
    h.post(&consents(&p), &nurse.access, json!({"channel": "portal"})).await.expect_problem(403, "forbidden");
    h.post(&consents(&p), &officer.access, json!({"channel": "portal"})).await.expect_problem(403, "forbidden");
    h.post(&consents(&p_b), &doc.access, json!({"channel": "portal"})).await.expect_problem(404, "not_found");
    h.get(&consents(&p_b), &doc.access).await.expect_problem(404, "not_found");
    h.get(&consents(&p), &nurse.access).await.expect_problem(403, "forbidden");
    // A newer grant supersedes; the history keeps both.
    h.post(&consents(&p), &admin.access, json!({"channel": "sms_notices", "warning_version": "sms-2"})).await.expect(201);
    let list = h.get(&consents(&p), &officer.access).await.expect(200);
    assert_eq!(list.body["current"].as_array().unwrap().len(), 3, "{}", list.body);
    let history = list.body["history"].as_array().unwrap();
    assert_eq!(history.len(), 4);
    let old = history.iter().find(|c| c["id"] == sms.body["id"]).unwrap();
    assert_eq!((old["current"].as_bool(), old["end_reason"].as_str()), (Some(false), Some("superseded")));
    h.post(&format!("{}/revoke", consents(&p)), &doc.access, json!({"channel": "email_notices"}))
        .await
        .expect_problem(409, "invalid_state");
    h.post(&format!("{}/revoke", consents(&p)), &nurse.access, json!({"channel": "portal"})).await.expect_problem(403, "forbidden");
    let revoked = h.post(&format!("{}/revoke", consents(&p)), &me.access, json!({"channel": "portal"})).await.expect(200);
    assert_eq!((revoked.body["end_reason"].as_str(), revoked.body["revoked_by"].clone()), (Some("revoked"), json!(patient_acc.id)));

    // --- templates -----------------------------------------------------------------------------
    let sms_text = "See you {date} at {time}, {first_name}. {location_name}";
    h.post(TEMPLATES, &doc.access, json!({"name": "reminder", "channel": "sms", "body": sms_text})).await.expect_problem(403, "forbidden");
    let r =
        h.post(TEMPLATES, &admin.access, json!({"name": "bad", "channel": "sms", "body": "Hi {first_name}, about your {diagnosis}"})).await;
    assert!(r.expect_problem(422, "template_field_not_allowed").body["detail"].as_str().unwrap().contains("diagnosis"));
    // An unknown name is request text: only its position is given back.
    let r = h.post(TEMPLATES, &admin.access, json!({"name": "bad", "channel": "sms", "body": "Hi {jamie_sertraline}"})).await;
    assert_clean("an error body", &r.expect_problem(422, "template_field_not_allowed").body.to_string());
    let r = h
        .post(TEMPLATES, &admin.access, json!({"name": "bad", "channel": "sms", "body": "See you {date} for your Depression follow-up"}))
        .await
        .expect_problem(422, "outbound_content_blocked");
    assert_eq!(categories(&r), ["mental_health"]);
    assert_clean("an error body", &r.body.to_string());
    h.post(TEMPLATES, &admin.access, json!({"name": "bad", "channel": "sms", "body": "See you {date"}))
        .await
        .expect_problem(422, "template_invalid");
    h.post(TEMPLATES, &admin.access, json!({"name": "bad", "channel": "fax", "body": sms_text})).await.expect_problem(400, "invalid_body");
    let t_sms = h.post(TEMPLATES, &admin.access, json!({"name": "reminder", "channel": "sms", "body": sms_text})).await.expect(201);
    let t_sms = t_sms.body["id"].as_str().unwrap().to_owned();
    h.post(TEMPLATES, &admin.access, json!({"name": "reminder", "channel": "sms", "body": sms_text})).await.expect_problem(409, "conflict");
    let t_email =
        h.post(TEMPLATES, &admin.access, json!({"name": "email", "channel": "email", "body": "Hello {first_name}"})).await.expect(201);
    let t_email = t_email.body["id"].as_str().unwrap().to_owned();
    let spare =
        h.post(TEMPLATES, &admin.access, json!({"name": "spare", "channel": "push", "body": "You have a new notice"})).await.expect(201);
    let spare = spare.body["id"].as_str().unwrap().to_owned();
    let changed = h
        .call(
            Method::PUT,
            &format!("{TEMPLATES}/{spare}"),
            Some(&admin.access),
            Some(json!({"name": "spare2", "channel": "push", "body": "New notice"})),
        )
        .await
        .expect(200);
    assert_eq!(changed.body["name"], "spare2");
    h.call(
        Method::PUT,
        &format!("{TEMPLATES}/{spare}"),
        Some(&admin.access),
        Some(json!({"name": "spare2", "channel": "push", "body": "Your sertraline"})),
    )
    .await
    .expect_problem(422, "outbound_content_blocked");
    h.call(Method::DELETE, &format!("{TEMPLATES}/{spare}"), Some(&doc.access), None).await.expect_problem(403, "forbidden");
    h.call(Method::DELETE, &format!("{TEMPLATES}/{spare}"), Some(&admin.access), None).await.expect(204);
    h.call(Method::DELETE, &format!("{TEMPLATES}/{spare}"), Some(&admin.access), None).await.expect_problem(404, "not_found");
    let listed = h.get(TEMPLATES, &staff.access).await.expect(200);
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 2);
    h.get(TEMPLATES, &me.access).await.expect_problem(403, "forbidden");
    assert_eq!(h.get(TEMPLATES, &b_doc.access).await.expect(200).body["items"], json!([]), "templates are per organisation");

    // --- notices -------------------------------------------------------------------------------
    let values = json!({"first_name": "Jamie", "date": "Tuesday", "time": "3 PM", "location_name": "Main Street Clinic"});
    let send = |tpl: &str, channel: &str, values: &Value| json!({"template_id": tpl, "channel": channel, "values": values});
    // Consent alone is not enough: an SMS needs a verified phone number (docs/devices.md).
    h.post(&notices(&p), &doc.access, send(&t_sms, "sms", &values)).await.expect_problem(409, "verified_contact_required");
    let owner = ward_store::ContactOwner::Patient(ward_domain::ids::PatientId(p.parse().unwrap()));
    let phone = h.store.test_verified_contact(a.id, doc.account.id, owner, ward_domain::contact::ContactKind::Phone, "+14155550142").await;
    let sent = h.post(&notices(&p), &doc.access, send(&t_sms, "sms", &values)).await.expect(201);
    assert_eq!(sent.body["text"], "See you Tuesday at 3 PM, Jamie. Main Street Clinic");
    assert_eq!((sent.body["status"].as_str(), sent.body["destination"].clone()), (Some("queued"), json!(format!("contact:{}", phone.id))));
    // No email consent.
    h.post(&notices(&p), &staff.access, send(&t_email, "email", &values)).await.expect_problem(409, "consent_required");
    h.post(&notices(&p), &doc.access, send(&t_sms, "email", &values)).await.expect_problem(422, "validation_failed");
    h.post(&notices(&p), &doc.access, json!({"template_id": t_sms, "channel": "fax", "values": values}))
        .await
        .expect_problem(400, "invalid_body");
    let clinical = json!({"first_name": "Jamie", "date": "Tuesday", "time": "3 PM", "location_name": "Sertraline refill desk"});
    let r = h.post(&notices(&p), &doc.access, send(&t_sms, "sms", &clinical)).await.expect_problem(422, "outbound_content_blocked");
    assert_eq!(categories(&r), ["medication"]);
    assert_clean("an error body", &r.body.to_string());
    let missing = json!({"first_name": "Jamie", "date": "Tuesday"});
    h.post(&notices(&p), &doc.access, send(&t_sms, "sms", &missing)).await.expect_problem(422, "validation_failed");
    for who in [&nurse, &admin, &officer, &me] {
        h.post(&notices(&p), &who.access, send(&t_sms, "sms", &values)).await.expect_problem(403, "forbidden");
    }
    h.post(&notices(&p_b), &doc.access, send(&t_sms, "sms", &values)).await.expect_problem(404, "not_found");
    h.post(&notices(&p), &doc.access, send(&uuid::Uuid::new_v4().to_string(), "sms", &values)).await.expect_problem(404, "not_found");
    // Another organisation's template is not found either.
    let b_admin = h.login(&h.account(&b, "admin@consentb", Role::Admin).await).await;
    let t_b = h.post(TEMPLATES, &b_admin.access, json!({"name": "b", "channel": "sms", "body": "Hi {first_name}"})).await.expect(201);
    h.post(&notices(&p), &doc.access, send(t_b.body["id"].as_str().unwrap(), "sms", &values)).await.expect_problem(404, "not_found");
    // After revocation nothing more goes out on the channel.
    h.post(&format!("{}/revoke", consents(&p)), &doc.access, json!({"channel": "sms_notices"})).await.expect(200);
    h.post(&notices(&p), &doc.access, send(&t_sms, "sms", &values)).await.expect_problem(409, "consent_required");

    let org = a.id;
    let outbox = h.store.notice_outbox(org, ward_domain::ids::PatientId(p.parse().unwrap())).await.unwrap();
    assert_eq!(outbox.len(), 1, "only the permitted notice was queued");

    // --- audit and logs ------------------------------------------------------------------------
    let events = h.store.audit_events(0, 100_000).await.unwrap();
    let n = |action: &str, outcome: &str| events.iter().filter(|e| e.action == action && e.outcome == outcome).count();
    assert_eq!(n("notice.send", "success"), 1);
    assert_eq!(n("notice.send", "failure"), 5, "two without consent, one without a verified number, one blocked, one missing value");
    assert!(n("notice.send", "denied") >= 4);
    assert!(n("notice.template", "failure") >= 4);
    assert!(n("notice.template", "denied") >= 2);
    assert_eq!(n("consent.record", "success"), 4);
    assert!(n("consent.record", "denied") >= 2);
    assert_eq!(n("consent.revoke", "success"), 2);
    let blocked = events
        .iter()
        .find(|e| e.action == "notice.send" && e.detail.contains("outbound_content_blocked"))
        .expect("the blocked send is audited");
    let detail: Value = serde_json::from_str(&blocked.detail).unwrap();
    assert_eq!(detail["medication"], true);
    for e in &events {
        assert_clean("the audit log", &format!("{e:?}"));
    }
    let logs = logs();
    assert!(logs.contains("/notices"), "the logs were captured");
    assert_clean("the logs", &logs);
}
