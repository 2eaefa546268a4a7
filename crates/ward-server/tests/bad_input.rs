//! Bad input gets a clear error and changes nothing: malformed JSON, wrong types, oversized
//! bodies, invalid UTF-8, absurd page sizes, expired, forged or revoked tokens, a disabled user,
//! another tenant's ids.
//!
//! Every refused request must answer `application/problem+json` with its stable code, carry an
//! `x-request-id`, never be a 5xx, and leave messages, conversations, sessions and the audit
//! log as they were (except for the audit events that record a refusal on purpose).

mod common;

use ward_store::{on_both_backends, on_sqlite};

use common::{Account, Harness, PASSWORD, Reply, Session};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use ward_domain::ids::{ConversationId, SessionId};
use ward_domain::role::Role;
use ward_store::Backend;

/// Checks a refusal: no 5xx, a request id, problem+json with this status and code.
#[track_caller]
fn refused(r: Reply, status: u16, code: &str) -> Reply {
    assert!(r.status.as_u16() < 500, "server error: {} {}", r.status, r.body);
    assert!(r.headers.get("x-request-id").is_some_and(|v| !v.is_empty()), "no x-request-id on {} {}", r.status, r.body);
    r.expect_problem(status, code)
}

/// Checks an accepted answer: this status, a request id.
#[track_caller]
fn accepted(r: Reply, status: u16) -> Reply {
    assert!(r.headers.get("x-request-id").is_some_and(|v| !v.is_empty()), "no x-request-id on {} {}", r.status, r.body);
    r.expect(status)
}

/// What a request could have changed, to compare before and after.
#[derive(Debug, PartialEq)]
struct Snapshot {
    messages: i64,
    audit: usize,
    conversations: Vec<String>,
    last_message_seq: Value,
}

async fn snapshot(h: &Harness, s: &Session, conv: &str) -> Snapshot {
    let id: ConversationId = conv.parse().unwrap();
    // Listing conversations is not audited, so taking a snapshot changes nothing itself.
    let list = accepted(h.get("/api/v1/conversations?limit=200", &s.access).await, 200);
    let items = list.body["items"].as_array().unwrap();
    Snapshot {
        messages: h.store.message_count(id).await.unwrap(),
        audit: audit_count(h).await,
        conversations: items.iter().map(|c| c["id"].as_str().unwrap().to_owned()).collect(),
        last_message_seq: items.iter().find(|c| c["id"] == conv).map_or(Value::Null, |c| c["last_message_seq"].clone()),
    }
}

async fn audit_count(h: &Harness) -> usize {
    h.store.audit_events(0, 1_000_000).await.unwrap().len()
}

/// An HTTPS client trusting the server's certificate that speaks only HTTP/1.1 or only HTTP/2.
fn client(h: &Harness, http2: bool) -> reqwest::Client {
    let mut cfg = (*h.tls).clone();
    cfg.alpn_protocols = vec![if http2 { b"h2".to_vec() } else { b"http/1.1".to_vec() }];
    reqwest::Client::builder().use_preconfigured_tls(cfg).timeout(std::time::Duration::from_secs(30)).build().unwrap()
}

/// Posts raw bytes as a new message with this client.
async fn send_raw(http: &reqwest::Client, h: &Harness, s: &Session, conv: &str, content_type: &str, bytes: impl Into<Vec<u8>>) -> Reply {
    let res = http
        .post(format!("{}/api/v1/conversations/{conv}/messages", h.url))
        .bearer_auth(&s.access)
        .header("content-type", content_type)
        .body(bytes.into())
        .send()
        .await
        .expect("request reaches the server");
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.bytes().await.unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    Reply { status, headers, body }
}

/// An org with two clinicians signed in and a group conversation between them.
async fn two_clinicians(h: &Harness, slug: &str) -> (Account, Session, Account, Session, String) {
    let org = h.org(slug, vec![]).await;
    let a = h.account(&org, &format!("alice@{slug}"), Role::Clinician).await;
    let b = h.account(&org, &format!("bob@{slug}"), Role::Clinician).await;
    let (sa, sb) = (h.login(&a).await, h.login(&b).await);
    let conv = h.conversation(&sa, "group", &[&b]).await;
    (a, sa, b, sb, conv)
}

