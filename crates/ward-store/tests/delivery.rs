//! Notification delivery state on both backends: exclusive claims under a lease, retries with
//! backoff and a ceiling, the consent and contact re-check before sending, cancellation when
//! consent is revoked, push tokens (one per device; removed on revoke and on "unregistered"),
//! and an audit trail with codes only.

use ward_domain::consent::{ConsentChannel, ConsentGrant, NoticeChannel};
use ward_domain::contact::{ContactKind, SuppressReason};
use ward_domain::conversation::{ClientTxnId, ConversationKind, MessageText, Priority};
use ward_domain::role::Role;
use ward_store::testing::{TestDb, group, meta, org, registered_device, user};
use ward_store::{
    Attempt, Backend, ContactOwner, EscalationDelays, MemberSpec, NewConversation, NewMessage, NoticeDraft, NoticeOutcome, WipeSource,
    on_both_backends,
};

on_both_backends!(
    claims_are_exclusive_and_retries_back_off,
    revoked_consent_and_unsendable_contacts_cancel,
    push_tokens_per_device,
    patient_apps_need_portal_consent,
    escalation_sms_skips_a_deprovisioned_user,
);

const CANARIES: [&str; 4] = ["Jamie", "4155550199", "diabetic", "Doe"];

async fn claims_are_exclusive_and_retries_back_off(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let a = org(s, "acme").await;
    let doc = user(s, &a, "doc", Role::Clinician).await;
    let p = s.create_patient(a.id, doc.user_id, "MRN-1".into(), "Jamie Doe".into(), vec![doc.user_id], meta()).await.unwrap();
    let pp = ContactOwner::Patient(p.id);
    s.record_consent(a.id, doc.user_id, p.id, ConsentGrant::new(ConsentChannel::SmsNotices, None, false).unwrap(), meta()).await.unwrap();
    let phone = s.test_verified_contact(a.id, doc.user_id, pp, ContactKind::Phone, "+14155550199").await;
    let draft = NoticeDraft {
        patient_id: p.id,
        template_id: uuid::Uuid::now_v7(),
        channel: NoticeChannel::Sms,
        text: "Hi Jamie, see you Tuesday".into(),
    };
    let NoticeOutcome::Queued(notice) = s.enqueue_notice(a.id, doc.user_id, draft.clone(), meta()).await.unwrap() else { panic!("queued") };

    // No provider for the channel: nothing is taken.
    assert!(s.claim_notices("a".into(), vec!["email"], 60_000, 10, 5).await.unwrap().is_empty());
    let got = s.claim_notices("a".into(), vec!["sms", "email"], 60_000, 10, 5).await.unwrap();
    assert_eq!(got.len(), 2, "the verification code and the notice");
    assert_eq!(got[0].kind, "verification");
    assert!(got[0].body.contains("246810"));
    let n = got.iter().find(|c| c.id == notice.id).unwrap().clone();
    assert_eq!(
        (n.to.as_deref(), n.body.as_str(), n.attempt, n.contact_id),
        (Some("+14155550199"), "Hi Jamie, see you Tuesday", 1, Some(phone.id))
    );
    // Another node finds nothing to take while the lease holds.
    assert!(s.claim_notices("b".into(), vec!["sms"], 60_000, 10, 5).await.unwrap().is_empty());
    assert!(s.finish_notice("a".into(), got[0].clone(), Attempt::Sent, 3).await.unwrap());
    // Only the lease holder finishes.
    assert!(!s.finish_notice("b".into(), n.clone(), Attempt::Sent, 3).await.unwrap());
    // A retry goes back to the queue; the next attempt counts up; past the ceiling it fails.
    assert!(s.finish_notice("a".into(), n.clone(), Attempt::Retry { code: "http_503".into(), after_ms: 0 }, 2).await.unwrap());
    let again = s.claim_notices("b".into(), vec!["sms"], 60_000, 10, 5).await.unwrap();
    assert_eq!((again.len(), again[0].attempt), (1, 2));
    assert!(s.finish_notice("b".into(), again[0].clone(), Attempt::Retry { code: "http_503".into(), after_ms: 0 }, 2).await.unwrap());
    assert!(s.claim_notices("b".into(), vec!["sms"], 60_000, 10, 5).await.unwrap().is_empty());
    assert_eq!(s.notice_outbox(a.id, p.id).await.unwrap()[0].status, "failed");
    // A backoff holds the entry back.
    let NoticeOutcome::Queued(second) = s.enqueue_notice(a.id, doc.user_id, draft.clone(), meta()).await.unwrap() else { panic!() };
    let c = s.claim_notices("a".into(), vec!["sms"], 60_000, 10, 5).await.unwrap();
    assert_eq!(c[0].id, second.id);
    s.finish_notice("a".into(), c[0].clone(), Attempt::Retry { code: "timeout".into(), after_ms: 3_600_000 }, 5).await.unwrap();
    assert!(s.claim_notices("a".into(), vec!["sms"], 60_000, 10, 5).await.unwrap().is_empty());
    // A node that dies mid-send: once its lease lapses another node takes the entry, and the
    // first can no longer finish it.
    let NoticeOutcome::Queued(third) = s.enqueue_notice(a.id, doc.user_id, draft.clone(), meta()).await.unwrap() else { panic!() };
    let dead = s.claim_notices("a".into(), vec!["sms"], -1, 10, 5).await.unwrap();
    assert_eq!(dead[0].id, third.id);
    let taken = s.claim_notices("b".into(), vec!["sms"], 60_000, 10, 5).await.unwrap();
    assert_eq!(taken[0].id, third.id);
    assert!(!s.finish_notice("a".into(), dead[0].clone(), Attempt::Sent, 5).await.unwrap());
    assert!(s.finish_notice("b".into(), taken[0].clone(), Attempt::Sent, 5).await.unwrap());
    let statuses: Vec<String> = s.notice_outbox(a.id, p.id).await.unwrap().into_iter().map(|e| e.status).collect();
    assert_eq!(statuses, ["failed", "queued", "sent"]);
    // A slow batch: the lease lapsed and another node took the entry, so the first node's
    // renewal before sending fails (it must skip the send); the new holder's succeeds.
    assert!(!s.renew_notice_lease("a".into(), third.id, 60_000).await.unwrap());
    let NoticeOutcome::Queued(fourth) = s.enqueue_notice(a.id, doc.user_id, draft.clone(), meta()).await.unwrap() else { panic!() };
    let slow = s.claim_notices("a".into(), vec!["sms"], -1, 10, 5).await.unwrap();
    assert_eq!(slow[0].id, fourth.id);
    assert!(!s.renew_notice_lease("a".into(), fourth.id, 60_000).await.unwrap(), "a lapsed lease is not renewed");
    let taken = s.claim_notices("b".into(), vec!["sms"], 60_000, 10, 5).await.unwrap();
    assert!(!s.renew_notice_lease("a".into(), fourth.id, 60_000).await.unwrap(), "another node's lease");
    assert!(s.renew_notice_lease("b".into(), fourth.id, 60_000).await.unwrap());
    assert!(s.finish_notice("b".into(), taken[0].clone(), Attempt::Sent, 5).await.unwrap());
    // A lapsed lease is reclaimed only while attempts are left.
    let NoticeOutcome::Queued(fifth) = s.enqueue_notice(a.id, doc.user_id, draft, meta()).await.unwrap() else { panic!() };
    let once = s.claim_notices("a".into(), vec!["sms"], -1, 10, 1).await.unwrap();
    assert_eq!((once[0].id, once[0].attempt), (fifth.id, 1));
    assert!(s.claim_notices("b".into(), vec!["sms"], 60_000, 10, 1).await.unwrap().is_empty(), "no attempts left");

    // An SMS number the gateway calls gone is suppressed everywhere.
    let NoticeOutcome::Queued(_) =
        s.enqueue_notice(a.id, doc.user_id, NoticeDraft { text: "x".into(), ..n_draft(p.id) }, meta()).await.unwrap()
    else {
        panic!()
    };
    let c = s.claim_notices("a".into(), vec!["sms"], 60_000, 10, 5).await.unwrap();
    s.finish_notice("a".into(), c[0].clone(), Attempt::Unregistered { code: "sms_disconnected".into(), device: None }, 5).await.unwrap();
    assert_eq!(s.contact(a.id, pp, phone.id).await.unwrap().suppressed_reason, Some(SuppressReason::Disconnected));

    let events = s.audit_events(0, 1000).await.unwrap();
    let delivered: Vec<_> = events.iter().filter(|e| e.action == "notice.deliver").collect();
    assert_eq!(delivered.len(), 7);
    assert!(delivered.iter().any(|e| e.detail.contains(r#""code":"http""#) && e.detail.contains(r#""status":503"#)), "{delivered:?}");
    for e in &events {
        for canary in CANARIES.iter().chain(&["246810", "Tuesday"]) {
            assert!(!e.detail.contains(canary), "{canary} in {}", e.detail);
        }
    }
}

fn n_draft(p: ward_domain::ids::PatientId) -> NoticeDraft {
    NoticeDraft { patient_id: p, template_id: uuid::Uuid::now_v7(), channel: NoticeChannel::Sms, text: String::new() }
}

async fn revoked_consent_and_unsendable_contacts_cancel(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let a = org(s, "acme").await;
    let doc = user(s, &a, "doc", Role::Clinician).await;
    let p = s.create_patient(a.id, doc.user_id, "MRN-1".into(), "Jamie Doe".into(), vec![doc.user_id], meta()).await.unwrap();
    let pp = ContactOwner::Patient(p.id);
    let sms = || ConsentGrant::new(ConsentChannel::SmsNotices, None, false).unwrap();
    s.record_consent(a.id, doc.user_id, p.id, sms(), meta()).await.unwrap();
    s.record_consent(a.id, doc.user_id, p.id, ConsentGrant::new(ConsentChannel::EmailNotices, None, false).unwrap(), meta()).await.unwrap();
    let phone = s.test_verified_contact(a.id, doc.user_id, pp, ContactKind::Phone, "+14155550199").await;
    s.test_verified_contact(a.id, doc.user_id, pp, ContactKind::Email, "jamie@example.org").await;
    // The two codes go first.
    for c in s.claim_notices("a".into(), vec!["sms", "email"], 60_000, 10, 5).await.unwrap() {
        s.finish_notice("a".into(), c, Attempt::Sent, 3).await.unwrap();
    }
    for _ in 0..2 {
        s.enqueue_notice(a.id, doc.user_id, NoticeDraft { text: "One".into(), ..n_draft(p.id) }, meta()).await.unwrap();
    }
    s.enqueue_notice(a.id, doc.user_id, NoticeDraft { text: "Mail".into(), channel: NoticeChannel::Email, ..n_draft(p.id) }, meta())
        .await
        .unwrap();
    // Revoking SMS consent cancels the SMS notices in the same transaction, not the email.
    s.revoke_consent(a.id, doc.user_id, p.id, ConsentChannel::SmsNotices, meta()).await.unwrap();
    let by: Vec<(NoticeChannel, String)> = s.notice_outbox(a.id, p.id).await.unwrap().into_iter().map(|e| (e.channel, e.status)).collect();
    assert_eq!(
        by,
        [(NoticeChannel::Sms, "cancelled".into()), (NoticeChannel::Sms, "cancelled".into()), (NoticeChannel::Email, "queued".into())]
    );
    let events = s.audit_events(0, 1000).await.unwrap();
    assert_eq!(events.iter().filter(|e| e.action == "notice.cancel" && e.detail.contains("consent_revoked")).count(), 2);

    // The claim re-checks: a contact suppressed after queuing gets nothing.
    s.record_consent(a.id, doc.user_id, p.id, sms(), meta()).await.unwrap();
    s.enqueue_notice(a.id, doc.user_id, NoticeDraft { text: "Two".into(), ..n_draft(p.id) }, meta()).await.unwrap();
    s.suppress_contact(a.id, doc.user_id, phone.id, SuppressReason::Bounce, meta()).await.unwrap();
    let got = s.claim_notices("a".into(), vec!["sms", "email"], 60_000, 10, 5).await.unwrap();
    assert_eq!(got.iter().map(|c| c.channel).collect::<Vec<_>>(), [NoticeChannel::Email], "the SMS was cancelled at the claim");
    // And a consent ended between queuing and the claim (here: straight in the table).
    s.finish_notice("a".into(), got[0].clone(), Attempt::Sent, 3).await.unwrap();
    s.enqueue_notice(a.id, doc.user_id, NoticeDraft { text: "Mail".into(), channel: NoticeChannel::Email, ..n_draft(p.id) }, meta())
        .await
        .unwrap();
    s.test_execute("UPDATE consents SET revoked_at = 1, end_reason = 'revoked' WHERE channel = 'email_notices'".into()).await.unwrap();
    assert!(s.claim_notices("a".into(), vec!["sms", "email"], 60_000, 10, 5).await.unwrap().is_empty());
    let statuses: Vec<String> = s.notice_outbox(a.id, p.id).await.unwrap().into_iter().map(|e| e.status).collect();
    assert_eq!(statuses, ["cancelled", "cancelled", "sent", "cancelled", "cancelled"]);
}

async fn push_tokens_per_device(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let a = org(s, "acme").await;
    let doc = user(s, &a, "doc", Role::Clinician).await;
    let nurse = user(s, &a, "nurse", Role::Nurse).await;
    let d_doc = registered_device(s, doc, "doc", 1).await;
    let d1 = registered_device(s, nurse, "nurse", 2).await;
    let d2 = registered_device(s, nurse, "nurse", 3).await;
    s.register_push_token(a.id, doc.user_id, d_doc, "fcm", "doc-token".into(), meta()).await.unwrap();
    s.register_push_token(a.id, nurse.user_id, d1, "apns", "aaaa".into(), meta()).await.unwrap();
    // Someone else's device is not yours to register.
    assert!(s.register_push_token(a.id, doc.user_id, d1, "apns", "bbbb".into(), meta()).await.is_err());
    // The same token on a new device moves there: one device per token.
    s.register_push_token(a.id, nurse.user_id, d2, "apns", "aaaa".into(), meta()).await.unwrap();
    assert!(s.push_registration(a.id, d1).await.unwrap().is_none());
    s.register_push_token(a.id, nurse.user_id, d1, "apns", "cccc".into(), meta()).await.unwrap();
    assert_eq!(s.push_registration(a.id, d1).await.unwrap().unwrap().platform, "apns");
    let raw = db.raw_contents().await;
    assert!(!ward_store::testing::contains_bytes(&raw, b"doc-token"), "tokens are sealed");

    let conv = group(s, doc, &[nurse]).await;
    // The sender's own devices get nothing.
    let n = s.enqueue_message_push(doc.user_id, conv.0, None, true, vec![doc.user_id, nurse.user_id]).await.unwrap();
    assert_eq!(n, 2);
    let got = s.claim_pushes("a".into(), 60_000, 10, 5).await.unwrap();
    assert!(s.claim_pushes("b".into(), 60_000, 10, 5).await.unwrap().is_empty());
    let mut tokens: Vec<&str> = got.iter().map(|g| g.target.token.as_str()).collect();
    tokens.sort_unstable();
    assert_eq!(tokens, ["aaaa", "cccc"]);
    assert!(got.iter().all(|g| g.high_priority && g.conversation_id == conv.0));
    let d1_push = got.iter().find(|g| g.target.device_id == d1).unwrap().clone();
    let d2_push = got.iter().find(|g| g.target.device_id == d2).unwrap().clone();
    s.finish_push("a".into(), d1_push, Attempt::Unregistered { code: "apns_unregistered".into(), device: None }, 5).await.unwrap();
    s.finish_push("a".into(), d2_push, Attempt::Sent, 5).await.unwrap();
    assert!(s.push_registration(a.id, d1).await.unwrap().is_none(), "unregistered: removed");
    // A wiped (revoked) device loses its token.
    s.request_wipe(a.id, d2, None, doc.user_id, "lost".into(), WipeSource::Admin, meta()).await.unwrap();
    assert!(s.push_registration(a.id, d2).await.unwrap().is_none());
    assert_eq!(s.enqueue_message_push(doc.user_id, conv.0, None, false, vec![nurse.user_id]).await.unwrap(), 0);
    let events = s.audit_events(0, 1000).await.unwrap();
    assert!(events.iter().any(|e| e.action == "push_token.remove" && e.detail.contains("unregistered")));
    assert_eq!(events.iter().filter(|e| e.action == "push_token.register").count(), 4);
    for e in &events {
        for t in ["aaaa", "cccc", "doc-token"] {
            assert!(!e.detail.contains(t), "{t} in {}", e.detail);
        }
    }
}

async fn patient_apps_need_portal_consent(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let a = org(s, "acme").await;
    let doc = user(s, &a, "doc", Role::Clinician).await;
    let p = s.create_patient(a.id, doc.user_id, "MRN-1".into(), "Jamie Doe".into(), vec![doc.user_id], meta()).await.unwrap();
    let new = ward_store::NewUser {
        org_id: a.id,
        login: "jamie".into(),
        display_name: "jamie".into(),
        role: Role::Patient,
        password_hash: "$argon2id$placeholder".into(),
        password_must_change: false,
        patient_id: Some(p.id),
    };
    let u = s.create_user(new, None, meta()).await.unwrap();
    let pat = ward_domain::policy::Actor { user_id: u.id, org_id: a.id, role: Role::Patient };
    let d = registered_device(s, pat, "jamie", 7).await;
    s.register_push_token(a.id, u.id, d, "fcm", "patient-token".into(), meta()).await.unwrap();
    let conv = group(s, doc, &[]).await;
    let push = || s.enqueue_message_push(doc.user_id, conv.0, None, false, vec![u.id]);
    assert_eq!(push().await.unwrap(), 0, "no portal consent: no push");
    s.record_consent(a.id, doc.user_id, p.id, ConsentGrant::new(ConsentChannel::Portal, None, false).unwrap(), meta()).await.unwrap();
    assert_eq!(push().await.unwrap(), 1);
    s.revoke_consent(a.id, doc.user_id, p.id, ConsentChannel::Portal, meta()).await.unwrap();
    assert_eq!(push().await.unwrap(), 0);
    // The push queued before the revocation was cancelled with it: nothing to claim.
    assert!(s.claim_pushes("a".into(), 60_000, 10, 5).await.unwrap().is_empty());
    // A push in flight (claimed, lease lapsed) when consent is revoked is cancelled at the
    // next claim rather than sent.
    let grant = || ConsentGrant::new(ConsentChannel::Portal, None, false).unwrap();
    s.record_consent(a.id, doc.user_id, p.id, grant(), meta()).await.unwrap();
    assert_eq!(push().await.unwrap(), 1);
    assert_eq!(s.claim_pushes("a".into(), -1, 10, 5).await.unwrap().len(), 1);
    s.revoke_consent(a.id, doc.user_id, p.id, ConsentChannel::Portal, meta()).await.unwrap();
    assert!(s.claim_pushes("b".into(), 60_000, 10, 5).await.unwrap().is_empty());
    let events = s.audit_events(0, 1000).await.unwrap();
    let cancelled = events
        .iter()
        .filter(|e| e.action == "notice.cancel" && e.target_type.as_deref() == Some("push") && e.detail.contains("consent_revoked"));
    assert_eq!(cancelled.count(), 2);
}

/// An escalation SMS queued for an on-call user who is deprovisioned before it goes out is
/// cancelled, not sent; one for a user still active goes out.
async fn escalation_sms_skips_a_deprovisioned_user(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let a = org(s, "acme").await;
    let doc = user(s, &a, "doc", Role::Clinician).await;
    let nurse = user(s, &a, "nurse", Role::Nurse).await;
    let leaver = user(s, &a, "leaver", Role::Nurse).await;
    let stayer = user(s, &a, "stayer", Role::Nurse).await;
    let team = vec![doc.user_id, nurse.user_id, leaver.user_id, stayer.user_id];
    let p = s.create_patient(a.id, doc.user_id, "MRN-ESC".into(), "Jamie Doe".into(), team, meta()).await.unwrap();
    for on_call in [&leaver, &stayer] {
        s.set_on_call(a.id, doc.user_id, p.id, on_call.user_id, true, meta()).await.unwrap();
    }
    s.test_verified_contact(a.id, leaver.user_id, ContactOwner::User(leaver.user_id), ContactKind::Phone, "+14155550101").await;
    s.test_verified_contact(a.id, stayer.user_id, ContactOwner::User(stayer.user_id), ContactKind::Phone, "+14155550102").await;
    // The verification codes go first.
    let codes = s.claim_notices("n".into(), vec!["sms"], 60_000, 10, 5).await.unwrap();
    assert!(codes.iter().all(|n| n.kind == "verification"), "{codes:?}");
    for n in codes {
        s.finish_notice("n".into(), n, Attempt::Sent, 5).await.unwrap();
    }

    let spec = NewConversation {
        kind: ConversationKind::Patient,
        title: None,
        patient_id: Some(p.id),
        members: vec![MemberSpec { user_id: nurse.user_id, reason: None }],
        creator_reason: None,
    };
    let conv = s.create_conversation(doc, spec, meta()).await.unwrap().id;
    let device = registered_device(s, doc, "doc", 1).await;
    let new = NewMessage {
        conversation_id: conv,
        client_txn_id: ClientTxnId::parse("esc-1".into()).unwrap(),
        body: MessageText::parse("unread STAT".into()).unwrap(),
        priority: Priority::Stat,
        corrects: None,
        attachments: Vec::new(),
    };
    s.send_message(doc, device, new, meta()).await.unwrap();
    // Step 1 (re-notify the nurse), then step 2 (the on-call members, by SMS too).
    let delays = EscalationDelays { stat_ms: 0, urgent_ms: 0, sms: true };
    for _ in 0..2 {
        s.escalate_due(delays, 10).await.unwrap();
    }
    // The leaver is deprovisioned after the SMS were queued and before they go out.
    s.set_user_disabled(a.id, leaver.user_id, true, Some(doc.user_id), meta()).await.unwrap();
    let claimed = s.claim_notices("n".into(), vec!["sms"], 60_000, 10, 5).await.unwrap();
    let to: Vec<Option<&str>> = claimed.iter().map(|n| n.to.as_deref()).collect();
    assert_eq!(to, [Some("+14155550102")], "only the active on-call user is texted");
    assert_eq!(claimed[0].kind, "escalation");
    let cancelled = s.audit_events(0, 100_000).await.unwrap();
    assert!(
        cancelled.iter().any(|e| e.action == "notice.cancel" && e.detail.contains("recipient_disabled")),
        "the cancellation is audited with its reason"
    );
}
