//! The audit log's syslog stream (RFC 5424 over TLS, RFC 5425) against a local receiver on
//! 127.0.0.1: every index arrives in order with the right fields, checkpoints arrive and
//! verify, nothing is lost when the receiver crashes mid-stream, a restarted sink resumes
//! from its saved cursor, and no PHI reaches the stream.
//!
//! The receiver is a rustls server with rcgen certificates; it splits the octet-counted
//! frames strictly itself and parses each message with `syslog_rfc5424`, an independent
//! RFC 5424 parser.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Harness;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::json;
use syslog_rfc5424::{SyslogFacility, SyslogMessage, SyslogSeverity};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use ward_domain::audit::{AuditAction, AuditEvent, Outcome};
use ward_domain::role::Role;
use ward_server::audit_sink::{SINK_NAME, SyslogSink};
use ward_server::config::SyslogConfig;
use ward_store::testing::TestDb;
use ward_store::{Backend, Store, on_both_backends, on_sqlite};

on_sqlite!(the_server_streams_events_and_checkpoints_in_order_without_phi);
on_both_backends!(a_receiver_crash_loses_nothing, a_restarted_sink_resumes_from_its_cursor);

/// A PHI canary: the patient's name and the message text carry it.
const CANARY: &str = "canary-5c9e2";

/// A CA, a receiver certificate for `localhost` it issued, and a client certificate.
struct Pki {
    dir: tempfile::TempDir,
    ca_file: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
    server_chain: Vec<CertificateDer<'static>>,
    server_key: Vec<u8>,
    ca_der: CertificateDer<'static>,
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "Test SIEM CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let issue = |names: Vec<String>| {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(names).unwrap().signed_by(&key, &ca).unwrap();
        (cert, key)
    };
    let (server, server_key) = issue(vec!["localhost".into()]);
    let (client, client_key) = issue(vec!["ward.test".into()]);
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let (client_cert_path, client_key_path) = (dir.path().join("client.pem"), dir.path().join("client.key"));
    std::fs::write(&client_cert_path, client.pem()).unwrap();
    std::fs::write(&client_key_path, client_key.serialize_pem()).unwrap();
    Pki {
        ca_file,
        client_cert: client_cert_path,
        client_key: client_key_path,
        server_chain: vec![server.der().clone()],
        server_key: server_key.serialize_der(),
        ca_der: ca.der().clone(),
        dir,
    }
}

impl Pki {
    /// A TLS 1.3 server config that requires a client certificate from the CA.
    fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build().unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key.clone()));
        Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_protocol_versions(&[&rustls::version::TLS13])
                .unwrap()
                .with_client_cert_verifier(verifier)
                .with_single_cert(self.server_chain.clone(), key)
                .unwrap(),
        )
    }

    fn syslog_config(&self, addr: SocketAddr) -> SyslogConfig {
        SyslogConfig {
            enabled: true,
            address: addr.to_string(),
            server_name: Some("localhost".into()),
            ca_file: Some(self.ca_file.clone()),
            client_cert: Some(self.client_cert.clone()),
            client_key: Some(self.client_key.clone()),
            hostname: Some("ward-test".into()),
            batch_size: 7,
            confirm_interval_secs: 1,
            reconnect_max_secs: 1,
            ..SyslogConfig::default()
        }
    }
}

/// What a receiver kept: every message in arrival order, and every byte (for the canary).
#[derive(Default)]
struct Received {
    messages: Vec<String>,
    bytes: Vec<u8>,
    connections: usize,
}

/// A local RFC 5425 receiver.
struct Receiver {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
    crashed: Arc<tokio::sync::Notify>,
}

impl Receiver {
    /// Listens on `addr` (port 0 for any). With `crash_after`, it keeps that many messages in
    /// total and then dies at once: connection dropped mid-read, listener closed.
    async fn start(addr: SocketAddr, tls: Arc<rustls::ServerConfig>, log: Arc<Mutex<Received>>, crash_after: Option<usize>) -> Receiver {
        let listener = bind(addr).await;
        let addr = listener.local_addr().unwrap();
        let crashed = Arc::new(tokio::sync::Notify::new());
        let notify = crashed.clone();
        let task = tokio::spawn(async move {
            let acceptor = tokio_rustls::TlsAcceptor::from(tls);
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let (acceptor, log, notify) = (acceptor.clone(), log.clone(), notify.clone());
                connections.spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                    log.lock().unwrap().connections += 1;
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        match tls.read(&mut chunk).await {
                            Ok(0) => {
                                // The sender's close_notify: answer it (RFC 5425 §4.4).
                                assert!(buf.is_empty(), "a frame was cut off by close_notify");
                                let _ = tls.shutdown().await;
                                return;
                            }
                            Ok(n) => {
                                buf.extend_from_slice(&chunk[..n]);
                                log.lock().unwrap().bytes.extend_from_slice(&chunk[..n]);
                            }
                            Err(_) => return,
                        }
                        let mut log = log.lock().unwrap();
                        while let Some(message) = next_frame(&mut buf) {
                            if crash_after.is_some_and(|n| log.messages.len() >= n) {
                                notify.notify_one();
                                // Dies with data read but not kept, and more unread.
                                return;
                            }
                            log.messages.push(message);
                        }
                    }
                });
            }
        });
        Receiver { addr, task, crashed }
    }

    fn kill(self) {
        self.task.abort();
    }
}

