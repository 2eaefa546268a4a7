//! Sign-in and sessions over real HTTPS: no login enumeration, lockout with backoff, refresh
//! rotation and reuse detection, device binding, idle logoff, one-time passwords, and TOTP
//! checked against an independent implementation (pyotp).

mod common;

use ward_store::{on_both_backends, on_sqlite};

use std::time::Duration;

use common::{Account, Harness, PASSWORD};
use reqwest::Method;
use serde_json::{Value, json};
use ward_domain::role::Role;
use ward_store::Backend;

on_both_backends!(refresh_rotates_and_reuse_revokes_the_session);
on_sqlite!(
    wrong_names_and_wrong_passwords_look_the_same_and_lock_out,
    idle_sessions_end_server_side,
    one_time_passwords_must_be_changed_first,
    totp_enrolment_and_sign_in_match_pyotp,
    sessions_are_listed_and_bound_to_their_device,
    a_one_time_password_change_leads_to_required_mfa_enrolment,
    password_spraying_from_one_address_is_limited,
);

fn login_body(login: &str, password: &str) -> Value {
    json!({"login": login, "password": password, "device": {"name": "phone", "platform": "ios"}})
}

async fn attempt(h: &Harness, login: &str, password: &str) -> common::Reply {
    h.call(Method::POST, "/api/v1/auth/login", None, Some(login_body(login, password))).await
}

async fn wrong_names_and_wrong_passwords_look_the_same_and_lock_out(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let org = h.org("acme", vec![]).await;
    let a = h.account(&org, "a@acme", Role::Clinician).await;
    let wrong_password = attempt(&h, "a@acme", "not the password").await.expect_problem(401, "invalid_credentials");
    let unknown_name = attempt(&h, "nobody@acme", "not the password").await.expect_problem(401, "invalid_credentials");
    assert_eq!(wrong_password.body, unknown_name.body, "the answer never reveals whether a login exists");
    // Five failures lock the name, known or not, and the lock answers the same way for both.
    for _ in 0..4 {
        attempt(&h, "a@acme", "not the password").await.expect_problem(401, "invalid_credentials");
        attempt(&h, "nobody@acme", "not the password").await.expect_problem(401, "invalid_credentials");
    }
    let known = attempt(&h, "a@acme", PASSWORD).await.expect_problem(429, "login_locked");
    let unknown = attempt(&h, "nobody@acme", PASSWORD).await.expect_problem(429, "login_locked");
    assert_eq!(known.body, unknown.body);
    assert_eq!(known.headers["retry-after"], "30");
    // Failures and the lock are audited; the password never is.
    let audit = h.store.audit_events(0, 100_000).await.unwrap();
    let failures = audit.iter().filter(|e| e.action == "auth.login" && e.outcome == "failure").count();
    assert_eq!(failures, 12);
    assert!(audit.iter().any(|e| e.detail.contains("\"locked\"")));
    assert!(audit.iter().all(|e| !e.detail.contains("not the password")));
    // Another account is unaffected.
    let b = h.account(&org, "b@acme", Role::Nurse).await;
    h.login(&b).await;
    let _ = a;
}

/// One password tried on many names (each name well below its own lockout) is stopped by the
/// per-address budget, with one answer for every name, known or not, and a correct password.
async fn password_spraying_from_one_address_is_limited(backend: Backend) {
    let Some(h) = Harness::start_with(backend, |c| c.sessions.failed_logins_per_minute_per_address = 6).await else { return };
    let org = h.org("acme", vec![]).await;
    let a = h.account(&org, "a@acme", Role::Clinician).await;
    for i in 0..6 {
        attempt(&h, &format!("user{i}@acme"), "Winter2026!").await.expect_problem(401, "invalid_credentials");
    }
    let sprayed = attempt(&h, "user6@acme", "Winter2026!").await.expect_problem(429, "rate_limited");
    let known = attempt(&h, "a@acme", PASSWORD).await.expect_problem(429, "rate_limited");
    assert_eq!(sprayed.body, known.body, "the limit answers alike for every name");
    let wait: u64 = known.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    let audit = h.store.audit_events(0, 100_000).await.unwrap();
    assert!(audit.iter().any(|e| e.action == "auth.login" && e.detail.contains("address_limited")), "the refusal is audited");
    assert!(audit.iter().all(|e| !e.detail.contains("Winter2026")), "passwords are never audited");
    // Successful sign-ins never spend the budget.
    let Some(h2) = Harness::start_with(Backend::Sqlite, |c| c.sessions.failed_logins_per_minute_per_address = 2).await else { return };
    let org2 = h2.org("beta", vec![]).await;
    let b = h2.account(&org2, "b@beta", Role::Nurse).await;
    for _ in 0..4 {
        h2.login(&b).await;
    }
    let _ = a;
}

