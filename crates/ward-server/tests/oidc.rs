//! Single sign-on against a real OpenID Connect provider: node-oidc-provider
//! (`oidc-tests/provider.mjs`, installed by `npm ci` in oidc-tests/), on 127.0.0.1 port 0,
//! driven through HTTP the way a browser would (redirects followed by hand, the provider's
//! development login and consent forms submitted, cookies kept).
//!
//! Peers: Node.js (`WARD_TEST_NODE`) and `oidc-tests/node_modules` (or `WARD_TEST_OIDC_DIR`),
//! set up by scripts/test. Missing peers print SKIPPED, except with CI=true, where they fail.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::Harness;
use reqwest::Method;
use serde_json::{Value, json};
use ward_domain::role::Role;
use ward_store::{Backend, on_both_backends};

const ORG: &str = "ssoclinic";
const HANDOFF_COOKIE: &str = "__Host-ward-sso-handoff";

fn oidc_dir() -> PathBuf {
    std::env::var("WARD_TEST_OIDC_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../oidc-tests").canonicalize().expect("oidc-tests exists"))
}

/// Node and the installed provider package, or `None` (skip) outside CI.
fn peers() -> Option<(String, PathBuf)> {
    let dir = oidc_dir();
    let node = std::env::var("WARD_TEST_NODE").ok();
    match (node, dir.join("node_modules/oidc-provider").is_dir()) {
        (Some(n), true) => Some((n, dir)),
        _ => {
            assert!(
                !ward_store::testing::pg_required(),
                "the single sign-on tests need WARD_TEST_NODE and `npm ci` in oidc-tests/ when CI=true (scripts/test sets them up)"
            );
            eprintln!("SKIPPED: the single sign-on tests need WARD_TEST_NODE and oidc-tests/node_modules (run scripts/test)");
            None
        }
    }
}

