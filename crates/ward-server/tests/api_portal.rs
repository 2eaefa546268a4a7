//! Patient portal one-time sign-in links over real HTTPS: minted by whoever may send the
//! patient notices, exchanged once for a session (or a second-factor challenge), refused when
//! used, expired, unknown or for a disabled account, rate-limited per address, and never
//! written to the audit log.

mod common;

use common::{Harness, Session};
use reqwest::Method;
use serde_json::{Value, json};
use ward_domain::ids::PatientId;
use ward_domain::role::Role;
use ward_store::{Backend, on_both_backends};

on_both_backends!(portal_links);

fn link_path(p: &str) -> String {
    format!("/api/v1/patients/{p}/portal-link")
}

fn token_of(url: &str) -> String {
    url.rsplit_once("/#/link/").expect("a portal link").1.to_owned()
}

async fn exchange(h: &Harness, token: &str) -> common::Reply {
    h.call(Method::POST, "/api/v1/auth/link", None, Some(json!({"token": token, "device": {"name": "phone", "platform": "web"}}))).await
}

async fn mint(h: &Harness, by: &Session, p: &str) -> String {
    let r = h.call(Method::POST, &link_path(p), Some(&by.access), None).await.expect(201);
    assert!(r.body["expires_at"].is_string(), "{}", r.body);
    let url = r.body["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with("https://portal.example.test/#/link/wpl_"), "{url}");
    token_of(&url)
}

async fn portal_links(backend: Backend) {
    let Some(h) = Harness::start_with(backend, |c| {
        c.portal.public_url = Some("https://portal.example.test/".into());
        c.sessions.failed_logins_per_minute_per_address = 8;
    })
    .await
    else {
        return;
    };
    let (a, b) = (h.org("portala", vec![]).await, h.org("portalb", vec![]).await);
    let doc = h.login(&h.account(&a, "doc@portala", Role::Clinician).await).await;
    let outsider = h.login(&h.account(&a, "other-doc@portala", Role::Clinician).await).await;
    let admin = h.login(&h.account(&a, "admin@portala", Role::Admin).await).await;
    let b_doc = h.login(&h.account(&b, "doc@portalb", Role::Clinician).await).await;
    let new_patient = |mrn: &'static str, team: Value| {
        let (h, doc) = (&h, &doc);
        async move {
            let r = h.post("/api/v1/patients", &doc.access, json!({"mrn": mrn, "display_name": "Jamie Canary", "care_team": team})).await;
            r.expect(201).body["id"].as_str().unwrap().to_owned()
        }
    };
    let p = new_patient("PL-1", json!([doc.account.id])).await;
    let pid = PatientId(p.parse().unwrap());
    let acc = h.account_for_patient(&a, "jamie@portala", Role::Patient, Some(pid)).await;
    let patient = h.login(&acc).await;
    let lonely = new_patient("PL-2", json!([doc.account.id])).await;

    // --- who may mint ---------------------------------------------------------------------------
    h.call(Method::POST, &link_path(&p), Some(&outsider.access), None).await.expect_problem(403, "forbidden");
    h.call(Method::POST, &link_path(&p), Some(&admin.access), None).await.expect(403);
    h.call(Method::POST, &link_path(&p), Some(&patient.access), None).await.expect(403);
    h.call(Method::POST, &link_path(&p), Some(&b_doc.access), None).await.expect(404);
    h.call(Method::POST, &link_path(&lonely), Some(&doc.access), None).await.expect_problem(409, "patient_account_required");

    // --- single use -----------------------------------------------------------------------------
    let token = mint(&h, &doc, &p).await;
    let r = exchange(&h, &token).await.expect(200);
    assert_eq!(r.body["status"], "authenticated", "{}", r.body);
    let access = r.body["tokens"]["access_token"].as_str().unwrap().to_owned();
    let me = h.get("/api/v1/me", &access).await.expect(200);
    assert_eq!(me.body["user"]["id"], json!(acc.id));
    let again = exchange(&h, &token).await.expect_problem(401, "invalid_portal_link");
    let unknown = exchange(&h, "wpl_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").await.expect_problem(401, "invalid_portal_link");
    assert_eq!(again.body["detail"], unknown.body["detail"], "used and unknown links answer alike");
    exchange(&h, "not-a-link").await.expect_problem(401, "invalid_portal_link");

    // --- expiry (a link minted already expired) ---------------------------------------------------
    let stale = ward_server::secrets::new_token(ward_server::secrets::PORTAL_LINK_PREFIX);
    let past = ward_store::now_ms() - 1;
    let hash = ward_server::secrets::token_hash(&stale);
    h.store.create_portal_link(a.id, doc.account.id, pid, hash, past, Harness::meta()).await.unwrap();
    let expired = exchange(&h, &stale).await.expect_problem(401, "invalid_portal_link");
    assert_eq!(expired.body["detail"], unknown.body["detail"], "expired and unknown links answer alike");

    // --- a second factor is still asked for -----------------------------------------------------
    h.enroll_mfa(&acc).await;
    let token = mint(&h, &doc, &p).await;
    let r = exchange(&h, &token).await.expect(200);
    assert_eq!(r.body["status"], "mfa_required", "{}", r.body);
    let code = h.fresh_recovery_code(&acc).await;
    let t = h.call(Method::POST, "/api/v1/auth/mfa", None, Some(json!({"mfa_token": r.body["mfa_token"], "recovery_code": code}))).await;
    assert!(t.expect(200).body["access_token"].is_string());
    exchange(&h, &token).await.expect_problem(401, "invalid_portal_link");

    // --- a disabled account is refused ----------------------------------------------------------
    let token = mint(&h, &doc, &p).await;
    h.store.set_user_disabled(a.id, acc.id, true, None, Harness::meta()).await.unwrap();
    exchange(&h, &token).await.expect_problem(403, "account_disabled");
    h.call(Method::POST, &link_path(&p), Some(&doc.access), None).await.expect_problem(409, "patient_account_required");

    // --- the audit log records minting and redemption, never the token ---------------------------
    let events = h.store.audit_events(0, 100_000).await.unwrap();
    let n = |op: &str, outcome: &str| {
        events.iter().filter(|e| e.action == "portal.link" && e.outcome == outcome && e.detail.contains(&format!("\"{op}\""))).count()
    };
    assert_eq!(n("create", "success"), 4, "three over the API, one in the store");
    assert_eq!(n("redeem", "success"), 2);
    assert!(n("redeem", "failure") >= 3, "used, expired and disabled redemptions are audited");
    assert!(events.iter().any(|e| e.action == "portal.link" && e.outcome == "denied"));
    for e in &events {
        let all = format!("{} {} {:?} {:?}", e.action, e.detail, e.target_id, e.request_id);
        assert!(!all.contains("wpl_") && !all.contains(&token[4..]), "a link token reached the audit log: {all}");
    }

    // --- failures are rate-limited per address --------------------------------------------------
    let mut limited = false;
    for _ in 0..12 {
        let r = exchange(&h, "wpl_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB").await;
        if r.status.as_u16() == 429 {
            assert_eq!(r.code(), "rate_limited");
            limited = true;
            break;
        }
        assert_eq!(r.code(), "invalid_portal_link");
    }
    assert!(limited, "repeated bad links from one address are rate-limited");
}