async fn refresh_rotates_and_reuse_revokes_the_session(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let org = h.org("acme", vec![]).await;
    let a = h.account(&org, "a@acme", Role::Clinician).await;
    let s = h.login(&a).await;
    let refresh = |token: &str, device: &str| json!({"refresh_token": token, "device_id": device});
    let r1 = h.call(Method::POST, "/api/v1/auth/refresh", None, Some(refresh(&s.refresh, &s.device_id))).await.expect(200);
    let (access2, refresh2) = (r1.body["access_token"].as_str().unwrap().to_owned(), r1.body["refresh_token"].as_str().unwrap().to_owned());
    assert_ne!(refresh2, s.refresh);
    assert_eq!(r1.body["session_id"], s.session_id.as_str());
    h.get("/api/v1/me", &access2).await.expect(200);
    h.get("/api/v1/me", &s.access).await.expect_problem(401, "invalid_token");
    // Presenting the used token again is theft: the whole family dies.
    h.call(Method::POST, "/api/v1/auth/refresh", None, Some(refresh(&s.refresh, &s.device_id)))
        .await
        .expect_problem(401, "invalid_refresh_token");
    h.get("/api/v1/me", &access2).await.expect_problem(401, "session_ended");
    h.call(Method::POST, "/api/v1/auth/refresh", None, Some(refresh(&refresh2, &s.device_id)))
        .await
        .expect_problem(401, "invalid_refresh_token");
    // A refresh token from another device kills its session too.
    let s2 = h.login(&a).await;
    let other_device = ward_domain::ids::DeviceId::new().to_string();
    h.call(Method::POST, "/api/v1/auth/refresh", None, Some(refresh(&s2.refresh, &other_device)))
        .await
        .expect_problem(401, "invalid_refresh_token");
    h.get("/api/v1/me", &s2.access).await.expect_problem(401, "session_ended");
    // An expired access token asks for a refresh, which works.
    let s3 = h.login(&a).await;
    h.store.test_expire_access_tokens(s3.session_id.parse().unwrap()).await;
    h.get("/api/v1/me", &s3.access).await.expect_problem(401, "token_expired");
    h.call(Method::POST, "/api/v1/auth/refresh", None, Some(refresh(&s3.refresh, &s3.device_id))).await.expect(200);
    // Logout ends the session.
    let s4 = h.login(&a).await;
    h.call(Method::POST, "/api/v1/auth/logout", Some(&s4.access), None).await.expect(204);
    h.get("/api/v1/me", &s4.access).await.expect_problem(401, "session_ended");
    let audit = h.store.audit_events(0, 100_000).await.unwrap();
    assert!(audit.iter().any(|e| e.action == "auth.refresh_reuse"));
    assert!(audit.iter().any(|e| e.action == "auth.logout"));
}

