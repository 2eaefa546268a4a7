//! Test harness: a real Ward server on 127.0.0.1:0 over TLS 1.3, with its own database, and
//! clients that speak HTTPS and WebSocket to it.

#![allow(dead_code, unreachable_pub)]

pub mod canary;
pub mod notify;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use ward_domain::role::Role;
use ward_store::testing::TestDb;
use ward_store::{Backend, NewUser, Org, RequestMeta, Store};

/// A password every harness account has.
pub const PASSWORD: &str = "correct horse battery staple";

pub struct Harness {
    pub url: String,
    pub store: Store,
    pub http: reqwest::Client,
    pub running: Option<ward_server::Running>,
    pub tls: Arc<rustls::ClientConfig>,
    pub db: TestDb,
}

/// An account created by the harness.
#[derive(Clone, Debug)]
pub struct Account {
    pub id: ward_domain::ids::UserId,
    pub login: String,
    pub org: Org,
    pub role: Role,
}

/// A signed-in client.
#[derive(Clone, Debug)]
pub struct Session {
    pub access: String,
    pub refresh: String,
    pub session_id: String,
    pub device_id: String,
    pub account: Account,
}

/// A response: status, headers and JSON body (`Value::Null` when empty).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    /// The problem code of an error answer.
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }

    /// Asserts the status, printing the body when it differs.
    #[track_caller]
    pub fn expect(self, status: u16) -> Self {
        assert_eq!(self.status.as_u16(), status, "unexpected answer: {}", self.body);
        self
    }

    /// Asserts a problem+json answer with this status and code.
    #[track_caller]
    pub fn expect_problem(self, status: u16, code: &str) -> Self {
        assert_eq!(self.status.as_u16(), status, "unexpected answer: {}", self.body);
        assert_eq!(self.headers["content-type"], "application/problem+json", "not problem+json: {}", self.body);
        assert_eq!(self.code(), code, "wrong problem: {}", self.body);
        assert_eq!(self.body["type"], format!("urn:ward:problem:{code}"));
        self
    }
}

pub fn test_config(dir: &std::path::Path, database_url: &str) -> ward_server::Config {
    ward_server::Config {
        data_dir: dir.to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: Some(database_url.to_owned()),
        // Built on first use: most test servers never send a notice, and each test process
        // would otherwise spend a debug build's 1.5 s of CPU on it.
        outbound: ward_server::config::OutboundConfig { build_at_start: false },
        ..ward_server::Config::default()
    }
}

impl Harness {
    /// Starts a server on a fresh database, or `None` when PostgreSQL is unavailable outside CI.
    pub async fn start(backend: Backend) -> Option<Harness> {
        Self::start_with(backend, |_| {}).await
    }

    /// As [`Harness::start`], with the test configuration adjusted first.
    pub async fn start_with(backend: Backend, adjust: impl FnOnce(&mut ward_server::Config)) -> Option<Harness> {
        let db = TestDb::open(backend).await?;
        let mut config = test_config(db.dir.path(), &db.url);
        adjust(&mut config);
        let running = ward_server::start(config, db.store.clone()).await.expect("server starts");
        Some(Self::client_for(running, db))
    }

    /// Starts a server on a fresh SQLite database opened the way `ward serve` opens it, with
    /// the key provider and keyring the adjusted configuration names (the other constructors
    /// use an in-memory keyring).
    pub async fn start_with_config(adjust: impl FnOnce(&mut ward_server::Config)) -> Harness {
        let db = TestDb::open(Backend::Sqlite).await.expect("SQLite always opens");
        let url = format!("sqlite://{}", db.dir.path().join("configured.db").display());
        let mut config = test_config(db.dir.path(), &url);
        adjust(&mut config);
        let store = ward_server::open_store(&config).await.expect("the configured store opens");
        let running = ward_server::start(config, store.clone()).await.expect("server starts");
        let mut h = Self::client_for(running, db);
        h.store = store;
        h
    }

    /// Starts a server on `store` (another way into `db`, such as a store reaching the test
    /// database through a proxy); the harness's own store stays `db`'s direct one.
    pub async fn start_on_store(db: TestDb, store: ward_store::Store) -> Harness {
        let config = test_config(db.dir.path(), &db.url);
        let running = ward_server::start(config, store).await.expect("server starts");
        Self::client_for(running, db)
    }

    fn client_for(running: ward_server::Running, db: TestDb) -> Harness {
        let pem = std::fs::read(&running.cert_path).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pemfile_certs(&pem) {
            roots.add(c).unwrap();
        }
        let tls = Arc::new(
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        );
        let http = reqwest::Client::builder().use_preconfigured_tls((*tls).clone()).timeout(Duration::from_secs(30)).build().unwrap();
        Harness { url: running.url.clone(), store: db.store.clone(), http, running: Some(running), tls, db }
    }

    pub fn meta() -> RequestMeta {
        RequestMeta { source_ip: Some("127.0.0.1".into()), request_id: Some("harness".into()) }
    }

