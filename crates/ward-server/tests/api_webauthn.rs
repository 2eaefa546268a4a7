//! WebAuthn over real HTTPS against a software authenticator written here: registration of
//! several credentials, each as a second factor, passwordless passkey sign-in, step-up,
//! rename and removal; and the refusals (another user's credential, a counter that went
//! backwards, a replayed or expired challenge, malformed input), each with its problem code,
//! audited, and changing nothing else.
//!
//! The authenticator is a test peer, not production crypto: P-256 ECDSA from aws-lc-rs, the
//! authenticator data and "none" attestation laid out as WebAuthn Level 2 §6.1 and §8.7
//! describe, the COSE key as RFC 9053 §7.1.1 (EC2: kty 2, alg -7, crv 1, x, y), and a minimal
//! CBOR encoder (RFC 8949) for the few shapes needed.

mod common;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use common::{Account, Harness, PASSWORD, Session};
use reqwest::Method;
use serde_json::{Value, json};
use ward_domain::role::Role;
use ward_store::{Backend, on_both_backends, on_sqlite};

on_both_backends!(
    two_credentials_each_work_as_second_factor_and_for_step_up,
    passkey_sign_in_is_passwordless_and_counts_as_mfa,
    another_users_credential_is_refused_and_changes_nothing,
    a_counter_that_goes_backwards_is_refused_and_flagged,
    a_challenge_works_once_and_not_after_it_expires,
    removal_keeps_the_last_required_factor,
    totp_next_to_a_key_needs_a_step_up_and_keeps_recovery_codes,
    a_key_only_user_steps_up_with_a_recovery_code,
    a_clone_flagged_key_is_not_a_remaining_factor,
    wrong_passwords_in_a_session_count_towards_the_lockout,
    passkey_endpoints_are_rate_limited_per_address,
);
on_sqlite!(malformed_input_is_refused_with_problem_codes);

const ORIGIN: &str = "https://localhost:8443";

// ---- minimal CBOR ----------------------------------------------------------------------------

fn cbor_head(out: &mut Vec<u8>, major: u8, n: u64) {
    let m = major << 5;
    match n {
        0..=23 => out.push(m | n as u8),
        24..=0xff => out.extend([m | 24, n as u8]),
        0x100..=0xffff => {
            out.push(m | 25);
            out.extend((n as u16).to_be_bytes());
        }
        _ => {
            out.push(m | 26);
            out.extend((n as u32).to_be_bytes());
        }
    }
}

fn cbor_int(out: &mut Vec<u8>, v: i64) {
    if v >= 0 { cbor_head(out, 0, v as u64) } else { cbor_head(out, 1, (-1 - v) as u64) }
}

fn cbor_bytes(out: &mut Vec<u8>, b: &[u8]) {
    cbor_head(out, 2, b.len() as u64);
    out.extend_from_slice(b);
}

