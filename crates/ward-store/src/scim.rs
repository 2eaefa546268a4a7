//! SCIM 2.0 provisioning (docs/identity.md, "SCIM provisioning"): the organisation's SCIM
//! bearer tokens (hashes only), the SCIM view of workforce accounts (external id, deletion),
//! and deprovisioning: disable, revoke every session (and so its refresh tokens), queue a wipe
//! to each device, in one transaction with its audit events and a timeline row.
//!
//! Patients are not workforce and never appear here. User names and display names are
//! personal data: audit events carry ids, codes and counts only.

use ward_domain::audit::{AuditAction, AuditEvent, DetailValue, Outcome};
use ward_domain::ids::{DeviceId, OrgId, UserId};
use ward_domain::role::Role;

use crate::db::{Conn, exec, fetch, scalar};
use crate::error::{Result, StoreError};
use crate::sessions::revoke_user_sessions;
use crate::users::UserRow;
use crate::{RequestMeta, Store, User, audit, now_ms};

/// The wipe reason SCIM deprovisioning records.
pub const SCIM_WIPE_REASON: &str = "deprovisioned: scim";

/// A SCIM bearer token as listed (never the token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimToken {
    /// Id.
    pub id: uuid::Uuid,
    /// The admin's label for it (which identity provider).
    pub label: String,
    /// Who issued it.
    pub created_by: UserId,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms, when revoked.
    pub revoked_at: Option<i64>,
    /// Unix ms, when it was last presented (recorded at most once a minute).
    pub last_used_at: Option<i64>,
    /// Unix ms, when it stops working (chosen at issue time; none: until revoked).
    pub expires_at: Option<i64>,
}

/// How often a token's last use is written: a busy identity provider sends many requests a
/// minute, and one write per request would be wasted work.
pub const TOKEN_USE_RESOLUTION_MS: i64 = 60_000;

/// A live SCIM token's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScimClient {
    /// The token's id.
    pub token: uuid::Uuid,
    /// Its organisation.
    pub org: OrgId,
}

/// What the token presented on a SCIM request turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScimTokenCheck {
    /// Live: the client.
    Live(ScimClient),
    /// Its expiry has passed.
    Expired,
    /// Unknown or revoked.
    Unknown,
}

/// A group a user belongs to, as the user's read-only `groups` attribute shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimGroupRef {
    /// The group's id.
    pub id: uuid::Uuid,
    /// Its display name.
    pub display_name: String,
}

/// A workforce account as SCIM sees it.
#[derive(Debug, Clone)]
pub struct ScimUser {
    /// The account.
    pub user: User,
    /// The identity provider's id for it.
    pub external_id: Option<String>,
    /// Unix ms: when an attribute SCIM shows last changed (creation time if never).
    pub updated_at: i64,
    /// The SCIM groups it belongs to, by display name.
    pub groups: Vec<ScimGroupRef>,
}

impl ScimUser {
    /// Whether `other` is the same version of the account as this one: what a conditional
    /// write compares, inside its transaction, with what the request was computed from.
    pub fn same_version(&self, other: &ScimUser) -> bool {
        let (a, b) = (&self.user, &other.user);
        a.id == b.id
            && a.login == b.login
            && a.display_name == b.display_name
            && a.role == b.role
            && a.disabled == b.disabled
            && self.external_id == other.external_id
            && self.updated_at == other.updated_at
            && self.groups == other.groups
    }
}

/// A conditional replace of an account's SCIM attributes.
#[derive(Debug, Clone)]
pub struct ScimUserWrite {
    /// The account.
    pub id: UserId,
    /// What it becomes.
    pub fields: ScimUserFields,
    /// `replace` or `patch`, for the audit event.
    pub op: &'static str,
    /// When the request arrived (Unix ms), for a deprovisioning's timeline.
    pub received_at: i64,
    /// The version the request was computed from.
    pub expected: ScimUser,
}

/// The attributes SCIM writes (create, replace, patch).
#[derive(Debug, Clone)]
pub struct ScimUserFields {
    /// Login name (SCIM `userName`), already parsed.
    pub login: String,
    /// Display name.
    pub display_name: String,
    /// Workforce role.
    pub role: Role,
    /// The identity provider's id.
    pub external_id: Option<String>,
    /// Whether the account may sign in.
    pub active: bool,
}