/// Binds, retrying briefly: the port of a receiver that just died may still be closing.
async fn bind(addr: SocketAddr) -> TcpListener {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpListener::bind(addr).await {
            Ok(l) => return l,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("cannot bind {addr}: {e}"),
        }
    }
}

/// Takes one octet-counted frame (`MSG-LEN SP SYSLOG-MSG`, RFC 5425 §4.3) off the front of
/// `buf`, strictly: MSG-LEN is a non-zero decimal without leading zeroes.
fn next_frame(buf: &mut Vec<u8>) -> Option<String> {
    let space = buf.iter().position(|b| *b == b' ')?;
    let len = &buf[..space];
    assert!(!len.is_empty() && len.len() <= 9 && len[0] != b'0' && len.iter().all(u8::is_ascii_digit), "bad MSG-LEN {len:?}");
    let len: usize = std::str::from_utf8(len).unwrap().parse().unwrap();
    if buf.len() < space + 1 + len {
        return None;
    }
    let message = String::from_utf8(buf[space + 1..space + 1 + len].to_vec()).expect("messages are UTF-8");
    buf.drain(..space + 1 + len);
    Some(message)
}

fn parse(m: &str) -> SyslogMessage {
    syslog_rfc5424::parse_message(m).unwrap_or_else(|e| panic!("not RFC 5424 ({e}): {m}"))
}

/// The audit index of an event message, `None` for a checkpoint.
fn index(m: &SyslogMessage) -> Option<i64> {
    m.sd.find_tuple("ward-audit@32473", "idx").map(|v| v.parse().unwrap())
}

/// Waits (up to 60 s) until `done` holds.
async fn until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn indexes(log: &Arc<Mutex<Received>>) -> Vec<i64> {
    log.lock().unwrap().messages.iter().filter_map(|m| index(&parse(m))).collect()
}

/// Asserts that `got` holds every index of `0..n`, and that each connection's stream is in
/// order: an index never follows a larger one except when the stream restarts (resends).
#[track_caller]
fn assert_complete(got: &[i64], n: i64) {
    let unique: std::collections::BTreeSet<i64> = got.iter().copied().collect();
    let missing: Vec<i64> = (0..n).filter(|i| !unique.contains(i)).collect();
    assert!(missing.is_empty(), "missing indexes {missing:?} in {got:?}");
    assert!(unique.iter().all(|i| (0..n).contains(i)), "unknown indexes in {got:?}");
    for w in got.windows(2) {
        assert!(w[1] == w[0] + 1 || w[1] <= w[0], "index {} skipped ahead to {}: {got:?}", w[0], w[1]);
    }
}

async fn record_events(store: &Store, n: usize) {
    for i in 0..n {
        let outcome = [Outcome::Success, Outcome::Failure, Outcome::Denied][i % 3];
        store.record(AuditEvent::new(AuditAction::Login, outcome).target("user", format!("u\"]\\{i}")), Harness::meta()).await.unwrap();
    }
}

