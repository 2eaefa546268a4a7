//! Test support (feature `test-support`): a fresh database per test on either backend, ways to
//! move a session's clock, and a TCP proxy that cuts or silences PostgreSQL on demand. Never
//! compiled into the server.
//!
//! PostgreSQL tests use `WARD_TEST_PG_URL` (default `postgres://postgres@127.0.0.1:5432/test`)
//! and a schema of their own. With `CI=true` an unreachable server fails the test; elsewhere
//! the test is skipped with a printed reason.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::db::exec;
use crate::{Backend, Store, StoreOptions};

/// The PostgreSQL URL tests use.
pub fn pg_url() -> String {
    std::env::var("WARD_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Whether PostgreSQL tests must run (in CI) rather than skip.
pub fn pg_required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A database of its own for one test; the PostgreSQL schema is dropped afterwards.
pub struct TestDb {
    /// The open store.
    pub store: Store,
    /// The backend.
    pub backend: Backend,
    /// The database URL.
    pub url: String,
    /// The PostgreSQL schema, if any.
    pub schema: Option<String>,
    /// The directory holding the SQLite file (kept alive with the test).
    pub dir: tempfile::TempDir,
    /// The keyring the store opened with, shared by [`TestDb::another_node`].
    keyring: Arc<ward_crypto::Keyring>,
}

impl TestDb {
    /// Opens a fresh database, or `None` (after printing why) when PostgreSQL is unavailable
    /// outside CI.
    pub async fn open(backend: Backend) -> Option<TestDb> {
        let dir = tempfile::tempdir().expect("temporary directory");
        match backend {
            Backend::Sqlite => {
                let url = format!("sqlite://{}", dir.path().join("ward.db").display());
                let keyring = ward_crypto::Keyring::ephemeral();
                let store = Store::open(StoreOptions::new(url.clone(), keyring.clone())).await.expect("open SQLite");
                Some(TestDb { store, backend, url, schema: None, dir, keyring })
            }
            Backend::Postgres => {
                let url = pg_url();
                let reachable = tokio::time::timeout(Duration::from_secs(3), <sqlx::PgConnection as sqlx::Connection>::connect(&url))
                    .await
                    .is_ok_and(|r| r.is_ok());
                if !reachable {
                    assert!(!pg_required(), "PostgreSQL at {url} is required in CI (CI=true) but does not answer");
                    eprintln!("SKIPPED: no PostgreSQL answers at {url} (set WARD_TEST_PG_URL; required when CI=true)");
                    return None;
                }
                let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
                let keyring = ward_crypto::Keyring::ephemeral();
                let mut opts = StoreOptions::new(url.clone(), keyring.clone());
                opts.pg_schema = Some(schema.clone());
                opts.read_connections = 4;
                let store = Store::open(opts).await.expect("open PostgreSQL");
                Some(TestDb { store, backend, url, schema: Some(schema), dir, keyring })
            }
        }
    }

    /// A second Ward node on the same PostgreSQL schema (its own writer and pool, the same
    /// keys), for races between nodes. `None` on SQLite, which has one writer per file.
    pub async fn another_node(&self) -> Option<Store> {
        let schema = self.schema.clone()?;
        let mut opts = StoreOptions::new(self.url.clone(), self.keyring.clone());
        opts.pg_schema = Some(schema);
        opts.read_connections = 2;
        Some(Store::open(opts).await.expect("open a second node"))
    }
}

impl TestDb {
    /// Every byte this test's database holds, for scans that prove what is not stored: on
    /// SQLite every file under the test's directory (database, WAL, shared memory, and
    /// whatever else the test put there), on PostgreSQL every row of every table of the test's
    /// schema as text.
    pub async fn raw_contents(&self) -> Vec<u8> {
        let mut out = files_under(self.dir.path());
        if let Some(schema) = &self.schema {
            let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&self.url).await.expect("connect to PostgreSQL");
            let tables: Vec<String> = sqlx::query_scalar("SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1")
                .bind(schema)
                .fetch_all(&mut c)
                .await
                .expect("list tables");
            for t in tables {
                let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT t::text FROM \"{schema}\".\"{t}\" t")))
                    .fetch_all(&mut c)
                    .await
                    .expect("read a table");
                for r in rows {
                    out.extend_from_slice(r.as_bytes());
                    out.push(b'\n');
                }
            }
        }
        out
    }
}

/// The contents of every file under `dir`, concatenated.
pub fn files_under(dir: &std::path::Path) -> Vec<u8> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.extend(bytes);
        }
    }
    out
}

/// Whether `needle` occurs in `haystack`, as bytes.
pub fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(schema) = self.schema.take() else { return };
        let url = self.url.clone();
        // Drop runs outside async context: use a small runtime on its own thread.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async move {
                if let Ok(mut c) = <sqlx::PgConnection as sqlx::Connection>::connect(&url).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))).execute(&mut c).await;
                }
            });
        })
        .join();
    }
}

