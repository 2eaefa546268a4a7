//! Attachment records on both backends: content keys and file names sealed under the
//! conversation's data key, membership on every path (refusals audited), messages that refer
//! to attachments, and sealed values that fail to open once moved.

use ward_domain::conversation::{ClientTxnId, MessageText, Priority};
use ward_domain::ids::{AttachmentId, ConversationId, DeviceId};
use ward_domain::role::Role;
use ward_store::testing::TestDb;
use ward_store::testing::{group, meta, user};
use ward_store::{Backend, NewAttachment, NewMessage, StoreError, on_both_backends};

on_both_backends!(attachments_are_sealed_and_opened_only_by_members, messages_refer_to_their_senders_attachments);

fn pdf(name: Option<&str>) -> NewAttachment {
    NewAttachment { content_type: "application/pdf".into(), size: 1234, file_name: name.map(str::to_owned) }
}

async fn attachments_are_sealed_and_opened_only_by_members(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let org = s.create_org("acme", "Acme", 900, None, meta()).await.unwrap();
    let other_org = s.create_org("other", "Other", 900, None, meta()).await.unwrap();
    let (owner, member, outsider) = (
        user(s, &org, "owner", Role::Clinician).await,
        user(s, &org, "member", Role::Clinician).await,
        user(s, &org, "outsider", Role::Clinician).await,
    );
    let foreign = user(s, &other_org, "foreign", Role::Clinician).await;
    let conv = group(s, owner, &[member]).await;
    let conv2 = group(s, owner, &[]).await;

    let draft = s.prepare_attachment(owner, conv, meta()).await.unwrap();
    let key = draft.key().to_vec();
    assert_eq!(key.len(), 32);
    let ctx = draft.stream_context();
    assert_eq!(draft.object_key(), format!("{}/{conv}/{}", org.id, draft.id));
    assert!(!draft.object_key().contains("scan"), "object keys hold ids only");
    let saved = s.save_attachment(owner, draft, pdf(Some("scan of chart.pdf")), meta()).await.unwrap();
    assert_eq!(saved.file_name.as_deref(), Some("scan of chart.pdf"));

    // Every member opens it: the same content key and stream context, the file name.
    let opened = s.open_attachment(member, conv, saved.id, meta()).await.unwrap();
    assert_eq!(opened.key(), key.as_slice());
    assert_eq!(opened.stream_context(), ctx);
    assert_eq!(opened.attachment, saved);
    assert_eq!(opened.object_key, format!("{}/{conv}/{}", org.id, saved.id));
    // Two drafts never share a key.
    let d2 = s.prepare_attachment(member, conv, meta()).await.unwrap();
    assert_ne!(d2.key(), key.as_slice());
    let second = s.save_attachment(member, d2, pdf(None), meta()).await.unwrap();
    assert_eq!(s.open_attachment(owner, conv, second.id, meta()).await.unwrap().attachment.file_name, None);

    // Non-members, other tenants, the wrong conversation and unknown ids: NotFound.
    for who in [outsider, foreign] {
        assert!(matches!(s.prepare_attachment(who, conv, meta()).await, Err(StoreError::NotFound)));
        assert!(matches!(s.open_attachment(who, conv, saved.id, meta()).await, Err(StoreError::NotFound)));
    }
    assert!(matches!(s.open_attachment(owner, conv2, saved.id, meta()).await, Err(StoreError::NotFound)));
    assert!(matches!(s.open_attachment(owner, conv, AttachmentId::new(), meta()).await, Err(StoreError::NotFound)));
    // A member who leaves between the upload and its record keeps nothing.
    let leaver = user(s, &org, "leaver", Role::Clinician).await;
    let conv3 = group(s, leaver, &[owner]).await;
    let d3 = s.prepare_attachment(leaver, conv3, meta()).await.unwrap();
    s.remove_member(leaver, conv3, leaver.user_id, meta()).await.unwrap();
    assert!(matches!(s.save_attachment(leaver, d3, pdf(None), meta()).await, Err(StoreError::NotFound)));

    // Audited: uploads, downloads and refusals; never the file name.
    let events = s.audit_events(0, 10_000).await.unwrap();
    let count = |action: &str, outcome: &str| events.iter().filter(|e| e.action == action && e.outcome == outcome).count();
    assert_eq!(count("attachment.upload", "success"), 2);
    assert_eq!(count("attachment.download", "success"), 2);
    assert_eq!(count("attachment.upload", "denied"), 2);
    assert!(count("attachment.download", "denied") >= 2);
    assert!(events.iter().all(|e| !e.detail.contains("scan of chart")));
    let up = events.iter().find(|e| e.action == "attachment.upload").unwrap();
    assert!(up.detail.contains("application/pdf") && up.detail.contains("1234"), "{}", up.detail);

    // A sealed content key moved into another place fails to open (the seal binds purpose and record).
    s.test_execute("UPDATE attachments SET key_sealed = name_sealed WHERE name_sealed IS NOT NULL".into()).await.unwrap();
    match s.open_attachment(owner, conv, saved.id, meta()).await {
        Err(StoreError::Crypto(_)) => {}
        other => panic!("a moved seal opened: {other:?}"),
    }
    assert!(s.open_attachment(owner, conv, second.id, meta()).await.is_ok());
}

