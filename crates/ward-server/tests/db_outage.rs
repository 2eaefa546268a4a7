//! PostgreSQL going away mid-service: Ward reaches its database through a TCP proxy the test
//! can cut, as a database restart does (open connections reset, new ones refused), or silence,
//! as a network partition does (nothing reset, nothing answered). Either way, requests that
//! need the database fail with `503 unavailable` and a `Retry-After` rather than hang, and
//! `/readyz` says not ready; `/healthz` (liveness) stays up. When the proxy forwards again,
//! service resumes without a restart, and a send retried with its `client_txn_id` is stored
//! exactly once.

mod common;

use std::time::Duration;

use common::Harness;
use reqwest::Method;
use ward_domain::role::Role;
use ward_store::Backend;
use ward_store::testing::{CuttableProxy, TestDb};

#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Connections reset, new ones refused.
    Restart,
    /// Nothing answers and nothing is reset.
    Partition,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_gives_503_and_service_resumes() {
    outage(Fault::Restart).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_partition_gives_503_and_service_resumes() {
    outage(Fault::Partition).await;
}

async fn outage(fault: Fault) {
    let Some(db) = TestDb::open(Backend::Postgres).await else { return };
    // The server's own store reaches the test's schema through the proxy.
    let (proxy, store) = CuttableProxy::store_through(&db).await;
    let h = Harness::start_on_store(db, store).await;

    let org = h.org("outage", vec![]).await;
    let a = h.account(&org, "a@outage", Role::Clinician).await;
    let b = h.account(&org, "b@outage", Role::Clinician).await;
    let s = h.login(&a).await;
    let conv = h.conversation(&s, "group", &[&b]).await;
    h.send(&s, &conv, "before", "sent before the outage").await.expect(201);
    h.call(Method::GET, "/readyz", None, None).await.expect(200);

    match fault {
        Fault::Restart => proxy.cut(),
        Fault::Partition => proxy.partition(),
    }
    // Reads and writes both fail with 503 and a Retry-After, never hang or 500.
    let mut write_refused = None;
    for attempt in 0..3 {
        let r = h.send(&s, &conv, "during", "sent during the outage").await;
        assert!(r.status == 503 || r.status.is_success(), "{fault:?}, attempt {attempt}: {} {}", r.status, r.body);
        if r.status == 503 {
            write_refused = Some(r);
            break;
        }
    }
    let refused = write_refused.unwrap_or_else(|| panic!("{fault:?}: a send during the outage is refused"));
    assert_eq!(refused.code(), "unavailable", "{}", refused.body);
    assert!(refused.headers.contains_key("retry-after"), "{:?}", refused.headers);
    let read = h.get(&format!("/api/v1/conversations/{conv}/messages"), &s.access).await;
    assert_eq!(read.status, 503, "a read during the outage: {}", read.body);
    assert_eq!(read.code(), "unavailable");
    h.call(Method::GET, "/readyz", None, None).await.expect_problem(503, "unavailable");
    h.call(Method::GET, "/healthz", None, None).await.expect(200);

    proxy.restore();
    // Service resumes by itself: the same transaction id, retried, lands once.
    let mut resumed = false;
    for _ in 0..120 {
        let r = h.send(&s, &conv, "during", "sent during the outage").await;
        if r.status.is_success() {
            resumed = true;
            break;
        }
        assert_eq!(r.status, 503, "{}", r.body);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(resumed, "sends did not resume within 30 s of the database returning");
    h.send(&s, &conv, "after", "sent after the outage").await.expect(201);
    h.call(Method::GET, "/readyz", None, None).await.expect(200);
    let page = h.get(&format!("/api/v1/conversations/{conv}/messages?after=0"), &s.access).await.expect(200);
    let txns: Vec<&str> = page.body["items"].as_array().unwrap().iter().map(|m| m["client_txn_id"].as_str().unwrap()).collect();
    assert_eq!(txns, ["before", "during", "after"], "each send stored once, in order");
    let seqs: Vec<i64> = page.body["items"].as_array().unwrap().iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, [1, 2, 3]);
}
