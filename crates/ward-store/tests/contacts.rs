//! The verified contact directory on both backends: values sealed and blindly indexed (never
//! in the database in the clear), one-time-code verification with a keyed hash, attempts and
//! lockout, re-verification after the organisation's period, suppression of a value on every
//! contact holding it, conflicts between people, tenancy, and the audit trail without values.

use ward_domain::consent::{ConsentChannel, ConsentGrant, NoticeChannel};
use ward_domain::contact::{ContactKind, ContactStatus, SuppressReason};
use ward_domain::role::Role;
use ward_store::testing::{TestDb, contains_bytes, meta, org, user};
use ward_store::{Backend, ContactOwner, NoticeDraft, NoticeOutcome, StoreError, VerificationResult, VerificationStart, on_both_backends};

on_both_backends!(
    contacts_are_sealed_indexed_and_per_owner,
    verification_counts_attempts_and_locks,
    expired_suppressed_and_conflicting_contacts_get_nothing,
);

/// The code a contact's newest outbox entry carries.
async fn sent_code(s: &ward_store::Store, org: ward_domain::ids::OrgId, owner: ContactOwner, id: uuid::Uuid) -> String {
    let out = s.contact_outbox(org, owner, id).await.unwrap();
    let last = out.last().expect("a verification message");
    assert_eq!(last.kind, "verification");
    assert_eq!(last.destination, format!("contact:{id}"));
    let after = last.body.split_once("code is ").expect("the code").1;
    after.chars().take(6).collect()
}

