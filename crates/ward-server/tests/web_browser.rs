//! The web app in a real browser: starts a Ward server with the test harness, seeds an
//! organisation, and runs `web-tests/app.test.mjs` (Playwright driving Debian's Chromium, with
//! axe-core checking every page) against it. The script's exit status is the verdict.
//!
//! Peers: Node.js (`WARD_TEST_NODE`), Chromium (`WARD_TEST_CHROMIUM`) and `web-tests/node_modules`
//! (`npm ci`), all set up by scripts/test. Missing peers print SKIPPED, except with CI=true,
//! where they fail the test. `WARD_WEB_SCREENSHOTS=<dir>` saves the main screens there
//! (`docs/screenshots` holds the committed ones).

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use common::{Account, Harness, PASSWORD};
use reqwest::Method;
use serde_json::json;
use ward_domain::ids::PatientId;
use ward_domain::role::Role;
use ward_store::Backend;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// Node, Chromium and the installed test packages, or `None` (skip) outside CI.
fn peers() -> Option<(String, String, PathBuf)> {
    let dir = repo_root().join("web-tests");
    let node = std::env::var("WARD_TEST_NODE").ok();
    let chromium = std::env::var("WARD_TEST_CHROMIUM").ok();
    let installed = dir.join("node_modules/playwright-core").is_dir() && dir.join("node_modules/axe-core").is_dir();
    match (node, chromium, installed) {
        (Some(n), Some(c), true) => Some((n, c, dir)),
        _ => {
            assert!(
                !ward_store::testing::pg_required(),
                "the browser tests need WARD_TEST_NODE, WARD_TEST_CHROMIUM and `npm ci` in web-tests/ when CI=true (scripts/test sets them up)"
            );
            eprintln!("SKIPPED: the browser tests need WARD_TEST_NODE, WARD_TEST_CHROMIUM and web-tests/node_modules (run scripts/test)");
            None
        }
    }
}

/// node-oidc-provider (`oidc-tests/provider.mjs`) for the single sign-on step, killed when
/// dropped; `None` (the step skips) outside CI when its packages are not installed.
struct SsoProvider(Child);

