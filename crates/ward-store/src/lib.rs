//! Ward's persistence: SQLite (default) or PostgreSQL chosen by the database URL, embedded
//! migrations, and one group-committing writer that records each change with its audit event.

#![forbid(unsafe_code)]

mod access_reviews;
mod alerts;
mod attachments;
mod audit;
mod audit_sinks;
pub mod backup;
mod break_glass;
mod care_team_groups;
mod consents;
mod contacts;
mod conversations;
mod db;
mod delivery;
mod devices;
mod error;
mod escalation;
mod forwarding;
mod inbound;
mod incidents;
mod keys;
mod legacy;
mod lifecycle;
mod messages;
mod model;
mod notices;
mod oidc;
mod orgs;
mod patients;
mod policies;
mod portal;
mod reports;
mod retention;
mod risks;
mod roster;
mod scim;
mod scim_groups;
mod sessions;
mod stream;
#[cfg(feature = "test-support")]
pub mod testing;
mod users;
mod vendors;
mod webauthn;
mod writer;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};
use ward_crypto::Keyring;

pub use access_reviews::{Campaign, Decided, ItemCounts, Membership, ReviewItem};
pub use alerts::{Alert, NewAlert};
pub use attachments::{
    Attachment, AttachmentDraft, MAX_ATTACHMENTS_PER_MESSAGE, NewAttachment, OpenedAttachment, object_key as attachment_object_key,
    stream_context as attachment_stream_context,
};
pub use audit::{AuditQuery, AuditRecord, StoredCheckpoint};
pub use audit_sinks::SinkCursor;
pub use break_glass::{BreakGlassConversation, BreakGlassGrant};
pub use care_team_groups::{MAX_CARE_TEAM_GROUPS, UNKNOWN_GROUP};
pub use consents::{Consent, ConsentEnd};
pub use contacts::{Contact, ContactConflict, ContactMessage, ContactOwner, VerificationResult, VerificationStart, new_verification_code};
pub use conversations::Created;
pub use delivery::{Attempt, ClaimedNotice, ClaimedPush, PushRegistration, PushTarget};
pub use devices::{DeviceRecord, DeviceWipe, NO_WIPE_CHANNEL, PostureRecord, SpotCheck, WipeAck, WipeRequested, WipeSource};
pub use error::{Result, StoreError};
pub use escalation::{ESCALATION_SMS_TEXT, EscalationDelays, EscalationRecord};
pub use forwarding::{ForwardBasis, Forwarded, PatientAuthorization};
pub use inbound::{Inbound, InboundOutcome};
pub use incidents::{Incident, IncidentSource, IncidentStatus, NewIncident, NotificationRecord, PlanBasis, SignedAssessment, plan_for};
pub use keys::{DataKeyInfo, RewrapBatch, ScopeKind, WrappedDataKey};
pub use legacy::LegacySealed;
pub use lifecycle::{
    ExportConversation, ExportMessage, LegalHold, LifecycleStatus, PatientExport, RetentionRun, RunProgress, ShredRecord, ShreddedScope,
};
pub use messages::Page;
pub use model::*;
pub use notices::{NoticeDraft, NoticeOutcome, NoticeTemplate, OutboxEntry, TemplateDraft};
pub use oidc::{HandoffTaken, LogoutOutcome, NewOidcHandoff, OidcLink, OidcProvider, OidcProviderInput, OidcState, StateTaken};
pub use policies::{AcknowledgmentGap, Policy};
pub use portal::PortalRedemption;
pub use reports::{AccessSummary, ActionCount, DisclosurePage, DisclosureRecord, TimeRange};
pub use retention::AuditArchive;
pub use risks::{Risk, TrainingRecord};
pub use roster::{ROSTER_WIPE_REASON, RemediationStep};
pub use scim::{
    Deprovision, DeprovisionCause, DeprovisionRecord, SCIM_WIPE_REASON, ScimClient, ScimGroupRef, ScimToken, ScimTokenCheck, ScimUser,
    ScimUserFields, ScimUserWrite, TOKEN_USE_RESOLUTION_MS, WipeProgress,
};
pub use scim_groups::{NO_SUCH_MEMBER, PRIVILEGED_MEMBER, SECOND_ROLE_GROUP, ScimGroup, ScimGroupFields, ScimGroupMember};
pub use sessions::{Challenge, SecondFactor};
pub use stream::StreamPosition;
pub use vendors::{BaaExpiryNotice, Vendor};
pub use webauthn::{Ceremony, CeremonyPurpose, NewWebAuthnCredential, WebAuthnCredential, WebAuthnFailure, WebAuthnUse};
pub use writer::WriterStats;