async fn contacts_are_sealed_indexed_and_per_owner(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let (a, b) = (org(s, "acme").await, org(s, "other").await);
    let doc = user(s, &a, "doc", Role::Clinician).await;
    let nurse = user(s, &a, "nurse", Role::Nurse).await;
    let p = s.create_patient(a.id, doc.user_id, "MRN-1".into(), "Jamie Doe".into(), vec![doc.user_id], meta()).await.unwrap();
    let me = ContactOwner::User(doc.user_id);
    let pat = ContactOwner::Patient(p.id);

    let phone = s.add_contact(a.id, doc.user_id, me, ContactKind::Phone, "+14155559876".into(), meta()).await.unwrap();
    assert_eq!((phone.value.as_str(), phone.status, phone.conflict), ("+14155559876", ContactStatus::Unverified, false));
    let mail = s.add_contact(a.id, doc.user_id, pat, ContactKind::Email, "canary.patient@example.org".into(), meta()).await.unwrap();
    // The same value twice for one owner is a conflict; the same value for the patient is not
    // the doctor's business (no error), but two people claiming one value are flagged.
    assert!(matches!(
        s.add_contact(a.id, doc.user_id, me, ContactKind::Phone, "+14155559876".into(), meta()).await,
        Err(StoreError::Conflict(_))
    ));
    // Another tenant sees none of it.
    assert!(matches!(s.contact(b.id, me, phone.id).await, Err(StoreError::NotFound)));
    assert!(matches!(
        s.add_contact(b.id, doc.user_id, pat, ContactKind::Phone, "+14155550000".into(), meta()).await,
        Err(StoreError::NotFound)
    ));
    // Another owner's contact is not found through this owner.
    assert!(matches!(s.contact(a.id, ContactOwner::User(nurse.user_id), phone.id).await, Err(StoreError::NotFound)));
    assert!(matches!(
        s.remove_contact(a.id, nurse.user_id, ContactOwner::User(nurse.user_id), phone.id, meta()).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(s.contact_outbox(a.id, pat, phone.id).await, Err(StoreError::NotFound)));

    let listed = s.contacts(a.id, doc.user_id, pat, meta()).await.unwrap();
    assert_eq!(listed.iter().map(|c| c.id).collect::<Vec<_>>(), vec![mail.id]);
    s.remove_contact(a.id, doc.user_id, pat, mail.id, meta()).await.unwrap();
    assert!(s.contacts(a.id, doc.user_id, pat, meta()).await.unwrap().is_empty());

    // Never in the database in the clear (sealed value, blind index, sealed code message).
    let raw = db.raw_contents().await;
    for canary in [&b"4155559876"[..], b"canary.patient", b"example.org"] {
        assert!(!contains_bytes(&raw, canary), "{} in the database", String::from_utf8_lossy(canary));
    }

    let events = s.audit_events(0, 1000).await.unwrap();
    let contact_events: Vec<_> = events.iter().filter(|e| e.action.starts_with("contact.")).collect();
    assert_eq!(contact_events.iter().filter(|e| e.action == "contact.add").count(), 2);
    assert_eq!(contact_events.iter().filter(|e| e.action == "contact.remove").count(), 1);
    assert_eq!(contact_events.iter().filter(|e| e.action == "contact.read").count(), 2, "a patient's contacts are a read");
    for e in &contact_events {
        assert!(!e.detail.contains("4155559876") && !e.detail.contains("canary"), "{}", e.detail);
    }
}

async fn verification_counts_attempts_and_locks(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let a = org(s, "acme").await;
    let doc = user(s, &a, "doc", Role::Clinician).await;
    let me = ContactOwner::User(doc.user_id);
    let c = s.add_contact(a.id, doc.user_id, me, ContactKind::Email, "doc@example.org".into(), meta()).await.unwrap();

    // Nothing pending yet.
    assert_eq!(s.confirm_contact(a.id, doc.user_id, me, c.id, "123456".into(), meta()).await.unwrap(), VerificationResult::Expired);
    let code = ward_store::new_verification_code();
    assert_eq!(code.len(), 6);
    let VerificationStart::Sent { expires_at, .. } =
        s.start_contact_verification(a.id, doc.user_id, me, c.id, code.clone(), meta()).await.unwrap()
    else {
        panic!("not sent")
    };
    assert!(expires_at > ward_store::now_ms());
    assert_eq!(sent_code(s, a.id, me, c.id).await, code);
    assert_eq!(s.contact_outbox(a.id, me, c.id).await.unwrap()[0].channel, NoticeChannel::Email);
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for left in (1..5).rev() {
        assert_eq!(
            s.confirm_contact(a.id, doc.user_id, me, c.id, wrong.into(), meta()).await.unwrap(),
            VerificationResult::WrongCode { attempts_left: left }
        );
    }
    assert_eq!(
        s.confirm_contact(a.id, doc.user_id, me, c.id, wrong.into(), meta()).await.unwrap(),
        VerificationResult::WrongCode { attempts_left: 0 }
    );
    // Locked: even the right code no longer works.
    assert_eq!(s.confirm_contact(a.id, doc.user_id, me, c.id, code.clone(), meta()).await.unwrap(), VerificationResult::Locked);
    assert_eq!(s.contact(a.id, me, c.id).await.unwrap().status, ContactStatus::Unverified);

    // A new code works, once.
    s.start_contact_verification(a.id, doc.user_id, me, c.id, "135790".into(), meta()).await.unwrap();
    let VerificationResult::Verified(v) = s.confirm_contact(a.id, doc.user_id, me, c.id, "135790".into(), meta()).await.unwrap() else {
        panic!("not verified")
    };
    assert_eq!(v.status, ContactStatus::Verified);
    assert!(v.verified_at.is_some());
    assert_eq!(s.confirm_contact(a.id, doc.user_id, me, c.id, "135790".into(), meta()).await.unwrap(), VerificationResult::Expired);

    // An expired code fails even when right.
    s.start_contact_verification(a.id, doc.user_id, me, c.id, "246800".into(), meta()).await.unwrap();
    s.test_execute("UPDATE contacts SET code_expires_at = code_expires_at - 600001".into()).await.unwrap();
    assert_eq!(s.confirm_contact(a.id, doc.user_id, me, c.id, "246800".into(), meta()).await.unwrap(), VerificationResult::Expired);

    // At most five codes a day.
    for _ in 0..2 {
        assert!(matches!(
            s.start_contact_verification(a.id, doc.user_id, me, c.id, "112233".into(), meta()).await.unwrap(),
            VerificationStart::Sent { .. }
        ));
    }
    let VerificationStart::RateLimited { retry_after_secs } =
        s.start_contact_verification(a.id, doc.user_id, me, c.id, "112233".into(), meta()).await.unwrap()
    else {
        panic!("not limited")
    };
    assert!(retry_after_secs > 0 && retry_after_secs <= 86_400);

    // Removing and re-adding contacts does not lift the sender's own daily limit (20 codes).
    let mut sent = 5;
    'outer: for n in 0..10 {
        let extra = s.add_contact(a.id, doc.user_id, me, ContactKind::Phone, format!("+1415555010{n}"), meta()).await.unwrap();
        for _ in 0..5 {
            match s.start_contact_verification(a.id, doc.user_id, me, extra.id, "112233".into(), meta()).await.unwrap() {
                VerificationStart::Sent { .. } => sent += 1,
                VerificationStart::RateLimited { .. } => break 'outer,
            }
        }
        s.remove_contact(a.id, doc.user_id, me, extra.id, meta()).await.unwrap();
    }
    assert_eq!(sent, 20, "at most 20 codes a day from one person");

    // The code is stored only as a keyed hash, and the message is sealed.
    assert!(!contains_bytes(&db.raw_contents().await, b"Your Ward verification code"));
    let events = s.audit_events(0, 1000).await.unwrap();
    let verify: Vec<_> = events.iter().filter(|e| e.action == "contact.verify").collect();
    assert_eq!(verify.iter().filter(|e| e.detail.contains("wrong_code")).count(), 5);
    assert_eq!(verify.iter().filter(|e| e.detail.contains("locked")).count(), 1);
    assert_eq!(verify.iter().filter(|e| e.outcome == "success").count(), 1);
    assert!(events.iter().any(|e| e.action == "contact.verify_start" && e.detail.contains("rate_limited")));
    for e in events.iter().filter(|e| e.action.starts_with("contact.")) {
        for secret in [code.as_str(), "135790", "246800", "doc@example"] {
            assert!(!e.detail.contains(secret), "{}", e.detail);
        }
    }
}

