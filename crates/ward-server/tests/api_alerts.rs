//! Anomaly alerts over real HTTPS and WebSocket: the rules API (validation, role refusals,
//! auditing), one end-to-end run per rule kind (a user triggers it over HTTP, a compliance
//! officer's stream receives the alert frame, and the alert is an audit event), the PHI canary
//! on frames and events, and the evaluator's resume after a restart.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Harness, Session, Stream};
use reqwest::Method;
use serde_json::{Value, json};
use ward_domain::role::Role;
use ward_store::testing::TestDb;
use ward_store::{Backend, on_both_backends, on_sqlite};

on_both_backends!(restricted_patient_access_alerts_compliance_officers);
on_sqlite!(
    rules_api_validates_refuses_and_audits,
    bulk_patient_reads_alert,
    off_hours_activity_alerts,
    failed_login_bursts_alert,
    audit_access_by_admins_alerts,
    alerts_are_listed_and_acknowledged,
    evaluator_resumes_without_losing_or_repeating_alerts
);

const WAIT: Duration = Duration::from_secs(10);
/// How long to wait for a frame that must not come (the evaluator polls every 200 ms).
const QUIET: Duration = Duration::from_millis(1500);

/// The next alert frame of this rule (skipping other frames and other rules).
async fn next_alert(st: &mut Stream, rule: &str, wait: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + wait;
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

/// The stored `alert.raised` event of an alert frame, checked to be PHI-free.
async fn alert_event(h: &Harness, frame: &Value) -> ward_store::AuditRecord {
    let idx = frame["alert"]["audit_idx"].as_i64().expect("audit_idx");
    let ev = h.store.audit_events(idx, 1).await.unwrap().remove(0);
    assert_eq!(ev.action, "alert.raised");
    assert_eq!(ev.target_id.as_deref(), frame["alert"]["id"].as_str());
    assert_eq!(ev.actor_user_id, None, "alerts are raised by the system");
    let detail: Value = serde_json::from_str(&ev.detail).unwrap();
    assert_eq!(detail["rule"], frame["alert"]["rule"]);
    ev
}

fn assert_no_phi(text: &str, canaries: &[&str]) {
    for c in canaries {
        assert!(!text.contains(c), "{c:?} leaked into {text}");
    }
}

async fn put_rules(h: &Harness, s: &Session, f: impl FnOnce(&mut Value)) -> Value {
    let mut rules = h.get("/api/v1/org/alert-rules", &s.access).await.expect(200).body;
    f(&mut rules);
    h.call(Method::PUT, "/api/v1/org/alert-rules", Some(&s.access), Some(rules)).await.expect(200).body
}

async fn rules_api_validates_refuses_and_audits(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let org = h.org("acme", vec![]).await;
    let co = h.login(&h.account(&org, "co@acme", Role::ComplianceOfficer).await).await;
    let admin = h.login(&h.account(&org, "admin@acme", Role::Admin).await).await;
    let clin = h.login(&h.account(&org, "clin@acme", Role::Clinician).await).await;

    let defaults = h.get("/api/v1/org/alert-rules", &co.access).await.expect(200).body;
    assert_eq!(defaults["bulk_access"], json!({"enabled": true, "max_patients": 20, "window_minutes": 60}));
    assert_eq!(defaults["failed_logins"]["per_account"], 10);
    assert_eq!(defaults["failed_logins"]["window_minutes"], 5);

    for role_session in [&clin] {
        h.get("/api/v1/org/alert-rules", &role_session.access).await.expect_problem(403, "forbidden");
        h.call(Method::PUT, "/api/v1/org/alert-rules", Some(&role_session.access), Some(defaults.clone()))
            .await
            .expect_problem(403, "forbidden");
    }
    let mut bad = defaults.clone();
    bad["bulk_access"]["max_patients"] = json!(0);
    let r = h.call(Method::PUT, "/api/v1/org/alert-rules", Some(&co.access), Some(bad)).await.expect_problem(422, "validation_failed");
    assert!(r.body["detail"].as_str().unwrap().contains("bulk_access.max_patients"));
    let mut bad = defaults.clone();
    bad["working_hours"]["start"] = json!("25:00");
    h.call(Method::PUT, "/api/v1/org/alert-rules", Some(&co.access), Some(bad)).await.expect_problem(422, "validation_failed");
    let mut bad = defaults.clone();
    bad["working_hours"]["days"] = json!(["mon", "funday"]);
    h.call(Method::PUT, "/api/v1/org/alert-rules", Some(&co.access), Some(bad)).await.expect_problem(400, "invalid_body");
    let mut bad = defaults.clone();
    bad["surprise"] = json!(true);
    h.call(Method::PUT, "/api/v1/org/alert-rules", Some(&co.access), Some(bad)).await.expect_problem(400, "invalid_body");
    let mut bad = defaults.clone();
    bad["failed_logins"]["window_minutes"] = json!(-1);
    h.call(Method::PUT, "/api/v1/org/alert-rules", Some(&co.access), Some(bad)).await.expect_problem(400, "invalid_body");

    let changed = put_rules(&h, &admin, |r| {
        r["working_hours"]["enabled"] = json!(true);
        r["working_hours"]["utc_offset_minutes"] = json!(-300);
    })
    .await;
    assert_eq!(changed["working_hours"]["utc_offset_minutes"], -300);
    let read = h.get("/api/v1/org/alert-rules", &co.access).await.expect(200).body;
    assert_eq!(read, changed);

    let events = h.store.audit_events(0, 1000).await.unwrap();
    let changes: Vec<_> = events.iter().filter(|e| e.action == "admin.org_policy" && e.detail.contains("alert_rules")).collect();
    assert_eq!(changes.len(), 1, "only the accepted change is recorded as a change");
    assert_eq!(changes[0].actor_user_id, Some(admin.account.id.0));
    assert!(
        events.iter().any(|e| e.action == "admin.org_policy" && e.outcome == "denied" && e.actor_user_id == Some(clin.account.id.0)),
        "the refused change is audited"
    );
}

async fn bulk_patient_reads_alert(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let org = h.org("acme", vec![]).await;
    let co = h.login(&h.account(&org, "co@acme", Role::ComplianceOfficer).await).await;
    let admin_acc = h.account(&org, "admin@acme", Role::Admin).await;
    let clin_acc = h.account(&org, "clin@acme", Role::Clinician).await;
    let (admin, clin) = (h.login(&admin_acc).await, h.login(&clin_acc).await);
    put_rules(&h, &co, |r| r["bulk_access"] = json!({"enabled": true, "max_patients": 2, "window_minutes": 60})).await;
    let mut patients = Vec::new();
    for i in 0..3 {
        let p = h
            .store
            .create_patient(org.id, admin_acc.id, format!("MRN-{i}"), format!("Canary Name{i}"), vec![clin_acc.id], Harness::meta())
            .await
            .unwrap();
        patients.push(p);
    }
    let mut co_stream = h.stream(&co).await;
    let mut admin_stream = h.stream(&admin).await;

    // Two patient records, then the third patient's conversation messages.
    for p in &patients[..2] {
        h.get(&format!("/api/v1/patients/{}", p.id), &clin.access).await.expect(200);
        h.get(&format!("/api/v1/patients/{}", p.id), &clin.access).await.expect(200);
    }
    let conv = h
        .post(
            "/api/v1/conversations",
            &clin.access,
            json!({"kind": "patient", "title": "Consult", "patient_id": patients[2].id, "members": []}),
        )
        .await
        .expect(201)
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    h.get(&format!("/api/v1/conversations/{conv}/messages"), &clin.access).await.expect(200);

    let frame = next_alert(&mut co_stream, "bulk_patient_access", WAIT).await.expect("the compliance officer is alerted");
    let a = &frame["alert"];
    assert_eq!(a["subject_user_id"], clin_acc.id.to_string());
    assert_eq!((a["count"].as_i64(), a["threshold"].as_i64(), a["window_minutes"].as_i64()), (Some(3), Some(2), Some(60)));
    let ev = alert_event(&h, &frame).await;
    assert_eq!(ev.org_id, Some(org.id.0));
    let canaries = ["Canary Name", "MRN-", "clin@acme"];
    assert_no_phi(&frame.to_string(), &canaries);
    assert_no_phi(&format!("{ev:?}"), &canaries);
    assert!(next_alert(&mut admin_stream, "bulk_patient_access", QUIET).await.is_none(), "only compliance officers receive alerts");
    // Quiet for the window: more reads raise no second alert.
    h.get(&format!("/api/v1/patients/{}", patients[0].id), &clin.access).await.expect(200);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let raised = h.store.audit_events(0, 10_000).await.unwrap().into_iter().filter(|e| e.action == "alert.raised").count();
    assert_eq!(raised, 1);
}

async fn off_hours_activity_alerts(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let org = h.org("acme", vec![]).await;
    let co = h.login(&h.account(&org, "co@acme", Role::ComplianceOfficer).await).await;
    let nurse_acc = h.account(&org, "nurse@acme", Role::Nurse).await;
    let nurse = h.login(&nurse_acc).await;
    // Working hours are a one-minute slot two hours from now: now is outside them.
    let now_min = (ward_store::now_ms() / 60_000).rem_euclid(1440);
    let clock = |m: i64| format!("{:02}:{:02}", m.rem_euclid(1440) / 60, m.rem_euclid(1440) % 60);
    put_rules(&h, &co, |r| {
        r["working_hours"] = json!({
            "enabled": true, "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
            "start": clock(now_min + 120), "end": clock(now_min + 121), "utc_offset_minutes": 0, "repeat_after_minutes": 60
        })
    })
    .await;
    let mut co_stream = h.stream(&co).await;
    h.get("/api/v1/users", &nurse.access).await.expect(200);
    let frame = loop {
        let f = next_alert(&mut co_stream, "off_hours_access", WAIT).await.expect("the compliance officer is alerted");
        if f["alert"]["subject_user_id"] == nurse_acc.id.to_string() {
            break f;
        }
    };
    alert_event(&h, &frame).await;
    assert!(frame["alert"]["subject_patient_id"].is_null());
}

async fn restricted_patient_access_alerts_compliance_officers(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let org = h.org("acme", vec![]).await;
    let co = h.login(&h.account(&org, "co@acme", Role::ComplianceOfficer).await).await;
    let admin_acc = h.account(&org, "admin@acme", Role::Admin).await;
    let staff_acc = h.account(&org, "staff@acme", Role::Staff).await;
    let staff = h.login(&staff_acc).await;
    let p = h.store.create_patient(org.id, admin_acc.id, "VIP-7".into(), "Famous Canary".into(), vec![], Harness::meta()).await.unwrap();
    let path = format!("/api/v1/patients/{}/restricted", p.id);
    h.call(Method::PUT, &path, Some(&staff.access), Some(json!({"restricted": true}))).await.expect_problem(403, "forbidden");
    let set = h.call(Method::PUT, &path, Some(&co.access), Some(json!({"restricted": true}))).await.expect(200);
    assert_eq!(set.body["restricted"], true);
    let mut co_stream = h.stream(&co).await;

    // Looking the patient up by MRN is an access to the record.
    h.post("/api/v1/patients/search", &staff.access, json!({"mrn": "VIP-7"})).await.expect(200);
    let frame = next_alert(&mut co_stream, "restricted_patient_access", WAIT).await.expect("the compliance officer is alerted");
    assert_eq!(frame["alert"]["subject_patient_id"], p.id.to_string());
    assert_eq!(frame["alert"]["subject_user_id"], staff_acc.id.to_string());
    let ev = alert_event(&h, &frame).await;
    assert_eq!(ev.patient_id, Some(p.id.0));
    assert_no_phi(&frame.to_string(), &["Famous Canary", "VIP-7"]);
    assert_no_phi(&format!("{ev:?}"), &["Famous Canary", "VIP-7"]);
    let events = h.store.audit_events(0, 1000).await.unwrap();
    assert!(events.iter().any(|e| e.action == "patient.restrict" && e.outcome == "success" && e.actor_user_id == Some(co.account.id.0)));
    assert!(events.iter().any(|e| e.action == "patient.restrict" && e.outcome == "denied" && e.actor_user_id == Some(staff_acc.id.0)));
    // Clearing the flag stops the alerts.
    h.call(Method::PUT, &path, Some(&co.access), Some(json!({"restricted": false}))).await.expect(200);
    let other = h.login(&h.account(&org, "other@acme", Role::Staff).await).await;
    h.get(&format!("/api/v1/patients/{}", p.id), &other.access).await.expect(200);
    assert!(next_alert(&mut co_stream, "restricted_patient_access", QUIET).await.is_none());
}

async fn failed_login_bursts_alert(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let org = h.org("acme", vec![]).await;
    let co = h.login(&h.account(&org, "co@acme", Role::ComplianceOfficer).await).await;
    let target = h.account(&org, "target@acme", Role::Nurse).await;
    put_rules(&h, &co, |r| r["failed_logins"] = json!({"enabled": true, "per_account": 3, "per_org": 100, "window_minutes": 5})).await;
    let mut co_stream = h.stream(&co).await;
    for _ in 0..3 {
        let body = json!({"login": target.login, "password": "wrong password guess", "device": {"name": "x", "platform": "cli"}});
        h.call(Method::POST, "/api/v1/auth/login", None, Some(body)).await.expect_problem(401, "invalid_credentials");
    }
    let frame = next_alert(&mut co_stream, "failed_logins_account", WAIT).await.expect("the compliance officer is alerted");
    assert_eq!(frame["alert"]["subject_user_id"], target.id.to_string());
    assert_eq!((frame["alert"]["count"].as_i64(), frame["alert"]["threshold"].as_i64()), (Some(3), Some(3)));
    alert_event(&h, &frame).await;
    assert_no_phi(&frame.to_string(), &["target@acme", "wrong password"]);
}

async fn audit_access_by_admins_alerts(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let org = h.org("acme", vec![]).await;
    let co = h.login(&h.account(&org, "co@acme", Role::ComplianceOfficer).await).await;
    let admin_acc = h.account(&org, "admin@acme", Role::Admin).await;
    let clin_acc = h.account(&org, "clin@acme", Role::Clinician).await;
    let (admin, clin) = (h.login(&admin_acc).await, h.login(&clin_acc).await);
    let mut co_stream = h.stream(&co).await;
    // The compliance officer's own reads are their job.
    h.get("/api/v1/audit/checkpoint", &co.access).await.expect(200);
    h.get("/api/v1/audit/events?limit=5", &admin.access).await.expect(200);
    let frame = next_alert(&mut co_stream, "audit_access_by_non_compliance", WAIT).await.expect("the compliance officer is alerted");
    assert_eq!(frame["alert"]["subject_user_id"], admin_acc.id.to_string());
    alert_event(&h, &frame).await;
    // A refused attempt by another role is an alert too.
    h.get("/api/v1/audit/checkpoint", &clin.access).await.expect_problem(403, "forbidden");
    let frame = next_alert(&mut co_stream, "audit_access_by_non_compliance", WAIT).await.expect("the refused attempt is alerted");
    assert_eq!(frame["alert"]["subject_user_id"], clin_acc.id.to_string());
    let alerts = h.store.alerts(org.id, None, false, 50).await.unwrap();
    assert!(alerts.iter().all(|a| a.subject_user != Some(co.account.id)), "no alert about the compliance officer");
}

async fn alerts_are_listed_and_acknowledged(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let org = h.org("acme", vec![]).await;
    let other = h.org("other", vec![]).await;
    let co = h.login(&h.account(&org, "co@acme", Role::ComplianceOfficer).await).await;
    let clin = h.login(&h.account(&org, "clin@acme", Role::Clinician).await).await;
    let mine = h.store.test_insert_alert(org.id).await;
    let theirs = h.store.test_insert_alert(other.id).await;
    let list = h.get("/api/v1/audit/alerts?unacknowledged=true", &co.access).await.expect(200).body;
    let ids: Vec<_> = list["items"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap().to_owned()).collect();
    assert!(ids.contains(&mine.id.to_string()) && !ids.contains(&theirs.id.to_string()));
    h.get("/api/v1/audit/alerts?limit=0", &co.access).await.expect_problem(422, "validation_failed");
    h.get("/api/v1/audit/alerts?bogus=1", &co.access).await.expect_problem(400, "invalid_parameter");
    h.get("/api/v1/audit/alerts", &clin.access).await.expect_problem(403, "forbidden");
    let ack = format!("/api/v1/audit/alerts/{}/acknowledge", mine.id);
    h.call(Method::POST, &ack, Some(&clin.access), None).await.expect_problem(403, "forbidden");
    h.call(Method::POST, &format!("/api/v1/audit/alerts/{}/acknowledge", theirs.id), Some(&co.access), None)
        .await
        .expect_problem(404, "not_found");
    let r = h.call(Method::POST, &ack, Some(&co.access), None).await.expect(200);
    assert_eq!(r.body["acknowledged_by"], co.account.id.to_string());
    let list = h.get("/api/v1/audit/alerts?unacknowledged=true", &co.access).await.expect(200).body;
    assert!(list["items"].as_array().unwrap().iter().all(|a| a["id"] != mine.id.to_string()));
    let events = h.store.audit_events(0, 1000).await.unwrap();
    assert!(events.iter().any(|e| e.action == "alert.acknowledge" && e.outcome == "success" && e.target_id == Some(mine.id.to_string())));
    assert!(events.iter().any(|e| e.action == "alert.acknowledge" && e.outcome == "denied"));
    assert!(events.iter().any(|e| e.action == "audit.read" && e.detail.contains("\"alerts\"")));
}

/// The evaluator keeps its cursor in the database: a restart neither loses an alert whose
/// window spans the restart nor raises one twice.
async fn evaluator_resumes_without_losing_or_repeating_alerts(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = db.store.clone();
    let fanout: Arc<dyn ward_fanout::FanOut> = Arc::new(ward_fanout::InProcess::default());
    let org = s.create_org("acme", "Acme", 900, None, Harness::meta()).await.unwrap();
    let mut rules = ward_domain::alerts::AlertRules::default();
    rules.failed_logins.per_account = 3;
    let user = ward_domain::ids::UserId::new();
    s.set_alert_rules(org.id, user, rules, Harness::meta()).await.unwrap();
    let fail = || s.login_failed("victim".into(), Some((org.id, user)), "wrong_password", false, Harness::meta());
    let raised = || async { s.alerts(org.id, None, false, 50).await.unwrap().len() };

    fail().await.unwrap();
    fail().await.unwrap();
    let mut first = ward_server::alerts::AlertTask::start(s.clone(), fanout.clone()).await.unwrap();
    while first.step().await.unwrap() > 0 {}
    assert_eq!(raised().await, 0);
    drop(first);

    // Restart: the third failure completes a burst that began before it.
    fail().await.unwrap();
    let mut second = ward_server::alerts::AlertTask::start(s.clone(), fanout.clone()).await.unwrap();
    while second.step().await.unwrap() > 0 {}
    assert_eq!(raised().await, 1, "the burst spanning the restart is not lost");
    drop(second);

    // Restart again: a fourth failure falls in the quiet period rebuilt from the replay.
    fail().await.unwrap();
    let mut third = ward_server::alerts::AlertTask::start(s.clone(), fanout.clone()).await.unwrap();
    while third.step().await.unwrap() > 0 {}
    assert_eq!(raised().await, 1, "no alert is raised twice");
    assert_eq!(third.cursor() as u64, s.audit_size().await.unwrap());
}
