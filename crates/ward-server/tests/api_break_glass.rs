//! Step-up MFA and break-glass emergency access over real HTTPS and WebSocket.
//!
//! Step-up: sensitive actions answer `401 step_up_required` (with RFC 9470's
//! `WWW-Authenticate` challenge) once the last second-factor check is older than the window,
//! `403 mfa_enrollment_required` without a second factor; `POST /api/v1/me/step-up` with a TOTP
//! code or a recovery code opens
//! the window again; wrong codes count towards the lockout; everything is audited.
//!
//! Break-glass: a request needs a reason and a step-up; compliance officers' streams receive
//! the alert at once; reads in the window succeed and are audited as disclosures, which the
//! patient's accounting lists; after expiry or revocation the reads answer 404; the review
//! queue lists pending uses first; the free-text reason never reaches the audit log or the logs.

mod common;

use std::time::Duration;

use common::{Harness, Session, Stream, captured, logs};
use reqwest::Method;
use serde_json::{Value, json};
use ward_domain::role::Role;
use ward_store::{Backend, on_both_backends};

on_both_backends!(step_up_guards_sensitive_actions, break_glass_grants_read_access_for_a_window);

const WAIT: Duration = Duration::from_secs(10);
/// The free text of the break-glass request: PHI that must stay out of the audit log and logs.
const CANARY: &str = "BGCANARY-ZX41 unresponsive after fall, on warfarin";