/// Why a deprovisioning happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeprovisionCause {
    /// A PUT or PATCH set `active` to false.
    ActiveFalse,
    /// DELETE.
    Delete,
}

impl DeprovisionCause {
    /// The stored code.
    pub fn as_str(self) -> &'static str {
        match self {
            DeprovisionCause::ActiveFalse => "active_false",
            DeprovisionCause::Delete => "delete",
        }
    }
}

/// What a deprovisioning did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deprovision {
    /// The timeline row.
    pub id: uuid::Uuid,
    /// The account.
    pub user_id: UserId,
    /// Sessions revoked (their connections must be closed).
    pub sessions_revoked: usize,
    /// Devices sent a wipe.
    pub wipes_queued: Vec<DeviceId>,
}

/// One deprovisioning's timeline, for compliance officers and the evidence bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeprovisionRecord {
    /// Id.
    pub id: uuid::Uuid,
    /// The account.
    pub user_id: UserId,
    /// The SCIM token that asked.
    pub token_id: uuid::Uuid,
    /// `active_false` or `delete`.
    pub cause: String,
    /// The request arrived (Unix ms).
    pub received_at: i64,
    /// Sessions and refresh tokens were revoked.
    pub sessions_revoked_at: i64,
    /// How many sessions.
    pub sessions_revoked: i64,
    /// Wipes were queued (same transaction, after the revocation).
    pub wipes_queued_at: i64,
    /// How many wipes.
    pub wipes_queued: i64,
    /// The signal closing the person's connections was sent.
    pub connections_closed_at: Option<i64>,
    /// Each wipe queued, with its delivery and acknowledgement.
    pub wipes: Vec<WipeProgress>,
}

/// One device's wipe in a deprovisioning timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WipeProgress {
    /// The device.
    pub device_id: DeviceId,
    /// Queued (Unix ms).
    pub requested_at: i64,
    /// The device fetched it.
    pub delivered_at: Option<i64>,
    /// The device confirmed the wipe.
    pub acknowledged_at: Option<i64>,
    /// Closed without reaching the device (`no_wipe_channel`).
    pub closed_reason: Option<String>,
}

