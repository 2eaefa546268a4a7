//! Break-glass grants and step-up on both backends: a grant opens the patient's conversations
//! (and only those) for its window, every read is an audited disclosure, the reason stays out of
//! the audit log, expiry and revocation close it, and each use is reviewed once. Step-up
//! refreshes the session's second-factor time, refuses replays and counts misses.

use ward_domain::audit::AuditAction;
use ward_domain::break_glass::{ReasonCategory, ReasonText, ReviewStatus};
use ward_domain::conversation::{ConversationKind, MessageText, Priority};
use ward_domain::ids::{DeviceId, PatientId, SessionId};
use ward_domain::policy::Actor;
use ward_domain::role::Role;
use ward_store::testing::{TestDb, meta, org, sign_in, user};
use ward_store::{
    Backend, MemberSpec, NewConversation, NewMessage, Page, SecondFactor, Store, StoreError, TimeRange, now_ms, on_both_backends,
};

on_both_backends!(
    a_grant_opens_the_patients_conversations_for_its_window,
    uses_are_reviewed_once_and_can_be_ended_early,
    step_up_refreshes_the_session_once_per_code,
);

/// The free text of every request here: it must never reach the audit log.
const REASON: &str = "Unconscious in bay 4, allergies unknown (BG-CANARY-7781)";

async fn patient_conversation(
    s: &Store,
    owner: Actor,
    device: DeviceId,
    patient: Option<PatientId>,
    text: &str,
) -> ward_domain::ids::ConversationId {
    let kind = if patient.is_some() { ConversationKind::Patient } else { ConversationKind::Group };
    let spec =
        NewConversation { kind, title: Some("Bed 4".into()), patient_id: patient, members: Vec::<MemberSpec>::new(), creator_reason: None };
    let conv = s.create_conversation(owner, spec, meta()).await.unwrap().id;
    let msg = NewMessage {
        conversation_id: conv,
        client_txn_id: ward_domain::conversation::ClientTxnId::parse(format!("t-{}", uuid::Uuid::new_v4().simple())).unwrap(),
        priority: Priority::Routine,
        body: MessageText::parse(text.into()).unwrap(),
        corrects: None,
        attachments: vec![],
    };
    s.send_message(owner, device, msg, meta()).await.unwrap();
    conv
}

fn reason() -> ReasonText {
    ReasonText::parse("reason", REASON).unwrap()
}