fn cbor_text(out: &mut Vec<u8>, s: &str) {
    cbor_head(out, 3, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn sha256(b: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b).as_ref().to_vec()
}

// ---- the software authenticator -------------------------------------------------------------

/// One resident credential on a software authenticator.
struct SoftKey {
    cred_id: Vec<u8>,
    key: EcdsaKeyPair,
    user_handle: Vec<u8>,
    counter: u32,
}

impl SoftKey {
    /// `navigator.credentials.create()`: answers the server's creation options.
    fn create(options: &Value) -> (SoftKey, Value) {
        let pk = &options["publicKey"];
        let rp_id = pk["rp"]["id"].as_str().unwrap();
        let challenge = pk["challenge"].as_str().unwrap();
        let user_handle = B64.decode(pk["user"]["id"].as_str().unwrap()).unwrap();
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref()).unwrap();
        let cred_id = uuid::Uuid::new_v4().as_bytes().to_vec();
        let point = key.public_key().as_ref().to_vec(); // 0x04 || x || y
        let mut cose = Vec::new();
        cbor_head(&mut cose, 5, 5);
        cbor_int(&mut cose, 1);
        cbor_int(&mut cose, 2); // kty: EC2
        cbor_int(&mut cose, 3);
        cbor_int(&mut cose, -7); // alg: ES256
        cbor_int(&mut cose, -1);
        cbor_int(&mut cose, 1); // crv: P-256
        cbor_int(&mut cose, -2);
        cbor_bytes(&mut cose, &point[1..33]);
        cbor_int(&mut cose, -3);
        cbor_bytes(&mut cose, &point[33..65]);
        let mut auth_data = sha256(rp_id.as_bytes());
        auth_data.push(0x01 | 0x04 | 0x40); // UP, UV, AT
        auth_data.extend(0u32.to_be_bytes());
        auth_data.extend([0u8; 16]); // AAGUID
        auth_data.extend((cred_id.len() as u16).to_be_bytes());
        auth_data.extend(&cred_id);
        auth_data.extend(&cose);
        let mut att = Vec::new();
        cbor_head(&mut att, 5, 3);
        cbor_text(&mut att, "fmt");
        cbor_text(&mut att, "none");
        cbor_text(&mut att, "attStmt");
        cbor_head(&mut att, 5, 0);
        cbor_text(&mut att, "authData");
        cbor_bytes(&mut att, &auth_data);
        let client_data = json!({"type": "webauthn.create", "challenge": challenge, "origin": ORIGIN, "crossOrigin": false}).to_string();
        let response = json!({
            "id": B64.encode(&cred_id),
            "rawId": B64.encode(&cred_id),
            "type": "public-key",
            "response": {
                "attestationObject": B64.encode(&att),
                "clientDataJSON": B64.encode(client_data.as_bytes()),
                "transports": ["usb", "nfc"],
            },
            "clientExtensionResults": {},
        });
        (SoftKey { cred_id, key, user_handle, counter: 0 }, response)
    }

    /// `navigator.credentials.get()`: signs the server's request options (the counter moves on).
    fn get(&mut self, options: &Value) -> Value {
        self.counter += 1;
        self.sign(options, self.counter, ORIGIN)
    }

    fn sign(&self, options: &Value, counter: u32, origin: &str) -> Value {
        let pk = &options["publicKey"];
        let rp_id = pk["rpId"].as_str().unwrap();
        let challenge = pk["challenge"].as_str().unwrap();
        let mut auth_data = sha256(rp_id.as_bytes());
        auth_data.push(0x01 | 0x04); // UP, UV
        auth_data.extend(counter.to_be_bytes());
        let client_data = json!({"type": "webauthn.get", "challenge": challenge, "origin": origin, "crossOrigin": false}).to_string();
        let mut signed = auth_data.clone();
        signed.extend(sha256(client_data.as_bytes()));
        let sig = self.key.sign(&SystemRandom::new(), &signed).unwrap();
        json!({
            "id": B64.encode(&self.cred_id),
            "rawId": B64.encode(&self.cred_id),
            "type": "public-key",
            "response": {
                "authenticatorData": B64.encode(&auth_data),
                "clientDataJSON": B64.encode(client_data.as_bytes()),
                "signature": B64.encode(sig.as_ref()),
                "userHandle": B64.encode(&self.user_handle),
            },
            "clientExtensionResults": {},
        })
    }
}

// ---- helpers ---------------------------------------------------------------------------------

/// Registers a credential for the signed-in user: the first with the password, later ones
/// after a step-up. Returns the key and the credential's id.
async fn register(h: &Harness, s: &Session, label: &str) -> (SoftKey, String, Value) {
    let mfa = h.get("/api/v1/me", &s.access).await.expect(200).body["user"]["mfa_enabled"] == true;
    let begin = if mfa { json!({}) } else { json!({"password": PASSWORD}) };
    let opts = h.post("/api/v1/me/webauthn/registrations", &s.access, begin).await.expect(200);
    let (key, cred) = SoftKey::create(&opts.body["options"]);
    let r = h
        .post(
            "/api/v1/me/webauthn/credentials",
            &s.access,
            json!({"ceremony_id": opts.body["ceremony_id"], "label": label, "credential": cred}),
        )
        .await
        .expect(201);
    (key, r.body["credential"]["id"].as_str().unwrap().to_owned(), r.body)
}

async fn password_step(h: &Harness, a: &Account) -> String {
    let r = h
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"login": a.login, "password": PASSWORD, "device": {"name": "test", "platform": "cli"}})),
        )
        .await
        .expect(200);
    assert_eq!(r.body["status"], "mfa_required", "{}", r.body);
    r.body["mfa_token"].as_str().unwrap().to_owned()
}

