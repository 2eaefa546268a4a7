//! Backups on both backends: taken while the store is open and written to, restored into a
//! fresh database and data directory with every message, title, patient and audit entry back;
//! no plaintext in the file; damage, truncation and a wrong key provider fail clearly.

use std::sync::Arc;

use ward_crypto::{KeyProvider, Keyring, MemoryKeyProvider};
use ward_domain::conversation::{ClientTxnId, ConversationKind, MessageText, Priority};
use ward_domain::ids::{ConversationId, DeviceId};
use ward_domain::policy::Actor;
use ward_domain::role::Role;
use ward_store::backup::{BackupError, BackupFiles, RestoreTarget, restore_backup, verify_backup};
use ward_store::on_both_backends;
use ward_store::testing::TestDb;
use ward_store::testing::{meta, user};
use ward_store::{Backend, MemberSpec, NewConversation, NewMessage, Page, Store, StoreOptions};

on_both_backends!(backup_restores_everything_and_hides_content, damaged_or_foreign_backups_fail_clearly);

const BODY_CANARY: &str = "CANARYBODYq7Zx";
const TITLE_CANARY: &str = "CANARYTITLEw3Kp";
const NAME_CANARY: &str = "CANARYNAMEj9Lm";

struct Fixture {
    a: Actor,
    convs: Vec<ConversationId>,
    patient: ward_domain::ids::PatientId,
}

/// An organisation, two users, a patient, two conversations and `n` messages each.
async fn populate(s: &Store, n: usize) -> Fixture {
    let org = s.create_org("acme", "Acme", 900, None, meta()).await.unwrap();
    let a = user(s, &org, "a@acme", Role::Clinician).await;
    let b = user(s, &org, "b@acme", Role::Nurse).await;
    let patient =
        s.create_patient(org.id, a.user_id, "MRN-77".into(), format!("Pat {NAME_CANARY}"), vec![a.user_id], meta()).await.unwrap().id;
    let mut convs = Vec::new();
    for k in 0..2 {
        let spec = NewConversation {
            kind: ConversationKind::Group,
            title: Some(format!("Ward {k} {TITLE_CANARY}")),
            patient_id: None,
            members: vec![MemberSpec { user_id: b.user_id, reason: None }],
            creator_reason: None,
        };
        let conv = s.create_conversation(a, spec, meta()).await.unwrap().id;
        for i in 0..n {
            let m = NewMessage {
                conversation_id: conv,
                client_txn_id: ClientTxnId::parse(format!("t{k}-{i}")).unwrap(),
                body: MessageText::parse(format!("note {i} {BODY_CANARY}")).unwrap(),
                priority: Priority::Routine,
                corrects: None,
                attachments: Vec::new(),
            };
            s.send_message(a, DeviceId::new(), m, meta()).await.unwrap();
        }
        convs.push(conv);
    }
    Fixture { a, convs, patient }
}

fn target_options(db: &TestDb, provider: Arc<dyn KeyProvider>, dir: &std::path::Path) -> (StoreOptions, Option<String>) {
    let keyring = Arc::new(Keyring::new(provider, 64));
    match db.backend {
        Backend::Sqlite => (StoreOptions::new(format!("sqlite://{}", dir.join("ward.db").display()), keyring), None),
        Backend::Postgres => {
            let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
            let mut o = StoreOptions::new(db.url.clone(), keyring);
            o.pg_schema = Some(schema.clone());
            o.read_connections = 2;
            (o, Some(schema))
        }
    }
}

async fn drop_schema(url: &str, schema: Option<String>) {
    let Some(schema) = schema else { return };
    if let Ok(mut c) = <sqlx::PgConnection as sqlx::Connection>::connect(url).await {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))).execute(&mut c).await;
    }
}

fn source_files(db: &TestDb) -> BackupFiles {
    let data = db.dir.path().join("data");
    std::fs::create_dir_all(data.join("audit/archive")).unwrap();
    std::fs::create_dir_all(data.join("attachments/ab")).unwrap();
    std::fs::create_dir_all(data.join("keys")).unwrap();
    std::fs::write(data.join("audit/checkpoints.log"), b"checkpoint line\n").unwrap();
    std::fs::write(data.join("audit/archive/seg-1.ndjson"), b"segment\n").unwrap();
    std::fs::write(data.join("attachments/ab/obj"), vec![7u8; 200_000]).unwrap();
    std::fs::write(data.join("keys/kek.json"), b"KEK-MUST-NOT-LEAVE").unwrap();
    BackupFiles { data_dir: data, dirs: vec!["audit".into(), "attachments".into()] }
}