async fn malformed_bodies(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let (_a, sa, _b, _sb, conv) = two_clinicians(&h, "bodies").await;
    accepted(h.send(&sa, &conv, "first", "the only message before the bad input").await, 201);
    // Reading the directory is audited: do it before the snapshot.
    let org_users = accepted(h.get("/api/v1/users", &sa.access).await, 200).body["items"].as_array().unwrap().len();
    let before = snapshot(&h, &sa, &conv).await;

    let json_ct = "application/json";
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        // Syntax.
        ("truncated", json_ct, br#"{"client_txn_id":"t1","body":"hi""#.to_vec(), 400, "malformed_json"),
        ("not json", json_ct, b"client_txn_id=t1&body=hi".to_vec(), 400, "malformed_json"),
        ("empty", json_ct, Vec::new(), 400, "malformed_json"),
        ("single quotes", json_ct, b"{'client_txn_id':'t1','body':'hi'}".to_vec(), 400, "malformed_json"),
        ("trailing comma", json_ct, br#"{"client_txn_id":"t1","body":"hi",}"#.to_vec(), 400, "malformed_json"),
        ("trailing garbage", json_ct, br#"{"client_txn_id":"t1","body":"hi"} trailing"#.to_vec(), 400, "malformed_json"),
        ("two values", json_ct, br#"{"client_txn_id":"t1","body":"hi"}{"client_txn_id":"t2","body":"hi"}"#.to_vec(), 400, "malformed_json"),
        ("invalid utf-8", json_ct, b"{\"client_txn_id\":\"t1\",\"body\":\"caf\xc3\x28 \xff\xfe\"}".to_vec(), 400, "malformed_json"),
        ("overlong utf-8", json_ct, b"{\"client_txn_id\":\"t1\",\"body\":\"\xc0\xaf\"}".to_vec(), 400, "malformed_json"),
        ("lone surrogate", json_ct, br#"{"client_txn_id":"t1","body":"\ud800"}"#.to_vec(), 400, "malformed_json"),
        // Deep nesting is refused at the first value of the wrong type, before any recursion.
        ("deep nesting", json_ct, "[".repeat(100_000).into_bytes(), 400, "invalid_body"),
        (
            "deep nesting in a field",
            json_ct,
            format!(r#"{{"client_txn_id":"t1","body":{}"#, "[".repeat(100_000)).into_bytes(),
            400,
            "invalid_body",
        ),
        // Shape.
        ("null", json_ct, b"null".to_vec(), 400, "invalid_body"),
        ("array", json_ct, br#"["t1","hi"]"#.to_vec(), 400, "invalid_body"),
        ("string", json_ct, br#""hi""#.to_vec(), 400, "invalid_body"),
        ("number body", json_ct, br#"{"client_txn_id":"t1","body":5}"#.to_vec(), 400, "invalid_body"),
        ("object body", json_ct, br#"{"client_txn_id":"t1","body":{"text":"hi"}}"#.to_vec(), 400, "invalid_body"),
        ("null body", json_ct, br#"{"client_txn_id":"t1","body":null}"#.to_vec(), 400, "invalid_body"),
        ("number txn id", json_ct, br#"{"client_txn_id":123,"body":"hi"}"#.to_vec(), 400, "invalid_body"),
        ("unknown priority", json_ct, br#"{"client_txn_id":"t1","body":"hi","priority":"apocalyptic"}"#.to_vec(), 400, "invalid_body"),
        ("corrects not a uuid", json_ct, br#"{"client_txn_id":"t1","body":"hi","corrects":"msg-1"}"#.to_vec(), 400, "invalid_body"),
        ("missing body", json_ct, br#"{"client_txn_id":"t1"}"#.to_vec(), 400, "invalid_body"),
        ("missing txn id", json_ct, br#"{"body":"hi"}"#.to_vec(), 400, "invalid_body"),
        (
            "unknown field",
            json_ct,
            br#"{"client_txn_id":"t1","body":"hi","sender_id":"00000000-0000-0000-0000-000000000000"}"#.to_vec(),
            400,
            "invalid_body",
        ),
        ("duplicate field", json_ct, br#"{"client_txn_id":"t1","body":"hi","body":"again"}"#.to_vec(), 400, "invalid_body"),
        // Content type.
        ("text/plain", "text/plain", br#"{"client_txn_id":"t1","body":"hi"}"#.to_vec(), 415, "unsupported_media_type"),
        ("form", "application/x-www-form-urlencoded", b"client_txn_id=t1&body=hi".to_vec(), 415, "unsupported_media_type"),
        ("xml", "application/xml", b"<m><body>hi</body></m>".to_vec(), 415, "unsupported_media_type"),
        ("json lookalike", "application/jsonx", br#"{"client_txn_id":"t1","body":"hi"}"#.to_vec(), 415, "unsupported_media_type"),
        // Values.
        ("empty text", json_ct, br#"{"client_txn_id":"t1","body":""}"#.to_vec(), 422, "validation_failed"),
        ("whitespace text", json_ct, br#"{"client_txn_id":"t1","body":"  \n\t \r\n "}"#.to_vec(), 422, "validation_failed"),
        ("NUL in text", json_ct, br#"{"client_txn_id":"t1","body":"before\u0000after"}"#.to_vec(), 422, "validation_failed"),
        ("empty txn id", json_ct, br#"{"client_txn_id":"","body":"hi"}"#.to_vec(), 422, "validation_failed"),
        ("txn id with space", json_ct, br#"{"client_txn_id":"t 1","body":"hi"}"#.to_vec(), 422, "validation_failed"),
        ("txn id non-ascii", json_ct, r#"{"client_txn_id":"tér","body":"hi"}"#.as_bytes().to_vec(), 422, "validation_failed"),
        ("txn id control", json_ct, br#"{"client_txn_id":"t\n1","body":"hi"}"#.to_vec(), 422, "validation_failed"),
        (
            "txn id too long",
            json_ct,
            json!({"client_txn_id": "x".repeat(129), "body": "hi"}).to_string().into_bytes(),
            422,
            "validation_failed",
        ),
        (
            "text one byte too long",
            json_ct,
            json!({"client_txn_id": "t1", "body": "x".repeat(64 * 1024 + 1)}).to_string().into_bytes(),
            422,
            "validation_failed",
        ),
        (
            "multibyte text too long",
            json_ct,
            json!({"client_txn_id": "t1", "body": "é".repeat(32 * 1024) + "x"}).to_string().into_bytes(),
            422,
            "validation_failed",
        ),
        // (Bodies over the limit, or large and refused unread: `oversized_bodies`.)
    ];
    // Each case over HTTP/1.1 and HTTP/2, reusing connections: a refusal must not break the
    // connection for the requests after it.
    for http2 in [false, true] {
        let http = client(&h, http2);
        for (name, ct, bytes, status, code) in &cases {
            let r = send_raw(&http, &h, &sa, &conv, ct, bytes.clone()).await;
            assert!(r.status.as_u16() < 500, "{name} (h2 {http2}): server error {} {}", r.status, r.body);
            assert_eq!(r.status.as_u16(), *status, "{name} (h2 {http2}): {}", r.body);
            let r = refused(r, *status, code);
            assert!(r.body["detail"].as_str().is_none_or(|d| d.len() < 200), "{name}: detail too long: {}", r.body);
            // The connection still works (or was announced as closing).
            let ok = http.get(format!("{}/healthz", h.url)).send().await.expect("the next request on the client works");
            assert_eq!(ok.status(), StatusCode::OK, "{name} (h2 {http2})");
            assert_eq!(snapshot(&h, &sa, &conv).await, before, "{name} (h2 {http2}) changed something");
        }
    }

    // No content type at all.
    let res = h
        .http
        .post(format!("{}/api/v1/conversations/{conv}/messages", h.url))
        .bearer_auth(&sa.access)
        .body(r#"{"client_txn_id":"t1","body":"hi"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    assert!(res.headers().contains_key("x-request-id"));
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "unsupported_media_type");
    assert_eq!(snapshot(&h, &sa, &conv).await, before);

    // Other endpoints refuse bad bodies the same way and create nothing.
    for (path, bytes, status, code) in [
        ("/api/v1/conversations", br#"{"kind":"group","title":"x","members":[]"#.to_vec(), 400, "malformed_json"),
        ("/api/v1/conversations", br#"{"kind":"broadcast","title":"x","members":[]}"#.to_vec(), 400, "invalid_body"),
        ("/api/v1/conversations", br#"{"kind":"group","title":"x","members":{}}"#.to_vec(), 400, "invalid_body"),
        ("/api/v1/conversations", br#"{"kind":"group","title":"x","members":[{"user_id":"nope"}]}"#.to_vec(), 400, "invalid_body"),
        ("/api/v1/conversations", br#"{"kind":"group","title":"x","members":[],"owner":"me"}"#.to_vec(), 400, "invalid_body"),
        ("/api/v1/conversations", br#"{"kind":"group","title":"   ","members":[]}"#.to_vec(), 422, "validation_failed"),
        ("/api/v1/conversations", br#"{"kind":"direct","title":"x","members":[]}"#.to_vec(), 422, "validation_failed"),
        ("/api/v1/conversations", br#"{"kind":"direct","members":[]}"#.to_vec(), 422, "validation_failed"),
        ("/api/v1/conversations", br#"{"kind":"patient","members":[]}"#.to_vec(), 422, "validation_failed"),
        ("/api/v1/conversations", br#"["group","x",[]]"#.to_vec(), 400, "invalid_body"),
        ("/api/v1/patients", br#"{"mrn":"MRN 1","display_name":"P"}"#.to_vec(), 422, "validation_failed"),
        ("/api/v1/patients", br#"{"mrn":"MRN1","display_name":7}"#.to_vec(), 400, "invalid_body"),
        ("/api/v1/users", br#"{"login":"x","display_name":"y","role":"clinician"}"#.to_vec(), 403, "forbidden"),
        (&format!("/api/v1/conversations/{conv}/receipts"), br#"{"kind":"read","up_to_seq":"1"}"#.to_vec(), 400, "invalid_body"),
        (&format!("/api/v1/conversations/{conv}/receipts"), br#"{"kind":"read","up_to_seq":1e400}"#.to_vec(), 400, "malformed_json"),
        (
            &format!("/api/v1/conversations/{conv}/receipts"),
            br#"{"kind":"read","up_to_seq":99999999999999999999}"#.to_vec(),
            400,
            "invalid_body",
        ),
        (&format!("/api/v1/conversations/{conv}/receipts"), br#"{"kind":"seen","up_to_seq":1}"#.to_vec(), 400, "invalid_body"),
    ] {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let r = h.raw(Method::POST, path, Some(&sa.access), "application/json", bytes).await;
        refused(r, status, code);
        let after = snapshot(&h, &sa, &conv).await;
        if after != before {
            panic!("{path} {text} changed something: {after:?} {:?}", h.store.audit_events(before.audit as i64, 10).await.unwrap());
        }
    }
    assert_eq!(accepted(h.get("/api/v1/users", &sa.access).await, 200).body["items"].as_array().unwrap().len(), org_users);

    // The limits are exact: a 64 KiB text is accepted (with a charset parameter on the type).
    let body = "x".repeat(64 * 1024);
    let bytes = json!({"client_txn_id": "max", "body": body}).to_string().into_bytes();
    let r = accepted(send_raw(&h.http, &h, &sa, &conv, "application/json; charset=utf-8", bytes).await, 201);
    let id = r.body["id"].as_str().unwrap();
    let back = accepted(h.get(&format!("/api/v1/conversations/{conv}/messages/{id}"), &sa.access).await, 200);
    assert_eq!(back.body["body"].as_str().unwrap().len(), 64 * 1024);
    assert_eq!(h.store.message_count(conv.parse().unwrap()).await.unwrap(), before.messages + 1);
}

/// Bodies over the limit get 413 payload_too_large however far over they are, on HTTP/2 and
/// HTTP/1.1; on HTTP/1.1 the server stops reading, so it announces that it closes the connection.
async fn oversized_bodies(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let (_a, sa, _b, _sb, conv) = two_clinicians(&h, "oversized").await;
    let before = snapshot(&h, &sa, &conv).await;
    let big = |n: usize| json!({"client_txn_id": "big", "body": "x".repeat(n)}).to_string().into_bytes();
    let forged = Session { access: format!("wat_{}", "B".repeat(43)), ..sa.clone() };

    // HTTP/2: each refusal ends only its own stream; the connection carries on.
    let h2 = client(&h, true);
    for (s, content_type, body, status, code) in [
        (&sa, "application/json", big(128 * 1024), 413, "payload_too_large"),
        (&sa, "application/json", big(1024 * 1024), 413, "payload_too_large"),
        (&sa, "application/json", big(16 * 1024 * 1024), 413, "payload_too_large"),
        (&sa, "text/plain", vec![b'x'; 1024 * 1024], 415, "unsupported_media_type"),
        (&forged, "application/json", big(1024 * 1024), 401, "invalid_token"),
    ] {
        refused(send_raw(&h2, &h, s, &conv, content_type, body).await, status, code);
        accepted(h2.get(format!("{}/api/v1/me", h.url)).bearer_auth(&sa.access).send().await.map(plain).unwrap(), 200);
    }
    assert_eq!(snapshot(&h, &sa, &conv).await, before);

    // HTTP/1.1: the server answers without reading the rest of the body, so the client's write
    // may be cut short (read the answer from a raw connection), and the answer says that the
    // connection closes, so that no client sends another request on it.
    // (Just over the limit, the server may have received the whole body anyway and keep the
    // connection; far over it, or refused before reading, it never has.)
    for (token, content_type, body, status, code, closes) in [
        (&sa.access, "application/json", big(128 * 1024), 413, "payload_too_large", None),
        (&sa.access, "application/json", big(8 * 1024 * 1024), 413, "payload_too_large", Some(true)),
        (&sa.access, "text/plain", vec![b'x'; 1024 * 1024], 415, "unsupported_media_type", Some(true)),
        (&forged.access, "application/json", big(1024 * 1024), 401, "invalid_token", Some(true)),
    ] {
        let answer = http1_exchange(&h, &format!("/api/v1/conversations/{conv}/messages"), token, content_type, &body).await;
        assert!(answer.starts_with(&format!("http/1.1 {status}")), "{answer}");
        if let Some(closes) = closes {
            assert_eq!(answer.contains("\r\nconnection: close\r\n"), closes, "{answer}");
        }
        assert!(answer.contains("\r\ncontent-type: application/problem+json\r\n"), "{answer}");
        assert!(answer.contains("\r\nx-request-id: "), "{answer}");
        assert!(answer.contains(&format!(r#""code":"{code}""#)), "{answer}");
    }
    // A request read in full keeps its connection, refused or not.
    let h1 = client(&h, false);
    for _ in 0..2 {
        let r = refused(
            send_raw(&h1, &h, &sa, &conv, "application/json", br#"{"client_txn_id":"t","body":" "}"#.to_vec()).await,
            422,
            "validation_failed",
        );
        assert!(r.headers.get("connection").is_none(), "{:?}", r.headers);
        let r = accepted(h1.get(format!("{}/api/v1/me", h.url)).bearer_auth(&sa.access).send().await.map(plain).unwrap(), 200);
        assert!(r.headers.get("connection").is_none(), "{:?}", r.headers);
    }
    assert_eq!(snapshot(&h, &sa, &conv).await, before);
}

/// Sends one HTTP/1.1 POST on a fresh TLS connection and returns the answer, lower-cased. The
/// body is written as far as the server reads it.
async fn http1_exchange(h: &Harness, path: &str, token: &str, content_type: &str, body: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tcp = tokio::net::TcpStream::connect(h.running.as_ref().unwrap().addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(h.tls.clone()).connect(name, tcp).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    let _ = tls.write_all(body).await; // may end with a broken pipe: the server stopped reading
    let _ = tls.flush().await;
    // Read the answer: its head, then content-length bytes (a reset after the answer is fine).
    let mut answer = Vec::new();
    let complete = |a: &[u8]| {
        let text = String::from_utf8_lossy(a).to_ascii_lowercase();
        let Some(end) = text.find("\r\n\r\n") else { return false };
        let length = text[..end].lines().find_map(|l| l.strip_prefix("content-length: ")).and_then(|n| n.trim().parse::<usize>().ok());
        length.is_some_and(|n| a.len() >= end + 4 + n)
    };
    let read = async {
        let mut chunk = [0u8; 16 * 1024];
        while !complete(&answer) {
            match tls.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&chunk[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), read).await;
    String::from_utf8_lossy(&answer).to_ascii_lowercase()
}

/// A response as a body-less [`Reply`] (status and headers only).
fn plain(res: reqwest::Response) -> Reply {
    Reply { status: res.status(), headers: res.headers().clone(), body: Value::Null }
}

async fn query_parameters(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let (_a, sa, _b, _sb, conv) = two_clinicians(&h, "query").await;
    accepted(h.send(&sa, &conv, "q1", "hello").await, 201);
    let audit = audit_count(&h).await;

    let msgs = format!("/api/v1/conversations/{conv}/messages");
    let cases: Vec<(String, u16, &str)> = vec![
        ("/api/v1/conversations?limit=0".into(), 422, "validation_failed"),
        ("/api/v1/conversations?limit=-1".into(), 422, "validation_failed"),
        ("/api/v1/conversations?limit=201".into(), 422, "validation_failed"),
        ("/api/v1/conversations?limit=1000000".into(), 422, "validation_failed"),
        ("/api/v1/conversations?limit=9223372036854775807".into(), 422, "validation_failed"),
        ("/api/v1/conversations?limit=99999999999999999999".into(), 400, "invalid_parameter"),
        ("/api/v1/conversations?limit=abc".into(), 400, "invalid_parameter"),
        ("/api/v1/conversations?limit=1.5".into(), 400, "invalid_parameter"),
        ("/api/v1/conversations?limit=".into(), 400, "invalid_parameter"),
        ("/api/v1/conversations?limit=%00".into(), 400, "invalid_parameter"),
        ("/api/v1/conversations?limit=1&limit=2".into(), 400, "invalid_parameter"),
        ("/api/v1/conversations?page=2".into(), 400, "invalid_parameter"),
        ("/api/v1/conversations?before=yesterday".into(), 400, "invalid_parameter"),
        (format!("{msgs}?limit=0"), 422, "validation_failed"),
        (format!("{msgs}?limit=1000000"), 422, "validation_failed"),
        (format!("{msgs}?limit=-1"), 422, "validation_failed"),
        (format!("{msgs}?limit=abc"), 400, "invalid_parameter"),
        (format!("{msgs}?after=-1"), 400, "invalid_parameter"),
        (format!("{msgs}?before=0"), 400, "invalid_parameter"),
        (format!("{msgs}?after=1&before=5"), 400, "invalid_parameter"),
        (format!("{msgs}?after=one"), 400, "invalid_parameter"),
        (format!("{msgs}?after=99999999999999999999"), 400, "invalid_parameter"),
        (format!("{msgs}?cursor=1"), 400, "invalid_parameter"),
        ("/api/v1/users?limit=0".into(), 422, "validation_failed"),
        ("/api/v1/users?limit=1000000".into(), 422, "validation_failed"),
        ("/api/v1/users?limit=abc".into(), 400, "invalid_parameter"),
    ];
    for (path, status, code) in cases {
        let r = h.get(&path, &sa.access).await;
        assert_eq!(r.status.as_u16(), status, "{path}: {}", r.body);
        refused(r, status, code);
    }
    // Refused reads are not audited as reads; nothing else changed.
    assert_eq!(audit_count(&h).await, audit, "a refused query left an audit trace");
    assert_eq!(h.store.message_count(conv.parse().unwrap()).await.unwrap(), 1);

    // The bounds themselves are accepted.
    for path in ["/api/v1/conversations?limit=1", "/api/v1/conversations?limit=200", "/api/v1/users?limit=200"] {
        accepted(h.get(path, &sa.access).await, 200);
    }
    let page = accepted(h.get(&format!("{msgs}?limit=200&after=0"), &sa.access).await, 200);
    assert_eq!(page.body["items"].as_array().unwrap().len(), 1);
}

async fn path_ids(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let (a, sa, _b, _sb, conv) = two_clinicians(&h, "paths").await;
    accepted(h.send(&sa, &conv, "p1", "hello").await, 201);
    let before = snapshot(&h, &sa, &conv).await;

    let body = json!({"client_txn_id": "p2", "body": "hi"});
    for (method, path, body) in [
        (Method::GET, "/api/v1/conversations/not-a-uuid".to_owned(), None),
        (Method::GET, "/api/v1/conversations/12345".to_owned(), None),
        (Method::GET, "/api/v1/conversations/00000000-0000-0000-0000-00000000000g".to_owned(), None),
        (Method::GET, "/api/v1/conversations/%00/messages".to_owned(), None),
        (Method::POST, "/api/v1/conversations/not-a-uuid/messages".to_owned(), Some(body.clone())),
        (Method::GET, format!("/api/v1/conversations/{conv}/messages/42"), None),
        (Method::POST, format!("/api/v1/conversations/{conv}/messages/latest/recall"), None),
        (Method::DELETE, format!("/api/v1/conversations/{conv}/members/bob"), None),
        (Method::GET, "/api/v1/users/alice".to_owned(), None),
        (Method::POST, "/api/v1/users/alice/disable".to_owned(), None),
        (Method::GET, "/api/v1/patients/MRN-1".to_owned(), None),
        (Method::DELETE, "/api/v1/me/sessions/current".to_owned(), None),
    ] {
        let r = h.call(method.clone(), &path, Some(&sa.access), body).await;
        assert_eq!(r.status.as_u16(), 400, "{method} {path}: {}", r.body);
        refused(r, 400, "invalid_parameter");
        assert_eq!(snapshot(&h, &sa, &conv).await, before, "{method} {path} changed something");
    }

    // Well-formed ids of nothing are 404, like unknown routes.
    let nobody = uuid::Uuid::now_v7();
    refused(h.get(&format!("/api/v1/conversations/{nobody}"), &sa.access).await, 404, "not_found");
    refused(h.get(&format!("/api/v1/users/{nobody}"), &sa.access).await, 404, "not_found");
    refused(h.get("/api/v1/no-such-thing", &sa.access).await, 404, "not_found");
    refused(h.call(Method::GET, "/no-such-page", None, None).await, 404, "not_found");
    refused(h.call(Method::GET, "/assets/no-such-file.js", None, None).await, 404, "not_found");
    let r = refused(h.post(&format!("/api/v1/conversations/{nobody}/messages"), &sa.access, body).await, 404, "not_found");
    assert!(r.body["detail"].is_null() || !r.body["detail"].as_str().unwrap().contains(&nobody.to_string()));
    // The refused send is audited as a denied attempt, and nothing else changed.
    let after = snapshot(&h, &sa, &conv).await;
    assert_eq!(after.messages, before.messages);
    assert_eq!(after.conversations, before.conversations);
    let last = h.store.audit_events(0, 1_000_000).await.unwrap().into_iter().filter(|e| e.outcome == "denied").collect::<Vec<_>>();
    assert!(last.iter().any(|e| e.actor_user_id == Some(a.id.0)), "denied send not audited");
}

async fn tokens(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let (_a, sa, b, sb, conv) = two_clinicians(&h, "tokens").await;
    accepted(h.send(&sa, &conv, "t0", "hello").await, 201);
    let before = snapshot(&h, &sa, &conv).await;
    let msgs = format!("/api/v1/conversations/{conv}/messages");
    let body = json!({"client_txn_id": "t1", "body": "should not be stored"});

    // Missing, malformed and forged tokens.
    refused(h.call(Method::POST, &msgs, None, Some(body.clone())).await, 401, "missing_token");
    refused(h.call(Method::GET, "/api/v1/me", None, None).await, 401, "missing_token");
    let forged = format!("wat_{}", "A".repeat(43));
    let overlong = format!("wat_{}", "A".repeat(200));
    let refresh_as_access = sb.refresh.clone();
    for token in [forged.as_str(), "garbage", "wat_", overlong.as_str(), refresh_as_access.as_str(), &sa.access[..sa.access.len() - 1]] {
        refused(h.post(&msgs, token, body.clone()).await, 401, "invalid_token");
        refused(h.get("/api/v1/me", token).await, 401, "invalid_token");
    }
    for header in [format!("Basic {}", sa.access), format!("bearer{}", sa.access), format!("Token {}", sa.access), "Bearer".to_owned()] {
        let res = h.http.get(format!("{}/api/v1/me", h.url)).header("authorization", header.clone()).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{header}");
        assert!(res.headers().contains_key("x-request-id"));
        let v: Value = res.json().await.unwrap();
        assert_eq!(v["code"], "invalid_token", "{header}");
    }
    // A header value that is not visible ASCII.
    let res = h
        .http
        .get(format!("{}/api/v1/me", h.url))
        .header("authorization", reqwest::header::HeaderValue::from_bytes(b"Bearer wat_\xe9\xe9").unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.json::<Value>().await.unwrap()["code"], "invalid_token");
    assert_eq!(snapshot(&h, &sa, &conv).await, before);

    // An expired access token: token_expired, and refreshing still works.
    let sid: SessionId = sb.session_id.parse().unwrap();
    h.store.test_expire_access_tokens(sid).await;
    let audit = audit_count(&h).await;
    refused(h.post(&msgs, &sb.access, body.clone()).await, 401, "token_expired");
    refused(h.get("/api/v1/me", &sb.access).await, 401, "token_expired");
    assert_eq!(h.store.message_count(conv.parse().unwrap()).await.unwrap(), before.messages);
    assert_eq!(audit_count(&h).await, audit, "an expired token changed the audit log");
    let r = accepted(
        h.call(Method::POST, "/api/v1/auth/refresh", None, Some(json!({"refresh_token": sb.refresh, "device_id": sb.device_id}))).await,
        200,
    );
    let fresh = r.body["access_token"].as_str().unwrap().to_owned();
    accepted(h.get("/api/v1/me", &fresh).await, 200);
    // Refreshing replaced the expired token: it is now simply unknown.
    refused(h.get("/api/v1/me", &sb.access).await, 401, "invalid_token");

    // A revoked session: every token of it answers session_ended.
    accepted(h.call(Method::POST, "/api/v1/auth/logout", Some(&fresh), None).await, 204);
    let before = snapshot(&h, &sa, &conv).await;
    refused(h.post(&msgs, &fresh, body.clone()).await, 401, "session_ended");
    refused(h.get("/api/v1/me", &fresh).await, 401, "session_ended");
    refused(h.call(Method::POST, "/api/v1/auth/logout", Some(&fresh), None).await, 401, "session_ended");
    assert_eq!(snapshot(&h, &sa, &conv).await, before);

    // An idle session ends server-side on its next use (the only change: the audited logoff).
    let sb2 = h.login(&b).await;
    accepted(h.get("/api/v1/me", &sb2.access).await, 200);
    let sid2: SessionId = sb2.session_id.parse().unwrap();
    h.store.test_age_session(sid2, 901_000).await;
    let before = snapshot(&h, &sa, &conv).await;
    let r = refused(h.post(&msgs, &sb2.access, body.clone()).await, 401, "session_ended");
    assert!(r.body["detail"].as_str().unwrap_or("").contains("idle"), "{}", r.body);
    let after = snapshot(&h, &sa, &conv).await;
    assert_eq!(after.messages, before.messages);
    assert_eq!(after.last_message_seq, before.last_message_seq);
    let new_events = h.store.audit_events(before.audit as i64, 1000).await.unwrap();
    assert_eq!(new_events.len(), 1, "{new_events:?}");
    assert_eq!(new_events[0].actor_user_id, None);
    assert!(new_events[0].action.contains("idle"), "{new_events:?}");
    // It stays ended, even though the request above was "activity".
    refused(h.get("/api/v1/me", &sb2.access).await, 401, "session_ended");
    refused(
        h.call(Method::POST, "/api/v1/auth/refresh", None, Some(json!({"refresh_token": sb2.refresh, "device_id": sb2.device_id}))).await,
        401,
        "invalid_refresh_token",
    );
    // The sessions of others are untouched.
    accepted(h.get("/api/v1/me", &sa.access).await, 200);
}

async fn disabled_user(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let org = h.org("disabled", vec![]).await;
    let admin = h.account(&org, "admin@disabled", Role::Admin).await;
    let a = h.account(&org, "alice@disabled", Role::Clinician).await;
    let d = h.account(&org, "dave@disabled", Role::Clinician).await;
    let (s_admin, sa, sd) = (h.login_stepped_up(&admin).await, h.login(&a).await, h.login(&d).await);
    let conv = h.conversation(&sa, "group", &[&d]).await;
    accepted(h.send(&sd, &conv, "d1", "before disabling").await, 201);

    let r = accepted(h.call(Method::POST, &format!("/api/v1/users/{}/disable", d.id), Some(&s_admin.access), None).await, 200);
    assert_eq!(r.body["disabled"], true);
    let before = snapshot(&h, &sa, &conv).await;
    let sessions = h.store.sessions(org.id, d.id).await.unwrap().len();

    // Their token no longer works, whatever it is used for.
    refused(h.send(&sd, &conv, "d2", "after disabling").await, 403, "account_disabled");
    refused(h.get("/api/v1/me", &sd.access).await, 403, "account_disabled");
    refused(h.get(&format!("/api/v1/conversations/{conv}/messages"), &sd.access).await, 403, "account_disabled");
    refused(h.call(Method::POST, "/api/v1/auth/logout", Some(&sd.access), None).await, 403, "account_disabled");
    refused(
        h.call(Method::POST, "/api/v1/auth/refresh", None, Some(json!({"refresh_token": sd.refresh, "device_id": sd.device_id}))).await,
        401,
        "invalid_refresh_token",
    );
    let after = snapshot(&h, &sa, &conv).await;
    assert_eq!(after.messages, before.messages);
    assert_eq!(after.last_message_seq, before.last_message_seq);

    // Signing in: the right password says the account is disabled; a wrong one says nothing more
    // than for anyone else. Neither opens a session.
    let login = |password: &str| json!({"login": d.login, "password": password, "device": {"name": "test", "platform": "cli"}});
    let audit = audit_count(&h).await;
    refused(h.call(Method::POST, "/api/v1/auth/login", None, Some(login(PASSWORD))).await, 403, "account_disabled");
    refused(h.call(Method::POST, "/api/v1/auth/login", None, Some(login("not the password at all"))).await, 401, "invalid_credentials");
    assert_eq!(h.store.sessions(org.id, d.id).await.unwrap().len(), sessions);
    // Each refusal is audited as a failed sign-in, and that is all.
    let events = h.store.audit_events(audit as i64, 1000).await.unwrap();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(events.iter().all(|e| e.outcome == "failure" && e.actor_user_id == Some(d.id.0)), "{events:?}");

    // The others carry on; enabling again lets the user sign in.
    accepted(h.send(&sa, &conv, "a1", "still here").await, 201);
    accepted(h.call(Method::POST, &format!("/api/v1/users/{}/enable", d.id), Some(&s_admin.access), None).await, 200);
    let sd2 = h.login(&d).await;
    accepted(h.get("/api/v1/me", &sd2.access).await, 200);
    // The session that was open when the account was disabled stays ended.
    let r = h.get("/api/v1/me", &sd.access).await;
    assert_eq!(r.status.as_u16(), 401, "{}", r.body);
    refused(r, 401, "session_ended");
}

async fn other_tenant_ids(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    // Tenant one: a patient conversation.
    let one = h.org("one", vec![]).await;
    let alice = h.account(&one, "alice@one", Role::Clinician).await;
    let bob = h.account(&one, "bob@one", Role::Nurse).await;
    let sa = h.login(&alice).await;
    let p = accepted(
        h.post("/api/v1/patients", &sa.access, json!({"mrn": "ONE-1", "display_name": "Patient One", "care_team": [alice.id, bob.id]}))
            .await,
        201,
    );
    let patient = p.body["id"].as_str().unwrap().to_owned();
    let r = accepted(
        h.post(
            "/api/v1/conversations",
            &sa.access,
            json!({"kind": "patient", "title": "Bed 4", "patient_id": patient, "members": [{"user_id": bob.id}]}),
        )
        .await,
        201,
    );
    let conv = r.body["id"].as_str().unwrap().to_owned();
    let msg = accepted(h.send(&sa, &conv, "one-1", "tenant one only").await, 201).body["id"].as_str().unwrap().to_owned();

    // Tenant two: an admin and a clinician with a conversation of their own.
    let two = h.org("two", vec![]).await;
    let mallory = h.account(&two, "mallory@two", Role::Clinician).await;
    let trent = h.account(&two, "trent@two", Role::Admin).await;
    let (sm, st) = (h.login(&mallory).await, h.login(&trent).await);
    // Role changes need a recent second factor: the foreign admin has one, so the answer is
    // about the tenant boundary alone.
    h.step_up(&st).await;
    let own = h.conversation(&sm, "group", &[&trent]).await;

    let members_before = accepted(h.get(&format!("/api/v1/conversations/{conv}"), &sa.access).await, 200).body["members"].clone();
    let patient_before = accepted(h.get(&format!("/api/v1/patients/{patient}"), &sa.access).await, 200).body;
    let user_before = h.store.user(one.id, bob.id).await.unwrap();
    let before = snapshot(&h, &sa, &conv).await;
    let own_before = snapshot(&h, &sm, &own).await;
    let audit = audit_count(&h).await;

    let c = format!("/api/v1/conversations/{conv}");
    /// Who asks, how, where, with what body, and the expected status and code.
    type Case<'a> = (&'a Session, Method, String, Option<Value>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (&sm, Method::GET, c.clone(), None, 404, "not_found"),
        (&sm, Method::GET, format!("{c}/messages"), None, 404, "not_found"),
        (&sm, Method::GET, format!("{c}/messages/{msg}"), None, 404, "not_found"),
        (&sm, Method::POST, format!("{c}/messages"), Some(json!({"client_txn_id": "x1", "body": "intrusion"})), 404, "not_found"),
        (&sm, Method::POST, format!("{c}/messages/{msg}/recall"), None, 404, "not_found"),
        (&sm, Method::POST, format!("{c}/members"), Some(json!({"user_id": mallory.id, "reason": {"code": "consult"}})), 404, "not_found"),
        (&st, Method::POST, format!("{c}/members"), Some(json!({"user_id": trent.id, "role": "owner"})), 404, "not_found"),
        (&sm, Method::DELETE, format!("{c}/members/{}", bob.id), None, 404, "not_found"),
        (&sm, Method::POST, format!("{c}/receipts"), Some(json!({"kind": "read", "up_to_seq": 1})), 404, "not_found"),
        (&sm, Method::GET, format!("/api/v1/users/{}", alice.id), None, 404, "not_found"),
        (&st, Method::GET, format!("/api/v1/users/{}", alice.id), None, 404, "not_found"),
        (&st, Method::PATCH, format!("/api/v1/users/{}", bob.id), Some(json!({"role": "admin"})), 404, "not_found"),
        (&st, Method::POST, format!("/api/v1/users/{}/disable", bob.id), None, 404, "not_found"),
        (&st, Method::POST, format!("/api/v1/users/{}/password-reset", bob.id), None, 404, "not_found"),
        (&st, Method::GET, format!("/api/v1/users/{}/sessions", alice.id), None, 404, "not_found"),
        (&st, Method::DELETE, format!("/api/v1/users/{}/sessions", alice.id), None, 404, "not_found"),
        (&sm, Method::GET, format!("/api/v1/patients/{patient}"), None, 404, "not_found"),
        (&sm, Method::POST, "/api/v1/patients/search".into(), Some(json!({"mrn": "ONE-1"})), 404, "not_found"),
        (&sm, Method::PUT, format!("/api/v1/patients/{patient}/care-team"), Some(json!({"care_team": [mallory.id]})), 404, "not_found"),
        (&st, Method::PUT, format!("/api/v1/patients/{patient}/care-team"), Some(json!({"care_team": [mallory.id]})), 404, "not_found"),
        (&sm, Method::DELETE, format!("/api/v1/me/sessions/{}", sa.session_id), None, 404, "not_found"),
    ];
    for (s, method, path, body, status, code) in cases {
        let r = h.call(method.clone(), &path, Some(&s.access), body).await;
        assert_eq!(r.status.as_u16(), status, "{method} {path}: {}", r.body);
        let r = refused(r, status, code);
        assert!(!r.body.to_string().contains("tenant one only") && !r.body.to_string().contains("ONE-1"), "{}", r.body);
    }

    // Tenant one's ids are useless in tenant two's own requests too.
    for body in [
        json!({"kind": "group", "title": "mixed", "members": [{"user_id": alice.id}]}),
        json!({"kind": "direct", "members": [{"user_id": bob.id}]}),
        json!({"kind": "patient", "title": "theirs", "patient_id": patient, "members": [], "reason": {"code": "consult"}}),
    ] {
        refused(h.post("/api/v1/conversations", &sm.access, body).await, 404, "not_found");
    }
    refused(h.post(&format!("/api/v1/conversations/{own}/members"), &sm.access, json!({"user_id": alice.id})).await, 404, "not_found");
    refused(
        h.post("/api/v1/patients", &sm.access, json!({"mrn": "TWO-1", "display_name": "P", "care_team": [alice.id]})).await,
        409,
        "invalid_state",
    );

    // Nothing in either tenant changed.
    assert_eq!(accepted(h.get(&c, &sa.access).await, 200).body["members"], members_before);
    assert_eq!(accepted(h.get(&format!("/api/v1/patients/{patient}"), &sa.access).await, 200).body, patient_before);
    assert_eq!(h.store.user(one.id, bob.id).await.unwrap(), user_before);
    let msg_now = accepted(h.get(&format!("{c}/messages/{msg}"), &sa.access).await, 200);
    assert_eq!(msg_now.body["body"], "tenant one only");
    assert!(msg_now.body["recalled_at"].is_null());
    accepted(h.get("/api/v1/me", &sa.access).await, 200);
    let after = snapshot(&h, &sa, &conv).await;
    assert_eq!(
        (after.messages, &after.conversations, &after.last_message_seq),
        (before.messages, &before.conversations, &before.last_message_seq)
    );
    let own_after = snapshot(&h, &sm, &own).await;
    assert_eq!((own_after.messages, &own_after.conversations), (own_before.messages, &own_before.conversations));
    assert_eq!(own_after.conversations.len(), 1, "tenant two sees tenant one's conversation");
    refused(h.post("/api/v1/patients/search", &st.access, json!({"mrn": "TWO-1"})).await, 404, "not_found");
    // The attempts on conversations were recorded as denied, never as successes.
    let events = h.store.audit_events(audit as i64, 100_000).await.unwrap();
    assert!(events.iter().any(|e| e.outcome == "denied"), "{events:?}");
    for e in &events {
        let by_two = e.actor_user_id == Some(mallory.id.0) || e.actor_user_id == Some(trent.id.0);
        if by_two && e.outcome == "success" {
            // Tenant two's successful events (there should be none besides the reads of its own
            // conversation made by the snapshot) never touch tenant one.
            assert_ne!(e.org_id, Some(one.id.0), "{e:?}");
            assert_ne!(e.target_id.as_deref(), Some(conv.as_str()), "{e:?}");
            assert_ne!(e.patient_id.map(|p| p.to_string()), Some(patient.clone()), "{e:?}");
        }
    }
}

/// A UUID request id the client sends comes back; anything else (free text could carry PHI
/// into logs and the audit trail) is replaced by a generated one.
async fn request_ids(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let chosen = "0192b7a4-1f2e-7c3d-8e9f-0a1b2c3d4e5f";
    let res = h.http.get(format!("{}/healthz", h.url)).header("x-request-id", chosen).send().await.unwrap();
    assert_eq!(res.headers()["x-request-id"], chosen);
    let res = h.http.get(format!("{}/healthz", h.url)).header("x-request-id", "Jamie Rivera HIV follow-up").send().await.unwrap();
    let replaced = res.headers()["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::try_parse(replaced).is_ok(), "{replaced}");
    let mut seen = std::collections::HashSet::new();
    for _ in 0..3 {
        let r = refused(h.call(Method::GET, "/api/v1/me", None, None).await, 401, "missing_token");
        assert!(seen.insert(r.headers["x-request-id"].to_str().unwrap().to_owned()), "request ids repeat");
    }
}

on_sqlite!(malformed_bodies, oversized_bodies, query_parameters, path_ids, request_ids);
on_both_backends!(tokens, disabled_user, other_tenant_ids);
