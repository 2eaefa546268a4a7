//! Local fake providers for tests: an HTTP server (plain, or TLS with HTTP/2 for APNs) and an
//! SMTP server, each on 127.0.0.1 port 0, recording every request they receive and answering
//! from a script (then 200 / 250).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, Response};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// One request a fake HTTP provider received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `HTTP/2.0` or `HTTP/1.1`.
    pub version: String,
    /// Method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Headers, names lower-case.
    pub headers: Vec<(String, String)>,
    /// Body as text.
    pub body: String,
}

impl Recorded {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The body as JSON (`Null` if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// Everything received, as one string (for canary checks).
    pub fn all_text(&self) -> String {
        let h: Vec<String> = self.headers.iter().map(|(n, v)| format!("{n}: {v}")).collect();
        format!("{} {}\n{}\n{}", self.method, self.path, h.join("\n"), self.body)
    }
}

#[derive(Default)]
struct State {
    requests: Vec<Recorded>,
    script: VecDeque<(u16, String)>,
}

/// A fake HTTP provider. Requests to a path ending in `/token` get an OAuth2 token reply
/// (FCM's token endpoint) and skip the script; everything else answers from the script, then
/// 200 `{}`.
#[derive(Clone)]
pub struct FakeHttp {
    /// `http(s)://127.0.0.1:port`.
    pub url: String,
    /// The test CA (the server's self-signed certificate) for TLS fakes.
    pub ca_pem: Option<Vec<u8>>,
    state: Arc<Mutex<State>>,
}

impl FakeHttp {
    /// Plain HTTP/1.1 and HTTP/2 (h2c) on 127.0.0.1.
    pub async fn start() -> FakeHttp {
        Self::start_inner(false).await
    }

    /// TLS 1.3, HTTP/2 only (ALPN h2), with a fresh self-signed certificate for 127.0.0.1.
    pub async fn start_tls_h2() -> FakeHttp {
        Self::start_inner(true).await
    }

    async fn start_inner(tls: bool) -> FakeHttp {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(State::default()));
        let (acceptor, ca_pem) = if tls {
            let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
            let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).expect("params");
            let cert = params.self_signed(&key).expect("cert");
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let der_key = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("der");
            let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
                .with_protocol_versions(&[&rustls::version::TLS13])
                .expect("tls13")
                .with_no_client_auth()
                .with_single_cert(vec![cert.der().clone()], der_key)
                .expect("cert");
            cfg.alpn_protocols = vec![b"h2".to_vec()];
            (Some(tokio_rustls::TlsAcceptor::from(Arc::new(cfg))), Some(cert.pem().into_bytes()))
        } else {
            (None, None)
        };
        let st = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { continue };
                let st = st.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let svc =
                        hyper_util::service::TowerToHyperService::new(tower::service_fn(move |req: Request<hyper::body::Incoming>| {
                            let st = st.clone();
                            async move { Ok::<_, std::convert::Infallible>(handle(st, req.map(Body::new)).await) }
                        }));
                    let builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
                    match acceptor {
                        Some(a) => {
                            if let Ok(s) = a.accept(tcp).await {
                                let _ = builder.serve_connection(hyper_util::rt::TokioIo::new(s), svc).await;
                            }
                        }
                        None => {
                            let _ = builder.serve_connection(hyper_util::rt::TokioIo::new(tcp), svc).await;
                        }
                    }
                });
            }
        });
        let scheme = if tls { "https" } else { "http" };
        FakeHttp { url: format!("{scheme}://{addr}"), ca_pem, state }
    }

    /// Queues answers for the next requests (not counting token requests).
    pub fn script(&self, answers: &[(u16, &str)]) {
        let mut s = self.state.lock().expect("lock");
        s.script.extend(answers.iter().map(|(c, b)| (*c, (*b).to_owned())));
    }

    /// Everything received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().expect("lock").requests.clone()
    }

    /// Received requests other than token grants.
    pub fn sends(&self) -> Vec<Recorded> {
        self.requests().into_iter().filter(|r| !r.path.ends_with("/token")).collect()
    }
}