/// The provider process, killed when dropped.
struct Provider {
    child: Child,
    issuer: String,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_provider(node: &str, dir: &PathBuf, h: &Harness) -> Provider {
    let cert = &h.running.as_ref().unwrap().cert_path;
    let mut child = Command::new(node)
        .arg("provider.mjs")
        .current_dir(dir)
        .env("WARD_URL", &h.url)
        .env("WARD_ORG", ORG)
        .env("NODE_EXTRA_CA_CERTS", cert)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node starts");
    let mut line = String::new();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    out.read_line(&mut line).expect("the provider prints its address");
    // Keep reading: a closed pipe would kill the provider at its next write.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let ready: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("the provider did not start: {line:?}"));
    Provider { child, issuer: ready["issuer"].as_str().unwrap().to_owned() }
}

/// A browser: Ward's certificate trusted, no automatic redirects, every cookie sent back
/// everywhere (Ward and the provider are both on 127.0.0.1; neither minds the other's).
struct Browser {
    http: reqwest::Client,
    cookies: BTreeMap<String, String>,
}

struct Page {
    status: u16,
    location: Option<String>,
    set_cookies: Vec<String>,
    body: String,
}

impl Browser {
    fn new(h: &Harness) -> Self {
        let http = reqwest::Client::builder()
            .use_preconfigured_tls((*h.tls).clone())
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        Browser { http, cookies: BTreeMap::new() }
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    async fn go(&mut self, method: Method, url: &str, form: Option<&[(&str, &str)]>) -> Page {
        let mut req = self.http.request(method, url);
        if !self.cookies.is_empty() {
            req = req.header("cookie", self.cookie_header());
        }
        if let Some(f) = form {
            let body: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(f.iter()).finish();
            req = req.header("content-type", "application/x-www-form-urlencoded").body(body);
        }
        let res = req.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
        let set_cookies: Vec<String> = res.headers().get_all("set-cookie").iter().map(|c| c.to_str().unwrap().to_owned()).collect();
        for c in res.headers().get_all("set-cookie") {
            let c = c.to_str().unwrap();
            let pair = c.split(';').next().unwrap();
            if let Some((k, v)) = pair.split_once('=') {
                if v.is_empty() || c.contains("Max-Age=0") || c.contains("expires=Thu, 01 Jan 1970") {
                    self.cookies.remove(k);
                } else {
                    self.cookies.insert(k.to_owned(), v.to_owned());
                }
            }
        }
        let status = res.status().as_u16();
        let base = res.url().clone();
        let location = res.headers().get("location").map(|l| base.join(l.to_str().unwrap()).unwrap().to_string());
        let body = res.text().await.unwrap_or_default();
        Page { status, location, set_cookies, body }
    }
}

/// The `action` of the first form in an HTML page, made absolute.
fn form_action(page: &str, base: &str) -> String {
    let at = page.find("action=\"").expect("a form") + "action=\"".len();
    let end = at + page[at..].find('"').unwrap();
    reqwest::Url::parse(base).unwrap().join(&page[at..end].replace("&amp;", "&")).unwrap().to_string()
}

fn hidden_value(page: &str, name: &str) -> String {
    let key = format!("name=\"{name}\" value=\"");
    let at = page.find(&key).unwrap_or_else(|| panic!("no {name} in {page}")) + key.len();
    page[at..at + page[at..].find('"').unwrap()].to_owned()
}

/// Starts at Ward, signs in at the provider as `login` (and consents), and stops at Ward's
/// callback URL, which is returned unvisited.
async fn to_callback(b: &mut Browser, h: &Harness, login: &str) -> String {
    let start = b.go(Method::GET, &format!("{}/api/v1/auth/oidc/{ORG}/start", h.url), None).await;
    assert_eq!(start.status, 303, "{}", start.body);
    let mut next = start.location.expect("to the provider");
    assert!(next.contains("code_challenge_method=S256") && next.contains("nonce=") && next.contains("state="), "{next}");
    for _ in 0..12 {
        if next.starts_with(&format!("{}/api/v1/auth/oidc/callback", h.url)) {
            return next;
        }
        let page = b.go(Method::GET, &next, None).await;
        if let Some(l) = page.location {
            next = l;
            continue;
        }
        assert_eq!(page.status, 200, "{next}: {}", page.body);
        let action = form_action(&page.body, &next);
        let answer = if page.body.contains("value=\"login\"") {
            b.go(Method::POST, &action, Some(&[("prompt", "login"), ("login", login), ("password", "anything")])).await
        } else {
            b.go(Method::POST, &action, Some(&[("prompt", "consent")])).await
        };
        next = answer.location.unwrap_or_else(|| panic!("the form at {action} did not redirect: {}", answer.body));
    }
    panic!("the provider never sent the browser back to Ward");
}

/// Signs the browser out at the provider, which then calls Ward's back-channel logout with a
/// token naming that provider session (`sid`).
async fn sign_out_at_provider(b: &mut Browser, p: &Provider) {
    let end = b.go(Method::GET, &format!("{}/session/end", p.issuer), None).await;
    assert_eq!(end.status, 200, "{}", end.body);
    let xsrf = hidden_value(&end.body, "xsrf");
    let confirm = form_action(&end.body, &p.issuer);
    let out = b.go(Method::POST, &confirm, Some(&[("xsrf", xsrf.as_str()), ("logout", "yes")])).await;
    assert!(out.status == 303 || out.status == 200, "{}", out.body);
}

/// Posts a logout token to the organisation's back-channel logout endpoint.
async fn post_logout(h: &Harness, slug: &str, token: &str) -> (u16, String) {
    let http = reqwest::Client::builder().use_preconfigured_tls((*h.tls).clone()).build().unwrap();
    let r = http
        .post(format!("{}/api/v1/auth/oidc/{slug}/backchannel-logout", h.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("logout_token={token}"))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

/// Signs in at the provider as `login` and through Ward's callback; the browser's hand-over.
async fn sso(b: &mut Browser, h: &Harness, login: &str) -> String {
    let cb = to_callback(b, h, login).await;
    handoff(b, h, &cb).await
}

/// The provider settings `configure` stores, with another issuer.
fn provider_body(issuer: &str) -> Value {
    json!({
        "issuer": issuer,
        "client_id": "ward",
        "client_secret": "ward-test-secret",
        "scopes": ["profile", "groups"],
        "role_claim": "groups",
        "role_map": [{"value": "ward-nurses", "role": "nurse"}],
        "jit_enabled": true
    })
}

/// Visits the callback and expects the hand-over to the web app; returns the token.
async fn handoff(b: &mut Browser, h: &Harness, callback: &str) -> String {
    let page = b.go(Method::GET, callback, None).await;
    assert_eq!(page.status, 303, "{}", page.body);
    let to = page.location.unwrap();
    let prefix = format!("{}/#/sso/", h.url);
    assert!(to.starts_with(&prefix), "{to}");
    assert!(!to.contains("wat_") && !to.contains("wrt_"), "no session token in a URL");
    // The hand-over is bound to this browser by a cookie scripts cannot read and other sites
    // cannot make it send.
    let bind = page.set_cookies.iter().find(|c| c.starts_with(&format!("{HANDOFF_COOKIE}="))).expect("a hand-over cookie");
    for attr in ["; Path=/;", "; Secure", "; HttpOnly", "; SameSite=Strict"] {
        assert!(bind.contains(attr), "{attr} missing: {bind}");
    }
    to[prefix.len()..].to_owned()
}

/// Redeems a hand-over from a browser, with that browser's cookies (as the web app's
/// same-origin fetch sends them).
async fn complete(b: &Browser, h: &Harness, token: &str) -> common::Reply {
    let mut req = b.http.post(format!("{}/api/v1/auth/oidc/complete", h.url));
    if !b.cookies.is_empty() {
        req = req.header("cookie", b.cookie_header());
    }
    let res = req.json(&json!({"token": token, "device": {"name": "browser", "platform": "web"}})).send().await.unwrap();
    let (status, headers) = (res.status(), res.headers().clone());
    let text = res.text().await.unwrap_or_default();
    common::Reply { status, headers, body: serde_json::from_str(&text).unwrap_or(Value::Null) }
}

/// Redeems a hand-over with no cookies at all (a link opened in someone else's browser).
async fn complete_bare(h: &Harness, token: &str) -> common::Reply {
    h.call(
        Method::POST,
        "/api/v1/auth/oidc/complete",
        None,
        Some(json!({"token": token, "device": {"name": "browser", "platform": "web"}})),
    )
    .await
}

async fn configure(h: &Harness, p: &Provider) -> (common::Account, common::Session) {
    let org = h.org(ORG, vec![]).await;
    let admin = h.account(&org, "sso-admin", Role::Admin).await;
    let s = h.login_stepped_up(&admin).await;
    let r = h.call(Method::PUT, "/api/v1/admin/oidc", Some(&s.access), Some(provider_body(&p.issuer))).await.expect(200);
    assert_eq!(r.body["has_client_secret"], true);
    assert!(r.body.get("client_secret").is_none(), "the secret is never returned: {}", r.body);
    assert_eq!(r.body["redirect_uri"], format!("{}/api/v1/auth/oidc/callback", h.url));
    (admin, s)
}

// Every test runs on SQLite and on PostgreSQL.
on_both_backends!(
    sso_login_creates_the_account_with_the_mapped_role_refuses_replays_and_back_channel_logout_ends_the_session,
    back_channel_logout_tokens_are_checked_and_work_once,
    provider_settings_are_admin_only_validated_and_need_a_step_up,
    a_hand_over_is_redeemed_only_in_the_browser_the_callback_sent_it_to,
    a_new_issuer_drops_the_old_links_so_its_subjects_cannot_reach_old_accounts,
    back_channel_logout_ends_sso_sessions_opened_after_wards_second_factor_but_never_password_sessions,
    logout_failures_are_limited_apart_from_sign_ins_and_replays_of_valid_tokens_do_not_count,
    anonymous_sso_starts_are_rate_limited_per_address,
    admins_link_and_unlink_existing_accounts,
    the_redirect_uri_comes_from_configuration_or_a_loopback_host_only,
);

async fn sso_login_creates_the_account_with_the_mapped_role_refuses_replays_and_back_channel_logout_ends_the_session(backend: Backend) {
    let Some((node, dir)) = peers() else { return };
    // None: PostgreSQL is not running (outside CI; the harness says so).
    let Some(h) = Harness::start_with(backend, |c| c.oidc.allow_http_loopback = true).await else { return };
    let p = start_provider(&node, &dir, &h);
    let (_, admin) = configure(&h, &p).await;

    // The whole login: Ward → provider login and consent → Ward callback → web app hand-over.
    let mut b = Browser::new(&h);
    let callback = to_callback(&mut b, &h, "nurse-jo").await;
    let token = handoff(&mut b, &h, &callback).await;
    let r = complete(&b, &h, &token).await.expect(200);
    assert_eq!(r.body["status"], "authenticated", "{}", r.body);
    let access = r.body["tokens"]["access_token"].as_str().unwrap().to_owned();
    let me = h.get("/api/v1/me", &access).await.expect(200);
    assert_eq!(me.body["user"]["role"], "nurse", "JIT account with the mapped role: {}", me.body);
    assert_eq!(me.body["user"]["display_name"], "Test nurse-jo");

    // Replays change nothing: the same callback (state spent) and the same hand-over.
    let again = b.go(Method::GET, &callback, None).await;
    assert_eq!(again.status, 400, "{}", again.body);
    let problem: Value = serde_json::from_str(&again.body).unwrap();
    assert_eq!(problem["code"], "oidc_state_invalid");
    complete(&b, &h, &token).await.expect_problem(401, "oidc_handoff_invalid");

    // A second sign-in by the same person finds the same account (linked by subject).
    let mut b2 = Browser::new(&h);
    let callback2 = to_callback(&mut b2, &h, "nurse-jo").await;
    let token2 = handoff(&mut b2, &h, &callback2).await;
    let r2 = complete(&b2, &h, &token2).await.expect(200);
    let access2 = r2.body["tokens"]["access_token"].as_str().unwrap().to_owned();
    assert_eq!(h.get("/api/v1/me", &access2).await.expect(200).body["user"]["id"], me.body["user"]["id"]);

    // No escalation: a provider group that is not mapped gives no role (no fallback set).
    let mut b3 = Browser::new(&h);
    let cb3 = to_callback(&mut b3, &h, "boss-al").await;
    let refused = b3.go(Method::GET, &cb3, None).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(refused.body.contains("oidc_no_role"), "{}", refused.body);

    // A callback carried to another browser (no binding cookie) is refused, and spends the state.
    let mut b4 = Browser::new(&h);
    let cb4 = to_callback(&mut b4, &h, "nurse-kim").await;
    let stranger = Browser::new(&h).go(Method::GET, &cb4, None).await;
    assert_eq!(stranger.status, 400, "{}", stranger.body);
    assert_eq!(b4.go(Method::GET, &cb4, None).await.status, 400);

    // Refusals are audited with their reason.
    let events = h.get("/api/v1/audit/events?action=oidc.login", &admin.access).await.expect(200);
    let text = events.body.to_string();
    for reason in ["state_replayed", "no_role", "browser_mismatch"] {
        assert!(text.contains(reason), "no oidc.login refusal {reason}: {text}");
    }

    // Back-channel logout: the user signs out at the provider in the first browser, which
    // calls Ward with that provider session's sid: that Ward session ends, the one opened
    // from the other browser (another provider session) stays.
    sign_out_at_provider(&mut b, &p).await;
    h.get("/api/v1/me", &access).await.expect_problem(401, "session_ended");
    h.get("/api/v1/me", &access2).await.expect(200);
}

async fn back_channel_logout_tokens_are_checked_and_work_once(backend: Backend) {
    let Some((node, dir)) = peers() else { return };
    let Some(h) = Harness::start_with(backend, |c| c.oidc.allow_http_loopback = true).await else { return };
    let p = start_provider(&node, &dir, &h);
    configure(&h, &p).await;
    let mut b = Browser::new(&h);
    let cb = to_callback(&mut b, &h, "nurse-lee").await;
    let token = handoff(&mut b, &h, &cb).await;
    let access = complete(&b, &h, &token).await.expect(200).body["tokens"]["access_token"].as_str().unwrap().to_owned();

    let http = reqwest::Client::builder().use_preconfigured_tls((*h.tls).clone()).build().unwrap();
    let logout = |t: String| {
        let http = http.clone();
        let url = format!("{}/api/v1/auth/oidc/{ORG}/backchannel-logout", h.url);
        async move {
            let r = http
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("logout_token={t}"))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.text().await.unwrap())
        }
    };
    // Garbage and a tampered signature: the standard's error form, nothing changes.
    let (status, body) = logout("not-a-jwt".into()).await;
    assert_eq!(status, 400);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["error"], "invalid_request");
    let good = b.go(Method::GET, &format!("{}/test/logout-token?sub=nurse-lee", p.issuer), None).await.body;
    let mut tampered = good.clone();
    tampered.pop();
    tampered.push(if good.ends_with('A') { 'B' } else { 'A' });
    assert_eq!(logout(tampered).await.0, 400);
    h.get("/api/v1/me", &access).await.expect(200);