impl Store {
    /// Records an anomaly alert of the organisation directly (without the evaluator), with its
    /// audit event: a restricted-patient-style finding about nobody in particular.
    pub async fn test_insert_alert(&self, org: ward_domain::ids::OrgId) -> crate::Alert {
        let finding = ward_domain::alerts::Finding {
            rule: ward_domain::alerts::RuleCode::AuditAccessByNonCompliance,
            org,
            at_ms: crate::now_ms(),
            subject_user: None,
            subject_patient: None,
            count: None,
            threshold: None,
            window_minutes: None,
        };
        self.write(move |mut c| {
            Box::pin(async move { crate::alerts::insert_alert(&mut c, crate::NewAlert { finding, trigger_idx: 0 }).await })
        })
        .await
        .expect("insert alert")
    }

    /// Closes a break-glass grant's window now, as if its time had run out (expiry tests).
    pub async fn test_expire_break_glass(&self, grant: uuid::Uuid) {
        self.write(move |mut c| {
            Box::pin(async move {
                exec!(&mut c, "UPDATE break_glass_grants SET expires_at = $2 WHERE id = $1", grant, crate::now_ms() - 1)?;
                Ok(())
            })
        })
        .await
        .expect("expire grant");
    }

    /// Lets a patient authorization expire now (forwarding tests).
    pub async fn test_expire_authorization(&self, id: uuid::Uuid) {
        self.write(move |mut c| {
            Box::pin(async move {
                exec!(&mut c, "UPDATE patient_authorizations SET expires_at = $2 WHERE id = $1", id, crate::now_ms() - 1)?;
                Ok(())
            })
        })
        .await
        .expect("expire authorization");
    }

    /// Moves a session's last second-factor verification `ms` milliseconds into the past
    /// (step-up tests).
    pub async fn test_age_mfa(&self, session: ward_domain::ids::SessionId, ms: i64) {
        self.write(move |mut c| {
            Box::pin(async move {
                exec!(&mut c, "UPDATE sessions SET mfa_verified_at = mfa_verified_at - $2 WHERE id = $1", session.0, ms)?;
                Ok(())
            })
        })
        .await
        .expect("age mfa");
    }

    /// Moves a SCIM token's expiry and last use `ms` milliseconds into the past (expiry and
    /// last-use tests).
    pub async fn test_age_scim_token(&self, token: uuid::Uuid, ms: i64) {
        self.write(move |mut c| {
            Box::pin(async move {
                exec!(
                    &mut c,
                    "UPDATE scim_tokens SET expires_at = expires_at - $2, last_used_at = last_used_at - $2 WHERE id = $1",
                    token,
                    ms
                )?;
                Ok(())
            })
        })
        .await
        .expect("age scim token");
    }

    /// Moves a session's last activity `ms` milliseconds into the past (idle-timeout tests).
    pub async fn test_age_session(&self, session: ward_domain::ids::SessionId, ms: i64) {
        self.write(move |mut c| {
            Box::pin(async move {
                exec!(&mut c, "UPDATE sessions SET last_active_at = last_active_at - $2 WHERE id = $1", session.0, ms)?;
                Ok(())
            })
        })
        .await
        .expect("age session");
    }

    /// Makes every access token of a session expired (token-expiry tests).
    pub async fn test_expire_access_tokens(&self, session: ward_domain::ids::SessionId) {
        self.write(move |mut c| {
            Box::pin(async move {
                exec!(&mut c, "UPDATE access_tokens SET expires_at = 0 WHERE session_id = $1", session.0)?;
                Ok(())
            })
        })
        .await
        .expect("expire tokens");
    }

    /// The wrapped bytes of one data key version, if it is not destroyed (shredding tests look
    /// for them in the raw database files).
    pub async fn test_wrapped_key(&self, scope: uuid::Uuid, version: u32) -> Option<Vec<u8>> {
        self.read(move |mut c| {
            Box::pin(async move {
                Ok(crate::db::scalar!(
                    fetch_one,
                    &mut c,
                    Option<Vec<u8>>,
                    "SELECT wrapped FROM data_keys WHERE scope_id = $1 AND version = $2",
                    scope,
                    version as i32
                )?)
            })
        })
        .await
        .expect("read data key")
    }