/// The TOTP code an authenticator app shows at a given time (api_auth checks the algorithm
/// itself against pyotp).
fn totp_code(secret: &[u8], login: &str, at_secs: u64) -> String {
    ward_server::secrets::totp(secret, login).expect("totp").generate(at_secs).to_string()
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

async fn step_up_guards_sensitive_actions(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let org = h.org("acme", vec![]).await;
    let admin_acc = h.account(&org, "admin@acme", Role::Admin).await;
    let victim = h.account(&org, "victim@acme", Role::Staff).await;
    let admin = h.login(&admin_acc).await;
    let role_path = format!("/api/v1/users/{}", victim.id);

    // No second factor at all: a distinct answer, and nothing changes.
    let r = h.call(Method::PATCH, &role_path, Some(&admin.access), Some(json!({"role": "nurse"}))).await;
    r.expect_problem(403, "mfa_enrollment_required");
    h.post("/api/v1/me/step-up", &admin.access, json!({"code": "123456"})).await.expect_problem(403, "mfa_enrollment_required");

    // Enrolled but not verified in this session (a password-only sign-in): step up first.
    let secret = h.enroll_mfa(&admin_acc).await;
    let r = h.call(Method::PATCH, &role_path, Some(&admin.access), Some(json!({"role": "nurse"}))).await;
    let r = r.expect_problem(401, "step_up_required");
    let challenge = r.headers["www-authenticate"].to_str().unwrap();
    assert!(challenge.starts_with("Bearer ") && challenge.contains("error=\"insufficient_user_authentication\""), "{challenge}");
    assert!(challenge.contains("max_age=300"), "{challenge}");
    assert_eq!(h.store.user(org.id, victim.id).await.unwrap().role, Role::Staff);
    // Audit export and an admin's wipe are guarded the same way.
    h.get("/api/v1/audit/export?format=csv", &admin.access).await.expect_problem(401, "step_up_required");
    let other = h.login(&victim).await;
    let wipe = format!("/api/v1/devices/{}/wipe", other.device_id);
    h.post(&wipe, &admin.access, json!({"reason": "lost"})).await.expect_problem(401, "step_up_required");

    // Bad input: neither or both factors, wrong codes (counted), then a TOTP code from the app.
    h.post("/api/v1/me/step-up", &admin.access, json!({})).await.expect_problem(400, "invalid_body");
    h.post("/api/v1/me/step-up", &admin.access, json!({"code": "1", "recovery_code": "x"})).await.expect_problem(400, "invalid_body");
    h.post("/api/v1/me/step-up", &admin.access, json!({"code": "000000"})).await.expect_problem(401, "invalid_mfa_code");
    h.post("/api/v1/me/step-up", &admin.access, json!({"recovery_code": "nope-nope"})).await.expect_problem(401, "invalid_mfa_code");
    assert_eq!(h.store.throttle(&admin_acc.login).await.unwrap().failures, 2);
    let code = totp_code(&secret, &admin_acc.login, now_secs());
    let ok = h.post("/api/v1/me/step-up", &admin.access, json!({"code": code})).await.expect(200);
    assert!(ok.body["valid_until"].as_str().is_some() && ok.body["mfa_verified_at"].as_str().is_some(), "{}", ok.body);
    assert_eq!(h.store.throttle(&admin_acc.login).await.unwrap().failures, 0, "a success clears the count");
    // The same code again is a replay.
    h.post("/api/v1/me/step-up", &admin.access, json!({"code": code})).await.expect_problem(401, "invalid_mfa_code");
    h.call(Method::PATCH, &role_path, Some(&admin.access), Some(json!({"role": "nurse"}))).await.expect(200);
    assert_eq!(h.store.user(org.id, victim.id).await.unwrap().role, Role::Nurse);

    // Older than the window: refused again until the next step-up (a recovery code here).
    let session = ward_domain::ids::SessionId(admin.session_id.parse().unwrap());
    h.store.test_age_mfa(session, 301_000).await;
    h.call(Method::PATCH, &role_path, Some(&admin.access), Some(json!({"role": "staff"}))).await.expect_problem(401, "step_up_required");
    h.step_up(&admin).await;
    h.call(Method::PATCH, &role_path, Some(&admin.access), Some(json!({"role": "staff"}))).await.expect(200);

    // A user reporting their own device lost needs no step-up (their phone may be gone with
    // their authenticator).
    let spare = h.login(&victim).await;
    h.post(&format!("/api/v1/me/devices/{}/wipe", spare.device_id), &other.access, json!({"reason": "lost"})).await.expect(201);

    // Replacing the recovery codes takes a current code too: a guess there counts the same.
    let before = h.store.throttle(&admin_acc.login).await.unwrap().failures;
    h.post("/api/v1/me/mfa/recovery-codes", &admin.access, json!({"code": "000000"})).await.expect_problem(401, "invalid_mfa_code");
    assert_eq!(h.store.throttle(&admin_acc.login).await.unwrap().failures, before + 1);

    // Lockout applies to step-up guessing as to sign-in.
    for _ in 0..5 {
        h.post("/api/v1/me/step-up", &admin.access, json!({"code": "000000"})).await;
    }
    let locked = h.post("/api/v1/me/step-up", &admin.access, json!({"code": totp_code(&secret, &admin_acc.login, now_secs() + 30)})).await;
    let locked = locked.expect_problem(429, "login_locked");
    assert!(locked.headers.contains_key("retry-after"));
    // ... and to every other endpoint that takes a current code, even with the right one.
    let right = totp_code(&secret, &admin_acc.login, now_secs() + 60);
    h.post("/api/v1/me/mfa/recovery-codes", &admin.access, json!({"code": right})).await.expect_problem(429, "login_locked");

    // The audit trail: refusals name the action, attempts their method and outcome.
    let events = h.store.audit_events(0, 100_000).await.unwrap();
    let refusals: Vec<_> = events.iter().filter(|e| e.action == "auth.step_up_required").collect();
    for (what, why) in [("user_role", "not_enrolled"), ("user_role", "stale"), ("audit_export", "stale"), ("device_wipe", "stale")] {
        assert!(
            refusals.iter().any(|e| e.detail.contains(&format!("\"for\":\"{what}\"")) && e.detail.contains(why) && e.outcome == "denied"),
            "no refusal of {what} ({why}): {refusals:?}"
        );
    }
    let ups: Vec<_> = events.iter().filter(|e| e.action == "auth.step_up").collect();
    assert!(ups.iter().any(|e| e.outcome == "success" && e.detail.contains("\"method\":\"totp\"")));
    assert!(ups.iter().any(|e| e.outcome == "success" && e.detail.contains("\"method\":\"recovery_code\"")));
    assert!(ups.iter().filter(|e| e.outcome == "failure").count() >= 4);
    assert!(ups.iter().any(|e| e.detail.contains("\"reason\":\"locked\"")));
}

/// The next alert frame of this rule.
async fn next_alert(st: &mut Stream, rule: &str) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + WAIT;
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

async fn request(h: &Harness, s: &Session, patient: &str) -> common::Reply {
    h.post("/api/v1/break-glass", &s.access, json!({"patient_id": patient, "reason_category": "patient_unresponsive", "reason": CANARY}))
        .await
}

async fn break_glass_grants_read_access_for_a_window(backend: Backend) {
    captured();
    let Some(h) = Harness::start(backend).await else { return };
    let org = h.org("acme", vec![]).await;
    let owner_acc = h.account(&org, "owner@acme", Role::Clinician).await;
    let er_acc = h.account(&org, "er@acme", Role::Clinician).await;
    let co_acc = h.account(&org, "co@acme", Role::ComplianceOfficer).await;
    let staff_acc = h.account(&org, "staff@acme", Role::Staff).await;
    let (owner, er, co, staff) = (h.login(&owner_acc).await, h.login(&er_acc).await, h.login(&co_acc).await, h.login(&staff_acc).await);
    let p = h
        .post("/api/v1/patients", &owner.access, json!({"mrn": "BG-1", "display_name": "Pat Doe", "care_team": [owner_acc.id]}))
        .await
        .expect(201)
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let conv = h
        .post("/api/v1/conversations", &owner.access, json!({"kind": "patient", "title": "Bed 4", "patient_id": p, "members": []}))
        .await
        .expect(201)
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    h.send(&owner, &conv, "m1", "potassium 6.1").await.expect(201);
    let group = h.conversation(&owner, "group", &[&co_acc]).await;
    // Not a member: the ordinary routes say not found.
    h.get(&format!("/api/v1/conversations/{conv}/messages"), &er.access).await.expect_problem(404, "not_found");
    let mut co_stream = h.stream(&co).await;

    // Refusals: a role that may not; no reason; no step-up.
    request(&h, &staff, &p).await.expect_problem(403, "forbidden");
    let no_reason = json!({"patient_id": p, "reason_category": "other", "reason": "   "});
    h.post("/api/v1/break-glass", &er.access, no_reason).await.expect_problem(422, "validation_failed");
    let missing = json!({"patient_id": p, "reason_category": "other"});
    h.post("/api/v1/break-glass", &er.access, missing).await.expect_problem(400, "invalid_body");
    request(&h, &er, &p).await.expect_problem(403, "mfa_enrollment_required");
    h.enroll_mfa(&er_acc).await;
    request(&h, &er, &p).await.expect_problem(401, "step_up_required");
    assert!(h.get("/api/v1/break-glass", &er.access).await.expect(200).body.as_array().unwrap().is_empty());

    // Granted after the step-up; the compliance officer is alerted at once.
    h.step_up(&er).await;
    request(&h, &er, &uuid::Uuid::new_v4().to_string()).await.expect_problem(404, "not_found");
    let g = request(&h, &er, &p).await.expect(201).body;
    let grant = g["id"].as_str().unwrap().to_owned();
    assert_eq!(g["active"], true);
    assert_eq!(g["review_status"], "pending");
    assert!(g.get("reason").is_none(), "the requester's view does not echo the reason: {g}");
    let frame = next_alert(&mut co_stream, "break_glass_access").await.expect("the compliance officer is alerted");
    assert_eq!(frame["alert"]["subject_user_id"], er_acc.id.to_string(), "{frame}");
    assert_eq!(frame["alert"]["subject_patient_id"], p, "{frame}");
    assert!(!frame.to_string().contains("BGCANARY"));
    let mine = h.get("/api/v1/break-glass", &er.access).await.expect(200).body;
    assert_eq!(mine.as_array().unwrap().len(), 1);

    // Reads in the window: the patient's conversation only, audited with the grant.
    let base = format!("/api/v1/break-glass/{grant}/conversations");
    let list = h.get(&base, &er.access).await.expect(200).body;
    let ids: Vec<&str> = list.as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![conv.as_str()]);
    let msgs = h.get(&format!("{base}/{conv}/messages"), &er.access).await.expect(200).body;
    assert_eq!(msgs["items"][0]["body"], "potassium 6.1");
    h.get(&format!("{base}/{group}/messages"), &er.access).await.expect_problem(404, "not_found");
    // Someone else cannot use the grant.
    h.get(&base, &owner.access).await.expect_problem(404, "not_found");
    // Read-only: the ordinary routes still refuse.
    h.send(&er, &conv, "m2", "intrusion").await.expect_problem(404, "not_found");

    let events = h.store.audit_events(0, 100_000).await.unwrap();
    let reads: Vec<_> = events.iter().filter(|e| e.action == "break_glass.read" && e.outcome == "success").collect();
    assert_eq!(reads.len(), 2, "{reads:?}");
    for e in &reads {
        assert_eq!(e.target_id.as_deref(), Some(grant.as_str()));
        assert_eq!(e.patient_id.map(|u| u.to_string()), Some(p.clone()));
        assert!(e.detail.contains("\"purpose\":\"break_glass\"") && e.detail.contains(&er_acc.id.to_string()), "{}", e.detail);
    }

    // The accounting of disclosures lists both reads.
    h.step_up(&co).await;
    let acc = h.get(&format!("/api/v1/patients/{p}/disclosures"), &co.access).await.expect(200).body;
    let bg: Vec<&Value> = acc["items"].as_array().unwrap().iter().filter(|i| i["action"] == "break_glass.read").collect();
    assert_eq!(bg.len(), 2, "{acc}");
    assert!(bg.iter().all(|i| i["recipient_id"] == er_acc.id.to_string() && i["purpose"] == "break_glass"));
    assert!(bg[0]["purpose_statement"].as_str().unwrap().contains("break-glass"));

    // After expiry (injected): as for any non-member, and the attempt is audited.
    h.store.test_expire_break_glass(grant.parse().unwrap()).await;
    h.get(&base, &er.access).await.expect_problem(404, "not_found");
    h.get(&format!("{base}/{conv}/messages"), &er.access).await.expect_problem(404, "not_found");
    assert!(h.get("/api/v1/break-glass", &er.access).await.expect(200).body.as_array().unwrap().is_empty());
    let denied = h.store.audit_events(0, 100_000).await.unwrap();
    assert!(denied.iter().any(|e| e.action == "break_glass.read" && e.outcome == "denied" && e.detail.contains("expired")));
    // The refused requests are evidence too: the wrong role, the blank reason, the step-ups.
    let refused = |action: &str, outcome: &str, why: &str| {
        denied.iter().any(|e| e.action == action && e.outcome == outcome && e.detail.contains(&format!("\"{why}\"")))
    };
    assert!(refused("break_glass.request", "denied", "role"));
    assert!(refused("break_glass.request", "failure", "invalid_reason"));
    assert!(refused("auth.step_up_required", "denied", "not_enrolled") && refused("auth.step_up_required", "denied", "stale"));

    // A second grant, ended early by the compliance officer.
    h.step_up(&er).await;
    let second = request(&h, &er, &p).await.expect(201).body["id"].as_str().unwrap().to_owned();
    next_alert(&mut co_stream, "break_glass_access").await.expect("every grant alerts");
    let ended = h.post(&format!("/api/v1/break-glass/{second}/revoke"), &co.access, json!({})).await.expect(200).body;
    assert_eq!(ended["active"], false);
    h.get(&format!("/api/v1/break-glass/{second}/conversations"), &er.access).await.expect_problem(404, "not_found");
    h.post(&format!("/api/v1/break-glass/{second}/revoke"), &co.access, json!({})).await.expect_problem(409, "invalid_state");

    // The review queue: pending first, with the reason for the reviewer; one verdict each.
    h.get("/api/v1/break-glass/reviews", &er.access).await.expect_problem(403, "forbidden");
    let q = h.get("/api/v1/break-glass/reviews", &co.access).await.expect(200).body;
    let q = q.as_array().unwrap();
    assert_eq!(q.len(), 2);
    assert!(q.iter().all(|g| g["review_status"] == "pending" && g["reason"] == CANARY));
    let review = format!("/api/v1/break-glass/{grant}/review");
    h.post(&review, &er.access, json!({"status": "justified"})).await.expect_problem(403, "forbidden");
    h.post(&format!("/api/v1/break-glass/{grant}/revoke"), &er.access, json!({})).await.expect_problem(403, "forbidden");
    let refusals = h.store.audit_events(0, 100_000).await.unwrap();
    assert!(refusals.iter().any(|e| e.action == "break_glass.review" && e.outcome == "denied"));
    assert!(refusals.iter().any(|e| e.action == "break_glass.revoke" && e.outcome == "denied"));
    h.post(&review, &co.access, json!({"status": "pending"})).await.expect_problem(422, "validation_failed");
    h.post(&review, &co.access, json!({"status": "maybe"})).await.expect_problem(400, "invalid_body");
    let done = h.post(&review, &co.access, json!({"status": "justified", "note": "Matches the ED record"})).await.expect(200).body;
    assert_eq!(done["review_status"], "justified");
    assert_eq!(done["reviewed_by"], co_acc.id.to_string());
    h.post(&review, &co.access, json!({"status": "unjustified"})).await.expect_problem(409, "invalid_state");
    let q = h.get("/api/v1/break-glass/reviews", &co.access).await.expect(200).body;
    let order: Vec<&str> = q.as_array().unwrap().iter().map(|g| g["id"].as_str().unwrap()).collect();
    assert_eq!(order, vec![second.as_str(), grant.as_str()], "pending first");
    let pending = h.get("/api/v1/break-glass/reviews?status=pending", &co.access).await.expect(200).body;
    assert_eq!(pending.as_array().unwrap().len(), 1);

    // PHI canary: the reason is in no audit event, no log line, no alert.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for e in h.store.audit_events(0, 100_000).await.unwrap() {
        let row = serde_json::to_string(&e).unwrap();
        assert!(!row.contains("BGCANARY") && !row.contains("warfarin") && !row.contains("ED record"), "PHI in the audit log: {row}");
    }
    let text = logs();
    assert!(!text.contains("BGCANARY") && !text.contains("warfarin"), "the reason reached the logs");
    let alerts = h.get("/api/v1/audit/alerts", &co.access).await.expect(200).body;
    assert!(!alerts.to_string().contains("BGCANARY"));
    assert!(alerts.to_string().contains("break_glass_access"), "{alerts}");
}
