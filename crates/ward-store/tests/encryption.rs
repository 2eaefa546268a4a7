//! Encryption at rest on both SQLite and PostgreSQL: what is stored is ciphertext bound to its
//! row, keys rotate without re-encrypting content, and rows from before encryption get sealed.

use std::sync::Arc;

use ward_crypto::Keyring;
use ward_domain::conversation::{AccessReason, ConversationKind, StatedReason};
use ward_domain::ids::{ConversationId, DeviceId};
use ward_domain::policy::Actor;
use ward_domain::role::Role;
use ward_store::testing::{TestDb, contains_bytes, group_titled, meta, msg, org, user};
use ward_store::{Backend, MemberSpec, NewConversation, Page, ScopeKind, Store, StoreError, StoreOptions, on_both_backends};

on_both_backends!(
    stored_content_is_ciphertext_and_reads_back,
    ciphertext_moved_to_another_row_does_not_open,
    kek_rotation_rewraps_every_key_without_touching_content,
    data_keys_rotate_by_age_and_old_content_stays_readable,
    a_tenant_cannot_claim_another_tenants_key_space,
    rows_from_before_encryption_are_sealed,
);

async fn send(store: &Store, who: Actor, conv: ConversationId, txn: &str, body: &str) -> ward_store::Message {
    store.send_message(who, DeviceId::new(), msg(conv, txn, body), meta()).await.unwrap().message
}

async fn bodies(store: &Store, who: Actor, conv: ConversationId) -> Vec<Option<String>> {
    store.messages(who, conv, Page::After(0), 100, meta()).await.unwrap().into_iter().map(|m| m.body).collect()
}

/// A uuid as an SQL literal of the backend (SQLite stores uuids as 16-byte blobs).
fn uuid_sql(backend: Backend, id: uuid::Uuid) -> String {
    match backend {
        Backend::Sqlite => format!("X'{}'", id.simple()),
        Backend::Postgres => format!("'{id}'::uuid"),
    }
}

async fn raw_database(db: &TestDb) -> Vec<u8> {
    let raw = db.raw_contents().await;
    assert!(raw.len() > 1000, "the scan sees the stored data");
    raw
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    contains_bytes(haystack, needle.as_bytes())
}

async fn stored_content_is_ciphertext_and_reads_back(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let canary = format!("CANARY-{}", uuid::Uuid::new_v4().simple());
    let o = org(s, "acme").await;
    let a = user(s, &o, "a@acme", Role::Clinician).await;
    let b = user(s, &o, "b@acme", Role::Nurse).await;
    let conv = group_titled(s, a, &[b], &format!("title {canary}")).await;
    send(s, a, conv, "1", &format!("body {canary}")).await;
    let mrn = format!("MRN{}", &canary[7..19]);
    let p = s.create_patient(o.id, a.user_id, mrn.clone(), format!("name {canary}"), vec![a.user_id], meta()).await.unwrap();
    // Someone outside the care team joins a patient conversation with a reason whose note
    // names the patient.
    let note = StatedReason::parse(AccessReason::Other, Some(format!("covering for {canary}"))).unwrap();
    let spec = NewConversation {
        kind: ConversationKind::Patient,
        title: None,
        patient_id: Some(p.id),
        members: vec![MemberSpec { user_id: b.user_id, reason: Some(note) }],
        creator_reason: None,
    };
    s.create_conversation(a, spec, meta()).await.unwrap();
    // Everyone entitled reads plaintext.
    assert_eq!(bodies(s, b, conv).await, [Some(format!("body {canary}"))]);
    assert_eq!(s.conversation(b, conv, meta()).await.unwrap().summary.title.as_deref(), Some(format!("title {canary}").as_str()));
    let found = s.find_patient(o.id, a.user_id, mrn.clone(), meta()).await.unwrap();
    assert_eq!((found.id, found.mrn.as_str(), found.display_name.as_str()), (p.id, mrn.as_str(), format!("name {canary}").as_str()));
    // The MRN stays unique through its blind index.
    let dup = s.create_patient(o.id, a.user_id, mrn.clone(), "someone else".into(), vec![], meta()).await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    // The database holds none of it.
    let raw = raw_database(&db).await;
    assert!(!contains(&raw, &canary), "a canary reached the database in plaintext");
    assert!(!contains(&raw, &mrn), "an MRN reached the database in plaintext");
}

