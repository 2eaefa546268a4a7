//! User accounts: creation, lookup, disabling, roles, passwords and second factors.

use ward_domain::audit::{AuditAction, AuditEvent, DetailValue, Outcome};
use ward_domain::ids::{OrgId, PatientId, SessionId, UserId};
use ward_domain::role::Role;

use crate::db::{Conn, exec, fetch, scalar};
use crate::error::{Result, StoreError};
use crate::sessions::revoke_user_sessions;
use crate::{Credentials, NewUser, RequestMeta, Restriction, Store, User, audit, now_ms};

#[derive(sqlx::FromRow)]
pub(crate) struct UserRow {
    id: uuid::Uuid,
    org_id: uuid::Uuid,
    login: String,
    display_name: String,
    role: String,
    patient_id: Option<uuid::Uuid>,
    disabled_at: Option<i64>,
    mfa_enabled: bool,
    password_must_change: bool,
    created_at: i64,
}

impl UserRow {
    pub(crate) fn into_user(self) -> Result<User> {
        Ok(User {
            id: UserId(self.id),
            org_id: OrgId(self.org_id),
            login: self.login,
            display_name: self.display_name,
            role: self.role.parse().map_err(|_| StoreError::Corrupt("users.role"))?,
            patient_id: self.patient_id.map(PatientId),
            disabled: self.disabled_at.is_some(),
            mfa_enabled: self.mfa_enabled,
            password_must_change: self.password_must_change,
            created_at: self.created_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct CredentialRow {
    #[sqlx(flatten)]
    user: UserRow,
    password_hash: String,
    totp_secret: Option<Vec<u8>>,
    totp_last_step: Option<i64>,
    totp_pending_secret: Option<Vec<u8>>,
}

macro_rules! user_select {
    ($rest:literal) => {
        sqlx::AssertSqlSafe(concat!(
            "SELECT id, org_id, login, display_name, role, patient_id, disabled_at, \
             (totp_secret IS NOT NULL OR EXISTS (SELECT 1 FROM webauthn_credentials w WHERE w.user_id = users.id)) AS mfa_enabled, password_must_change, created_at FROM users ",
            $rest
        ))
    };
}

/// Disables an account of the organisation inside the caller's transaction: drops its push
/// tokens, queues a wipe (`deprovisioned`) to each device not yet revoked (which revokes that
/// device's sessions), revokes every other session, and audits `admin.user_disable` (with
/// `via` when another workflow, such as an access review, asked). Returns the revoked sessions.
pub(crate) async fn disable_account(
    c: &mut Conn<'_>,
    org: OrgId,
    id: UserId,
    actor: Option<UserId>,
    via: Option<&'static str>,
    meta: &RequestMeta,
) -> Result<Vec<SessionId>> {
    let now = now_ms();
    exec!(&mut *c, "UPDATE users SET disabled_at = $2, updated_at = $2 WHERE id = $1", id.0, Some(now))?;
    exec!(&mut *c, "DELETE FROM device_push_tokens WHERE user_id = $1", id.0)?;
    // Off the care teams it was on through a SCIM group, at once.
    crate::care_team_groups::sync_user(c, org, id, now, via.unwrap_or("user_disable"), meta).await?;
    // Wipes first: each device's wipe revokes (and its event counts) that device's sessions;
    // what is left (sessions of no device still live) goes next.
    let queued = crate::devices::wipe_user_devices(c, org, id, actor, "deprovisioned", now, meta).await?;
    let wipes = queued.len();
    let mut revoked: Vec<SessionId> = queued.into_iter().flat_map(|w| w.revoked_sessions).collect();
    revoked.extend(revoke_user_sessions(c, id, None, "user_disabled", now).await?);
    let mut ev = admin_event(AuditAction::UserDisable, org, actor, id)
        .detail("sessions_revoked", DetailValue::Int(revoked.len() as i64))
        .detail("wipes_queued", DetailValue::Int(wipes as i64));
    if let Some(via) = via {
        ev = ev.detail("via", DetailValue::Code(via));
    }
    audit::append(c, &ev, meta).await?;
    Ok(revoked)
}

/// Enabled workforce accounts of the organisation (everyone an access review covers), by login.
pub(crate) async fn enabled_workforce(c: &mut Conn<'_>, org: OrgId) -> Result<Vec<User>> {
    fetch!(fetch_all, c, UserRow, user_select!("WHERE org_id = $1 AND disabled_at IS NULL AND role <> 'patient' ORDER BY login"), org.0)?
        .into_iter()
        .map(UserRow::into_user)
        .collect()
}

/// Fails with `State` when `leaving` is the organisation's last active admin: the check every
/// path that disables an admin or takes the role away (access reviews, SCIM) makes inside its
/// write transaction. On PostgreSQL it takes the audit append lock first (every ordinary write
/// batch already holds it from its start, writer.rs), so two such writes from two nodes take
/// turns and the second counts after the first has committed (READ COMMITTED reads a fresh
/// snapshot per statement); SQLite has one writer already.
pub(crate) async fn keep_another_admin(c: &mut Conn<'_>, org: OrgId, leaving: UserId) -> Result<()> {
    audit::lock_appends(c).await?;
    let others = scalar!(
        fetch_one,
        c,
        i64,
        "SELECT COUNT(*) FROM users WHERE org_id = $1 AND role = $2 AND disabled_at IS NULL AND id <> $3",
        org.0,
        Role::Admin.as_str(),
        leaving.0
    )?;
    if others == 0 {
        return Err(StoreError::State("this is the organisation's last active admin: make another account an admin first"));
    }
    Ok(())
}

/// A user of the organisation, or NotFound (also for another tenant's user).
pub(crate) async fn user_in_org(c: &mut Conn<'_>, org: OrgId, id: UserId) -> Result<User> {
    fetch!(fetch_one, c, UserRow, user_select!("WHERE id = $1 AND org_id = $2"), id.0, org.0)?.into_user()
}

fn admin_event(action: AuditAction, org: OrgId, actor: Option<UserId>, target: UserId) -> AuditEvent {
    let mut ev = AuditEvent::new(action, Outcome::Success).target("user", target);
    ev.org_id = Some(org);
    ev.actor = actor;
    ev
}

impl Store {
    /// Creates an account. `actor` is the admin, or `None` for the command line.
    pub async fn create_user(&self, new: NewUser, actor: Option<UserId>, meta: RequestMeta) -> Result<User> {
        self.write(move |mut c| {
            Box::pin(async move {
                if let Some(p) = new.patient_id {
                    let found = scalar!(
                        fetch_optional,
                        &mut c,
                        i32,
                        "SELECT 1 FROM patients WHERE id = $1 AND org_id = $2",
                        p.0,
                        new.org_id.0
                    )?;
                    if found.is_none() {
                        return Err(StoreError::NotFound);
                    }
                }
                let id = UserId::new();
                let n = exec!(
                    &mut c,
                    "INSERT INTO users (id, org_id, login, display_name, role, password_hash, password_must_change, patient_id, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (login) DO NOTHING",
                    id.0,
                    new.org_id.0,
                    new.login.as_str(),
                    new.display_name.as_str(),
                    new.role.as_str(),
                    new.password_hash.as_str(),
                    new.password_must_change,
                    new.patient_id.map(|p| p.0),
                    now_ms(),
                )?;
                if n == 0 {
                    return Err(StoreError::Conflict("login"));
                }
                let ev = admin_event(AuditAction::UserCreate, new.org_id, actor, id)
                    .detail("role", DetailValue::Code(new.role.as_str()));
                audit::append(&mut c, &ev, &meta).await?;
                user_in_org(&mut c, new.org_id, id).await
            })
        })
        .await
    }

    /// The secrets needed to check a sign-in, by login name (any tenant: login names are global).
    pub async fn credentials(&self, login: &str) -> Result<Option<Credentials>> {
        let login = login.to_owned();
        self.read(|mut c| {
            Box::pin(async move {
                let row = fetch!(
                    fetch_optional,
                    &mut c,
                    CredentialRow,
                    "SELECT id, org_id, login, display_name, role, patient_id, disabled_at, \
                     (totp_secret IS NOT NULL OR EXISTS (SELECT 1 FROM webauthn_credentials w WHERE w.user_id = users.id)) AS mfa_enabled, password_must_change, created_at, \
                     password_hash, totp_secret, totp_last_step, totp_pending_secret FROM users WHERE login = $1",
                    login
                )?;
                row.map(|r| {
                    Ok(Credentials {
                        user: r.user.into_user()?,
                        password_hash: r.password_hash,
                        totp_secret: r.totp_secret,
                        totp_last_step: r.totp_last_step,
                        totp_pending_secret: r.totp_pending_secret,
                    })
                })
                .transpose()
            })
        })
        .await
    }

    /// The secrets of a user by id (for second-factor checks on a signed-in session).
    pub async fn credentials_by_id(&self, org: OrgId, id: UserId) -> Result<Credentials> {
        let user = self.user(org, id).await?;
        self.credentials(&user.login).await?.ok_or(StoreError::NotFound)
    }

    /// A user of the organisation.
    pub async fn user(&self, org: OrgId, id: UserId) -> Result<User> {
        self.read(|mut c| Box::pin(async move { user_in_org(&mut c, org, id).await })).await
    }

    /// Users of the organisation ordered by login, after `after_login`, at most `limit`.
    pub async fn users(&self, org: OrgId, after_login: Option<String>, limit: u32) -> Result<Vec<User>> {
        self.read(|mut c| {
            Box::pin(async move {
                fetch!(
                    fetch_all,
                    &mut c,
                    UserRow,
                    user_select!("WHERE org_id = $1 AND login > $2 ORDER BY login LIMIT $3"),
                    org.0,
                    after_login.unwrap_or_default(),
                    i64::from(limit)
                )?
                .into_iter()
                .map(UserRow::into_user)
                .collect()
            })
        })
        .await
    }

    /// Disables or re-enables a user; disabling revokes every session and queues a wipe
    /// (`deprovisioned`) to each of the user's devices not yet revoked, each audited, in the
    /// same transaction. Returns the revoked sessions.
    pub async fn set_user_disabled(
        &self,
        org: OrgId,
        id: UserId,
        disabled: bool,
        actor: Option<UserId>,
        meta: RequestMeta,
    ) -> Result<Vec<SessionId>> {
        self.write(move |mut c| {
            Box::pin(async move {
                let account = user_in_org(&mut c, org, id).await?;
                if disabled {
                    if account.role == Role::Admin && !account.disabled {
                        keep_another_admin(&mut c, org, id).await?;
                    }
                    return disable_account(&mut c, org, id, actor, None, &meta).await;
                }
                exec!(&mut c, "UPDATE users SET disabled_at = NULL, updated_at = $2 WHERE id = $1", id.0, now_ms())?;
                if account.disabled {
                    // Back on the care teams of its attached groups.
                    crate::care_team_groups::sync_user(&mut c, org, id, now_ms(), "user_enable", &meta).await?;
                }
                let ev = admin_event(AuditAction::UserEnable, org, actor, id).detail("sessions_revoked", DetailValue::Int(0));
                audit::append(&mut c, &ev, &meta).await?;
                Ok(Vec::new())
            })
        })
        .await
    }

    /// Changes a user's role.
    pub async fn set_user_role(&self, org: OrgId, id: UserId, role: Role, actor: UserId, meta: RequestMeta) -> Result<User> {
        self.write(move |mut c| {
            Box::pin(async move {
                let before = user_in_org(&mut c, org, id).await?;
                if before.role == Role::Patient || role == Role::Patient {
                    return Err(StoreError::State("patient accounts cannot change role"));
                }
                if before.role == Role::Admin && role != Role::Admin && !before.disabled {
                    keep_another_admin(&mut c, org, id).await?;
                }
                exec!(&mut c, "UPDATE users SET role = $2, updated_at = $3 WHERE id = $1", id.0, role.as_str(), now_ms())?;
                if matches!(role, Role::Admin | Role::ComplianceOfficer) {
                    // Only the organisation's reviewers judge these roles: an open delegation of
                    // this account's review goes back to them.
                    exec!(
                        &mut c,
                        "UPDATE access_review_items SET reviewer_id = NULL WHERE user_id = $1 AND decision IS NULL \
                         AND campaign_id IN (SELECT id FROM access_review_campaigns WHERE status = 'open')",
                        id.0
                    )?;
                }
                let ev = admin_event(AuditAction::UserRole, org, Some(actor), id)
                    .detail("from", DetailValue::Code(before.role.as_str()))
                    .detail("to", DetailValue::Code(role.as_str()));
                audit::append(&mut c, &ev, &meta).await?;
                user_in_org(&mut c, org, id).await
            })
        })
        .await
    }

    /// Sets a one-time password (which must be changed at next sign-in) and revokes every
    /// session of the user. Returns the revoked sessions.
    pub async fn reset_password(
        &self,
        org: OrgId,
        id: UserId,
        password_hash: String,
        actor: Option<UserId>,
        meta: RequestMeta,
    ) -> Result<Vec<SessionId>> {
        self.write(move |mut c| {
            Box::pin(async move {
                user_in_org(&mut c, org, id).await?;
                exec!(&mut c, "UPDATE users SET password_hash = $2, password_must_change = $3 WHERE id = $1", id.0, password_hash, true)?;
                let revoked = revoke_user_sessions(&mut c, id, None, "password_reset", now_ms()).await?;
                let ev = admin_event(AuditAction::PasswordReset, org, actor, id);
                audit::append(&mut c, &ev, &meta).await?;
                Ok(revoked)
            })
        })
        .await
    }

    /// A user changes their own password: the current session's password-change restriction
    /// gives way to `next_restriction` (MFA enrolment, where policy requires it) and every
    /// other session is revoked.
    pub async fn change_password(
        &self,
        org: OrgId,
        id: UserId,
        current_session: SessionId,
        password_hash: String,
        next_restriction: Option<Restriction>,
        meta: RequestMeta,
    ) -> Result<Vec<SessionId>> {
        self.write(move |mut c| {
            Box::pin(async move {
                exec!(&mut c, "UPDATE users SET password_hash = $2, password_must_change = $3 WHERE id = $1", id.0, password_hash, false)?;
                // The password step is done; a pending MFA enrolment may still hold the session.
                exec!(
                    &mut c,
                    "UPDATE sessions SET restriction = $3 WHERE id = $1 AND restriction = $2",
                    current_session.0,
                    Restriction::PasswordChange.as_str(),
                    next_restriction.map(Restriction::as_str)
                )?;
                let revoked = revoke_user_sessions(&mut c, id, Some(current_session), "password_changed", now_ms()).await?;
                let ev = admin_event(AuditAction::PasswordChange, org, Some(id), id);
                audit::append(&mut c, &ev, &meta).await?;
                Ok(revoked)
            })
        })
        .await
    }

    /// Stores a TOTP secret awaiting confirmation.
    pub async fn begin_totp(&self, org: OrgId, id: UserId, secret: Vec<u8>, meta: RequestMeta) -> Result<()> {
        self.write(move |mut c| {
            Box::pin(async move {
                exec!(&mut c, "UPDATE users SET totp_pending_secret = $2 WHERE id = $1", id.0, secret)?;
                audit::append(&mut c, &admin_event(AuditAction::TotpEnroll, org, Some(id), id), &meta).await?;
                Ok(())
            })
        })
        .await
    }

    /// Activates the pending TOTP secret after a code from it was verified at `step`, stores
    /// the recovery code hashes (an empty list keeps the existing codes: TOTP added next to a
    /// WebAuthn key does not replace them), and lifts an enrolment restriction from the current session.
    pub async fn confirm_totp(
        &self,
        org: OrgId,
        id: UserId,
        current_session: SessionId,
        step: i64,
        recovery_hashes: Vec<Vec<u8>>,
        meta: RequestMeta,
    ) -> Result<()> {
        self.write(move |mut c| {
            Box::pin(async move {
                let n = exec!(
                    &mut c,
                    "UPDATE users SET totp_secret = totp_pending_secret, totp_pending_secret = NULL, totp_last_step = $2 \
                     WHERE id = $1 AND totp_pending_secret IS NOT NULL",
                    id.0,
                    step
                )?;
                if n == 0 {
                    return Err(StoreError::State("no TOTP enrolment is pending"));
                }
                if !recovery_hashes.is_empty() {
                    replace_recovery_codes(&mut c, id, &recovery_hashes).await?;
                }
                let now = now_ms();
                exec!(
                    &mut c,
                    "UPDATE sessions SET restriction = NULL, mfa_verified_at = $3 WHERE id = $1 AND (restriction IS NULL OR restriction = $2)",
                    current_session.0,
                    Restriction::MfaEnrollment.as_str(),
                    now
                )?;
                audit::append(&mut c, &admin_event(AuditAction::TotpConfirm, org, Some(id), id), &meta).await?;
                Ok(())
            })
        })
        .await
    }

    /// Removes TOTP and recovery codes.
    pub async fn remove_totp(&self, org: OrgId, id: UserId, actor: UserId, meta: RequestMeta) -> Result<()> {
        self.write(move |mut c| {
            Box::pin(async move {
                exec!(
                    &mut c,
                    "UPDATE users SET totp_secret = NULL, totp_pending_secret = NULL, totp_last_step = NULL WHERE id = $1",
                    id.0
                )?;
                exec!(&mut c, "DELETE FROM recovery_codes WHERE user_id = $1", id.0)?;
                audit::append(&mut c, &admin_event(AuditAction::TotpRemove, org, Some(actor), id), &meta).await?;
                Ok(())
            })
        })
        .await
    }

    /// Replaces the recovery codes.
    pub async fn set_recovery_codes(&self, org: OrgId, id: UserId, hashes: Vec<Vec<u8>>, meta: RequestMeta) -> Result<()> {
        self.write(move |mut c| {
            Box::pin(async move {
                replace_recovery_codes(&mut c, id, &hashes).await?;
                let ev = admin_event(AuditAction::RecoveryCodes, org, Some(id), id).detail("count", DetailValue::Int(hashes.len() as i64));
                audit::append(&mut c, &ev, &meta).await?;
                Ok(())
            })
        })
        .await
    }
}

pub(crate) async fn replace_recovery_codes(c: &mut Conn<'_>, id: UserId, hashes: &[Vec<u8>]) -> Result<()> {
    exec!(c, "DELETE FROM recovery_codes WHERE user_id = $1", id.0)?;
    for h in hashes {
        exec!(c, "INSERT INTO recovery_codes (user_id, code_hash) VALUES ($1, $2)", id.0, h.as_slice())?;
    }
    Ok(())
}

/// Accepts a TOTP step only if it is newer than the last one used: each code works once.
pub(crate) async fn mark_totp_step(c: &mut Conn<'_>, id: UserId, step: i64) -> Result<bool> {
    let n = exec!(c, "UPDATE users SET totp_last_step = $2 WHERE id = $1 AND (totp_last_step IS NULL OR totp_last_step < $2)", id.0, step)?;
    Ok(n == 1)
}

/// Spends a recovery code; false if it is unknown or already used.
pub(crate) async fn spend_recovery_code(c: &mut Conn<'_>, id: UserId, hash: &[u8]) -> Result<bool> {
    let n =
        exec!(c, "UPDATE recovery_codes SET used_at = $3 WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL", id.0, hash, now_ms())?;
    Ok(n == 1)
}