async fn a_grant_opens_the_patients_conversations_for_its_window(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let o = org(s, "acme").await;
    let owner = user(s, &o, "owner@acme", Role::Clinician).await;
    let er = user(s, &o, "er@acme", Role::Clinician).await;
    let p = s.create_patient(o.id, owner.user_id, "MRN-1".into(), "Pat".into(), vec![owner.user_id], meta()).await.unwrap().id;
    let q = s.create_patient(o.id, owner.user_id, "MRN-2".into(), "Quinn".into(), vec![owner.user_id], meta()).await.unwrap().id;
    let (_, owner_dev) = sign_in(s, owner, "owner@acme", 1).await;
    let (_, er_dev) = sign_in(s, er, "er@acme", 2).await;
    let about_p = patient_conversation(s, owner, owner_dev, Some(p), "sodium 128").await;
    let about_q = patient_conversation(s, owner, owner_dev, Some(q), "other patient").await;
    let group = patient_conversation(s, owner, owner_dev, None, "rota").await;

    // An unknown patient (or another tenant's) is not found, and the attempt is audited.
    let unknown = s.request_break_glass(er, er_dev, PatientId::new(), ReasonCategory::Other, reason(), 60, meta()).await;
    assert!(matches!(unknown, Err(StoreError::NotFound)), "{unknown:?}");

    let g = s.request_break_glass(er, er_dev, p, ReasonCategory::PatientUnresponsive, reason(), 60, meta()).await.unwrap();
    assert!(g.active_at(now_ms()));
    assert!(g.expires_at - g.granted_at == 3_600_000);
    assert_eq!(g.review_status, ReviewStatus::Pending);
    assert_eq!(g.reason, None, "the reason is not opened for the requester's views");
    let mine = s.my_break_glass_grants(er, now_ms()).await.unwrap();
    assert_eq!(mine.iter().map(|x| x.id).collect::<Vec<_>>(), vec![g.id]);
    assert!(s.my_break_glass_grants(owner, now_ms()).await.unwrap().is_empty());

    // Only the patient's patient conversations; messages of those only.
    let convs = s.break_glass_conversations(er, er_dev, g.id, now_ms(), meta()).await.unwrap();
    assert_eq!(convs.iter().map(|c| c.id).collect::<Vec<_>>(), vec![about_p]);
    assert_eq!(convs[0].title.as_deref(), Some("Bed 4"));
    let msgs = s.break_glass_messages(er, er_dev, g.id, about_p, Page::Latest, 50, now_ms(), meta()).await.unwrap();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].body.as_deref(), Some("sodium 128"));
    for other in [about_q, group] {
        let r = s.break_glass_messages(er, er_dev, g.id, other, Page::Latest, 50, now_ms(), meta()).await;
        assert!(matches!(r, Err(StoreError::NotFound)), "{r:?}");
    }
    // Someone else's grant is not the caller's to use.
    let r = s.break_glass_conversations(owner, owner_dev, g.id, now_ms(), meta()).await;
    assert!(matches!(r, Err(StoreError::NotFound)));

    // After the window: as for any non-member.
    let later = g.expires_at;
    let r = s.break_glass_conversations(er, er_dev, g.id, later, meta()).await;
    assert!(matches!(r, Err(StoreError::NotFound)), "{r:?}");
    let r = s.break_glass_messages(er, er_dev, g.id, about_p, Page::Latest, 50, later, meta()).await;
    assert!(matches!(r, Err(StoreError::NotFound)));

    // The audit log: the request with its category, each read with the grant and as a
    // disclosure; refusals as denied; never the reason text.
    let events = s.audit_events(0, 100_000).await.unwrap();
    for e in &events {
        let row = format!("{e:?}");
        assert!(!row.contains("BG-CANARY-7781"), "the reason reached the audit log: {row}");
    }
    let of = |action: AuditAction, outcome: &str| events.iter().filter(|e| e.action == action.as_str() && e.outcome == outcome).count();
    assert_eq!(of(AuditAction::BreakGlassRequest, "success"), 1);
    assert_eq!(of(AuditAction::BreakGlassRequest, "denied"), 1);
    assert_eq!(of(AuditAction::BreakGlassRead, "success"), 2);
    assert_eq!(of(AuditAction::BreakGlassRead, "denied"), 5);
    let req = events.iter().find(|e| e.action == "break_glass.request" && e.outcome == "success").unwrap();
    assert!(req.detail.contains("\"reason_category\":\"patient_unresponsive\""), "{}", req.detail);
    assert_eq!(req.patient_id, Some(p.0));
    assert_eq!(req.target_id.as_deref(), Some(g.id.to_string().as_str()));
    let read = events.iter().find(|e| e.action == "break_glass.read" && e.outcome == "success" && e.detail.contains("messages")).unwrap();
    assert!(read.detail.contains(&about_p.0.to_string()) && read.detail.contains("\"purpose\":\"break_glass\""), "{}", read.detail);

    // The accounting of disclosures of P lists both reads, to the reader, for break-glass.
    let acc = s.disclosures(o.id, p, TimeRange::default(), None, 100).await.unwrap();
    let bg: Vec<_> = acc.items.iter().filter(|d| d.action == "break_glass.read").collect();
    assert_eq!(bg.len(), 2, "{:?}", acc.items);
    assert!(bg.iter().all(|d| d.purpose == "break_glass" && d.recipient.user_id() == Some(er.user_id.0)));
    let acc_q = s.disclosures(o.id, q, TimeRange::default(), None, 100).await.unwrap();
    assert!(acc_q.items.iter().all(|d| d.action != "break_glass.read"), "Q's conversations were never read");
}