#[derive(sqlx::FromRow)]
struct TokenRow {
    id: uuid::Uuid,
    label: String,
    created_by: uuid::Uuid,
    created_at: i64,
    revoked_at: Option<i64>,
    last_used_at: Option<i64>,
    expires_at: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct ScimUserRow {
    #[sqlx(flatten)]
    user: UserRow,
    scim_external_id: Option<String>,
    scim_updated_at: i64,
}

impl ScimUserRow {
    fn into_scim(self, groups: Vec<ScimGroupRef>) -> Result<ScimUser> {
        Ok(ScimUser { user: self.user.into_user()?, external_id: self.scim_external_id, updated_at: self.scim_updated_at, groups })
    }
}

#[derive(sqlx::FromRow)]
struct MembershipRow {
    user_id: uuid::Uuid,
    group_id: uuid::Uuid,
    display_name: String,
}

/// The groups of the organisation's users (of one user when `user` is given), by user.
async fn memberships(c: &mut Conn<'_>, org: OrgId, user: Option<UserId>) -> Result<Vec<(UserId, ScimGroupRef)>> {
    let rows = fetch!(
        fetch_all,
        c,
        MembershipRow,
        "SELECT m.user_id, g.id AS group_id, g.display_name FROM scim_group_members m JOIN scim_groups g ON g.id = m.group_id \
         WHERE g.org_id = $1 AND ($2 OR m.user_id = $3) ORDER BY g.display_name, g.id",
        org.0,
        user.is_none(),
        user.map_or(uuid::Uuid::nil(), |u| u.0)
    )?;
    Ok(rows.into_iter().map(|r| (UserId(r.user_id), ScimGroupRef { id: r.group_id, display_name: r.display_name })).collect())
}

#[derive(sqlx::FromRow)]
struct DeprovisionRow {
    id: uuid::Uuid,
    user_id: uuid::Uuid,
    token_id: uuid::Uuid,
    cause: String,
    received_at: i64,
    sessions_revoked_at: i64,
    sessions_revoked: i64,
    wipes_queued_at: i64,
    wipes_queued: i64,
    connections_closed_at: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct WipeRow {
    device_id: uuid::Uuid,
    requested_at: i64,
    delivered_at: Option<i64>,
    acknowledged_at: Option<i64>,
    closed_reason: Option<String>,
}

const SCIM_USER_SELECT: &str = "SELECT id, org_id, login, display_name, role, patient_id, disabled_at, \
     (totp_secret IS NOT NULL OR EXISTS (SELECT 1 FROM webauthn_credentials w WHERE w.user_id = users.id)) AS mfa_enabled, \
     password_must_change, created_at, scim_external_id, COALESCE(updated_at, created_at) AS scim_updated_at FROM users \
     WHERE org_id = $1 AND role <> 'patient' AND scim_deleted_at IS NULL";

fn scim_event(action: AuditAction, outcome: Outcome, client: ScimClient, user: Option<UserId>) -> AuditEvent {
    let mut ev = AuditEvent::new(action, outcome).detail("token", DetailValue::Id(client.token));
    if let Some(u) = user {
        ev = ev.target("user", u);
    }
    ev.org_id = Some(client.org);
    ev
}

pub(crate) async fn scim_user_in(c: &mut Conn<'_>, org: OrgId, id: UserId) -> Result<ScimUser> {
    let sql = format!("{SCIM_USER_SELECT} AND id = $2");
    let row = fetch!(fetch_optional, c, ScimUserRow, sqlx::AssertSqlSafe(sql), org.0, id.0)?.ok_or(StoreError::NotFound)?;
    let groups = memberships(c, org, Some(id)).await?.into_iter().map(|(_, g)| g).collect();
    row.into_scim(groups)
}

/// The conflict a taken login or external id is reported as. An account deleted through SCIM
/// keeps both (a tombstone: the audit trail names the account by them, and a new person must
/// not inherit a leaver's identity), and the error says so.
const LOGIN_TAKEN: &str = "login";
const LOGIN_TOMBSTONE: &str = "login (held by an account deleted through SCIM, kept for the audit trail)";
const EXTERNAL_ID_TAKEN: &str = "externalId";
const EXTERNAL_ID_TOMBSTONE: &str = "externalId (held by an account deleted through SCIM, kept for the audit trail)";

/// Whether the external id is held by another account: `Some(true)` by one deleted through SCIM.
async fn external_id_holder(c: &mut Conn<'_>, org: OrgId, external_id: Option<&str>, except: Option<UserId>) -> Result<Option<bool>> {
    let Some(e) = external_id else { return Ok(None) };
    let except = except.map_or(uuid::Uuid::nil(), |u| u.0);
    Ok(scalar!(
        fetch_optional,
        c,
        bool,
        "SELECT scim_deleted_at IS NOT NULL FROM users WHERE org_id = $1 AND scim_external_id = $2 AND id <> $3",
        org.0,
        e,
        except
    )?)
}

async fn check_external_id(c: &mut Conn<'_>, org: OrgId, external_id: Option<&str>, except: Option<UserId>) -> Result<()> {
    match external_id_holder(c, org, external_id, except).await? {
        None => Ok(()),
        Some(false) => Err(StoreError::Conflict(EXTERNAL_ID_TAKEN)),
        Some(true) => Err(StoreError::Conflict(EXTERNAL_ID_TOMBSTONE)),
    }
}

/// The conflict for a login held by another account.
async fn login_conflict(c: &mut Conn<'_>, login: &str) -> Result<StoreError> {
    let deleted = scalar!(fetch_optional, c, bool, "SELECT scim_deleted_at IS NOT NULL FROM users WHERE login = $1", login)?;
    Ok(StoreError::Conflict(if deleted == Some(true) { LOGIN_TOMBSTONE } else { LOGIN_TAKEN }))
}

/// The role group the account belongs to, if any (at most one: a Ward account holds one role).
pub(crate) async fn role_group_of(c: &mut Conn<'_>, user: UserId) -> Result<Option<(uuid::Uuid, Role)>> {
    #[derive(sqlx::FromRow)]
    struct Row {
        id: uuid::Uuid,
        role: String,
    }
    let row = fetch!(
        fetch_optional,
        c,
        Row,
        "SELECT g.id, g.role FROM scim_group_members m JOIN scim_groups g ON g.id = m.group_id \
         WHERE m.user_id = $1 AND g.role IS NOT NULL ORDER BY g.created_at, g.id LIMIT 1",
        user.0
    )?;
    row.map(|r| Ok((r.id, r.role.parse().map_err(|_| StoreError::Corrupt("scim_groups.role"))?))).transpose()
}

/// Refuses a SCIM change that would leave the organisation without an active admin: the
/// account is its last active admin and would be disabled, deleted or given another role.
/// Checked inside the write's transaction, so two such requests cannot both pass
/// (`users::keep_another_admin`).
async fn keep_an_admin(c: &mut Conn<'_>, org: OrgId, before: &ScimUser, stays_admin: bool) -> Result<()> {
    if before.user.role != Role::Admin || before.user.disabled || stays_admin {
        return Ok(());
    }
    crate::users::keep_another_admin(c, org, before.user.id).await
}

/// Disables the account, revokes every session (their refresh tokens die with them), then
/// queues a wipe to each device not yet revoked, in the caller's transaction, and records the
/// timeline and audit events. `None` when there was nothing left to do.
async fn deprovision_in_tx(
    c: &mut Conn<'_>,
    client: ScimClient,
    user: UserId,
    cause: DeprovisionCause,
    received_at: i64,
    meta: &RequestMeta,
) -> Result<Option<Deprovision>> {
    let org = client.org;
    let now = now_ms();
    let disabled = exec!(c, "UPDATE users SET disabled_at = $2, updated_at = $2 WHERE id = $1 AND disabled_at IS NULL", user.0, now)? == 1;
    exec!(c, "DELETE FROM device_push_tokens WHERE user_id = $1", user.0)?;
    // Off the care teams it was on through a group, at once (two statements on its own rows;
    // kept even when it was already disabled, so a tombstone never keeps a derived row).
    crate::care_team_groups::sync_user(c, org, user, now, "scim_user", meta).await?;
    let revoked = revoke_user_sessions(c, user, None, "user_disabled", now).await?;
    let sessions_revoked_at = now_ms();
    let wipes = crate::devices::wipe_user_devices(c, org, user, None, SCIM_WIPE_REASON, sessions_revoked_at, meta).await?;
    let wipes_queued_at = now_ms();
    if !disabled && revoked.is_empty() && wipes.is_empty() {
        return Ok(None);
    }
    let id = uuid::Uuid::new_v4();
    exec!(
        c,
        "INSERT INTO scim_deprovisions (id, org_id, user_id, token_id, cause, received_at, sessions_revoked_at, sessions_revoked, \
         wipes_queued_at, wipes_queued) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        id,
        org.0,
        user.0,
        client.token,
        cause.as_str(),
        received_at,
        sessions_revoked_at,
        revoked.len() as i64,
        wipes_queued_at,
        wipes.len() as i64
    )?;
    if disabled {
        let ev = scim_event(AuditAction::UserDisable, Outcome::Success, client, Some(user))
            .detail("via", DetailValue::Code("scim"))
            .detail("sessions_revoked", DetailValue::Int(revoked.len() as i64))
            .detail("wipes_queued", DetailValue::Int(wipes.len() as i64));
        audit::append(c, &ev, meta).await?;
    }
    let ev = scim_event(AuditAction::ScimDeprovision, Outcome::Success, client, Some(user))
        .detail("trigger", DetailValue::Code(cause.as_str()))
        .detail("deprovision", DetailValue::Id(id))
        .detail("sessions_revoked", DetailValue::Int(revoked.len() as i64))
        .detail("wipes_queued", DetailValue::Int(wipes.len() as i64));
    audit::append(c, &ev, meta).await?;
    Ok(Some(Deprovision {
        id,
        user_id: user,
        sessions_revoked: revoked.len(),
        wipes_queued: wipes.iter().map(|w| w.wipe.device_id).collect(),
    }))
}

impl Store {
    /// Issues a SCIM token (its SHA-256 is stored), audited `scim.token` op `create`; it
    /// stops working at `expires_at` (Unix ms) when one is given.
    pub async fn create_scim_token(
        &self,
        org: OrgId,
        label: String,
        hash: Vec<u8>,
        expires_at: Option<i64>,
        actor: UserId,
        meta: RequestMeta,
    ) -> Result<ScimToken> {
        self.write(move |mut c| {
            Box::pin(async move {
                let id = uuid::Uuid::new_v4();
                let now = now_ms();
                exec!(
                    &mut c,
                    "INSERT INTO scim_tokens (id, org_id, token_hash, label, created_by, created_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    id,
                    org.0,
                    hash,
                    label.as_str(),
                    actor.0,
                    now,
                    expires_at
                )?;
                let mut ev = AuditEvent::new(AuditAction::ScimToken, Outcome::Success)
                    .target("scim_token", id)
                    .detail("op", DetailValue::Code("create"))
                    .detail("expires", DetailValue::Bool(expires_at.is_some()));
                ev.org_id = Some(org);
                ev.actor = Some(actor);
                audit::append(&mut c, &ev, &meta).await?;
                Ok(ScimToken { id, label, created_by: actor, created_at: now, revoked_at: None, last_used_at: None, expires_at })
            })
        })
        .await
    }