async fn take_backup(db: &TestDb, files: &BackupFiles) -> Vec<u8> {
    let mut out = Vec::new();
    db.store.write_backup(&mut out, files, db.dir.path(), &|_| {}).await.unwrap();
    out
}

async fn backup_restores_everything_and_hides_content(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let fx = populate(s, 40).await;
    let files = source_files(&db);

    // Writers keep going while the backup runs: the snapshot is consistent either way.
    let writer = {
        let s = s.clone();
        let (a, conv) = (fx.a, fx.convs[0]);
        tokio::spawn(async move {
            for i in 0..30 {
                let m = NewMessage {
                    conversation_id: conv,
                    client_txn_id: ClientTxnId::parse(format!("late-{i}")).unwrap(),
                    body: MessageText::parse(format!("late {i} {BODY_CANARY}")).unwrap(),
                    priority: Priority::Routine,
                    corrects: None,
                    attachments: Vec::new(),
                };
                s.send_message(a, DeviceId::new(), m, meta()).await.unwrap();
            }
        })
    };
    let bytes = take_backup(&db, &files).await;
    writer.await.unwrap();

    // No plaintext in the file: neither content nor the KEK.
    for canary in [BODY_CANARY, TITLE_CANARY, NAME_CANARY, "KEK-MUST-NOT-LEAVE", "checkpoint line"] {
        assert!(!bytes.windows(canary.len()).any(|w| w == canary.as_bytes()), "{canary} appears in the backup");
    }

    let provider = s.keyring().provider().clone();
    let verified = verify_backup(bytes.as_slice(), provider.as_ref(), None).await.unwrap();
    assert_eq!(verified.files, 3, "audit and attachment files, never keys/");
    let backed_up_messages = verified.rows("messages");
    assert!((80..=110).contains(&backed_up_messages), "messages in the snapshot: {backed_up_messages}");

    let target = tempfile::tempdir().unwrap();
    let data_dir = target.path().join("data");
    let (options, schema) = target_options(&db, provider.clone(), target.path());
    let (restored, summary) = restore_backup(bytes.as_slice(), RestoreTarget { options, data_dir: data_dir.clone() }, None).await.unwrap();
    assert_eq!(summary.header.backup_id, verified.header.backup_id);
    assert_eq!(summary.rows("messages"), backed_up_messages);

    // Files come back byte for byte; the key file does not.
    assert_eq!(std::fs::read(data_dir.join("audit/checkpoints.log")).unwrap(), b"checkpoint line\n");
    assert_eq!(std::fs::read(data_dir.join("audit/archive/seg-1.ndjson")).unwrap(), b"segment\n");
    assert_eq!(std::fs::read(data_dir.join("attachments/ab/obj")).unwrap(), vec![7u8; 200_000]);
    assert!(!data_dir.join("keys").exists());

    // The audit log up to the snapshot is back, entry for entry.
    let restored_audit = restored.audit_events(0, 100_000).await.unwrap();
    let source_audit = s.audit_events(0, restored_audit.len() as i64).await.unwrap();
    assert_eq!(restored_audit, source_audit);
    assert_eq!(restored_audit.len() as u64, summary.rows("audit_events"));

    // Every message body and title reads back the same (unsealed with the same provider).
    for conv in &fx.convs {
        // Messages were sent during the backup: the source may be ahead of the snapshot.
        let got = restored.conversation(fx.a, *conv, meta()).await.unwrap();
        let want = s.conversation(fx.a, *conv, meta()).await.unwrap();
        assert_eq!(got.summary.title, want.summary.title);
        assert!(got.summary.title.as_deref().is_some_and(|t| t.contains(TITLE_CANARY)));
        let ids = |d: &ward_store::ConversationDetail| d.members.iter().map(|m| m.user_id).collect::<Vec<_>>();
        assert_eq!(ids(&got), ids(&want));
        let got = restored.messages(fx.a, *conv, Page::After(0), 1000, meta()).await.unwrap();
        let want = s.messages(fx.a, *conv, Page::After(0), 1000, meta()).await.unwrap();
        assert_eq!(got.as_slice(), &want[..got.len()]);
        assert!(got.iter().all(|m| m.body.as_deref().is_some_and(|b| b.contains(BODY_CANARY))));
    }
    let total: usize = {
        let mut n = 0;
        for conv in &fx.convs {
            n += restored.messages(fx.a, *conv, Page::After(0), 1000, meta()).await.unwrap().len();
        }
        n
    };
    assert_eq!(total as u64, backed_up_messages);
    let p = restored.read_patient(fx.a.org_id, fx.a.user_id, fx.patient, meta()).await.unwrap();
    assert_eq!(p.display_name, format!("Pat {NAME_CANARY}"));
    assert_eq!(p.mrn, "MRN-77");

    // The restored store takes new writes.
    let m = NewMessage {
        conversation_id: fx.convs[1],
        client_txn_id: ClientTxnId::parse("after-restore".into()).unwrap(),
        body: MessageText::parse("after".into()).unwrap(),
        priority: Priority::Routine,
        corrects: None,
        attachments: Vec::new(),
    };
    restored.send_message(fx.a, DeviceId::new(), m, meta()).await.unwrap();

    // A second restore into the same, now non-empty, target is refused.
    let (options, _) = match db.backend {
        Backend::Sqlite => target_options(&db, provider.clone(), target.path()),
        Backend::Postgres => {
            let mut o = StoreOptions::new(db.url.clone(), Arc::new(Keyring::new(provider.clone(), 8)));
            o.pg_schema = schema.clone();
            (o, None)
        }
    };
    let again = restore_backup(bytes.as_slice(), RestoreTarget { options, data_dir: target.path().join("other") }, None).await;
    assert!(matches!(again, Err(BackupError::Target(_))), "{:?}", again.err());
    let (options, _) = target_options(&db, provider.clone(), &target.path().join("x"));
    let again = restore_backup(bytes.as_slice(), RestoreTarget { options, data_dir: data_dir.clone() }, None).await;
    assert!(matches!(again, Err(BackupError::Target(_))), "{:?}", again.err());
    drop(restored);
    drop_schema(&db.url, schema).await;
}

