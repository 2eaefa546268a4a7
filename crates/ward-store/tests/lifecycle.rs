//! Data lifecycle on both SQLite and PostgreSQL: retention policies, legal holds and
//! crypto-shredding (keys destroyed, messages tombstoned, bytes gone from the files).

use ward_domain::audit::AuditAction;
use ward_domain::conversation::ConversationKind;
use ward_domain::ids::{ConversationId, DeviceId};
use ward_domain::lifecycle::{DAY_MS, HoldReason, HoldSubject, RetentionDays, RetentionPolicy};
use ward_domain::policy::{Actor, Denial};
use ward_domain::role::Role;
use ward_store::on_both_backends;
use ward_store::testing::TestDb;
use ward_store::testing::{group_titled, meta, msg, org, user};
use ward_store::{Backend, NewConversation, Page, Store, StoreError, now_ms};

on_both_backends!(
    policies_default_per_kind_and_only_compliance_roles_change_them,
    expired_conversations_are_shredded_whole_and_start_a_new_key_version,
    old_versions_go_while_the_conversation_lives_and_the_title_is_resealed,
    legal_holds_block_shredding_until_released,
    a_hold_on_a_patient_keeps_their_conversations,
    the_database_refuses_to_destroy_a_held_key,
);

const CANARY: &str = "CANARY-lifecycle-7f3a9c";
const TITLE: &str = "TITLE-CANARY-b41e";

async fn group(store: &Store, owner: Actor, members: &[Actor]) -> ConversationId {
    group_titled(store, owner, members, TITLE).await
}

/// Moves every conversation key and message `days` into the past.
async fn age_everything(s: &Store, days: i64) {
    let ms = days * DAY_MS;
    s.test_execute(format!("UPDATE data_keys SET created_at = created_at - {ms} WHERE scope_kind = 'conversation'")).await.unwrap();
    s.test_execute(format!("UPDATE messages SET created_at = created_at - {ms}")).await.unwrap();
}

async fn audited(s: &Store, action: AuditAction) -> usize {
    s.audit_events(0, 100_000).await.unwrap().iter().filter(|e| e.action == action.as_str()).count()
}

async fn policies_default_per_kind_and_only_compliance_roles_change_them(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let o = org(s, "acme").await;
    let admin = user(s, &o, "admin@acme", Role::Admin).await;
    let officer = user(s, &o, "co@acme", Role::ComplianceOfficer).await;
    let nurse = user(s, &o, "n@acme", Role::Nurse).await;
    assert_eq!(s.retention_policy(o.id).await.unwrap(), RetentionPolicy::default());
    let mut p = RetentionPolicy::default();
    p.set(ConversationKind::Group, RetentionDays::parse(30).unwrap());
    assert!(matches!(s.set_retention_policy(nurse, p, meta()).await, Err(StoreError::Denied(Denial::RoleNotPermitted))));
    s.set_retention_policy(officer, p, meta()).await.unwrap();
    assert_eq!(s.retention_policy(o.id).await.unwrap().group.get(), 30);
    p.set(ConversationKind::Patient, RetentionDays::parse(3000).unwrap());
    s.set_retention_policy(admin, p, meta()).await.unwrap();
    let got = s.retention_policy(o.id).await.unwrap();
    assert_eq!((got.direct.get(), got.group.get(), got.patient.get()), (365, 30, 3000));
    // Another organisation keeps the defaults.
    let other = org(s, "other").await;
    assert_eq!(s.retention_policy(other.id).await.unwrap(), RetentionPolicy::default());
    assert_eq!(audited(s, AuditAction::RetentionPolicy).await, 2);
    // The database refuses periods out of range even if the domain were bypassed.
    let bad = s.test_execute("UPDATE retention_policies SET days = 0".into()).await;
    assert!(bad.is_err());
}

