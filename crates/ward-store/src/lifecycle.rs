//! Data lifecycle: retention policies, legal holds, crypto-shredding of expired conversation
//! content and the shred records the auditor keeps (the planner is in
//! `ward_domain::lifecycle`). Not to be confused with `retention.rs`, which archives the
//! audit log.
//!
//! Shredding a key version: its wrapped key is cleared (`wrapped` NULL, `destroyed_at` set;
//! the row stays as the record), the keyring forgets it, the messages sealed under it become
//! tombstones (`shredded_at` set, sealed body cleared; id, sender, times and seq remain), and a
//! shred record names what went, when and under which period. A title sealed under a
//! destroyed version is sealed again under the live version first, or cleared when the whole
//! conversation expired. Then the freed pages leave the disk: SQLite zeroes them
//! (`secure_delete`) and the WAL is checkpointed with TRUNCATE; PostgreSQL tables are
//! vacuumed. Copies outside the live database (PostgreSQL WAL archives, replicas, file-system
//! snapshots, backups) keep the old bytes, but without the wrapped key they cannot be opened.

use ward_crypto::SealContext;
use ward_domain::audit::{AuditAction, AuditEvent, DetailValue, Outcome};
use ward_domain::conversation::ConversationKind;
use ward_domain::ids::{ConversationId, OrgId, PatientId, UserId};
use ward_domain::lifecycle::{self, ConversationFacts, Decision, HoldReason, HoldSubject, KeyVersionFacts, RetentionDays, RetentionPolicy};
use ward_domain::policy::{self, Actor};

use crate::conversations::title_context;
use crate::db::{Conn, exec, fetch, scalar};
use crate::error::{Result, StoreError};
use crate::keys::{key_version, open_field};
use crate::{RequestMeta, Store, audit, now_ms};

/// A legal hold, active until released.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LegalHold {
    /// Id.
    pub id: uuid::Uuid,
    /// Tenant.
    pub org_id: OrgId,
    /// What kind of record it holds.
    pub subject_kind: HoldSubject,
    /// The user, conversation or patient id.
    pub subject_id: uuid::Uuid,
    /// The matter it serves.
    pub reason: String,
    /// Who placed it.
    pub placed_by: UserId,
    /// When (Unix ms).
    pub placed_at: i64,
    /// Who released it.
    pub released_by: Option<UserId>,
    /// When it was released (Unix ms); `None` while it stands.
    pub released_at: Option<i64>,
}

/// The record of one crypto-shredding.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ShredRecord {
    /// Id.
    pub id: uuid::Uuid,
    /// Tenant.
    pub org_id: OrgId,
    /// `conversation`.
    pub scope_kind: String,
    /// The conversation.
    pub scope_id: uuid::Uuid,
    /// The destroyed key versions.
    pub versions: Vec<u32>,
    /// Messages that became tombstones.
    pub message_count: i64,
    /// Whether every key version of the scope went (the title too).
    pub whole_scope: bool,
    /// The conversation kind whose period applied.
    pub policy_kind: String,
    /// The period in days.
    pub policy_days: i32,
    /// Content older than this (Unix ms) had expired.
    pub horizon_at: i64,
    /// When it was shredded (Unix ms).
    pub shredded_at: i64,
}

/// A conversation some of whose content was shredded in a run: the hook for stores outside
/// the database (attachment objects sealed under the destroyed versions can be deleted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShreddedScope {
    /// Tenant.
    pub org_id: OrgId,
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The destroyed key versions.
    pub versions: Vec<u32>,
    /// Whether the whole conversation expired.
    pub whole: bool,
}

/// What one retention run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionRun {
    /// Conversations with a key old enough to be looked at.
    pub checked: u64,
    /// Conversations with content shredded.
    pub shredded_conversations: u64,
    /// Key versions destroyed.
    pub versions_destroyed: u64,
    /// Messages turned into tombstones.
    pub messages_shredded: u64,
    /// Conversations with expired content kept by a legal hold.
    pub held: u64,
    /// Conversations skipped because they changed while the run looked at them (the next
    /// run takes them).
    pub changed: u64,
    /// Whether freed pages were flushed from the SQLite WAL or vacuumed on PostgreSQL.
    pub compacted: bool,
    /// What was shredded, for stores outside the database.
    pub scopes: Vec<ShreddedScope>,
}

/// Progress of a retention run: conversations done out of total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunProgress {
    /// Conversations looked at so far.
    pub done: u64,
    /// Conversations to look at.
    pub total: u64,
}