    /// An organisation; `mfa_roles` empty means no role must use MFA (most tests).
    pub async fn org(&self, slug: &str, mfa_roles: Vec<Role>) -> Org {
        let org = self.store.create_org(slug, &format!("Org {slug}"), 900, None, Self::meta()).await.unwrap();
        let admin = ward_domain::ids::UserId::new();
        self.store.set_org_policy(org.id, admin, mfa_roles, 900, Self::meta()).await.unwrap()
    }

    /// An account with the harness password (not one-time).
    pub async fn account(&self, org: &Org, login: &str, role: Role) -> Account {
        self.account_for_patient(org, login, role, None).await
    }

    pub async fn account_for_patient(&self, org: &Org, login: &str, role: Role, patient: Option<ward_domain::ids::PatientId>) -> Account {
        let hash = ward_server::secrets::hash_password(PASSWORD.into()).await.unwrap();
        let u = self
            .store
            .create_user(
                NewUser {
                    org_id: org.id,
                    login: login.into(),
                    display_name: login.into(),
                    role,
                    password_hash: hash,
                    password_must_change: false,
                    patient_id: patient,
                },
                None,
                Self::meta(),
            )
            .await
            .unwrap();
        Account { id: u.id, login: login.into(), org: org.clone(), role }
    }

    /// Sends a request; `token` adds a bearer header, `body` a JSON body.
    pub async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Reply {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("request reaches the server");
        reply(res).await
    }