async fn the_server_streams_events_and_checkpoints_in_order_without_phi(backend: Backend) {
    let pki = pki();
    let log = Arc::new(Mutex::new(Received::default()));
    let receiver = Receiver::start("127.0.0.1:0".parse().unwrap(), pki.server_config(), log.clone(), None).await;
    let Some(h) = Harness::start_with(backend, |c| {
        c.audit.syslog = pki.syslog_config(receiver.addr);
        c.audit.checkpoint_every_entries = 4;
        c.audit.checkpoint_interval_secs = 1;
    })
    .await
    else {
        return;
    };
    let org = h.org("wardsys", vec![]).await;
    let doc = h.account(&org, "doc@wardsys", Role::Clinician).await;
    let nurse = h.account(&org, "nurse@wardsys", Role::Nurse).await;
    let (s_doc, s_nurse) = (h.login(&doc).await, h.login(&nurse).await);
    let patient = h
        .post(
            "/api/v1/patients",
            &s_doc.access,
            json!({"mrn": format!("MRN-{CANARY}"), "display_name": format!("Jane {CANARY} Doe"), "care_team": [doc.id, nurse.id]}),
        )
        .await
        .expect(201);
    assert!(patient.body.to_string().contains(CANARY));
    let conv = h.conversation(&s_doc, "group", &[&nurse]).await;
    h.send(&s_doc, &conv, "t1", &format!("Potassium 6.1 for {CANARY}")).await.expect(201);
    h.get(&format!("/api/v1/conversations/{conv}/messages"), &s_nurse.access).await.expect(200);
    // A denied request, for a warning-severity message.
    h.get("/api/v1/audit/checkpoint", &s_nurse.access).await;
    let audit = h.running.as_ref().unwrap().state.audit.clone();
    let last = audit.checkpoint_now().await.unwrap();
    let n = last.tree_size;
    assert!(n >= 8, "expected a few events, got {n}");

    until("every event and the last checkpoint arrive", async || {
        let got = log.lock().unwrap().messages.iter().any(|m| {
            let m = parse(m);
            m.msgid.as_deref() == Some("checkpoint") && m.sd.find_tuple("ward-checkpoint@32473", "size") == Some(&n.to_string())
        });
        got && indexes(&log).iter().filter(|i| **i < n).collect::<std::collections::BTreeSet<_>>().len() == n as usize
    })
    .await;

    let events: BTreeMap<i64, ward_store::AuditRecord> =
        h.store.audit_events(0, n).await.unwrap().into_iter().map(|r| (r.idx, r)).collect();
    let verifier = audit.verifier();
    let below: Vec<i64> = indexes(&log).into_iter().filter(|i| *i < n).collect();
    assert_complete(&below, n);
    let received = std::mem::take(&mut *log.lock().unwrap());
    let mut last_event = -1i64;
    let mut checkpoints = 0;
    for raw in &received.messages {
        let m = parse(raw);
        assert_eq!(m.facility, SyslogFacility::LOG_AUTHPRIV);
        assert_eq!(m.version, 1);
        assert_eq!(m.hostname.as_deref(), Some("ward-test"));
        assert_eq!(m.appname.as_deref(), Some("ward"));
        assert_eq!(m.procid, Some(syslog_rfc5424::message::ProcId::PID(std::process::id() as i32)));
        let body = m.msg.strip_prefix('\u{feff}').expect("MSG starts with the UTF-8 BOM");
        if m.msgid.as_deref() == Some("checkpoint") {
            let size: i64 = m.sd.find_tuple("ward-checkpoint@32473", "size").unwrap().parse().unwrap();
            // A checkpoint follows the last event it covers.
            assert_eq!(last_event + 1, size, "checkpoint {size} out of place");
            let cp = ward_audit::Checkpoint::parse(body.as_bytes(), audit.origin(), &verifier).expect("the checkpoint verifies");
            assert_eq!(cp.size() as i64, size);
            assert_eq!(m.sd.find_tuple("ward-checkpoint@32473", "root").unwrap(), &cp.root().to_string());
            assert_eq!(m.sd.find_tuple("ward-checkpoint@32473", "origin").unwrap(), audit.origin());
            assert_eq!(m.severity, SyslogSeverity::SEV_NOTICE);
            checkpoints += 1;
            continue;
        }
        let idx = index(&m).expect("an event message has an index");
        assert!(idx == last_event + 1 || idx <= last_event, "out of order: {idx} after {last_event}");
        last_event = idx;
        let Some(r) = events.get(&idx) else { continue };
        let sd = |k: &str| m.sd.find_tuple("ward-audit@32473", k).cloned();
        assert_eq!(m.msgid.as_deref(), Some(r.action.as_str()));
        assert_eq!(sd("action").as_deref(), Some(r.action.as_str()));
        assert_eq!(sd("outcome").as_deref(), Some(r.outcome.as_str()));
        assert_eq!(sd("actor"), r.actor_user_id.map(|u| u.to_string()));
        assert_eq!(sd("org"), r.org_id.map(|u| u.to_string()));
        assert_eq!(sd("patient"), r.patient_id.map(|u| u.to_string()));
        assert_eq!(sd("target"), r.target_id.clone());
        assert_eq!(sd("leaf"), Some(r.leaf().leaf_hash().to_string()));
        assert_eq!(body.as_bytes(), r.leaf().canonical_bytes().as_slice(), "MSG is the canonical leaf encoding");
        assert_eq!(m.timestamp, Some(r.occurred_at.div_euclid(1000)));
        assert_eq!(m.timestamp_nanos, Some((r.occurred_at.rem_euclid(1000) * 1_000_000) as u32));
        let severity = match r.outcome.as_str() {
            "success" => SyslogSeverity::SEV_INFO,
            "denied" => SyslogSeverity::SEV_WARNING,
            _ => SyslogSeverity::SEV_NOTICE,
        };
        assert_eq!(m.severity, severity);
    }
    assert!(checkpoints >= 1);
    assert!(events.values().any(|r| r.patient_id.is_some()), "an event names the patient (by opaque id)");
    assert!(events.values().any(|r| r.outcome == "denied"), "the refused checkpoint read was audited");
    let stream = String::from_utf8_lossy(&received.bytes).to_ascii_lowercase();
    assert!(!stream.contains(CANARY), "PHI reached the syslog stream");
    assert!(!stream.contains("potassium"), "message text reached the syslog stream");
    let metrics = h.http.get(format!("{}/metrics", h.url)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("ward_audit_syslog_messages_total{kind=\"event\"}"), "{metrics}");
    assert!(metrics.contains("ward_audit_syslog_lag_entries"), "{metrics}");
    receiver.kill();
}

