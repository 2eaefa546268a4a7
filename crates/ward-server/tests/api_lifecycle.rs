//! Retention, legal holds, crypto-shredding and the patient export over real HTTPS: role
//! refusals, problem+json errors, holds that block the retention job until released,
//! tombstones in the message API, the shred records, and the export archive's contents.

mod common;

use std::io::Read as _;

use common::{Harness, Session};
use reqwest::Method;
use serde_json::{Value, json};
use ward_domain::role::Role;
use ward_store::{Backend, on_sqlite};

on_sqlite!(retention_holds_and_shredding_over_http, patient_export_is_a_readable_archive);

const CANARY: &str = "CANARY-api-lifecycle-19d2";

async fn put(h: &Harness, path: &str, s: &Session, body: Value) -> common::Reply {
    h.call(Method::PUT, path, Some(&s.access), Some(body)).await
}

async fn audited(h: &Harness, action: &str, outcome: &str) -> usize {
    h.store.audit_events(0, 100_000).await.unwrap().iter().filter(|e| e.action == action && e.outcome == outcome).count()
}

async fn retention_holds_and_shredding_over_http(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let org = h.org("acme", vec![]).await;
    let officer = h.login(&h.account(&org, "officer", Role::ComplianceOfficer).await).await;
    let admin = h.login(&h.account(&org, "admin", Role::Admin).await).await;
    let clin_acc = h.account(&org, "clin", Role::Clinician).await;
    let nurse_acc = h.account(&org, "nurse", Role::Nurse).await;
    let clin = h.login(&clin_acc).await;

    // Policies: compliance roles only; out-of-range periods refused as problem+json.
    let p = h.get("/api/v1/org/retention", &officer.access).await.expect(200);
    assert_eq!(p.body, json!({"direct": 365, "group": 365, "patient": 2192}));
    h.get("/api/v1/org/retention", &clin.access).await.expect_problem(403, "forbidden");
    put(&h, "/api/v1/org/retention", &clin, json!({"direct": 30, "group": 30, "patient": 2192})).await.expect_problem(403, "forbidden");
    let bad = put(&h, "/api/v1/org/retention", &admin, json!({"direct": 0, "group": 30, "patient": 2192})).await;
    assert!(bad.status.is_client_error() && bad.headers["content-type"] == "application/problem+json", "{}", bad.body);
    let unknown = put(&h, "/api/v1/org/retention", &admin, json!({"direct": 30, "group": 30, "patient": 2192, "other": 1})).await;
    assert!(unknown.status.is_client_error(), "{}", unknown.body);
    put(&h, "/api/v1/org/retention", &admin, json!({"direct": 30, "group": 30, "patient": 2192})).await.expect(200);
    assert_eq!(h.get("/api/v1/org/retention", &officer.access).await.expect(200).body["group"], 30);

    let conv = h.conversation(&clin, "group", &[&nurse_acc]).await;
    let sent = h.send(&clin, &conv, "t1", CANARY).await.expect(201);
    let msg_id = sent.body["id"].as_str().unwrap().to_owned();
    // An attachment: its object goes when its conversation's key is shredded.
    let pdf = b"%PDF-1.4\n% retention fixture\n%%EOF\n".to_vec();
    let att = h
        .raw(Method::POST, &format!("/api/v1/conversations/{conv}/attachments"), Some(&clin.access), "application/pdf", pdf)
        .await
        .expect(201);
    let att_id = att.body["id"].as_str().unwrap().to_owned();
    let objects = || ward_store::testing::files_under(&h.db.dir.path().join("attachments")).len();
    assert!(objects() > 0);
    let blobs = ward_server::attachments::Blobs::from_config(&common::test_config(h.db.dir.path(), &h.db.url)).unwrap();

    // Holds: validated, role-checked, listed.
    let hold_body = json!({"subject_kind": "conversation", "subject_id": conv, "reason": "Matter 2026-17"});
    h.post("/api/v1/legal-holds", &clin.access, hold_body.clone()).await.expect_problem(403, "forbidden");
    h.post("/api/v1/legal-holds", &officer.access, json!({"subject_kind": "conversation", "subject_id": conv, "reason": " "}))
        .await
        .expect_problem(422, "validation_failed");
    h.post("/api/v1/legal-holds", &officer.access, json!({"subject_kind": "user", "subject_id": uuid::Uuid::now_v7(), "reason": "x"}))
        .await
        .expect_problem(404, "not_found");
    let hold = h.post("/api/v1/legal-holds", &officer.access, hold_body).await.expect(201);
    let hold_id = hold.body["id"].as_str().unwrap().to_owned();
    assert_eq!(hold.body["active"], true);
    let list = h.get("/api/v1/legal-holds?active=true", &admin.access).await.expect(200);
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);

    // Everything is 40 days old: past the 30-day period, but held.
    let ms = 40 * ward_domain::lifecycle::DAY_MS;
    h.store.test_execute(format!("UPDATE data_keys SET created_at = created_at - {ms} WHERE scope_kind = 'conversation'")).await.unwrap();
    h.store.test_execute(format!("UPDATE messages SET created_at = created_at - {ms}")).await.unwrap();
    let run = ward_server::lifecycle::run_once(&h.store, &blobs, ward_store::now_ms(), |_| {}).await.unwrap();
    assert_eq!((run.held, run.versions_destroyed), (1, 0));
    let msgs = h.get(&format!("/api/v1/conversations/{conv}/messages"), &clin.access).await.expect(200);
    assert_eq!(msgs.body["items"][0]["body"], CANARY);
    assert_eq!(msgs.body["items"][0]["shredded"], false);

    // Release, then the job shreds.
    h.post(&format!("/api/v1/legal-holds/{hold_id}/release"), &clin.access, json!({})).await.expect_problem(403, "forbidden");
    let released = h.post(&format!("/api/v1/legal-holds/{hold_id}/release"), &officer.access, json!({})).await.expect(200);
    assert_eq!(released.body["active"], false);
    h.post(&format!("/api/v1/legal-holds/{hold_id}/release"), &officer.access, json!({})).await.expect_problem(409, "invalid_state");
    h.post(&format!("/api/v1/legal-holds/{}/release", uuid::Uuid::now_v7()), &officer.access, json!({}))
        .await
        .expect_problem(404, "not_found");
    let run = ward_server::lifecycle::run_once(&h.store, &blobs, ward_store::now_ms(), |_| {}).await.unwrap();
    assert_eq!((run.held, run.versions_destroyed, run.messages_shredded), (0, 1, 1));
    assert_eq!(objects(), 0, "the shredded attachment's object is deleted");
    h.get(&format!("/api/v1/conversations/{conv}/attachments/{att_id}"), &clin.access).await.expect_problem(410, "content_shredded");

    // Tombstones, not errors.
    let msgs = h.get(&format!("/api/v1/conversations/{conv}/messages"), &clin.access).await.expect(200);
    let m = &msgs.body["items"][0];
    assert_eq!((m["id"].as_str(), m["body"].is_null(), m["shredded"].as_bool()), (Some(msg_id.as_str()), true, Some(true)));
    assert!(m["shredded_at"].is_string() && m["sender_id"] == clin_acc.id.to_string());
    let one = h.get(&format!("/api/v1/conversations/{conv}/messages/{msg_id}"), &clin.access).await.expect(200);
    assert_eq!(one.body["shredded"], true);
    assert!(!msgs.body.to_string().contains(CANARY));
    // The conversation goes on under a new key.
    h.send(&clin, &conv, "t2", "after the shredding").await.expect(201);

    // Shred records for the auditor.
    h.get("/api/v1/retention/shreds", &clin.access).await.expect_problem(403, "forbidden");
    let shreds = h.get("/api/v1/retention/shreds?limit=10", &officer.access).await.expect(200);
    let r = &shreds.body["items"][0];
    assert_eq!((r["scope_id"].as_str(), r["versions"].clone(), r["message_count"].as_i64()), (Some(conv.as_str()), json!([1]), Some(1)));
    assert_eq!((r["policy_kind"].as_str(), r["policy_days"].as_i64(), r["whole"].as_bool()), (Some("group"), Some(30), Some(true)));
    h.get("/api/v1/retention/shreds?limit=0", &officer.access).await.expect_problem(422, "validation_failed");

    // Changes are audited, and so are the refused attempts.
    for action in ["retention.policy", "legal_hold.place", "legal_hold.release"] {
        assert_eq!((audited(&h, action, "success").await, audited(&h, action, "denied").await), (1, 1), "{action}");
    }
    assert_eq!(audited(&h, "retention.shred", "success").await, 1);
    // No PHI and no hold reason in the audit log.
    let events = h.store.audit_events(0, 100_000).await.unwrap();
    assert!(events.iter().all(|e| !e.detail.contains(CANARY) && !e.detail.contains("Matter 2026-17")));
}

