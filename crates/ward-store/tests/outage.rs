//! The single writer when PostgreSQL goes silent (a network partition: nothing reset, nothing
//! answered): a write fails as unavailable within the writer's bound instead of waiting out the
//! kernel's TCP timeout, and writes succeed again once the database answers, without a restart.

use std::time::Duration;

use ward_domain::audit::{AuditAction, AuditEvent, Outcome};
use ward_store::testing::{CuttableProxy, TestDb};
use ward_store::{Backend, RequestMeta, StoreError};

fn event() -> AuditEvent {
    AuditEvent::new(AuditAction::MessageRead, Outcome::Success)
}

fn meta() -> RequestMeta {
    RequestMeta { source_ip: Some("127.0.0.1".into()), request_id: Some("outage".into()) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_gives_up_on_a_silent_database_and_recovers() {
    let Some(db) = TestDb::open(Backend::Postgres).await else { return };
    let (proxy, store) = CuttableProxy::store_through(&db).await;
    store.record(event(), meta()).await.expect("a write through the proxy");

    proxy.partition();
    // The bound is the writer's (10 s to commit, 5 s to connect); 60 s only turns a hang into
    // a failure here.
    let during = tokio::time::timeout(Duration::from_secs(60), store.record(event(), meta()))
        .await
        .expect("a write must not hang while the database is silent");
    assert!(matches!(during, Err(StoreError::Unavailable)), "{during:?}");

    proxy.restore();
    let mut resumed = false;
    for _ in 0..60 {
        if store.record(event(), meta()).await.is_ok() {
            resumed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(resumed, "writes did not resume within 30 s of the database answering again");
}