async fn mfa_options(h: &Harness, token: &str) -> Value {
    h.call(Method::POST, "/api/v1/auth/mfa/webauthn/options", None, Some(json!({"mfa_token": token}))).await.expect(200).body
}

async fn mfa_with(h: &Harness, token: &str, opts: &Value, cred: Value) -> common::Reply {
    h.call(
        Method::POST,
        "/api/v1/auth/mfa/webauthn",
        None,
        Some(json!({"mfa_token": token, "ceremony_id": opts["ceremony_id"], "credential": cred})),
    )
    .await
}

/// A full sign-in with password and this key.
async fn sign_in_with(h: &Harness, a: &Account, key: &mut SoftKey) -> String {
    let token = password_step(h, a).await;
    let opts = mfa_options(h, &token).await;
    let cred = key.get(&opts["options"]);
    let r = mfa_with(h, &token, &opts, cred).await.expect(200);
    r.body["access_token"].as_str().unwrap().to_owned()
}

async fn passkey_options(h: &Harness) -> Value {
    h.call(Method::POST, "/api/v1/auth/passkey/options", None, None).await.expect(200).body
}

async fn passkey_with(h: &Harness, opts: &Value, cred: Value) -> common::Reply {
    h.call(
        Method::POST,
        "/api/v1/auth/passkey",
        None,
        Some(json!({"ceremony_id": opts["ceremony_id"], "credential": cred, "device": {"name": "laptop", "platform": "web"}})),
    )
    .await
}

async fn audit(h: &Harness) -> Vec<ward_store::AuditRecord> {
    h.store.audit_events(0, 100_000).await.unwrap()
}

async fn credentials(h: &Harness, access: &str) -> Vec<Value> {
    h.get("/api/v1/me/webauthn/credentials", access).await.expect(200).body.as_array().unwrap().clone()
}

// ---- tests -----------------------------------------------------------------------------------

async fn two_credentials_each_work_as_second_factor_and_for_step_up(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let org = h.org("acme", vec![]).await;
    let a = h.account(&org, "a@acme", Role::Clinician).await;
    let s = h.login(&a).await;
    // The first credential needs the password, and brings recovery codes.
    h.post("/api/v1/me/webauthn/registrations", &s.access, json!({"password": "wrong"})).await.expect_problem(401, "invalid_credentials");
    let (mut k1, id1, body1) = register(&h, &s, "YubiKey").await;
    assert_eq!(body1["recovery_codes"].as_array().unwrap().len(), 10);
    assert_eq!(body1["credential"]["transports"], json!(["usb", "nfc"]));
    // A second one needs a recent step-up: the registration itself counted as one.
    let (mut k2, id2, body2) = register(&h, &s, "Laptop").await;
    assert!(body2["recovery_codes"].is_null());
    assert_ne!(id1, id2);
    let list = credentials(&h, &s.access).await;
    assert_eq!(list.iter().map(|c| c["label"].as_str().unwrap()).collect::<Vec<_>>(), ["YubiKey", "Laptop"]);

    // Each signs in as the second factor.
    let t1 = sign_in_with(&h, &a, &mut k1).await;
    let t2 = sign_in_with(&h, &a, &mut k2).await;
    h.get("/api/v1/me", &t1).await.expect(200);
    let list = credentials(&h, &t2).await;
    assert_eq!(list[0]["sign_count"], 1);
    assert_eq!(list[1]["sign_count"], 1);
    assert!(list.iter().all(|c| c["last_used_at"].is_string()));

    // Step-up with WebAuthn.
    let opts = h.post("/api/v1/me/step-up/webauthn/options", &t1, json!({})).await.expect(200).body;
    let cred = k2.get(&opts["options"]);
    let r = h.post("/api/v1/me/step-up/webauthn", &t1, json!({"ceremony_id": opts["ceremony_id"], "credential": cred})).await.expect(200);
    assert!(r.body["valid_until"].is_string());

    // Rename.
    let r = h
        .call(Method::PATCH, &format!("/api/v1/me/webauthn/credentials/{id2}"), Some(&t1), Some(json!({"label": "Work laptop"})))
        .await
        .expect(200);
    assert_eq!(r.body["label"], "Work laptop");

    // Removal (t1's step-up is fresh): the removed key no longer works.
    h.call(Method::DELETE, &format!("/api/v1/me/webauthn/credentials/{id1}"), Some(&t1), None).await.expect(204);
    assert_eq!(credentials(&h, &t1).await.len(), 1);
    let token = password_step(&h, &a).await;
    let opts = mfa_options(&h, &token).await;
    let cred = k1.get(&opts["options"]);
    mfa_with(&h, &token, &opts, cred).await.expect_problem(401, "webauthn_credential_unknown");

    let events = audit(&h).await;
    let count = |action: &str, outcome: &str| events.iter().filter(|e| e.action == action && e.outcome == outcome).count();
    assert_eq!(count("mfa.webauthn_register", "success"), 2);
    assert_eq!(count("mfa.webauthn_rename", "success"), 1);
    assert_eq!(count("mfa.webauthn_remove", "success"), 1);
    assert!(events.iter().any(|e| e.action == "auth.mfa" && e.outcome == "success" && e.detail.contains("\"webauthn\"")));
    assert!(events.iter().any(|e| e.action == "auth.step_up" && e.outcome == "success" && e.detail.contains("\"webauthn\"")));
    // Never the label or raw attestation in the audit log.
    assert!(events.iter().all(|e| !e.detail.contains("YubiKey") && !e.detail.contains("attestation")));
}