async fn idle_sessions_end_server_side(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let org = h.org("acme", vec![]).await;
    let a = h.account(&org, "a@acme", Role::Clinician).await;
    let s = h.login(&a).await;
    let mut stream = h.stream(&s).await;
    h.store.test_age_session(s.session_id.parse().unwrap(), 901_000).await;
    let r = h.get("/api/v1/me", &s.access).await.expect_problem(401, "session_ended");
    assert!(r.body["detail"].as_str().unwrap().contains("idle"));
    // The open stream closes too, and the refresh token no longer works.
    assert_eq!(stream.next_json(Duration::from_secs(2)).await.unwrap()["type"], "session_ended");
    h.call(Method::POST, "/api/v1/auth/refresh", None, Some(json!({"refresh_token": s.refresh, "device_id": s.device_id})))
        .await
        .expect_problem(401, "invalid_refresh_token");
    let audit = h.store.audit_events(0, 100_000).await.unwrap();
    assert!(audit.iter().any(|e| e.action == "session.idle_timeout"));
    // The organisation's policy sets the timeout.
    let admin = h.account(&org, "admin@acme", Role::Admin).await;
    let sa = h.login(&admin).await;
    let r =
        h.call(Method::PUT, "/api/v1/org/policy", Some(&sa.access), Some(json!({"mfa_required_roles": [], "idle_timeout_secs": 30}))).await;
    r.expect_problem(422, "validation_failed");
    let r = h
        .call(Method::PUT, "/api/v1/org/policy", Some(&sa.access), Some(json!({"mfa_required_roles": ["admin"], "idle_timeout_secs": 300})))
        .await;
    assert_eq!(r.expect(200).body["idle_timeout_secs"], 300);
}

async fn one_time_passwords_must_be_changed_first(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let org = h.org("acme", vec![]).await;
    let admin = h.account(&org, "admin@acme", Role::Admin).await;
    let sa = h.login(&admin).await;
    let created = h
        .post("/api/v1/users", &sa.access, json!({"login": "New.Nurse@Acme", "display_name": "New Nurse", "role": "nurse"}))
        .await
        .expect(201);
    assert_eq!(created.body["user"]["login"], "new.nurse@acme");
    let otp = created.body["one_time_password"].as_str().unwrap().to_owned();
    h.post("/api/v1/users", &sa.access, json!({"login": "new.nurse@acme", "display_name": "Again", "role": "nurse"}))
        .await
        .expect_problem(409, "conflict");
    let r = attempt(&h, "new.nurse@acme", &otp).await.expect(200);
    let access = r.body["tokens"]["access_token"].as_str().unwrap().to_owned();
    assert_eq!(r.body["tokens"]["restriction"], "password_change");
    h.get("/api/v1/conversations", &access).await.expect_problem(403, "password_change_required");
    assert_eq!(h.get("/api/v1/me", &access).await.expect(200).body["restriction"], "password_change");
    let change = |current: &str, new: &str| json!({"current_password": current, "new_password": new});
    h.post("/api/v1/me/password", &access, change(&otp, "short")).await.expect_problem(422, "validation_failed");
    h.post("/api/v1/me/password", &access, change("wrong one-time pw", "a long new passphrase"))
        .await
        .expect_problem(401, "invalid_credentials");
    h.post("/api/v1/me/password", &access, change(&otp, "a long new passphrase")).await.expect(204);
    h.get("/api/v1/conversations", &access).await.expect(200);
    attempt(&h, "new.nurse@acme", &otp).await.expect_problem(401, "invalid_credentials");
    attempt(&h, "new.nurse@acme", "a long new passphrase").await.expect(200);
    // An admin reset issues a new one-time password and ends the user's sessions.
    let id = created.body["user"]["id"].as_str().unwrap();
    let reset = h.post(&format!("/api/v1/users/{id}/password-reset"), &sa.access, json!({})).await.expect(200);
    h.get("/api/v1/me", &access).await.expect_problem(401, "session_ended");
    let r = attempt(&h, "new.nurse@acme", reset.body["one_time_password"].as_str().unwrap()).await.expect(200);
    assert_eq!(r.body["tokens"]["restriction"], "password_change");
}

