//! The consent registry, notice templates and the notice outbox on both backends: grants are
//! append-only evidence (a grant ends once, by revocation or by a newer grant), tenancy holds
//! in every query, a notice is queued only under a current consent, sealed under the
//! patient's key, and every change is audited with codes and ids only.

use ward_domain::consent::{ConsentChannel, ConsentGrant, NoticeChannel};
use ward_domain::contact::ContactKind;
use ward_domain::role::Role;
use ward_store::testing::{TestDb, contains_bytes, meta, org, user};
use ward_store::{Backend, ConsentEnd, ContactOwner, NoticeDraft, NoticeOutcome, StoreError, TemplateDraft, on_both_backends};

on_both_backends!(consent_history_is_append_only_and_audited, templates_are_per_organisation, notices_need_a_current_consent);

fn grant(channel: ConsentChannel) -> ConsentGrant {
    ConsentGrant::new(channel, None, false).unwrap()
}

async fn consent_history_is_append_only_and_audited(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let (a, b) = (org(s, "acme").await, org(s, "other").await);
    let doc = user(s, &a, "doc", Role::Clinician).await;
    let p = s.create_patient(a.id, doc.user_id, "MRN-1".into(), "Jamie Doe".into(), vec![doc.user_id], meta()).await.unwrap();

    let first = s.record_consent(a.id, doc.user_id, p.id, grant(ConsentChannel::SmsNotices), meta()).await.unwrap();
    assert!(first.is_current());
    let unsecured = ConsentGrant::new(ConsentChannel::UnsecuredPhi, Some("risk-2026.1".into()), true).unwrap();
    let u = s.record_consent(a.id, doc.user_id, p.id, unsecured, meta()).await.unwrap();
    assert_eq!(u.warning_version.as_deref(), Some("risk-2026.1"));
    assert!(u.patient_insists);

    // A newer grant for the same channel supersedes the current one; the old one stays.
    let again = ConsentGrant::new(ConsentChannel::SmsNotices, Some("v2".into()), false).unwrap();
    let second = s.record_consent(a.id, doc.user_id, p.id, again, meta()).await.unwrap();
    let revoked = s.revoke_consent(a.id, doc.user_id, p.id, ConsentChannel::SmsNotices, meta()).await.unwrap();
    assert_eq!(revoked.id, second.id);
    assert_eq!(revoked.end_reason, Some(ConsentEnd::Revoked));
    assert_eq!(revoked.revoked_by, Some(doc.user_id));
    // Nothing current left to revoke.
    assert!(matches!(s.revoke_consent(a.id, doc.user_id, p.id, ConsentChannel::SmsNotices, meta()).await, Err(StoreError::State(_))));
    assert!(s.current_consent(a.id, p.id, ConsentChannel::SmsNotices).await.unwrap().is_none());
    assert_eq!(s.current_consent(a.id, p.id, ConsentChannel::UnsecuredPhi).await.unwrap().map(|c| c.id), Some(u.id));

    let history = s.consent_history(a.id, doc.user_id, p.id, meta()).await.unwrap();
    assert_eq!(history.len(), 3, "every grant stays in the history");
    let old = history.iter().find(|c| c.id == first.id).unwrap();
    assert_eq!(old.end_reason, Some(ConsentEnd::Superseded));
    assert!(old.revoked_at.is_some());
    assert_eq!(history.iter().filter(|c| c.is_current()).count(), 1);

    // Another tenant's patient does not exist for this organisation, and nothing was written.
    assert!(matches!(s.record_consent(b.id, doc.user_id, p.id, grant(ConsentChannel::Portal), meta()).await, Err(StoreError::NotFound)));
    assert!(matches!(s.consent_history(b.id, doc.user_id, p.id, meta()).await, Err(StoreError::NotFound)));
    assert!(matches!(s.current_consent(b.id, p.id, ConsentChannel::Portal).await, Err(StoreError::NotFound)));

    let events = s.audit_events(0, 1000).await.unwrap();
    let count = |action: &str| events.iter().filter(|e| e.action == action && e.patient_id == Some(p.id.0)).count();
    assert_eq!(count("consent.record"), 3);
    assert_eq!(count("consent.revoke"), 1);
    assert_eq!(count("consent.read"), 1);
    let superseding = events.iter().find(|e| e.action == "consent.record" && e.detail.contains("superseded")).unwrap();
    assert!(superseding.detail.contains(&first.id.to_string()));
    for e in events.iter().filter(|e| e.action.starts_with("consent.")) {
        assert!(!e.detail.contains("risk-2026.1") && !e.detail.contains("Jamie"), "{}", e.detail);
    }
}

