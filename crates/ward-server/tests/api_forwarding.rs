//! Forwarding as a disclosure over real HTTPS and WebSocket: a patient's message forwarded
//! outside the care team needs a permitted purpose or a recorded patient authorization
//! (422 `disclosure_purpose_required` / `authorization_not_valid` otherwise, audited), and appears
//! in the patient's accounting of disclosures; a forward inside the care team does not. A patient
//! conversation that grows beyond the care team carries the minimum-necessary warning in its
//! view and list, and members hear a `beyond_care_team` event. The forwarded text never reaches
//! the audit log or the logs.

mod common;

use std::time::Duration;

use common::{Harness, captured, logs};
use serde_json::{Value, json};
use ward_domain::role::Role;
use ward_store::{Backend, on_both_backends};

on_both_backends!(forwarding_outside_the_care_team_is_accounted, patient_groups_beyond_the_care_team_warn_members);

const WAIT: Duration = Duration::from_secs(10);
/// PHI in the forwarded message: must stay out of the audit log and the logs.
const CANARY: &str = "FWDCANARY-7Q2 HbA1c 9.4, start insulin";

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

async fn forwarding_outside_the_care_team_is_accounted(backend: Backend) {
    captured();
    let Some(h) = Harness::start(backend).await else { return };
    let org = h.org("acme", vec![]).await;
    let doc_acc = h.account(&org, "doc@acme", Role::Clinician).await;
    let nurse_acc = h.account(&org, "nurse@acme", Role::Nurse).await;
    let billing_acc = h.account(&org, "billing@acme", Role::Staff).await;
    let co_acc = h.account(&org, "co@acme", Role::ComplianceOfficer).await;
    let (doc, co) = (h.login(&doc_acc).await, h.login(&co_acc).await);
    let team = json!([doc_acc.id, nurse_acc.id]);
    let p = id(&h
        .post("/api/v1/patients", &doc.access, json!({"mrn": "F-1", "display_name": "Pat Doe", "care_team": team}))
        .await
        .expect(201)
        .body);
    let patient_conv =
        |title: &'static str| json!({"kind": "patient", "title": title, "patient_id": p, "members": [{"user_id": nurse_acc.id}]});
    let about_p = id(&h.post("/api/v1/conversations", &doc.access, patient_conv("Bed 4")).await.expect(201).body);
    let also_p = id(&h.post("/api/v1/conversations", &doc.access, patient_conv("Bed 4 rounds")).await.expect(201).body);
    let billing_group = h.conversation(&doc, "group", &[&billing_acc]).await;
    let src = id(&h.send(&doc, &about_p, "m1", CANARY).await.expect(201).body);
    let fwd = format!("/api/v1/conversations/{about_p}/messages/{src}/forward");

    // Inside the care team: no purpose needed, and not a disclosure.
    let r =
        h.post(&fwd, &doc.access, json!({"target_conversation_id": also_p, "client_txn_id": "f1", "note": "for rounds"})).await.expect(201);
    assert_eq!(r.body["forwarded_from"], src.as_str());
    let body = r.body["message"]["body"].as_str().unwrap();
    assert!(body.starts_with("for rounds\n\n---------- Forwarded from doc@acme ----------\n") && body.ends_with(CANARY), "{body}");
    assert_eq!(r.body["message"]["conversation_id"], also_p.as_str());

    // Outside it: a purpose or an authorization first.
    let to_billing = |txn: &str, extra: Value| {
        let mut b = json!({"target_conversation_id": billing_group, "client_txn_id": txn});
        b.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        b
    };
    h.post(&fwd, &doc.access, to_billing("f2", json!({}))).await.expect_problem(422, "disclosure_purpose_required");
    h.post(&fwd, &doc.access, to_billing("f2", json!({"purpose": "gossip"}))).await.expect_problem(400, "invalid_body");
    let both = json!({"purpose": "payment", "authorization_id": uuid::Uuid::new_v4()});
    h.post(&fwd, &doc.access, to_billing("f2", both)).await.expect_problem(422, "validation_failed");
    h.post(&fwd, &doc.access, to_billing("f2", json!({"authorization_id": uuid::Uuid::new_v4()})))
        .await
        .expect_problem(422, "authorization_not_valid");
    let paid = h.post(&fwd, &doc.access, to_billing("f2", json!({"purpose": "payment"}))).await.expect(201);
    // A retry is the same forward, not a second disclosure.
    let again = h.post(&fwd, &doc.access, to_billing("f2", json!({"purpose": "payment"}))).await.expect(200);
    assert_eq!(again.body["message"]["id"], paid.body["message"]["id"]);

    // Authorizations: recorded by the care team with a future expiry; then usable.
    let auths = format!("/api/v1/patients/{p}/authorizations");
    let form = |expires: &str| json!({"recipient": "Dr Who, Acme Ortho", "purpose": "second opinion", "expires_at": expires});
    h.post(&auths, &doc.access, form("2001-01-01T00:00:00Z")).await.expect_problem(422, "validation_failed");
    h.post(&auths, &doc.access, form("next week")).await.expect_problem(422, "validation_failed");
    h.post(&auths, &co.access, form("2099-01-01T00:00:00Z")).await.expect_problem(403, "forbidden");
    let unknown = format!("/api/v1/patients/{}/authorizations", uuid::Uuid::now_v7());
    h.post(&unknown, &doc.access, form("2099-01-01T00:00:00Z")).await.expect_problem(404, "not_found");
    // Each refusal is audited with its reason code, never the texts.
    let events = h.store.audit_events(0, 100_000).await.unwrap();
    let refusals: Vec<_> = events.iter().filter(|e| e.action == "patient.authorization" && e.outcome != "success").collect();
    let reasons: Vec<(&str, &str)> = refusals
        .iter()
        .map(|e| {
            (
                e.outcome.as_str(),
                if e.detail.contains("\"expires_at\"") {
                    "expires_at"
                } else if e.detail.contains("\"role\"") {
                    "role"
                } else if e.detail.contains("unknown_patient") {
                    "unknown_patient"
                } else {
                    "?"
                },
            )
        })
        .collect();
    assert_eq!(
        reasons,
        [("failure", "expires_at"), ("failure", "expires_at"), ("denied", "role"), ("denied", "unknown_patient")],
        "{refusals:?}"
    );
    assert!(refusals.iter().all(|e| !e.detail.contains("Ortho") && !e.detail.contains("opinion")));
    let a = h.post(&auths, &doc.access, form("2099-01-01T00:00:00Z")).await.expect(201).body;
    assert_eq!(a["patient_id"], p.as_str());
    assert!(!a.to_string().contains("Acme Ortho"), "the texts are not echoed: {a}");
    h.post(&fwd, &doc.access, to_billing("f3", json!({"authorization_id": a["id"]}))).await.expect(201);
    // Someone who is not a member of the source cannot forward it.
    let billing = h.login(&billing_acc).await;
    h.post(&fwd, &billing.access, to_billing("f4", json!({"purpose": "payment"}))).await.expect_problem(404, "not_found");

    // The accounting lists the two forwards to billing, not the one inside the care team.
    h.step_up(&co).await;
    let acc = h.get(&format!("/api/v1/patients/{p}/disclosures"), &co.access).await.expect(200).body;
    let fw: Vec<&Value> = acc["items"].as_array().unwrap().iter().filter(|i| i["action"] == "message.forward").collect();
    assert_eq!(fw.len(), 2, "{acc}");
    assert!(fw.iter().all(|i| i["recipient_id"] == billing_acc.id.to_string()), "{acc}");
    assert_eq!(fw[0]["purpose"], "payment");
    assert_eq!(fw[1]["purpose"], "authorization");
    assert!(fw[1]["purpose_statement"].as_str().unwrap().contains("authorized"), "{acc}");

    // The audit log: refusals recorded; ids and codes only, never the text.
    let events = h.store.audit_events(0, 100_000).await.unwrap();
    let denied = |why: &str| {
        events.iter().any(|e| e.action == "message.forward" && e.outcome == "denied" && e.detail.contains(&format!("\"{why}\"")))
    };
    assert!(denied("purpose_required") && denied("authorization_not_valid"));
    for e in &events {
        let row = format!("{e:?}");
        assert!(!row.contains("FWDCANARY") && !row.contains("Acme Ortho"), "PHI reached the audit log: {row}");
    }
    let logged = logs();
    assert!(!logged.contains("FWDCANARY") && !logged.contains("Acme Ortho"), "PHI reached the logs");
}

