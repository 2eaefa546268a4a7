//! Escalation of unread urgent and STAT messages end to end, with one-second delays and a
//! fake FCM that records every push. A STAT message left unread is re-pushed once to the
//! recipient who has not read it ("Urgent message needs attention", ids only), then to the
//! on-call member of the patient's care team only; three workers (the server's and two
//! more) never run a step twice. A message read, or recalled, before its delay escalates
//! nothing; a conversation without a care team records that step 2 found no one. Canary:
//! message bodies and the patient's name reach no push, no log and no audit entry.

mod common;

use std::time::Duration;

use aws_lc_rs::encoding::AsDer;
use base64::Engine;
use common::{Harness, captured, logs};
use reqwest::Method;
use serde_json::json;
use ward_domain::contact::ContactKind;
use ward_domain::role::Role;
use ward_notify::fake::{FakeHttp, Recorded};
use ward_store::{Backend, ContactOwner, ESCALATION_SMS_TEXT, EscalationDelays, on_both_backends};

on_both_backends!(escalation_steps);

const CANARIES: &[&str] = &["Wilhelmina Starcrossed", "Starcrossed", "canary-esc-4417", "pheochromocytoma"];
const ALERT: &str = "Urgent message needs attention";

fn pem(label: &str, der: &[u8]) -> String {
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", base64::engine::general_purpose::STANDARD.encode(der))
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..200 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

/// The escalation pushes each token got, as (token, message id).
fn escalations(fcm: &FakeHttp) -> Vec<(String, String)> {
    fcm.sends()
        .iter()
        .filter(|r| r.path.ends_with("messages:send"))
        .map(Recorded::json)
        .filter(|j| j["message"]["notification"]["body"] == ALERT)
        .map(|j| {
            (
                j["message"]["token"].as_str().unwrap_or_default().to_owned(),
                j["message"]["data"]["message_id"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

async fn escalation_steps(backend: Backend) {
    captured();
    let fcm = FakeHttp::start().await;
    let sms = FakeHttp::start().await;
    let sms_url = format!("{}/send", sms.url);
    let keys = tempfile::tempdir().unwrap();
    let rsa = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let account = json!({"type": "service_account", "project_id": "ward-test", "client_email": "push@ward-test.example",
        "private_key": pem("PRIVATE KEY", rsa.as_der().unwrap().as_ref()), "token_uri": format!("{}/token", fcm.url)});
    std::fs::write(keys.path().join("fcm.json"), account.to_string()).unwrap();
    let (kp, fcm_url) = (keys.path().to_path_buf(), fcm.url.clone());
    let Some(h) = Harness::start_with(backend, move |c| {
        common::notify::fast(&mut c.notify);
        common::notify::fake_fcm(&mut c.notify, fcm_url, &kp);
        common::notify::fake_sms(&mut c.notify, sms_url);
        c.notify.sms.token = Some("gateway-token-esc".into());
        c.escalation.stat_renotify_secs = 1;
        c.escalation.urgent_renotify_secs = 1;
    })
    .await
    else {
        return;
    };
    // Two more workers racing the server's own for every step.
    let delays = EscalationDelays { stat_ms: 1000, urgent_ms: 1000, sms: true };
    let racers: Vec<_> = (0..2)
        .map(|_| {
            let store = h.store.clone();
            tokio::spawn(async move {
                loop {
                    let _ = store.escalate_due(delays, 100).await;
                    tokio::time::sleep(Duration::from_millis(37)).await;
                }
            })
        })
        .collect();

    let org = h.org("acme", vec![]).await;
    let doc = h.account(&org, "doc", Role::Clinician).await;
    let nurse = h.account(&org, "nurse", Role::Nurse).await;
    let charge = h.account(&org, "charge", Role::Nurse).await;
    let other = h.account(&org, "other", Role::Clinician).await;
    let outsider = h.account(&org, "outsider", Role::Nurse).await;
    let (ds, ns, cs, os, xs) =
        (h.login(&doc).await, h.login(&nurse).await, h.login(&charge).await, h.login(&other).await, h.login(&outsider).await);
    for (s, token) in [(&ds, "fcm-tok-doc-0001"), (&ns, "fcm-tok-nurse-0001"), (&cs, "fcm-tok-charge-0001"), (&os, "fcm-tok-other-0001")] {
        h.call(Method::PUT, "/api/v1/me/device/push-token", Some(&s.access), Some(json!({"platform": "fcm", "token": token})))
            .await
            .expect(200);
    }

    // The charge nurse has a verified phone: the on-call step texts it too (its code goes first).
    h.store.test_verified_contact(org.id, charge.id, ContactOwner::User(charge.id), ContactKind::Phone, "+14155550177").await;
    wait_for("the verification code", || sms.sends().len() == 1).await;

    // The patient's care team: doc, nurse, charge and other; charge goes on call (by doc, on the team).
    let r = h
        .post(
            "/api/v1/patients",
            &ds.access,
            json!({"mrn": "ESC-1", "display_name": "Wilhelmina Starcrossed", "care_team": [doc.id, nurse.id, charge.id, other.id]}),
        )
        .await
        .expect(201);
    let patient = r.body["id"].as_str().unwrap().to_owned();
    let on_call = |user: &common::Account| format!("/api/v1/patients/{patient}/care-team/{}/on-call", user.id);
    h.call(Method::PUT, &on_call(&charge), Some(&xs.access), Some(json!({"on_call": true}))).await.expect_problem(403, "forbidden");
    h.call(Method::PUT, &on_call(&outsider), Some(&ds.access), Some(json!({"on_call": true}))).await.expect_problem(409, "invalid_state");
    h.call(Method::PUT, &on_call(&charge), Some(&ds.access), Some(json!({"on_call": "yes"}))).await.expect(400);
    h.call(Method::PUT, &on_call(&charge), Some(&ds.access), Some(json!({"on_call": true}))).await.expect(204);
    // Replacing the team keeps the flag of who stays.
    h.call(
        Method::PUT,
        &format!("/api/v1/patients/{patient}/care-team"),
        Some(&ds.access),
        Some(json!({"care_team": [doc.id, nurse.id, charge.id, other.id]})),
    )
    .await
    .expect(200);
    assert_eq!(h.store.on_call(org.id, ward_domain::ids::PatientId(patient.parse().unwrap())).await.unwrap(), vec![charge.id]);

    let r = h
        .post(
            "/api/v1/conversations",
            &ds.access,
            json!({"kind": "patient", "title": "Bed 4", "patient_id": patient, "members": [{"user_id": nurse.id}]}),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.body);
    let conv = r.body["id"].as_str().unwrap().to_owned();
    let send = |txn: &'static str, priority: &'static str| {
        let (h, conv, access) = (&h, conv.clone(), ds.access.clone());
        async move {
            let body = format!("Wilhelmina Starcrossed pheochromocytoma canary-esc-4417 {txn}");
            let r = h
                .post(
                    &format!("/api/v1/conversations/{conv}/messages"),
                    &access,
                    json!({"client_txn_id": txn, "body": body, "priority": priority}),
                )
                .await
                .expect(201);
            (r.body["id"].as_str().unwrap().to_owned(), r.body["seq"].as_i64().unwrap())
        }
    };

    // Read before the delay: nothing. Recalled before the delay: nothing.
    let (read_id, read_seq) = send("t-read", "stat").await;
    h.post(&format!("/api/v1/conversations/{conv}/receipts"), &ns.access, json!({"kind": "read", "up_to_seq": read_seq})).await.expect(204);
    let (recalled_id, _) = send("t-recall", "urgent").await;
    h.post(&format!("/api/v1/conversations/{conv}/messages/{recalled_id}/recall"), &ds.access, json!({})).await.expect(200);

    // STAT, unread by the nurse: step 1 re-pushes the nurse once, step 2 the on-call charge nurse.
    let (stat_id, _) = send("t-stat", "stat").await;
    wait_for("the re-notification", || escalations(&fcm).iter().any(|(t, m)| t == "fcm-tok-nurse-0001" && *m == stat_id)).await;
    wait_for("the on-call push", || escalations(&fcm).iter().any(|(t, m)| t == "fcm-tok-charge-0001" && *m == stat_id)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got = escalations(&fcm);
    let for_stat: Vec<&str> = got.iter().filter(|(_, m)| *m == stat_id).map(|(t, _)| t.as_str()).collect();
    assert_eq!(for_stat.len(), 2, "one push per step, never twice: {for_stat:?}");
    assert!(for_stat.contains(&"fcm-tok-nurse-0001") && for_stat.contains(&"fcm-tok-charge-0001"), "{for_stat:?}");
    assert!(got.iter().all(|(_, m)| *m != read_id && *m != recalled_id), "read and recalled messages escalate nothing");
    let push = fcm.sends().iter().map(Recorded::json).find(|j| j["message"]["token"] == "fcm-tok-charge-0001").unwrap();
    assert_eq!(push["message"]["notification"], json!({"body": ALERT}));
    assert_eq!(push["message"]["android"]["priority"], "HIGH");
    assert_eq!(push["message"]["data"], json!({"conversation_id": conv, "message_id": stat_id}));
    // One PHI-free SMS to the on-call nurse's verified phone, once across the racing nodes.
    wait_for("the on-call SMS", || sms.sends().len() == 2).await;
    assert_eq!(sms.sends()[1].json(), json!({"to": "+14155550177", "text": ESCALATION_SMS_TEXT}));
    let steps = h.store.escalations(org.id, stat_id.parse().unwrap()).await.unwrap();
    let summary: Vec<(i64, &str, i64, i64)> = steps.iter().map(|s| (s.step, s.outcome.as_str(), s.people, s.devices)).collect();
    assert_eq!(summary, vec![(1, "notified", 1, 1), (2, "notified", 1, 1)]);
    for id in [&read_id, &recalled_id] {
        assert!(h.store.escalations(org.id, id.parse().unwrap()).await.unwrap().is_empty());
    }

    // A group conversation has no care team: step 2 records that it found no one.
    let group = h.conversation(&ds, "group", &[&nurse]).await;
    let r = h
        .post(
            &format!("/api/v1/conversations/{group}/messages"),
            &ds.access,
            json!({"client_txn_id": "g1", "body": "canary-esc-4417", "priority": "urgent"}),
        )
        .await
        .expect(201);
    let group_msg: uuid::Uuid = r.body["id"].as_str().unwrap().parse().unwrap();
    for _ in 0..100 {
        if h.store.escalations(org.id, group_msg).await.unwrap().len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let steps = h.store.escalations(org.id, group_msg).await.unwrap();
    let summary: Vec<(i64, &str, i64)> = steps.iter().map(|s| (s.step, s.outcome.as_str(), s.people)).collect();
    assert_eq!(summary, vec![(1, "notified", 1), (2, "no_one", 0)]);

    // The same, over the API: the patient record names who is on call; a conversation's
    // members read its escalation steps (ids, outcomes and counts only); others get 404.
    let r = h.get(&format!("/api/v1/patients/{patient}"), &ds.access).await.expect(200);
    assert_eq!(r.body["on_call"], json!([charge.id]));
    let r = h.get(&format!("/api/v1/conversations/{conv}/escalations"), &ds.access).await.expect(200);
    let steps: Vec<(String, i64, String, i64)> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["message_id"].as_str().unwrap().to_owned(),
                e["step"].as_i64().unwrap(),
                e["outcome"].as_str().unwrap().to_owned(),
                e["people"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(steps, vec![(stat_id.clone(), 1, "notified".to_owned(), 1), (stat_id.clone(), 2, "notified".to_owned(), 1)]);
    assert!(r.body[0]["at"].as_str().is_some_and(|t| t.ends_with('Z')), "{}", r.body);
    let r = h.get(&format!("/api/v1/conversations/{group}/escalations"), &ns.access).await.expect(200);
    let outcomes: Vec<&str> = r.body.as_array().unwrap().iter().map(|e| e["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, vec!["notified", "no_one"]);
    h.get(&format!("/api/v1/conversations/{conv}/escalations"), &xs.access).await.expect_problem(404, "not_found");
    h.get(&format!("/api/v1/conversations/{group}/escalations"), &cs.access).await.expect_problem(404, "not_found");
    // Off call: the record says so.
    h.call(Method::PUT, &on_call(&charge), Some(&ds.access), Some(json!({"on_call": false}))).await.expect(204);
    let r = h.get(&format!("/api/v1/patients/{patient}"), &ds.access).await.expect(200);
    assert_eq!(r.body["on_call"], json!([]));
    for r in racers {
        r.abort();
    }

    // Canary: nothing of the content left Ward, nor reached a log or the audit log.
    assert_eq!(sms.sends().len(), 2, "no SMS for the group conversation, none twice");
    let mut outside: Vec<String> = fcm.requests().iter().map(Recorded::all_text).collect();
    outside.extend(sms.requests().iter().map(Recorded::all_text));
    let log = logs();
    let audit = h.store.audit_events(0, 100_000).await.unwrap();
    for canary in CANARIES {
        for o in &outside {
            assert!(!o.contains(canary), "{canary} sent to a provider: {o}");
        }
        assert!(!log.contains(canary), "{canary} in the logs");
        for e in &audit {
            assert!(!e.detail.contains(canary), "{canary} in {}", e.detail);
        }
    }
    let esc: Vec<_> = audit.iter().filter(|e| e.action == "message.escalate").collect();
    assert_eq!(esc.len(), 4, "one audit event per step");
    assert!(esc.iter().any(|e| e.detail.contains(r#""result":"no_one""#)));
    assert_eq!(esc.iter().filter(|e| e.detail.contains(r#""sms":1"#)).count(), 1, "the on-call step's SMS is counted");
    assert!(audit.iter().all(|e| !e.detail.contains("4155550177")), "no phone number in the audit log");
    assert!(audit.iter().any(|e| e.action == "patient.on_call" && e.detail.contains(r#""on_call":true"#)));
    let _ = (&cs, &os);
}
