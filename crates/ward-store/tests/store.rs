//! Storage behaviour on both SQLite and PostgreSQL: each test runs once per backend with a
//! database of its own.

use ward_domain::audit::AuditAction;
use ward_domain::conversation::{AccessReason, ConversationKind, ReceiptKind, StatedReason};
use ward_domain::ids::{DeviceId, UserId};
use ward_domain::policy::Denial;
use ward_domain::role::Role;
use ward_store::on_both_backends;
use ward_store::testing::TestDb;
use ward_store::testing::{group, meta, msg, org, user};
use ward_store::{Backend, DeviceClaim, MemberSpec, NewConversation, NewSession, NewUser, Page, RefreshOutcome, StoreError, TokenHashes};

on_both_backends!(
    sends_are_gapless_and_idempotent_under_concurrency,
    audit_indexes_are_dense_and_only_committed_changes_are_audited,
    audit_only_events_share_statements_but_keep_their_own_indexes,
    audit_log_is_append_only,
    tenants_never_see_each_other,
    patient_conversations_need_reasons_outside_the_care_team,
    recall_hides_text_and_receipts_only_move_forward,
    refresh_tokens_rotate_and_reuse_revokes_the_family,
    stream_positions_and_replay,
    audit_tree_nodes_and_checkpoints,
    audit_archives_delete_only_archived_entries,
);

async fn sends_are_gapless_and_idempotent_under_concurrency(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let o = org(s, "acme").await;
    let a = user(s, &o, "a@acme", Role::Clinician).await;
    let b = user(s, &o, "b@acme", Role::Nurse).await;
    let conv = group(s, a, &[b]).await;
    let mut tasks = Vec::new();
    for i in 0..200 {
        let s = s.clone();
        let who = if i % 2 == 0 { a } else { b };
        tasks.push(tokio::spawn(async move {
            // Every send is retried once: retries must not create a second message.
            let first = s.send_message(who, DeviceId::new(), msg(conv, &format!("t{i}"), &format!("m{i}")), meta()).await.unwrap();
            let again = s.send_message(who, DeviceId::new(), msg(conv, &format!("t{i}"), &format!("m{i}")), meta()).await.unwrap();
            assert!(first.created && !again.created);
            assert_eq!(first.message.id, again.message.id);
            first.message.seq
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=200).collect::<Vec<i64>>(), "sequence numbers must be exactly 1..=200");
    assert_eq!(s.message_count(conv).await.unwrap(), 200);
    let conflict = s.send_message(a, DeviceId::new(), msg(conv, "t0", "different text"), meta()).await;
    assert!(matches!(conflict, Err(StoreError::Conflict("client_txn_id"))));
    // Paging is stable and complete.
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let page = s.messages(a, conv, Page::After(after), 37, meta()).await.unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().unwrap().seq;
        seen.extend(page.into_iter().map(|m| m.seq));
    }
    assert_eq!(seen, (1..=200).collect::<Vec<i64>>());
    // Event sequence: two member_added events, then one per message, without gaps.
    let events = s.events_after(a.user_id, conv, 0, 1000).await.unwrap();
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), (1..=202).collect::<Vec<i64>>());
}