    // The real token ends the session; the same token again is refused (jti replay).
    let (status, body) = logout(good.clone()).await;
    assert_eq!(status, 200, "{body}");
    h.get("/api/v1/me", &access).await.expect_problem(401, "session_ended");
    let (status, body) = logout(good).await;
    assert_eq!(status, 400);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["error"], "invalid_request");
}

async fn provider_settings_are_admin_only_validated_and_need_a_step_up(backend: Backend) {
    let Some(h) = Harness::start_with(backend, |c| c.oidc.allow_http_loopback = true).await else { return };
    let org = h.org("ssoconf", vec![]).await;
    let admin = h.account(&org, "conf-admin", Role::Admin).await;
    let nurse = h.account(&org, "conf-nurse", Role::Nurse).await;
    let body = json!({"issuer": "https://idp.example.org", "client_id": "ward", "client_secret": "s3cret-canary",
        "role_map": [{"value": "admins", "role": "admin"}], "jit_enabled": true, "jit_default_role": "staff"});
    let n = h.login(&nurse).await;
    h.call(Method::PUT, "/api/v1/admin/oidc", Some(&n.access), Some(body.clone())).await.expect_problem(403, "forbidden");
    let plain = h.login(&admin).await;
    h.enroll_mfa(&admin).await;
    let r = h.call(Method::PUT, "/api/v1/admin/oidc", Some(&plain.access), Some(body.clone())).await;
    assert_eq!(r.status.as_u16(), 401, "a step-up is needed: {}", r.body);
    let s = h.login_stepped_up(&admin).await;
    // A privileged fallback, a patient mapping and a plain-http issuer are refused.
    for bad in [
        json!({"issuer": "https://idp.example.org", "client_id": "ward", "jit_default_role": "admin"}),
        json!({"issuer": "https://idp.example.org", "client_id": "ward", "role_map": [{"value": "p", "role": "patient"}]}),
        json!({"issuer": "http://idp.example.org", "client_id": "ward"}),
    ] {
        h.call(Method::PUT, "/api/v1/admin/oidc", Some(&s.access), Some(bad)).await.expect_problem(422, "validation_failed");
    }
    h.call(Method::PUT, "/api/v1/admin/oidc", Some(&s.access), Some(body)).await.expect(200);
    let got = h.get("/api/v1/admin/oidc", &s.access).await.expect(200);
    assert_eq!(got.body["jit_default_role"], "staff");
    assert!(!got.body.to_string().contains("s3cret-canary"));
    // Keeping the secret: a change without one still has it.
    let kept = h
        .call(Method::PUT, "/api/v1/admin/oidc", Some(&s.access), Some(json!({"issuer": "https://idp.example.org", "client_id": "ward2"})))
        .await
        .expect(200);
    assert_eq!(kept.body["has_client_secret"], true);
    // Unknown organisations and organisations without a provider answer alike.
    let r = h.call(Method::GET, "/api/v1/auth/oidc/no-such-org/start", None, None).await;
    assert_eq!(r.body["code"], "oidc_not_configured");
    h.call(Method::DELETE, "/api/v1/admin/oidc", Some(&s.access), None).await.expect(204);
    let r = h.call(Method::GET, "/api/v1/auth/oidc/ssoconf/start", None, None).await;
    assert_eq!(r.body["code"], "oidc_not_configured");
    h.call(Method::GET, "/api/v1/auth/oidc/callback?state=forged&code=x", None, None).await.expect_problem(400, "oidc_state_invalid");
}