async fn damaged_or_foreign_backups_fail_clearly(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    populate(s, 5).await;
    let files = source_files(&db);
    let bytes = take_backup(&db, &files).await;
    let provider = s.keyring().provider().clone();
    verify_backup(bytes.as_slice(), provider.as_ref(), None).await.unwrap();

    // A flipped byte anywhere in the sealed stream, or in the header.
    for at in [bytes.len() / 2, bytes.len() - 3, 40] {
        let mut bad = bytes.clone();
        bad[at] ^= 0x01;
        let e = verify_backup(bad.as_slice(), provider.as_ref(), None).await.unwrap_err();
        assert!(matches!(e, BackupError::Damaged(_) | BackupError::NotABackup(_) | BackupError::Key { .. }), "flip at {at}: {e:?}");
    }
    let mut bad = bytes.clone();
    bad[bytes.len() / 2] ^= 0x80;
    let e = verify_backup(bad.as_slice(), provider.as_ref(), None).await.unwrap_err();
    assert!(matches!(e, BackupError::Damaged(_)), "{e:?}");
    assert!(e.to_string().contains("fails authentication"), "{e}");

    // Truncated at a chunk boundary and mid-chunk.
    // (Cuts near the end fall in the last chunk, which may hold nothing but the archive's
    // end marker: it must be opened and checked all the same.)
    let cuts = [1, 17, 100, 511, 513, 1030, 70_000, bytes.len() * 2 / 3];
    for keep in cuts.iter().map(|c| bytes.len() - c) {
        let e = verify_backup(&bytes[..keep], provider.as_ref(), None).await.unwrap_err();
        assert!(matches!(e, BackupError::Damaged(_)), "truncated to {keep}: {e:?}");
    }
    // Not a backup at all.
    let e = verify_backup(&b"hello"[..], provider.as_ref(), None).await.unwrap_err();
    assert!(matches!(e, BackupError::NotABackup(_)), "{e:?}");

    // Another key provider cannot open it, and a failed restore leaves no database behind.
    let other: Arc<dyn KeyProvider> = Arc::new(MemoryKeyProvider::default());
    let e = verify_backup(bytes.as_slice(), other.as_ref(), None).await.err().unwrap();
    assert!(matches!(e, BackupError::Key { .. }), "{e:?}");
    assert!(e.to_string().contains("key provider"), "{e}");
    let target = tempfile::tempdir().unwrap();
    let (options, schema) = target_options(&db, other, target.path());
    let e = restore_backup(bytes.as_slice(), RestoreTarget { options, data_dir: target.path().join("data") }, None).await.err().unwrap();
    assert!(matches!(e, BackupError::Key { .. }), "{e:?}");
    assert!(!target.path().join("ward.db").exists());

    // A damaged backup restores nothing: the database is not committed / not put in place.
    let mut bad = bytes.clone();
    let at = bytes.len() - 3;
    bad[at] ^= 0x01;
    let (options, schema2) = target_options(&db, provider.clone(), target.path());
    let e = restore_backup(bad.as_slice(), RestoreTarget { options, data_dir: target.path().join("data2") }, None).await.err().unwrap();
    assert!(matches!(e, BackupError::Damaged(_)), "{e:?}");
    assert!(!target.path().join("ward.db").exists());
    drop_schema(&db.url, schema).await;
    drop_schema(&db.url, schema2).await;
}