/// The independent TOTP implementation: pyotp in the test venv (`scripts/test` installs it and
/// sets WARD_TEST_PYTHON). In CI its absence is a failure; elsewhere the test is skipped.
fn pyotp(secret: &str) -> Option<String> {
    let python = std::env::var("WARD_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = std::process::Command::new(&python)
        .args(["-c", "import sys, pyotp; print(pyotp.TOTP(sys.argv[1]).now())", secret])
        .output()
        .ok()
        .filter(|o| o.status.success());
    match out {
        Some(o) => Some(String::from_utf8(o.stdout).unwrap().trim().to_owned()),
        None => {
            assert!(!ward_store::testing::pg_required(), "pyotp is required in CI (run scripts/test, which installs it)");
            eprintln!("SKIPPED: pyotp is not importable by {python} (scripts/test installs it)");
            None
        }
    }
}

/// Waits for the next 30-second TOTP step so a fresh code is not a replay of the last one.
async fn next_step() {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    tokio::time::sleep(Duration::from_millis(30_000 - now % 30_000 + 50)).await;
}

async fn totp_enrolment_and_sign_in_match_pyotp(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    if pyotp("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP").is_none() {
        return;
    }
    let org = h.org("acme", vec![Role::Admin]).await;
    let admin: Account = h.account(&org, "admin@acme", Role::Admin).await;
    // Policy requires MFA for admins: the first sign-in may only enrol.
    let r = attempt(&h, "admin@acme", PASSWORD).await.expect(200);
    assert_eq!(r.body["tokens"]["restriction"], "mfa_enrollment");
    let access = r.body["tokens"]["access_token"].as_str().unwrap().to_owned();
    h.get("/api/v1/users", &access).await.expect_problem(403, "mfa_enrollment_required");
    h.post("/api/v1/me/mfa/totp", &access, json!({"password": "wrong password!"})).await.expect_problem(401, "invalid_credentials");
    let begun = h.post("/api/v1/me/mfa/totp", &access, json!({"password": PASSWORD})).await.expect(200);
    let secret = begun.body["secret"].as_str().unwrap().to_owned();
    assert!(begun.body["otpauth_uri"].as_str().unwrap().starts_with("otpauth://totp/Ward:admin%40acme?"));
    h.post("/api/v1/me/mfa/totp/confirm", &access, json!({"code": "000000"})).await.expect_problem(401, "invalid_mfa_code");
    let code = pyotp(&secret).unwrap();
    let confirmed = h.post("/api/v1/me/mfa/totp/confirm", &access, json!({"code": code})).await.expect(200);
    let recovery: Vec<String> = serde_json::from_value(confirmed.body["recovery_codes"].clone()).unwrap();
    assert_eq!(recovery.len(), 10);
    h.get("/api/v1/users", &access).await.expect(200);

    // Next sign-in: password, then a code computed by pyotp. The same code never works twice.
    next_step().await;
    let challenge = attempt(&h, "admin@acme", PASSWORD).await.expect(200);
    assert_eq!(challenge.body["status"], "mfa_required");
    let token = challenge.body["mfa_token"].as_str().unwrap().to_owned();
    h.call(Method::POST, "/api/v1/auth/mfa", None, Some(json!({"mfa_token": token, "code": "123456"})))
        .await
        .expect_problem(401, "invalid_mfa_code");
    let code = pyotp(&secret).unwrap();
    let ok = h.call(Method::POST, "/api/v1/auth/mfa", None, Some(json!({"mfa_token": token, "code": code}))).await.expect(200);
    assert!(ok.body["restriction"].is_null());
    let again = attempt(&h, "admin@acme", PASSWORD).await.expect(200);
    let token2 = again.body["mfa_token"].as_str().unwrap().to_owned();
    h.call(Method::POST, "/api/v1/auth/mfa", None, Some(json!({"mfa_token": token2, "code": code})))
        .await
        .expect_problem(401, "invalid_mfa_code");
    // A recovery code works once.
    h.call(Method::POST, "/api/v1/auth/mfa", None, Some(json!({"mfa_token": token2, "recovery_code": recovery[0]}))).await.expect(200);
    let again = attempt(&h, "admin@acme", PASSWORD).await.expect(200);
    let token3 = again.body["mfa_token"].as_str().unwrap().to_owned();
    h.call(Method::POST, "/api/v1/auth/mfa", None, Some(json!({"mfa_token": token3, "recovery_code": recovery[0]})))
        .await
        .expect_problem(401, "invalid_mfa_code");
    // Policy forbids removing the second factor for this role.
    let access = ok.body["access_token"].as_str().unwrap();
    h.call(Method::DELETE, "/api/v1/me/mfa/totp", Some(access), Some(json!({"code": "000000"}))).await.expect_problem(403, "forbidden");
    let audit = h.store.audit_events(0, 100_000).await.unwrap();
    for action in ["mfa.totp_enroll", "mfa.totp_confirm", "auth.mfa"] {
        assert!(audit.iter().any(|e| e.action == action), "{action} is audited");
    }
    let _ = admin;
}

async fn sessions_are_listed_and_bound_to_their_device(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let org = h.org("acme", vec![]).await;
    let a = h.account(&org, "a@acme", Role::Clinician).await;
    let s1 = h.login(&a).await;
    // Signing in again from the same device reuses its registration.
    let r = h
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"login": "a@acme", "password": PASSWORD, "device": {"id": s1.device_id, "name": "phone", "platform": "ios"}})),
        )
        .await
        .expect(200);
    assert_eq!(r.body["tokens"]["device_id"], s1.device_id.as_str());
    // Someone else's device id is refused.
    let b = h.account(&org, "b@acme", Role::Nurse).await;
    h.call(
        Method::POST,
        "/api/v1/auth/login",
        None,
        Some(json!({"login": "b@acme", "password": PASSWORD, "device": {"id": s1.device_id, "name": "x", "platform": "ios"}})),
    )
    .await
    .expect_problem(422, "validation_failed");
    let list = h.get("/api/v1/me/sessions", &s1.access).await.expect(200);
    let list = list.body.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list.iter().filter(|s| s["current"] == true).count(), 1);
    assert_eq!(list[0]["source_ip"], "127.0.0.1");
    // Another user's session cannot be revoked by id.
    let sb = h.login(&b).await;
    h.call(Method::DELETE, &format!("/api/v1/me/sessions/{}", sb.session_id), Some(&s1.access), None)
        .await
        .expect_problem(404, "not_found");
    h.get("/api/v1/me", &sb.access).await.expect(200);
}

