//! The audit log's integrator and signer on a running server: checkpoints cover every
//! committed audit event, verify with the published key, and are published to a file.

mod common;

use std::time::Duration;

use common::Harness;
use ward_audit::{Checkpoint, Verifier, tree};
use ward_domain::role::Role;
use ward_store::{Backend, on_both_backends};

on_both_backends!(checkpoints_cover_the_log_and_verify_with_the_published_key);

async fn checkpoints_cover_the_log_and_verify_with_the_published_key(backend: Backend) {
    let Some(h) = Harness::start_with(backend, |c| {
        c.audit.checkpoint_every_entries = 5;
        c.audit.checkpoint_interval_secs = 3600;
    })
    .await
    else {
        return;
    };
    let org = h.org("acme", vec![]).await;
    for i in 0..5 {
        h.account(&org, &format!("u{i}@acme"), Role::Clinician).await;
    }
    assert!(h.store.audit_size().await.unwrap() >= 5);

    // The background task signs once 5 entries are uncovered (it ticks every second).
    let mut latest = None;
    for _ in 0..100 {
        latest = h.store.latest_checkpoint().await.unwrap();
        if latest.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let latest = latest.expect("a checkpoint within 10 s");
    let size = latest.tree_size as u64;
    assert!(size >= 5);

    let dir = h.db.dir.path().join("audit");
    let vkey: Verifier = std::fs::read_to_string(dir.join("verifier.vkey")).unwrap().trim().parse().unwrap();
    assert_eq!(vkey.name(), "ward.local/audit");
    let leaves = h.store.audit_leaf_hashes(0, size).await.unwrap();
    let cp = Checkpoint::parse(latest.note.as_bytes(), "ward.local/audit", &vkey).expect("signature verifies with the vkey");
    assert_eq!((cp.size(), *cp.root()), (size, tree::root(&leaves)));
    assert_eq!(latest.root().unwrap(), tree::root(&leaves));

    // On demand: a checkpoint at the current size, also published to checkpoints.log.
    h.account(&org, "late@acme", Role::Clinician).await;
    let audit = &h.running.as_ref().unwrap().state.audit;
    let now = audit.checkpoint_now().await.unwrap();
    let total = h.store.audit_size().await.unwrap();
    assert_eq!(now.tree_size as u64, total);
    let all = h.store.audit_leaf_hashes(0, total).await.unwrap();
    let cp = Checkpoint::parse(now.note.as_bytes(), "ward.local/audit", &vkey).unwrap();
    assert_eq!(*cp.root(), tree::root(&all));
    assert_eq!(audit.checkpoint_now().await.unwrap(), now, "no new entries, no new checkpoint");
    let published = std::fs::read_to_string(dir.join("checkpoints.log")).unwrap();
    assert!(published.contains(&latest.note) && published.contains(&now.note));

    // The private key is the owner's alone, and reopening keeps it.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("signing.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let again = ward_server::audit_log::load_or_create_key(&dir, "ward.local/audit").unwrap();
    assert_eq!(again.verifier().to_string(), vkey.to_string());
    assert!(ward_server::audit_log::load_or_create_key(&dir, "other.example/log").is_err(), "a log keeps its origin");
}