fn msg(conv: ConversationId, txn: &str, attachments: Vec<AttachmentId>) -> NewMessage {
    NewMessage {
        conversation_id: conv,
        client_txn_id: ClientTxnId::parse(txn.into()).unwrap(),
        body: MessageText::parse("see attached".into()).unwrap(),
        priority: Priority::Routine,
        corrects: None,
        attachments,
    }
}

async fn messages_refer_to_their_senders_attachments(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let org = s.create_org("acme", "Acme", 900, None, meta()).await.unwrap();
    let (owner, member) = (user(s, &org, "owner", Role::Clinician).await, user(s, &org, "member", Role::Clinician).await);
    let conv = group(s, owner, &[member]).await;
    let other = group(s, owner, &[member]).await;
    let mut mine = Vec::new();
    for _ in 0..11 {
        let d = s.prepare_attachment(owner, conv, meta()).await.unwrap();
        mine.push(s.save_attachment(owner, d, pdf(None), meta()).await.unwrap().id);
    }
    let d = s.prepare_attachment(member, conv, meta()).await.unwrap();
    let theirs = s.save_attachment(member, d, pdf(None), meta()).await.unwrap().id;
    let dev = DeviceId::new();

    let sent = s.send_message(owner, dev, msg(conv, "t1", vec![mine[1], mine[0]]), meta()).await.unwrap();
    assert!(sent.created);
    assert_eq!(sent.message.attachments, vec![mine[1], mine[0]]);
    let read = s.message(member, conv, sent.message.id, meta()).await.unwrap();
    assert_eq!(read.attachments, vec![mine[1], mine[0]], "order is kept");
    // A retry must carry the same attachments in the same order.
    assert!(!s.send_message(owner, dev, msg(conv, "t1", vec![mine[1], mine[0]]), meta()).await.unwrap().created);
    for changed in [vec![], vec![mine[0], mine[1]], vec![mine[1]]] {
        assert!(matches!(s.send_message(owner, dev, msg(conv, "t1", changed), meta()).await, Err(StoreError::Conflict("client_txn_id"))));
    }
    // Someone else's upload, another conversation's, an unknown id, a repeat, more than ten.
    let refused = [
        (conv, vec![theirs]),
        (other, vec![mine[2]]),
        (conv, vec![AttachmentId::new()]),
        (conv, vec![mine[2], mine[2]]),
        (conv, mine.clone()),
    ];
    for (i, (c, ids)) in refused.into_iter().enumerate() {
        let r = s.send_message(owner, dev, msg(c, &format!("bad{i}"), ids), meta()).await;
        assert!(matches!(r, Err(StoreError::Invalid(_))), "case {i}: {r:?}");
    }
    assert_eq!(s.message_count(conv).await.unwrap(), 1);
    // Exactly ten is fine; the stream replays them too.
    let ten = s.send_message(owner, dev, msg(conv, "t2", mine[..10].to_vec()), meta()).await.unwrap();
    assert_eq!(ten.message.attachments.len(), 10);
    let page = s.messages(member, conv, ward_store::Page::Latest, 10, meta()).await.unwrap();
    assert!(page.iter().any(|m| m.attachments == mine[..10]));
    // A recalled message no longer shows its attachments.
    s.recall(owner, conv, ten.message.id, meta()).await.unwrap();
    assert!(s.message(member, conv, ten.message.id, meta()).await.unwrap().attachments.is_empty());
}
