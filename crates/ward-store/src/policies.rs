//! Organisation policies users must acknowledge (device checklist, BYOD wipe authority,
//! acceptable use, ...): publishing versions, acknowledging the current one, the report of
//! who has not, and the organisation's "acknowledge before PHI" requirement. Each change is
//! audited in its transaction with codes and ids only (never a title or text).

use ward_domain::audit::{AuditAction, AuditEvent, DetailValue, Outcome};
use ward_domain::ids::{OrgId, PolicyId, UserId};
use ward_domain::registers::{PolicyDraft, PolicyKind};

use crate::db::{Conn, exec, fetch, scalar};
use crate::error::{Result, StoreError};
use crate::{RequestMeta, Store, audit, now_ms};

/// The current version of a policy, as a user sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Id.
    pub id: PolicyId,
    /// What it is about.
    pub kind: PolicyKind,
    /// The current version (1 at first publish, +1 each publish).
    pub version: i64,
    /// The current version's title.
    pub title: String,
    /// The current version's text.
    pub text: String,
    /// When the current version was published (Unix ms).
    pub published_at: i64,
    /// When the asking user acknowledged the current version, if they did.
    pub acknowledged_at: Option<i64>,
}

/// A current policy version and the workforce users who have not acknowledged it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcknowledgmentGap {
    /// The policy.
    pub policy_id: PolicyId,
    /// Its kind.
    pub kind: PolicyKind,
    /// Its current version.
    pub version: i64,
    /// Its title.
    pub title: String,
    /// Active workforce users in the organisation.
    pub users: i64,
    /// Those who have not acknowledged the current version: (id, login), by login.
    pub pending: Vec<(UserId, String)>,
}

#[derive(sqlx::FromRow)]
struct PolicyRow {
    id: uuid::Uuid,
    kind: String,
    version: i64,
    title: String,
    body: String,
    published_at: i64,
    acknowledged_at: Option<i64>,
}