async fn expired_conversations_are_shredded_whole_and_start_a_new_key_version(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let o = org(s, "acme").await;
    let a = user(s, &o, "a@acme", Role::Clinician).await;
    let b = user(s, &o, "b@acme", Role::Nurse).await;
    let conv = group(s, a, &[b]).await;
    let m1 = s.send_message(a, DeviceId::new(), msg(conv, "1", &format!("{CANARY} one")), meta()).await.unwrap().message;
    s.send_message(b, DeviceId::new(), msg(conv, "2", &format!("{CANARY} two")), meta()).await.unwrap();
    let sealed = s.sealed_body(m1.id).await.unwrap().expect("sealed body");
    let wrapped = s.test_wrapped_key(conv.0, 1).await.expect("live key");

    // Nothing has expired yet.
    let run = s.enforce_retention(now_ms(), |_| {}).await.unwrap();
    assert_eq!(run.versions_destroyed, 0);

    age_everything(s, 400).await;
    let mut seen = Vec::new();
    let run = s.enforce_retention(now_ms(), |p| seen.push(p)).await.unwrap();
    assert_eq!((run.shredded_conversations, run.versions_destroyed, run.messages_shredded), (1, 1, 2));
    assert!(run.compacted);
    assert_eq!(run.scopes.len(), 1);
    assert!(run.scopes[0].whole);
    assert_eq!(seen.last().map(|p| (p.done, p.total)), Some((1, 1)));

    // Tombstones: ids, senders, seqs and times remain; bodies are gone.
    let msgs = s.messages(b, conv, Page::After(0), 10, meta()).await.unwrap();
    assert_eq!(msgs.len(), 2);
    assert!(msgs.iter().all(|m| m.body.is_none() && m.shredded_at.is_some()));
    assert_eq!((msgs[0].seq, msgs[0].sender_id, msgs[1].sender_id), (1, a.user_id, b.user_id));
    let one = s.message(a, conv, m1.id, meta()).await.unwrap();
    assert!(one.body.is_none() && one.shredded_at.is_some());
    // The title went with the conversation's last key.
    let d = s.conversation(a, conv, meta()).await.unwrap();
    assert_eq!(d.summary.title, None);
    // The old ciphertext cannot be opened, even with the KEK still at hand.
    assert!(matches!(s.open_sealed_body(o.id, conv, m1.id, sealed).await, Err(StoreError::KeyDestroyed)));
    assert!(matches!(s.conversation_key_version(o.id, conv, 1).await, Err(StoreError::KeyDestroyed)));
    assert_eq!(s.test_wrapped_key(conv.0, 1).await, None);
    assert_eq!(s.sealed_body(m1.id).await.unwrap(), None);

    // The record for the auditor.
    let records = s.shred_records(o.id, 10).await.unwrap();
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!((r.scope_id, r.versions.as_slice(), r.message_count, r.whole_scope), (conv.0, &[1u32][..], 2, true));
    assert_eq!((r.policy_kind.as_str(), r.policy_days), ("group", 365));
    assert_eq!(audited(s, AuditAction::RetentionShred).await, 1);
    let inventory = s.data_key_inventory(None, 100).await.unwrap();
    let k = inventory.iter().find(|k| k.scope_id == conv.0).unwrap();
    assert!(k.destroyed_at.is_some() && k.kek_id.is_none());

    // The conversation goes on under a new key version, never a reused one.
    let m3 = s.send_message(a, DeviceId::new(), msg(conv, "3", "after the shred"), meta()).await.unwrap().message;
    assert_eq!(s.conversation_key(o.id, conv).await.unwrap().version(), 2);
    assert_eq!(s.message(b, conv, m3.id, meta()).await.unwrap().body.as_deref(), Some("after the shred"));
    let status = s.lifecycle_status().await.unwrap();
    assert_eq!((status.shred_records, status.destroyed_versions, status.shredded_messages), (1, 1, 2));

    // A second run finds nothing more to do.
    let again = s.enforce_retention(now_ms(), |_| {}).await.unwrap();
    assert_eq!(again.versions_destroyed, 0);

    // The bytes are gone from the files (SQLite: database and WAL).
    if backend == Backend::Sqlite {
        let mut raw = Vec::new();
        for name in ["ward.db", "ward.db-wal"] {
            if let Ok(bytes) = std::fs::read(db.dir.path().join(name)) {
                raw.extend(bytes);
            }
        }
        assert!(!raw.is_empty());
        assert!(!contains(&raw, CANARY.as_bytes()), "message canary in the raw files");
        assert!(!contains(&raw, TITLE.as_bytes()), "title canary in the raw files");
        assert!(!contains(&raw, &wrapped), "the destroyed wrapped key is still in the raw files");
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

async fn old_versions_go_while_the_conversation_lives_and_the_title_is_resealed(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let o = org(s, "acme").await;
    let a = user(s, &o, "a@acme", Role::Clinician).await;
    let b = user(s, &o, "b@acme", Role::Nurse).await;
    let conv = group(s, a, &[b]).await;
    let old = s.send_message(a, DeviceId::new(), msg(conv, "1", "old news"), meta()).await.unwrap().message;
    // Version 1 is now 500 days old: the next message rotates to version 2.
    age_everything(s, 500).await;
    let new = s.send_message(b, DeviceId::new(), msg(conv, "2", "fresh news"), meta()).await.unwrap().message;
    assert_eq!(s.conversation_key(o.id, conv).await.unwrap().version(), 2);

    let run = s.enforce_retention(now_ms(), |_| {}).await.unwrap();
    assert_eq!((run.versions_destroyed, run.messages_shredded), (1, 1));
    assert!(!run.scopes[0].whole);
    let msgs = s.messages(a, conv, Page::After(0), 10, meta()).await.unwrap();
    assert_eq!(msgs[0].id, old.id);
    assert!(msgs[0].body.is_none() && msgs[0].shredded_at.is_some());
    assert_eq!(msgs[1].id, new.id);
    assert_eq!(msgs[1].body.as_deref(), Some("fresh news"));
    // The title was sealed under version 1; it was sealed again under version 2 first.
    let d = s.conversation(a, conv, meta()).await.unwrap();
    assert_eq!(d.summary.title.as_deref(), Some(TITLE));
    assert!(matches!(s.conversation_key_version(o.id, conv, 1).await, Err(StoreError::KeyDestroyed)));
    let r = &s.shred_records(o.id, 10).await.unwrap()[0];
    assert!(!r.whole_scope);
}

async fn legal_holds_block_shredding_until_released(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let o = org(s, "acme").await;
    let officer = user(s, &o, "co@acme", Role::ComplianceOfficer).await;
    let a = user(s, &o, "a@acme", Role::Clinician).await;
    let b = user(s, &o, "b@acme", Role::Nurse).await;
    let c = user(s, &o, "c@acme", Role::Nurse).await;
    let held_by_user = group(s, a, &[b]).await;
    let held_itself = group(s, c, &[a]).await;
    let free = group(s, c, &[]).await;
    for (i, conv) in [held_by_user, held_itself, free].into_iter().enumerate() {
        let sender = if conv == held_by_user { b } else { c };
        s.send_message(sender, DeviceId::new(), msg(conv, &i.to_string(), CANARY), meta()).await.unwrap();
    }
    let reason = || HoldReason::parse("Matter 2026-17".into()).unwrap();
    assert!(matches!(
        s.place_hold(a, HoldSubject::User, b.user_id.0, reason(), meta()).await,
        Err(StoreError::Denied(Denial::RoleNotPermitted))
    ));
    assert!(matches!(s.place_hold(officer, HoldSubject::User, uuid::Uuid::now_v7(), reason(), meta()).await, Err(StoreError::NotFound)));
    let on_user = s.place_hold(officer, HoldSubject::User, b.user_id.0, reason(), meta()).await.unwrap();
    let on_conv = s.place_hold(officer, HoldSubject::Conversation, held_itself.0, reason(), meta()).await.unwrap();
    assert!(s.is_conversation_held(held_by_user).await.unwrap());
    assert!(s.is_conversation_held(held_itself).await.unwrap());
    assert!(!s.is_conversation_held(free).await.unwrap());
    assert_eq!(s.legal_holds(o.id, true).await.unwrap().len(), 2);

    age_everything(s, 400).await;
    let run = s.enforce_retention(now_ms(), |_| {}).await.unwrap();
    assert_eq!((run.shredded_conversations, run.held), (1, 2));
    assert_eq!(run.scopes[0].conversation_id, free);
    let kept = s.messages(a, held_by_user, Page::After(0), 10, meta()).await.unwrap();
    assert_eq!(kept[0].body.as_deref(), Some(CANARY));

    // A user hold covers conversations the user has left too.
    s.remove_member(a, held_by_user, b.user_id, meta()).await.unwrap();
    assert!(s.is_conversation_held(held_by_user).await.unwrap());

    s.release_hold(officer, on_user.id, meta()).await.unwrap();
    assert!(matches!(s.release_hold(officer, on_user.id, meta()).await, Err(StoreError::State(_))));
    let run = s.enforce_retention(now_ms(), |_| {}).await.unwrap();
    assert_eq!((run.shredded_conversations, run.held), (1, 1));
    assert_eq!(run.scopes[0].conversation_id, held_by_user);
    s.release_hold(officer, on_conv.id, meta()).await.unwrap();
    let run = s.enforce_retention(now_ms(), |_| {}).await.unwrap();
    assert_eq!((run.shredded_conversations, run.held), (1, 0));
    assert!(s.legal_holds(o.id, true).await.unwrap().is_empty());
    let all = s.legal_holds(o.id, false).await.unwrap();
    assert!(all.iter().all(|h| h.released_at.is_some() && h.released_by == Some(officer.user_id)));
    assert_eq!(audited(s, AuditAction::LegalHoldPlace).await, 2);
    assert_eq!(audited(s, AuditAction::LegalHoldRelease).await, 2);
    // The audit log names the hold, never its reason.
    assert!(s.audit_events(0, 100_000).await.unwrap().iter().all(|e| !e.detail.contains("Matter 2026-17")));
}

async fn the_database_refuses_to_destroy_a_held_key(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let o = org(s, "acme").await;
    let officer = user(s, &o, "co@acme", Role::ComplianceOfficer).await;
    let a = user(s, &o, "a@acme", Role::Clinician).await;
    let conv = group(s, a, &[]).await;
    let m = s.send_message(a, DeviceId::new(), msg(conv, "1", CANARY), meta()).await.unwrap().message;
    let hold =
        s.place_hold(officer, HoldSubject::Conversation, conv.0, HoldReason::parse("Matter 1".into()).unwrap(), meta()).await.unwrap();
    assert!(matches!(s.destroy_key_version_unchecked(conv, 1).await, Err(StoreError::LegalHold)));
    assert!(s.test_execute("DELETE FROM data_keys WHERE scope_kind = 'conversation'".into()).await.is_err());
    assert!(s.test_execute("UPDATE messages SET body_sealed = NULL".into()).await.is_err());
    assert_eq!(s.message(a, conv, m.id, meta()).await.unwrap().body.as_deref(), Some(CANARY));
    s.release_hold(officer, hold.id, meta()).await.unwrap();
    assert_eq!(s.destroy_key_version_unchecked(conv, 1).await.unwrap(), 1);
    assert!(matches!(s.message(a, conv, m.id, meta()).await, Err(StoreError::KeyDestroyed)));
}

async fn a_hold_on_a_patient_keeps_their_conversations(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let o = org(s, "acme").await;
    let officer = user(s, &o, "co@acme", Role::ComplianceOfficer).await;
    let a = user(s, &o, "a@acme", Role::Clinician).await;
    let patient = s.create_patient(o.id, a.user_id, "MRN-HOLD-1".into(), "Held Patient".into(), vec![a.user_id], meta()).await.unwrap();
    let spec = NewConversation {
        kind: ConversationKind::Patient,
        title: Some(TITLE.into()),
        patient_id: Some(patient.id),
        members: vec![],
        creator_reason: None,
    };
    let conv = s.create_conversation(a, spec, meta()).await.unwrap().id;
    s.send_message(a, DeviceId::new(), msg(conv, "1", CANARY), meta()).await.unwrap();
    let hold =
        s.place_hold(officer, HoldSubject::Patient, patient.id.0, HoldReason::parse("Matter 9".into()).unwrap(), meta()).await.unwrap();
    // Seven years on, past the patient period.
    age_everything(s, 7 * 366).await;
    let run = s.enforce_retention(now_ms(), |_| {}).await.unwrap();
    assert_eq!((run.held, run.versions_destroyed), (1, 0));
    assert!(matches!(s.destroy_key_version_unchecked(conv, 1).await, Err(StoreError::LegalHold)));
    s.release_hold(officer, hold.id, meta()).await.unwrap();
    let run = s.enforce_retention(now_ms(), |_| {}).await.unwrap();
    assert_eq!((run.held, run.versions_destroyed, run.messages_shredded), (0, 1, 1));
    let r = &s.shred_records(o.id, 10).await.unwrap()[0];
    assert_eq!((r.policy_kind.as_str(), r.policy_days), ("patient", 2192));
}

/// Throughput figure for docs and reports, not a check (run with `--ignored --nocapture`):
/// shredding 500 expired group conversations of 4 messages each on SQLite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a test"]
async fn measure_shredding_throughput() {
    let Some(db) = TestDb::open(Backend::Sqlite).await else { return };
    let s = &db.store;
    let o = org(s, "acme").await;
    let a = user(s, &o, "a@acme", Role::Clinician).await;
    let b = user(s, &o, "b@acme", Role::Nurse).await;
    for i in 0..500 {
        let conv = group(s, a, &[b]).await;
        for j in 0..4 {
            s.send_message(a, DeviceId::new(), msg(conv, &format!("{i}-{j}"), CANARY), meta()).await.unwrap();
        }
    }
    age_everything(s, 400).await;
    let started = std::time::Instant::now();
    let run = s.enforce_retention(now_ms(), |_| {}).await.unwrap();
    let took = started.elapsed();
    assert_eq!(run.messages_shredded, 2000);
    println!(
        "shredded {} conversations / {} messages in {:.2} s ({:.0} conversations/s)",
        run.shredded_conversations,
        run.messages_shredded,
        took.as_secs_f64(),
        run.shredded_conversations as f64 / took.as_secs_f64()
    );
}