async fn passkey_sign_in_is_passwordless_and_counts_as_mfa(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let org = h.org("acme", vec![]).await;
    let a = h.account(&org, "a@acme", Role::Clinician).await;
    let s = h.login(&a).await;
    let (mut key, _, _) = register(&h, &s, "Phone").await;
    let opts = passkey_options(&h).await;
    assert!(opts["options"]["publicKey"].get("allowCredentials").is_none_or(|v| v.as_array().is_none_or(Vec::is_empty)));
    assert_eq!(opts["options"]["publicKey"]["userVerification"], "required");
    let cred = key.get(&opts["options"]);
    let r = passkey_with(&h, &opts, cred).await.expect(200);
    let access = r.body["access_token"].as_str().unwrap().to_owned();
    h.get("/api/v1/me", &access).await.expect(200);
    // The session is MFA-verified: a step-up-guarded action is not refused for step-up.
    let r = h.call(Method::DELETE, &format!("/api/v1/me/webauthn/credentials/{}", uuid::Uuid::new_v4()), Some(&access), None).await;
    r.expect_problem(404, "not_found");
    let events = audit(&h).await;
    assert!(events.iter().any(|e| e.action == "auth.login"
        && e.outcome == "success"
        && e.detail.contains("\"passkey\"")
        && e.detail.contains("\"mfa\":true")));

    // A disabled account cannot sign in with its passkey.
    let admin = h.account(&org, "admin@acme", Role::Admin).await;
    let admin_s = h.login_stepped_up(&admin).await;
    h.post(&format!("/api/v1/users/{}/disable", a.id), &admin_s.access, json!({})).await.expect(200);
    let opts = passkey_options(&h).await;
    let cred = key.get(&opts["options"]);
    passkey_with(&h, &opts, cred).await.expect_problem(403, "account_disabled");
}

async fn another_users_credential_is_refused_and_changes_nothing(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let org = h.org("acme", vec![]).await;
    let a = h.account(&org, "a@acme", Role::Clinician).await;
    let b = h.account(&org, "b@acme", Role::Clinician).await;
    let sa = h.login(&a).await;
    let sb = h.login(&b).await;
    let (_ka, _, _) = register(&h, &sa, "A's key").await;
    let (mut kb, _, _) = register(&h, &sb, "B's key").await;
    let before = credentials(&h, &sb.access).await;
    // A's sign-in answered with B's key.
    let token = password_step(&h, &a).await;
    let opts = mfa_options(&h, &token).await;
    let cred = kb.get(&opts["options"]);
    mfa_with(&h, &token, &opts, cred).await.expect_problem(401, "webauthn_credential_unknown");
    // B's key is untouched (counter, last use).
    assert_eq!(credentials(&h, &sb.access).await, before);
    let events = audit(&h).await;
    assert!(events.iter().any(|e| e.action == "auth.mfa" && e.outcome == "failure" && e.detail.contains("\"foreign_credential\"")));
    // A passkey answer whose user handle is not the credential's owner is refused too.
    let opts = passkey_options(&h).await;
    let mut cred = kb.get(&opts["options"]);
    cred["response"]["userHandle"] = json!(B64.encode(a.id.0.as_bytes()));
    passkey_with(&h, &opts, cred).await.expect_problem(401, "webauthn_credential_unknown");
    assert_eq!(credentials(&h, &sb.access).await, before);
}

