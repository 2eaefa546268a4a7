//! Access review campaigns on both backends: the snapshot (enabled workforce only, roles,
//! memberships, last sign-in and message), decisions with separation of duties, a revocation
//! that disables the account in the same transaction, a close that marks undecided items
//! `not_reviewed`, the cadence, and the schedule that opens one campaign when due.

use ward_domain::access_review::{CampaignStatus, CampaignTrigger, Decision, ItemDecision, ReviewSchedule, RevokeReason};
use ward_domain::conversation::{ClientTxnId, ConversationKind, MessageText, Priority};
use ward_domain::ids::DeviceId;
use ward_domain::policy::Denial;
use ward_domain::role::Role;
use ward_store::testing::{TestDb, meta, org, sign_in, user};
use ward_store::{Backend, MemberSpec, NewConversation, NewMessage, StoreError, on_both_backends};

on_both_backends!(a_campaign_snapshots_decides_and_closes, the_schedule_opens_one_campaign_when_due, a_manager_reviews_their_people);

const DAY_MS: i64 = 86_400_000;

/// Two nodes on one PostgreSQL database, each revoking one of the organisation's last two
/// admins at the same moment: one revocation wins, the other is refused, and an admin is
/// left. (Each node's writer is alone on its node; only the database can order the two.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_cannot_revoke_the_last_two_admins() {
    let Some(db) = TestDb::open(Backend::Postgres).await else { return };
    let node2 = db.another_node().await.expect("PostgreSQL");
    let s = &db.store;
    for round in 0..5 {
        let o = org(s, &format!("acme{round}")).await;
        let a1 = user(s, &o, &format!("a1@acme{round}"), Role::Admin).await;
        let a2 = user(s, &o, &format!("a2@acme{round}"), Role::Admin).await;
        let co1 = user(s, &o, &format!("co1@acme{round}"), Role::ComplianceOfficer).await;
        let co2 = user(s, &o, &format!("co2@acme{round}"), Role::ComplianceOfficer).await;
        let c = s.open_access_review(o.id, co1.user_id, meta()).await.unwrap();
        let revoke = || ItemDecision::Revoke { reason: RevokeReason::NotNeeded, note: None };
        let (r1, r2) = tokio::join!(
            s.decide_access_review(co1, c.id, a1.user_id, revoke(), meta()),
            node2.decide_access_review(co2, c.id, a2.user_id, revoke(), meta()),
        );
        assert_eq!(r1.is_ok() as u8 + r2.is_ok() as u8, 1, "round {round}: exactly one revocation wins: {r1:?} {r2:?}");
        let loser = if r1.is_ok() { r2 } else { r1 };
        assert!(matches!(loser, Err(StoreError::State(_))), "the other is refused as the last admin");
    }
}