async fn expired_suppressed_and_conflicting_contacts_get_nothing(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let a = org(s, "acme").await;
    let doc = user(s, &a, "doc", Role::Clinician).await;
    let admin = user(s, &a, "admin", Role::Admin).await;
    let p = s.create_patient(a.id, doc.user_id, "MRN-1".into(), "Jamie Doe".into(), vec![doc.user_id], meta()).await.unwrap();
    let q = s.create_patient(a.id, doc.user_id, "MRN-2".into(), "Sam Roe".into(), vec![doc.user_id], meta()).await.unwrap();
    let (pp, pq) = (ContactOwner::Patient(p.id), ContactOwner::Patient(q.id));
    s.record_consent(a.id, doc.user_id, p.id, ConsentGrant::new(ConsentChannel::SmsNotices, None, false).unwrap(), meta()).await.unwrap();
    let draft =
        NoticeDraft { patient_id: p.id, template_id: uuid::Uuid::now_v7(), channel: NoticeChannel::Sms, text: "See you Tuesday".into() };
    let send = || s.enqueue_notice(a.id, doc.user_id, draft.clone(), meta());

    // An unverified number is not enough.
    s.add_contact(a.id, doc.user_id, pp, ContactKind::Phone, "+14155550123".into(), meta()).await.unwrap();
    assert_eq!(send().await.unwrap(), NoticeOutcome::VerifiedContactRequired);
    let phone = s.test_verified_contact(a.id, doc.user_id, pp, ContactKind::Phone, "+1 415 555 0199").await;
    assert!(matches!(send().await.unwrap(), NoticeOutcome::Queued(_)));

    // Past the period (90 days by default) it must be verified again.
    s.test_execute(format!("UPDATE contacts SET verified_at = verified_at - {}", 91 * 86_400_000_i64)).await.unwrap();
    assert_eq!(s.contact(a.id, pp, phone.id).await.unwrap().status, ContactStatus::Expired);
    assert_eq!(send().await.unwrap(), NoticeOutcome::VerifiedContactRequired);
    // A longer organisation period makes it fresh again.
    assert_eq!(s.set_contact_reverify_days(a.id, admin.user_id, 120, meta()).await.unwrap(), 120);
    assert_eq!(s.contact(a.id, pp, phone.id).await.unwrap().status, ContactStatus::Verified);
    assert!(matches!(send().await.unwrap(), NoticeOutcome::Queued(_)));
    s.set_contact_reverify_days(a.id, admin.user_id, 90, meta()).await.unwrap();
    let phone = s.test_verified_contact(a.id, doc.user_id, pp, ContactKind::Phone, "+14155550111").await;

    // Another person claims the same number: both are flagged, and listed to admins.
    let theirs = s.add_contact(a.id, doc.user_id, pq, ContactKind::Phone, "+14155550111".into(), meta()).await.unwrap();
    assert!(theirs.conflict);
    assert_eq!(theirs.status, ContactStatus::Conflict);
    assert_eq!(s.contact(a.id, pp, phone.id).await.unwrap().status, ContactStatus::Conflict);
    let conflicts = s.contact_conflicts(a.id).await.unwrap();
    assert_eq!(conflicts.iter().map(|c| c.id).collect::<std::collections::BTreeSet<_>>(), [phone.id, theirs.id].into_iter().collect());
    assert_eq!(conflicts[0].group, conflicts[1].group);
    assert_eq!(send().await.unwrap(), NoticeOutcome::VerifiedContactRequired);
    s.remove_contact(a.id, doc.user_id, pq, theirs.id, meta()).await.unwrap();
    assert!(s.contact_conflicts(a.id).await.unwrap().is_empty());
    assert!(matches!(send().await.unwrap(), NoticeOutcome::Queued(_)));
    // A patient account and its own record sharing a number are one person: no conflict.
    let acct = ward_store::testing::user(s, &a, "jamie", Role::Patient).await;
    s.test_execute(format!(
        "UPDATE users SET patient_id = (SELECT patient_id FROM contacts WHERE id = {}) WHERE login = 'jamie'",
        uuid_sql(backend, phone.id)
    ))
    .await
    .unwrap();
    let own = s
        .add_contact(a.id, acct.user_id, ContactOwner::User(acct.user_id), ContactKind::Phone, "+14155550111".into(), meta())
        .await
        .unwrap();
    assert!(!own.conflict);

    // A bounce suppresses the number at once, on every contact holding it.
    assert_eq!(s.suppress_contact(a.id, admin.user_id, phone.id, SuppressReason::Disconnected, meta()).await.unwrap(), 2);
    let suppressed = s.contact(a.id, pp, phone.id).await.unwrap();
    assert_eq!((suppressed.status, suppressed.suppressed_reason), (ContactStatus::Suppressed, Some(SuppressReason::Disconnected)));
    assert_eq!(s.contact(a.id, ContactOwner::User(acct.user_id), own.id).await.unwrap().status, ContactStatus::Suppressed);
    assert_eq!(send().await.unwrap(), NoticeOutcome::VerifiedContactRequired);
    // The unverified number never counted, and verifying the suppressed one again lifts it.
    assert_eq!(s.contact(a.id, pp, phone.id).await.unwrap().status, ContactStatus::Suppressed);
    s.start_contact_verification(a.id, doc.user_id, pp, suppressed.id, "975310".into(), meta()).await.unwrap();
    assert!(matches!(
        s.confirm_contact(a.id, doc.user_id, pp, suppressed.id, "975310".into(), meta()).await.unwrap(),
        VerificationResult::Verified(c) if c.status == ContactStatus::Verified
    ));
    let NoticeOutcome::Queued(n) = send().await.unwrap() else { panic!("not queued") };
    assert_eq!(n.contact_id, Some(suppressed.id));
    assert!(matches!(
        s.suppress_contact(a.id, admin.user_id, uuid::Uuid::now_v7(), SuppressReason::Bounce, meta()).await,
        Err(StoreError::NotFound)
    ));

    let events = s.audit_events(0, 10_000).await.unwrap();
    assert!(events.iter().any(|e| e.action == "contact.add" && e.detail.contains("\"conflict\":true")));
    let sup = events.iter().find(|e| e.action == "contact.suppress").unwrap();
    assert!(sup.detail.contains("disconnected") && sup.detail.contains("\"contacts\":2"), "{}", sup.detail);
    assert!(events.iter().any(|e| e.action == "contact.policy" && e.detail.contains("120")));
    assert_eq!(phone_free(&events), 0);
}

/// How many audit events name any of the test's numbers.
fn phone_free(events: &[ward_store::AuditRecord]) -> usize {
    events.iter().filter(|e| ["4155550111", "4155550123", "4155550199"].iter().any(|n| e.detail.contains(n))).count()
}

fn uuid_sql(backend: Backend, id: uuid::Uuid) -> String {
    match backend {
        Backend::Sqlite => format!("X'{}'", id.simple()),
        Backend::Postgres => format!("'{id}'"),
    }
}