/// Counts for `ward retention status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct LifecycleStatus {
    /// Legal holds standing.
    pub active_holds: i64,
    /// Shred records.
    pub shred_records: i64,
    /// Destroyed conversation key versions.
    pub destroyed_versions: i64,
    /// Shredded messages (tombstones).
    pub shredded_messages: i64,
    /// The most recent shredding (Unix ms).
    pub last_shred_at: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct HoldRow {
    id: uuid::Uuid,
    org_id: uuid::Uuid,
    subject_kind: String,
    subject_id: uuid::Uuid,
    reason: String,
    placed_by: uuid::Uuid,
    placed_at: i64,
    released_by: Option<uuid::Uuid>,
    released_at: Option<i64>,
}

impl HoldRow {
    fn into_hold(self) -> Result<LegalHold> {
        Ok(LegalHold {
            id: self.id,
            org_id: OrgId(self.org_id),
            subject_kind: HoldSubject::parse(&self.subject_kind).ok_or(StoreError::Corrupt("legal_holds.subject_kind"))?,
            subject_id: self.subject_id,
            reason: self.reason,
            placed_by: UserId(self.placed_by),
            placed_at: self.placed_at,
            released_by: self.released_by.map(UserId),
            released_at: self.released_at,
        })
    }
}

const HOLD_COLUMNS: &str = "id, org_id, subject_kind, subject_id, reason, placed_by, placed_at, released_by, released_at";

#[derive(sqlx::FromRow)]
struct ShredRow {
    id: uuid::Uuid,
    org_id: uuid::Uuid,
    scope_kind: String,
    scope_id: uuid::Uuid,
    versions: String,
    message_count: i64,
    whole_scope: bool,
    policy_kind: String,
    policy_days: i32,
    horizon_at: i64,
    shredded_at: i64,
}