    /// The organisation's SCIM tokens, newest first.
    pub async fn scim_tokens(&self, org: OrgId) -> Result<Vec<ScimToken>> {
        self.read(move |mut c| {
            Box::pin(async move {
                let rows = fetch!(
                    fetch_all,
                    &mut c,
                    TokenRow,
                    "SELECT id, label, created_by, created_at, revoked_at, last_used_at, expires_at FROM scim_tokens WHERE org_id = $1 \
                     ORDER BY created_at DESC, id",
                    org.0
                )?;
                Ok(rows
                    .into_iter()
                    .map(|r| ScimToken {
                        id: r.id,
                        label: r.label,
                        created_by: UserId(r.created_by),
                        created_at: r.created_at,
                        revoked_at: r.revoked_at,
                        last_used_at: r.last_used_at,
                        expires_at: r.expires_at,
                    })
                    .collect())
            })
        })
        .await
    }

    /// Revokes a SCIM token (NotFound for another organisation's; State if already revoked).
    pub async fn revoke_scim_token(&self, org: OrgId, id: uuid::Uuid, actor: UserId, meta: RequestMeta) -> Result<()> {
        self.write(move |mut c| {
            Box::pin(async move {
                let revoked = scalar!(
                    fetch_optional,
                    &mut c,
                    Option<i64>,
                    "SELECT revoked_at FROM scim_tokens WHERE id = $1 AND org_id = $2",
                    id,
                    org.0
                )?
                .ok_or(StoreError::NotFound)?;
                if revoked.is_some() {
                    return Err(StoreError::State("the token is already revoked"));
                }
                exec!(&mut c, "UPDATE scim_tokens SET revoked_at = $2 WHERE id = $1", id, now_ms())?;
                let mut ev = AuditEvent::new(AuditAction::ScimToken, Outcome::Success)
                    .target("scim_token", id)
                    .detail("op", DetailValue::Code("revoke"));
                ev.org_id = Some(org);
                ev.actor = Some(actor);
                audit::append(&mut c, &ev, &meta).await?;
                Ok(())
            })
        })
        .await
    }