impl PolicyRow {
    fn into_policy(self) -> Result<Policy> {
        Ok(Policy {
            id: PolicyId(self.id),
            kind: self.kind.parse().map_err(|_| StoreError::Corrupt("policies.kind"))?,
            version: self.version,
            title: self.title,
            text: self.body,
            published_at: self.published_at,
            acknowledged_at: self.acknowledged_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct PendingRow {
    policy_id: uuid::Uuid,
    user_id: uuid::Uuid,
    login: String,
}

const POLICY_SELECT: &str = "SELECT p.id, p.kind, p.current_version AS version, v.title, v.body, v.published_at, a.acknowledged_at \
     FROM policies p JOIN policy_versions v ON v.policy_id = p.id AND v.version = p.current_version \
     LEFT JOIN policy_acknowledgments a ON a.policy_id = p.id AND a.version = p.current_version AND a.user_id = $2 \
     WHERE p.org_id = $1";

async fn policies_of(c: &mut Conn<'_>, org: OrgId, user: UserId) -> Result<Vec<Policy>> {
    fetch!(fetch_all, c, PolicyRow, sqlx::AssertSqlSafe(format!("{POLICY_SELECT} ORDER BY p.created_at, p.id")), org.0, user.0)?
        .into_iter()
        .map(PolicyRow::into_policy)
        .collect()
}

async fn policy_of(c: &mut Conn<'_>, org: OrgId, id: PolicyId, user: UserId) -> Result<Policy> {
    fetch!(fetch_one, c, PolicyRow, sqlx::AssertSqlSafe(format!("{POLICY_SELECT} AND p.id = $3")), org.0, user.0, id.0)?.into_policy()
}

fn event(action: AuditAction, outcome: Outcome, org: OrgId, actor: Option<UserId>) -> AuditEvent {
    let mut ev = AuditEvent::new(action, outcome);
    ev.org_id = Some(org);
    ev.actor = actor;
    ev
}

impl Store {
    /// Publishes a policy: a new one at version 1 (`existing` = `None`, `kind` required), or a
    /// new version of an existing one (its kind stays; everyone must acknowledge again).
    /// Audited `policy.publish` with kind and version.
    pub async fn publish_policy(
        &self,
        org: OrgId,
        actor: Option<UserId>,
        existing: Option<PolicyId>,
        kind: Option<PolicyKind>,
        draft: PolicyDraft,
        meta: RequestMeta,
    ) -> Result<Policy> {
        self.write(move |mut c| {
            Box::pin(async move {
                let now = now_ms();
                let (id, kind, version) = match existing {
                    None => {
                        let kind = kind.ok_or(StoreError::State("a new policy needs a kind"))?;
                        let id = PolicyId::new();
                        exec!(
                            &mut c,
                            "INSERT INTO policies (id, org_id, kind, current_version, created_at) VALUES ($1, $2, $3, 1, $4)",
                            id.0,
                            org.0,
                            kind.as_str(),
                            now
                        )?;
                        (id, kind, 1_i64)
                    }
                    Some(id) => {
                        let cur = fetch!(
                            fetch_one,
                            &mut c,
                            PolicyRow,
                            sqlx::AssertSqlSafe(format!("{POLICY_SELECT} AND p.id = $3")),
                            org.0,
                            uuid::Uuid::nil(),
                            id.0
                        )?
                        .into_policy()?;
                        let version = cur.version + 1;
                        exec!(&mut c, "UPDATE policies SET current_version = $2 WHERE id = $1", id.0, version)?;
                        (id, cur.kind, version)
                    }
                };
                exec!(
                    &mut c,
                    "INSERT INTO policy_versions (policy_id, version, title, body, published_at, published_by) VALUES ($1, $2, $3, $4, $5, $6)",
                    id.0,
                    version,
                    draft.title.as_str(),
                    draft.text.as_str(),
                    now,
                    actor.map(|a| a.0)
                )?;
                let ev = event(AuditAction::PolicyPublish, Outcome::Success, org, actor)
                    .target("policy", id)
                    .detail("kind", DetailValue::Code(kind.as_str()))
                    .detail("version", DetailValue::Int(version));
                audit::append(&mut c, &ev, &meta).await?;
                Ok(Policy { id, kind, version, title: draft.title, text: draft.text, published_at: now, acknowledged_at: None })
            })
        })
        .await
    }

    /// The organisation's policies at their current versions, with `user`'s acknowledgment.
    pub async fn policies(&self, org: OrgId, user: UserId) -> Result<Vec<Policy>> {
        self.read(move |mut c| Box::pin(async move { policies_of(&mut c, org, user).await })).await
    }

    /// One policy at its current version, with `user`'s acknowledgment.
    pub async fn policy(&self, org: OrgId, id: PolicyId, user: UserId) -> Result<Policy> {
        self.read(move |mut c| Box::pin(async move { policy_of(&mut c, org, id, user).await })).await
    }

    /// Records that `user` acknowledged `version` of a policy. Only the current version may be
    /// acknowledged (`StoreError::State` otherwise: it changed while they read it); doing it
    /// again changes nothing and audits nothing. Audited `policy.acknowledge`.
    pub async fn acknowledge_policy(&self, org: OrgId, user: UserId, id: PolicyId, version: i64, meta: RequestMeta) -> Result<Policy> {
        self.write(move |mut c| {
            Box::pin(async move {
                let cur = policy_of(&mut c, org, id, user).await?;
                if cur.version != version {
                    return Err(StoreError::State("that is not the current version of the policy; read it again"));
                }
                if cur.acknowledged_at.is_some() {
                    return Ok(cur);
                }
                let now = now_ms();
                exec!(
                    &mut c,
                    "INSERT INTO policy_acknowledgments (policy_id, version, user_id, acknowledged_at) VALUES ($1, $2, $3, $4)",
                    id.0,
                    version,
                    user.0,
                    now
                )?;
                let ev = event(AuditAction::PolicyAcknowledge, Outcome::Success, org, Some(user))
                    .target("policy", id)
                    .detail("version", DetailValue::Int(version));
                audit::append(&mut c, &ev, &meta).await?;
                Ok(Policy { acknowledged_at: Some(now), ..cur })
            })
        })
        .await
    }

    /// For each current policy: the active workforce users (patients excluded) who have not
    /// acknowledged its current version.
    pub async fn acknowledgment_report(&self, org: OrgId) -> Result<Vec<AcknowledgmentGap>> {
        self.read(move |mut c| {
            Box::pin(async move {
                let policies = policies_of(&mut c, org, UserId(uuid::Uuid::nil())).await?;
                let users = scalar!(
                    fetch_one,
                    &mut c,
                    i64,
                    "SELECT COUNT(*) FROM users WHERE org_id = $1 AND role <> 'patient' AND disabled_at IS NULL",
                    org.0
                )?;
                let pending = fetch!(
                    fetch_all,
                    &mut c,
                    PendingRow,
                    "SELECT p.id AS policy_id, u.id AS user_id, u.login FROM policies p \
                     JOIN users u ON u.org_id = p.org_id AND u.role <> 'patient' AND u.disabled_at IS NULL \
                     WHERE p.org_id = $1 AND NOT EXISTS (SELECT 1 FROM policy_acknowledgments a \
                       WHERE a.policy_id = p.id AND a.version = p.current_version AND a.user_id = u.id) \
                     ORDER BY u.login",
                    org.0
                )?;
                Ok(policies
                    .into_iter()
                    .map(|p| AcknowledgmentGap {
                        policy_id: p.id,
                        kind: p.kind,
                        version: p.version,
                        title: p.title,
                        users,
                        pending: pending.iter().filter(|r| r.policy_id == p.id.0).map(|r| (UserId(r.user_id), r.login.clone())).collect(),
                    })
                    .collect())
            })
        })
        .await
    }

    /// Whether the organisation requires every current policy to be acknowledged before PHI
    /// access (off until set).
    pub async fn policy_acknowledgment_required(&self, org: OrgId) -> Result<bool> {
        self.read(move |mut c| {
            Box::pin(async move {
                Ok(scalar!(fetch_optional, &mut c, bool, "SELECT require_before_phi FROM policy_settings WHERE org_id = $1", org.0)?
                    .unwrap_or(false))
            })
        })
        .await
    }

    /// Turns the "acknowledge before PHI" requirement on or off. Audited `policy.settings`.
    pub async fn set_policy_acknowledgment_required(&self, org: OrgId, actor: UserId, required: bool, meta: RequestMeta) -> Result<()> {
        self.write(move |mut c| {
            Box::pin(async move {
                exec!(
                    &mut c,
                    "INSERT INTO policy_settings (org_id, require_before_phi, updated_at, updated_by) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (org_id) DO UPDATE SET require_before_phi = excluded.require_before_phi, \
                     updated_at = excluded.updated_at, updated_by = excluded.updated_by",
                    org.0,
                    required,
                    now_ms(),
                    actor.0
                )?;
                let ev = event(AuditAction::PolicySettings, Outcome::Success, org, Some(actor))
                    .target("org", org)
                    .detail("require_before_phi", DetailValue::Bool(required));
                audit::append(&mut c, &ev, &meta).await?;
                Ok(())
            })
        })
        .await
    }

    /// How many current policies `user` must still acknowledge before PHI access: 0 when the
    /// organisation does not require acknowledgment. One indexed query: it runs on every
    /// PHI-bearing request.
    pub async fn policies_blocking_phi(&self, org: OrgId, user: UserId) -> Result<i64> {
        self.read(move |mut c| {
            Box::pin(async move {
                Ok(scalar!(
                    fetch_one,
                    &mut c,
                    i64,
                    "SELECT COUNT(*) FROM policies p WHERE p.org_id = $1 \
                     AND EXISTS (SELECT 1 FROM policy_settings s WHERE s.org_id = $1 AND s.require_before_phi) \
                     AND NOT EXISTS (SELECT 1 FROM policy_acknowledgments a \
                       WHERE a.policy_id = p.id AND a.version = p.current_version AND a.user_id = $2)",
                    org.0,
                    user.0
                )?)
            })
        })
        .await
    }
}
