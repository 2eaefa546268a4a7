//! The verified contact directory over real HTTPS: a user verifies their own number with the
//! code the outbox carries; wrong codes count and lock; the care team and the patient manage a
//! patient's contacts (a patient account reaches no one else's); notices go only to a verified,
//! fresh, unsuppressed, unclaimed contact (`contact:<id>`); re-verification after the
//! organisation's period; a bounce suppresses at once; a number two people claim is flagged
//! and listed to admins. Canary: the values reach neither the logs, the audit log nor any
//! error body.

mod common;

use common::{Harness, Session, captured, logs};
use reqwest::Method;
use serde_json::{Value, json};
use ward_domain::ids::PatientId;
use ward_domain::role::Role;
use ward_store::{Backend, ContactOwner, on_both_backends};

on_both_backends!(contact_directory_over_http);

/// The values the test registers; none may reach a log, an audit detail or an error body.
const PHONE: &str = "+1 (415) 555-0187";
const PHONE_E164: &str = "+14155550187";
const SHARED: &str = "+447700900123";
const EMAIL: &str = "Canary.Contact@Example.org";
const CANARIES: [&str; 4] = ["4155550187", "7700900123", "canary.contact", "Canary.Contact"];

fn assert_clean(what: &str, text: &str) {
    for c in CANARIES {
        assert!(!text.contains(c), "`{c}` reached {what}");
    }
}

/// The code in the newest message of a contact's outbox (what the provider would deliver).
async fn code_sent(h: &Harness, org: ward_domain::ids::OrgId, owner: ContactOwner, id: &str) -> String {
    let out = h.store.contact_outbox(org, owner, id.parse().unwrap()).await.unwrap();
    let m = out.last().expect("a verification message");
    assert_eq!(m.destination, format!("contact:{id}"));
    assert!(m.body.starts_with("Your Ward verification code is "), "{}", m.body);
    let after = m.body.split_once("code is ").expect("the code").1;
    after.chars().take(6).collect()
}

fn wrong(code: &str) -> &'static str {
    if code == "000000" { "111111" } else { "000000" }
}

async fn errors_clean(h: &Harness, s: &Session, path: &str, body: Value, status: u16, code: &str) {
    let r = h.post(path, &s.access, body).await.expect_problem(status, code);
    assert_clean("an error body", &r.body.to_string());
}