async fn patient_groups_beyond_the_care_team_warn_members(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let org = h.org("acme", vec![]).await;
    let doc_acc = h.account(&org, "doc@acme", Role::Clinician).await;
    let nurse_acc = h.account(&org, "nurse@acme", Role::Nurse).await;
    let cons_acc = h.account(&org, "cons@acme", Role::Clinician).await;
    let (doc, nurse) = (h.login(&doc_acc).await, h.login(&nurse_acc).await);
    let team = json!([doc_acc.id, nurse_acc.id]);
    let p = id(&h
        .post("/api/v1/patients", &doc.access, json!({"mrn": "F-2", "display_name": "Pat Roe", "care_team": team}))
        .await
        .expect(201)
        .body);
    let conv = h
        .post(
            "/api/v1/conversations",
            &doc.access,
            json!({"kind": "patient", "title": "Bed 7", "patient_id": p, "members": [{"user_id": nurse_acc.id}]}),
        )
        .await
        .expect(201)
        .body;
    assert_eq!(conv["beyond_care_team"], false, "{conv}");
    assert_eq!(conv["beyond_care_team_count"], 0);
    let conv = id(&conv);
    let mut nurse_stream = h.stream(&nurse).await;

    let add = json!({"user_id": cons_acc.id, "reason": {"code": "consult"}});
    h.post(&format!("/api/v1/conversations/{conv}/members"), &doc.access, add).await.expect(201);
    let notice = nurse_stream.next_of_kind("beyond_care_team", WAIT).await.expect("members hear the minimum-necessary notice");
    assert_eq!(notice["conversation_id"], conv.as_str(), "{notice}");
    assert_eq!(notice["user_id"], cons_acc.id.to_string(), "{notice}");
    assert_eq!(notice["members"], 1, "{notice}");

    let view = h.get(&format!("/api/v1/conversations/{conv}"), &nurse.access).await.expect(200).body;
    assert_eq!((view["beyond_care_team"].clone(), view["beyond_care_team_count"].clone()), (json!(true), json!(1)), "{view}");
    let list = h.get("/api/v1/conversations", &nurse.access).await.expect(200).body;
    let listed = list["items"].as_array().unwrap().iter().find(|c| c["id"] == conv.as_str()).unwrap().clone();
    assert_eq!(listed["beyond_care_team"], true, "{listed}");
    // A plain group never carries the warning.
    let g = h.conversation(&doc, "group", &[&cons_acc]).await;
    assert_eq!(h.get(&format!("/api/v1/conversations/{g}"), &doc.access).await.expect(200).body["beyond_care_team"], false);
}