    /// Checks the SCIM token with this hash at `now` (Unix ms), and records its use when the
    /// last one recorded is older than [`TOKEN_USE_RESOLUTION_MS`].
    pub async fn scim_client(&self, hash: Vec<u8>, now: i64) -> Result<ScimTokenCheck> {
        #[derive(sqlx::FromRow)]
        struct Row {
            id: uuid::Uuid,
            org_id: uuid::Uuid,
            last_used_at: Option<i64>,
            expires_at: Option<i64>,
        }
        let row = self
            .read(move |mut c| {
                Box::pin(async move {
                    Ok(fetch!(
                        fetch_optional,
                        &mut c,
                        Row,
                        "SELECT id, org_id, last_used_at, expires_at FROM scim_tokens WHERE token_hash = $1 AND revoked_at IS NULL",
                        hash
                    )?)
                })
            })
            .await?;
        let Some(r) = row else { return Ok(ScimTokenCheck::Unknown) };
        if r.expires_at.is_some_and(|e| e <= now) {
            return Ok(ScimTokenCheck::Expired);
        }
        if r.last_used_at.is_none_or(|t| now - t >= TOKEN_USE_RESOLUTION_MS) {
            let id = r.id;
            self.write(move |mut c| {
                Box::pin(async move {
                    exec!(
                        &mut c,
                        "UPDATE scim_tokens SET last_used_at = $2 WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2)",
                        id,
                        now
                    )?;
                    Ok(())
                })
            })
            .await?;
        }
        Ok(ScimTokenCheck::Live(ScimClient { token: r.id, org: OrgId(r.org_id) }))
    }

