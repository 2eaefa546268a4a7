//! Device trust over real HTTPS and WebSocket: registration and posture reports (refusals
//! audited, nothing stored), message content withheld from a blocked device on every read
//! path, the selective wipe (sessions end at once, old credentials never work again, the wipe
//! secret opens only the wipe endpoints, replayed acknowledgements refused), and the
//! policy, report and profile endpoints.

mod common;

use std::time::Duration;

use common::{Frame, Harness, Session};
use reqwest::Method;
use serde_json::{Value, json};
use ward_domain::role::Role;
use ward_store::{Backend, on_both_backends, on_sqlite};

on_both_backends!(register_report_and_withhold_phi, wipe_revokes_and_is_acknowledged_once);
on_sqlite!(
    policy_reports_spot_checks_and_profile,
    disable_wipes_devices_and_the_wipe_channel_is_rate_limited,
    signed_profile_with_the_configured_certificate
);

const WAIT: Duration = Duration::from_secs(10);

const REGISTRATION: &str = r#"{"platform":"ios","model":"iPhone16,1","os_version":"18.1","app_version":"1.0.0",
    "ownership":"byod","supervised":false,"mdm_enrolled":false}"#;

fn good() -> Value {
    json!({"os_version":"18.1","passcode_present":true,"passcode_length":6,"passcode_alphanumeric":true,
        "erase_after_failed_attempts":10,"auto_lock_minutes":5,"siri_while_locked":false,"encrypted_backups":true,
        "jailbreak_detected":false,"app_attestation":"passed"})
}

