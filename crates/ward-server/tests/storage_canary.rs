//! Encryption at rest through the API: a canary carried in every field that can hold PHI
//! (patient MRN and name, conversation title, message text and its correction, a stated
//! reason's note, an attachment's content and file name, a break-glass reason and its review
//! note, a patient's phone number and email address and a user's own, a patient authorization's
//! recipient and purpose, a forwarded message and its note, a breach incident's title and
//! description) reads back for those
//! who may read it and is nowhere
//! in what the server stores: the database files, WAL and shared memory (SQLite), every table
//! (PostgreSQL), the audit files, the attachment store, and a backup.

mod common;

use common::Harness;
use serde_json::json;
use ward_domain::role::Role;
use ward_store::testing::contains_bytes;
use ward_store::{Backend, on_both_backends};

on_both_backends!(phi_is_sealed_in_storage);

async fn phi_is_sealed_in_storage(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let canary = format!("STORECANARY{}", uuid::Uuid::new_v4().simple());
    let org = h.org("wardfour", vec![]).await;
    let doc = h.account(&org, "doc@wardfour", Role::Clinician).await;
    let nurse = h.account(&org, "nurse@wardfour", Role::Nurse).await;
    let consultant = h.account(&org, "consultant@wardfour", Role::Clinician).await;
    let (s_doc, s_nurse) = (h.login(&doc).await, h.login(&nurse).await);
    let mrn = format!("{}-MRN", &canary[..24]);
    let patient = h
        .post(
            "/api/v1/patients",
            &s_doc.access,
            json!({"mrn": mrn, "display_name": format!("Jane {canary}"), "care_team": [doc.id, nurse.id]}),
        )
        .await
        .expect(201);
    let patient = patient.body["id"].as_str().unwrap().to_owned();
    let conv = h
        .post(
            "/api/v1/conversations",
            &s_doc.access,
            json!({"kind": "patient", "title": format!("{canary} handover"), "patient_id": patient, "members": [{"user_id": nurse.id}]}),
        )
        .await
        .expect(201);
    let conv = conv.body["id"].as_str().unwrap().to_owned();
    let msgs = format!("/api/v1/conversations/{conv}/messages");
    let first = h.post(&msgs, &s_doc.access, json!({"client_txn_id": "t1", "body": format!("BP 90/60 {canary}")})).await.expect(201);
    let first = first.body["id"].as_str().unwrap().to_owned();
    h.post(&msgs, &s_doc.access, json!({"client_txn_id": "t2", "body": format!("fix: {canary}"), "corrects": first})).await.expect(201);
    h.post(
        &format!("/api/v1/conversations/{conv}/members"),
        &s_doc.access,
        json!({"user_id": consultant.id, "reason": {"code": "other", "note": format!("second opinion {canary}")}}),
    )
    .await
    .expect(201);

    // An attachment whose content and file name carry the canary.
    let pdf = format!("%PDF-1.4\n% lab report for {canary}\n%%EOF\n").into_bytes();
    let up = h
        .http
        .post(format!("{}/api/v1/conversations/{conv}/attachments", h.url))
        .bearer_auth(&s_doc.access)
        .header("content-type", "application/pdf")
        .header("x-file-name", format!("{canary}.pdf"))
        .body(pdf.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(up.status(), 201);
    let att: serde_json::Value = up.json().await.unwrap();
    let att = att["id"].as_str().unwrap().to_owned();
    let down =
        h.http.get(format!("{}/api/v1/conversations/{conv}/attachments/{att}", h.url)).bearer_auth(&s_nurse.access).send().await.unwrap();
    assert_eq!(down.status(), 200);
    assert_eq!(down.bytes().await.unwrap().as_ref(), pdf.as_slice(), "a member downloads the attachment");

    // Members read it all back.
    let page = h.get(&msgs, &s_nurse.access).await.expect(200);
    assert!(page.body.to_string().contains(&format!("BP 90/60 {canary}")), "{}", page.body);
    let detail = h.get(&format!("/api/v1/conversations/{conv}"), &s_nurse.access).await.expect(200);
    assert!(detail.body.to_string().contains(&canary), "{}", detail.body);
    let found = h.post("/api/v1/patients/search", &s_nurse.access, json!({"mrn": mrn})).await.expect(200);
    assert_eq!(found.body["display_name"], format!("Jane {canary}"));

    // A break-glass request whose reason, and a review whose note, carry the canary; the
    // compliance officer reads both back.
    let er = h.login_stepped_up(&h.account(&org, "er@wardfour", Role::Clinician).await).await;
    let co = h.login(&h.account(&org, "co@wardfour", Role::ComplianceOfficer).await).await;
    let grant = h
        .post(
            "/api/v1/break-glass",
            &er.access,
            json!({"patient_id": patient, "reason_category": "other", "reason": format!("fall {canary}")}),
        )
        .await
        .expect(201);
    let grant = grant.body["id"].as_str().unwrap().to_owned();
    h.post(&format!("/api/v1/break-glass/{grant}/review"), &co.access, json!({"status": "justified", "note": format!("ok {canary}")}))
        .await
        .expect(200);
    let queue = h.get("/api/v1/break-glass/reviews", &co.access).await.expect(200);
    assert_eq!(queue.body[0]["reason"], format!("fall {canary}"));
    assert_eq!(queue.body[0]["review_note"], format!("ok {canary}"));
    // A breach incident whose title and description carry the canary; the officer reads it.
    let inc = h
        .post(
            "/api/v1/incidents",
            &co.access,
            json!({"title": format!("T {canary}"), "description": format!("D {canary}"), "discovered_on": "2026-01-05",
                "affected_count": 1, "patient_ids": [patient]}),
        )
        .await
        .expect(201);
    let inc = h.get(&format!("/api/v1/incidents/{}", inc.body["id"].as_str().unwrap()), &co.access).await.expect(200);
    assert_eq!(inc.body["description"], format!("D {canary}"));
    assert_eq!(inc.body["title"], format!("T {canary}"));
    // The patient's phone number and email address, and the doctor's own number: sealed
    // values, blind indexes, and a verification code message in the outbox.
    let digits: String = uuid::Uuid::new_v4().as_u128().to_string().chars().take(10).collect();
    let phone = format!("+1{digits}");
    let email = format!("{}@example.org", canary.to_ascii_lowercase());
    let pc = format!("/api/v1/patients/{patient}/contacts");
    let added = h.post(&pc, &s_doc.access, json!({"kind": "phone", "value": phone})).await.expect(201);
    let contact = added.body["id"].as_str().unwrap().to_owned();
    h.call(reqwest::Method::POST, &format!("{pc}/{contact}/verify"), Some(&s_doc.access), None).await.expect(202);
    h.post(&pc, &s_doc.access, json!({"kind": "email", "value": email})).await.expect(201);
    h.post("/api/v1/me/contacts", &s_doc.access, json!({"kind": "phone", "value": format!("{phone}1")})).await.expect(201);
    let listed = h.get(&pc, &s_nurse.access).await.expect(200).body.to_string();
    assert!(listed.contains(&phone) && listed.contains(&email), "the care team reads the contacts back: {listed}");

    // A patient authorization whose recipient and purpose carry the canary, used for a forward
    // whose note and copied text carry it too.
    let auth = h
        .post(
            &format!("/api/v1/patients/{patient}/authorizations"),
            &s_doc.access,
            json!({"recipient": format!("Dr {canary}"), "purpose": format!("review {canary}"), "expires_at": "2099-01-01T00:00:00Z"}),
        )
        .await
        .expect(201);
    let fwd = json!({"target_conversation_id": conv, "client_txn_id": "fwd", "note": format!("see {canary}"), "authorization_id": auth.body["id"]});
    let copied = h.post(&format!("{msgs}/{first}/forward"), &s_doc.access, fwd).await.expect(201);
    assert!(copied.body["message"]["body"].as_str().unwrap().contains(&format!("see {canary}")));

    // A backup of it all, kept in the data directory so the scan below reads it too.
    let files = ward_store::backup::BackupFiles { data_dir: h.db.dir.path().to_owned(), dirs: vec!["audit".into(), "attachments".into()] };
    let scratch = tempfile::tempdir().unwrap();
    let mut backup = Vec::new();
    h.store.write_backup(&mut backup, &files, scratch.path(), &|_| {}).await.unwrap();
    assert!(backup.len() > 10_000);
    std::fs::write(h.db.dir.path().join("backup.ward"), &backup).unwrap();

    // Storage holds none of it.
    let raw = h.db.raw_contents().await;
    assert!(raw.len() > 10_000, "the scan sees the stored data ({} bytes)", raw.len());
    assert!(!contains_bytes(&raw, canary.as_bytes()), "the canary is stored in plaintext");
    assert!(!contains_bytes(&raw, mrn.as_bytes()), "the MRN is stored in plaintext");
    assert!(!contains_bytes(&raw, email.as_bytes()), "the email address is stored in plaintext");
    assert!(!contains_bytes(&raw, &phone.as_bytes()[2..]), "the phone number is stored in plaintext");
}