fn sink(store: &Store, config: &SyslogConfig) -> tokio::task::JoinHandle<()> {
    SyslogSink::new(config, store.clone())
        .unwrap()
        .with_confirm_interval(Duration::from_millis(300))
        .spawn(ward_server::metrics::Metrics::new())
}

async fn cursor(store: &Store) -> i64 {
    store.audit_sink_cursor(SINK_NAME).await.unwrap().map_or(0, |c| c.next_idx)
}

async fn a_receiver_crash_loses_nothing(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let pki = pki();
    record_events(&db.store, 20).await;
    let first = Arc::new(Mutex::new(Received::default()));
    let receiver = Receiver::start("127.0.0.1:0".parse().unwrap(), pki.server_config(), first.clone(), Some(10)).await;
    let addr = receiver.addr;
    let config = pki.syslog_config(addr);
    let task = sink(&db.store, &config);
    // The receiver keeps ten messages, then dies with the rest of what it was sent.
    tokio::time::timeout(Duration::from_secs(60), receiver.crashed.notified()).await.expect("the receiver crashes");
    receiver.kill();
    record_events(&db.store, 20).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = Arc::new(Mutex::new(Received::default()));
    let receiver = Receiver::start(addr, pki.server_config(), second.clone(), None).await;
    until("the sink confirms all 40", async || cursor(&db.store).await == 40).await;
    task.abort();

    let kept = indexes(&first);
    assert_eq!(kept, (0..10).collect::<Vec<_>>(), "the first receiver kept the first ten");
    let resent = indexes(&second);
    // The second receiver got what the first lost (from the last confirmed index on), then
    // everything committed while no receiver was up.
    assert!(resent.first().is_some_and(|i| *i <= 10), "the lost messages were not sent again: {resent:?}");
    let all: Vec<i64> = kept.iter().chain(&resent).copied().collect();
    assert_complete(&all, 40);
    let text = String::from_utf8_lossy(&second.lock().unwrap().bytes).into_owned();
    assert!(text.contains("target=\"u\\\"\\]\\\\5\""), "SD values are escaped on the wire");
    receiver.kill();
    drop(pki.dir);
}

async fn a_restarted_sink_resumes_from_its_cursor(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let pki = pki();
    record_events(&db.store, 30).await;
    let log = Arc::new(Mutex::new(Received::default()));
    let receiver = Receiver::start("127.0.0.1:0".parse().unwrap(), pki.server_config(), log.clone(), None).await;
    let config = pki.syslog_config(receiver.addr);
    let task = sink(&db.store, &config);
    until("the first sink confirms all 30", async || cursor(&db.store).await == 30).await;
    task.abort();
    let _ = task.await;
    let before = log.lock().unwrap().messages.len();
    assert_complete(&indexes(&log), 30);

    record_events(&db.store, 5).await;
    let task = sink(&db.store, &config);
    until("the second sink confirms all 35", async || cursor(&db.store).await == 35).await;
    task.abort();
    let after: Vec<i64> = log.lock().unwrap().messages[before..].iter().filter_map(|m| index(&parse(m))).collect();
    assert_eq!(after, (30..35).collect::<Vec<_>>(), "a restarted sink sends only what was not confirmed");
    assert_eq!(db.store.audit_sink_cursor(SINK_NAME).await.unwrap().unwrap().checkpoint_size, None);
    receiver.kill();
}