fn access_of(r: &common::Reply) -> String {
    r.body["tokens"]["access_token"].as_str().unwrap_or_else(|| panic!("no tokens: {}", r.body)).to_owned()
}

async fn a_hand_over_is_redeemed_only_in_the_browser_the_callback_sent_it_to(backend: Backend) {
    let Some((node, dir)) = peers() else { return };
    let Some(h) = Harness::start_with(backend, |c| c.oidc.allow_http_loopback = true).await else { return };
    let p = start_provider(&node, &dir, &h);
    let (_, admin) = configure(&h, &p).await;

    // Login CSRF: the attacker signs in as himself, stops at the hand-over and sends the link.
    let mut attacker = Browser::new(&h);
    let token = sso(&mut attacker, &h, "nurse-mallory").await;
    // The victim's browser has no hand-over cookie, or only the one of its own sign-in.
    complete_bare(&h, &token).await.expect_problem(401, "oidc_handoff_invalid");
    let mut victim = Browser::new(&h);
    let own = sso(&mut victim, &h, "nurse-vic").await;
    complete(&victim, &h, &token).await.expect_problem(401, "oidc_handoff_invalid");
    // Refusals spend nothing: each browser still redeems its own, and the cookie is cleared.
    let mine = complete(&victim, &h, &own).await.expect(200);
    assert!(
        mine.headers.get_all("set-cookie").iter().any(|c| c.to_str().unwrap().starts_with(&format!("{HANDOFF_COOKIE}=;"))),
        "the hand-over cookie is cleared"
    );
    let me = h.get("/api/v1/me", &access_of(&mine)).await.expect(200);
    assert_eq!(me.body["user"]["display_name"], "Test nurse-vic");
    complete(&attacker, &h, &token).await.expect(200);
    let events = h.get("/api/v1/audit/events?action=oidc.login", &admin.access).await.expect(200);
    assert!(events.body.to_string().contains("handoff_browser_mismatch"), "{}", events.body);
}