async fn a_campaign_snapshots_decides_and_closes(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let o = org(s, "acme").await;
    let other = org(s, "other").await;
    let admin = user(s, &o, "admin@acme", Role::Admin).await;
    let co = user(s, &o, "co@acme", Role::ComplianceOfficer).await;
    let doc = user(s, &o, "doc@acme", Role::Clinician).await;
    let nurse = user(s, &o, "nurse@acme", Role::Nurse).await;
    let gone = user(s, &o, "gone@acme", Role::Staff).await;
    let outsider = user(s, &other, "admin@other", Role::Admin).await;
    s.set_user_disabled(o.id, gone.user_id, true, Some(admin.user_id), meta()).await.unwrap();
    // The nurse signs in and sends a message in a group with the doctor.
    sign_in(s, nurse, "nurse@acme", 1).await;
    let spec = NewConversation {
        kind: ConversationKind::Group,
        title: Some("Ward 3".into()),
        patient_id: None,
        members: vec![MemberSpec { user_id: doc.user_id, reason: None }],
        creator_reason: None,
    };
    let conv = s.create_conversation(nurse, spec, meta()).await.unwrap().id;
    let m = NewMessage {
        conversation_id: conv,
        client_txn_id: ClientTxnId::parse("t1".into()).unwrap(),
        body: MessageText::parse("hello".into()).unwrap(),
        priority: Priority::Routine,
        corrects: None,
        attachments: Vec::new(),
    };
    s.send_message(nurse, DeviceId::new(), m, meta()).await.unwrap();

    let c = s.open_access_review(o.id, co.user_id, meta()).await.unwrap();
    assert_eq!((c.status, c.origin, c.opened_by), (CampaignStatus::Open, CampaignTrigger::Manual, Some(co.user_id)));
    assert_eq!(c.due_at - c.opened_at, 14 * DAY_MS);
    assert_eq!((c.counts.total, c.counts.pending), (4, 4), "enabled workforce only");
    // One open campaign at a time.
    assert!(matches!(s.open_access_review(o.id, admin.user_id, meta()).await, Err(StoreError::State(_))));
    let items = s.access_review_items(o.id, c.id).await.unwrap();
    let logins: Vec<&str> = items.iter().map(|i| i.login.as_str()).collect();
    assert_eq!(logins, ["admin@acme", "co@acme", "doc@acme", "nurse@acme"]);
    let n = items.iter().find(|i| i.user_id == nurse.user_id).unwrap();
    assert_eq!(
        (n.role, n.memberships.len(), n.memberships[0].conversation_id, n.memberships[0].kind),
        (Role::Nurse, 1, conv, ConversationKind::Group)
    );
    assert!(n.last_sign_in_at.is_some() && n.last_message_at.is_some());
    let d = items.iter().find(|i| i.user_id == doc.user_id).unwrap();
    assert_eq!((d.memberships.len(), d.last_sign_in_at, d.last_message_at, d.decision), (1, None, None, None));
    // Another tenant sees nothing.
    assert!(matches!(s.access_review_items(other.id, c.id).await, Err(StoreError::NotFound)));
    assert!(s.access_review_campaigns(other.id).await.unwrap().is_empty());
    let foreign = s.decide_access_review(outsider, c.id, doc.user_id, ItemDecision::Certify, meta()).await;
    assert!(matches!(foreign, Err(StoreError::NotFound)));

    // Separation of duties: nobody decides on their own access.
    let own = s.decide_access_review(co, c.id, co.user_id, ItemDecision::Certify, meta()).await;
    assert!(matches!(own, Err(StoreError::Denied(Denial::OwnAccess))));
    // Other roles never decide.
    assert!(matches!(
        s.decide_access_review(doc, c.id, nurse.user_id, ItemDecision::Certify, meta()).await,
        Err(StoreError::Denied(Denial::RoleNotPermitted))
    ));
    // The compliance officer certifies the admin and the doctor, then revokes the doctor.
    let done = s.decide_access_review(co, c.id, admin.user_id, ItemDecision::Certify, meta()).await.unwrap();
    assert_eq!((done.item.decision, done.item.decided_by, done.disabled), (Some(Decision::Certify), Some(co.user_id), false));
    s.decide_access_review(co, c.id, doc.user_id, ItemDecision::Certify, meta()).await.unwrap();
    let (session, _) = sign_in(s, doc, "doc@acme", 2).await;
    let revoke = ItemDecision::Revoke { reason: RevokeReason::LeftOrganisation, note: None };
    let done = s.decide_access_review(co, c.id, doc.user_id, revoke, meta()).await.unwrap();
    assert_eq!((done.item.decision, done.item.reason, done.disabled), (Some(Decision::Revoke), Some(RevokeReason::LeftOrganisation), true));
    assert_eq!(done.revoked_sessions, vec![session]);
    assert!(s.user(o.id, doc.user_id).await.unwrap().disabled, "a revocation disables the account");
    // A revocation is final.
    assert!(matches!(s.decide_access_review(admin, c.id, doc.user_id, ItemDecision::Certify, meta()).await, Err(StoreError::State(_))));
    // The admin revokes the compliance officer, with a note.
    let note = ItemDecision::Revoke { reason: RevokeReason::Other, note: Some("contract ended".into()) };
    let done = s.decide_access_review(admin, c.id, co.user_id, note, meta()).await.unwrap();
    assert_eq!(done.item.note.as_deref(), Some("contract ended"));

    // Closing marks the nurse (undecided) not reviewed, never certified.
    let closed = s.close_access_review(o.id, admin.user_id, c.id, meta()).await.unwrap();
    assert_eq!(closed.status, CampaignStatus::Closed);
    assert_eq!((closed.counts.certified, closed.counts.revoked, closed.counts.not_reviewed, closed.counts.pending), (1, 2, 1, 0));
    let n = s.access_review_items(o.id, c.id).await.unwrap().into_iter().find(|i| i.user_id == nurse.user_id).unwrap();
    assert_eq!((n.decision, n.decided_by), (Some(Decision::NotReviewed), None));
    assert!(!s.user(o.id, nurse.user_id).await.unwrap().disabled);
    assert!(matches!(s.close_access_review(o.id, admin.user_id, c.id, meta()).await, Err(StoreError::State(_))));
    assert!(matches!(s.decide_access_review(admin, c.id, nurse.user_id, ItemDecision::Certify, meta()).await, Err(StoreError::State(_))));

    // The audit log has codes and ids: never the note.
    let audit = s.audit_events(0, 10_000).await.unwrap();
    let decided: Vec<_> = audit.iter().filter(|e| e.action == "access_review.decide").collect();
    assert_eq!(decided.len(), 4);
    assert!(decided.iter().all(|e| !e.detail.contains("contract ended")));
    assert!(audit.iter().any(|e| e.action == "admin.user_disable" && e.detail.contains("access_review")));
    assert!(audit.iter().any(|e| e.action == "access_review.open" && e.detail.contains("manual")));
    assert!(audit.iter().any(|e| e.action == "access_review.close" && e.detail.contains("\"not_reviewed\":1")));

    // A new campaign leaves out the disabled accounts; the last active admin cannot be revoked.
    let c2 = s.open_access_review(o.id, admin.user_id, meta()).await.unwrap();
    assert_eq!(c2.counts.total, 2);
    let last = ItemDecision::Revoke { reason: RevokeReason::NotNeeded, note: None };
    let co2 = user(s, &o, "co2@acme", Role::ComplianceOfficer).await;
    let c2_items = s.access_review_items(o.id, c2.id).await.unwrap();
    assert!(c2_items.iter().all(|i| i.user_id != co2.user_id), "accounts made after the opening are not in it");
    assert!(matches!(s.decide_access_review(co2, c2.id, admin.user_id, last, meta()).await, Err(StoreError::State(_))));
    let list = s.access_review_campaigns(o.id).await.unwrap();
    assert_eq!(list.iter().map(|c| c.id).collect::<Vec<_>>(), vec![c2.id, c.id], "newest first");
}