async fn audit_indexes_are_dense_and_only_committed_changes_are_audited(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let o = org(s, "acme").await;
    let a = user(s, &o, "a@acme", Role::Admin).await;
    let before = s.audit_events(0, 10_000).await.unwrap().len();
    // A refused change (duplicate login) commits nothing, audit event included.
    let dup = s
        .create_user(
            NewUser {
                org_id: o.id,
                login: "a@acme".into(),
                display_name: "x".into(),
                role: Role::Staff,
                password_hash: "x".into(),
                password_must_change: false,
                patient_id: None,
            },
            Some(a.user_id),
            meta(),
        )
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict("login"))));
    assert_eq!(s.audit_events(0, 10_000).await.unwrap().len(), before);
    // Concurrent audited changes get dense, unique indexes.
    let mut tasks = Vec::new();
    for i in 0..50 {
        let s = s.clone();
        let org = o.clone();
        tasks.push(tokio::spawn(async move { user(&s, &org, &format!("u{i}@acme"), Role::Staff).await }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let all = s.audit_events(0, 10_000).await.unwrap();
    assert_eq!(all.iter().map(|e| e.idx).collect::<Vec<_>>(), (0..all.len() as i64).collect::<Vec<_>>());
    assert_eq!(all.iter().filter(|e| e.action == AuditAction::UserCreate.as_str()).count(), 51);
    assert!(all.iter().all(|e| e.request_id.as_deref() == Some("test")));
}

async fn audit_only_events_share_statements_but_keep_their_own_indexes(backend: Backend) {
    use ward_domain::audit::{AuditEvent, DetailValue, Outcome};
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let o = org(s, "acme").await;
    // Many callers at once (so the writer appends them in multi-row statements, several sizes
    // of them), interleaved with changes that write their own events.
    let mut records = Vec::new();
    for i in 0..700i64 {
        let s = s.clone();
        let ev = AuditEvent::new(AuditAction::MessageRead, Outcome::Denied)
            .target("conversation", format!("c{i}"))
            .detail("n", DetailValue::Int(i));
        records.push(tokio::spawn(async move { (i, s.record(ev, meta()).await.unwrap()) }));
    }
    let mut changes = Vec::new();
    for i in 0..20 {
        let s = s.clone();
        let org = o.clone();
        changes.push(tokio::spawn(async move { user(&s, &org, &format!("u{i}@acme"), Role::Staff).await }));
    }
    let mut given = Vec::new();
    for t in records {
        given.push(t.await.unwrap());
    }
    for t in changes {
        t.await.unwrap();
    }
    let all = s.audit_events(0, 10_000).await.unwrap();
    assert_eq!(all.iter().map(|e| e.idx).collect::<Vec<_>>(), (0..all.len() as i64).collect::<Vec<_>>());
    // Each caller was told the index its own event is stored at.
    for (i, idx) in given {
        let row = &all[idx as usize];
        assert_eq!((row.target_id.as_deref(), row.detail.as_str()), (Some(format!("c{i}").as_str()), format!(r#"{{"n":{i}}}"#).as_str()));
        assert_eq!((row.action.as_str(), row.outcome.as_str(), row.request_id.as_deref()), ("message.read", "denied", Some("test")));
    }
    assert_eq!(all.iter().filter(|e| e.action == AuditAction::UserCreate.as_str()).count(), 20);
    // Far fewer transactions than events: they were committed together.
    let stats = s.writer_stats();
    assert!(stats.commits.load(std::sync::atomic::Ordering::Relaxed) < 700);
}

async fn audit_log_is_append_only(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    org(s, "acme").await;
    assert!(s.test_execute("UPDATE audit_events SET outcome = 'failure'".into()).await.is_err());
    assert!(s.test_execute("DELETE FROM audit_events".into()).await.is_err());
    assert_eq!(s.audit_events(0, 10).await.unwrap()[0].outcome, "success");
}

async fn tenants_never_see_each_other(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let (o1, o2) = (org(s, "one").await, org(s, "two").await);
    let a = user(s, &o1, "a@one", Role::Clinician).await;
    let b = user(s, &o1, "b@one", Role::Clinician).await;
    let x = user(s, &o2, "x@two", Role::Admin).await;
    let conv = group(s, a, &[b]).await;
    assert!(matches!(s.conversation(x, conv, meta()).await, Err(StoreError::NotFound)));
    assert!(matches!(s.messages(x, conv, Page::Latest, 10, meta()).await, Err(StoreError::NotFound)));
    assert!(matches!(s.send_message(x, DeviceId::new(), msg(conv, "x", "hi"), meta()).await, Err(StoreError::NotFound)));
    assert!(matches!(s.user(o2.id, a.user_id).await, Err(StoreError::NotFound)));
    // Adding a user of another tenant is refused as if they did not exist.
    let err = s.add_member(a, conv, x.user_id, ward_domain::conversation::MemberRole::Member, None, meta()).await;
    assert!(matches!(err, Err(StoreError::NotFound)));
    assert!(s.conversations(x, None, 50).await.unwrap().is_empty());
    // The refused read is itself audited.
    let denied = s.audit_events(0, 10_000).await.unwrap();
    assert!(denied.iter().any(|e| e.outcome == "denied" && e.actor_user_id == Some(x.user_id.0)));
}

async fn patient_conversations_need_reasons_outside_the_care_team(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let o = org(s, "acme").await;
    let doc = user(s, &o, "doc@acme", Role::Clinician).await;
    let nurse = user(s, &o, "nurse@acme", Role::Nurse).await;
    let outsider = user(s, &o, "out@acme", Role::Clinician).await;
    let p = s.create_patient(o.id, doc.user_id, "MRN-1".into(), "Pat".into(), vec![doc.user_id, nurse.user_id], meta()).await.unwrap();
    let spec = |members: Vec<MemberSpec>| NewConversation {
        kind: ConversationKind::Patient,
        title: None,
        patient_id: Some(p.id),
        members,
        creator_reason: None,
    };
    let plain = |u: UserId| MemberSpec { user_id: u, reason: None };
    let err = s.create_conversation(doc, spec(vec![plain(nurse.user_id), plain(outsider.user_id)]), meta()).await;
    assert!(matches!(err, Err(StoreError::Denied(Denial::ReasonRequired))));
    let created = s.create_conversation(doc, spec(vec![plain(nurse.user_id)]), meta()).await.unwrap();
    let err = s.add_member(doc, created.id, outsider.user_id, ward_domain::conversation::MemberRole::Member, None, meta()).await;
    assert!(matches!(err, Err(StoreError::Denied(Denial::ReasonRequired))));
    let reason = StatedReason::parse(AccessReason::Consult, Some("cardiology consult".into())).unwrap();
    s.add_member(doc, created.id, outsider.user_id, ward_domain::conversation::MemberRole::Member, Some(reason), meta()).await.unwrap();
    let d = s.conversation(doc, created.id, meta()).await.unwrap();
    let m = d.members.iter().find(|m| m.user_id == outsider.user_id).unwrap();
    assert_eq!(m.reason, Some(AccessReason::Consult));
    // The audit event has the reason code but never the note.
    let events = s.audit_events(0, 10_000).await.unwrap();
    let add = events.iter().rev().find(|e| e.action == "member.add").unwrap();
    assert!(add.detail.contains("consult") && !add.detail.contains("cardiology"));
    assert_eq!(add.patient_id, Some(p.id.0));
    assert!(events.iter().all(|e| !e.detail.contains("MRN-1") && e.target_id.as_deref() != Some("MRN-1")));
}

async fn recall_hides_text_and_receipts_only_move_forward(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let o = org(s, "acme").await;
    let a = user(s, &o, "a@acme", Role::Clinician).await;
    let b = user(s, &o, "b@acme", Role::Nurse).await;
    let conv = group(s, a, &[b]).await;
    let m1 = s.send_message(a, DeviceId::new(), msg(conv, "1", "first"), meta()).await.unwrap().message;
    s.send_message(a, DeviceId::new(), msg(conv, "2", "second"), meta()).await.unwrap();
    assert!(matches!(s.recall(b, conv, m1.id, meta()).await, Err(StoreError::Denied(Denial::NotSender))));
    assert!(s.recall(a, conv, m1.id, meta()).await.unwrap().is_some());
    assert!(s.recall(a, conv, m1.id, meta()).await.unwrap().is_none(), "recalling twice changes nothing");
    let seen = s.messages(b, conv, Page::After(0), 10, meta()).await.unwrap();
    assert_eq!(seen[0].body, None);
    assert!(seen[0].recalled_at.is_some());
    assert_eq!(seen[1].body.as_deref(), Some("second"));
    // Corrections reference the corrected message and are new messages.
    let mut fix = msg(conv, "3", "second, corrected");
    fix.corrects = Some(seen[1].id);
    let fixed = s.send_message(a, DeviceId::new(), fix, meta()).await.unwrap().message;
    assert_eq!((fixed.seq, fixed.corrects), (3, Some(seen[1].id)));
    let mut bad = msg(conv, "4", "x");
    bad.corrects = Some(seen[1].id);
    assert!(matches!(s.send_message(b, DeviceId::new(), bad, meta()).await, Err(StoreError::Denied(Denial::NotSender))));
    // Receipts.
    assert!(s.receipt(b, conv, ReceiptKind::Read, 2).await.unwrap().is_some());
    assert!(s.receipt(b, conv, ReceiptKind::Read, 1).await.unwrap().is_none(), "watermarks never move back");
    assert!(s.receipt(b, conv, ReceiptKind::Delivered, 9).await.is_err());
    let d = s.conversation(a, conv, meta()).await.unwrap();
    let mb = d.members.iter().find(|m| m.user_id == b.user_id).unwrap();
    assert_eq!((mb.read_seq, mb.delivered_seq), (2, 2));
}

async fn refresh_tokens_rotate_and_reuse_revokes_the_family(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let o = org(s, "acme").await;
    let a = user(s, &o, "a@acme", Role::Clinician).await;
    let tokens = |n: u8| TokenHashes { access: vec![n; 32], access_expires_at: ward_store::now_ms() + 60_000, refresh: vec![n + 100; 32] };
    let new = NewSession {
        user_id: a.user_id,
        device: DeviceClaim { id: None, name: "phone".into(), platform: "ios".into() },
        tokens: tokens(1),
        expires_at: ward_store::now_ms() + 3_600_000,
        restriction: None,
        mfa_verified: false,
    };
    let (session, device) = s.login(o.id, "a@acme".into(), new, meta()).await.unwrap();
    assert!(s.session_by_access(vec![1; 32]).await.unwrap().is_some());
    let r = s.refresh(vec![101; 32], device, tokens(2), meta()).await.unwrap();
    assert!(matches!(r, RefreshOutcome::Rotated { session_id, .. } if session_id == session));
    assert!(s.session_by_access(vec![1; 32]).await.unwrap().is_none(), "the old access token stops working");
    // Another device presenting the live token: theft; the family dies.
    let r = s.refresh(vec![102; 32], DeviceId::new(), tokens(3), meta()).await.unwrap();
    assert!(matches!(r, RefreshOutcome::Reused { .. }));
    assert!(s.session_by_access(vec![2; 32]).await.unwrap().unwrap().revoked);
    // Reusing an already used token is rejected too.
    let r = s.refresh(vec![101; 32], device, tokens(4), meta()).await.unwrap();
    assert!(matches!(r, RefreshOutcome::Reused { .. } | RefreshOutcome::Rejected));
    assert!(!s.session_alive(session).await.unwrap());
    let audit = s.audit_events(0, 10_000).await.unwrap();
    assert!(audit.iter().any(|e| e.action == "auth.refresh_reuse"));
}

async fn stream_positions_and_replay(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let o = org(s, "acme").await;
    let a = user(s, &o, "a@acme", Role::Clinician).await;
    let b = user(s, &o, "b@acme", Role::Nurse).await;
    let c = user(s, &o, "c@acme", Role::Nurse).await;
    let conv = group(s, a, &[b]).await;
    for i in 0..5 {
        s.send_message(a, DeviceId::new(), msg(conv, &i.to_string(), "hello"), meta()).await.unwrap();
    }
    let session = ward_domain::ids::SessionId::new();
    // A session created now starts after existing history.
    let later = ward_store::now_ms() + 1;
    let p = s.stream_positions(session, b.user_id, later).await.unwrap();
    assert_eq!((p[0].position, p[0].last_event_seq), (7, 7));
    // A newcomer never reads events from before they joined.
    s.add_member(a, conv, c.user_id, ward_domain::conversation::MemberRole::Member, None, meta()).await.unwrap();
    let seen = s.events_after(c.user_id, conv, 0, 100).await.unwrap();
    assert_eq!(seen.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![8]);
    // Acknowledged positions win over the default and only move forward.
    let new = NewSession {
        user_id: b.user_id,
        device: DeviceClaim { id: None, name: "phone".into(), platform: "ios".into() },
        tokens: TokenHashes { access: vec![9; 32], access_expires_at: ward_store::now_ms() + 60_000, refresh: vec![19; 32] },
        expires_at: ward_store::now_ms() + 3_600_000,
        restriction: None,
        mfa_verified: false,
    };
    let (real, _) = s.login(o.id, "b@acme".into(), new, meta()).await.unwrap();
    s.ack(real, vec![(conv, 3)]).await.unwrap();
    s.ack(real, vec![(conv, 2)]).await.unwrap();
    let p = s.stream_positions(real, b.user_id, 0).await.unwrap();
    assert_eq!((p[0].position, p[0].last_event_seq), (3, 8));
}

async fn audit_tree_nodes_and_checkpoints(backend: Backend) {
    use ward_audit::{Frontier, tree};
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let o = org(s, "acme").await;
    for i in 0..6 {
        user(s, &o, &format!("u{i}@acme"), Role::Clinician).await;
    }
    let size = s.audit_size().await.unwrap();
    assert_eq!(size, 7);

    // Leaf hashes are those of the rows' canonical encoding, in index order, from any offset.
    let rows = s.audit_events(0, 100).await.unwrap();
    let leaves = s.audit_leaf_hashes(0, 100).await.unwrap();
    assert_eq!(leaves, rows.iter().map(|r| r.leaf().leaf_hash()).collect::<Vec<_>>());
    assert_eq!(s.audit_leaf_hashes(3, 2).await.unwrap(), leaves[3..5].to_vec());

    // Integrate in two steps, the second restoring the frontier from stored nodes.
    assert_eq!(s.tree_size().await.unwrap(), 0);
    let mut f = Frontier::new();
    let mut nodes = Vec::new();
    for l in &leaves[..5] {
        f.append(*l, |id, h| nodes.push((id, *h)));
    }
    s.store_tree_nodes(nodes.clone()).await.unwrap();
    s.store_tree_nodes(nodes).await.unwrap(); // idempotent
    assert_eq!(s.tree_size().await.unwrap(), 5);
    let plan = tree::root_plan(5);
    let mut f = Frontier::restore(5, s.tree_node_hashes(plan.nodes()).await.unwrap()).unwrap();
    let mut nodes = Vec::new();
    for l in &leaves[5..] {
        f.append(*l, |id, h| nodes.push((id, *h)));
    }
    s.store_tree_nodes(nodes).await.unwrap();
    assert_eq!(s.tree_size().await.unwrap(), 7);
    let root = tree::root(&leaves);
    assert_eq!(f.root(), root);
    let stored_root = tree::root_of(7, |ids| s_block(s.tree_node_hashes(ids)).map_err(anyhow::Error::from)).unwrap();
    assert_eq!(stored_root, root);
    let missing = [ward_audit::NodeId::new(0, 7)];
    assert!(matches!(s.tree_node_hashes(&missing).await, Err(StoreError::NotFound)));
    // More nodes than one query fetches, out of order and repeated: answered in the order asked.
    let mem = ward_audit::MemoryTree::from_leaf_hashes(leaves.iter().copied());
    let widths = [7u64, 3, 1];
    let many: Vec<ward_audit::NodeId> =
        (0..40u64).map(|k| ward_audit::NodeId::new((k % 3) as u8, (k * 5) % widths[(k % 3) as usize])).collect();
    assert_eq!(s.tree_node_hashes(&many).await.unwrap(), mem.nodes(&many).unwrap());
    let mut with_missing = many.clone();
    with_missing.insert(20, ward_audit::NodeId::new(1, 3));
    assert!(matches!(s.tree_node_hashes(&with_missing).await, Err(StoreError::NotFound)));

    // Checkpoints: one per size, newest wins, append-only.
    assert!(s.latest_checkpoint().await.unwrap().is_none());
    s.insert_checkpoint(5, leaves[0], "five\n".into()).await.unwrap();
    s.insert_checkpoint(7, root, "seven\n".into()).await.unwrap();
    assert!(matches!(s.insert_checkpoint(7, root, "again\n".into()).await, Err(StoreError::Conflict(_))));
    let latest = s.latest_checkpoint().await.unwrap().unwrap();
    assert_eq!((latest.tree_size, latest.root().unwrap(), latest.note.as_str()), (7, root, "seven\n"));
    assert_eq!(s.checkpoint(5).await.unwrap().unwrap().note, "five\n");
    assert!(s.checkpoint(6).await.unwrap().is_none());
    assert_eq!(s.checkpoints(0, 10).await.unwrap().iter().map(|c| c.tree_size).collect::<Vec<_>>(), vec![5, 7]);
    assert!(s.test_execute("UPDATE audit_checkpoints SET note = 'x'".into()).await.is_err());
    assert!(s.test_execute("DELETE FROM audit_tree_nodes".into()).await.is_err());
}

/// Retention: a recorded archive segment is the only way rows leave `audit_events`, segments
/// are contiguous and covered by a checkpoint, and indexes continue after archived ones.
async fn audit_archives_delete_only_archived_entries(backend: Backend) {
    use ward_audit::{Frontier, tree};
    use ward_domain::audit::{AuditEvent, Outcome};
    use ward_store::AuditArchive;
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let o = org(s, "acme").await;
    // Six events of six users: they land in the per-user index too.
    for _ in 0..6 {
        let mut ev = AuditEvent::new(AuditAction::PatientRead, Outcome::Success);
        ev.org_id = Some(o.id);
        ev.actor = Some(ward_domain::ids::UserId(uuid::Uuid::now_v7()));
        s.record(ev, meta()).await.unwrap();
    }
    let leaves = s.audit_leaf_hashes(0, 100).await.unwrap();
    let mut f = Frontier::new();
    let mut nodes = Vec::new();
    for l in &leaves {
        f.append(*l, |id, h| nodes.push((id, *h)));
    }
    s.store_tree_nodes(nodes).await.unwrap();
    s.insert_checkpoint(5, tree::root(&leaves[..5]), "five\n".into()).await.unwrap();

    // Nothing is deletable before an archive is recorded.
    assert!(s.test_execute("DELETE FROM audit_events WHERE idx = 0".into()).await.is_err());
    assert_eq!(s.audit_archived_end().await.unwrap(), 0);
    assert_eq!(s.audit_base().await.unwrap(), (0, vec![]));
    // The expired run: everything before the horizon, capped; nothing when the horizon is old.
    assert_eq!(s.audit_expired_end(0, i64::MAX, 5).await.unwrap(), 5);
    assert_eq!(s.audit_expired_end(2, i64::MAX, 100).await.unwrap(), 7);
    assert_eq!(s.audit_expired_end(0, 0, 5).await.unwrap(), 0);

    let archive = |start: i64, end: i64, tree_size: i64| AuditArchive {
        start_idx: start,
        end_idx: end,
        tree_size,
        file_name: format!("segment-{start}-{end}.ndjson"),
        file_sha256: "00".repeat(32),
        created_at: 0,
    };
    let event = || AuditEvent::new(AuditAction::AuditArchive, Outcome::Success);
    // Refused: not starting at 0, beyond the checkpoint, or against a size never checkpointed.
    for bad in [archive(1, 3, 5), archive(0, 6, 5), archive(0, 3, 6), archive(0, 0, 5)] {
        assert!(matches!(s.record_audit_archive(bad, event(), meta()).await, Err(StoreError::State(_))));
    }
    assert_eq!(s.audit_events(0, 100).await.unwrap().len(), 7, "refused archives delete nothing");

    // Recorded: the rows go, with the archiving event in the same transaction, and so do
    // their entries in the per-user index (a no-op UPDATE counts them).
    let indexed_below = || s.test_execute("UPDATE audit_actor_index SET idx = idx WHERE idx < 3".into());
    assert_eq!(indexed_below().await.unwrap(), 2, "events 1 and 2 have an acting user");
    let idx = s.record_audit_archive(archive(0, 3, 5), event(), meta()).await.unwrap();
    assert_eq!(indexed_below().await.unwrap(), 0);
    assert_eq!(idx, 7);
    let live = s.audit_events(0, 100).await.unwrap();
    assert_eq!(live.iter().map(|e| e.idx).collect::<Vec<_>>(), (3..8).collect::<Vec<i64>>());
    assert_eq!(live.last().unwrap().action, "audit.archive");
    assert_eq!(s.audit_archived_end().await.unwrap(), 3);
    let base = s.audit_base().await.unwrap();
    assert_eq!(base, (3, s.tree_node_hashes(tree::root_plan(3).nodes()).await.unwrap()));
    assert_eq!(Frontier::restore(3, base.1).unwrap().root(), tree::root(&leaves[..3]));
    let recorded = s.audit_archives().await.unwrap();
    assert_eq!(recorded.len(), 1);
    assert_eq!((recorded[0].start_idx, recorded[0].end_idx, recorded[0].tree_size), (0, 3, 5));
    assert!(recorded[0].created_at > 0);
    // Tree nodes of archived entries stay (proofs keep working).
    assert_eq!(s.integrated_leaf_hashes(0, 3).await.unwrap().len(), 3);
    // The same segment again, or an overlapping one, is refused.
    assert!(s.record_audit_archive(archive(0, 3, 5), event(), meta()).await.is_err());
    assert!(s.record_audit_archive(archive(2, 4, 5), event(), meta()).await.is_err());

    // The trigger itself: DELETE only inside a recorded segment; UPDATE never.
    s.test_execute(
        "INSERT INTO audit_archives (start_idx, end_idx, tree_size, file_name, file_sha256, created_at) VALUES (3, 4, 5, 'x', 'y', 1)"
            .into(),
    )
    .await
    .unwrap();
    assert!(s.test_execute("DELETE FROM audit_events WHERE idx = 4".into()).await.is_err());
    assert!(s.test_execute("DELETE FROM audit_events".into()).await.is_err());
    assert_eq!(s.test_execute("DELETE FROM audit_events WHERE idx = 3".into()).await.unwrap(), 1);
    assert!(s.test_execute("UPDATE audit_events SET outcome = 'failure' WHERE idx = 5".into()).await.is_err());
    assert!(s.test_execute("UPDATE audit_archives SET end_idx = 7".into()).await.is_err());
    assert!(s.test_execute("DELETE FROM audit_archives".into()).await.is_err());

    s.insert_checkpoint(8, tree::root(&leaves[..5]), "eight\n".into()).await.unwrap();
    s.test_execute(
        "INSERT INTO audit_archives (start_idx, end_idx, tree_size, file_name, file_sha256, created_at) VALUES (4, 5, 5, 'x', 'y', 1)"
            .into(),
    )
    .await
    .unwrap();
    s.test_execute("DELETE FROM audit_events WHERE idx = 4".into()).await.unwrap();
    // Every live row archived: the next index still follows the archived ones.
    s.record_audit_archive(archive(5, 8, 8), event(), meta()).await.unwrap();
    assert_eq!(s.audit_events(0, 100).await.unwrap().iter().map(|e| e.idx).collect::<Vec<_>>(), vec![8]);
    s.test_execute(
        "INSERT INTO audit_archives (start_idx, end_idx, tree_size, file_name, file_sha256, created_at) VALUES (8, 9, 9, 'x', 'y', 1)"
            .into(),
    )
    .await
    .expect_err("no checkpoint at 9");
    s.insert_checkpoint(9, tree::root(&leaves[..5]), "nine\n".into()).await.unwrap();
    s.record_audit_archive(archive(8, 9, 9), event(), meta()).await.unwrap();
    assert_eq!(s.audit_events(0, 100).await.unwrap().iter().map(|e| e.idx).collect::<Vec<_>>(), vec![9]);
    assert!(matches!(s.record_audit_archive(archive(9, 10, 9), event(), meta()).await, Err(StoreError::State(_))));
    s.insert_checkpoint(10, tree::root(&leaves[..5]), "ten\n".into()).await.unwrap();
    s.test_execute(
        "INSERT INTO audit_archives (start_idx, end_idx, tree_size, file_name, file_sha256, created_at) VALUES (9, 10, 10, 'x', 'y', 1)"
            .into(),
    )
    .await
    .unwrap();
    s.test_execute("DELETE FROM audit_events WHERE idx = 9".into()).await.unwrap();
    assert!(s.audit_events(0, 100).await.unwrap().is_empty());
    assert_eq!(s.audit_size().await.unwrap(), 10);
    assert_eq!(s.record(event(), meta()).await.unwrap(), 10);
    // A segment claiming a row that is not there rolls back whole.
    s.insert_checkpoint(12, tree::root(&leaves[..5]), "twelve\n".into()).await.unwrap();
    assert!(matches!(s.record_audit_archive(archive(10, 12, 12), event(), meta()).await, Err(StoreError::Corrupt(_))));
    assert_eq!(s.audit_events(0, 100).await.unwrap().iter().map(|e| e.idx).collect::<Vec<_>>(), vec![10]);
    assert_eq!(s.audit_archived_end().await.unwrap(), 10);
}

/// Runs a store future to completion from synchronous code inside the multi-threaded runtime.
fn s_block<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}