async fn a_counter_that_goes_backwards_is_refused_and_flagged(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let org = h.org("acme", vec![]).await;
    let a = h.account(&org, "a@acme", Role::Clinician).await;
    let s = h.login(&a).await;
    let (mut key, id, _) = register(&h, &s, "Key").await;
    sign_in_with(&h, &a, &mut key).await;
    sign_in_with(&h, &a, &mut key).await; // counter 2
    // A clone still at counter 1.
    let token = password_step(&h, &a).await;
    let opts = mfa_options(&h, &token).await;
    let cred = key.sign(&opts["options"], 1, ORIGIN);
    mfa_with(&h, &token, &opts, cred).await.expect_problem(401, "webauthn_possible_clone");
    let list = credentials(&h, &s.access).await;
    assert_eq!(list[0]["sign_count"], 2, "the stored counter did not move");
    assert!(list[0]["clone_suspected_at"].is_string(), "the credential is flagged");
    let events = audit(&h).await;
    assert!(events.iter().any(|e| e.action == "auth.webauthn_clone_suspected" && e.target_id.as_deref() == Some(id.as_str())));
    assert!(events.iter().any(|e| e.action == "auth.mfa" && e.outcome == "failure" && e.detail.contains("\"counter_regression\"")));
    // The flagged credential is refused from then on, even with a forward counter.
    let token = password_step(&h, &a).await;
    let r = h.call(Method::POST, "/api/v1/auth/mfa/webauthn/options", None, Some(json!({"mfa_token": token}))).await;
    r.expect_problem(409, "invalid_state");
    let opts = passkey_options(&h).await;
    let cred = key.get(&opts["options"]);
    passkey_with(&h, &opts, cred).await.expect_problem(401, "webauthn_possible_clone");
}

async fn a_challenge_works_once_and_not_after_it_expires(backend: Backend) {
    let Some(h) = Harness::start_with(backend, |c| c.webauthn.challenge_ttl_secs = 1).await else { return };
    let org = h.org("acme", vec![]).await;
    let a = h.account(&org, "a@acme", Role::Clinician).await;
    let s = h.login(&a).await;
    let (mut key, _, _) = register(&h, &s, "Key").await;
    // Replay: the same answer twice.
    let opts = passkey_options(&h).await;
    let cred = key.get(&opts["options"]);
    passkey_with(&h, &opts, cred.clone()).await.expect(200);
    passkey_with(&h, &opts, cred).await.expect_problem(400, "webauthn_challenge_invalid");
    // A fresh answer to a used challenge.
    let cred = key.get(&opts["options"]);
    passkey_with(&h, &opts, cred).await.expect_problem(400, "webauthn_challenge_invalid");
    // A ceremony of another sign-in is not accepted for this one.
    let t1 = password_step(&h, &a).await;
    let t2 = password_step(&h, &a).await;
    let o1 = mfa_options(&h, &t1).await;
    let cred = key.get(&o1["options"]);
    mfa_with(&h, &t2, &o1, cred).await.expect_problem(400, "webauthn_challenge_invalid");
    // Expired.
    let opts = passkey_options(&h).await;
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let cred = key.get(&opts["options"]);
    passkey_with(&h, &opts, cred).await.expect_problem(400, "webauthn_challenge_invalid");
    let token = password_step(&h, &a).await;
    let opts = mfa_options(&h, &token).await;
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let cred = key.get(&opts["options"]);
    mfa_with(&h, &token, &opts, cred).await.expect_problem(400, "webauthn_challenge_invalid");
    let events = audit(&h).await;
    assert!(events.iter().filter(|e| e.detail.contains("\"challenge_invalid\"")).count() >= 4);
    // A signature over another origin is refused.
    let opts = passkey_options(&h).await;
    let cred = key.sign(&opts["options"], 1000, "https://evil.example");
    passkey_with(&h, &opts, cred).await.expect_problem(401, "webauthn_assertion_invalid");
}