async fn the_schedule_opens_one_campaign_when_due(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let o = org(s, "acme").await;
    let admin = user(s, &o, "admin@acme", Role::Admin).await;
    user(s, &o, "doc@acme", Role::Clinician).await;
    assert_eq!(s.access_review_schedule(o.id).await.unwrap(), ReviewSchedule::default());
    let next = s.next_access_review_at(o.id).await.unwrap();
    assert_eq!(next, o.created_at + 90 * DAY_MS);
    // Not yet due.
    assert_eq!(s.open_due_access_reviews(next - 1, meta()).await.unwrap(), 0);
    // A monthly cadence brings it forward.
    let monthly = ReviewSchedule::parse(30, 7).unwrap();
    s.set_access_review_schedule(o.id, admin.user_id, monthly, meta()).await.unwrap();
    s.set_access_review_schedule(o.id, admin.user_id, monthly, meta()).await.unwrap();
    assert_eq!(s.access_review_schedule(o.id).await.unwrap(), monthly);
    let due = o.created_at + 30 * DAY_MS;
    assert_eq!(s.next_access_review_at(o.id).await.unwrap(), due);
    assert_eq!(s.open_due_access_reviews(due, meta()).await.unwrap(), 1);
    // Run again (another node, the next tick): still one.
    assert_eq!(s.open_due_access_reviews(due, meta()).await.unwrap(), 0);
    let list = s.access_review_campaigns(o.id).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!((list[0].origin, list[0].opened_by, list[0].counts.total), (CampaignTrigger::Schedule, None, 2));
    assert_eq!(list[0].due_at - list[0].opened_at, 7 * DAY_MS);
    // The next is a cadence after this opening.
    assert_eq!(s.next_access_review_at(o.id).await.unwrap(), list[0].opened_at + 30 * DAY_MS);
    let audit = s.audit_events(0, 10_000).await.unwrap();
    assert!(audit.iter().any(|e| e.action == "access_review.open" && e.detail.contains("schedule") && e.actor_user_id.is_none()));
    assert_eq!(audit.iter().filter(|e| e.action == "access_review.schedule").count(), 2);
}

