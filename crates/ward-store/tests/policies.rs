//! Policy acknowledgments on both backends: publishing versions, acknowledging only the
//! current one (idempotently), the report of who has not, the "acknowledge before PHI"
//! requirement, tenancy, and audit events with codes and ids only.

use ward_domain::registers::{PolicyDraft, PolicyKind};
use ward_domain::role::Role;
use ward_store::testing::{TestDb, meta, org, user};
use ward_store::{Backend, StoreError, on_both_backends};

on_both_backends!(policies_are_versioned_acknowledged_and_reported);

const TEXT: &str = "Ward may remotely wipe its data from this device.\nSigned: the undersigned.";

async fn policies_are_versioned_acknowledged_and_reported(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let o = org(s, "acme").await;
    let other = org(s, "other").await;
    let co = user(s, &o, "co@acme", Role::ComplianceOfficer).await;
    let a = user(s, &o, "a@acme", Role::Clinician).await;
    let b = user(s, &o, "b@acme", Role::Nurse).await;
    let _patient = user(s, &o, "pat@acme", Role::Patient).await;
    let outsider = user(s, &other, "x@other", Role::Clinician).await;
    let draft = || PolicyDraft::parse("BYOD agreement", TEXT).unwrap();

    let p = s.publish_policy(o.id, Some(co.user_id), None, Some(PolicyKind::ByodWipeAuthority), draft(), meta()).await.unwrap();
    assert_eq!(p.version, 1);
    assert_eq!(s.policies(o.id, a.user_id).await.unwrap(), vec![p.clone()]);
    assert!(s.policies(other.id, outsider.user_id).await.unwrap().is_empty());
    assert!(matches!(s.policy(other.id, p.id, outsider.user_id).await, Err(StoreError::NotFound)));

    // Off by default: nothing blocks PHI.
    assert!(!s.policy_acknowledgment_required(o.id).await.unwrap());
    assert_eq!(s.policies_blocking_phi(o.id, a.user_id).await.unwrap(), 0);
    s.set_policy_acknowledgment_required(o.id, co.user_id, true, meta()).await.unwrap();
    assert!(s.policy_acknowledgment_required(o.id).await.unwrap());
    assert_eq!(s.policies_blocking_phi(o.id, a.user_id).await.unwrap(), 1);
    assert_eq!(s.policies_blocking_phi(other.id, outsider.user_id).await.unwrap(), 0);

    // The report lists the workforce (not the patient) who have not acknowledged.
    let logins = |r: &[ward_store::AcknowledgmentGap]| r[0].pending.iter().map(|(_, l)| l.clone()).collect::<Vec<_>>();
    let r = s.acknowledgment_report(o.id).await.unwrap();
    assert_eq!((r[0].users, logins(&r)), (3, vec!["a@acme".to_owned(), "b@acme".into(), "co@acme".into()]));

    let acked = s.acknowledge_policy(o.id, a.user_id, p.id, 1, meta()).await.unwrap();
    assert!(acked.acknowledged_at.is_some());
    // Again: nothing changes.
    assert_eq!(s.acknowledge_policy(o.id, a.user_id, p.id, 1, meta()).await.unwrap().acknowledged_at, acked.acknowledged_at);
    assert_eq!(s.policies_blocking_phi(o.id, a.user_id).await.unwrap(), 0);
    assert_eq!(logins(&s.acknowledgment_report(o.id).await.unwrap()), vec!["b@acme".to_owned(), "co@acme".into()]);
    // Another organisation's user cannot acknowledge it.
    assert!(matches!(s.acknowledge_policy(other.id, outsider.user_id, p.id, 1, meta()).await, Err(StoreError::NotFound)));

    // A new version needs acknowledging again; the old version no longer counts or can be acknowledged.
    let v2 =
        s.publish_policy(o.id, Some(co.user_id), Some(p.id), None, PolicyDraft::parse("BYOD agreement v2", TEXT).unwrap(), meta()).await;
    let v2 = v2.unwrap();
    assert_eq!((v2.version, v2.kind), (2, PolicyKind::ByodWipeAuthority));
    assert_eq!(s.policies_blocking_phi(o.id, a.user_id).await.unwrap(), 1);
    assert!(matches!(s.acknowledge_policy(o.id, b.user_id, p.id, 1, meta()).await, Err(StoreError::State(_))));
    assert_eq!(s.policy(o.id, p.id, a.user_id).await.unwrap().acknowledged_at, None);
    s.acknowledge_policy(o.id, a.user_id, p.id, 2, meta()).await.unwrap();
    assert_eq!(s.policies_blocking_phi(o.id, a.user_id).await.unwrap(), 0);
    // Another organisation cannot publish a version of it.
    let foreign = s.publish_policy(other.id, Some(outsider.user_id), Some(p.id), None, draft(), meta()).await;
    assert!(matches!(foreign, Err(StoreError::NotFound)));

    s.set_policy_acknowledgment_required(o.id, co.user_id, false, meta()).await.unwrap();
    assert_eq!(s.policies_blocking_phi(o.id, b.user_id).await.unwrap(), 0);

    // Audited with codes and ids only.
    let events = s.audit_events(0, 10_000).await.unwrap();
    let count = |action: &str| events.iter().filter(|e| e.action == action).count();
    assert_eq!(count("policy.publish"), 2);
    assert_eq!(count("policy.acknowledge"), 2);
    assert_eq!(count("policy.settings"), 2);
    for e in &events {
        let text = format!("{e:?}");
        assert!(!text.contains("BYOD") && !text.contains("wipe its data"), "policy text in the audit log: {text}");
    }
}