async fn malformed_input_is_refused_with_problem_codes(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let org = h.org("acme", vec![]).await;
    let a = h.account(&org, "a@acme", Role::Clinician).await;
    let s = h.login(&a).await;
    let (mut key, _, _) = register(&h, &s, "Key").await;
    let before = credentials(&h, &s.access).await;
    let r = h.raw(Method::POST, "/api/v1/auth/passkey", None, "application/json", b"{\"ceremony_id\":".to_vec()).await;
    r.expect_problem(400, "malformed_json");
    let opts = passkey_options(&h).await;
    passkey_with(&h, &opts, json!({"id": "x"})).await.expect_problem(400, "invalid_body");
    // The malformed answer did not use up the ceremony.
    let cred = key.get(&opts["options"]);
    passkey_with(&h, &opts, cred).await.expect(200);
    // A tampered signature.
    let opts = passkey_options(&h).await;
    let mut cred = key.get(&opts["options"]);
    cred["response"]["signature"] = json!(B64.encode([0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01]));
    passkey_with(&h, &opts, cred).await.expect_problem(401, "webauthn_assertion_invalid");
    // Registration: a malformed response, a bad label, an unknown ceremony.
    let opts = h.post("/api/v1/me/webauthn/registrations", &s.access, json!({})).await.expect(200).body;
    let id = &opts["ceremony_id"];
    h.post("/api/v1/me/webauthn/credentials", &s.access, json!({"ceremony_id": id, "label": "x", "credential": {"id": 1}}))
        .await
        .expect_problem(400, "invalid_body");
    let (_, cred) = SoftKey::create(&opts["options"]);
    h.post("/api/v1/me/webauthn/credentials", &s.access, json!({"ceremony_id": id, "label": "  ", "credential": cred}))
        .await
        .expect_problem(422, "validation_failed");
    h.post("/api/v1/me/webauthn/credentials", &s.access, json!({"ceremony_id": uuid::Uuid::new_v4(), "label": "x", "credential": cred}))
        .await
        .expect_problem(400, "webauthn_challenge_invalid");
    // A registration answered for another challenge.
    let mut bad = cred.clone();
    let other = h.post("/api/v1/me/webauthn/registrations", &s.access, json!({})).await.expect(200).body;
    let (_, other_cred) = SoftKey::create(&other["options"]);
    bad["response"]["clientDataJSON"] = other_cred["response"]["clientDataJSON"].clone();
    h.post("/api/v1/me/webauthn/credentials", &s.access, json!({"ceremony_id": id, "label": "x", "credential": bad}))
        .await
        .expect_problem(422, "webauthn_registration_invalid");
    let after = credentials(&h, &s.access).await;
    assert_eq!(after.len(), before.len());
    h.call(
        Method::PATCH,
        &format!("/api/v1/me/webauthn/credentials/{}", uuid::Uuid::new_v4()),
        Some(&s.access),
        Some(json!({"label": "x"})),
    )
    .await
    .expect_problem(404, "not_found");
}

async fn removal_keeps_the_last_required_factor(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let org = h.org("acme", vec![Role::Clinician]).await;
    let a = h.account(&org, "a@acme", Role::Clinician).await;
    // Sign in (MFA enrolment restriction) and register the first key with the password.
    let r = h
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"login": a.login, "password": PASSWORD, "device": {"name": "t", "platform": "cli"}})),
        )
        .await
        .expect(200);
    assert_eq!(r.body["tokens"]["restriction"], "mfa_enrollment");
    let access = r.body["tokens"]["access_token"].as_str().unwrap().to_owned();
    let s = Session {
        access: access.clone(),
        refresh: String::new(),
        session_id: r.body["tokens"]["session_id"].as_str().unwrap().into(),
        device_id: String::new(),
        account: a.clone(),
    };
    let (mut key, id, _) = register(&h, &s, "Only key").await;
    // The enrolment restriction is lifted.
    assert!(h.get("/api/v1/me", &access).await.expect(200).body["restriction"].is_null());
    // The only second factor of a role that requires MFA cannot be removed.
    h.call(Method::DELETE, &format!("/api/v1/me/webauthn/credentials/{id}"), Some(&access), None).await.expect_problem(403, "forbidden");
    assert_eq!(credentials(&h, &access).await.len(), 1);
    // With a second key registered, the first can go; then the second is the last one again.
    let (_k2, id2, _) = register(&h, &s, "Second key").await;
    h.call(Method::DELETE, &format!("/api/v1/me/webauthn/credentials/{id}"), Some(&access), None).await.expect(204);
    h.call(Method::DELETE, &format!("/api/v1/me/webauthn/credentials/{id2}"), Some(&access), None).await.expect_problem(403, "forbidden");
    let events = audit(&h).await;
    assert!(events.iter().any(|e| e.action == "mfa.webauthn_remove" && e.outcome == "denied" && e.detail.contains("last_second_factor")));
    // The removed key no longer signs in; the other does.
    let token = password_step(&h, &a).await;
    let opts = mfa_options(&h, &token).await;
    let cred = key.get(&opts["options"]);
    mfa_with(&h, &token, &opts, cred).await.expect_problem(401, "webauthn_credential_unknown");
}

