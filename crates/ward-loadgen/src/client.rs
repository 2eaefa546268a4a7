//! Talking to the server exactly as an outside client does: HTTPS (TLS 1.3, trusting only the
//! server's certificate) for sign-in, conversations and sends; WebSocket over TLS for the stream.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::provision::Account;

/// A WebSocket over TLS.
pub(crate) type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How to reach the server.
#[derive(Clone)]
pub(crate) struct Endpoint {
    /// `https://127.0.0.1:PORT`.
    pub(crate) url: String,
    /// The server's certificate (PEM), the only root trusted.
    pem: Vec<u8>,
    /// For WebSockets.
    tls: Arc<rustls::ClientConfig>,
    /// HTTP/1.1 only instead of offering HTTP/2.
    http1: bool,
}

impl Endpoint {
    /// An endpoint trusting only the certificate in `pem`.
    pub(crate) fn new(url: &str, pem: Vec<u8>, http1: bool) -> anyhow::Result<Self> {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
            roots.add(cert.context("reading the server certificate")?)?;
        }
        if roots.is_empty() {
            bail!("the certificate file holds no certificate");
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self { url: url.trim_end_matches('/').to_owned(), pem, tls: Arc::new(tls), http1 })
    }

    /// A new HTTP client (its own connection pool).
    pub(crate) fn http(&self) -> anyhow::Result<reqwest::Client> {
        let cert = reqwest::Certificate::from_pem(&self.pem)?;
        let mut b = reqwest::Client::builder()
            .tls_certs_only([cert])
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10))
            .tcp_nodelay(true);
        if self.http1 {
            b = b.http1_only();
        }
        Ok(b.build()?)
    }

    /// Opens the stream of a session and waits for its `ready` frame.
    pub(crate) async fn stream(&self, access: &str) -> anyhow::Result<Ws> {
        let url = self.url.replacen("https://", "wss://", 1) + "/api/v1/stream";
        let mut req = url.into_client_request()?;
        req.headers_mut().insert("authorization", format!("Bearer {access}").parse()?);
        let connector = tokio_tungstenite::Connector::Rustls(self.tls.clone());
        let (mut ws, _) = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_tungstenite::connect_async_tls_with_config(req, None, true, Some(connector)),
        )
        .await
        .context("WebSocket connect timed out")??;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match tokio::time::timeout_at(deadline, ws.next()).await {
                Err(_) => bail!("no ready frame within 10 s"),
                Ok(None) => bail!("stream closed before ready"),
                Ok(Some(Err(e))) => bail!("stream failed before ready: {e}"),
                Ok(Some(Ok(WsMessage::Text(t)))) => {
                    let v: Value = serde_json::from_str(&t)?;
                    if v["type"] == "ready" {
                        return Ok(ws);
                    }
                    bail!("expected a ready frame, got {v}");
                }
                Ok(Some(Ok(_))) => {}
            }
        }
    }
}

/// A signed-in account. Clones share the tokens, so a refresh reaches every holder.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    /// Bearer token, replaced on refresh.
    access: Arc<std::sync::RwLock<String>>,
    /// Single-use refresh token, replaced on refresh.
    refresh_token: Arc<std::sync::Mutex<String>>,
    /// The device the session is bound to (refresh must name it).
    device_id: String,
}

impl Session {
    fn from_tokens(tokens: &Value) -> anyhow::Result<Self> {
        let field = |name: &str| tokens[name].as_str().map(str::to_owned).with_context(|| format!("no {name} in the tokens"));
        Ok(Self {
            access: Arc::new(std::sync::RwLock::new(field("access_token")?)),
            refresh_token: Arc::new(std::sync::Mutex::new(field("refresh_token")?)),
            device_id: field("device_id")?,
        })
    }

    /// The current bearer token.
    pub(crate) fn bearer(&self) -> String {
        self.access.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Exchanges the refresh token for new tokens, as a client does before its access token
    /// expires (runs longer than the access-token lifetime need it).
    pub(crate) async fn refresh(&self, http: &reqwest::Client, ep: &Endpoint) -> anyhow::Result<()> {
        let current = self.refresh_token.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let res = http
            .post(format!("{}/api/v1/auth/refresh", ep.url))
            .json(&json!({"refresh_token": current, "device_id": self.device_id}))
            .send()
            .await?;
        let status = res.status();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        if status != reqwest::StatusCode::OK {
            bail!("refresh answered {status}: {}", body["code"]);
        }
        let fresh = Self::from_tokens(&body)?;
        *self.access.write().unwrap_or_else(|p| p.into_inner()) = fresh.bearer();
        *self.refresh_token.lock().unwrap_or_else(|p| p.into_inner()) =
            fresh.refresh_token.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Ok(())
    }
}

/// Signs in with a password (no second factor in the load-test organisation).
pub(crate) async fn login(http: &reqwest::Client, ep: &Endpoint, who: &Account, password: &str) -> anyhow::Result<Session> {
    let res = http
        .post(format!("{}/api/v1/auth/login", ep.url))
        .json(&json!({"login": who.login, "password": password, "device": {"name": "loadgen", "platform": "cli"}}))
        .send()
        .await?;
    let status = res.status();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    if status != reqwest::StatusCode::OK || body["status"] != "authenticated" {
        bail!("login of {} answered {status}: {body}", who.login);
    }
    if body["tokens"]["restriction"].is_string() {
        bail!("login of {} is restricted ({}); the organisation must not require MFA", who.login, body["tokens"]["restriction"]);
    }
    Session::from_tokens(&body["tokens"])
}

/// Creates a group conversation owned by `owner` with `members`; returns its id.
pub(crate) async fn create_group(
    http: &reqwest::Client,
    ep: &Endpoint,
    owner: &Session,
    title: &str,
    members: &[&Account],
) -> anyhow::Result<String> {
    let members: Vec<Value> = members.iter().map(|m| json!({"user_id": m.id})).collect();
    let res = http
        .post(format!("{}/api/v1/conversations", ep.url))
        .bearer_auth(owner.bearer())
        .json(&json!({"kind": "group", "title": title, "members": members}))
        .send()
        .await?;
    let status = res.status();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    if status != reqwest::StatusCode::CREATED {
        bail!("creating a conversation answered {status}: {body}");
    }
    Ok(body["id"].as_str().context("no conversation id")?.to_owned())
}

/// Scrapes the server's `/metrics` for one counter (`None` if absent).
pub(crate) fn counter(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?;
        let value = rest.strip_prefix(' ')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

/// The server's metrics text, if it answers.
pub(crate) async fn metrics(http: &reqwest::Client, ep: &Endpoint) -> Option<String> {
    let res = http.get(format!("{}/metrics", ep.url)).send().await.ok()?;
    if !res.status().is_success() {
        return None;
    }
    res.text().await.ok()
}

/// Sends a WebSocket acknowledgement frame.
pub(crate) async fn ack(ws: &mut Ws, conversation_id: &str, seq: i64) -> anyhow::Result<()> {
    let frame = json!({"type": "ack", "conversation_id": conversation_id, "seq": seq}).to_string();
    ws.send(WsMessage::Text(frame.into())).await?;
    Ok(())
}