async fn a_new_issuer_drops_the_old_links_so_its_subjects_cannot_reach_old_accounts(backend: Backend) {
    let Some((node, dir)) = peers() else { return };
    let Some(h) = Harness::start_with(backend, |c| c.oidc.allow_http_loopback = true).await else { return };
    let first = start_provider(&node, &dir, &h);
    let (_, admin) = configure(&h, &first).await;
    let mut b = Browser::new(&h);
    let t = sso(&mut b, &h, "nurse-sam").await;
    let old_access = access_of(&complete(&b, &h, &t).await.expect(200));
    let old = h.get("/api/v1/me", &old_access).await.expect(200).body["user"]["id"].clone();

    // Saving the same issuer again keeps the links.
    h.call(Method::PUT, "/api/v1/admin/oidc", Some(&admin.access), Some(provider_body(&first.issuer))).await.expect(200);
    let mut b1 = Browser::new(&h);
    let t1 = sso(&mut b1, &h, "nurse-sam").await;
    let same = h.get("/api/v1/me", &access_of(&complete(&b1, &h, &t1).await.expect(200))).await.expect(200).body["user"]["id"].clone();
    assert_eq!(same, old);
    h.get("/api/v1/me", &old_access).await.expect(200);

    // Another provider whose subject has the same value is someone else: a new account. The
    // old issuer's sessions end with the links (it can no longer end them by back-channel
    // logout); the admin's password session stays.
    let second = start_provider(&node, &dir, &h);
    h.call(Method::PUT, "/api/v1/admin/oidc", Some(&admin.access), Some(provider_body(&second.issuer))).await.expect(200);
    h.get("/api/v1/me", &old_access).await.expect_problem(401, "session_ended");
    h.get("/api/v1/me", &admin.access).await.expect(200);
    let mut b2 = Browser::new(&h);
    let t2 = sso(&mut b2, &h, "nurse-sam").await;
    let new = h.get("/api/v1/me", &access_of(&complete(&b2, &h, &t2).await.expect(200))).await.expect(200).body["user"]["id"].clone();
    assert_ne!(new, old, "a subject of the new issuer signed into the old issuer's account");
    let events = h.get("/api/v1/audit/events?action=oidc.config", &admin.access).await.expect(200);
    assert!(events.body.to_string().contains("links_cleared"), "{}", events.body);
}

