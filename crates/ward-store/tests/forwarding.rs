//! Forwarding as a disclosure, patient authorizations and the minimum-necessary count, on both
//! SQLite and PostgreSQL.

use ward_domain::break_glass::ReasonText;
use ward_domain::conversation::{AccessReason, ClientTxnId, ConversationKind, DisclosurePurpose, MemberRole, StatedReason};
use ward_domain::ids::{ConversationId, DeviceId, MessageId, PatientId};
use ward_domain::policy::{Actor, Denial};
use ward_domain::role::Role;
use ward_store::testing::{TestDb, group, meta, msg, user};
use ward_store::{
    Backend, EventKind, ForwardBasis, Forwarded, MemberSpec, NewConversation, Store, StoreError, TimeRange, now_ms, on_both_backends,
};

on_both_backends!(
    forwards_outside_the_care_team_are_disclosures,
    groups_beyond_the_care_team_carry_a_warning,
    members_added_after_a_forward_are_disclosed_to,
);

/// A member who joins a group after a patient's message was forwarded into it can read that
/// message: a new disclosure to them, in the patient's accounting with the forward's basis.
async fn members_added_after_a_forward_are_disclosed_to(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let o = s.create_org("acme", "Acme", 900, None, meta()).await.unwrap();
    let doc = user(s, &o, "doc@acme", Role::Clinician).await;
    let nurse = user(s, &o, "nurse@acme", Role::Nurse).await;
    let billing = user(s, &o, "billing@acme", Role::Staff).await;
    let coder = user(s, &o, "coder@acme", Role::Staff).await;
    let p = s.create_patient(o.id, doc.user_id, "MRN-1".into(), "Pat".into(), vec![doc.user_id, nurse.user_id], meta()).await.unwrap().id;
    let about_p = patient_conv(s, doc, p, &[nurse]).await;
    let src = s.send_message(doc, DeviceId::new(), msg(about_p, "s1", CANARY), meta()).await.unwrap().message.id;
    let with_billing = group(s, doc, &[billing]).await;
    let fwd = forward(s, doc, (about_p, src), with_billing, "f1", Some(ForwardBasis::Purpose(DisclosurePurpose::Payment))).await.unwrap();
    // Another forward, then recalled: the new member cannot read it, so nothing is disclosed.
    let gone = forward(s, doc, (about_p, src), with_billing, "f2", Some(ForwardBasis::Purpose(DisclosurePurpose::Payment))).await.unwrap();
    s.recall(doc, with_billing, gone.sent.message.id, meta()).await.unwrap();

    let before = s.disclosures(o.id, p, TimeRange::default(), None, 100).await.unwrap().items.len();
    // Someone on the care team joins: no disclosure. An outsider joins: one, for the readable copy.
    s.add_member(doc, with_billing, nurse.user_id, MemberRole::Member, None, meta()).await.unwrap();
    s.add_member(doc, with_billing, coder.user_id, MemberRole::Member, None, meta()).await.unwrap();
    let acc = s.disclosures(o.id, p, TimeRange::default(), None, 100).await.unwrap();
    assert_eq!(acc.items.len(), before + 1, "{:?}", acc.items);
    let new = acc.items.iter().find(|d| d.recipient.user_id() == Some(coder.user_id.0)).expect("a disclosure to the new member");
    assert_eq!(new.action, "message.forward");
    assert_eq!(new.purpose, "payment");
    assert!(acc.items.iter().all(|d| d.recipient.user_id() != Some(nurse.user_id.0)));
    let events = s.audit_events(0, 100_000).await.unwrap();
    let ev = events.iter().rev().find(|e| e.action == "message.forward").unwrap();
    assert_eq!(ev.target_id.as_deref(), Some(fwd.sent.message.id.to_string().as_str()));
    assert!(ev.detail.contains("member_added") && !ev.detail.contains("FWD-CANARY"));

    // Removed and added again, the coder and the original recipient learn nothing new.
    let count = acc.items.len();
    for who in [coder, billing] {
        s.remove_member(doc, with_billing, who.user_id, meta()).await.unwrap();
        s.add_member(doc, with_billing, who.user_id, MemberRole::Member, None, meta()).await.unwrap();
    }
    let again = s.disclosures(o.id, p, TimeRange::default(), None, 100).await.unwrap();
    assert_eq!(again.items.len(), count, "{:?}", again.items);
}

const CANARY: &str = "FWD-CANARY-5521 biopsy result";

async fn patient_conv(s: &Store, owner: Actor, p: PatientId, members: &[Actor]) -> ConversationId {
    let spec = NewConversation {
        kind: ConversationKind::Patient,
        title: None,
        patient_id: Some(p),
        members: members.iter().map(|m| MemberSpec { user_id: m.user_id, reason: None }).collect(),
        creator_reason: None,
    };
    s.create_conversation(owner, spec, meta()).await.unwrap().id
}