    /// Every workforce account of the organisation not deleted through SCIM, by login.
    pub async fn scim_users(&self, org: OrgId) -> Result<Vec<ScimUser>> {
        self.read(move |mut c| {
            Box::pin(async move {
                let sql = format!("{SCIM_USER_SELECT} ORDER BY login");
                let rows = fetch!(fetch_all, &mut c, ScimUserRow, sqlx::AssertSqlSafe(sql), org.0)?;
                let mut groups: std::collections::HashMap<UserId, Vec<ScimGroupRef>> = std::collections::HashMap::new();
                for (user, g) in memberships(&mut c, org, None).await? {
                    groups.entry(user).or_default().push(g);
                }
                rows.into_iter()
                    .map(|r| {
                        let mut u = r.into_scim(Vec::new())?;
                        u.groups = groups.remove(&u.user.id).unwrap_or_default();
                        Ok(u)
                    })
                    .collect()
            })
        })
        .await
    }

    /// One workforce account (NotFound for patients, deleted accounts and other tenants).
    pub async fn scim_user(&self, org: OrgId, id: UserId) -> Result<ScimUser> {
        self.read(move |mut c| Box::pin(async move { scim_user_in(&mut c, org, id).await })).await
    }

    /// Creates a workforce account from SCIM with an unusable password (an admin issues a
    /// one-time password, or single sign-on is used). Conflict("login") or
    /// Conflict("externalId") when taken. Audited `user.create` and `scim.user` op `create`.
    pub async fn scim_create_user(
        &self,
        client: ScimClient,
        f: ScimUserFields,
        password_hash: String,
        meta: RequestMeta,
    ) -> Result<ScimUser> {
        self.write(move |mut c| {
            Box::pin(async move {
                let org = client.org;
                if f.role == Role::Patient {
                    return Err(StoreError::State("SCIM provisions workforce accounts only"));
                }
                check_external_id(&mut c, org, f.external_id.as_deref(), None).await?;
                let id = UserId::new();
                let now = now_ms();
                let n = exec!(
                    &mut c,
                    "INSERT INTO users (id, org_id, login, display_name, role, password_hash, password_must_change, created_at, \
                     scim_external_id, disabled_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (login) DO NOTHING",
                    id.0,
                    org.0,
                    f.login.as_str(),
                    f.display_name.as_str(),
                    f.role.as_str(),
                    password_hash.as_str(),
                    true,
                    now,
                    f.external_id.as_deref(),
                    (!f.active).then_some(now)
                )?;
                if n == 0 {
                    return Err(login_conflict(&mut c, &f.login).await?);
                }
                let ev = scim_event(AuditAction::UserCreate, Outcome::Success, client, Some(id))
                    .detail("role", DetailValue::Code(f.role.as_str()))
                    .detail("via", DetailValue::Code("scim"));
                audit::append(&mut c, &ev, &meta).await?;
                let ev = scim_event(AuditAction::ScimUser, Outcome::Success, client, Some(id))
                    .detail("op", DetailValue::Code("create"))
                    .detail("role", DetailValue::Code(f.role.as_str()))
                    .detail("active", DetailValue::Bool(f.active));
                audit::append(&mut c, &ev, &meta).await?;
                scim_user_in(&mut c, org, id).await
            })
        })
        .await
    }