use db::Conn;
use writer::{Connector, Writer};

/// Which database engine the store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite: one file in the data directory.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// How to open the store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// `sqlite:///path/to/ward.db` or `postgres://user@host/db`.
    pub url: String,
    /// For PostgreSQL: the schema to work in (created if missing). Tests give each run its own.
    pub pg_schema: Option<String>,
    /// Connections kept for reads.
    pub read_connections: u32,
    /// Apply pending migrations on open.
    pub migrate: bool,
    /// Wraps, unwraps and caches the data keys that seal content.
    pub keyring: Arc<Keyring>,
    /// New content gets a new data key version once its scope's key is this many days old.
    pub data_key_rotation_days: u32,
}

impl StoreOptions {
    /// Options for a URL and keyring with the defaults: 8 read connections, migrate on open,
    /// data keys rotated every 90 days.
    pub fn new(url: impl Into<String>, keyring: Arc<Keyring>) -> Self {
        Self { url: url.into(), pg_schema: None, read_connections: 8, migrate: true, keyring, data_key_rotation_days: 90 }
    }
}

enum ReadPool {
    Sqlite(SqlitePool),
    Pg(PgPool),
}

struct Inner {
    read: ReadPool,
    writer: Writer,
    stats: Arc<WriterStats>,
    keys: Arc<Keyring>,
    data_key_max_age_ms: i64,
    tree_cache: audit::TreeCache,
}