async fn ciphertext_moved_to_another_row_does_not_open(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let o = org(s, "acme").await;
    let a = user(s, &o, "a@acme", Role::Clinician).await;
    let b = user(s, &o, "b@acme", Role::Nurse).await;
    let conv = group_titled(s, a, &[b], "Ward 4").await;
    let other = group_titled(s, a, &[b], "Ward 5").await;
    let m1 = send(s, a, conv, "1", "first").await;
    let m2 = send(s, a, conv, "2", "second").await;
    let m3 = send(s, a, other, "3", "third").await;
    // Same conversation and key, another row: the record id in the additional data differs.
    let copy = |from: uuid::Uuid, to: uuid::Uuid| {
        format!(
            "UPDATE messages SET body_sealed = (SELECT body_sealed FROM messages WHERE id = {}) WHERE id = {}",
            uuid_sql(backend, from),
            uuid_sql(backend, to)
        )
    };
    assert_eq!(db.store.test_execute(copy(m1.id.0, m2.id.0)).await.unwrap(), 1);
    let err = s.messages(a, conv, Page::After(0), 10, meta()).await.unwrap_err();
    assert!(matches!(err, StoreError::Crypto(ward_crypto::CryptoError::Decrypt)), "{err:?}");
    // Another conversation: another key and scope.
    assert_eq!(db.store.test_execute(copy(m1.id.0, m3.id.0)).await.unwrap(), 1);
    let err = s.messages(a, other, Page::After(0), 10, meta()).await.unwrap_err();
    assert!(matches!(err, StoreError::Crypto(_)), "{err:?}");
    // A truncated ciphertext in place.
    let cut = match backend {
        Backend::Sqlite => "UPDATE messages SET body_sealed = substr(body_sealed, 1, length(body_sealed) - 1) WHERE id = ",
        Backend::Postgres => "UPDATE messages SET body_sealed = substring(body_sealed from 1 for length(body_sealed) - 1) WHERE id = ",
    };
    assert_eq!(db.store.test_execute(format!("{cut}{}", uuid_sql(backend, m1.id.0))).await.unwrap(), 1);
    assert!(matches!(s.message(a, conv, m1.id, meta()).await, Err(StoreError::Crypto(_))));
}

async fn kek_rotation_rewraps_every_key_without_touching_content(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let o = org(s, "acme").await;
    let a = user(s, &o, "a@acme", Role::Clinician).await;
    let b = user(s, &o, "b@acme", Role::Nurse).await;
    let mut convs = Vec::new();
    for i in 0..7 {
        let c = group_titled(s, a, &[b], &format!("room {i}")).await;
        send(s, a, c, &format!("t{i}"), &format!("hello {i}")).await;
        convs.push(c);
    }
    s.create_patient(o.id, a.user_id, "MRN-1".into(), "P One".into(), vec![], meta()).await.unwrap();
    let sealed_before = raw_database(&db).await.len();
    let provider = s.keyring().provider().clone();
    let old = provider.current_kek().await.unwrap();
    let new = provider.rotate().await.unwrap();
    assert_ne!(old, new);
    let total = s.data_keys_not_under(new.clone()).await.unwrap();
    assert!(total >= 9, "seven conversations, a patient and the organisation's index key: {total}");
    // Small batches walk the whole key space by cursor.
    let (mut cursor, mut rewrapped, mut batches) = (None, 0, 0);
    while let Some(batch) = s.rewrap_batch(new.clone(), cursor, 3).await.unwrap() {
        assert!(batch.scanned <= 3);
        cursor = Some(batch.next);
        rewrapped += batch.rewrapped;
        batches += 1;
    }
    assert_eq!((rewrapped, s.data_keys_not_under(new.clone()).await.unwrap()), (total, 0));
    assert!(batches >= 3);
    assert_eq!(s.data_keys_under(old.clone()).await.unwrap(), 0);
    // The old KEK can go: a store with a cold key cache (nothing unwrapped yet) still reads
    // everything through the new KEK.
    provider.destroy(&old).await.unwrap();
    let mut opts = StoreOptions::new(db.url.clone(), Arc::new(Keyring::new(provider.clone(), 64)));
    opts.pg_schema = db.schema.clone();
    let cold = Store::open(opts).await.unwrap();
    for (i, c) in convs.iter().enumerate() {
        assert_eq!(bodies(&cold, b, *c).await, [Some(format!("hello {i}"))]);
    }
    assert_eq!(cold.find_patient(o.id, a.user_id, "MRN-1".into(), meta()).await.unwrap().display_name, "P One");
    // Content itself was not rewritten: the message table is the same size, and the
    // inventory shows every key under the new KEK.
    assert!(raw_database(&db).await.len() >= sealed_before);
    let inv = cold.data_key_inventory(None, 1000).await.unwrap();
    assert!(inv.iter().all(|k| k.kek_id.as_deref() == Some(new.as_str())));
    assert!(inv.iter().all(|k| k.wrapped_at >= k.created_at));
}