async fn export(h: &Harness, s: &Session, patient: &str) -> (u16, Vec<u8>, String) {
    let r = h.http.post(format!("{}/api/v1/patients/{patient}/export", h.url)).bearer_auth(&s.access).send().await.unwrap();
    let status = r.status().as_u16();
    let ct = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    (status, r.bytes().await.unwrap().to_vec(), ct)
}

fn entries(zip: &[u8]) -> std::collections::BTreeMap<String, String> {
    let mut a = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
    let mut out = std::collections::BTreeMap::new();
    for i in 0..a.len() {
        let mut f = a.by_index(i).unwrap();
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        out.insert(f.name().to_owned(), s);
    }
    out
}

async fn patient_export_is_a_readable_archive(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let org = h.org("acme", vec![]).await;
    let officer = h.login(&h.account(&org, "officer", Role::ComplianceOfficer).await).await;
    let clin_acc = h.account(&org, "dr-jones", Role::Clinician).await;
    let clin = h.login(&clin_acc).await;
    let patient = h
        .store
        .create_patient(org.id, clin_acc.id, "MRN-EXP-1".into(), "Pat Canary".into(), vec![clin_acc.id], Harness::meta())
        .await
        .unwrap();
    let other =
        h.store.create_patient(org.id, clin_acc.id, "MRN-EXP-2".into(), "Someone Else".into(), vec![], Harness::meta()).await.unwrap();
    let pat_acc = h.account_for_patient(&org, "pat", Role::Patient, Some(patient.id)).await;
    let pat = h.login(&pat_acc).await;
    let conv = h
        .post(
            "/api/v1/conversations",
            &clin.access,
            json!({"kind": "patient", "title": "Discharge plan", "patient_id": patient.id, "members": []}),
        )
        .await;
    assert!(conv.status.is_success(), "{}", conv.body);
    let conv = conv.body["id"].as_str().unwrap().to_owned();
    h.send(&clin, &conv, "e1", "Take the tablets twice a day").await.expect(201);
    h.send(&clin, &conv, "e2", "Follow-up in two weeks").await.expect(201);

    let pid = patient.id.to_string();
    assert_eq!(export(&h, &clin, &pid).await.0, 403);
    assert_eq!(export(&h, &pat, &other.id.to_string()).await.0, 404);
    assert_eq!(export(&h, &officer, &uuid::Uuid::now_v7().to_string()).await.0, 404);
    assert_eq!(export(&h, &officer, "not-a-uuid").await.0, 400);
    for s in [&officer, &pat] {
        let (status, bytes, ct) = export(&h, s, &pid).await;
        assert_eq!((status, ct.as_str()), (200, "application/zip"));
        let files = entries(&bytes);
        assert!(files["index.txt"].contains("Pat Canary") && files["index.txt"].contains("MRN-EXP-1"));
        assert!(files["index.txt"].contains("Discharge plan"));
        let t = &files["conversations/001.txt"];
        assert!(t.contains("Take the tablets twice a day") && t.contains("Follow-up in two weeks") && t.contains("dr-jones"), "{t}");
        let json: Value = serde_json::from_str(&files["export.json"]).unwrap();
        assert_eq!(json["conversations"][0]["messages"].as_array().unwrap().len(), 2);
    }
    assert_eq!(audited(&h, "patient.export", "success").await, 2);
    let events = h.store.audit_events(0, 100_000).await.unwrap();
    assert!(events.iter().all(|e| !e.detail.contains("Pat Canary") && !e.detail.contains("Take the tablets")));
}