async fn back_channel_logout_ends_sso_sessions_opened_after_wards_second_factor_but_never_password_sessions(backend: Backend) {
    let Some((node, dir)) = peers() else { return };
    let Some(h) = Harness::start_with(backend, |c| c.oidc.allow_http_loopback = true).await else { return };
    let p = start_provider(&node, &dir, &h);
    let (admin_account, admin) = configure(&h, &p).await;
    let nurse = h.account(&admin_account.org, "nurse-mfa", Role::Nurse).await;
    h.enroll_mfa(&nurse).await;
    h.call(Method::PUT, &format!("/api/v1/admin/oidc/links/{}", nurse.id), Some(&admin.access), Some(json!({"subject": "nurse-mfa"})))
        .await
        .expect(204);
    let password = h.login(&nurse).await;

    // Single sign-on, then Ward's own second factor: that session is the provider session's.
    let second_factor = |b: Browser| {
        let (h, nurse) = (&h, &nurse);
        async move {
            let mut b = b;
            let t = sso(&mut b, h, "nurse-mfa").await;
            let r = complete(&b, h, &t).await.expect(200);
            assert_eq!(r.body["status"], "mfa_required", "{}", r.body);
            let code = h.fresh_recovery_code(nurse).await;
            let done = h
                .call(Method::POST, "/api/v1/auth/mfa", None, Some(json!({"mfa_token": r.body["mfa_token"], "recovery_code": code})))
                .await
                .expect(200);
            (b, done.body["access_token"].as_str().unwrap().to_owned())
        }
    };
    let (mut b, sso_access) = second_factor(Browser::new(&h)).await;
    sign_out_at_provider(&mut b, &p).await;
    h.get("/api/v1/me", &sso_access).await.expect_problem(401, "session_ended");
    h.get("/api/v1/me", &password.access).await.expect(200);

    // A token naming only the subject ends the account's single sign-on sessions, still not
    // the password session.
    let (b2, sso_access2) = second_factor(Browser::new(&h)).await;
    let mut fetcher = b2;
    let token = fetcher.go(Method::GET, &format!("{}/test/logout-token?sub=nurse-mfa", p.issuer), None).await.body;
    let (status, body) = post_logout(&h, ORG, &token).await;
    assert_eq!(status, 200, "{body}");
    h.get("/api/v1/me", &sso_access2).await.expect_problem(401, "session_ended");
    h.get("/api/v1/me", &password.access).await.expect(200);
}

async fn logout_failures_are_limited_apart_from_sign_ins_and_replays_of_valid_tokens_do_not_count(backend: Backend) {
    let Some((node, dir)) = peers() else { return };
    let Some(h) = Harness::start_with(backend, |c| {
        c.oidc.allow_http_loopback = true;
        c.oidc.failed_logouts_per_minute_per_address = 3;
        c.sessions.failed_logins_per_minute_per_address = 3;
    })
    .await
    else {
        return;
    };
    let p = start_provider(&node, &dir, &h);
    configure(&h, &p).await;
    let mut b = Browser::new(&h);
    let t = sso(&mut b, &h, "nurse-ray").await;
    let access = access_of(&complete(&b, &h, &t).await.expect(200));

    // Failed sign-ins from this address use up its sign-in budget, and bad logout tokens for
    // another organisation use up that organisation's logout budget here.
    for _ in 0..4 {
        h.call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"login": "nobody@ssoclinic", "password": "wrong", "device": {"name": "x", "platform": "cli"}})),
        )
        .await;
        post_logout(&h, "elsewhere", "not-a-jwt").await;
    }
    assert_eq!(post_logout(&h, "elsewhere", "not-a-jwt").await.0, 429);
    // Neither stops this organisation's provider; its retries of a valid token are refused
    // without counting, so a fresh token still works after many of them.
    let good = b.go(Method::GET, &format!("{}/test/logout-token?sub=nurse-ray", p.issuer), None).await.body;
    assert_eq!(post_logout(&h, ORG, &good).await.0, 200);
    h.get("/api/v1/me", &access).await.expect_problem(401, "session_ended");
    for _ in 0..5 {
        assert_eq!(post_logout(&h, ORG, &good).await.0, 400);
    }
    let fresh = b.go(Method::GET, &format!("{}/test/logout-token?sub=nurse-ray", p.issuer), None).await.body;
    assert_eq!(post_logout(&h, ORG, &fresh).await.0, 200);
}

async fn anonymous_sso_starts_are_rate_limited_per_address(backend: Backend) {
    let Some(h) = Harness::start_with(backend, |c| c.oidc.starts_per_minute_per_address = 2).await else { return };
    h.org("ssolimit", vec![]).await;
    for _ in 0..2 {
        h.call(Method::GET, "/api/v1/auth/oidc/ssolimit/start", None, None).await.expect_problem(404, "oidc_not_configured");
    }
    h.call(Method::GET, "/api/v1/auth/oidc/ssolimit/start", None, None).await.expect_problem(429, "rate_limited");
}