async fn a_one_time_password_change_leads_to_required_mfa_enrolment(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let org = h.org("acme", vec![Role::ComplianceOfficer]).await;
    let (user, otp) =
        ward_server::provision::add_user(&h.store, &org, "co@acme", "Compliance", Role::ComplianceOfficer, None).await.unwrap();
    let r = attempt(&h, "co@acme", &otp).await.expect(200);
    assert_eq!(r.body["tokens"]["restriction"], "password_change");
    let access = r.body["tokens"]["access_token"].as_str().unwrap().to_owned();
    let refresh = json!({"refresh_token": r.body["tokens"]["refresh_token"], "device_id": r.body["tokens"]["device_id"]});
    h.post("/api/v1/me/mfa/totp", &access, json!({"password": otp})).await.expect_problem(403, "password_change_required");
    h.post("/api/v1/me/password", &access, json!({"current_password": otp, "new_password": "a long new passphrase"})).await.expect(204);
    // The password step is done, but policy still requires a second factor for this role.
    assert_eq!(h.get("/api/v1/me", &access).await.expect(200).body["restriction"], "mfa_enrollment");
    h.get("/api/v1/conversations", &access).await.expect_problem(403, "mfa_enrollment_required");
    let rotated = h.call(Method::POST, "/api/v1/auth/refresh", None, Some(refresh)).await.expect(200);
    assert_eq!(rotated.body["restriction"], "mfa_enrollment");
    let _ = user;
}