async fn handle(st: Arc<Mutex<State>>, req: Request<Body>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
    let rec = Recorded {
        version: format!("{:?}", parts.version),
        method: parts.method.to_string(),
        path: parts.uri.path_and_query().map_or_else(String::new, ToString::to_string),
        headers: parts.headers.iter().map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned())).collect(),
        body: String::from_utf8_lossy(&bytes).into_owned(),
    };
    let token = rec.path.ends_with("/token");
    let (status, body) = {
        let mut s = st.lock().expect("lock");
        s.requests.push(rec);
        if token {
            (200, r#"{"access_token":"fake-access-token","expires_in":3600,"token_type":"Bearer"}"#.to_owned())
        } else {
            s.script.pop_front().unwrap_or((200, "{}".to_owned()))
        }
    };
    Response::builder().status(status).header("content-type", "application/json").body(Body::from(body)).expect("response")
}

/// One message a fake SMTP server received.
#[derive(Debug, Clone, Default)]
pub struct SmtpRecorded {
    /// The client's commands, in order (`EHLO ...`, `MAIL FROM:<...>`, ...).
    pub commands: Vec<String>,
    /// The DATA (headers and body).
    pub data: String,
}

/// A fake SMTP server on 127.0.0.1 (no TLS, no auth). Reply codes for RCPT TO can be scripted
/// (e.g. 451 then 250).
#[derive(Clone)]
pub struct FakeSmtp {
    /// The port.
    pub port: u16,
    received: Arc<Mutex<Vec<SmtpRecorded>>>,
    rcpt_script: Arc<Mutex<VecDeque<u16>>>,
}

impl FakeSmtp {
    /// Starts it.
    pub async fn start() -> FakeSmtp {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let fake = FakeSmtp { port, received: Arc::default(), rcpt_script: Arc::default() };
        let f = fake.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { continue };
                let f = f.clone();
                tokio::spawn(async move {
                    let _ = f.session(tcp).await;
                });
            }
        });
        fake
    }

    /// Queues RCPT TO reply codes.
    pub fn script_rcpt(&self, codes: &[u16]) {
        self.rcpt_script.lock().expect("lock").extend(codes.iter().copied());
    }

    /// Messages received (completed DATA) and failed sessions' commands.
    pub fn received(&self) -> Vec<SmtpRecorded> {
        self.received.lock().expect("lock").clone()
    }

    async fn session(&self, tcp: tokio::net::TcpStream) -> std::io::Result<()> {
        let (r, mut w) = tcp.into_split();
        let mut r = BufReader::new(r);
        let mut rec = SmtpRecorded::default();
        w.write_all(b"220 fake.smtp ESMTP\r\n").await?;
        let mut line = String::new();
        loop {
            line.clear();
            if r.read_line(&mut line).await? == 0 {
                break;
            }
            let cmd = line.trim_end().to_owned();
            rec.commands.push(cmd.clone());
            let upper = cmd.to_ascii_uppercase();
            if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                w.write_all(b"250-fake.smtp\r\n250 8BITMIME\r\n").await?;
            } else if upper.starts_with("RCPT") {
                let code = self.rcpt_script.lock().expect("lock").pop_front().unwrap_or(250);
                w.write_all(format!("{code} {}\r\n", if code == 250 { "OK" } else { "refused" }).as_bytes()).await?;
            } else if upper.starts_with("DATA") {
                w.write_all(b"354 go ahead\r\n").await?;
                let mut data = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == ".\r\n" {
                        break;
                    }
                    data.push_str(&line);
                }
                rec.data = data;
                self.received.lock().expect("lock").push(rec.clone());
                w.write_all(b"250 queued\r\n").await?;
            } else if upper.starts_with("QUIT") {
                w.write_all(b"221 bye\r\n").await?;
                break;
            } else {
                w.write_all(b"250 OK\r\n").await?;
            }
        }
        Ok(())
    }
}
