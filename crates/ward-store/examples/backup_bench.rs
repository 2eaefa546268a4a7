//! Backup, verify and restore times for a large database (the RPO/RTO figures in
//! docs/backup.md).
//!
//! ```text
//! cargo run --release -p ward-store --example backup_bench -- <dir> [messages] [postgres-url]
//! ```
//!
//! Fills a fresh database (SQLite in `<dir>`, or a new schema of the PostgreSQL database) with
//! 100 conversations whose first message is sent through the store, then copies those sealed
//! messages with SQL up to `messages` in all (default 1,000,000), with one `message.send` audit
//! event each, as sending them one by one would have. Then times a backup to `<dir>`, its
//! verification and a restore into a fresh database, and prints the figures.

use std::sync::Arc;
use std::time::Instant;

use ward_crypto::{Keyring, MemoryKeyProvider};
use ward_domain::conversation::{ClientTxnId, ConversationKind, MessageText, Priority};
use ward_domain::ids::DeviceId;
use ward_domain::policy::Actor;
use ward_domain::role::Role;
use ward_store::backup::{BackupFiles, RestoreTarget, restore_backup, verify_backup};
use ward_store::{Backend, MemberSpec, NewConversation, NewMessage, NewUser, RequestMeta, Store, StoreOptions};

const CONVERSATIONS: i64 = 100;

fn meta() -> RequestMeta {
    RequestMeta { source_ip: Some("127.0.0.1".into()), request_id: Some("bench".into()) }
}

fn size_of(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(args.get(1).ok_or_else(|| anyhow::anyhow!("usage: backup_bench <dir> [messages] [postgres-url]"))?);
    let total: i64 = args.get(2).map_or(Ok(1_000_000), |s| s.parse())?;
    let pg = args.get(3).cloned();
    std::fs::create_dir_all(&dir)?;
    let keyring = Arc::new(Keyring::new(Arc::new(MemoryKeyProvider::default()), 1024));
    let (mut options, restore_options) = match &pg {
        None => (
            StoreOptions::new(format!("sqlite://{}", dir.join("source.db").display()), keyring.clone()),
            StoreOptions::new(format!("sqlite://{}", dir.join("restored/ward.db").display()), keyring.clone()),
        ),
        Some(url) => {
            let tag = uuid::Uuid::new_v4().simple().to_string();
            let mut s = StoreOptions::new(url.clone(), keyring.clone());
            s.pg_schema = Some(format!("bench_src_{tag}"));
            let mut r = StoreOptions::new(url.clone(), keyring.clone());
            r.pg_schema = Some(format!("bench_dst_{tag}"));
            (s, r)
        }
    };
    options.read_connections = 2;
    let store = Store::open(options).await?;
    let started = Instant::now();
    fill(&store, total).await?;
    println!("filled {total} messages in {:.1} s", started.elapsed().as_secs_f64());

    let out = dir.join("bench.wardbak");
    let files = BackupFiles { data_dir: dir.join("no-data-dir"), dirs: vec![] };
    let t = Instant::now();
    let file = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&out)?);
    let summary = store.write_backup(file, &files, &dir, &|_| {}).await?;
    let backup_s = t.elapsed().as_secs_f64();
    println!(
        "backup: {:.1} s, {} bytes of database in {} entries, file {} bytes ({} messages, {} audit events)",
        backup_s,
        summary.bytes,
        summary.entries,
        size_of(&out),
        summary.rows("messages"),
        summary.rows("audit_events")
    );

    let t = Instant::now();
    let v =
        verify_backup(std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(&out)?), keyring.provider().as_ref(), None).await?;
    println!("verify: {:.1} s ({} entries)", t.elapsed().as_secs_f64(), v.entries);

    let t = Instant::now();
    let target = RestoreTarget { options: restore_options, data_dir: dir.join("restored") };
    let (_restored, r) = restore_backup(std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(&out)?), target, None).await?;
    println!("restore: {:.1} s ({} messages)", t.elapsed().as_secs_f64(), r.rows("messages"));
    if let Backend::Sqlite = store.backend() {
        println!("source database file: {} bytes", size_of(&dir.join("source.db")));
    }
    Ok(())
}