async fn forward(
    s: &Store,
    who: Actor,
    from: (ConversationId, MessageId),
    to: ConversationId,
    txn: &str,
    basis: Option<ForwardBasis>,
) -> Result<Forwarded, StoreError> {
    let txn = ClientTxnId::parse(txn.into()).unwrap();
    s.forward_message(who, DeviceId::new(), from.0, from.1, to, txn, Some("FYI".into()), basis, meta()).await
}

fn text(t: &str) -> ReasonText {
    ReasonText::parse("text", t).unwrap()
}

async fn forwards_outside_the_care_team_are_disclosures(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let o = s.create_org("acme", "Acme", 900, None, meta()).await.unwrap();
    let doc = user(s, &o, "doc@acme", Role::Clinician).await;
    let nurse = user(s, &o, "nurse@acme", Role::Nurse).await;
    let billing = user(s, &o, "billing@acme", Role::Staff).await;
    let stranger = user(s, &o, "stranger@acme", Role::Clinician).await;
    let p = s.create_patient(o.id, doc.user_id, "MRN-1".into(), "Pat".into(), vec![doc.user_id, nurse.user_id], meta()).await.unwrap().id;
    let q = s.create_patient(o.id, doc.user_id, "MRN-2".into(), "Quinn".into(), vec![doc.user_id], meta()).await.unwrap().id;

    let about_p = patient_conv(s, doc, p, &[nurse]).await;
    let also_p = patient_conv(s, doc, p, &[nurse]).await;
    let team_group = group(s, doc, &[nurse]).await;
    let with_billing = group(s, doc, &[billing]).await;
    let src = s.send_message(doc, DeviceId::new(), msg(about_p, "s1", CANARY), meta()).await.unwrap().message.id;
    let from = (about_p, src);

    // Inside the care team, in the patient's own conversation: no basis needed, no disclosure.
    let inside = forward(s, doc, from, also_p, "f1", None).await.unwrap();
    assert!(inside.sent.created);
    let body = inside.sent.message.body.clone().unwrap();
    assert!(body.starts_with("FYI\n\n---------- Forwarded from doc@acme ----------\n"), "{body}");
    assert!(body.ends_with(CANARY));
    assert_eq!(inside.source, src);

    // Any other conversation, or anyone outside the care team: a purpose or authorization first.
    for to in [team_group, with_billing] {
        let r = forward(s, doc, from, to, "f2", None).await;
        assert!(matches!(r, Err(StoreError::Denied(Denial::DisclosurePurposeRequired))), "{r:?}");
    }
    assert_eq!(s.message_count(with_billing).await.unwrap(), 0, "a refused forward sends nothing");
    let paid = forward(s, doc, from, with_billing, "f3", Some(ForwardBasis::Purpose(DisclosurePurpose::Payment))).await.unwrap();
    // A retry forwards (and discloses) nothing more.
    let again = forward(s, doc, from, with_billing, "f3", Some(ForwardBasis::Purpose(DisclosurePurpose::Payment))).await.unwrap();
    assert!(!again.sent.created);
    assert_eq!(again.sent.message.id, paid.sent.message.id);
    forward(s, doc, from, team_group, "f4", Some(ForwardBasis::Purpose(DisclosurePurpose::Treatment))).await.unwrap();

    // Authorizations: recorded by the care team for a future date; another patient's, an
    // expired one and an unknown id are refused.
    let later = now_ms() + 86_400_000;
    let r = s.record_authorization(stranger, p, text("Dr Who, Acme Ortho"), text("second opinion"), later, meta()).await;
    assert!(matches!(r, Err(StoreError::Denied(Denial::RoleNotPermitted))), "{r:?}");
    let r = s.record_authorization(doc, p, text("Dr Who"), text("second opinion"), now_ms() - 1, meta()).await;
    assert!(matches!(r, Err(StoreError::State(_))), "{r:?}");
    let auth_p = s.record_authorization(doc, p, text("Dr Who, Acme Ortho"), text("second opinion"), later, meta()).await.unwrap();
    let auth_q = s.record_authorization(doc, q, text("Dr Who"), text("second opinion"), later, meta()).await.unwrap();
    let expired = s.record_authorization(nurse, p, text("Dr Who"), text("second opinion"), later, meta()).await.unwrap();
    s.test_expire_authorization(expired.id).await;
    for (i, bad) in [auth_q.id, expired.id, uuid::Uuid::now_v7()].into_iter().enumerate() {
        let r = forward(s, doc, from, with_billing, &format!("bad{i}"), Some(ForwardBasis::Authorization(bad))).await;
        assert!(matches!(r, Err(StoreError::Denied(Denial::AuthorizationNotValid))), "{i}: {r:?}");
    }
    forward(s, doc, from, with_billing, "f5", Some(ForwardBasis::Authorization(auth_p.id))).await.unwrap();

    // The source must be readable by the forwarder: a member, and not recalled.
    let r = forward(s, billing, from, with_billing, "f6", Some(ForwardBasis::Purpose(DisclosurePurpose::Payment))).await;
    assert!(matches!(r, Err(StoreError::NotFound)), "{r:?}");
    let gone = s.send_message(doc, DeviceId::new(), msg(about_p, "s2", "oops"), meta()).await.unwrap().message.id;
    s.recall(doc, about_p, gone, meta()).await.unwrap();
    let r = forward(s, doc, (about_p, gone), also_p, "f7", None).await;
    assert!(matches!(r, Err(StoreError::State(_))), "{r:?}");

    // The accounting: the payment and authorized forwards to billing; nothing for the forwards
    // inside the care team (the team group has no outsider).
    let acc = s.disclosures(o.id, p, TimeRange::default(), None, 100).await.unwrap();
    let fwd: Vec<_> = acc.items.iter().filter(|d| d.action == "message.forward").collect();
    assert_eq!(fwd.len(), 2, "{:?}", acc.items);
    assert!(fwd.iter().all(|d| d.recipient.user_id() == Some(billing.user_id.0)));
    assert_eq!(fwd[0].purpose, "payment");
    assert_eq!(fwd[1].purpose, "authorization");
    let acc_q = s.disclosures(o.id, q, TimeRange::default(), None, 100).await.unwrap();
    assert!(acc_q.items.iter().all(|d| d.action != "message.forward"));

    // The audit log holds ids and codes, never the text or the authorization's words.
    let events = s.audit_events(0, 100_000).await.unwrap();
    for e in &events {
        let row = format!("{e:?}");
        assert!(!row.contains("FWD-CANARY-5521") && !row.contains("Acme Ortho"), "PHI reached the audit log: {row}");
    }
    let forwards = events.iter().filter(|e| e.action == "message.forward" && e.outcome == "success").count();
    assert_eq!(forwards, 4, "one per forward inside the team, one per outside recipient");
    assert_eq!(events.iter().filter(|e| e.action == "patient.authorization").count(), 3);
}