async fn uses_are_reviewed_once_and_can_be_ended_early(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let o = org(s, "acme").await;
    let other = org(s, "other").await;
    let er = user(s, &o, "er@acme", Role::Nurse).await;
    let co = user(s, &o, "co@acme", Role::ComplianceOfficer).await;
    let admin = user(s, &o, "admin@acme", Role::Admin).await;
    let co_b = user(s, &other, "co@other", Role::ComplianceOfficer).await;
    let p = s.create_patient(o.id, admin.user_id, "MRN-1".into(), "Pat".into(), vec![], meta()).await.unwrap().id;
    let (_, dev) = sign_in(s, er, "er@acme", 3).await;
    let first = s.request_break_glass(er, dev, p, ReasonCategory::EmergencyTreatment, reason(), 30, meta()).await.unwrap();
    let second = s.request_break_glass(er, dev, p, ReasonCategory::CareTeamUnreachable, reason(), 30, meta()).await.unwrap();

    // The queue opens the reason for the reviewer; another tenant sees nothing.
    let q = s.break_glass_queue(o.id, None, 100).await.unwrap();
    assert_eq!(q.iter().map(|g| g.id).collect::<Vec<_>>(), vec![second.id, first.id], "newest first among pending");
    assert!(q.iter().all(|g| g.reason.as_deref() == Some(REASON)));
    assert!(s.break_glass_queue(other.id, None, 100).await.unwrap().is_empty());

    let note = ReasonText::parse("note", "Confirmed with the ED log").unwrap();
    let done = s.review_break_glass(co, first.id, ReviewStatus::Justified, Some(note), meta()).await.unwrap();
    assert_eq!((done.review_status, done.reviewed_by), (ReviewStatus::Justified, Some(co.user_id)));
    assert_eq!(done.review_note.as_deref(), Some("Confirmed with the ED log"));
    let again = s.review_break_glass(co, first.id, ReviewStatus::Unjustified, None, meta()).await;
    assert!(matches!(again, Err(StoreError::State(_))), "{again:?}");
    let foreign = s.review_break_glass(co_b, second.id, ReviewStatus::Justified, None, meta()).await;
    assert!(matches!(foreign, Err(StoreError::NotFound)), "{foreign:?}");
    // Pending first, then the reviewed; a status filter keeps only its own.
    let q = s.break_glass_queue(o.id, None, 100).await.unwrap();
    assert_eq!(q.iter().map(|g| g.id).collect::<Vec<_>>(), vec![second.id, first.id]);
    let pending = s.break_glass_queue(o.id, Some(ReviewStatus::Pending), 100).await.unwrap();
    assert_eq!(pending.iter().map(|g| g.id).collect::<Vec<_>>(), vec![second.id]);
    let later = s.request_break_glass(er, dev, p, ReasonCategory::Other, reason(), 30, meta()).await.unwrap();
    s.review_break_glass(co, later.id, ReviewStatus::Unjustified, None, meta()).await.unwrap();
    let q = s.break_glass_queue(o.id, None, 100).await.unwrap();
    assert_eq!(q.iter().map(|g| g.id).collect::<Vec<_>>(), vec![second.id, later.id, first.id]);

    // Ending early closes the window at once; an ended grant cannot end again.
    let ended = s.revoke_break_glass(admin, second.id, meta()).await.unwrap();
    assert_eq!(ended.revoked_by, Some(admin.user_id));
    assert!(!ended.active_at(now_ms()));
    assert!(s.my_break_glass_grants(er, now_ms()).await.unwrap().iter().all(|g| g.id != second.id));
    let r = s.break_glass_conversations(er, dev, second.id, now_ms(), meta()).await;
    assert!(matches!(r, Err(StoreError::NotFound)));
    assert!(matches!(s.revoke_break_glass(admin, second.id, meta()).await, Err(StoreError::State(_))));
    assert!(matches!(s.revoke_break_glass(co_b, first.id, meta()).await, Err(StoreError::NotFound)));
    let events = s.audit_events(0, 100_000).await.unwrap();
    assert!(events.iter().all(|e| !format!("{e:?}").contains("BG-CANARY-7781") && !format!("{e:?}").contains("ED log")));
    assert_eq!(events.iter().filter(|e| e.action == "break_glass.review").count(), 2);
    assert_eq!(events.iter().filter(|e| e.action == "break_glass.revoke").count(), 1);
}

async fn step_up_refreshes_the_session_once_per_code(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let o = org(s, "acme").await;
    let a = user(s, &o, "a@acme", Role::Admin).await;
    s.begin_totp(o.id, a.user_id, b"0123456789abcdefghij".to_vec(), meta()).await.unwrap();
    let rc = vec![0x5a; 32];
    s.confirm_totp(o.id, a.user_id, SessionId::new(), 10, vec![rc.clone()], meta()).await.unwrap();
    let (session, _) = sign_in(s, a, "a@acme", 4).await;
    let verified = |s: Store| async move { s.session_by_access(vec![4; 32]).await.unwrap().unwrap().mfa_verified_at };
    assert_eq!(verified(s.clone()).await, None);

    let before = now_ms();
    assert!(s.step_up(o.id, a.user_id, "a@acme".into(), session, SecondFactor::TotpStep(11), meta()).await.unwrap());
    assert!(verified(s.clone()).await.is_some_and(|t| t >= before));
    // The same step again is a replay; an old one too; each miss counts towards the lockout.
    assert!(!s.step_up(o.id, a.user_id, "a@acme".into(), session, SecondFactor::TotpStep(11), meta()).await.unwrap());
    assert!(!s.step_up(o.id, a.user_id, "a@acme".into(), session, SecondFactor::TotpStep(9), meta()).await.unwrap());
    assert_eq!(s.throttle("a@acme").await.unwrap().failures, 2);
    // A recovery code works once, and a success clears the count.
    assert!(s.step_up(o.id, a.user_id, "a@acme".into(), session, SecondFactor::RecoveryCode(rc.clone()), meta()).await.unwrap());
    assert_eq!(s.throttle("a@acme").await.unwrap().failures, 0);
    assert!(!s.step_up(o.id, a.user_id, "a@acme".into(), session, SecondFactor::RecoveryCode(rc), meta()).await.unwrap());
    let events = s.audit_events(0, 100_000).await.unwrap();
    let ups: Vec<_> = events.iter().filter(|e| e.action == "auth.step_up").map(|e| e.outcome.as_str()).collect();
    assert_eq!(ups, vec!["success", "failure", "failure", "success", "failure"]);
}