async fn contact_directory_over_http(backend: Backend) {
    captured();
    let Some(h) = Harness::start_with(backend, |c| c.outbound.build_at_start = false).await else { return };
    let (a, b) = (h.org("contacta", vec![]).await, h.org("contactb", vec![]).await);
    let admin = h.login(&h.account(&a, "admin@contacta", Role::Admin).await).await;
    let doc = h.login(&h.account(&a, "doc@contacta", Role::Clinician).await).await;
    let staff = h.login(&h.account(&a, "staff@contacta", Role::Staff).await).await;
    let outsider = h.login(&h.account(&a, "outsider@contacta", Role::Nurse).await).await;
    let b_admin = h.login(&h.account(&b, "admin@contactb", Role::Admin).await).await;
    let create = |mrn: &'static str, team: Value| {
        let (h, doc) = (&h, &doc);
        async move {
            let r = h.post("/api/v1/patients", &doc.access, json!({"mrn": mrn, "display_name": "Jamie Doe", "care_team": team})).await;
            r.expect(201).body["id"].as_str().unwrap().to_owned()
        }
    };
    let p = create("K-1", json!([doc.account.id, staff.account.id])).await;
    let q = create("K-2", json!([doc.account.id])).await;
    let pid = PatientId(p.parse().unwrap());
    let me_patient = h.login(&h.account_for_patient(&a, "jamie@contacta", Role::Patient, Some(pid)).await).await;

    // --- a user's own number: add, verify with the code the outbox carries -----------------
    let mine = "/api/v1/me/contacts";
    for (kind, bad) in [("phone", "415-555-0187"), ("phone", "+1 415 CANARY"), ("email", "Canary.Contact@"), ("fax", "1")] {
        let r = h.post(mine, &doc.access, json!({"kind": kind, "value": bad})).await;
        assert!(matches!(r.status.as_u16(), 400 | 422), "{}", r.body);
        assert_clean("an error body", &r.body.to_string());
    }
    let added = h.post(mine, &doc.access, json!({"kind": "phone", "value": PHONE})).await.expect(201);
    assert_eq!((added.body["value"].as_str(), added.body["status"].as_str()), (Some(PHONE_E164), Some("unverified")));
    let c = added.body["id"].as_str().unwrap().to_owned();
    errors_clean(&h, &doc, mine, json!({"kind": "phone", "value": PHONE}), 409, "conflict").await;
    let verify = format!("{mine}/{c}/verify");
    let confirm = format!("{mine}/{c}/confirm");
    errors_clean(&h, &doc, &confirm, json!({"code": "123456"}), 409, "verification_expired").await;
    let sent = h.call(Method::POST, &verify, Some(&doc.access), None).await.expect(202);
    assert!(sent.body["expires_at"].is_string());
    let owner = ContactOwner::User(doc.account.id);
    let code = code_sent(&h, a.id, owner, &c).await;
    errors_clean(&h, &doc, &confirm, json!({"code": "12345"}), 422, "validation_failed").await;
    let r = h.post(&confirm, &doc.access, json!({"code": wrong(&code)})).await.expect_problem(422, "invalid_verification_code");
    assert!(r.body["detail"].as_str().unwrap().contains("4 attempts left"));
    // Nobody else reaches it: another user of the organisation, or another tenant.
    h.post(&confirm, &staff.access, json!({"code": code})).await.expect_problem(404, "not_found");
    h.call(Method::POST, &verify, Some(&b_admin.access), None).await.expect_problem(404, "not_found");
    h.call(Method::DELETE, &format!("{mine}/{c}"), Some(&staff.access), None).await.expect_problem(404, "not_found");
    let ok = h.post(&confirm, &doc.access, json!({"code": code})).await.expect(200);
    assert_eq!(ok.body["status"], "verified");
    assert!(ok.body["verified_at"].is_string() && ok.body["reverify_by"].is_string());
    let listed = h.get(mine, &doc.access).await.expect(200);
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(h.get(mine, &staff.access).await.expect(200).body["items"], json!([]));

    // --- wrong codes lock the code --------------------------------------------------------
    let e = h.post(mine, &doc.access, json!({"kind": "email", "value": EMAIL})).await.expect(201);
    assert_eq!(e.body["value"], "canary.contact@example.org");
    let e = e.body["id"].as_str().unwrap().to_owned();
    h.call(Method::POST, &format!("{mine}/{e}/verify"), Some(&doc.access), None).await.expect(202);
    let code = code_sent(&h, a.id, owner, &e).await;
    for _ in 0..4 {
        h.post(&format!("{mine}/{e}/confirm"), &doc.access, json!({"code": wrong(&code)}))
            .await
            .expect_problem(422, "invalid_verification_code");
    }
    h.post(&format!("{mine}/{e}/confirm"), &doc.access, json!({"code": wrong(&code)})).await.expect_problem(409, "verification_locked");
    h.post(&format!("{mine}/{e}/confirm"), &doc.access, json!({"code": code})).await.expect_problem(409, "verification_locked");
    h.call(Method::DELETE, &format!("{mine}/{e}"), Some(&doc.access), None).await.expect(204);
    h.call(Method::DELETE, &format!("{mine}/{e}"), Some(&doc.access), None).await.expect_problem(404, "not_found");

    // --- a patient's contacts: the care team and the patient; nobody else ------------------
    let pc = format!("/api/v1/patients/{p}/contacts");
    let qc = format!("/api/v1/patients/{q}/contacts");
    errors_clean(&h, &outsider, &pc, json!({"kind": "phone", "value": PHONE}), 403, "forbidden").await;
    errors_clean(&h, &me_patient, &qc, json!({"kind": "phone", "value": PHONE}), 404, "not_found").await;
    h.get(&qc, &me_patient.access).await.expect_problem(404, "not_found");
    h.get(&pc, &b_admin.access).await.expect_problem(404, "not_found");
    let theirs = h.post(&qc, &doc.access, json!({"kind": "phone", "value": "+14155550999"})).await.expect(201);
    let theirs = theirs.body["id"].as_str().unwrap().to_owned();
    // The patient's own account cannot reach another patient's contact through its own record.
    h.call(Method::POST, &format!("{pc}/{theirs}/verify"), Some(&me_patient.access), None).await.expect_problem(404, "not_found");
    h.call(Method::DELETE, &format!("{qc}/{theirs}"), Some(&me_patient.access), None).await.expect_problem(404, "not_found");
    let pp = h.post(&pc, &me_patient.access, json!({"kind": "phone", "value": SHARED})).await.expect(201);
    let pp = pp.body["id"].as_str().unwrap().to_owned();
    let powner = ContactOwner::Patient(pid);
    h.call(Method::POST, &format!("{pc}/{pp}/verify"), Some(&staff.access), None).await.expect(202);
    let code = code_sent(&h, a.id, powner, &pp).await;
    h.post(&format!("{pc}/{pp}/confirm"), &staff.access, json!({"code": code})).await.expect(200);
    let seen = h.get(&pc, &doc.access).await.expect(200);
    assert_eq!(seen.body["items"][0]["status"], "verified");
    h.get(&pc, &outsider.access).await.expect_problem(403, "forbidden");

    // --- notices go to the verified contact only --------------------------------------------
    h.post(&format!("/api/v1/patients/{p}/consents"), &doc.access, json!({"channel": "sms_notices"})).await.expect(201);
    h.post(&format!("/api/v1/patients/{p}/consents"), &doc.access, json!({"channel": "email_notices"})).await.expect(201);
    let t = h
        .post("/api/v1/org/notice-templates", &admin.access, json!({"name": "r", "channel": "sms", "body": "See you {date}, {first_name}"}))
        .await
        .expect(201);
    let t_email = h
        .post(
            "/api/v1/org/notice-templates",
            &admin.access,
            json!({"name": "e", "channel": "email", "body": "See you {date}, {first_name}"}),
        )
        .await
        .expect(201);
    let notice = |tpl: &Value, channel: &str| json!({"template_id": tpl["id"], "channel": channel, "values": {"first_name": "Jamie", "date": "Tuesday"}});
    let notices = format!("/api/v1/patients/{p}/notices");
    let n = h.post(&notices, &doc.access, notice(&t.body, "sms")).await.expect(201);
    assert_eq!(n.body["destination"], format!("contact:{pp}"));
    // No email address at all.
    errors_clean(&h, &doc, &notices, notice(&t_email.body, "email"), 409, "verified_contact_required").await;

    // Past the organisation's period (90 days) the number must be verified again.
    h.store.test_execute(format!("UPDATE contacts SET verified_at = verified_at - {}", 91 * 86_400_000_i64)).await.unwrap();
    assert_eq!(h.get(&pc, &doc.access).await.expect(200).body["items"][0]["status"], "expired");
    errors_clean(&h, &doc, &notices, notice(&t.body, "sms"), 409, "verified_contact_required").await;
    let policy = "/api/v1/org/contact-policy";
    assert_eq!(h.get(policy, &staff.access).await.expect(200).body["reverify_days"], 90);
    h.call(Method::PUT, policy, Some(&doc.access), Some(json!({"reverify_days": 180}))).await.expect_problem(403, "forbidden");
    h.call(Method::PUT, policy, Some(&admin.access), Some(json!({"reverify_days": 0}))).await.expect_problem(422, "validation_failed");
    h.call(Method::PUT, policy, Some(&admin.access), Some(json!({"reverify_days": 180}))).await.expect(200);
    assert_eq!(h.get(&pc, &doc.access).await.expect(200).body["items"][0]["status"], "verified");
    h.post(&notices, &doc.access, notice(&t.body, "sms")).await.expect(201);

    // --- the same number claimed by another person: both flagged, listed to admins ----------
    let dup = h.post(&qc, &doc.access, json!({"kind": "phone", "value": SHARED})).await.expect(201);
    assert_eq!((dup.body["status"].as_str(), dup.body["conflict"].as_bool()), (Some("conflict"), Some(true)));
    assert_eq!(h.get(&pc, &doc.access).await.expect(200).body["items"][0]["status"], "conflict");
    errors_clean(&h, &doc, &notices, notice(&t.body, "sms"), 409, "verified_contact_required").await;
    h.get("/api/v1/contacts/conflicts", &doc.access).await.expect_problem(403, "forbidden");
    let conflicts = h.get("/api/v1/contacts/conflicts", &admin.access).await.expect(200);
    let items = conflicts.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["group"], items[1]["group"]);
    assert_clean("the conflict list", &conflicts.body.to_string());
    assert!(!conflicts.body.to_string().contains("value"), "the conflict list shows no values");
    assert_eq!(h.get("/api/v1/contacts/conflicts", &b_admin.access).await.expect(200).body["items"], json!([]));
    let dup = dup.body["id"].as_str().unwrap().to_owned();
    h.call(Method::DELETE, &format!("{qc}/{dup}"), Some(&doc.access), None).await.expect(204);
    h.post(&notices, &doc.access, notice(&t.body, "sms")).await.expect(201);

    // --- a bounce suppresses at once ------------------------------------------------------------
    let suppress = "/api/v1/contacts/suppress";
    errors_clean(&h, &doc, suppress, json!({"contact_id": pp, "reason": "bounce"}), 403, "forbidden").await;
    errors_clean(&h, &b_admin, suppress, json!({"contact_id": pp, "reason": "bounce"}), 404, "not_found").await;
    let r = h.post(suppress, &admin.access, json!({"contact_id": pp, "reason": "disconnected"})).await.expect(200);
    assert_eq!(r.body["suppressed"], 1);
    let row = h.get(&pc, &doc.access).await.expect(200);
    assert_eq!(
        (row.body["items"][0]["status"].as_str(), row.body["items"][0]["suppressed_reason"].as_str()),
        (Some("suppressed"), Some("disconnected"))
    );
    errors_clean(&h, &doc, &notices, notice(&t.body, "sms"), 409, "verified_contact_required").await;

    // --- audit and logs: codes and ids only ------------------------------------------------------
    let events = h.store.audit_events(0, 100_000).await.unwrap();
    let count = |action: &str, outcome: &str| events.iter().filter(|e| e.action == action && e.outcome == outcome).count();
    assert!(count("contact.add", "success") >= 5);
    assert!(count("contact.add", "failure") >= 2, "bad values are audited");
    assert!(count("contact.add", "denied") >= 1);
    assert_eq!(count("contact.verify", "success"), 2);
    assert!(count("contact.verify", "failure") >= 7);
    assert_eq!(count("contact.suppress", "success"), 1);
    assert!(count("contact.suppress", "denied") >= 1);
    assert_eq!(count("contact.policy", "success"), 1);
    assert!(events.iter().any(|e| e.action == "notice.send" && e.detail.contains("verified_contact_required")));
    for e in &events {
        assert_clean("the audit log", &e.detail);
    }
    assert_clean("the logs", &logs());
}
