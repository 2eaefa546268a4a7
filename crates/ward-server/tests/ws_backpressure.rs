//! Slow and disconnecting WebSocket clients. A member who never reads his stream fills his
//! connection's small send buffer (here 4 events) and the socket behind it. From then on the
//! hub drops his live events instead of queueing them without bound, and marks the connection
//! to catch up from the database. Meanwhile another member's stream gets every message, in
//! order. When the slow reader reads again he gets everything, gapless. Connections dropped
//! mid-traffic are unregistered.

mod common;

use std::time::Duration;

use common::Harness;
use reqwest::Method;
use ward_domain::role::Role;
use ward_store::Backend;

/// A metric's value from the `/metrics` text (the first sample line starting with `name`).
async fn metric(h: &Harness, name: &str) -> f64 {
    let text = h.call(Method::GET, "/metrics", None, None).await.expect(200);
    let text = text.body.as_str().unwrap_or_default().to_owned();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_is_not_queued_without_bound_and_delays_no_one() {
    let Some(h) = Harness::start_with(Backend::Sqlite, |c| c.limits.ws_send_buffer = 4).await else { return };
    let org = h.org("slow", vec![]).await;
    let sender = h.account(&org, "sender@slow", Role::Clinician).await;
    let fast = h.account(&org, "fast@slow", Role::Nurse).await;
    let slow = h.account(&org, "slow@slow", Role::Nurse).await;
    let (ss, sf, sl) = (h.login(&sender).await, h.login(&fast).await, h.login(&slow).await);
    let conv = h.conversation(&ss, "group", &[&fast, &slow]).await;

    let mut slow_stream = h.stream(&sl).await;
    let mut fast_stream = h.stream(&sf).await;
    let resyncs_before = metric(&h, "ward_ws_resyncs_total").await;

    // About 20 MB of events: more than the socket buffers between the server and the slow
    // reader can hold, so his connection's writer blocks and his 4-event buffer overflows.
    const MESSAGES: usize = 600;
    let body = "s".repeat(32 * 1024);
    let sending = {
        let (url, http, token, conv, body) = (h.url.clone(), h.http.clone(), ss.access.clone(), conv.clone(), body.clone());
        tokio::spawn(async move {
            for i in 0..MESSAGES {
                let r = http
                    .post(format!("{url}/api/v1/conversations/{conv}/messages"))
                    .bearer_auth(&token)
                    .json(&serde_json::json!({"client_txn_id": format!("m{i}"), "body": body}))
                    .send()
                    .await
                    .expect("the send reaches the server");
                assert_eq!(r.status(), 201, "send {i}");
            }
        })
    };
    // The fast reader gets every message in order while the slow one reads nothing.
    let mut seqs = Vec::new();
    while seqs.len() < MESSAGES {
        let e = fast_stream.next_of_kind("message", Duration::from_secs(30)).await.expect("the fast reader is not held up");
        seqs.push(e["seq"].as_i64().unwrap());
    }
    sending.await.unwrap();
    assert!(seqs.windows(2).all(|w| w[1] > w[0]), "in order");
    assert!(metric(&h, "ward_ws_resyncs_total").await > resyncs_before, "the slow reader's buffer overflowed into a catch-up");

    // The slow reader, reading at last, misses nothing and gets nothing twice.
    let mut bodies = 0usize;
    let mut last_seq = 0i64;
    while bodies < MESSAGES {
        let e = slow_stream.next_of_kind("message", Duration::from_secs(30)).await.expect("the slow reader catches up");
        let seq = e["seq"].as_i64().unwrap();
        assert!(seq > last_seq, "event sequence goes forward without repeats: {last_seq} then {seq}");
        last_seq = seq;
        assert_eq!(e["message"]["body"].as_str().map(str::len), Some(body.len()));
        bodies += 1;
    }
    assert!(slow_stream.next_of_kind("message", Duration::from_millis(500)).await.is_none(), "nothing extra");

    // Connections dropped mid-traffic are unregistered.
    let open_before = metric(&h, "ward_ws_connections").await;
    let mut dropped = Vec::new();
    for _ in 0..10 {
        dropped.push(h.stream(&sf).await);
    }
    assert_eq!(metric(&h, "ward_ws_connections").await, open_before + 10.0);
    for i in 0..20 {
        h.send(&ss, &conv, &format!("d{i}"), "during the drops").await.expect(201);
    }
    drop(dropped);
    let mut settled = false;
    for _ in 0..50 {
        if metric(&h, "ward_ws_connections").await == open_before {
            settled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(settled, "dropped connections were not unregistered");
}