/// Items delegated to a manager: the manager sees and decides only those, never their own;
/// the delegation carries over to the next campaign while the manager is enabled.
async fn a_manager_reviews_their_people(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let o = org(s, "acme").await;
    let co = user(s, &o, "co@acme", Role::ComplianceOfficer).await;
    let admin = user(s, &o, "admin@acme", Role::Admin).await;
    let lead = user(s, &o, "lead@acme", Role::Nurse).await;
    let n1 = user(s, &o, "n1@acme", Role::Nurse).await;
    let n2 = user(s, &o, "n2@acme", Role::Nurse).await;
    let doc = user(s, &o, "doc@acme", Role::Clinician).await;
    let patient = user(s, &o, "pat@acme", Role::Patient).await;
    let c = s.open_access_review(o.id, co.user_id, meta()).await.unwrap();
    assert_eq!(s.access_reviews_to_decide(o.id, lead.user_id).await.unwrap(), 0);
    // Nobody reviews their own access or picks their own reviewer, patients review nobody,
    // admins' and compliance officers' access stays with the reviewers, only reviewers delegate.
    let own = s.assign_access_review_items(co, c.id, Some(lead.user_id), vec![n1.user_id, lead.user_id], meta()).await;
    assert!(matches!(own, Err(StoreError::Invalid(_))), "{own:?}");
    let pick_own = s.assign_access_review_items(co, c.id, Some(lead.user_id), vec![co.user_id], meta()).await;
    assert!(matches!(pick_own, Err(StoreError::Invalid(_))), "{pick_own:?}");
    let admins_item = s.assign_access_review_items(co, c.id, Some(lead.user_id), vec![admin.user_id], meta()).await;
    assert!(matches!(admins_item, Err(StoreError::Invalid(_))), "{admins_item:?}");
    let to_patient = s.assign_access_review_items(co, c.id, Some(patient.user_id), vec![n1.user_id], meta()).await;
    assert!(matches!(to_patient, Err(StoreError::Invalid(_))), "{to_patient:?}");
    assert!(matches!(
        s.assign_access_review_items(lead, c.id, Some(lead.user_id), vec![n1.user_id], meta()).await,
        Err(StoreError::Denied(Denial::RoleNotPermitted))
    ));
    assert!(s.delegated_access_reviews(o.id, lead.user_id).await.unwrap().is_empty(), "a refused delegation changes nothing");
    s.assign_access_review_items(co, c.id, Some(lead.user_id), vec![n1.user_id, n2.user_id, n1.user_id], meta()).await.unwrap();

    let mine = s.delegated_access_reviews(o.id, lead.user_id).await.unwrap();
    assert_eq!((mine.len(), mine[0].counts.total, mine[0].counts.pending), (1, 2, 2), "counts of the delegated items only");
    let (_, items) = s.delegated_access_review(o.id, c.id, lead.user_id).await.unwrap();
    assert_eq!(items.iter().map(|i| i.login.as_str()).collect::<Vec<_>>(), ["n1@acme", "n2@acme"]);
    assert!(items.iter().all(|i| i.reviewer == Some(lead.user_id)));
    assert_eq!(s.access_reviews_to_decide(o.id, lead.user_id).await.unwrap(), 2);
    assert!(matches!(s.delegated_access_review(o.id, c.id, doc.user_id).await, Err(StoreError::NotFound)));
    // The lead decides their people, and nobody else.
    s.decide_access_review(lead, c.id, n1.user_id, ItemDecision::Certify, meta()).await.unwrap();
    let other = s.decide_access_review(lead, c.id, doc.user_id, ItemDecision::Certify, meta()).await;
    assert!(matches!(other, Err(StoreError::Denied(_))), "{other:?}");
    assert_eq!(s.access_reviews_to_decide(o.id, lead.user_id).await.unwrap(), 1);
    // Given back: the reviewers decide it again.
    s.assign_access_review_items(co, c.id, None, vec![n2.user_id], meta()).await.unwrap();
    assert!(matches!(s.decide_access_review(lead, c.id, n2.user_id, ItemDecision::Certify, meta()).await, Err(StoreError::Denied(_))));
    s.assign_access_review_items(co, c.id, Some(lead.user_id), vec![n2.user_id], meta()).await.unwrap();
    let audit = s.audit_events(0, 10_000).await.unwrap();
    assert_eq!(audit.iter().filter(|e| e.action == "access_review.assign").count(), 3);
    assert!(audit.iter().any(|e| e.action == "access_review.decide" && e.detail.contains("\"delegated\":true")));
    s.close_access_review(o.id, co.user_id, c.id, meta()).await.unwrap();
    assert!(matches!(s.assign_access_review_items(co, c.id, None, vec![n2.user_id], meta()).await, Err(StoreError::State(_))));

    // The next campaign keeps the delegation; a disabled manager's does not carry over.
    let c2 = s.open_access_review(o.id, co.user_id, meta()).await.unwrap();
    let items = s.access_review_items(o.id, c2.id).await.unwrap();
    let reviewer_of = |login: &str| items.iter().find(|i| i.login == login).unwrap().reviewer;
    assert_eq!((reviewer_of("n1@acme"), reviewer_of("n2@acme"), reviewer_of("doc@acme")), (Some(lead.user_id), Some(lead.user_id), None));
    s.close_access_review(o.id, co.user_id, c2.id, meta()).await.unwrap();
    s.set_user_disabled(o.id, lead.user_id, true, Some(co.user_id), meta()).await.unwrap();
    let c3 = s.open_access_review(o.id, co.user_id, meta()).await.unwrap();
    assert!(s.access_review_items(o.id, c3.id).await.unwrap().iter().all(|i| i.reviewer.is_none()));

    // Promoted to compliance officer: the delegation goes back to the reviewers, and the
    // delegate can no longer decide it.
    let lead2 = user(s, &o, "lead2@acme", Role::Nurse).await;
    s.close_access_review(o.id, co.user_id, c3.id, meta()).await.unwrap();
    let c4 = s.open_access_review(o.id, co.user_id, meta()).await.unwrap();
    s.assign_access_review_items(co, c4.id, Some(lead2.user_id), vec![n2.user_id], meta()).await.unwrap();
    s.set_user_role(o.id, n2.user_id, Role::ComplianceOfficer, admin.user_id, meta()).await.unwrap();
    let item = s.access_review_items(o.id, c4.id).await.unwrap().into_iter().find(|i| i.user_id == n2.user_id).unwrap();
    assert_eq!(item.reviewer, None, "a promotion takes the item back");
    let promoted = s.decide_access_review(lead2, c4.id, n2.user_id, ItemDecision::Certify, meta()).await;
    assert!(matches!(promoted, Err(StoreError::Denied(_))), "{promoted:?}");
}