/// A user whose only factor is a key cannot add TOTP from a session without a recent step-up
/// (a stolen session and the password are not enough), and adding it keeps the recovery codes.
async fn totp_next_to_a_key_needs_a_step_up_and_keeps_recovery_codes(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let org = h.org("acme", vec![]).await;
    let a = h.account(&org, "a@acme", Role::Clinician).await;
    // A second session, signed in before the key existed: never stepped up.
    let stolen = h.login(&a).await;
    let s = h.login(&a).await;
    let (_key, _, body) = register(&h, &s, "Key").await;
    let recovery: Vec<String> = serde_json::from_value(body["recovery_codes"].clone()).unwrap();
    h.post("/api/v1/me/mfa/totp", &stolen.access, json!({"password": PASSWORD})).await.expect_problem(401, "step_up_required");
    // Begun from the stepped-up session, confirming from the other one is refused too.
    h.post("/api/v1/me/mfa/totp", &s.access, json!({"password": PASSWORD})).await.expect(200);
    let secret = h.store.credentials_by_id(org.id, a.id).await.unwrap().totp_pending_secret.unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let code = ward_server::secrets::totp(&secret, &a.login).unwrap().generate(now).to_string();
    h.post("/api/v1/me/mfa/totp/confirm", &stolen.access, json!({"code": code})).await.expect_problem(401, "step_up_required");
    assert!(h.store.credentials_by_id(org.id, a.id).await.unwrap().totp_secret.is_none());
    let r = h.post("/api/v1/me/mfa/totp/confirm", &s.access, json!({"code": code})).await.expect(200);
    assert_eq!(r.body["recovery_codes"], json!([]), "no new codes next to an existing factor");
    // The codes from the key's registration still work.
    h.post("/api/v1/me/step-up", &stolen.access, json!({"recovery_code": recovery[0]})).await.expect(200);
    let events = audit(&h).await;
    assert!(events.iter().any(|e| e.action == "auth.step_up_required" && e.detail.contains("\"totp_enroll\"")));
}

/// Someone whose only factor is a key (no TOTP) and who has no key at hand steps up with a
/// recovery code from the key's registration; each code works once, and a TOTP code is
/// refused clearly since there is no authenticator to check it against.
async fn a_key_only_user_steps_up_with_a_recovery_code(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let org = h.org("acme", vec![]).await;
    let a = h.account(&org, "a@acme", Role::Clinician).await;
    // Signed in before the key existed (the harness's sign-in of an account with a second
    // factor would replace the recovery codes) and never stepped up.
    let other = h.login(&a).await;
    let s = h.login(&a).await;
    let (_key, _, body) = register(&h, &s, "Key").await;
    let recovery: Vec<String> = serde_json::from_value(body["recovery_codes"].clone()).unwrap();
    assert!(h.store.credentials_by_id(org.id, a.id).await.unwrap().totp_secret.is_none());
    h.post("/api/v1/me/step-up", &other.access, json!({"code": "123456"})).await.expect_problem(400, "invalid_body");
    let r = h.post("/api/v1/me/step-up", &other.access, json!({"recovery_code": recovery[1]})).await.expect(200);
    assert!(r.body["valid_until"].is_string());
    h.post("/api/v1/me/step-up", &other.access, json!({"recovery_code": recovery[1]})).await.expect_problem(401, "invalid_mfa_code");
    // Someone with no second factor at all is told to enrol one.
    let b = h.account(&org, "b@acme", Role::Clinician).await;
    let sb = h.login(&b).await;
    h.post("/api/v1/me/step-up", &sb.access, json!({"recovery_code": "abcd-efgh"})).await.expect_problem(403, "mfa_enrollment_required");
    let events = audit(&h).await;
    assert!(events.iter().any(|e| e.action == "auth.step_up" && e.outcome == "success" && e.detail.contains("\"recovery_code\"")));
}