async fn fill(store: &Store, total: i64) -> anyhow::Result<()> {
    let org = store.create_org("bench", "Bench", 900, None, meta()).await?;
    let mut actors = Vec::new();
    for (login, role) in [("a@bench", Role::Clinician), ("b@bench", Role::Nurse)] {
        let u = store
            .create_user(
                NewUser {
                    org_id: org.id,
                    login: login.into(),
                    display_name: login.into(),
                    role,
                    password_hash: "$argon2id$placeholder".into(),
                    password_must_change: false,
                    patient_id: None,
                },
                None,
                meta(),
            )
            .await?;
        actors.push(Actor { user_id: u.id, org_id: org.id, role });
    }
    let per_conv = total / CONVERSATIONS;
    for k in 0..CONVERSATIONS {
        let spec = NewConversation {
            kind: ConversationKind::Group,
            title: Some(format!("Bench {k}")),
            patient_id: None,
            members: vec![MemberSpec { user_id: actors[1].user_id, reason: None }],
            creator_reason: None,
        };
        let conv = store.create_conversation(actors[0], spec, meta()).await?.id;
        let m = NewMessage {
            conversation_id: conv,
            client_txn_id: ClientTxnId::parse(format!("seed-{k}"))?,
            body: MessageText::parse(
                "Patient in bed 4 needs a review of the evening medication; BP 150/95, asks for the on-call doctor.".into(),
            )?,
            priority: Priority::Routine,
            corrects: None,
            attachments: Vec::new(),
        };
        let sent = store.send_message(actors[0], DeviceId::new(), m, meta()).await?;
        let id = sent.message.id.0;
        let (msgs, audit) = match store.backend() {
            Backend::Sqlite => (
                format!(
                    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {per_conv}) \
                     INSERT INTO messages (id, conversation_id, seq, sender_id, sender_device_id, client_txn_id, priority, body, created_at, body_sealed) \
                     SELECT randomblob(16), m.conversation_id, m.seq + i, m.sender_id, m.sender_device_id, 'bulk-' || i, m.priority, m.body, m.created_at + i, m.body_sealed \
                     FROM n, messages m WHERE m.id = X'{}'",
                    id.simple()
                ),
                format!(
                    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {per_conv}) \
                     INSERT INTO audit_events (idx, occurred_at, org_id, actor_user_id, actor_device_id, action, outcome, target_type, target_id, patient_id, source_ip, request_id, detail) \
                     SELECT (SELECT MAX(idx) FROM audit_events) + i, e.occurred_at + i, e.org_id, e.actor_user_id, e.actor_device_id, e.action, e.outcome, e.target_type, e.target_id, NULL, e.source_ip, e.request_id, e.detail \
                     FROM n, audit_events e WHERE e.idx = (SELECT MAX(idx) FROM audit_events WHERE action = 'message.send')"
                ),
            ),
            Backend::Postgres => (
                format!(
                    "INSERT INTO messages (id, conversation_id, seq, sender_id, sender_device_id, client_txn_id, priority, body, created_at, body_sealed) \
                     SELECT gen_random_uuid(), m.conversation_id, m.seq + i, m.sender_id, m.sender_device_id, 'bulk-' || i, m.priority, m.body, m.created_at + i, m.body_sealed \
                     FROM generate_series(1, {per_conv}) AS i, messages m WHERE m.id = '{id}'"
                ),
                format!(
                    "INSERT INTO audit_events (idx, occurred_at, org_id, actor_user_id, actor_device_id, action, outcome, target_type, target_id, patient_id, source_ip, request_id, detail) \
                     SELECT b.base + i, e.occurred_at + i, e.org_id, e.actor_user_id, e.actor_device_id, e.action, e.outcome, e.target_type, e.target_id, NULL, e.source_ip, e.request_id, e.detail \
                     FROM generate_series(1, {per_conv}) AS i, (SELECT MAX(idx) AS base FROM audit_events) b, audit_events e \
                     WHERE e.idx = (SELECT MAX(idx) FROM audit_events WHERE action = 'message.send')"
                ),
            ),
        };
        store.test_execute(msgs).await?;
        store.test_execute(audit).await?;
    }
    Ok(())
}
