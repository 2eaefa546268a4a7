//! Roster reconciliation over real HTTPS and WebSocket: the report, refusals (not an admin,
//! not CSV, a bad roster: audited, nothing changed), and remediation: a terminated person's
//! session stops working at once and their stream closes, their device gets a wipe it can
//! fetch and acknowledge, every step is audited without names, the acting admin is never
//! touched, and a second run changes nothing.

mod common;

use std::time::Duration;

use common::{Frame, Harness, captured, logs};
use reqwest::Method;
use serde_json::{Value, json};
use ward_domain::role::Role;
use ward_store::{Backend, on_both_backends};

on_both_backends!(reconcile_then_remediate_once);

const WAIT: Duration = Duration::from_secs(10);

const REGISTRATION: &str = r#"{"platform":"ios","model":"iPhone16,1","os_version":"18.1","app_version":"1.0.0",
    "ownership":"corporate","supervised":true,"mdm_enrolled":true}"#;

async fn audit(h: &Harness, action: &str) -> Vec<ward_store::AuditRecord> {
    h.store.audit_events(0, 100_000).await.unwrap().into_iter().filter(|e| e.action == action).collect()
}

async fn reconcile_then_remediate_once(backend: Backend) {
    // Every log line of the process, to show the roster's personal data never reaches them.
    captured();
    let Some(h) = Harness::start(backend).await else { return };
    let o = h.org("acme", vec![]).await;
    let admin = h.account(&o, "admin@acme", Role::Admin).await;
    let gone = h.account(&o, "gone@acme", Role::Clinician).await;
    let stranger = h.account(&o, "stranger@acme", Role::Staff).await;
    let stays = h.account(&o, "stays@acme", Role::Nurse).await;
    let sadmin = h.login_stepped_up(&admin).await;
    let sgone = h.login(&gone).await;
    let sstranger = h.login(&stranger).await;
    let sstays = h.login(&stays).await;
    let reg = h
        .raw(Method::PUT, "/api/v1/me/device", Some(&sgone.access), "application/json", REGISTRATION.as_bytes().to_vec())
        .await
        .expect(200);
    let secret = reg.body["wipe_secret"].as_str().unwrap().to_owned();
    let mut stream = h.stream(&sgone).await;
    // The admin is not on this roster: flagged, but never remediated.
    let roster = "Name,employee_id,login,status,termination_date\n\
                  \"Doe, Jane\",E1,stays@acme,active,\n\
                  \"Roe, Rick-Canary-R0ster\",E2,GONE@acme,terminated,2026-01-31\n\
                  \"New, Nora\",E3,new@acme,active,\n";
    let csv = |body: &str| body.as_bytes().to_vec();
    let reconcile = "/api/v1/admin/roster/reconcile";
    let remediate = "/api/v1/admin/roster/remediate?confirm=true";

    h.raw(Method::POST, reconcile, Some(&sstays.access), "text/csv", csv(roster)).await.expect_problem(403, "forbidden");
    h.raw(Method::POST, reconcile, Some(&sadmin.access), "application/json", csv("{}")).await.expect_problem(415, "unsupported_media_type");
    let bad = h
        .raw(
            Method::POST,
            reconcile,
            Some(&sadmin.access),
            "text/csv",
            csv("employee_id,login,status\nE1,x@acme,active\nE1,y@acme,active\n"),
        )
        .await
        .expect_problem(422, "invalid_roster");
    assert_eq!(bad.body["detail"], "line 3: employee_id repeats line 2");
    assert_eq!(audit(&h, "roster.reconcile").await.iter().filter(|e| e.outcome == "failure").count(), 1);
    assert_eq!(audit(&h, "roster.reconcile").await.iter().filter(|e| e.outcome == "denied").count(), 1, "the non-admin's try");

    let r = h.raw(Method::POST, reconcile, Some(&sadmin.access), "text/csv", csv(roster)).await.expect(200);
    let logins = |v: &Value| v.as_array().unwrap().iter().map(|f| f["login"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
    assert_eq!(logins(&r.body["needs_action"]), ["gone@acme", "stranger@acme"], "{}", r.body);
    let g = &r.body["needs_action"][0];
    assert_eq!((g["reason"].as_str(), g["active"].as_bool(), g["live_sessions"].as_u64()), (Some("terminated"), Some(true), Some(1)));
    assert_eq!(g["live_devices"], json!([sgone.device_id]));
    assert_eq!(r.body["needs_action"][1]["reason"], "not_on_roster");
    assert_eq!(r.body["needs_action"][1]["no_wipe_channel"], json!([sstranger.device_id]), "that session never registered");
    assert_eq!(r.body["excluded_self"]["login"], "admin@acme");
    assert_eq!(r.body["missing_accounts"][0]["login"], "new@acme");
    assert_eq!(r.body["missing_accounts"][0]["line"], 4);
    assert!(!r.body.to_string().contains("Canary-R0ster"), "other columns are never echoed");
    h.get("/api/v1/me", &sgone.access).await.expect(200);

    h.raw(Method::POST, "/api/v1/admin/roster/remediate", Some(&sadmin.access), "text/csv", csv(roster))
        .await
        .expect_problem(422, "validation_failed");
    // A roster that lists nobody (a truncated export) would disable everyone: refused, audited.
    let empty = h.raw(Method::POST, remediate, Some(&sadmin.access), "text/csv", csv("employee_id,login,status\n")).await;
    empty.expect_problem(422, "invalid_roster");
    assert_eq!(audit(&h, "roster.remediate").await.iter().filter(|e| e.outcome == "failure").count(), 1);
    h.get("/api/v1/me", &sgone.access).await.expect(200);
    // Remediation disables and wipes: it needs a recent second factor, like a wipe.
    let stale = h.login(&admin).await;
    h.store.test_age_mfa(ward_domain::ids::SessionId(stale.session_id.parse().unwrap()), 301_000).await;
    h.raw(Method::POST, remediate, Some(&stale.access), "text/csv", csv(roster)).await.expect_problem(401, "step_up_required");
    let done = h.raw(Method::POST, remediate, Some(&sadmin.access), "text/csv", csv(roster)).await.expect(200);
    let steps = done.body["remediated"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "{}", done.body);
    assert_eq!(steps[0]["login"], "gone@acme");
    assert_eq!(steps[0]["disabled"], true);
    assert_eq!(steps[0]["sessions_revoked"], 1);
    assert_eq!(steps[0]["wipes_queued"], json!([sgone.device_id]));
    assert_eq!(steps[1]["no_wipe_channel"], json!([sstranger.device_id]));

    // At once: the sessions die, the stream closes, the refresh token is refused.
    h.get("/api/v1/me", &sgone.access).await.expect_problem(403, "account_disabled");
    h.get("/api/v1/me", &sstranger.access).await.expect_problem(403, "account_disabled");
    h.call(Method::POST, "/api/v1/auth/refresh", None, Some(json!({"refresh_token": sgone.refresh, "device_id": sgone.device_id})))
        .await
        .expect_problem(401, "invalid_refresh_token");
    let mut closed = false;
    for _ in 0..5 {
        match stream.next_frame(WAIT).await {
            Frame::Closed(_) => {
                closed = true;
                break;
            }
            Frame::Timeout => break,
            Frame::Json(_) => {}
        }
    }
    assert!(closed, "the terminated person's connection closes");
    h.get("/api/v1/me", &sadmin.access).await.expect(200);
    h.get("/api/v1/me", &sstays.access).await.expect(200);

    // The device fetches its wipe and acknowledges it.
    let cmd = h
        .call(Method::POST, "/api/v1/device-wipe/command", None, Some(json!({"device_id": sgone.device_id, "wipe_secret": secret})))
        .await
        .expect(200);
    let wipe_id = cmd.body["wipe_id"].as_str().unwrap().to_owned();
    h.call(
        Method::POST,
        "/api/v1/device-wipe/ack",
        None,
        Some(json!({"device_id": sgone.device_id, "wipe_secret": secret, "wipe_id": wipe_id})),
    )
    .await
    .expect(204);
    let wipes = h.get("/api/v1/device-wipes", &sadmin.access).await.expect(200);
    let list = wipes.body.as_array().unwrap();
    assert_eq!(list.len(), 2);
    let w = list.iter().find(|w| w["id"] == wipe_id.as_str()).unwrap();
    assert_eq!((w["source"].as_str(), w["reason"].as_str()), (Some("deprovisioned"), Some("deprovisioned: roster")));
    assert!(w["acknowledged_at"].is_string());
    let other = list.iter().find(|w| w["id"] != wipe_id.as_str()).unwrap();
    assert_eq!((other["closed_reason"].as_str(), other["overdue"].as_bool()), (Some("no_wipe_channel"), Some(false)));

    // A second run finds nothing to do and changes nothing.
    let again = h.raw(Method::POST, remediate, Some(&sadmin.access), "text/csv", csv(roster)).await.expect(200);
    assert_eq!(again.body["remediated"], json!([]));
    assert_eq!(again.body["report"]["needs_action"], json!([]));
    assert_eq!(logins(&again.body["report"]["already_disabled"]), ["gone@acme", "stranger@acme"]);
    assert_eq!(h.get("/api/v1/device-wipes", &sadmin.access).await.expect(200).body.as_array().unwrap().len(), 2);

    let remediations: Vec<_> = audit(&h, "roster.remediate").await.into_iter().filter(|e| e.outcome == "success").collect();
    assert_eq!(remediations.len(), 4, "two accounts, two run summaries (the refused empty roster apart)");
    assert_eq!(audit(&h, "device.wipe").await.len(), 2);
    assert_eq!(audit(&h, "admin.user_disable").await.len(), 2);
    assert_eq!(audit(&h, "roster.reconcile").await.iter().filter(|e| e.outcome == "success").count(), 1);
    for e in h.store.audit_events(0, 100_000).await.unwrap() {
        for personal in ["gone@acme", "Roe, Rick", "new@acme", "E2"] {
            assert!(!e.detail.contains(personal), "{} holds roster data: {}", e.action, e.detail);
        }
    }
    let text = logs();
    assert!(text.contains("/api/v1/admin/roster/remediate"), "the requests were logged");
    for personal in ["Canary-R0ster", "new@acme", "Doe, Jane"] {
        assert!(!text.contains(personal), "the logs hold roster data ({personal})");
    }
}