async fn admins_link_and_unlink_existing_accounts(backend: Backend) {
    let Some((node, dir)) = peers() else { return };
    let Some(h) = Harness::start_with(backend, |c| c.oidc.allow_http_loopback = true).await else { return };
    let p = start_provider(&node, &dir, &h);
    let (admin_account, admin) = configure(&h, &p).await;
    // Without just-in-time accounts, only linked subjects sign in.
    let mut body = provider_body(&p.issuer);
    body["jit_enabled"] = json!(false);
    h.call(Method::PUT, "/api/v1/admin/oidc", Some(&admin.access), Some(body)).await.expect(200);
    let nurse = h.account(&admin_account.org, "ward-jo", Role::Nurse).await;
    let path = format!("/api/v1/admin/oidc/links/{}", nurse.id);
    let none = h.get(&path, &admin.access).await.expect(200);
    assert_eq!(none.body, json!({"provider_configured": true, "linked": false, "subject": null, "linked_at": null}));

    h.call(Method::PUT, &path, Some(&admin.access), Some(json!({"subject": "nurse-link"}))).await.expect(204);
    let linked = h.get(&path, &admin.access).await.expect(200);
    assert_eq!(linked.body["linked"], true);
    assert_eq!(linked.body["subject"], "nurse-link");
    assert!(linked.body["linked_at"].is_string());
    let mut b = Browser::new(&h);
    let t = sso(&mut b, &h, "nurse-link").await;
    let sso_access = access_of(&complete(&b, &h, &t).await.expect(200));
    let me = h.get("/api/v1/me", &sso_access).await.expect(200);
    assert_eq!(me.body["user"]["id"], json!(nurse.id));

    // Only admins see or change links; accounts of other organisations are not found.
    let n = h.login(&nurse).await;
    h.get(&path, &n.access).await.expect_problem(403, "forbidden");
    h.call(Method::DELETE, &path, Some(&n.access), None).await.expect_problem(403, "forbidden");
    let other = h.org("ssoother", vec![]).await;
    let stranger = h.account(&other, "other-staff", Role::Staff).await;
    h.get(&format!("/api/v1/admin/oidc/links/{}", stranger.id), &admin.access).await.expect_problem(404, "not_found");

    // Relinking to the same subject keeps the single sign-on session; to another subject it
    // ends (the old subject's back-channel logouts could no longer reach it), and never the
    // password session.
    h.call(Method::PUT, &path, Some(&admin.access), Some(json!({"subject": "nurse-link"}))).await.expect(204);
    h.get("/api/v1/me", &sso_access).await.expect(200);
    h.call(Method::PUT, &path, Some(&admin.access), Some(json!({"subject": "nurse-other"}))).await.expect(204);
    h.get("/api/v1/me", &sso_access).await.expect_problem(401, "session_ended");
    h.get("/api/v1/me", &n.access).await.expect(200);
    h.call(Method::PUT, &path, Some(&admin.access), Some(json!({"subject": "nurse-link"}))).await.expect(204);
    let mut b1 = Browser::new(&h);
    let t1 = sso(&mut b1, &h, "nurse-link").await;
    let sso_access = access_of(&complete(&b1, &h, &t1).await.expect(200));
    h.get("/api/v1/me", &sso_access).await.expect(200);

    // Unlinked, the person no longer signs in with single sign-on and their single sign-on
    // session ends (the password one stays); a second unlink is 404.
    h.call(Method::DELETE, &path, Some(&admin.access), None).await.expect(204);
    h.get("/api/v1/me", &sso_access).await.expect_problem(401, "session_ended");
    h.get("/api/v1/me", &n.access).await.expect(200);
    assert_eq!(h.get(&path, &admin.access).await.expect(200).body["linked"], false);
    h.call(Method::DELETE, &path, Some(&admin.access), None).await.expect_problem(404, "not_found");
    let mut b2 = Browser::new(&h);
    let cb = to_callback(&mut b2, &h, "nurse-link").await;
    let refused = b2.go(Method::GET, &cb, None).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(refused.body.contains("oidc_account_not_linked"), "{}", refused.body);
    // Both are audited, never with the subject.
    let events = h.get("/api/v1/audit/events?action=oidc.config", &admin.access).await.expect(200);
    let text = events.body.to_string();
    let ops: Vec<String> = events.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e["detail"].as_str()?).ok())
        .filter_map(|d| d["op"].as_str().map(str::to_owned))
        .collect();
    assert!(ops.iter().any(|o| o == "link") && ops.iter().any(|o| o == "unlink"), "{text}");
    assert!(!text.contains("nurse-link") && !text.contains("nurse-other"), "the subject is never audited: {text}");
    // Each link says whether it replaced another subject, with a keyed fingerprint of the
    // subject: equal for the same subject, different for another.
    let details: Vec<Value> = events.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e["detail"].as_str()?).ok())
        .filter(|d| d["op"] == "link" || d["op"] == "unlink")
        .collect();
    let fingerprints = |replaced: bool| -> Vec<Value> {
        details.iter().filter(|d| d["op"] == "link" && d["replaced"] == replaced).map(|d| d["subject"].clone()).collect()
    };
    let (fresh, replacing) = (fingerprints(false), fingerprints(true));
    assert_eq!(fresh.len(), 2, "the first link and the same-subject relink: {text}");
    assert_eq!(replacing.len(), 2, "to nurse-other and back: {text}");
    assert!(fresh.iter().chain(&replacing).all(Value::is_string), "{text}");
    let unlink = details.iter().find(|d| d["op"] == "unlink").unwrap();
    assert_eq!(unlink["sessions_revoked"], 1, "{text}");
    assert!(fresh.contains(&unlink["subject"]), "the unlinked subject's fingerprint is the linked one's: {text}");
    assert!(replacing.iter().any(|f| !fresh.contains(f)), "another subject has another fingerprint: {text}");
}