impl Drop for SsoProvider {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the provider for organisation `slug` and sets it up there; `None` outside CI when
/// `oidc-tests/node_modules` is missing.
async fn sso_provider(h: &Harness, node: &str, slug: &str) -> Option<SsoProvider> {
    let dir = std::env::var("WARD_TEST_OIDC_DIR").map(PathBuf::from).unwrap_or_else(|_| repo_root().join("oidc-tests"));
    if !dir.join("node_modules/oidc-provider").is_dir() {
        assert!(!ward_store::testing::pg_required(), "the browser test's single sign-on step needs `npm ci` in oidc-tests/ when CI=true");
        eprintln!("SKIPPED (single sign-on step): oidc-tests/node_modules is missing");
        return None;
    }
    let mut child = Command::new(node)
        .arg("provider.mjs")
        .current_dir(&dir)
        .env("WARD_URL", &h.url)
        .env("WARD_ORG", slug)
        .env("NODE_EXTRA_CA_CERTS", &h.running.as_ref().unwrap().cert_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node starts");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).expect("the provider prints its address");
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let issuer = serde_json::from_str::<serde_json::Value>(&line).expect("the provider started")["issuer"].as_str().unwrap().to_owned();
    let org = h.org(slug, vec![]).await;
    let admin = h.account(&org, "sso-admin", Role::Admin).await;
    let s = h.login_stepped_up(&admin).await;
    let body = json!({"issuer": issuer, "client_id": "ward", "client_secret": "ward-test-secret", "scopes": ["profile", "groups"],
        "role_map": [{"value": "ward-nurses", "role": "nurse"}], "jit_enabled": true});
    h.call(Method::PUT, "/api/v1/admin/oidc", Some(&s.access), Some(body)).await.expect(200);
    Some(SsoProvider(child))
}

/// An account with the harness password and a display name a person would see.
async fn person(h: &Harness, org: &ward_store::Org, login: &str, display: &str, role: Role, patient: Option<PatientId>) -> Account {
    let hash = ward_server::secrets::hash_password(PASSWORD.into()).await.unwrap();
    let new = ward_store::NewUser {
        org_id: org.id,
        login: login.into(),
        display_name: display.into(),
        role,
        password_hash: hash,
        password_must_change: false,
        patient_id: patient,
    };
    let u = h.store.create_user(new, None, Harness::meta()).await.unwrap();
    Account { id: u.id, login: login.into(), org: org.clone(), role }
}

/// Signs `account` in from an iPhone, registers it and reports its posture: every setting as
/// the baseline asks (`compliant`), or without a passcode. Returns the device id and its wipe
/// secret.
async fn phone(h: &Harness, account: &Account, name: &str, compliant: bool) -> (String, String) {
    let body = json!({"login": account.login, "password": PASSWORD, "device": {"name": name, "platform": "ios"}});
    let r = h.call(Method::POST, "/api/v1/auth/login", None, Some(body)).await.expect(200);
    let access = r.body["tokens"]["access_token"].as_str().unwrap().to_owned();
    let device = r.body["tokens"]["device_id"].as_str().unwrap().to_owned();
    let registration = json!({"platform": "ios", "model": "iPhone16,1", "os_version": "18.1", "app_version": "1.0.0",
        "ownership": "byod", "supervised": false, "mdm_enrolled": false});
    let reg =
        h.raw(Method::PUT, "/api/v1/me/device", Some(&access), "application/json", registration.to_string().into_bytes()).await.expect(200);
    let secret = reg.body["wipe_secret"].as_str().unwrap().to_owned();
    let mut report = json!({"os_version": "18.1", "passcode_present": true, "passcode_length": 6, "passcode_alphanumeric": true,
        "erase_after_failed_attempts": 10, "auto_lock_minutes": 5, "siri_while_locked": false, "encrypted_backups": true,
        "jailbreak_detected": false, "app_attestation": "passed"});
    if !compliant {
        report = json!({"os_version": "18.1", "passcode_present": false, "erase_after_failed_attempts": 10, "auto_lock_minutes": 5,
            "siri_while_locked": false, "encrypted_backups": true, "jailbreak_detected": false, "app_attestation": "passed"});
    }
    let r = h.call(Method::POST, &format!("/api/v1/me/devices/{device}/posture"), Some(&access), Some(report)).await.expect(201);
    assert_eq!(r.body["state"], if compliant { "compliant" } else { "block_phi" }, "{}", r.body);
    (device, secret)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_app_in_chromium() {
    let Some((node, chromium, dir)) = peers() else { return };
    // An SMS gateway on 127.0.0.1 that records what it is sent: the script reads the
    // verification code sent to a patient's number from the file it is copied to.
    let sms = ward_notify::fake::FakeHttp::start().await;
    let sms_url = format!("{}/send", sms.url);
    // Loopback providers are allowed: the single sign-on step's provider runs on 127.0.0.1.
    let h = Harness::start_with(Backend::Sqlite, move |c| {
        c.oidc.allow_http_loopback = true;
        common::notify::fast(&mut c.notify);
        common::notify::fake_sms(&mut c.notify, sms_url);
        c.notify.sms.token = Some("gateway-token-web".into());
    })
    .await
    .expect("SQLite always starts");
    let sms_log = tempfile::NamedTempFile::new().unwrap().into_temp_path();
    let sms_copier = {
        let path = sms_log.to_path_buf();
        tokio::spawn(async move {
            loop {
                let lines: String = sms
                    .sends()
                    .iter()
                    .map(|r| {
                        let j = r.json();
                        format!("{}\t{}\n", j["to"].as_str().unwrap_or_default(), j["text"].as_str().unwrap_or_default())
                    })
                    .collect();
                let _ = std::fs::write(&path, lines);
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        })
    };
    // Compliance officers must use a second factor: the script enrols one through the app.
    let org = h.org("web", vec![Role::ComplianceOfficer]).await;
    let alice = person(&h, &org, "alice", "Dr Alice Moreau", Role::Clinician, None).await;
    let bob = person(&h, &org, "bob", "Bob Tanaka RN", Role::Nurse, None).await;
    person(&h, &org, "carol", "Dr Carol Singh", Role::Clinician, None).await;
    let admin = person(&h, &org, "admin", "Ada Admin", Role::Admin, None).await;
    // The admin signs in with a TOTP code the script computes from this secret, and answers
    // the step-up dialog with a recovery code.
    let totp_secret = h.enroll_mfa(&admin).await;
    let recovery = "web-recovery-code-1";
    let recovery2 = "web-recovery-code-2";
    let recovery3 = "web-recovery-code-3";
    let codes = vec![
        ward_server::secrets::recovery_hash(recovery),
        ward_server::secrets::recovery_hash(recovery2),
        ward_server::secrets::recovery_hash(recovery3),
    ];
    h.store.set_recovery_codes(org.id, admin.id, codes, Harness::meta()).await.unwrap();
    let totp_hex: String = totp_secret.iter().map(|b| format!("{b:02x}")).collect();
    let a = h.login(&alice).await;
    let group = h.conversation(&a, "group", &[&bob]).await;
    h.send(&a, &group, "seed-1", "Bed 12 handover at 7, labs pending").await.expect(201);
    let p = h
        .post("/api/v1/patients", &a.access, json!({"mrn": "MRN-0042", "display_name": "Jamie Doe", "care_team": [alice.id, bob.id]}))
        .await;
    let patient_id = p.expect(201).body["id"].as_str().unwrap().to_owned();
    let patient = person(&h, &org, "jamie", "Jamie Doe", Role::Patient, Some(PatientId(patient_id.parse().unwrap()))).await;
    let pc = h
        .post(
            "/api/v1/conversations",
            &a.access,
            json!({"kind": "patient", "title": "Your care team", "patient_id": patient_id, "members": [{"user_id": patient.id}]}),
        )
        .await;
    let patient_conv = pc.expect(201).body["id"].as_str().unwrap().to_owned();
    h.send(&a, &patient_conv, "seed-2", "Your results are in; everything looks fine.").await.expect(201);
    // A one-time portal link for jamie, as a notice would carry it; the script follows it.
    let link = h.call(Method::POST, &format!("/api/v1/patients/{patient_id}/portal-link"), Some(&a.access), None).await.expect(201);
    let portal_token = link.body["url"].as_str().unwrap().rsplit_once("/#/link/").unwrap().1.to_owned();

    // Devices for the console: erin's phone reports no passcode (blocked from PHI at once under
    // the baseline policy); bob's reports every setting as required (compliant). The script
    // acknowledges the wipe of erin's phone with its wipe secret, as the phone would.
    let erin = person(&h, &org, "erin", "Dr Erin Walsh", Role::Clinician, None).await;
    let (erin_device, erin_secret) = phone(&h, &erin, "Erin's iPhone", false).await;
    // frank registers a passkey through the app (Chromium's virtual authenticator).
    person(&h, &org, "frank", "Dr Frank Osei", Role::Clinician, None).await;
    // gina must set up a second factor (compliance officer) and chooses a security key.
    person(&h, &org, "gina", "Gina Marsh", Role::ComplianceOfficer, None).await;
    phone(&h, &bob, "Bob's iPhone", true).await;

    // Emergency access and its review: hana (clinician, outside jamie's care team) and ines
    // (compliance officer) sign in with TOTP codes the script computes from their secrets.
    let hana = person(&h, &org, "hana", "Dr Hana Ito", Role::Clinician, None).await;
    let ines = person(&h, &org, "ines", "Ines Duarte", Role::ComplianceOfficer, None).await;
    let hex = |s: Vec<u8>| s.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let (hana_totp, ines_totp) = (hex(h.enroll_mfa(&hana).await), hex(h.enroll_mfa(&ines).await));
    // kim left (the roster says so): the roster screen disables the account.
    let kim = person(&h, &org, "kim", "Kim Lorne", Role::Staff, None).await;
    // kim claims the number hana adds in the app: the admin's Contacts screen lists both.
    let ks = h.login(&kim).await;
    h.post("/api/v1/me/contacts", &ks.access, json!({"kind": "phone", "value": "+14155550188"})).await.expect(201);
    // An unread STAT message in jamie's conversation, escalated at once (zero delays): step 1
    // re-notifies jamie, step 2 bob, on call for jamie. The conversation's panel lists both.
    let on_call = format!("/api/v1/patients/{patient_id}/care-team/{}/on-call", bob.id);
    h.call(Method::PUT, &on_call, Some(&a.access), Some(json!({"on_call": true}))).await.expect(204);
    let stat = json!({"client_txn_id": "seed-stat", "body": "Please call the ward today about your potassium result.", "priority": "stat"});
    h.post(&format!("/api/v1/conversations/{patient_conv}/messages"), &a.access, stat).await.expect(201);
    let zero = ward_store::EscalationDelays { stat_ms: 0, urgent_ms: 0, sms: false };
    assert_eq!(h.store.escalate_due(zero, 100).await.unwrap(), 2, "both escalation steps");
    // A push notice for jamie: the script opens it by the id the push would carry.
    let pid = PatientId(patient_id.parse().unwrap());
    let portal = ward_domain::consent::ConsentGrant::new(ward_domain::consent::ConsentChannel::Portal, None, false).unwrap();
    h.store.record_consent(org.id, alice.id, pid, portal, Harness::meta()).await.unwrap();
    let draft = ward_store::NoticeDraft {
        patient_id: pid,
        template_id: uuid::Uuid::now_v7(),
        channel: ward_domain::consent::NoticeChannel::Push,
        text: "Your appointment is on Tuesday at 10:00 in clinic B.".into(),
    };
    let ward_store::NoticeOutcome::Queued(notice) = h.store.enqueue_notice(org.id, alice.id, draft, Harness::meta()).await.unwrap() else {
        panic!("the notice is queued")
    };

    // A second organisation signs in through a real provider (the hand-over cookie step).
    let sso = sso_provider(&h, &node, "websso").await;
    let sso_org = if sso.is_some() { "websso" } else { "" };

    let screenshots = std::env::var("WARD_WEB_SCREENSHOTS").unwrap_or_default();
    let url = h.url.clone();
    let sms_log_path = sms_log.to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(&node)
            .current_dir(&dir)
            .arg("app.test.mjs")
            .env("WARD_URL", url)
            .env("WARD_CHROMIUM", chromium)
            .env("WARD_PASSWORD", PASSWORD)
            .env("WARD_GROUP", group)
            .env("WARD_PATIENT_CONV", patient_conv)
            .env("WARD_PORTAL_LINK_TOKEN", portal_token)
            .env("WARD_SCREENSHOTS", screenshots)
            .env("WARD_ADMIN_TOTP_SECRET", totp_hex)
            .env("WARD_ADMIN_RECOVERY_CODE", recovery)
            .env("WARD_ADMIN_RECOVERY_CODE_2", recovery2)
            .env("WARD_ADMIN_RECOVERY_CODE_3", recovery3)
            .env("WARD_HANA_TOTP_SECRET", hana_totp)
            .env("WARD_INES_TOTP_SECRET", ines_totp)
            .env("WARD_NOTICE_ID", notice.id.to_string())
            .env("WARD_ERIN_DEVICE", erin_device)
            .env("WARD_ERIN_WIPE_SECRET", erin_secret)
            .env("WARD_SSO_ORG", sso_org)
            .env("WARD_SMS_LOG", sms_log_path)
            .output()
            .expect("node runs")
    })
    .await
    .unwrap();
    sms_copier.abort();
    let _ = sms_copier.await;
    drop(sms_log);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}\n{stderr}");
    drop(sso);
    assert!(out.status.success(), "the browser tests failed ({}): see the output above", out.status);
}