/// A key flagged as a possible clone does not count as the factor that would remain: the
/// other key of a role that requires MFA cannot be removed.
async fn a_clone_flagged_key_is_not_a_remaining_factor(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let org = h.org("acme", vec![Role::Clinician]).await;
    let a = h.account(&org, "a@acme", Role::Clinician).await;
    let s = h.login(&a).await;
    let (_k1, id1, _) = register(&h, &s, "Good").await;
    let (mut k2, _, _) = register(&h, &s, "Cloned").await;
    sign_in_with(&h, &a, &mut k2).await;
    sign_in_with(&h, &a, &mut k2).await;
    let token = password_step(&h, &a).await;
    let opts = mfa_options(&h, &token).await;
    let cred = k2.sign(&opts["options"], 1, ORIGIN);
    mfa_with(&h, &token, &opts, cred).await.expect_problem(401, "webauthn_possible_clone");
    // The registering session's step-up is still fresh.
    h.call(Method::DELETE, &format!("/api/v1/me/webauthn/credentials/{id1}"), Some(&s.access), None).await.expect_problem(403, "forbidden");
    assert_eq!(credentials(&h, &s.access).await.len(), 2);
}

/// The password asked again at registration (or TOTP enrolment) goes through the sign-in
/// lockout: a hijacked session cannot guess passwords without limit. Every refusal audited.
async fn wrong_passwords_in_a_session_count_towards_the_lockout(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let org = h.org("acme", vec![]).await;
    let a = h.account(&org, "a@acme", Role::Clinician).await;
    let s = h.login(&a).await;
    for _ in 0..3 {
        h.post("/api/v1/me/webauthn/registrations", &s.access, json!({"password": "wrong"}))
            .await
            .expect_problem(401, "invalid_credentials");
    }
    for _ in 0..2 {
        h.post("/api/v1/me/mfa/totp", &s.access, json!({"password": "wrong"})).await.expect_problem(401, "invalid_credentials");
    }
    // Locked now: even the right password is refused, here and at sign-in.
    h.post("/api/v1/me/webauthn/registrations", &s.access, json!({"password": PASSWORD})).await.expect_problem(429, "login_locked");
    h.post("/api/v1/me/mfa/totp", &s.access, json!({"password": PASSWORD})).await.expect_problem(429, "login_locked");
    h.call(
        Method::POST,
        "/api/v1/auth/login",
        None,
        Some(json!({"login": a.login, "password": PASSWORD, "device": {"name": "t", "platform": "cli"}})),
    )
    .await
    .expect_problem(429, "login_locked");
    let events = audit(&h).await;
    let failed = |reason: &str| {
        events.iter().filter(|e| e.action == "auth.login" && e.outcome == "failure" && e.detail.contains(&format!("\"{reason}\""))).count()
    };
    assert_eq!(failed("reauth_wrong_password"), 5);
    assert!(failed("locked") >= 2);
}

/// The unauthenticated passkey endpoints count against the address's allowance: each options
/// call and each failed finish; over it, both answer 429 rate_limited.
async fn passkey_endpoints_are_rate_limited_per_address(backend: Backend) {
    let Some(h) = Harness::start_with(backend, |c| c.sessions.failed_logins_per_minute_per_address = 4).await else { return };
    let opts = passkey_options(&h).await;
    passkey_options(&h).await;
    // A failed finish counts too (unknown ceremony).
    let bad = json!({"ceremony_id": uuid::Uuid::new_v4(), "options": opts["options"]});
    passkey_with(&h, &bad, json!({"id": "x", "rawId": "x", "type": "public-key", "response": {}}))
        .await
        .expect_problem(400, "invalid_body");
    passkey_options(&h).await;
    h.call(Method::POST, "/api/v1/auth/passkey/options", None, None).await.expect_problem(429, "rate_limited");
    passkey_with(&h, &opts, json!({})).await.expect_problem(429, "rate_limited");
    let events = audit(&h).await;
    assert!(events.iter().any(|e| e.action == "auth.login" && e.detail.contains("\"address_limited\"")));
}
