//! Policy acknowledgments over real HTTPS: a compliance officer publishes a policy, users read
//! and acknowledge its current version, the report lists who has not; with the organisation's
//! requirement on, a workforce user with an unacknowledged current policy gets
//! `403 policy_acknowledgment_required` on message reads and sends and the patient directory
//! (audited), while the policy endpoints stay open; a new version blocks again until
//! acknowledged. Bad input gets clear errors and changes nothing.

mod common;

use common::Harness;
use reqwest::Method;
use serde_json::json;
use ward_domain::role::Role;
use ward_store::{Backend, on_both_backends};

on_both_backends!(policy_acknowledgments_over_http);

async fn policy_acknowledgments_over_http(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let (a, b) = (h.org("pola", vec![]).await, h.org("polb", vec![]).await);
    let co = h.login(&h.account(&a, "co@pola", Role::ComplianceOfficer).await).await;
    let admin = h.login(&h.account(&a, "admin@pola", Role::Admin).await).await;
    let doc = h.login(&h.account(&a, "doc@pola", Role::Clinician).await).await;
    let nurse = h.login(&h.account(&a, "nurse@pola", Role::Nurse).await).await;
    let b_admin = h.login(&h.account(&b, "admin@polb", Role::Admin).await).await;
    let conv = h.conversation(&doc, "group", &[&nurse.account]).await;
    h.send(&doc, &conv, "t1", "before any policy").await.expect(201);

    // Only admins and compliance officers publish; bad input is refused and changes nothing.
    let byod = json!({"kind": "byod_wipe_authority", "title": "BYOD agreement", "text": "Ward may wipe its data from my device."});
    h.post("/api/v1/policies", &doc.access, byod.clone()).await.expect_problem(403, "forbidden");
    h.post("/api/v1/policies", &co.access, json!({"kind": "byod", "title": "t", "text": "x"})).await.expect(400);
    h.post("/api/v1/policies", &co.access, json!({"kind": "other", "title": "", "text": "x"}))
        .await
        .expect_problem(422, "validation_failed");
    h.post("/api/v1/policies", &co.access, json!({"kind": "other", "title": "t", "text": "  "}))
        .await
        .expect_problem(422, "validation_failed");
    assert_eq!(h.get("/api/v1/policies", &doc.access).await.expect(200).body["items"], json!([]));
    let p = h.post("/api/v1/policies", &co.access, byod).await.expect(201).body;
    assert_eq!((p["version"].as_i64(), p["kind"].as_str()), (Some(1), Some("byod_wipe_authority")));
    let id = p["id"].as_str().unwrap().to_owned();
    let aup = json!({"kind": "acceptable_use", "title": "Acceptable use", "text": "Use Ward for work."});
    let aup_id = h.post("/api/v1/policies", &admin.access, aup).await.expect(201).body["id"].as_str().unwrap().to_owned();

    // Everyone reads; another organisation sees none of it.
    let list = h.get("/api/v1/policies", &doc.access).await.expect(200).body;
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    assert_eq!(list["require_acknowledgment_before_phi"], false);
    assert!(list["items"][0]["acknowledged_at"].is_null());
    let one = h.get(&format!("/api/v1/policies/{id}"), &doc.access).await.expect(200).body;
    assert_eq!(one["text"], "Ward may wipe its data from my device.");
    h.get(&format!("/api/v1/policies/{id}"), &b_admin.access).await.expect_problem(404, "not_found");
    assert_eq!(h.get("/api/v1/policies", &b_admin.access).await.expect(200).body["items"], json!([]));

    // Requirement off: nothing is blocked yet.
    h.send(&doc, &conv, "t2", "still fine").await.expect(201);
    let setting = "/api/v1/org/policy-acknowledgment";
    h.call(Method::PUT, setting, Some(&doc.access), Some(json!({"require_before_phi": true}))).await.expect_problem(403, "forbidden");
    h.call(Method::PUT, setting, Some(&co.access), Some(json!({"require_before_phi": "yes"}))).await.expect(400);
    h.call(Method::PUT, setting, Some(&co.access), Some(json!({"require_before_phi": true}))).await.expect(200);
    assert_eq!(h.get("/api/v1/policies", &doc.access).await.expect(200).body["require_acknowledgment_before_phi"], true);

    // Requirement on: PHI-bearing endpoints refuse with a clear code; policy endpoints stay open.
    let msgs = format!("/api/v1/conversations/{conv}/messages");
    h.get(&msgs, &doc.access).await.expect_problem(403, "policy_acknowledgment_required");
    h.send(&doc, &conv, "t3", "blocked").await.expect_problem(403, "policy_acknowledgment_required");
    let rid = "0192f0aa-1111-7222-8333-444455556666";
    let r = h
        .http
        .post(format!("{}/api/v1/patients/search", h.url))
        .bearer_auth(&doc.access)
        .header("x-request-id", rid)
        .json(&json!({"mrn": "NOPE-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // The PHI gate's refusal carries the request's id and source, like every other event.
    let events = h.store.audit_events(0, 100_000).await.unwrap();
    let refusal = events.iter().rev().find(|e| e.action == "policy.acknowledgment_required").expect("refusal audited");
    assert_eq!(refusal.request_id.as_deref(), Some(rid));
    assert!(refusal.source_ip.is_some());
    // Conversation lists withhold titles with the policy notice.
    let convs = h.get("/api/v1/conversations", &doc.access).await.expect(200).body;
    assert_eq!(convs["items"][0]["withheld"]["reason"], "policy_acknowledgment", "{convs}");
    // The stream withholds content from the user who must still acknowledge; a colleague who
    // acknowledged both policies sends and reads as usual.
    let mut doc_stream = h.stream(&doc).await;
    for pid in [&id, &aup_id] {
        h.post("/api/v1/me/policy-acknowledgments", &nurse.access, json!({"policy_id": pid, "version": 1})).await.expect(200);
    }
    h.send(&nurse, &conv, "n1", "after acknowledging").await.expect(201);
    loop {
        let ev = doc_stream.next_of_kind("message", std::time::Duration::from_secs(10)).await.expect("an event for the blocked user");
        assert_eq!(ev["message"]["body"], serde_json::Value::Null, "{ev}");
        assert_eq!(ev["message"]["withheld"]["reason"], "policy_acknowledgment", "{ev}");
        if ev["message"]["client_txn_id"] == "n1" {
            break;
        }
    }

    let ack = "/api/v1/me/policy-acknowledgments";
    h.post(ack, &doc.access, json!({"policy_id": id, "version": 2})).await.expect_problem(409, "invalid_state");
    h.post(ack, &b_admin.access, json!({"policy_id": id, "version": 1})).await.expect_problem(404, "not_found");
    let done = h.post(ack, &doc.access, json!({"policy_id": id, "version": 1})).await.expect(200).body;
    assert!(done["acknowledged_at"].is_string());
    h.post(ack, &doc.access, json!({"policy_id": id, "version": 1})).await.expect(200);
    // One of two acknowledged: still blocked.
    h.get(&msgs, &doc.access).await.expect_problem(403, "policy_acknowledgment_required");
    h.post(ack, &doc.access, json!({"policy_id": aup_id, "version": 1})).await.expect(200);
    h.get(&msgs, &doc.access).await.expect(200);
    h.send(&doc, &conv, "t4", "acknowledged").await.expect(201);

    // The report: who has not acknowledged each current policy (managers only).
    let report = "/api/v1/policies/acknowledgment-report";
    h.get(report, &doc.access).await.expect_problem(403, "forbidden");
    let r = h.get(report, &co.access).await.expect(200).body;
    let byod_row = r["items"].as_array().unwrap().iter().find(|i| i["policy_id"] == id.as_str()).unwrap().clone();
    let pending: Vec<&str> = byod_row["pending"].as_array().unwrap().iter().map(|u| u["login"].as_str().unwrap()).collect();
    assert_eq!(pending, vec!["admin@pola", "co@pola"]);
    assert_eq!((byod_row["users"].as_i64(), byod_row["acknowledged"].as_i64()), (Some(4), Some(2)));

    // A new version: everyone must acknowledge again.
    let v2 = json!({"title": "BYOD agreement", "text": "Ward may wipe its data; report a lost device at once."});
    h.post(&format!("/api/v1/policies/{id}/versions"), &nurse.access, v2.clone()).await.expect_problem(403, "forbidden");
    h.post(&format!("/api/v1/policies/{id}/versions"), &b_admin.access, v2.clone()).await.expect_problem(404, "not_found");
    let p2 = h.post(&format!("/api/v1/policies/{id}/versions"), &co.access, v2).await.expect(201).body;
    assert_eq!(p2["version"], 2);
    h.get(&msgs, &doc.access).await.expect_problem(403, "policy_acknowledgment_required");
    h.post(ack, &doc.access, json!({"policy_id": id, "version": 2})).await.expect(200);
    h.get(&msgs, &doc.access).await.expect(200);

    // Audited with codes and ids only.
    let events = h.store.audit_events(0, 100_000).await.unwrap();
    let count = |action: &str, outcome: &str| events.iter().filter(|e| e.action == action && e.outcome == outcome).count();
    assert_eq!(count("policy.publish", "success"), 3);
    assert!(count("policy.publish", "denied") >= 2);
    assert!(count("policy.publish", "failure") >= 2);
    assert_eq!(count("policy.acknowledge", "success"), 5);
    assert_eq!(count("policy.acknowledge", "failure"), 1);
    assert!(count("policy.acknowledgment_required", "denied") >= 4);
    assert_eq!(count("policy.settings", "success"), 1);
    for e in &events {
        let text = format!("{e:?}");
        assert!(!text.contains("wipe its data") && !text.contains("BYOD"), "policy text in the audit log: {text}");
    }
}
