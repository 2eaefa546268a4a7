//! The BAA vendor register over real HTTPS: admins and compliance officers add, change and
//! remove vendors (others are refused, another tenant's ids are not found, bad entries get
//! clear errors and change nothing); the list classifies each agreement's expiry; the expiry
//! check, run for an injected day, raises the `baa_expiring` alert to compliance officers over
//! the stream and in the alert list, once per stage.

mod common;

use std::time::Duration;

use common::{Harness, Stream};
use reqwest::Method;
use serde_json::{Value, json};
use ward_domain::registers::BaaExpiry;
use ward_domain::role::Role;
use ward_store::{Backend, on_both_backends};

on_both_backends!(vendor_register_over_http);

async fn next_alert(st: &mut Stream, rule: &str) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return None;
        }
        let v = st.next_json(left).await?;
        if v["type"] == "alert" && v["alert"]["rule"] == rule {
            return Some(v);
        }
    }
}

fn entry(renewal: &str) -> Value {
    json!({"vendor": "Acme SMS Gateway", "services": "Appointment reminders", "data_shared": "First names, phone numbers",
        "baa_status": "signed", "signed_on": "2025-01-01", "renewal_on": renewal})
}

async fn vendor_register_over_http(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let (a, b) = (h.org("vena", vec![]).await, h.org("venb", vec![]).await);
    let co = h.login(&h.account(&a, "co@vena", Role::ComplianceOfficer).await).await;
    let admin = h.login(&h.account(&a, "admin@vena", Role::Admin).await).await;
    let doc = h.login(&h.account(&a, "doc@vena", Role::Clinician).await).await;
    let b_co = h.login(&h.account(&b, "co@venb", Role::ComplianceOfficer).await).await;
    let path = "/api/v1/baa-vendors";

    h.post(path, &doc.access, entry("2030-01-31")).await.expect_problem(403, "forbidden");
    h.get(path, &doc.access).await.expect_problem(403, "forbidden");
    // Bad entries: clear errors, nothing stored.
    let mut unsigned = entry("2030-01-31");
    unsigned["signed_on"] = Value::Null;
    h.post(path, &co.access, unsigned).await.expect_problem(422, "validation_failed");
    h.post(path, &co.access, entry("2030-02-30")).await.expect_problem(422, "validation_failed");
    h.post(path, &co.access, entry("2024-12-31")).await.expect_problem(422, "validation_failed");
    let mut bad_status = entry("2030-01-31");
    bad_status["baa_status"] = json!("active");
    h.post(path, &co.access, bad_status).await.expect(400);
    let mut bad_owner = entry("2030-01-31");
    bad_owner["owner"] = json!(b_co.account.id);
    h.post(path, &co.access, bad_owner).await.expect_problem(422, "validation_failed");
    assert_eq!(h.get(path, &co.access).await.expect(200).body["items"], json!([]));

    let mut owned = entry("2030-01-31");
    owned["owner"] = json!(co.account.id);
    let v = h.post(path, &co.access, owned).await.expect(201).body;
    assert_eq!((v["expiry"].as_str(), v["owner"].as_str()), (Some("active"), Some(co.account.id.to_string().as_str())));
    let id = v["id"].as_str().unwrap().to_owned();
    let lapsed = h.post(path, &admin.access, entry("2025-06-30")).await.expect(201).body;
    assert_eq!(lapsed["expiry"], "expired");
    let list = h.get(path, &admin.access).await.expect(200).body;
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    assert_eq!(h.get(path, &b_co.access).await.expect(200).body["items"], json!([]));

    // Change and remove: another tenant's ids are not found.
    let one = format!("{path}/{id}");
    h.call(Method::PUT, &one, Some(&b_co.access), Some(entry("2031-01-31"))).await.expect_problem(404, "not_found");
    h.call(Method::PUT, &one, Some(&doc.access), Some(entry("2031-01-31"))).await.expect_problem(403, "forbidden");
    let changed = h.call(Method::PUT, &one, Some(&co.access), Some(entry("2031-01-31"))).await.expect(200).body;
    assert_eq!(changed["renewal_on"], "2031-01-31");
    let gone = format!("{path}/{}", lapsed["id"].as_str().unwrap());
    h.call(Method::DELETE, &gone, Some(&b_co.access), None).await.expect_problem(404, "not_found");
    h.call(Method::DELETE, &gone, Some(&admin.access), None).await.expect(204);
    h.call(Method::DELETE, &gone, Some(&admin.access), None).await.expect_problem(404, "not_found");

    // The expiry check for an injected day alerts compliance officers, once per stage.
    let mut co_stream = h.stream(&co).await;
    let found = h.store.check_baa_expiry("2031-01-01", 60).await.unwrap();
    assert_eq!(found.iter().map(|n| n.expiry).collect::<Vec<_>>(), vec![BaaExpiry::ExpiringSoon]);
    next_alert(&mut co_stream, "baa_expiring").await.expect("the compliance officer is alerted");
    assert!(h.store.check_baa_expiry("2031-01-02", 60).await.unwrap().is_empty());
    assert_eq!(h.store.check_baa_expiry("2031-02-01", 60).await.unwrap().len(), 1);
    next_alert(&mut co_stream, "baa_expiring").await.expect("expiry alerts too");
    let alerts = h.get("/api/v1/audit/alerts", &co.access).await.expect(200).body;
    assert_eq!(alerts.to_string().matches("baa_expiring").count(), 2, "{alerts}");

    // Audited with codes and ids only.
    let events = h.store.audit_events(0, 100_000).await.unwrap();
    let count = |action: &str, outcome: &str| events.iter().filter(|e| e.action == action && e.outcome == outcome).count();
    assert_eq!(count("vendor.change", "success"), 4);
    assert!(count("vendor.change", "denied") >= 3);
    assert!(count("vendor.change", "failure") >= 3);
    assert_eq!(count("vendor.baa_expiring", "success"), 2);
    for e in &events {
        let text = format!("{e:?}");
        assert!(!text.contains("Acme SMS") && !text.contains("phone numbers"), "register text in the audit log: {text}");
    }
}