async fn templates_are_per_organisation(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let (a, b) = (org(s, "acme").await, org(s, "other").await);
    let admin = user(s, &a, "admin", Role::Admin).await;
    let draft = |name: &str| TemplateDraft {
        name: name.into(),
        channel: NoticeChannel::Sms,
        body: "See you {date} at {time}, {first_name}".into(),
    };
    let t = s.create_notice_template(a.id, admin.user_id, draft("reminder"), meta()).await.unwrap();
    assert!(matches!(s.create_notice_template(a.id, admin.user_id, draft("reminder"), meta()).await, Err(StoreError::Conflict(_))));
    // The same name in another organisation is another template.
    s.create_notice_template(b.id, admin.user_id, draft("reminder"), meta()).await.unwrap();
    let other = s.create_notice_template(a.id, admin.user_id, draft("second"), meta()).await.unwrap();
    assert!(matches!(
        s.update_notice_template(a.id, admin.user_id, other.id, draft("reminder"), meta()).await,
        Err(StoreError::Conflict(_))
    ));
    let mut changed = draft("renamed");
    changed.channel = NoticeChannel::Email;
    let u = s.update_notice_template(a.id, admin.user_id, t.id, changed, meta()).await.unwrap();
    assert_eq!((u.name.as_str(), u.channel), ("renamed", NoticeChannel::Email));
    assert_eq!(s.notice_templates(a.id).await.unwrap().len(), 2);
    assert!(matches!(s.notice_template(b.id, t.id).await, Err(StoreError::NotFound)));
    assert!(matches!(s.update_notice_template(b.id, admin.user_id, t.id, draft("x"), meta()).await, Err(StoreError::NotFound)));
    assert!(matches!(s.delete_notice_template(b.id, admin.user_id, t.id, meta()).await, Err(StoreError::NotFound)));
    s.delete_notice_template(a.id, admin.user_id, t.id, meta()).await.unwrap();
    assert!(matches!(s.notice_template(a.id, t.id).await, Err(StoreError::NotFound)));
    let events = s.audit_events(0, 1000).await.unwrap();
    let ops: Vec<_> = events.iter().filter(|e| e.action == "notice.template").map(|e| e.detail.clone()).collect();
    assert_eq!(ops.len(), 5, "{ops:?}");
    assert!(ops.iter().all(|d| !d.contains("See you")), "no template text in the audit log");
}

async fn notices_need_a_current_consent(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let (a, b) = (org(s, "acme").await, org(s, "other").await);
    let doc = user(s, &a, "doc", Role::Clinician).await;
    let p = s.create_patient(a.id, doc.user_id, "MRN-1".into(), "Jamie Doe".into(), vec![doc.user_id], meta()).await.unwrap();
    let text = "See you Tuesday at 3, OUTBOXCANARY";
    let draft = |channel| NoticeDraft { patient_id: p.id, template_id: uuid::Uuid::now_v7(), channel, text: text.into() };

    assert_eq!(s.enqueue_notice(a.id, doc.user_id, draft(NoticeChannel::Sms), meta()).await.unwrap(), NoticeOutcome::ConsentRequired);
    let consent = s.record_consent(a.id, doc.user_id, p.id, grant(ConsentChannel::SmsNotices), meta()).await.unwrap();
    // An SMS consent does not cover email.
    assert_eq!(s.enqueue_notice(a.id, doc.user_id, draft(NoticeChannel::Email), meta()).await.unwrap(), NoticeOutcome::ConsentRequired);
    // Consent alone is not enough: SMS needs a verified phone number (docs/devices.md).
    assert_eq!(
        s.enqueue_notice(a.id, doc.user_id, draft(NoticeChannel::Sms), meta()).await.unwrap(),
        NoticeOutcome::VerifiedContactRequired
    );
    let phone = s.test_verified_contact(a.id, doc.user_id, ContactOwner::Patient(p.id), ContactKind::Phone, "+14155550100").await;
    let NoticeOutcome::Queued(q) = s.enqueue_notice(a.id, doc.user_id, draft(NoticeChannel::Sms), meta()).await.unwrap() else {
        panic!("not queued")
    };
    assert_eq!((q.status.as_str(), q.consent_id), ("queued", consent.id));
    assert_eq!(q.destination, format!("contact:{}", phone.id));
    assert_eq!(q.contact_id, Some(phone.id));
    // Another tenant cannot queue for this patient.
    assert!(matches!(s.enqueue_notice(b.id, doc.user_id, draft(NoticeChannel::Sms), meta()).await, Err(StoreError::NotFound)));
    s.revoke_consent(a.id, doc.user_id, p.id, ConsentChannel::SmsNotices, meta()).await.unwrap();
    assert_eq!(s.enqueue_notice(a.id, doc.user_id, draft(NoticeChannel::Sms), meta()).await.unwrap(), NoticeOutcome::ConsentRequired);

    let outbox = s.notice_outbox(a.id, p.id).await.unwrap();
    assert_eq!(outbox.len(), 1);
    assert_eq!(outbox[0].body, text);
    assert!(s.notice_outbox(b.id, p.id).await.unwrap().is_empty());
    // Sealed at rest.
    assert!(!contains_bytes(&db.raw_contents().await, b"OUTBOXCANARY"));

    let events = s.audit_events(0, 1000).await.unwrap();
    let sends: Vec<_> = events.iter().filter(|e| e.action == "notice.send").collect();
    assert_eq!(sends.iter().filter(|e| e.outcome == "success").count(), 1);
    assert_eq!(sends.iter().filter(|e| e.outcome == "failure" && e.detail.contains("consent_required")).count(), 3);
    assert_eq!(sends.iter().filter(|e| e.outcome == "failure" && e.detail.contains("verified_contact_required")).count(), 1);
    assert!(sends.iter().all(|e| !e.detail.contains("OUTBOXCANARY")));
}
