//! The audit log API over real HTTPS: checkpoints and proofs verify with ward-audit against
//! the published key, the search pages by index within the organisation, only compliance
//! officers and admins get in, every use is itself audited, and bad parameters are refused.

mod common;

use common::Harness;
use serde_json::Value;
use ward_audit::{Checkpoint, ConsistencyProof, Hash, InclusionProof, Verifier};
use ward_domain::role::Role;
use ward_store::{Backend, on_both_backends};

on_both_backends!(proofs_verify_against_signed_checkpoints);
ward_store::on_sqlite!(only_compliance_roles_and_every_use_is_audited, bad_parameters_are_refused, search_filters_and_pages);

fn vkey(h: &Harness) -> Verifier {
    std::fs::read_to_string(h.db.dir.path().join("audit/verifier.vkey")).unwrap().trim().parse().unwrap()
}

fn checkpoint(h: &Harness, body: &Value) -> Checkpoint {
    Checkpoint::parse(body["note"].as_str().unwrap().as_bytes(), "ward.local/audit", &vkey(h)).expect("checkpoint verifies")
}

async fn proofs_verify_against_signed_checkpoints(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let org = h.org("acme", vec![]).await;
    let co = h.login(&h.account(&org, "co@acme", Role::ComplianceOfficer).await).await;
    for i in 0..4 {
        h.account(&org, &format!("u{i}@acme"), Role::Nurse).await;
    }

    let first = h.get("/api/v1/audit/checkpoint", &co.access).await.expect(200).body;
    let cp1 = checkpoint(&h, &first);
    assert_eq!(first["size"].as_u64().unwrap(), cp1.size());
    assert_eq!(first["root"].as_str().unwrap(), cp1.root().to_string());
    assert_eq!(first["origin"], "ward.local/audit");

    // The note alone, as text.
    let text = h
        .http
        .get(format!("{}/api/v1/audit/checkpoint", h.url))
        .bearer_auth(&co.access)
        .header("accept", "text/plain")
        .send()
        .await
        .unwrap();
    assert_eq!(text.status(), 200);
    assert!(text.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    assert_eq!(text.text().await.unwrap(), first["note"].as_str().unwrap());

    // Every event has an inclusion proof against the checkpoint's root.
    let rows = h.store.audit_events(0, 1000).await.unwrap();
    for i in 0..cp1.size() {
        let p = h.get(&format!("/api/v1/audit/proofs/inclusion?index={i}&tree_size={}", cp1.size()), &co.access).await.expect(200);
        let proof: InclusionProof = serde_json::from_value(p.body).unwrap();
        let leaf = rows[i as usize].leaf().leaf_hash();
        proof.verify(&leaf, cp1.root()).expect("inclusion verifies");
        let wrong = rows[(i as usize + 1) % rows.len()].leaf().leaf_hash();
        assert!(proof.verify(&wrong, cp1.root()).is_err());
    }

    // The log grows; a new checkpoint is consistent with the first.
    h.account(&org, "late@acme", Role::Staff).await;
    let cp2 = h.running.as_ref().unwrap().state.audit.checkpoint_now().await.unwrap();
    let cp2 = Checkpoint::parse(cp2.note.as_bytes(), "ward.local/audit", &vkey(&h)).unwrap();
    assert!(cp2.size() > cp1.size());
    let latest = h.get("/api/v1/audit/checkpoint", &co.access).await.expect(200).body;
    assert_eq!(checkpoint(&h, &latest).size(), cp2.size());
    for old in [0, 1, cp1.size() - 1, cp1.size()] {
        let p = h.get(&format!("/api/v1/audit/proofs/consistency?old_size={old}&tree_size={}", cp2.size()), &co.access).await.expect(200);
        let proof: ConsistencyProof = serde_json::from_value(p.body).unwrap();
        let old_root = ward_audit::tree::root(&h.store.audit_leaf_hashes(0, old).await.unwrap());
        proof.verify(&old_root, cp2.root()).expect("consistency verifies");
    }
    // Without tree_size: against the latest checkpoint.
    let p = h.get(&format!("/api/v1/audit/proofs/consistency?old_size={}", cp1.size()), &co.access).await.expect(200);
    let proof: ConsistencyProof = serde_json::from_value(p.body).unwrap();
    assert_eq!(proof.tree_size, cp2.size());
    proof.verify(cp1.root(), cp2.root()).unwrap();
    assert!(proof.verify(&Hash([7; 32]), cp2.root()).is_err());
}

async fn only_compliance_roles_and_every_use_is_audited(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let org = h.org("acme", vec![]).await;
    let admin = h.login(&h.account(&org, "admin@acme", Role::Admin).await).await;
    h.get("/api/v1/audit/checkpoint", &admin.access).await.expect(200);
    h.get("/api/v1/audit/proofs/inclusion?index=0", &admin.access).await.expect(200);
    for role in [Role::Clinician, Role::Nurse, Role::Staff, Role::Patient] {
        let acct = if role == Role::Patient {
            let p = h
                .store
                .create_patient(org.id, admin.account.id, "MRN-1".into(), "Patient One".into(), vec![], Harness::meta())
                .await
                .unwrap();
            h.account_for_patient(&org, "pt@acme", role, Some(p.id)).await
        } else {
            h.account(&org, &format!("{}@acme", role.as_str()), role).await
        };
        let s = h.login(&acct).await;
        for path in [
            "/api/v1/audit/checkpoint",
            "/api/v1/audit/proofs/inclusion?index=0",
            "/api/v1/audit/proofs/consistency?old_size=0",
            "/api/v1/audit/events",
        ] {
            h.get(path, &s.access).await.expect_problem(403, "forbidden");
        }
    }
    let events = h.store.audit_events(0, 1000).await.unwrap();
    let reads: Vec<_> = events.iter().filter(|e| e.action == "audit.read").collect();
    assert_eq!(reads.iter().filter(|e| e.outcome == "success" && e.actor_user_id == Some(admin.account.id.0)).count(), 2);
    assert!(reads.iter().filter(|e| e.outcome == "denied").count() >= 12);
    assert!(reads.iter().all(|e| e.detail.contains("\"op\"")));
}

async fn bad_parameters_are_refused(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let org = h.org("acme", vec![]).await;
    let co = h.login(&h.account(&org, "co@acme", Role::ComplianceOfficer).await).await;
    let size = checkpoint(&h, &h.get("/api/v1/audit/checkpoint", &co.access).await.expect(200).body).size();
    for path in [
        "/api/v1/audit/proofs/inclusion",
        "/api/v1/audit/proofs/inclusion?index=abc",
        "/api/v1/audit/proofs/inclusion?index=-1",
        "/api/v1/audit/proofs/inclusion?index=0&bogus=1",
        "/api/v1/audit/proofs/consistency?tree_size=3",
        "/api/v1/audit/events?limit=x",
        "/api/v1/audit/events?actor=not-a-uuid",
    ] {
        h.get(path, &co.access).await.expect_problem(400, "invalid_parameter");
    }
    for path in [
        format!("/api/v1/audit/proofs/inclusion?index={size}&tree_size={size}"),
        format!("/api/v1/audit/proofs/inclusion?index=0&tree_size={}", size + 1_000_000),
        format!("/api/v1/audit/proofs/consistency?old_size={}&tree_size={size}", size + 1),
        "/api/v1/audit/events?limit=0".into(),
        "/api/v1/audit/events?action=no.such".into(),
        "/api/v1/audit/events?outcome=maybe".into(),
        "/api/v1/audit/events?from=10&to=5".into(),
    ] {
        h.get(&path, &co.access).await.expect_problem(422, "validation_failed");
    }
}

async fn search_filters_and_pages(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let org = h.org("acme", vec![]).await;
    let other = h.org("other", vec![]).await;
    let co_acct = h.account(&org, "co@acme", Role::ComplianceOfficer).await;
    let co = h.login(&co_acct).await;
    let nurse = h.account(&org, "n@acme", Role::Nurse).await;
    h.login(&nurse).await;
    h.login(&h.account(&other, "x@other", Role::Nurse).await).await;

    // Paging by cursor visits every event of the organisation once, in order.
    let mut seen = Vec::new();
    let mut after: Option<i64> = None;
    loop {
        let path = match after {
            Some(a) => format!("/api/v1/audit/events?limit=2&after={a}"),
            None => "/api/v1/audit/events?limit=2".into(),
        };
        let page = h.get(&path, &co.access).await.expect(200).body;
        for e in page["items"].as_array().unwrap() {
            seen.push(e["idx"].as_i64().unwrap());
        }
        match page["next_cursor"].as_i64() {
            Some(c) => after = Some(c),
            None => break,
        }
    }
    let all = h.store.audit_events(0, 1000).await.unwrap();
    let mine: Vec<i64> =
        all.iter().filter(|e| e.org_id == Some(org.id.0) && seen.last().is_some_and(|l| e.idx <= *l)).map(|e| e.idx).collect();
    assert_eq!(seen, mine);
    assert!(!seen.is_empty());

    // Filters, and leaf hashes as the tree hashes them.
    let logins =
        h.get(&format!("/api/v1/audit/events?action=auth.login&actor={}&outcome=success", nurse.id.0), &co.access).await.expect(200).body;
    let items = logins["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    let idx = items[0]["idx"].as_i64().unwrap();
    assert_eq!(items[0]["leaf_hash"].as_str().unwrap(), all[idx as usize].leaf().leaf_hash().to_string());
    let none = h.get("/api/v1/audit/events?from=0&to=1", &co.access).await.expect(200).body;
    assert!(none["items"].as_array().unwrap().is_empty());
    let reads = h.get(&format!("/api/v1/audit/events?action=audit.read&actor={}", co_acct.id.0), &co.access).await.expect(200).body;
    assert!(!reads["items"].as_array().unwrap().is_empty());
}