    /// Adds a contact and verifies it through the real code path (a known code, sent and
    /// confirmed): the fixture for tests that need somewhere verified to send to.
    pub async fn test_verified_contact(
        &self,
        org: ward_domain::ids::OrgId,
        actor: ward_domain::ids::UserId,
        owner: crate::ContactOwner,
        kind: ward_domain::contact::ContactKind,
        value: &str,
    ) -> crate::Contact {
        let value = kind.normalize(value).expect("a valid contact value");
        let c = self.add_contact(org, actor, owner, kind, value, meta()).await.expect("add contact");
        self.start_contact_verification(org, actor, owner, c.id, "246810".into(), meta()).await.expect("start verification");
        match self.confirm_contact(org, actor, owner, c.id, "246810".into(), meta()).await.expect("confirm") {
            crate::VerificationResult::Verified(c) => c,
            other => panic!("not verified: {other:?}"),
        }
    }

    /// Runs a raw statement (tests that tamper with stored data to prove detection).
    pub async fn test_execute(&self, sql: String) -> crate::Result<u64> {
        self.write(move |mut c| Box::pin(async move { Ok(exec!(&mut c, sqlx::AssertSqlSafe(sql))?) })).await
    }
}

/// Runs each named `async fn(Backend)` test body once on SQLite and once on PostgreSQL.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(ward_store::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(ward_store::Backend::Postgres).await
            }
        }
    )*};
}

/// Runs each named `async fn(Backend)` test body on SQLite only (for behaviour above the
/// storage layer, which the storage tests already cover on both backends).
#[macro_export]
macro_rules! on_sqlite {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(ward_store::Backend::Sqlite).await
            }
        }
    )*};
}

/// The registration a supervised, MDM-enrolled corporate iPhone sends (`PUT /me/device`).
pub const DEVICE_REGISTRATION: &str = r#"{"platform":"ios","model":"iPhone16,1","os_version":"18.1","app_version":"1.0.0",
    "ownership":"corporate","supervised":true,"mdm_enrolled":true}"#;

/// Signs `actor` in on a new device, with token hashes derived from `n` (distinct per
/// sign-in); returns the session and the device.
pub async fn sign_in(
    store: &Store,
    actor: ward_domain::policy::Actor,
    login: &str,
    n: u8,
) -> (ward_domain::ids::SessionId, ward_domain::ids::DeviceId) {
    let new = crate::NewSession {
        user_id: actor.user_id,
        device: crate::DeviceClaim { id: None, name: "phone".into(), platform: "ios".into() },
        tokens: crate::TokenHashes {
            access: vec![n; 32],
            access_expires_at: crate::now_ms() + 60_000,
            refresh: vec![n.wrapping_add(100); 32],
        },
        expires_at: crate::now_ms() + 3_600_000,
        restriction: None,
        mfa_verified: false,
    };
    store.login(actor.org_id, login.into(), new, meta()).await.expect("sign in")
}

/// [`sign_in`], then registers the device with [`DEVICE_REGISTRATION`] and a wipe secret hash
/// of `n`s.
pub async fn registered_device(store: &Store, actor: ward_domain::policy::Actor, login: &str, n: u8) -> ward_domain::ids::DeviceId {
    let (_, d) = sign_in(store, actor, login, n).await;
    let registration = ward_device::DeviceRegistration::from_json(DEVICE_REGISTRATION).expect("a valid registration");
    store.register_device(actor, d, registration, vec![n; 32], meta()).await.expect("register the device");
    d
}

/// The request metadata tests act with.
pub fn meta() -> crate::RequestMeta {
    crate::RequestMeta { source_ip: Some("127.0.0.1".into()), request_id: Some("test".into()) }
}

/// A new organisation with the slug `slug`.
pub async fn org(store: &Store, slug: &str) -> crate::Org {
    store.create_org(slug, "Test Org", 900, None, meta()).await.expect("create an organisation")
}

/// A new account of `org` with the login name `login` (its display name too) and `role`.
pub async fn user(store: &Store, org: &crate::Org, login: &str, role: ward_domain::role::Role) -> ward_domain::policy::Actor {
    let new = crate::NewUser {
        org_id: org.id,
        login: login.into(),
        display_name: login.into(),
        role,
        password_hash: "$argon2id$placeholder".into(),
        password_must_change: false,
        patient_id: None,
    };
    let u = store.create_user(new, None, meta()).await.expect("create an account");
    ward_domain::policy::Actor { user_id: u.id, org_id: org.id, role }
}

/// A group conversation titled `title`, owned by `owner`, with `members`.
pub async fn group_titled(
    store: &Store,
    owner: ward_domain::policy::Actor,
    members: &[ward_domain::policy::Actor],
    title: &str,
) -> ward_domain::ids::ConversationId {
    let spec = crate::NewConversation {
        kind: ward_domain::conversation::ConversationKind::Group,
        title: Some(title.into()),
        patient_id: None,
        members: members.iter().map(|m| crate::MemberSpec { user_id: m.user_id, reason: None }).collect(),
        creator_reason: None,
    };
    store.create_conversation(owner, spec, meta()).await.expect("create a conversation").id
}