/// `GET start` with a chosen `Host` (HTTP/1.1, where the header is sent as given).
async fn start_with_host(h: &Harness, host: &str) -> (u16, Option<String>, String) {
    let http = reqwest::Client::builder()
        .use_preconfigured_tls((*h.tls).clone())
        .http1_only()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = http.get(format!("{}/api/v1/auth/oidc/{ORG}/start", h.url)).header("host", host).send().await.unwrap();
    let status = r.status().as_u16();
    let location = r.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_owned);
    (status, location, r.text().await.unwrap_or_default())
}

async fn the_redirect_uri_comes_from_configuration_or_a_loopback_host_only(backend: Backend) {
    let Some((node, dir)) = peers() else { return };
    let Some(h) = Harness::start_with(backend, |c| c.oidc.allow_http_loopback = true).await else { return };
    let p = start_provider(&node, &dir, &h);
    let (_, admin) = configure(&h, &p).await;
    let port = h.url.rsplit(':').next().unwrap().to_owned();
    // Without a configured public URL, a loopback host is a demo on one's own machine.
    for host in [format!("127.0.0.1:{port}"), format!("localhost:{port}"), format!("[::1]:{port}"), "localhost".to_owned()] {
        let (status, location, body) = start_with_host(&h, &host).await;
        assert_eq!(status, 303, "{host}: {body}");
        let want = form_urlencoded::byte_serialize(format!("https://{host}/api/v1/auth/oidc/callback").as_bytes()).collect::<String>();
        assert!(location.unwrap().contains(&want), "{host}");
    }
    // Any other host is the caller's choice: refused, as are userinfo, paths and other ports.
    for host in ["ward.evil.example", "127.0.0.1.evil.example", "evil@127.0.0.1", "localhost:99999", "localhost.evil.example:443"] {
        let (status, location, body) = start_with_host(&h, host).await;
        assert!(location.is_none(), "{host}");
        if status != 400 {
            assert_eq!(status, 503, "{host}: {body}");
            assert!(body.contains("oidc_public_url_required"), "{host}: {body}");
        }
    }
    let (status, _, body) = start_with_host(&h, "ward.evil.example").await;
    assert_eq!(status, 503, "{body}");
    // The admin view says a public URL must be configured instead of showing a URI to register.
    let http = reqwest::Client::builder().use_preconfigured_tls((*h.tls).clone()).http1_only().build().unwrap();
    let view: Value = http
        .get(format!("{}/api/v1/admin/oidc", h.url))
        .header("host", "ward.evil.example")
        .bearer_auth(&admin.access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(view["public_url_required"], true, "{view}");
    assert_eq!(view["redirect_uri"], Value::Null, "{view}");
    assert_eq!(view["backchannel_logout_uri"], Value::Null, "{view}");

    // A configured public URL is used whatever the request's host.
    let Some(h2) = Harness::start_with(backend, |c| {
        c.oidc.allow_http_loopback = true;
        c.oidc.public_url = Some("https://ward.example.org".into());
    })
    .await
    else {
        return;
    };
    let p2 = start_provider(&node, &dir, &h2);
    let org = h2.org(ORG, vec![]).await;
    let admin = h2.account(&org, "sso-admin", Role::Admin).await;
    let s = h2.login_stepped_up(&admin).await;
    let r = h2.call(Method::PUT, "/api/v1/admin/oidc", Some(&s.access), Some(provider_body(&p2.issuer))).await.expect(200);
    assert_eq!(r.body["redirect_uri"], "https://ward.example.org/api/v1/auth/oidc/callback");
    assert_eq!(r.body["public_url_required"], false);
    let (status, location, body) = start_with_host(&h2, "ward.evil.example").await;
    assert_eq!(status, 303, "{body}");
    assert!(location.unwrap().contains("ward.example.org"));
}