    /// Sends raw bytes with a content type.
    pub async fn raw(&self, method: Method, path: &str, token: Option<&str>, content_type: &str, bytes: Vec<u8>) -> Reply {
        let mut req = self.http.request(method, format!("{}{path}", self.url)).header("content-type", content_type).body(bytes);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        reply(req.send().await.expect("request reaches the server")).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    /// Signs in with the harness password and expects tokens.
    pub async fn login(&self, account: &Account) -> Session {
        let r = self
            .call(
                Method::POST,
                "/api/v1/auth/login",
                None,
                Some(json!({"login": account.login, "password": PASSWORD, "device": {"name": "test", "platform": "cli"}})),
            )
            .await
            .expect(200);
        let r = if r.body["status"] == "mfa_required" {
            // An account with a second factor (see `enroll_mfa`) answers with a recovery code.
            let code = self.fresh_recovery_code(account).await;
            let t = self
                .call(Method::POST, "/api/v1/auth/mfa", None, Some(json!({"mfa_token": r.body["mfa_token"], "recovery_code": code})))
                .await
                .expect(200);
            Reply { status: t.status, headers: t.headers, body: json!({"status": "authenticated", "tokens": t.body}) }
        } else {
            r
        };
        assert_eq!(r.body["status"], "authenticated", "{}", r.body);
        let t = &r.body["tokens"];
        Session {
            access: t["access_token"].as_str().unwrap().into(),
            refresh: t["refresh_token"].as_str().unwrap().into(),
            session_id: t["session_id"].as_str().unwrap().into(),
            device_id: t["device_id"].as_str().unwrap().into(),
            account: account.clone(),
        }
    }

    /// Enrols a TOTP second factor for the account directly in the store, if it has none
    /// (no recovery codes: `fresh_recovery_code` makes one at a time). Returns the secret.
    pub async fn enroll_mfa(&self, account: &Account) -> Vec<u8> {
        let creds = self.store.credentials_by_id(account.org.id, account.id).await.unwrap();
        if let Some(secret) = creds.totp_secret {
            return secret;
        }
        let secret = b"harness-totp-secret-".to_vec();
        self.store.begin_totp(account.org.id, account.id, secret.clone(), Self::meta()).await.unwrap();
        let nowhere = ward_domain::ids::SessionId::new();
        self.store.confirm_totp(account.org.id, account.id, nowhere, 0, vec![], Self::meta()).await.unwrap();
        secret
    }

    /// A new single-use recovery code for the account (replacing any others): a second factor
    /// the harness can present any number of times a minute, unlike TOTP codes.
    pub async fn fresh_recovery_code(&self, account: &Account) -> String {
        let code = format!("harness-{}", uuid::Uuid::new_v4().simple());
        let hash = ward_server::secrets::recovery_hash(&code);
        self.store.set_recovery_codes(account.org.id, account.id, vec![hash], Self::meta()).await.unwrap();
        code
    }

    /// Verifies the session's second factor again through `POST /api/v1/me/step-up` (enrolling
    /// one first if the account has none), so sensitive actions are allowed for a while.
    pub async fn step_up(&self, s: &Session) {
        self.enroll_mfa(&s.account).await;
        let code = self.fresh_recovery_code(&s.account).await;
        self.post("/api/v1/me/step-up", &s.access, json!({"recovery_code": code})).await.expect(200);
    }

    /// Signs in and steps up.
    pub async fn login_stepped_up(&self, account: &Account) -> Session {
        let s = self.login(account).await;
        self.step_up(&s).await;
        s
    }

    /// Creates a conversation through the API and returns its id.
    pub async fn conversation(&self, owner: &Session, kind: &str, members: &[&Account]) -> String {
        let members: Vec<Value> = members.iter().map(|m| json!({"user_id": m.id})).collect();
        let title = if kind == "direct" { Value::Null } else { json!("Ward 4 handover") };
        let r = self.post("/api/v1/conversations", &owner.access, json!({"kind": kind, "title": title, "members": members})).await;
        assert!(r.status == StatusCode::CREATED || r.status == StatusCode::OK, "{}", r.body);
        r.body["id"].as_str().unwrap().to_owned()
    }

    /// Sends a message through the API.
    pub async fn send(&self, s: &Session, conv: &str, txn: &str, body: &str) -> Reply {
        self.post(&format!("/api/v1/conversations/{conv}/messages"), &s.access, json!({"client_txn_id": txn, "body": body})).await
    }

    /// Opens the session's WebSocket stream with the bearer header and waits for `ready`.
    pub async fn stream(&self, s: &Session) -> Stream {
        let url = self.url.replace("https://", "wss://") + "/api/v1/stream";
        let mut req = url.into_client_request().unwrap();
        req.headers_mut().insert("authorization", format!("Bearer {}", s.access).parse().unwrap());
        let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(
            req,
            None,
            false,
            Some(tokio_tungstenite::Connector::Rustls(self.tls.clone())),
        )
        .await
        .expect("websocket connects");
        let mut st = Stream { ws };
        let ready = st.next_json(Duration::from_secs(5)).await.expect("ready frame");
        assert_eq!(ready["type"], "ready", "{ready}");
        st
    }

    /// Connects a WebSocket without authenticating (first-frame auth tests).
    pub async fn stream_unauthenticated(&self) -> Stream {
        let url = self.url.replace("https://", "wss://") + "/api/v1/stream";
        let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(
            url,
            None,
            false,
            Some(tokio_tungstenite::Connector::Rustls(self.tls.clone())),
        )
        .await
        .expect("websocket connects");
        Stream { ws }
    }
}

pub struct Stream {
    pub ws: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
}

/// What the next frame was.
#[derive(Debug)]
pub enum Frame {
    Json(Value),
    Closed(Option<u16>),
    Timeout,
}

impl Stream {
    /// The next frame, a close, or a timeout.
    pub async fn next_frame(&mut self, wait: Duration) -> Frame {
        loop {
            match tokio::time::timeout(wait, self.ws.next()).await {
                Err(_) => return Frame::Timeout,
                Ok(None) => return Frame::Closed(None),
                Ok(Some(Err(_))) => return Frame::Closed(None),
                Ok(Some(Ok(WsMessage::Text(t)))) => return Frame::Json(serde_json::from_str(&t).unwrap()),
                Ok(Some(Ok(WsMessage::Close(c)))) => return Frame::Closed(c.map(|c| u16::from(c.code))),
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// The next JSON frame, if one comes in time.
    pub async fn next_json(&mut self, wait: Duration) -> Option<Value> {
        match self.next_frame(wait).await {
            Frame::Json(v) => Some(v),
            _ => None,
        }
    }

    /// The next `event` frame (skipping pongs and the like).
    pub async fn next_event(&mut self, wait: Duration) -> Option<Value> {
        loop {
            let v = self.next_json(wait).await?;
            if v["type"] == "event" {
                return Some(v);
            }
        }
    }

    /// The next event frame of this kind (`message`, `receipt`, ...), skipping others.
    pub async fn next_of_kind(&mut self, kind: &str, wait: Duration) -> Option<Value> {
        loop {
            let v = self.next_event(wait).await?;
            if v["kind"] == kind {
                return Some(v);
            }
        }
    }

    pub async fn send_json(&mut self, v: Value) {
        self.ws.send(WsMessage::Text(v.to_string().into())).await.unwrap();
    }

    pub async fn ack(&mut self, conv: &str, seq: i64) {
        self.send_json(json!({"type": "ack", "conversation_id": conv, "seq": seq})).await;
    }
}

async fn reply(res: reqwest::Response) -> Reply {
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()))
    };
    Reply { status, headers, body }
}

fn rustls_pemfile_certs(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem).map(|c| c.unwrap()).collect()
}

/// Everything logged by this process (one test binary: one process under `cargo test`, one per
/// test under nextest; the subscriber is installed once either way).
pub fn captured() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = Capture(buf.clone());
        tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::FULL)
            // The filter Ward itself installs, at its most verbose: TRACE for every target
            // (only the dependencies that would log WebSocket payloads are capped).
            .with_env_filter(ward_server::telemetry::filter("trace"))
            .with_writer(move || writer.clone())
            .try_init()
            .expect("the canary test installs the only global subscriber");
        buf
    })
}

#[derive(Clone)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub fn logs() -> String {
    String::from_utf8_lossy(&captured().lock().unwrap()).into_owned()
}