    /// Replaces a workforce account's SCIM attributes (`op` is `replace` or `patch`, for the
    /// audit event). Setting `active` false deprovisions in the same transaction; true enables.
    /// The write is conditional: `expected` is the version the request was computed from, and
    /// if the account changed since (another request, an admin), nothing is written and the
    /// answer is [`StoreError::Changed`]. The check and the write share the transaction.
    pub async fn scim_update_user(
        &self,
        client: ScimClient,
        w: ScimUserWrite,
        meta: RequestMeta,
    ) -> Result<(ScimUser, Option<Deprovision>)> {
        self.write(move |mut c| {
            Box::pin(async move {
                let ScimUserWrite { id, fields: f, op, received_at, expected } = w;
                let org = client.org;
                let before = scim_user_in(&mut c, org, id).await?;
                if !before.same_version(&expected) {
                    return Err(StoreError::Changed);
                }
                if f.role == Role::Patient {
                    return Err(StoreError::State("SCIM provisions workforce accounts only"));
                }
                keep_an_admin(&mut c, org, &before, f.active && f.role == Role::Admin).await?;
                if f.role != before.user.role && role_group_of(&mut c, id).await?.is_some() {
                    return Err(StoreError::State(
                        "roles: this account's role comes from its SCIM role group: change the group's members instead",
                    ));
                }
                check_external_id(&mut c, org, f.external_id.as_deref(), Some(id)).await?;
                if f.login != before.user.login {
                    let taken = scalar!(fetch_optional, &mut c, i32, "SELECT 1 FROM users WHERE login = $1", f.login.as_str())?;
                    if taken.is_some() {
                        return Err(login_conflict(&mut c, &f.login).await?);
                    }
                }
                let changed = f.login != before.user.login
                    || f.display_name != before.user.display_name
                    || f.role != before.user.role
                    || f.external_id != before.external_id
                    || f.active == before.user.disabled;
                let updated_at = if changed { now_ms().max(before.updated_at + 1) } else { before.updated_at };
                exec!(
                    &mut c,
                    "UPDATE users SET login = $2, display_name = $3, role = $4, scim_external_id = $5, updated_at = $6 WHERE id = $1",
                    id.0,
                    f.login.as_str(),
                    f.display_name.as_str(),
                    f.role.as_str(),
                    f.external_id.as_deref(),
                    updated_at
                )?;
                if before.user.role != f.role {
                    let ev = scim_event(AuditAction::UserRole, Outcome::Success, client, Some(id))
                        .detail("from", DetailValue::Code(before.user.role.as_str()))
                        .detail("to", DetailValue::Code(f.role.as_str()))
                        .detail("via", DetailValue::Code("scim"));
                    audit::append(&mut c, &ev, &meta).await?;
                }
                let ev = scim_event(AuditAction::ScimUser, Outcome::Success, client, Some(id))
                    .detail("op", DetailValue::Code(op))
                    .detail("role", DetailValue::Code(f.role.as_str()))
                    .detail("active", DetailValue::Bool(f.active));
                audit::append(&mut c, &ev, &meta).await?;
                let deprovision = if f.active {
                    if before.user.disabled {
                        exec!(&mut c, "UPDATE users SET disabled_at = NULL, updated_at = $2 WHERE id = $1", id.0, updated_at)?;
                        // Enabled again: back on the care teams of its attached groups. (A role
                        // change moves no one: SCIM never gives the patient role; disabling
                        // re-syncs in deprovision_in_tx; a no-op re-push re-syncs nothing.)
                        crate::care_team_groups::sync_user(&mut c, org, id, now_ms(), "scim_user", &meta).await?;
                        let ev = scim_event(AuditAction::UserEnable, Outcome::Success, client, Some(id))
                            .detail("via", DetailValue::Code("scim"));
                        audit::append(&mut c, &ev, &meta).await?;
                    }
                    None
                } else {
                    deprovision_in_tx(&mut c, client, id, DeprovisionCause::ActiveFalse, received_at, &meta).await?
                };
                Ok((scim_user_in(&mut c, org, id).await?, deprovision))
            })
        })
        .await
    }

