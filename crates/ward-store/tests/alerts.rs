//! Anomaly alert storage on both backends: rules, the cursor that moves with the alerts it
//! records, listing and acknowledgement, and the restricted flag on patients.

use ward_domain::alerts::{AlertRules, Finding, RuleCode};
use ward_domain::ids::{PatientId, UserId};
use ward_domain::role::Role;
use ward_store::testing::TestDb;
use ward_store::{Backend, NewAlert, NewUser, RequestMeta, StoreError, on_both_backends};

on_both_backends!(
    rules_default_then_stored_and_audited,
    alerts_move_the_cursor_once_and_are_audited,
    restricted_flag_is_stored_and_audited
);

fn meta() -> RequestMeta {
    RequestMeta { source_ip: Some("127.0.0.1".into()), request_id: Some("test".into()) }
}

async fn rules_default_then_stored_and_audited(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let org = s.create_org("acme", "Acme", 900, None, meta()).await.unwrap();
    let other = s.create_org("other", "Other", 900, None, meta()).await.unwrap();
    assert_eq!(s.alert_rules(org.id).await.unwrap(), AlertRules::default());
    let mut rules = AlertRules::default();
    rules.bulk_access.max_patients = 5;
    rules.working_hours.enabled = true;
    let actor = UserId::new();
    s.set_alert_rules(org.id, actor, rules.clone(), meta()).await.unwrap();
    assert_eq!(s.alert_rules(org.id).await.unwrap(), rules);
    assert_eq!(s.alert_rules(other.id).await.unwrap(), AlertRules::default(), "rules are per organisation");
    rules.failed_logins.per_org = 7;
    s.set_alert_rules(org.id, actor, rules.clone(), meta()).await.unwrap();
    assert_eq!(s.alert_rules(org.id).await.unwrap().failed_logins.per_org, 7);
    // Invalid rules are refused before anything is written.
    rules.bulk_access.window_minutes = 0;
    assert!(matches!(s.set_alert_rules(org.id, actor, rules, meta()).await, Err(StoreError::Invalid(_))));
    let events = s.audit_events(0, 100).await.unwrap();
    let changes: Vec<_> = events.iter().filter(|e| e.action == "admin.org_policy" && e.detail.contains("alert_rules")).collect();
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[0].actor_user_id, Some(actor.0));
}

fn finding(org: ward_domain::ids::OrgId, user: UserId, patient: Option<PatientId>) -> Finding {
    Finding {
        rule: RuleCode::BulkPatientAccess,
        org,
        at_ms: 0,
        subject_user: Some(user),
        subject_patient: patient,
        count: Some(21),
        threshold: Some(20),
        window_minutes: Some(60),
    }
}