async fn data_keys_rotate_by_age_and_old_content_stays_readable(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let o = org(s, "acme").await;
    let a = user(s, &o, "a@acme", Role::Clinician).await;
    let b = user(s, &o, "b@acme", Role::Nurse).await;
    let conv = group_titled(s, a, &[b], "Ward 4").await;
    send(s, a, conv, "1", "before").await;
    assert_eq!(s.conversation_key(o.id, conv).await.unwrap().version(), 1);
    // The current key turns 91 days old (the default rotation is 90).
    let age = 91 * 86_400_000i64;
    db.store
        .test_execute(format!("UPDATE data_keys SET created_at = created_at - {age} WHERE scope_id = {}", uuid_sql(backend, conv.0)))
        .await
        .unwrap();
    send(s, a, conv, "2", "after").await;
    assert_eq!(s.conversation_key(o.id, conv).await.unwrap().version(), 2);
    assert_eq!(bodies(s, b, conv).await, [Some("before".to_owned()), Some("after".to_owned())]);
    let versions: Vec<i32> =
        s.data_key_inventory(None, 1000).await.unwrap().into_iter().filter(|k| k.scope_id == conv.0).map(|k| k.version).collect();
    assert_eq!(versions, [1, 2]);
    // Each version opens only what was sealed under it.
    assert_eq!(s.conversation_key_version(o.id, conv, 1).await.unwrap().version(), 1);
    assert!(s.conversation_key_version(o.id, conv, 3).await.is_err());
}

async fn a_tenant_cannot_claim_another_tenants_key_space(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let acme = org(s, "acme").await;
    let globex = org(s, "globex").await;
    let a = user(s, &acme, "a@acme", Role::Clinician).await;
    let b = user(s, &acme, "b@acme", Role::Nurse).await;
    let conv = group_titled(s, a, &[b], "Ward 4").await;
    assert!(matches!(s.current_key(globex.id, ScopeKind::Conversation, conv.0).await, Err(StoreError::NotFound)));
    assert!(matches!(s.current_key(globex.id, ScopeKind::Conversation, uuid::Uuid::new_v4()).await, Err(StoreError::NotFound)));
    assert!(s.conversation_key_version(globex.id, conv, 1).await.is_err());
    assert_eq!(s.conversation_key(acme.id, conv).await.unwrap().version(), 1);
}

async fn rows_from_before_encryption_are_sealed(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let o = org(s, "acme").await;
    let a = user(s, &o, "a@acme", Role::Clinician).await;
    let b = user(s, &o, "b@acme", Role::Nurse).await;
    let conv = group_titled(s, a, &[b], "Ward 4").await;
    let m = send(s, a, conv, "1", "sealed already").await;
    // Turn the rows back into what a database from before encryption held.
    db.store
        .test_execute(format!(
            "UPDATE messages SET body = 'legacy body LEGACYCANARY', body_sealed = NULL WHERE id = {}",
            uuid_sql(backend, m.id.0)
        ))
        .await
        .unwrap();
    db.store
        .test_execute(format!(
            "UPDATE conversations SET title = 'legacy title LEGACYCANARY', title_sealed = NULL WHERE id = {}",
            uuid_sql(backend, conv.0)
        ))
        .await
        .unwrap();
    let p = s.create_patient(o.id, a.user_id, "MRN-77".into(), "x".into(), vec![a.user_id], meta()).await.unwrap();
    db.store.test_execute(format!(
        "UPDATE patients SET mrn = 'MRN-77', display_name = 'legacy name LEGACYCANARY', mrn_sealed = NULL, name_sealed = NULL WHERE id = {}",
        uuid_sql(backend, p.id.0)
    ))
    .await
    .unwrap();
    assert!(contains(&raw_database(&db).await, "LEGACYCANARY"));
    let sealed = s.seal_legacy_rows().await.unwrap();
    assert_eq!((sealed.messages, sealed.titles, sealed.reason_notes, sealed.patients), (1, 1, 0, 1));
    assert_eq!(s.seal_legacy_rows().await.unwrap(), ward_store::LegacySealed::default(), "sealing twice changes nothing");
    assert_eq!(bodies(s, b, conv).await, [Some("legacy body LEGACYCANARY".to_owned())]);
    assert_eq!(s.conversation(a, conv, meta()).await.unwrap().summary.title.as_deref(), Some("legacy title LEGACYCANARY"));
    let found = s.find_patient(o.id, a.user_id, "MRN-77".into(), meta()).await.unwrap();
    assert_eq!((found.id, found.display_name.as_str()), (p.id, "legacy name LEGACYCANARY"));
    if backend == Backend::Postgres {
        // PostgreSQL keeps the old row versions until vacuumed; the rows as read hold no plaintext.
        assert!(!contains(&raw_database(&db).await, "LEGACYCANARY"));
    }
}