/// A group conversation titled "Ward 4" (see [`group_titled`]).
pub async fn group(
    store: &Store,
    owner: ward_domain::policy::Actor,
    members: &[ward_domain::policy::Actor],
) -> ward_domain::ids::ConversationId {
    group_titled(store, owner, members, "Ward 4").await
}

/// A routine message with text `body` and client transaction id `txn`.
pub fn msg(conv: ward_domain::ids::ConversationId, txn: &str, body: &str) -> crate::NewMessage {
    use ward_domain::conversation::{ClientTxnId, MessageText, Priority};
    crate::NewMessage {
        conversation_id: conv,
        client_txn_id: ClientTxnId::parse(txn.into()).expect("a valid client_txn_id"),
        body: MessageText::parse(body.into()).expect("a valid message text"),
        priority: Priority::Routine,
        corrects: None,
        attachments: Vec::new(),
    }
}

/// Forwards 127.0.0.1:PORT to the database; `cut` resets every open connection and refuses
/// new ones until `restore`; `partition` stops forwarding on every open connection and holds
/// new ones unanswered (never reset) until `restore`.
pub struct CuttableProxy {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    up: Arc<AtomicBool>,
    silent: Arc<AtomicBool>,
    generation: watch::Sender<u64>,
}

impl CuttableProxy {
    /// Starts forwarding to `upstream` (host:port).
    pub async fn start(upstream: String) -> CuttableProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let silent = Arc::new(AtomicBool::new(false));
        let (generation, _) = watch::channel(0u64);
        let (flag, quiet, gen_tx) = (up.clone(), silent.clone(), generation.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else { return };
                if quiet.load(Ordering::SeqCst) {
                    // Held open and never answered until the partition heals; then dropped.
                    let mut healed = gen_tx.subscribe();
                    tokio::spawn(async move {
                        let _ = healed.changed().await;
                        drop(client);
                    });
                    continue;
                }
                if !flag.load(Ordering::SeqCst) {
                    // Refused: closed at once, as a server that is not listening would.
                    let _ = client.set_zero_linger();
                    drop(client);
                    continue;
                }
                let upstream = upstream.clone();
                let mut cut = gen_tx.subscribe();
                let quiet = quiet.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&upstream).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {
                            if quiet.load(Ordering::SeqCst) {
                                // Partitioned: both sides stay open and hear nothing more.
                                let _ = cut.changed().await;
                                return;
                            }
                            // Reset both sides, as a restarting database does.
                            let _ = client.set_zero_linger();
                            let _ = server.shutdown().await;
                        }
                    }
                });
            }
        });
        CuttableProxy { port, up, silent, generation }
    }

    /// A store on `db`'s PostgreSQL schema whose connections all pass through a new proxy.
    pub async fn store_through(db: &TestDb) -> (CuttableProxy, Store) {
        let proxy = CuttableProxy::start(authority(&db.url)).await;
        let (scheme, rest) = db.url.split_once("://").expect("a URL");
        let at = rest.rsplit_once('@').map_or(String::new(), |(u, _)| format!("{u}@"));
        let path = rest.find('/').map_or("", |i| &rest[i..]);
        let mut opts = StoreOptions::new(format!("{scheme}://{at}127.0.0.1:{}{path}", proxy.port), db.store.keyring().clone());
        opts.pg_schema = db.schema.clone();
        opts.migrate = false;
        opts.read_connections = 2;
        let store = Store::open(opts).await.expect("the proxied store opens");
        (proxy, store)
    }

    /// Resets every open connection and refuses new ones, as a restarting database does.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Silence, as a network partition: open connections hear nothing more, new ones are
    /// accepted and never answered; nothing is reset.
    pub fn partition(&self) {
        self.silent.store(true, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Forwards again.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
        self.silent.store(false, Ordering::SeqCst);
        // Held connections end now (their server side is long gone in a real partition).
        self.generation.send_modify(|g| *g += 1);
    }
}

/// host:port of a postgres:// URL.
fn authority(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.split(['/', '?']).next().unwrap_or(rest);
    let host_port = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    if host_port.contains(':') { host_port.to_owned() } else { format!("{host_port}:5432") }
}

/// SQLite's `PRAGMA integrity_check` on `store`'s database: `"ok"` when the file is sound.
/// PostgreSQL has no equivalent; it answers `"ok"`.
pub async fn integrity_check(store: &Store) -> String {
    match &store.inner.read {
        crate::ReadPool::Sqlite(p) => {
            let mut c = p.acquire().await.expect("a read connection");
            let rows: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check").fetch_all(&mut *c).await.expect("integrity_check runs");
            rows.join("; ")
        }
        crate::ReadPool::Pg(_) => "ok".into(),
    }
}