impl ShredRow {
    fn into_record(self) -> Result<ShredRecord> {
        let versions = self
            .versions
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<u32>().map_err(|_| StoreError::Corrupt("shred_records.versions")))
            .collect::<Result<Vec<_>>>()?;
        Ok(ShredRecord {
            id: self.id,
            org_id: OrgId(self.org_id),
            scope_kind: self.scope_kind,
            scope_id: self.scope_id,
            versions,
            message_count: self.message_count,
            whole_scope: self.whole_scope,
            policy_kind: self.policy_kind,
            policy_days: self.policy_days,
            horizon_at: self.horizon_at,
            shredded_at: self.shredded_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct CandidateRow {
    id: uuid::Uuid,
    org_id: uuid::Uuid,
    kind: String,
}

#[derive(sqlx::FromRow)]
struct VersionRow {
    version: i32,
    created_at: i64,
    destroyed_at: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct SealedGroup {
    head: Vec<u8>,
    n: i64,
    newest: i64,
}

/// The key version named by the first bytes of a sealed field: format byte 0x01, then the
/// version as a big-endian u32.
fn version_of(head: &[u8]) -> Option<u32> {
    match head {
        [1, a, b, c, d, ..] => Some(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => None,
    }
}

/// An organisation's retention policy: stored periods over the defaults.
async fn policy_of(c: &mut Conn<'_>, org: OrgId) -> Result<RetentionPolicy> {
    let rows = fetch!(fetch_all, c, (String, i32), "SELECT kind, days FROM retention_policies WHERE org_id = $1", org.0)?;
    let mut policy = RetentionPolicy::default();
    for (kind, days) in rows {
        let kind = ConversationKind::parse(&kind).ok_or(StoreError::Corrupt("retention_policies.kind"))?;
        let days =
            u32::try_from(days).ok().and_then(|d| RetentionDays::parse(d).ok()).ok_or(StoreError::Corrupt("retention_policies.days"))?;
        policy.set(kind, days);
    }
    Ok(policy)
}

/// Whether an active legal hold covers the conversation.
pub(crate) async fn conversation_held(c: &mut Conn<'_>, conv: uuid::Uuid) -> Result<bool> {
    Ok(scalar!(fetch_optional, c, i32, "SELECT 1 FROM held_conversations WHERE conversation_id = $1 LIMIT 1", conv)?.is_some())
}

/// Everything the planner needs about one conversation, read in one connection.
async fn facts_of(c: &mut Conn<'_>, conv: uuid::Uuid, kind: ConversationKind) -> Result<ConversationFacts> {
    let held = conversation_held(c, conv).await?;
    let versions = fetch!(fetch_all, c, VersionRow, "SELECT version, created_at, destroyed_at FROM data_keys WHERE scope_id = $1", conv)?;
    let groups = fetch!(
        fetch_all,
        c,
        SealedGroup,
        "SELECT substr(body_sealed, 1, 5) AS head, COUNT(*) AS n, MAX(created_at) AS newest FROM messages \
         WHERE conversation_id = $1 AND shredded_at IS NULL AND body_sealed IS NOT NULL GROUP BY substr(body_sealed, 1, 5)",
        conv
    )?;
    let mut out = Vec::with_capacity(versions.len());
    for v in versions {
        let version = u32::try_from(v.version).map_err(|_| StoreError::Corrupt("data_keys.version"))?;
        let (mut messages, mut newest) = (0u64, None::<i64>);
        for g in groups.iter().filter(|g| version_of(&g.head) == Some(version)) {
            messages += g.n as u64;
            newest = Some(newest.map_or(g.newest, |n| n.max(g.newest)));
        }
        out.push(KeyVersionFacts {
            version,
            created_at: v.created_at,
            destroyed: v.destroyed_at.is_some(),
            newest_message_at: newest,
            messages,
        });
    }
    Ok(ConversationFacts { kind, held, versions: out })
}

/// A title sealed again under the live key because its version is about to be destroyed.
struct Reseal {
    old: Vec<u8>,
    new: Vec<u8>,
}

impl Store {
    /// The organisation's retention policy (defaults where none was set).
    pub async fn retention_policy(&self, org: OrgId) -> Result<RetentionPolicy> {
        self.read(move |mut c| Box::pin(async move { policy_of(&mut c, org).await })).await
    }

    /// Sets the organisation's retention periods (compliance officers and admins; audited).
    pub async fn set_retention_policy(&self, actor: Actor, policy: RetentionPolicy, meta: RequestMeta) -> Result<RetentionPolicy> {
        policy::may_manage_retention(&actor)?;
        self.write(move |mut c| {
            Box::pin(async move {
                let now = now_ms();
                for kind in [ConversationKind::Direct, ConversationKind::Group, ConversationKind::Patient] {
                    let days = policy.days_for(kind).get() as i32;
                    exec!(
                        &mut c,
                        "INSERT INTO retention_policies (org_id, kind, days, updated_by, updated_at) VALUES ($1, $2, $3, $4, $5) \
                         ON CONFLICT (org_id, kind) DO UPDATE SET days = excluded.days, updated_by = excluded.updated_by, updated_at = excluded.updated_at",
                        actor.org_id.0,
                        kind.as_str(),
                        days,
                        actor.user_id.0,
                        now
                    )?;
                }
                let mut ev = AuditEvent::new(AuditAction::RetentionPolicy, Outcome::Success)
                    .target("organization", actor.org_id)
                    .detail("direct_days", DetailValue::Int(i64::from(policy.direct.get())))
                    .detail("group_days", DetailValue::Int(i64::from(policy.group.get())))
                    .detail("patient_days", DetailValue::Int(i64::from(policy.patient.get())));
                ev.org_id = Some(actor.org_id);
                ev.actor = Some(actor.user_id);
                audit::append(&mut c, &ev, &meta).await?;
                Ok(policy)
            })
        })
        .await
    }

    /// Places a legal hold on a user, conversation or patient of the actor's organisation
    /// (compliance officers and admins; audited without the reason text).
    pub async fn place_hold(
        &self,
        actor: Actor,
        subject: HoldSubject,
        subject_id: uuid::Uuid,
        reason: HoldReason,
        meta: RequestMeta,
    ) -> Result<LegalHold> {
        policy::may_manage_retention(&actor)?;
        self.write(move |mut c| {
            Box::pin(async move {
                let sql = match subject {
                    HoldSubject::User => "SELECT 1 FROM users WHERE id = $1 AND org_id = $2",
                    HoldSubject::Conversation => "SELECT 1 FROM conversations WHERE id = $1 AND org_id = $2",
                    HoldSubject::Patient => "SELECT 1 FROM patients WHERE id = $1 AND org_id = $2",
                };
                if scalar!(fetch_optional, &mut c, i32, sql, subject_id, actor.org_id.0)?.is_none() {
                    return Err(StoreError::NotFound);
                }
                let hold = LegalHold {
                    id: uuid::Uuid::now_v7(),
                    org_id: actor.org_id,
                    subject_kind: subject,
                    subject_id,
                    reason: reason.as_str().to_owned(),
                    placed_by: actor.user_id,
                    placed_at: now_ms(),
                    released_by: None,
                    released_at: None,
                };
                exec!(
                    &mut c,
                    "INSERT INTO legal_holds (id, org_id, subject_kind, subject_id, reason, placed_by, placed_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    hold.id,
                    hold.org_id.0,
                    subject.as_str(),
                    subject_id,
                    hold.reason.as_str(),
                    actor.user_id.0,
                    hold.placed_at
                )?;
                let mut ev = AuditEvent::new(AuditAction::LegalHoldPlace, Outcome::Success)
                    .target("legal_hold", hold.id)
                    .patient((subject == HoldSubject::Patient).then_some(PatientId(subject_id)))
                    .detail("subject_kind", DetailValue::Code(subject.as_str()))
                    .detail("subject", DetailValue::Id(subject_id));
                ev.org_id = Some(actor.org_id);
                ev.actor = Some(actor.user_id);
                audit::append(&mut c, &ev, &meta).await?;
                Ok(hold)
            })
        })
        .await
    }

    /// Releases a standing hold (compliance officers and admins; audited). Releasing twice is
    /// a state error.
    pub async fn release_hold(&self, actor: Actor, id: uuid::Uuid, meta: RequestMeta) -> Result<LegalHold> {
        policy::may_manage_retention(&actor)?;
        self.write(move |mut c| {
            Box::pin(async move {
                let row = fetch!(
                    fetch_optional,
                    &mut c,
                    HoldRow,
                    sqlx::AssertSqlSafe(format!("SELECT {HOLD_COLUMNS} FROM legal_holds WHERE id = $1 AND org_id = $2")),
                    id,
                    actor.org_id.0
                )?
                .ok_or(StoreError::NotFound)?;
                if row.released_at.is_some() {
                    return Err(StoreError::State("the legal hold is already released"));
                }
                let now = now_ms();
                exec!(
                    &mut c,
                    "UPDATE legal_holds SET released_by = $2, released_at = $3 WHERE id = $1 AND released_at IS NULL",
                    id,
                    actor.user_id.0,
                    now
                )?;
                let mut hold = row.into_hold()?;
                hold.released_by = Some(actor.user_id);
                hold.released_at = Some(now);
                let mut ev = AuditEvent::new(AuditAction::LegalHoldRelease, Outcome::Success)
                    .target("legal_hold", id)
                    .patient((hold.subject_kind == HoldSubject::Patient).then_some(PatientId(hold.subject_id)))
                    .detail("subject_kind", DetailValue::Code(hold.subject_kind.as_str()))
                    .detail("subject", DetailValue::Id(hold.subject_id));
                ev.org_id = Some(actor.org_id);
                ev.actor = Some(actor.user_id);
                audit::append(&mut c, &ev, &meta).await?;
                Ok(hold)
            })
        })
        .await
    }

    /// The organisation's legal holds, newest first; only standing ones if `active_only`.
    pub async fn legal_holds(&self, org: OrgId, active_only: bool) -> Result<Vec<LegalHold>> {
        self.read(move |mut c| {
            Box::pin(async move {
                let filter = if active_only { "AND released_at IS NULL " } else { "" };
                fetch!(
                    fetch_all,
                    &mut c,
                    HoldRow,
                    sqlx::AssertSqlSafe(format!(
                        "SELECT {HOLD_COLUMNS} FROM legal_holds WHERE org_id = $1 {filter}ORDER BY placed_at DESC, id DESC"
                    )),
                    org.0
                )?
                .into_iter()
                .map(HoldRow::into_hold)
                .collect()
            })
        })
        .await
    }

    /// Whether an active legal hold covers the conversation.
    pub async fn is_conversation_held(&self, conv: ConversationId) -> Result<bool> {
        self.read(move |mut c| Box::pin(async move { conversation_held(&mut c, conv.0).await })).await
    }

    /// The organisation's shred records, newest first, at most `limit`.
    pub async fn shred_records(&self, org: OrgId, limit: u32) -> Result<Vec<ShredRecord>> {
        self.read(move |mut c| {
            Box::pin(async move {
                fetch!(
                    fetch_all,
                    &mut c,
                    ShredRow,
                    "SELECT id, org_id, scope_kind, scope_id, versions, message_count, whole_scope, policy_kind, policy_days, horizon_at, shredded_at \
                     FROM shred_records WHERE org_id = $1 ORDER BY shredded_at DESC, id DESC LIMIT $2",
                    org.0,
                    i64::from(limit)
                )?
                .into_iter()
                .map(ShredRow::into_record)
                .collect()
            })
        })
        .await
    }

    /// Counts across every organisation, for `ward retention status`.
    pub async fn lifecycle_status(&self) -> Result<LifecycleStatus> {
        self.read(move |mut c| {
            Box::pin(async move {
                let active_holds = scalar!(fetch_one, &mut c, i64, "SELECT COUNT(*) FROM legal_holds WHERE released_at IS NULL")?;
                let shred_records = scalar!(fetch_one, &mut c, i64, "SELECT COUNT(*) FROM shred_records")?;
                let destroyed_versions = scalar!(
                    fetch_one,
                    &mut c,
                    i64,
                    "SELECT COUNT(*) FROM data_keys WHERE destroyed_at IS NOT NULL AND scope_kind = 'conversation'"
                )?;
                let shredded_messages = scalar!(fetch_one, &mut c, i64, "SELECT COUNT(*) FROM messages WHERE shredded_at IS NOT NULL")?;
                let last_shred_at = scalar!(fetch_one, &mut c, Option<i64>, "SELECT MAX(shredded_at) FROM shred_records")?;
                Ok(LifecycleStatus { active_holds, shred_records, destroyed_versions, shredded_messages, last_shred_at })
            })
        })
        .await
    }

    /// Enforces every organisation's retention policy at `now`: destroys the expired key
    /// versions of conversations no legal hold covers, tombstones their messages and records
    /// each shredding (audited as `retention.shred`). Then compacts the database so the
    /// destroyed keys leave the disk. `progress` hears after each conversation.
    pub async fn enforce_retention(&self, now: i64, mut progress: impl FnMut(RunProgress) + Send) -> Result<RetentionRun> {
        let orgs = self.orgs().await?;
        let mut candidates = Vec::new();
        for org in orgs {
            let policy = self.retention_policy(org.id).await?;
            for kind in [ConversationKind::Direct, ConversationKind::Group, ConversationKind::Patient] {
                let horizon = policy.days_for(kind).horizon(now);
                // A version can have expired only if the key itself is older than the horizon.
                let rows = self
                    .read(move |mut c| {
                        Box::pin(async move {
                            Ok(fetch!(
                                fetch_all,
                                &mut c,
                                CandidateRow,
                                "SELECT DISTINCT c.id, c.org_id, c.kind FROM conversations c JOIN data_keys k ON k.scope_id = c.id \
                                 WHERE c.org_id = $1 AND c.kind = $2 AND k.destroyed_at IS NULL AND k.created_at < $3 ORDER BY c.id",
                                org.id.0,
                                kind.as_str(),
                                horizon
                            )?)
                        })
                    })
                    .await?;
                candidates.extend(rows.into_iter().map(|r| (r, policy)));
            }
        }
        let total = candidates.len() as u64;
        let mut run = RetentionRun { checked: total, ..RetentionRun::default() };
        progress(RunProgress { done: 0, total });
        for (i, (row, policy)) in candidates.into_iter().enumerate() {
            self.shred_one(&mut run, OrgId(row.org_id), ConversationId(row.id), &row.kind, policy, now).await?;
            progress(RunProgress { done: i as u64 + 1, total });
        }
        if run.versions_destroyed > 0 {
            run.compacted = self.compact_after_shred().await?;
        }
        Ok(run)
    }

    async fn shred_one(
        &self,
        run: &mut RetentionRun,
        org: OrgId,
        conv: ConversationId,
        kind: &str,
        policy: RetentionPolicy,
        now: i64,
    ) -> Result<()> {
        let kind = ConversationKind::parse(kind).ok_or(StoreError::Corrupt("conversations.kind"))?;
        let facts = self.read(move |mut c| Box::pin(async move { facts_of(&mut c, conv.0, kind).await })).await?;
        let plan = match lifecycle::plan(&policy, &facts, now) {
            Decision::Keep => return Ok(()),
            Decision::Held(_) => {
                run.held += 1;
                return Ok(());
            }
            Decision::Shred(p) => p,
        };
        // A title sealed under a version about to go is sealed again under the live key,
        // unless the whole conversation expired (then the title goes too).
        let title = self
            .read(move |mut c| {
                Box::pin(async move {
                    Ok(scalar!(fetch_one, &mut c, Option<Vec<u8>>, "SELECT title_sealed FROM conversations WHERE id = $1", conv.0)?)
                })
            })
            .await?;
        let mut reseal = None;
        if let Some(old) = title
            && !plan.whole
            && version_of(&old).is_some_and(|v| plan.versions.contains(&v))
        {
            let ring = self.keyring().clone();
            let ctx = title_context(org, conv);
            let old2 = old.clone();
            let text = self
                .read(move |mut c| {
                    Box::pin(async move {
                        let ctx: SealContext<'_> = ctx;
                        open_field(&mut c, &ring, &ctx, &old2).await
                    })
                })
                .await?;
            let key = self.conversation_key(org, conv).await?;
            if plan.versions.contains(&key.version()) {
                // The planner keeps the newest version alive; if another one appeared, the
                // next run decides again.
                run.changed += 1;
                return Ok(());
            }
            reseal = Some(Reseal { old, new: key.seal(&title_context(org, conv), text.as_bytes()) });
        }
        let ring = self.keyring().clone();
        let expected = plan.clone();
        let done = self
            .write(move |mut c| {
                Box::pin(async move {
                    // Decide again inside the write: a hold placed, a message sent or a key
                    // rotated meanwhile changes the plan, and then nothing happens now.
                    let facts = facts_of(&mut c, conv.0, kind).await?;
                    match lifecycle::plan(&policy, &facts, now) {
                        Decision::Shred(p) if p == expected => {}
                        _ => return Ok(false),
                    }
                    let now_write = now_ms();
                    for v in &expected.versions {
                        exec!(
                            &mut c,
                            "UPDATE data_keys SET wrapped = NULL, kek_id = NULL, destroyed_at = $3 WHERE scope_id = $1 AND version = $2 AND destroyed_at IS NULL",
                            conv.0,
                            *v as i32,
                            now_write
                        )?;
                        exec!(
                            &mut c,
                            "UPDATE messages SET body_sealed = NULL, body = '', shredded_at = $3 \
                             WHERE conversation_id = $1 AND shredded_at IS NULL AND body_sealed IS NOT NULL AND substr(body_sealed, 1, 5) = $2",
                            conv.0,
                            [&[1u8][..], &v.to_be_bytes()[..]].concat(),
                            now_write
                        )?;
                    }
                    if expected.whole {
                        // Rows from before encryption at rest hold plaintext; they go too.
                        exec!(
                            &mut c,
                            "UPDATE messages SET body = '', shredded_at = $2 WHERE conversation_id = $1 AND shredded_at IS NULL AND body_sealed IS NULL AND created_at < $3",
                            conv.0,
                            now_write,
                            expected.horizon
                        )?;
                        exec!(&mut c, "UPDATE conversations SET title_sealed = NULL, title = NULL, shredded_at = $2 WHERE id = $1", conv.0, now_write)?;
                    } else if let Some(r) = &reseal {
                        let n = exec!(
                            &mut c,
                            "UPDATE conversations SET title_sealed = $2 WHERE id = $1 AND title_sealed = $3",
                            conv.0,
                            r.new.as_slice(),
                            r.old.as_slice()
                        )?;
                        if n != 1 {
                            return Err(StoreError::State("the conversation title changed during shredding"));
                        }
                    }
                    let versions = expected.versions.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
                    exec!(
                        &mut c,
                        "INSERT INTO shred_records (id, org_id, scope_kind, scope_id, versions, message_count, whole_scope, policy_kind, policy_days, horizon_at, shredded_at) \
                         VALUES ($1, $2, 'conversation', $3, $4, $5, $6, $7, $8, $9, $10)",
                        uuid::Uuid::now_v7(),
                        org.0,
                        conv.0,
                        versions.as_str(),
                        expected.messages as i64,
                        expected.whole,
                        kind.as_str(),
                        expected.days.get() as i32,
                        expected.horizon,
                        now_write
                    )?;
                    let patient = scalar!(fetch_one, &mut c, Option<uuid::Uuid>, "SELECT patient_id FROM conversations WHERE id = $1", conv.0)?;
                    let mut ev = AuditEvent::new(AuditAction::RetentionShred, Outcome::Success)
                        .target("conversation", conv)
                        .patient(patient.map(PatientId))
                        .detail("kind", DetailValue::Code(kind.as_str()))
                        .detail("days", DetailValue::Int(i64::from(expected.days.get())))
                        .detail("versions", DetailValue::Int(expected.versions.len() as i64))
                        .detail("messages", DetailValue::Int(expected.messages as i64))
                        .detail("whole", DetailValue::Bool(expected.whole));
                    ev.org_id = Some(org);
                    audit::append(&mut c, &ev, &RequestMeta::default()).await?;
                    for v in &expected.versions {
                        ring.forget_version(conv.0, *v);
                    }
                    Ok(true)
                })
            })
            .await?;
        if done {
            for v in &plan.versions {
                self.keyring().forget_version(conv.0, *v);
            }
            run.shredded_conversations += 1;
            run.versions_destroyed += plan.versions.len() as u64;
            run.messages_shredded += plan.messages;
            run.scopes.push(ShreddedScope { org_id: org, conversation_id: conv, versions: plan.versions, whole: plan.whole });
        } else {
            run.changed += 1;
        }
        Ok(())
    }

    /// Moves freed pages off the disk after a shredding: SQLite has zeroed them in the WAL
    /// (`secure_delete`); a TRUNCATE checkpoint copies them into the database file and empties
    /// the WAL. PostgreSQL gets a VACUUM of the touched tables, which lets their pages be
    /// reused (dead tuples stay on disk until overwritten; WAL archives and replicas are out
    /// of reach, which is why the key, not the bytes, is what shredding destroys). Returns
    /// whether it completed.
    pub async fn compact_after_shred(&self) -> Result<bool> {
        self.read(move |mut c| {
            Box::pin(async move {
                if c.is_postgres() {
                    exec!(&mut c, "VACUUM data_keys, messages, conversations")?;
                    Ok(true)
                } else {
                    truncate_wal(&mut c).await
                }
            })
        })
        .await
    }

    /// SQLite: copies the whole WAL into the database file and empties it, so the file's size
    /// is what the data takes (the benchmarks measure that). Returns whether it completed;
    /// always true on PostgreSQL, where there is nothing to do.
    pub async fn checkpoint_wal(&self) -> Result<bool> {
        self.read(move |mut c| Box::pin(async move { if c.is_postgres() { Ok(true) } else { truncate_wal(&mut c).await } })).await
    }

    /// Destroys one conversation key version directly, bypassing the planner (test support
    /// and the trigger tests: the database refuses it under a legal hold).
    #[doc(hidden)]
    pub async fn destroy_key_version_unchecked(&self, conv: ConversationId, version: u32) -> Result<u64> {
        let ring = self.keyring().clone();
        let n = self
            .write(move |mut c| {
                Box::pin(async move {
                    Ok(exec!(
                        &mut c,
                        "UPDATE data_keys SET wrapped = NULL, kek_id = NULL, destroyed_at = $3 WHERE scope_id = $1 AND version = $2",
                        conv.0,
                        version as i32,
                        now_ms()
                    )?)
                })
            })
            .await?;
        ring.forget_version(conv.0, version);
        Ok(n)
    }

    /// Opens one message body sealed under its recorded key version, without the tombstone
    /// rule (test support: after a shredding this must fail with `KeyDestroyed`).
    #[doc(hidden)]
    pub async fn open_sealed_body(
        &self,
        org: OrgId,
        conv: ConversationId,
        id: ward_domain::ids::MessageId,
        sealed: Vec<u8>,
    ) -> Result<String> {
        let ring = self.keyring().clone();
        self.read(move |mut c| {
            Box::pin(async move {
                let v = version_of(&sealed).ok_or(StoreError::Corrupt("sealed field header"))?;
                let key = key_version(&mut c, &ring, org.0, conv.0, v).await?;
                Ok(key.open_string(&crate::messages::body_context(org, conv, id), &sealed)?)
            })
        })
        .await
    }

    /// A message's raw sealed body, if any (test support).
    #[doc(hidden)]
    pub async fn sealed_body(&self, id: ward_domain::ids::MessageId) -> Result<Option<Vec<u8>>> {
        self.read(move |mut c| {
            Box::pin(
                async move { Ok(scalar!(fetch_one, &mut c, Option<Vec<u8>>, "SELECT body_sealed FROM messages WHERE id = $1", id.0)?) },
            )
        })
        .await
    }
}

/// A patient's conversations for a right-of-access request (HIPAA 164.524): what
/// `ward patient export` and `POST /api/v1/patients/{id}/export` put in the archive.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PatientExport {
    /// The patient.
    pub patient_id: PatientId,
    /// The patient's name (PHI: the archive goes only to the requester).
    pub patient_name: String,
    /// The medical record number.
    pub mrn: String,
    /// When the export was made (Unix ms).
    pub exported_at: i64,
    /// Every conversation about the patient, oldest first.
    pub conversations: Vec<ExportConversation>,
}

/// One conversation in a patient export.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ExportConversation {
    /// Id.
    pub id: ConversationId,
    /// Title, unless there is none or it was shredded.
    pub title: Option<String>,
    /// Created (Unix ms).
    pub created_at: i64,
    /// When its title went with its last key (Unix ms).
    pub shredded_at: Option<i64>,
    /// Messages in sequence order.
    pub messages: Vec<ExportMessage>,
}

/// One message in a patient export.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ExportMessage {
    /// Id.
    pub id: ward_domain::ids::MessageId,
    /// Position in the conversation.
    pub seq: i64,
    /// Sender.
    pub sender_id: UserId,
    /// The sender's display name.
    pub sender_name: String,
    /// Sent (Unix ms).
    pub created_at: i64,
    /// Text; `None` when recalled or shredded.
    pub body: Option<String>,
    /// When it was recalled (Unix ms).
    pub recalled_at: Option<i64>,
    /// When its content was shredded at the end of retention (Unix ms).
    pub shredded_at: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct ExportConvRow {
    id: uuid::Uuid,
    title: Option<String>,
    title_sealed: Option<Vec<u8>>,
    created_at: i64,
    shredded_at: Option<i64>,
}

impl Store {
    /// Gathers a patient's conversations with every message, for a right-of-access export.
    /// Compliance officers and admins may export any patient of their organisation, a patient
    /// only themself (others answer NotFound, as for a record that does not exist). Audited
    /// as `patient.export`.
    pub async fn patient_export(&self, actor: Actor, patient: PatientId, meta: RequestMeta) -> Result<PatientExport> {
        let ring = self.keyring().clone();
        let export = self
            .read(move |mut c| {
                Box::pin(async move {
                    let own =
                        scalar!(fetch_optional, &mut c, Option<uuid::Uuid>, "SELECT patient_id FROM users WHERE id = $1", actor.user_id.0)?
                            .flatten()
                            .is_some_and(|p| p == patient.0);
                    if actor.role == ward_domain::role::Role::Patient && !own {
                        return Err(StoreError::NotFound);
                    }
                    policy::may_export_patient(&actor, own)?;
                    gather_export(&mut c, &ring, actor.org_id, patient).await
                })
            })
            .await?;
        self.record(export_event(actor.org_id, Some(actor.user_id), &export), meta).await?;
        Ok(export)
    }

    /// The same export for the host operator (`ward patient export`), audited with no actor.
    pub async fn patient_export_by_operator(&self, patient: PatientId, meta: RequestMeta) -> Result<PatientExport> {
        let ring = self.keyring().clone();
        let (org, export) = self
            .read(move |mut c| {
                Box::pin(async move {
                    let org = scalar!(fetch_optional, &mut c, uuid::Uuid, "SELECT org_id FROM patients WHERE id = $1", patient.0)?
                        .map(OrgId)
                        .ok_or(StoreError::NotFound)?;
                    Ok((org, gather_export(&mut c, &ring, org, patient).await?))
                })
            })
            .await?;
        self.record(export_event(org, None, &export), meta).await?;
        Ok(export)
    }
}

fn export_event(org: OrgId, actor: Option<UserId>, export: &PatientExport) -> AuditEvent {
    let mut ev = AuditEvent::new(AuditAction::PatientExport, Outcome::Success)
        .target("patient", export.patient_id)
        .patient(Some(export.patient_id))
        .detail("conversations", DetailValue::Int(export.conversations.len() as i64))
        .detail("messages", DetailValue::Int(export.conversations.iter().map(|c| c.messages.len() as i64).sum()));
    ev.org_id = Some(org);
    ev.actor = actor;
    ev
}

async fn gather_export(c: &mut Conn<'_>, ring: &ward_crypto::Keyring, org: OrgId, patient: PatientId) -> Result<PatientExport> {
    let p = crate::patients::patient_in_org(c, ring, org, patient).await?;
    let convs = fetch!(
        fetch_all,
        c,
        ExportConvRow,
        "SELECT id, title, title_sealed, created_at, shredded_at FROM conversations WHERE patient_id = $1 AND org_id = $2 ORDER BY created_at, id",
        patient.0,
        org.0
    )?;
    let mut conversations = Vec::with_capacity(convs.len());
    for cv in convs {
        let conv = ConversationId(cv.id);
        let title = match &cv.title_sealed {
            Some(sealed) => match open_field(c, ring, &title_context(org, conv), sealed).await {
                Ok(t) => Some(t),
                Err(StoreError::KeyDestroyed) => None,
                Err(e) => return Err(e),
            },
            None => cv.title.clone(),
        };
        let rows = fetch!(
            fetch_all,
            c,
            crate::messages::MessageRow,
            sqlx::AssertSqlSafe(format!(
                "SELECT {} FROM messages WHERE conversation_id = $1 ORDER BY seq",
                crate::messages::MESSAGE_COLUMNS
            )),
            conv.0
        )?;
        let names: std::collections::HashMap<uuid::Uuid, String> = fetch!(
            fetch_all,
            c,
            (uuid::Uuid, String),
            "SELECT DISTINCT u.id, u.display_name FROM messages m JOIN users u ON u.id = m.sender_id WHERE m.conversation_id = $1",
            conv.0
        )?
        .into_iter()
        .collect();
        let mut messages = Vec::with_capacity(rows.len());
        for r in rows {
            let m = r.open(c, ring, org).await?;
            messages.push(ExportMessage {
                id: m.id,
                seq: m.seq,
                sender_id: m.sender_id,
                sender_name: names.get(&m.sender_id.0).cloned().unwrap_or_default(),
                created_at: m.created_at,
                body: m.body,
                recalled_at: m.recalled_at,
                shredded_at: m.shredded_at,
            });
        }
        conversations.push(ExportConversation { id: conv, title, created_at: cv.created_at, shredded_at: cv.shredded_at, messages });
    }
    Ok(PatientExport { patient_id: patient, patient_name: p.display_name, mrn: p.mrn, exported_at: now_ms(), conversations })
}

/// `PRAGMA wal_checkpoint(TRUNCATE)`: whether it completed (no reader or writer in the way).
async fn truncate_wal(c: &mut Conn<'_>) -> Result<bool> {
    let (busy, _, _) = fetch!(fetch_one, c, (i64, i64, i64), "PRAGMA wal_checkpoint(TRUNCATE)")?;
    Ok(busy == 0)
}