    /// SCIM DELETE: deprovisions the account and removes it from the SCIM view and from its
    /// groups. The account row stays (the audit log and retention refer to it), disabled, and
    /// keeps its login and external id (a tombstone). With `expected`, conditional as
    /// [`Store::scim_update_user`] is.
    pub async fn scim_delete_user(
        &self,
        client: ScimClient,
        id: UserId,
        received_at: i64,
        expected: Option<ScimUser>,
        meta: RequestMeta,
    ) -> Result<Option<Deprovision>> {
        self.write(move |mut c| {
            Box::pin(async move {
                let before = scim_user_in(&mut c, client.org, id).await?;
                if expected.is_some_and(|e| !before.same_version(&e)) {
                    return Err(StoreError::Changed);
                }
                keep_an_admin(&mut c, client.org, &before, false).await?;
                let d = deprovision_in_tx(&mut c, client, id, DeprovisionCause::Delete, received_at, &meta).await?;
                let now = now_ms();
                exec!(&mut c, "UPDATE users SET scim_deleted_at = $2, updated_at = $2 WHERE id = $1", id.0, now)?;
                // Off its groups; deprovision_in_tx already took it off every group-derived care
                // team (a disabled account counts in no group).
                crate::scim_groups::leave_all_groups(&mut c, client.org, id, now).await?;
                let ev = scim_event(AuditAction::ScimUser, Outcome::Success, client, Some(id)).detail("op", DetailValue::Code("delete"));
                audit::append(&mut c, &ev, &meta).await?;
                Ok(d)
            })
        })
        .await
    }

    /// Records when the signal closing a deprovisioned person's connections was sent.
    pub async fn scim_connections_closed(&self, deprovision: uuid::Uuid, at: i64) -> Result<()> {
        self.write(move |mut c| {
            Box::pin(async move {
                exec!(&mut c, "UPDATE scim_deprovisions SET connections_closed_at = $2 WHERE id = $1", deprovision, at)?;
                Ok(())
            })
        })
        .await
    }

    /// The organisation's deprovisioning timelines, newest first, at most `limit`.
    pub async fn scim_deprovisions(&self, org: OrgId, limit: u32) -> Result<Vec<DeprovisionRecord>> {
        self.read(move |mut c| {
            Box::pin(async move {
                let rows = fetch!(
                    fetch_all,
                    &mut c,
                    DeprovisionRow,
                    "SELECT id, user_id, token_id, cause, received_at, sessions_revoked_at, sessions_revoked, wipes_queued_at, \
                     wipes_queued, connections_closed_at FROM scim_deprovisions WHERE org_id = $1 \
                     ORDER BY received_at DESC, id LIMIT $2",
                    org.0,
                    i64::from(limit)
                )?;
                let mut out = Vec::with_capacity(rows.len());
                for r in rows {
                    let wipes = fetch!(
                        fetch_all,
                        &mut c,
                        WipeRow,
                        "SELECT device_id, requested_at, delivered_at, acknowledged_at, closed_reason FROM device_wipes \
                         WHERE user_id = $1 AND org_id = $2 AND requested_at = $3 AND reason = $4 ORDER BY device_id",
                        r.user_id,
                        org.0,
                        r.sessions_revoked_at,
                        SCIM_WIPE_REASON
                    )?;
                    out.push(DeprovisionRecord {
                        id: r.id,
                        user_id: UserId(r.user_id),
                        token_id: r.token_id,
                        cause: r.cause,
                        received_at: r.received_at,
                        sessions_revoked_at: r.sessions_revoked_at,
                        sessions_revoked: r.sessions_revoked,
                        wipes_queued_at: r.wipes_queued_at,
                        wipes_queued: r.wipes_queued,
                        connections_closed_at: r.connections_closed_at,
                        wipes: wipes
                            .into_iter()
                            .map(|w| WipeProgress {
                                device_id: DeviceId(w.device_id),
                                requested_at: w.requested_at,
                                delivered_at: w.delivered_at,
                                acknowledged_at: w.acknowledged_at,
                                closed_reason: w.closed_reason,
                            })
                            .collect(),
                    });
                }
                Ok(out)
            })
        })
        .await
    }
}