async fn groups_beyond_the_care_team_carry_a_warning(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let o = s.create_org("acme", "Acme", 900, None, meta()).await.unwrap();
    let doc = user(s, &o, "doc@acme", Role::Clinician).await;
    let nurse = user(s, &o, "nurse@acme", Role::Nurse).await;
    let consultant = user(s, &o, "cons@acme", Role::Clinician).await;
    let p = s.create_patient(o.id, doc.user_id, "MRN-1".into(), "Pat".into(), vec![doc.user_id, nurse.user_id], meta()).await.unwrap().id;
    let conv = patient_conv(s, doc, p, &[nurse]).await;
    assert_eq!(s.conversation(doc, conv, meta()).await.unwrap().summary.beyond_care_team, 0);

    let reason = StatedReason::parse(AccessReason::Consult, None).unwrap();
    let fanouts = s.add_member(doc, conv, consultant.user_id, MemberRole::Member, Some(reason), meta()).await.unwrap();
    assert_eq!(fanouts.len(), 2, "member_added, then the notice");
    match &fanouts[1].event.kind {
        EventKind::BeyondCareTeam { user_id, members } => {
            assert_eq!((*user_id, *members), (consultant.user_id, 1));
        }
        other => panic!("expected the minimum-necessary notice, got {other:?}"),
    }
    assert!(fanouts[1].recipients.contains(&nurse.user_id) && fanouts[1].recipients.contains(&consultant.user_id));
    assert_eq!(s.conversation(nurse, conv, meta()).await.unwrap().summary.beyond_care_team, 1);
    let listed = s.conversations(nurse, None, 50).await.unwrap();
    assert_eq!(listed.iter().find(|c| c.id == conv).unwrap().beyond_care_team, 1);

    // A care-team member joining raises no notice; groups never count.
    let extra = user(s, &o, "nurse2@acme", Role::Nurse).await;
    s.set_care_team(o.id, doc.user_id, p, vec![doc.user_id, nurse.user_id, extra.user_id], meta()).await.unwrap();
    let fanouts = s.add_member(doc, conv, extra.user_id, MemberRole::Member, None, meta()).await.unwrap();
    assert_eq!(fanouts.len(), 1, "no notice for a care-team member");
    assert_eq!(s.conversation(doc, conv, meta()).await.unwrap().summary.beyond_care_team, 1);
    let g = group(s, doc, &[consultant]).await;
    assert_eq!(s.conversation(doc, g, meta()).await.unwrap().summary.beyond_care_team, 0);
}