/// The store: a pool for reads and the single writer for changes. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl Store {
    /// Opens (and by default migrates) the database the URL names.
    pub async fn open(options: StoreOptions) -> Result<Store> {
        let url = options.url.as_str();
        let stats = Arc::new(WriterStats::default());
        if url.starts_with("sqlite:") {
            let connect = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // FULL: every commit is fsynced before the writer acknowledges it.
                .synchronous(SqliteSynchronous::Full)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10))
                // Freed pages are zeroed, so a destroyed data key leaves no copy in the file.
                .pragma("secure_delete", "ON")
                // Reads through a memory map rather than read() calls into each connection's
                // small page cache: a proof in a large audit tree touches pages all over the
                // file. Only address space; the pages are the kernel's file cache.
                .pragma("mmap_size", "1073741824");
            let pool = SqlitePoolOptions::new()
                .max_connections(options.read_connections.max(1))
                .acquire_timeout(Duration::from_secs(5))
                .connect_with(connect.clone())
                .await?;
            if options.migrate {
                sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
            }
            // The writer's savepoints keep copies of the pages a job changes (the statement
            // journal) until it is released: in memory rather than a temporary file, whose
            // writes were a tenth of the writer's time under load.
            //
            // A batch of thousands of rows dirties more pages than SQLite's default 2 MB cache
            // holds, and spilling them mid-transaction costs extra WAL writes: 32 MB instead.
            //
            // Checkpoints (copying the WAL back into the database file, with an fsync) run
            // from [`checkpoint_wal`] on a read connection, in parallel with the writer,
            // rather than inside whichever commit crosses SQLite's threshold; the writer
            // keeps its own only as a backstop, should the WAL grow past 40 MB.
            let writer_options =
                connect.pragma("temp_store", "MEMORY").pragma("cache_size", "-32768").pragma("wal_autocheckpoint", "10000");
            let writer = Writer::spawn(Connector::Sqlite(writer_options), stats.clone());
            let store = Store::assemble(ReadPool::Sqlite(pool), writer, stats, &options);
            tokio::spawn(checkpoint_wal(Arc::downgrade(&store.inner)));
            Ok(store)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let mut connect = PgConnectOptions::from_str(url)?;
            if let Some(schema) = &options.pg_schema {
                if !schema.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
                    return Err(StoreError::State("schema names may use only a-z, 0-9 and _"));
                }
                // The name was checked above to be a plain identifier.
                let ddl = sqlx::AssertSqlSafe(format!("CREATE SCHEMA IF NOT EXISTS {schema}"));
                let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect_with(&connect).await?;
                sqlx::query(ddl).execute(&mut admin).await?;
                sqlx::Connection::close(admin).await?;
                connect = connect.options([("search_path", schema.as_str())]);
            }
            let pool = PgPoolOptions::new()
                .max_connections(options.read_connections.max(1))
                // Fail fast with 503 rather than queue requests while the database is away.
                .acquire_timeout(Duration::from_secs(3))
                .connect_with(connect.clone())
                .await?;
            if options.migrate {
                sqlx::migrate!("./migrations/postgres").run(&pool).await?;
            }
            let writer = Writer::spawn(Connector::Pg(connect), stats.clone());
            Ok(Store::assemble(ReadPool::Pg(pool), writer, stats, &options))
        } else {
            Err(StoreError::State("database url must start with sqlite: or postgres:"))
        }
    }

    fn assemble(read: ReadPool, writer: Writer, stats: Arc<WriterStats>, options: &StoreOptions) -> Store {
        let data_key_max_age_ms = i64::from(options.data_key_rotation_days.max(1)) * 86_400_000;
        Store {
            inner: Arc::new(Inner {
                read,
                writer,
                stats,
                keys: options.keyring.clone(),
                data_key_max_age_ms,
                tree_cache: audit::TreeCache::default(),
            }),
        }
    }

    /// The keyring that seals and opens content.
    pub fn keyring(&self) -> &Arc<Keyring> {
        &self.inner.keys
    }

    /// Applies pending migrations; returns how many were applied.
    pub async fn migrate(&self) -> Result<usize> {
        let (migrator, applied) = match &self.inner.read {
            ReadPool::Sqlite(p) => {
                let m = sqlx::migrate!("./migrations/sqlite");
                let before = applied_count_sqlite(p).await;
                m.run(p).await?;
                (m.iter().count(), before)
            }
            ReadPool::Pg(p) => {
                let m = sqlx::migrate!("./migrations/postgres");
                let before = applied_count_pg(p).await;
                m.run(p).await?;
                (m.iter().count(), before)
            }
        };
        Ok(migrator.saturating_sub(applied))
    }

    /// The engine in use.
    pub fn backend(&self) -> Backend {
        match self.inner.read {
            ReadPool::Sqlite(_) => Backend::Sqlite,
            ReadPool::Pg(_) => Backend::Postgres,
        }
    }

    /// Counters of the writer, for metrics.
    pub fn writer_stats(&self) -> &WriterStats {
        &self.inner.stats
    }

    /// Whether the database answers a trivial query.
    pub async fn ping(&self) -> Result<()> {
        self.read(|mut c| Box::pin(async move { db::scalar!(fetch_one, &mut c, i32, "SELECT 1").map(|_| ()).map_err(Into::into) })).await
    }

    /// Runs `f` on a pooled read connection.
    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T>
    where
        F: for<'c> FnOnce(Conn<'c>) -> BoxFuture<'c, Result<T>>,
    {
        match &self.inner.read {
            ReadPool::Sqlite(p) => {
                let mut c = p.acquire().await?;
                f(Conn::Sqlite(&mut c)).await
            }
            ReadPool::Pg(p) => {
                let mut c = p.acquire().await?;
                f(Conn::Pg(&mut c)).await
            }
        }
    }

    /// Runs `f` in the writer's next batch; returns once the batch is durably committed.
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(Conn<'c>) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        self.inner.writer.write(f).await
    }

    /// As [`Store::write`] for a job that may run longer than the writer's PostgreSQL commit
    /// bound (a bulk delete).
    pub(crate) async fn write_long<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(Conn<'c>) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        self.inner.writer.write_long(f).await
    }
}

/// How often [`checkpoint_wal`] runs.
const WAL_CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// Copies committed WAL frames into the SQLite database file from a read connection, so the
/// writer's commits never pay for it. PASSIVE: it never blocks readers or the writer, and
/// does what it can. Ends when the store is dropped.
async fn checkpoint_wal(inner: std::sync::Weak<Inner>) {
    let mut every = tokio::time::interval(WAL_CHECKPOINT_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let pool = match inner.upgrade().as_deref() {
            Some(Inner { read: ReadPool::Sqlite(pool), .. }) => pool.clone(),
            _ => return,
        };
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool).await {
            if pool.is_closed() {
                return;
            }
            tracing::warn!(error = %e, "WAL checkpoint failed; the writer's own checkpoints remain");
        }
    }
}

async fn applied_count_sqlite(p: &SqlitePool) -> usize {
    sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM _sqlx_migrations WHERE success").fetch_one(p).await.map_or(0, |n| n as usize)
}

async fn applied_count_pg(p: &PgPool) -> usize {
    sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM _sqlx_migrations WHERE success").fetch_one(p).await.map_or(0, |n| n as usize)
}

/// The current time in Unix milliseconds, the unit every stored time uses.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
