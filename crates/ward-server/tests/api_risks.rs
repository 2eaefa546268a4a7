//! The risk register over real HTTPS: admins and compliance officers add, change and remove
//! risks (others refused, another tenant's ids not found, bad ratings and dates clear errors
//! that change nothing); the list is sorted by score with overdue reviews flagged.

mod common;

use common::Harness;
use reqwest::Method;
use serde_json::{Value, json};
use ward_domain::role::Role;
use ward_store::{Backend, on_both_backends};

on_both_backends!(risk_register_over_http);

fn entry(risk: &str, likelihood: i64, impact: i64, review_on: &str) -> Value {
    json!({"risk": risk, "likelihood": likelihood, "impact": impact, "status": "open", "review_on": review_on})
}

async fn risk_register_over_http(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let (a, b) = (h.org("riska", vec![]).await, h.org("riskb", vec![]).await);
    let co = h.login(&h.account(&a, "co@riska", Role::ComplianceOfficer).await).await;
    let nurse = h.login(&h.account(&a, "nurse@riska", Role::Nurse).await).await;
    let b_admin = h.login(&h.account(&b, "admin@riskb", Role::Admin).await).await;
    let path = "/api/v1/risks";

    h.post(path, &nurse.access, entry("Lost phone", 4, 5, "2099-01-01")).await.expect_problem(403, "forbidden");
    h.get(path, &nurse.access).await.expect_problem(403, "forbidden");
    for bad in [
        entry("Lost phone", 0, 5, "2099-01-01"),
        entry("Lost phone", 4, 6, "2099-01-01"),
        entry(" ", 4, 5, "2099-01-01"),
        entry("x", 1, 1, "2099-02-30"),
    ] {
        h.post(path, &co.access, bad).await.expect_problem(422, "validation_failed");
    }
    let mut bad_status = entry("Lost phone", 4, 5, "2099-01-01");
    bad_status["status"] = json!("done");
    h.post(path, &co.access, bad_status).await.expect(400);
    assert_eq!(h.get(path, &co.access).await.expect(200).body["items"], json!([]));

    let low = h.post(path, &co.access, entry("Paper charts left out", 2, 2, "2000-01-01")).await.expect(201).body;
    let mut owned = entry("Lost unencrypted phone", 4, 5, "2099-01-01");
    owned["owner"] = json!(co.account.id);
    let high = h.post(path, &co.access, owned).await.expect(201).body;
    assert_eq!((high["score"].as_i64(), high["review_overdue"].as_bool()), (Some(20), Some(false)));
    let list = h.get(path, &co.access).await.expect(200).body;
    let items = list["items"].as_array().unwrap();
    assert_eq!((items[0]["id"].clone(), items[1]["id"].clone()), (high["id"].clone(), low["id"].clone()));
    assert_eq!(items[1]["review_overdue"], true);
    assert_eq!(h.get(path, &b_admin.access).await.expect(200).body["items"], json!([]));

    // Closing a risk clears the overdue flag; another tenant cannot touch it.
    let one = format!("{path}/{}", low["id"].as_str().unwrap());
    let mut closed = entry("Paper charts left out", 2, 2, "2000-01-01");
    closed["status"] = json!("closed");
    h.call(Method::PUT, &one, Some(&b_admin.access), Some(closed.clone())).await.expect_problem(404, "not_found");
    let c = h.call(Method::PUT, &one, Some(&co.access), Some(closed)).await.expect(200).body;
    assert_eq!((c["status"].as_str(), c["review_overdue"].as_bool()), (Some("closed"), Some(false)));
    h.call(Method::DELETE, &one, Some(&nurse.access), None).await.expect_problem(403, "forbidden");
    h.call(Method::DELETE, &one, Some(&co.access), None).await.expect(204);
    h.call(Method::DELETE, &one, Some(&co.access), None).await.expect_problem(404, "not_found");

    let events = h.store.audit_events(0, 100_000).await.unwrap();
    let count = |outcome: &str| events.iter().filter(|e| e.action == "risk.change" && e.outcome == outcome).count();
    assert_eq!(count("success"), 4);
    assert!(count("denied") >= 3);
    assert!(count("failure") >= 4);
    for e in &events {
        let text = format!("{e:?}");
        assert!(!text.contains("Paper charts") && !text.contains("unencrypted"), "risk text in the audit log: {text}");
    }

    // Training records: managers record, everyone reads their own.
    let tr = "/api/v1/training-records";
    let done = json!({"user_id": nurse.account.id, "course": "HIPAA security awareness 2026", "completed_on": "2026-11-30"});
    h.post(tr, &nurse.access, done.clone()).await.expect_problem(403, "forbidden");
    h.post(tr, &co.access, json!({"user_id": nurse.account.id, "course": "x", "completed_on": "2026-13-01"}))
        .await
        .expect_problem(422, "validation_failed");
    h.post(tr, &co.access, json!({"user_id": b_admin.account.id, "course": "x", "completed_on": "2026-11-30"}))
        .await
        .expect_problem(422, "validation_failed");
    h.post(tr, &co.access, done).await.expect(201);
    let mine = h.get("/api/v1/me/training-records", &nurse.access).await.expect(200).body;
    assert_eq!(mine["items"][0]["course"], "HIPAA security awareness 2026");
    assert_eq!(h.get("/api/v1/me/training-records", &co.access).await.expect(200).body["items"], json!([]));
    assert_eq!(h.get(tr, &co.access).await.expect(200).body["items"].as_array().unwrap().len(), 1);
    h.get(tr, &nurse.access).await.expect_problem(403, "forbidden");
    assert_eq!(h.get(tr, &b_admin.access).await.expect(200).body["items"], json!([]));
    let recorded = h.store.audit_events(0, 100_000).await.unwrap();
    assert_eq!(recorded.iter().filter(|e| e.action == "training.record" && e.outcome == "success").count(), 1);
}