async fn register(h: &Harness, s: &Session) -> String {
    let r =
        h.raw(Method::PUT, "/api/v1/me/device", Some(&s.access), "application/json", REGISTRATION.as_bytes().to_vec()).await.expect(200);
    assert_eq!(r.body["device"]["id"], s.device_id.as_str());
    let secret = r.body["wipe_secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("wdw_"));
    // Registering again (an app update) keeps the secret: a stolen session token cannot
    // replace it and so take over the device's wipe.
    let again =
        h.raw(Method::PUT, "/api/v1/me/device", Some(&s.access), "application/json", REGISTRATION.as_bytes().to_vec()).await.expect(200);
    assert!(again.body["wipe_secret"].is_null(), "{}", again.body);
    secret
}

async fn report(h: &Harness, s: &Session, device: &str, body: &Value) -> common::Reply {
    h.call(Method::POST, &format!("/api/v1/me/devices/{device}/posture"), Some(&s.access), Some(body.clone())).await
}

async fn audit_count(h: &Harness, action: &str, outcome: &str) -> usize {
    h.store.audit_events(0, 100_000).await.unwrap().iter().filter(|e| e.action == action && e.outcome == outcome).count()
}

async fn register_report_and_withhold_phi(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let o = h.org("acme", vec![]).await;
    let a = h.account(&o, "a@acme", Role::Clinician).await;
    let b = h.account(&o, "b@acme", Role::Nurse).await;
    let admin = h.account(&o, "admin@acme", Role::Admin).await;
    let sa = h.login(&a).await;
    let sb = h.login(&b).await;
    let sadmin = h.login(&admin).await;
    register(&h, &sa).await;
    register(&h, &sb).await;

    // Unknown keys and impossible values: 400, audited, nothing stored.
    h.raw(Method::PUT, "/api/v1/me/device", Some(&sa.access), "application/json", br#"{"platform":"ios","colour":"red"}"#.to_vec())
        .await
        .expect_problem(400, "invalid_device_report");
    let mut unknown = good();
    unknown["bluetooth"] = json!(true);
    report(&h, &sa, &sa.device_id, &unknown).await.expect_problem(400, "invalid_device_report");
    let mut impossible = good();
    impossible["passcode_length"] = json!(200);
    let r = report(&h, &sa, &sa.device_id, &impossible).await.expect_problem(400, "invalid_device_report");
    assert!(r.body["detail"].as_str().unwrap().contains("passcode_length"), "{}", r.body);
    assert!(!r.body.to_string().contains("200"), "the value is not echoed");
    // Another user's device, another tenant's or a made-up one: 404, audited.
    report(&h, &sa, &sb.device_id, &good()).await.expect_problem(404, "not_found");
    report(&h, &sa, &uuid::Uuid::new_v4().to_string(), &good()).await.expect_problem(404, "not_found");
    assert_eq!(audit_count(&h, "device.register", "failure").await, 1);
    assert_eq!(audit_count(&h, "device.posture", "failure").await, 2);
    assert_eq!(audit_count(&h, "device.posture", "denied").await, 2);
    let hist = h.get(&format!("/api/v1/devices/{}/posture", sa.device_id), &sadmin.access).await.expect(200);
    assert_eq!(hist.body.as_array().unwrap().len(), 0, "refused reports are not stored");

    let r = report(&h, &sa, &sa.device_id, &good()).await.expect(201);
    assert_eq!(r.body["state"], "compliant");
    let mine = h.get("/api/v1/me/devices", &sa.access).await.expect(200);
    assert_eq!(mine.body.as_array().unwrap().len(), 1);
    assert_eq!(mine.body[0]["state"], "compliant");
    assert_eq!(mine.body[0]["registration"]["ownership"], "byod");
    let all = h.get("/api/v1/devices", &sadmin.access).await.expect(200);
    assert!(all.body.as_array().unwrap().iter().any(|d| d["id"] == sa.device_id.as_str() && d["state"] == "compliant"));
    h.get("/api/v1/devices", &sb.access).await.expect_problem(403, "forbidden");

    let conv = h.conversation(&sb, "group", &[&a]).await;
    h.send(&sb, &conv, "t1", "potassium 6.1, repeat the draw").await.expect(201);
    let page = h.get(&format!("/api/v1/conversations/{conv}/messages"), &sa.access).await.expect(200);
    assert_eq!(page.body["items"][0]["body"], "potassium 6.1, repeat the draw");

    // No passcode: blocked from PHI at once under the baseline.
    let mut open = good();
    open["passcode_present"] = json!(false);
    open.as_object_mut().unwrap().remove("passcode_length");
    open.as_object_mut().unwrap().remove("passcode_alphanumeric");
    let r = report(&h, &sa, &sa.device_id, &open).await.expect(201);
    assert_eq!(r.body["state"], "block_phi");
    let page = h.get(&format!("/api/v1/conversations/{conv}/messages"), &sa.access).await.expect(200);
    let m = &page.body["items"][0];
    assert_eq!(m["body"], Value::Null, "{page:?}");
    assert_eq!(m["withheld"]["reason"], "device_posture");
    assert!(m["withheld"]["fix"].as_array().unwrap().contains(&json!("passcode_present")));
    assert!(!page.body.to_string().contains("potassium"));
    let one = h.get(&format!("/api/v1/conversations/{conv}/messages/{}", m["id"].as_str().unwrap()), &sa.access).await.expect(200);
    assert_eq!(one.body["body"], Value::Null);
    // Titles are free text that may carry PHI: withheld from the list and the conversation.
    let list = h.get("/api/v1/conversations", &sa.access).await.expect(200);
    let c = list.body["items"].as_array().unwrap().iter().find(|c| c["id"] == conv.as_str()).unwrap().clone();
    assert_eq!(c["title"], Value::Null, "{c}");
    assert_eq!(c["withheld"]["reason"], "device_posture");
    let got = h.get(&format!("/api/v1/conversations/{conv}"), &sa.access).await.expect(200);
    assert_eq!(got.body["title"], Value::Null, "{}", got.body);
    assert!(got.body["withheld"]["fix"].as_array().unwrap().contains(&json!("passcode_present")));
    assert!(!list.body.to_string().contains("Ward 4 handover") && !got.body.to_string().contains("Ward 4 handover"));
    assert_eq!(h.get(&format!("/api/v1/conversations/{conv}"), &sb.access).await.expect(200).body["title"], "Ward 4 handover");
    // Attachment bytes cannot be withheld field by field: the download is refused.
    let att = h
        .raw(
            Method::POST,
            &format!("/api/v1/conversations/{conv}/attachments"),
            Some(&sb.access),
            "application/pdf",
            b"%PDF-1.4\n%%EOF\n".to_vec(),
        )
        .await
        .expect(201);
    let att_path = format!("/api/v1/conversations/{conv}/attachments/{}", att.body["id"].as_str().unwrap());
    let r = h.get(&att_path, &sa.access).await.expect_problem(403, "device_blocked");
    assert!(r.body["detail"].as_str().unwrap().contains("passcode_present"));
    h.get(&att_path, &sb.access).await.expect(200);
    // Forwarding copies content through the device: refused too.
    let fwd = json!({"target_conversation_id": conv, "client_txn_id": "fwd-blocked"});
    let fwd_path = format!("/api/v1/conversations/{conv}/messages/{}/forward", m["id"].as_str().unwrap());
    h.post(&fwd_path, &sa.access, fwd).await.expect_problem(403, "device_blocked");
    // Patient names and MRNs are PHI too: the directory refuses the blocked device.
    let search = h.call(Method::POST, "/api/v1/patients/search", Some(&sa.access), Some(json!({"mrn": "MRN-000123"}))).await;
    search.expect_problem(403, "device_blocked");
    h.call(Method::POST, "/api/v1/patients/search", Some(&sb.access), Some(json!({"mrn": "MRN-000123"})))
        .await
        .expect_problem(404, "not_found");
    // Live deliveries too; the compliant device still gets the text.
    let mut st_a = h.stream(&sa).await;
    let mut st_b = h.stream(&sb).await;
    h.send(&sb, &conv, "t2", "sodium 128").await.expect(201);
    // The catch-up replay (t1) and the live event (t2) both come without content.
    for txn in ["t1", "t2"] {
        let ev = st_a.next_of_kind("message", WAIT).await.expect("event for the blocked device");
        assert_eq!(ev["message"]["client_txn_id"], txn, "{ev}");
        assert_eq!(ev["message"]["body"], Value::Null, "{ev}");
        assert!(ev["message"]["withheld"]["fix"].as_array().unwrap().contains(&json!("passcode_present")));
    }
    loop {
        let ev = st_b.next_of_kind("message", WAIT).await.expect("event for the sender");
        if ev["message"]["client_txn_id"] == "t2" {
            assert_eq!(ev["message"]["body"], "sodium 128");
            break;
        }
    }
    drop(st_a);

    // Fixed: content flows again.
    report(&h, &sa, &sa.device_id, &good()).await.expect(201);
    let page = h.get(&format!("/api/v1/conversations/{conv}/messages"), &sa.access).await.expect(200);
    let items = page.body["items"].as_array().unwrap();
    assert!(items.iter().any(|m| m["body"] == "sodium 128"), "{page:?}");
    assert!(items.iter().all(|m| m.get("withheld").is_none()));
    let got = h.get(&format!("/api/v1/conversations/{conv}"), &sa.access).await.expect(200);
    assert_eq!((got.body["title"].as_str(), &got.body["withheld"]), (Some("Ward 4 handover"), &Value::Null));
    let hist = h.get(&format!("/api/v1/devices/{}/posture", sa.device_id), &sadmin.access).await.expect(200);
    assert_eq!(hist.body.as_array().unwrap().len(), 3, "every report is kept");
    let drift = h.get("/api/v1/device-reports/drift", &sadmin.access).await.expect(200);
    let events =
        drift.body["devices"].as_array().unwrap().iter().find(|d| d["device_id"] == sa.device_id.as_str()).unwrap()["events"].clone();
    assert_eq!(events.as_array().unwrap().len(), 2, "left compliance and regained it: {events}");
}

async fn wipe_revokes_and_is_acknowledged_once(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let o = h.org("acme", vec![]).await;
    let a = h.account(&o, "a@acme", Role::Clinician).await;
    let admin = h.account(&o, "admin@acme", Role::Admin).await;
    let other = h.org("other", vec![]).await;
    let z_admin = h.account(&other, "admin@other", Role::Admin).await;
    let sa = h.login(&a).await;
    let sadmin = h.login(&admin).await;
    let sz = h.login(&z_admin).await;
    // An admin's wipe needs a recent second-factor verification (the user's own report does not).
    let wipe = format!("/api/v1/devices/{}/wipe", sa.device_id);
    h.post(&wipe, &sadmin.access, json!({"reason": "probe"})).await.expect_problem(403, "mfa_enrollment_required");
    h.step_up(&sadmin).await;
    h.step_up(&sz).await;
    let secret = register(&h, &sa).await;
    let mut st = h.stream(&sa).await;

    let path = format!("/api/v1/devices/{}/wipe", sa.device_id);
    h.post(&path, &sz.access, json!({"reason": "probe"})).await.expect_problem(404, "not_found");
    let clin = h.login(&a).await;
    h.post(&path, &clin.access, json!({"reason": "probe"})).await.expect_problem(403, "forbidden");
    let w = h.post(&path, &sadmin.access, json!({"reason": "phone lost on the night bus"})).await.expect(201);
    assert_eq!(w.body["source"], "admin");
    assert_eq!(w.body["delivered_at"], Value::Null);
    let wipe_id = w.body["id"].as_str().unwrap().to_owned();
    h.post(&path, &sadmin.access, json!({"reason": "again"})).await.expect_problem(409, "conflict");

    // At once: the stream closes, the tokens die, the device id cannot sign in again.
    let mut closed = false;
    for _ in 0..5 {
        match st.next_frame(WAIT).await {
            Frame::Closed(_) => {
                closed = true;
                break;
            }
            Frame::Json(v) if v["type"] == "session_ended" => {}
            Frame::Json(_) => {}
            Frame::Timeout => break,
        }
    }
    assert!(closed, "the wiped device's connection closes");
    let r = h.get("/api/v1/me", &sa.access).await;
    assert_eq!(r.status.as_u16(), 401, "{}", r.body);
    h.call(Method::POST, "/api/v1/auth/refresh", None, Some(json!({"refresh_token": sa.refresh, "device_id": sa.device_id})))
        .await
        .expect_problem(401, "invalid_refresh_token");
    let again = h
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(
                json!({"login": a.login, "password": common::PASSWORD, "device": {"id": sa.device_id, "name": "phone", "platform": "ios"}}),
            ),
        )
        .await;
    again.expect_problem(422, "validation_failed");
    // The user's other session (another device) is untouched.
    h.get("/api/v1/me", &clin.access).await.expect(200);
    // The wipe secret is no bearer token.
    h.get("/api/v1/me", &secret).await.expect_problem(401, "invalid_token");

    let cmd = "/api/v1/device-wipe/command";
    h.call(Method::POST, cmd, None, Some(json!({"device_id": sa.device_id, "wipe_secret": "wdw_wrong"})))
        .await
        .expect_problem(404, "not_found");
    let c = h.call(Method::POST, cmd, None, Some(json!({"device_id": sa.device_id, "wipe_secret": secret}))).await.expect(200);
    assert_eq!(c.body["wipe_id"], wipe_id.as_str());
    assert_eq!(c.body["scope"], "ward_data");
    let ack = "/api/v1/device-wipe/ack";
    let body = json!({"device_id": sa.device_id, "wipe_secret": secret, "wipe_id": wipe_id});
    h.call(Method::POST, ack, None, Some(body.clone())).await.expect(204);
    h.call(Method::POST, ack, None, Some(body)).await.expect_problem(409, "wipe_already_acknowledged");
    assert_eq!(audit_count(&h, "device.wipe_ack", "failure").await, 1);
    let list = h.get("/api/v1/device-wipes", &sadmin.access).await.expect(200);
    let w = &list.body[0];
    assert!(w["delivered_at"].is_string() && w["acknowledged_at"].is_string(), "{w}");
    assert_eq!(w["requested_by"], admin.id.to_string());
    assert_eq!(h.get("/api/v1/device-wipes?overdue=true", &sadmin.access).await.expect(200).body.as_array().unwrap().len(), 0);

    // A user reports their own other device lost; not someone else's.
    h.post(&format!("/api/v1/me/devices/{}/wipe", sadmin.device_id), &clin.access, json!({"reason": "x"}))
        .await
        .expect_problem(404, "not_found");
    let own = h.post(&format!("/api/v1/me/devices/{}/wipe", clin.device_id), &clin.access, json!({"reason": "lost it"})).await.expect(201);
    assert_eq!(own.body["source"], "lost_by_user");
    let r = h.get("/api/v1/me", &clin.access).await;
    assert_eq!(r.status.as_u16(), 401, "reporting the current device lost ends its session too");
}

async fn policy_reports_spot_checks_and_profile(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let o = h.org("acme", vec![]).await;
    let admin = h.account(&o, "admin@acme", Role::Admin).await;
    let co = h.account(&o, "co@acme", Role::ComplianceOfficer).await;
    let sadmin = h.login(&admin).await;
    let sco = h.login(&co).await;
    for i in 0..10 {
        let u = h.account(&o, &format!("n{i}@acme"), Role::Nurse).await;
        let s = h.login(&u).await;
        register(&h, &s).await;
    }

    let p = h.get("/api/v1/org/device-policy", &sco.access).await.expect(200);
    assert_eq!(p.body["stale_after_ms"], 7 * 86_400_000i64);
    let mut changed = p.body.clone();
    changed["stale_after_ms"] = json!(86_400_000);
    h.call(Method::PUT, "/api/v1/org/device-policy", Some(&sco.access), Some(changed.clone())).await.expect_problem(403, "forbidden");
    let mut bad = changed.clone();
    bad["stale_after_ms"] = json!(0);
    h.call(Method::PUT, "/api/v1/org/device-policy", Some(&sadmin.access), Some(bad)).await.expect_problem(422, "validation_failed");
    let mut unknown = changed.clone();
    unknown["extra"] = json!(1);
    h.call(Method::PUT, "/api/v1/org/device-policy", Some(&sadmin.access), Some(unknown)).await.expect_problem(400, "invalid_body");
    h.call(Method::PUT, "/api/v1/org/device-policy", Some(&sadmin.access), Some(changed)).await.expect(200);
    assert_eq!(h.get("/api/v1/org/device-policy", &sco.access).await.expect(200).body["stale_after_ms"], 86_400_000);

    let sc = h.post("/api/v1/device-reports/spot-checks", &sco.access, json!({"percent": 20, "seed": 7})).await.expect(201);
    let population: Vec<uuid::Uuid> = serde_json::from_value(sc.body["population"].clone()).unwrap();
    let sample: Vec<uuid::Uuid> = serde_json::from_value(sc.body["sample"].clone()).unwrap();
    assert_eq!((population.len(), sample.len()), (10, 2));
    assert_eq!(ward_device::spot_check(&population, 7, 20).unwrap(), sample, "reproducible from the recorded seed");
    let id = sc.body["id"].as_str().unwrap();
    assert_eq!(h.get(&format!("/api/v1/device-reports/spot-checks/{id}"), &sco.access).await.expect(200).body["seed"], 7);
    h.post("/api/v1/device-reports/spot-checks", &sco.access, json!({"percent": 5})).await.expect_problem(422, "validation_failed");
    // serde would read the request from an array of its fields; bodies must be objects (a
    // schemathesis finding: `[null, null]` drew a sample).
    h.raw(Method::POST, "/api/v1/device-reports/spot-checks", Some(&sco.access), "application/json", b"[null, null]".to_vec())
        .await
        .expect_problem(400, "invalid_body");
    let random = h.post("/api/v1/device-reports/spot-checks", &sco.access, json!({})).await.expect(201);
    assert!(random.body["seed"].as_u64().unwrap() < (1 << 53));
    assert_eq!(h.get("/api/v1/device-reports/spot-checks", &sco.access).await.expect(200).body.as_array().unwrap().len(), 2);

    let review = h.get("/api/v1/device-reports/review", &sco.access).await.expect(200);
    assert_eq!(review.body["summary"]["devices"], 10);
    assert_eq!(review.body["summary"]["by_state"]["compliant"], 10);
    assert!(review.body["unregistered_devices"].as_u64().unwrap() >= 2, "the admin's and officer's sessions never registered");
    assert_eq!(review.body["latest_spot_check"]["id"], random.body["id"]);

    let res = h
        .http
        .get(format!("{}/api/v1/org/device-profile?org_prefix=org.example.hospital", h.url))
        .bearer_auth(&sadmin.access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(res.headers()["content-type"], "application/x-apple-aspen-config");
    let text = res.text().await.unwrap();
    assert!(text.starts_with("<?xml") && text.contains("com.apple.mobiledevice.passwordpolicy"), "{text}");
    h.get("/api/v1/org/device-profile?org_prefix=org.example.hospital", &sco.access).await.expect_problem(403, "forbidden");
    h.get("/api/v1/org/device-profile?org_prefix=not%20dns", &sadmin.access).await.expect_problem(422, "validation_failed");
    // No signing certificate configured here.
    h.get("/api/v1/org/device-profile?org_prefix=org.example.hospital&signed=true", &sadmin.access)
        .await
        .expect_problem(409, "invalid_state");
}

/// With `[devices] profile_sign_cert` and `profile_sign_key` set, `signed=true` answers CMS
/// SignedData that OpenSSL verifies against the certificate (when `openssl` is on PATH; without
/// it that part prints SKIPPED, except with CI=true, where it fails), carrying the profile.
async fn signed_profile_with_the_configured_certificate(backend: Backend) {
    let keys = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["profiles.example.org".into()]).unwrap().self_signed(&key).unwrap();
    let (cert_path, key_path) = (keys.path().join("signer.crt"), keys.path().join("signer.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let Some(h) = Harness::start_with(backend, |c| {
        c.devices.profile_sign_cert = Some(cert_path.clone());
        c.devices.profile_sign_key = Some(key_path.clone());
    })
    .await
    else {
        return;
    };
    let org = h.org("signing", vec![]).await;
    let admin = h.login(&h.account(&org, "admin@signing", Role::Admin).await).await;
    let res = h
        .http
        .get(format!("{}/api/v1/org/device-profile?org_prefix=org.example.hospital&signed=true", h.url))
        .bearer_auth(&admin.access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(res.headers()["content-type"], "application/x-apple-aspen-config");
    let signed = res.bytes().await.unwrap().to_vec();
    assert_eq!(signed[0], 0x30, "DER, not XML");
    if !std::process::Command::new("openssl").arg("version").output().is_ok_and(|o| o.status.success()) {
        assert!(!std::env::var("CI").is_ok_and(|v| v == "true" || v == "1"), "openssl is required in CI (CI=true)");
        eprintln!("SKIPPED: openssl is not on PATH; the signed profile was not verified independently");
        return;
    }
    let (input, content) = (keys.path().join("p.der"), keys.path().join("p.plist"));
    std::fs::write(&input, &signed).unwrap();
    let o = std::process::Command::new("openssl")
        .args(["cms", "-verify", "-binary", "-inform", "DER", "-purpose", "any", "-in"])
        .arg(&input)
        .arg("-CAfile")
        .arg(&cert_path)
        .arg("-out")
        .arg(&content)
        .output()
        .unwrap();
    assert!(o.status.success(), "openssl refused the signature: {}", String::from_utf8_lossy(&o.stderr));
    let xml = String::from_utf8(std::fs::read(&content).unwrap()).unwrap();
    assert!(xml.starts_with("<?xml") && xml.contains("org.example.hospital.ward.baseline.passcode"), "{xml}");
    // Unsigned stays the default.
    let plain = h
        .http
        .get(format!("{}/api/v1/org/device-profile?org_prefix=org.example.hospital", h.url))
        .bearer_auth(&admin.access)
        .send()
        .await
        .unwrap();
    assert!(plain.text().await.unwrap().starts_with("<?xml"));
}

async fn disable_wipes_devices_and_the_wipe_channel_is_rate_limited(backend: Backend) {
    let Some(h) = Harness::start_with(backend, |c| {
        c.devices.wipe_requests_per_minute_per_address = 6;
        c.devices.wipe_requests_per_minute_per_device = 3;
    })
    .await
    else {
        return;
    };
    let o = h.org("acme", vec![]).await;
    let admin = h.account(&o, "admin@acme", Role::Admin).await;
    let a = h.account(&o, "a@acme", Role::Clinician).await;
    let b = h.account(&o, "b@acme", Role::Nurse).await;
    let sadmin = h.login_stepped_up(&admin).await;
    let sa = h.login(&a).await;
    let sb = h.login(&b).await;
    let secret = register(&h, &sa).await;

    // A device that never registered has no wipe channel: its sessions end at once and the
    // wipe is closed, never overdue.
    let w = h.post(&format!("/api/v1/devices/{}/wipe", sb.device_id), &sadmin.access, json!({"reason": "lost"})).await.expect(201);
    assert_eq!((w.body["closed_reason"].as_str(), w.body["overdue"].as_bool()), (Some("no_wipe_channel"), Some(false)));
    assert_eq!(h.get("/api/v1/me", &sb.access).await.status.as_u16(), 401);
    h.store.test_execute("UPDATE device_wipes SET requested_at = requested_at - 1000000000".into()).await.unwrap();
    let overdue = h.get("/api/v1/device-wipes?overdue=true", &sadmin.access).await.expect(200);
    assert_eq!(overdue.body, json!([]), "a closed wipe is never overdue");

    // Disabling a user through the API queues a wipe to their device in the same step.
    h.post(&format!("/api/v1/users/{}/disable", a.id), &sadmin.access, json!({})).await.expect(200);
    h.get("/api/v1/me", &sa.access).await.expect_problem(403, "account_disabled");
    let cmd = "/api/v1/device-wipe/command";
    let c = h.call(Method::POST, cmd, None, Some(json!({"device_id": sa.device_id, "wipe_secret": secret}))).await.expect(200);
    let wipes = h.get("/api/v1/device-wipes", &sadmin.access).await.expect(200);
    let w = wipes.body.as_array().unwrap().iter().find(|w| w["id"] == c.body["wipe_id"]).unwrap().clone();
    assert_eq!((w["source"].as_str(), w["reason"].as_str()), (Some("deprovisioned"), Some("deprovisioned")));
    let body = json!({"device_id": sa.device_id, "wipe_secret": secret, "wipe_id": c.body["wipe_id"]});
    h.call(Method::POST, "/api/v1/device-wipe/ack", None, Some(body)).await.expect(204);

    // Per device: the third request for one id is the last this minute.
    let probe = uuid::Uuid::new_v4().to_string();
    for _ in 0..3 {
        h.call(Method::POST, cmd, None, Some(json!({"device_id": probe, "wipe_secret": "wdw_guess"})))
            .await
            .expect_problem(404, "not_found");
    }
    let r = h.call(Method::POST, cmd, None, Some(json!({"device_id": probe, "wipe_secret": "wdw_guess"}))).await;
    let r = r.expect_problem(429, "rate_limited");
    let wait: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    // Per address: this address has spent its six, whatever device it names.
    let other = uuid::Uuid::new_v4().to_string();
    h.call(Method::POST, "/api/v1/device-wipe/ack", None, Some(json!({"device_id": other, "wipe_secret": "wdw_x", "wipe_id": other})))
        .await
        .expect_problem(429, "rate_limited");
}
