//! The risk register on both backends: create, update, delete with tenancy and owner checks,
//! listed by score; audited with codes, the score and ids only.

use ward_domain::registers::{RiskDraft, RiskStatus};
use ward_domain::role::Role;
use ward_store::testing::{TestDb, meta, org, user};
use ward_store::{Backend, StoreError, on_both_backends};

on_both_backends!(risk_register_by_score, training_records_per_user);

async fn risk_register_by_score(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let o = org(s, "acme").await;
    let other = org(s, "other").await;
    let co = user(s, &o, "co@acme", Role::ComplianceOfficer).await;
    let outsider = user(s, &other, "co@other", Role::ComplianceOfficer).await;
    let draft = |d: &str, l, i| RiskDraft::parse(d, l, i, RiskStatus::Open, "2027-01-01").unwrap();

    let low = s.create_risk(o.id, co.user_id, draft("Paper charts left out", 2, 2), None, meta()).await.unwrap();
    let high = s.create_risk(o.id, co.user_id, draft("Lost unencrypted phone", 4, 5), Some(co.user_id), meta()).await.unwrap();
    assert_eq!((high.likelihood, high.impact, high.owner_id), (4, 5, Some(co.user_id)));
    assert_eq!(s.risks(o.id).await.unwrap().iter().map(|r| r.id).collect::<Vec<_>>(), vec![high.id, low.id]);
    assert!(s.risks(other.id).await.unwrap().is_empty());
    let bad_owner = s.create_risk(o.id, co.user_id, draft("x", 1, 1), Some(outsider.user_id), meta()).await;
    assert!(matches!(bad_owner, Err(StoreError::State(_))));

    // Raising the low risk's likelihood moves it to the top.
    let up = s.update_risk(
        o.id,
        co.user_id,
        low.id,
        RiskDraft::parse("Paper charts left out", 5, 5, RiskStatus::Mitigating, "2026-12-15").unwrap(),
        None,
        meta(),
    );
    assert_eq!(up.await.unwrap().status, RiskStatus::Mitigating);
    assert_eq!(s.risks(o.id).await.unwrap()[0].id, low.id);
    let foreign = s.update_risk(other.id, outsider.user_id, low.id, draft("x", 1, 1), None, meta()).await;
    assert!(matches!(foreign, Err(StoreError::NotFound)));
    assert!(matches!(s.delete_risk(other.id, outsider.user_id, low.id, meta()).await, Err(StoreError::NotFound)));
    s.delete_risk(o.id, co.user_id, high.id, meta()).await.unwrap();
    assert_eq!(s.risks(o.id).await.unwrap().len(), 1);

    let events = s.audit_events(0, 10_000).await.unwrap();
    assert_eq!(events.iter().filter(|e| e.action == "risk.change").count(), 4);
    for e in &events {
        let text = format!("{e:?}");
        assert!(!text.contains("Paper charts") && !text.contains("unencrypted"), "risk text in the audit log: {text}");
    }
}

async fn training_records_per_user(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let o = org(s, "acme").await;
    let other = org(s, "other").await;
    let co = user(s, &o, "co@acme", Role::ComplianceOfficer).await;
    let nurse = user(s, &o, "nurse@acme", Role::Nurse).await;
    let patient = user(s, &o, "pat@acme", Role::Patient).await;
    let outsider = user(s, &other, "x@other", Role::Staff).await;
    let rec = |u, course: &str, day: &str| s.record_training(o.id, co.user_id, u, course.into(), day.into(), meta());
    rec(nurse.user_id, "HIPAA basics", "2026-01-10").await.unwrap();
    rec(nurse.user_id, "Phishing", "2026-06-01").await.unwrap();
    rec(co.user_id, "HIPAA basics", "2026-02-01").await.unwrap();
    for bad in [patient.user_id, outsider.user_id] {
        assert!(matches!(rec(bad, "HIPAA basics", "2026-01-10").await, Err(StoreError::State(_))));
    }
    let mine = s.training_records(o.id, Some(nurse.user_id)).await.unwrap();
    assert_eq!(mine.iter().map(|t| t.course.as_str()).collect::<Vec<_>>(), vec!["Phishing", "HIPAA basics"]);
    assert_eq!(s.training_records(o.id, None).await.unwrap().len(), 3);
    assert!(s.training_records(other.id, None).await.unwrap().is_empty());
    let events = s.audit_events(0, 10_000).await.unwrap();
    assert_eq!(events.iter().filter(|e| e.action == "training.record").count(), 3);
    assert!(events.iter().all(|e| !format!("{e:?}").contains("Phishing")));
}