async fn alerts_move_the_cursor_once_and_are_audited(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let org = s.create_org("acme", "Acme", 900, None, meta()).await.unwrap();
    let other = s.create_org("other", "Other", 900, None, meta()).await.unwrap();
    // A fresh database starts evaluating at index 0.
    assert_eq!(s.alert_cursor().await.unwrap(), 0);
    let (u, p) = (UserId::new(), PatientId::new());
    let raised = s.raise_alerts(0, 2, vec![NewAlert { finding: finding(org.id, u, Some(p)), trigger_idx: 1 }]).await.unwrap();
    assert_eq!(raised.len(), 1);
    assert_eq!(s.alert_cursor().await.unwrap(), 2);
    // A second evaluator that read the old cursor loses: nothing is recorded twice.
    let again = s.raise_alerts(0, 2, vec![NewAlert { finding: finding(org.id, u, Some(p)), trigger_idx: 1 }]).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))));
    s.raise_alerts(2, 3, vec![]).await.unwrap();
    s.raise_alerts(3, 4, vec![NewAlert { finding: finding(other.id, u, None), trigger_idx: 3 }]).await.unwrap();

    let a = &raised[0];
    let ev = s.audit_events(a.audit_idx, 1).await.unwrap().remove(0);
    assert_eq!(ev.action, "alert.raised");
    assert_eq!(ev.org_id, Some(org.id.0));
    assert_eq!(ev.patient_id, Some(p.0));
    assert_eq!(ev.target_id, Some(a.id.to_string()));
    let detail: serde_json::Value = serde_json::from_str(&ev.detail).unwrap();
    assert_eq!(detail["rule"], "bulk_patient_access");
    assert_eq!(detail["subject_user"], u.0.to_string());
    assert_eq!((detail["count"].as_i64(), detail["threshold"].as_i64(), detail["window_minutes"].as_i64()), (Some(21), Some(20), Some(60)));

    let listed = s.alerts(org.id, None, false, 50).await.unwrap();
    assert_eq!(listed.iter().map(|a| a.id).collect::<Vec<_>>(), vec![a.id], "only the organisation's own alerts");
    let co = UserId::new();
    let acked = s.acknowledge_alert(org.id, co, a.id, meta()).await.unwrap();
    assert_eq!(acked.acknowledged_by, Some(co));
    let first_at = acked.acknowledged_at;
    let again = s.acknowledge_alert(org.id, UserId::new(), a.id, meta()).await.unwrap();
    assert_eq!((again.acknowledged_by, again.acknowledged_at), (Some(co), first_at), "the first acknowledgement stands");
    assert!(s.alerts(org.id, None, true, 50).await.unwrap().is_empty());
    assert!(matches!(s.acknowledge_alert(other.id, co, a.id, meta()).await, Err(StoreError::NotFound)));
    let acks = s.audit_events(0, 100).await.unwrap().into_iter().filter(|e| e.action == "alert.acknowledge").count();
    assert_eq!(acks, 2);
    // Paging, newest first.
    for i in 0..3 {
        s.raise_alerts(4 + i, 5 + i, vec![NewAlert { finding: finding(org.id, u, None), trigger_idx: 4 + i }]).await.unwrap();
    }
    let page = s.alerts(org.id, None, false, 2).await.unwrap();
    assert_eq!(page.len(), 2);
    assert!(page[0].audit_idx > page[1].audit_idx);
    let rest = s.alerts(org.id, Some(page[1].audit_idx), false, 10).await.unwrap();
    assert_eq!(rest.len(), 2);
}

async fn restricted_flag_is_stored_and_audited(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let org = s.create_org("acme", "Acme", 900, None, meta()).await.unwrap();
    let other = s.create_org("other", "Other", 900, None, meta()).await.unwrap();
    let admin = s
        .create_user(
            NewUser {
                org_id: org.id,
                login: "admin@acme".into(),
                display_name: "Admin".into(),
                role: Role::Admin,
                password_hash: "x".into(),
                password_must_change: false,
                patient_id: None,
            },
            None,
            meta(),
        )
        .await
        .unwrap();
    assert_eq!(s.compliance_officers(org.id).await.unwrap(), vec![]);
    assert_eq!(s.user_role(admin.id).await.unwrap(), Some(Role::Admin));
    let p = s.create_patient(org.id, admin.id, "MRN-1".into(), "Pat".into(), vec![], meta()).await.unwrap();
    assert!(!p.restricted);
    assert!(!s.patient_restricted(p.id).await.unwrap());
    let p = s.set_patient_restricted(org.id, admin.id, p.id, true, meta()).await.unwrap();
    assert!(p.restricted);
    assert!(s.patient_restricted(p.id).await.unwrap());
    assert!(matches!(s.set_patient_restricted(other.id, admin.id, p.id, false, meta()).await, Err(StoreError::NotFound)));
    let ev = s.audit_events(0, 100).await.unwrap().into_iter().rfind(|e| e.action == "patient.restrict").unwrap();
    assert_eq!((ev.patient_id, ev.detail.as_str()), (Some(p.id.0), r#"{"restricted":true}"#));
    // The flag as it stood at a point of the log, not as it stands now.
    assert_eq!(s.patient_restricted_before(p.id, ev.idx).await.unwrap(), None);
    assert_eq!(s.patient_restricted_before(p.id, ev.idx + 1).await.unwrap(), Some(true));
    s.set_patient_restricted(org.id, admin.id, p.id, false, meta()).await.unwrap();
    assert_eq!(s.patient_restricted_before(p.id, ev.idx + 1).await.unwrap(), Some(true));
    assert_eq!(s.patient_restricted_before(p.id, i64::MAX).await.unwrap(), Some(false));
    assert!(!s.patient_restricted(p.id).await.unwrap());
}
