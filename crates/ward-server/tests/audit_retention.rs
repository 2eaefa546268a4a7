//! Audit retention through the server: archiving past retention leaves proofs for the
//! archived entries working, and the event search says where the live log now starts.

mod common;

use common::Harness;
use ward_audit::{Checkpoint, ExportLine, InclusionProof, Verifier};
use ward_domain::role::Role;
use ward_store::{Backend, on_both_backends};

on_both_backends!(archived_ranges_leave_the_search_but_keep_their_proofs);

async fn archived_ranges_leave_the_search_but_keep_their_proofs(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let org = h.org("acme", vec![]).await;
    let co = h.login(&h.account(&org, "co@acme", Role::ComplianceOfficer).await).await;
    for i in 0..3 {
        h.account(&org, &format!("u{i}@acme"), Role::Nurse).await;
    }
    let state = &h.running.as_ref().unwrap().state;
    let cp = state.audit.checkpoint_now().await.unwrap();
    let size = cp.tree_size as u64;
    let vkey: Verifier = state.audit.verifier();
    let cp = Checkpoint::parse(cp.note.as_bytes(), "ward.local/audit", &vkey).unwrap();

    let before = h.get("/api/v1/audit/events?limit=200", &co.access).await.expect(200).body;
    assert_eq!(before["archived_before"], 0);
    assert_eq!(before["items"][0]["idx"], 0);

    // Archive with a horizon in the far future (as if six years had passed): everything the
    // checkpoint covers goes.
    let dir = h.db.dir.path().join("archive");
    let done = ward_server::audit_archive::archive_due(&h.store, &vkey, &dir, i64::MAX, Harness::meta, &mut |_, _| {}).await.unwrap();
    assert_eq!(done.len(), 1);
    assert_eq!((done[0].start, done[0].end, done[0].tree_size), (0, size, size));
    let segment = std::fs::read(&done[0].path).unwrap();
    let sha = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &segment);
    assert_eq!(done[0].sha256, sha.as_ref().iter().map(|b| format!("{b:02x}")).collect::<String>());
    ward_audit::segment::verify_segment(segment.as_slice(), &vkey, |_, _| {}).unwrap();
    let recorded = h.store.audit_archives().await.unwrap();
    assert_eq!(recorded[0].file_sha256, done[0].sha256);

    // The search starts after the archived range and says so.
    let after = h.get("/api/v1/audit/events?limit=200", &co.access).await.expect(200).body;
    assert_eq!(after["archived_before"], size);
    let items = after["items"].as_array().unwrap();
    assert!(!items.is_empty() && items.iter().all(|e| e["idx"].as_u64().unwrap() >= size), "{after}");
    let early = h.get("/api/v1/audit/events?after=0&limit=200", &co.access).await.expect(200).body;
    assert_eq!(early["items"][0]["idx"], after["items"][0]["idx"]);

    // An archived entry's inclusion proof still verifies, with its leaf from the segment.
    let line = segment.split(|b| *b == b'\n').nth(2).unwrap();
    let ExportLine::Event { event, .. } = serde_json::from_slice(line).unwrap() else { panic!("an event line") };
    assert_eq!(event.idx, 1);
    let p = h.get(&format!("/api/v1/audit/proofs/inclusion?index=1&tree_size={size}"), &co.access).await.expect(200);
    let proof: InclusionProof = serde_json::from_value(p.body).unwrap();
    proof.verify(&event.leaf_hash(), cp.root()).unwrap();

    // The log keeps growing from where it was, and later checkpoints still sign.
    h.account(&org, "late@acme", Role::Staff).await;
    let next = state.audit.checkpoint_now().await.unwrap();
    assert!(next.tree_size as u64 > size);
}
