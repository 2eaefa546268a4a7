//! Sign-in, sessions and tokens: login throttling, second-factor challenges, session creation,
//! access-token lookup, refresh-token rotation with reuse detection, and revocation.

use ward_domain::audit::{AuditAction, AuditEvent, DetailValue, Outcome};
use ward_domain::ids::{DeviceId, OrgId, PatientId, SessionId, UserId};
use ward_domain::lockout::Throttle;

use crate::db::{Conn, exec, fetch, scalar};
use crate::error::{Result, StoreError};
use crate::users::{mark_totp_step, spend_recovery_code};
use crate::{
    AuthSession, DeviceClaim, NewSession, RefreshOutcome, RequestMeta, Restriction, SessionInfo, Store, TokenHashes, audit, now_ms,
};

/// A second-factor challenge issued after a correct password.
#[derive(Debug, Clone)]
pub struct Challenge {
    /// The user.
    pub user_id: UserId,
    /// Their tenant.
    pub org_id: OrgId,
    /// Their login name (for throttling).
    pub login: String,
    /// The device claimed at sign-in.
    pub device: DeviceClaim,
    /// The user's TOTP secret.
    pub totp_secret: Option<Vec<u8>>,
    /// Whether the password is one-time.
    pub password_must_change: bool,
}

/// The second factor presented to answer a challenge, already checked where it can be.
#[derive(Debug, Clone)]
pub enum SecondFactor {
    /// A TOTP code that verified at this time step (replay is checked in the transaction).
    TotpStep(i64),
    /// The SHA-256 of a recovery code (spent in the transaction).
    RecoveryCode(Vec<u8>),
    /// A verified WebAuthn assertion (its counter is checked and stored in the transaction).
    WebAuthn(crate::webauthn::WebAuthnUse),
    /// Nothing valid was presented.
    Invalid,
}

#[derive(sqlx::FromRow)]
struct ThrottleRow {
    failures: i64,
    locked_until: i64,
}

#[derive(sqlx::FromRow)]
struct AuthRow {
    session_id: uuid::Uuid,
    user_id: uuid::Uuid,
    org_id: uuid::Uuid,
    device_id: uuid::Uuid,
    role: String,
    patient_id: Option<uuid::Uuid>,
    restriction: Option<String>,
    created_at: i64,
    last_active_at: i64,
    expires_at: i64,
    token_expires_at: i64,
    revoked_at: Option<i64>,
    disabled_at: Option<i64>,
    idle_timeout_secs: i64,
    mfa_verified_at: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct RefreshRow {
    session_id: uuid::Uuid,
    restriction: Option<String>,
    used_at: Option<i64>,
    user_id: uuid::Uuid,
    org_id: uuid::Uuid,
    device_id: uuid::Uuid,
    last_active_at: i64,
    expires_at: i64,
    revoked_at: Option<i64>,
    disabled_at: Option<i64>,
    idle_timeout_secs: i64,
}

#[derive(sqlx::FromRow)]
struct ChallengeRow {
    user_id: uuid::Uuid,
    org_id: uuid::Uuid,
    login: String,
    device_id: Option<uuid::Uuid>,
    device_name: String,
    device_platform: String,
    totp_secret: Option<Vec<u8>>,
    password_must_change: bool,
}

#[derive(sqlx::FromRow)]
struct SessionInfoRow {
    id: uuid::Uuid,
    device_id: uuid::Uuid,
    name: String,
    platform: String,
    created_at: i64,
    last_active_at: i64,
    source_ip: Option<String>,
}

pub(crate) fn login_event(action: AuditAction, outcome: Outcome, org: Option<OrgId>, user: Option<UserId>) -> AuditEvent {
    let mut ev = AuditEvent::new(action, outcome);
    ev.org_id = org;
    ev.actor = user;
    if let Some(u) = user {
        ev = ev.target("user", u);
    }
    ev
}

pub(crate) async fn throttle_of(c: &mut Conn<'_>, login: &str) -> Result<Throttle> {
    let row = fetch!(fetch_optional, c, ThrottleRow, "SELECT failures, locked_until FROM login_throttle WHERE login = $1", login)?;
    Ok(row.map_or_else(Throttle::default, |r| Throttle {
        failures: u32::try_from(r.failures).unwrap_or(u32::MAX),
        locked_until_ms: r.locked_until,
    }))
}

pub(crate) async fn save_throttle(c: &mut Conn<'_>, login: &str, t: Throttle) -> Result<()> {
    exec!(
        c,
        "INSERT INTO login_throttle (login, failures, locked_until) VALUES ($1, $2, $3) \
         ON CONFLICT (login) DO UPDATE SET failures = excluded.failures, locked_until = excluded.locked_until",
        login,
        i64::from(t.failures),
        t.locked_until_ms
    )?;
    Ok(())
}

/// Revokes the user's live sessions (except `keep`); returns their ids.
pub(crate) async fn revoke_user_sessions(
    c: &mut Conn<'_>,
    user: UserId,
    keep: Option<SessionId>,
    reason: &'static str,
    now: i64,
) -> Result<Vec<SessionId>> {
    let keep = keep.map_or(uuid::Uuid::nil(), |s| s.0);
    let ids =
        scalar!(fetch_all, c, uuid::Uuid, "SELECT id FROM sessions WHERE user_id = $1 AND revoked_at IS NULL AND id <> $2", user.0, keep)?;
    exec!(
        c,
        "UPDATE sessions SET revoked_at = $3, revoke_reason = $4 WHERE user_id = $1 AND revoked_at IS NULL AND id <> $2",
        user.0,
        keep,
        now,
        reason
    )?;
    Ok(ids.into_iter().map(SessionId).collect())
}

async fn revoke_session_row(c: &mut Conn<'_>, session: SessionId, reason: &'static str, now: i64) -> Result<bool> {
    let n =
        exec!(c, "UPDATE sessions SET revoked_at = $2, revoke_reason = $3 WHERE id = $1 AND revoked_at IS NULL", session.0, now, reason)?;
    Ok(n == 1)
}

async fn insert_tokens(c: &mut Conn<'_>, session: SessionId, tokens: &TokenHashes, now: i64) -> Result<()> {
    exec!(
        c,
        "INSERT INTO access_tokens (token_hash, session_id, expires_at) VALUES ($1, $2, $3)",
        tokens.access.as_slice(),
        session.0,
        tokens.access_expires_at
    )?;
    exec!(
        c,
        "INSERT INTO refresh_tokens (token_hash, session_id, issued_at) VALUES ($1, $2, $3)",
        tokens.refresh.as_slice(),
        session.0,
        now
    )?;
    Ok(())
}

/// Registers the claimed device (or checks the named one is the user's and not revoked) and
/// creates the session with its tokens. Returns the session and device ids.
pub(crate) async fn open_session(
    c: &mut Conn<'_>,
    org: OrgId,
    new: &NewSession,
    meta: &RequestMeta,
    now: i64,
) -> Result<(SessionId, DeviceId)> {
    let device = match new.device.id {
        Some(id) => {
            let ok = scalar!(
                fetch_optional,
                c,
                i32,
                "SELECT 1 FROM devices WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
                id.0,
                new.user_id.0
            )?;
            if ok.is_none() {
                return Err(StoreError::State("unknown or revoked device"));
            }
            exec!(c, "UPDATE devices SET last_seen_at = $2 WHERE id = $1", id.0, now)?;
            id
        }
        None => {
            let id = DeviceId::new();
            exec!(
                c,
                "INSERT INTO devices (id, user_id, name, platform, created_at, last_seen_at) VALUES ($1, $2, $3, $4, $5, $5)",
                id.0,
                new.user_id.0,
                new.device.name.as_str(),
                new.device.platform.as_str(),
                now
            )?;
            id
        }
    };
    let session = SessionId::new();
    exec!(
        c,
        "INSERT INTO sessions (id, user_id, org_id, device_id, created_at, last_active_at, expires_at, restriction, mfa_verified_at, source_ip) \
         VALUES ($1, $2, $3, $4, $5, $5, $6, $7, $8, $9)",
        session.0,
        new.user_id.0,
        org.0,
        device.0,
        now,
        new.expires_at,
        new.restriction.map(Restriction::as_str),
        new.mfa_verified.then_some(now),
        meta.source_ip.as_deref()
    )?;
    insert_tokens(c, session, &new.tokens, now).await?;
    Ok((session, device))
}

impl Store {
    /// The throttle state of a login name (existing or not).
    pub async fn throttle(&self, login: &str) -> Result<Throttle> {
        let login = login.to_owned();
        self.read(|mut c| Box::pin(async move { throttle_of(&mut c, &login).await })).await
    }

    /// Records a refused sign-in: bumps the login name's throttle and audits the failure.
    /// `locked` says the attempt was refused unchecked because the name is locked.
    pub async fn login_failed(
        &self,
        login: String,
        user: Option<(OrgId, UserId)>,
        reason: &'static str,
        locked: bool,
        meta: RequestMeta,
    ) -> Result<Throttle> {
        self.write(move |mut c| {
            Box::pin(async move {
                let now = now_ms();
                let before = throttle_of(&mut c, &login).await?;
                let after = if locked { before } else { before.after_failure(now) };
                save_throttle(&mut c, &login, after).await?;
                let ev = login_event(AuditAction::Login, Outcome::Failure, user.map(|u| u.0), user.map(|u| u.1))
                    .detail("reason", DetailValue::Code(reason))
                    .detail("failures", DetailValue::Int(i64::from(after.failures)));
                audit::append(&mut c, &ev, &meta).await?;
                Ok(after)
            })
        })
        .await
    }

    /// Completes a password sign-in without a second factor: resets the throttle, registers
    /// the device and opens the session.
    pub async fn login(&self, org: OrgId, login: String, new: NewSession, meta: RequestMeta) -> Result<(SessionId, DeviceId)> {
        self.write(move |mut c| {
            Box::pin(async move {
                let now = now_ms();
                let disabled = scalar!(fetch_one, &mut c, Option<i64>, "SELECT disabled_at FROM users WHERE id = $1", new.user_id.0)?;
                if disabled.is_some() {
                    return Err(StoreError::State("account disabled"));
                }
                save_throttle(&mut c, &login, Throttle::default()).await?;
                let (session, device) = open_session(&mut c, org, &new, &meta, now).await?;
                let mut ev = login_event(AuditAction::Login, Outcome::Success, Some(org), Some(new.user_id))
                    .detail("session", DetailValue::Id(session.0))
                    .detail("mfa", DetailValue::Bool(new.mfa_verified));
                ev.device = Some(device);
                audit::append(&mut c, &ev, &meta).await?;
                Ok((session, device))
            })
        })
        .await
    }

    /// Stores a second-factor challenge after a correct password (audited as a partial sign-in).
    pub async fn create_challenge(
        &self,
        org: OrgId,
        user: UserId,
        token_hash: Vec<u8>,
        device: DeviceClaim,
        expires_at: i64,
        meta: RequestMeta,
    ) -> Result<()> {
        self.write(move |mut c| {
            Box::pin(async move {
                exec!(
                    &mut c,
                    "INSERT INTO login_challenges (token_hash, user_id, device_id, device_name, device_platform, expires_at, failures) \
                     VALUES ($1, $2, $3, $4, $5, $6, 0)",
                    token_hash.as_slice(),
                    user.0,
                    device.id.map(|d| d.0),
                    device.name.as_str(),
                    device.platform.as_str(),
                    expires_at
                )?;
                let ev = login_event(AuditAction::Login, Outcome::Success, Some(org), Some(user))
                    .detail("stage", DetailValue::Code("password_ok_mfa_pending"));
                audit::append(&mut c, &ev, &meta).await?;
                Ok(())
            })
        })
        .await
    }

    /// A live challenge by its token hash.
    pub async fn challenge(&self, token_hash: Vec<u8>) -> Result<Option<Challenge>> {
        self.read(|mut c| {
            Box::pin(async move {
                let row = fetch!(
                    fetch_optional,
                    &mut c,
                    ChallengeRow,
                    "SELECT ch.user_id, u.org_id, u.login, ch.device_id, ch.device_name, ch.device_platform, u.totp_secret, \
                     u.password_must_change FROM login_challenges ch JOIN users u ON u.id = ch.user_id \
                     WHERE ch.token_hash = $1 AND ch.expires_at > $2 AND u.disabled_at IS NULL",
                    token_hash.as_slice(),
                    now_ms()
                )?;
                Ok(row.map(|r| Challenge {
                    user_id: UserId(r.user_id),
                    org_id: OrgId(r.org_id),
                    login: r.login,
                    device: DeviceClaim { id: r.device_id.map(DeviceId), name: r.device_name, platform: r.device_platform },
                    totp_secret: r.totp_secret,
                    password_must_change: r.password_must_change,
                }))
            })
        })
        .await
    }

    /// Answers a challenge. On success the challenge is consumed and the session opened; on
    /// failure the challenge counts the miss (five end it) and so does the login throttle.
    pub async fn answer_challenge(
        &self,
        token_hash: Vec<u8>,
        challenge: Challenge,
        factor: SecondFactor,
        new: NewSession,
        meta: RequestMeta,
    ) -> Result<Option<(SessionId, DeviceId)>> {
        self.write(move |mut c| {
            Box::pin(async move {
                let now = now_ms();
                let live = scalar!(
                    fetch_optional,
                    &mut c,
                    i64,
                    "SELECT failures FROM login_challenges WHERE token_hash = $1 AND expires_at > $2",
                    token_hash.as_slice(),
                    now
                )?;
                if live.is_none() {
                    return Err(StoreError::NotFound);
                }
                let (accepted, method) = match &factor {
                    SecondFactor::TotpStep(step) => (mark_totp_step(&mut c, challenge.user_id, *step).await?, "totp"),
                    SecondFactor::RecoveryCode(h) => (spend_recovery_code(&mut c, challenge.user_id, h).await?, "recovery_code"),
                    SecondFactor::WebAuthn(u) => (crate::webauthn::use_credential(&mut c, challenge.user_id, u, now).await?, "webauthn"),
                    SecondFactor::Invalid => (false, "invalid"),
                };
                let user = Some(challenge.user_id);
                if !accepted {
                    exec!(&mut c, "UPDATE login_challenges SET failures = failures + 1 WHERE token_hash = $1", token_hash.as_slice())?;
                    exec!(&mut c, "DELETE FROM login_challenges WHERE token_hash = $1 AND failures >= 5", token_hash.as_slice())?;
                    let t = throttle_of(&mut c, &challenge.login).await?.after_failure(now);
                    save_throttle(&mut c, &challenge.login, t).await?;
                    let ev = login_event(AuditAction::MfaVerify, Outcome::Failure, Some(challenge.org_id), user)
                        .detail("method", DetailValue::Code(method));
                    audit::append(&mut c, &ev, &meta).await?;
                    return Ok(None);
                }
                exec!(&mut c, "DELETE FROM login_challenges WHERE token_hash = $1", token_hash.as_slice())?;
                save_throttle(&mut c, &challenge.login, Throttle::default()).await?;
                let (session, device) = open_session(&mut c, challenge.org_id, &new, &meta, now).await?;
                crate::oidc::bind_challenge_session(&mut c, &token_hash, session, now).await?;
                let mut ev = login_event(AuditAction::MfaVerify, Outcome::Success, Some(challenge.org_id), user)
                    .detail("method", DetailValue::Code(method))
                    .detail("session", DetailValue::Id(session.0));
                ev.device = Some(device);
                audit::append(&mut c, &ev, &meta).await?;
                Ok(Some((session, device)))
            })
        })
        .await
    }

    /// Step-up: a signed-in user verifies a second factor again before a sensitive action.
    /// On success the session's `mfa_verified_at` becomes now and the login name's throttle is
    /// reset; on failure the throttle counts the miss exactly as a wrong code at sign-in does.
    /// Both are audited (`auth.step_up`). Returns whether the factor was accepted.
    pub async fn step_up(
        &self,
        org: OrgId,
        user: UserId,
        login: String,
        session: SessionId,
        factor: SecondFactor,
        meta: RequestMeta,
    ) -> Result<bool> {
        self.write(move |mut c| {
            Box::pin(async move {
                let now = now_ms();
                let (accepted, method) = match &factor {
                    SecondFactor::TotpStep(step) => (mark_totp_step(&mut c, user, *step).await?, "totp"),
                    SecondFactor::RecoveryCode(h) => (spend_recovery_code(&mut c, user, h).await?, "recovery_code"),
                    SecondFactor::WebAuthn(u) => (crate::webauthn::use_credential(&mut c, user, u, now).await?, "webauthn"),
                    SecondFactor::Invalid => (false, "invalid"),
                };
                let ev = login_event(AuditAction::StepUp, Outcome::Success, Some(org), Some(user))
                    .detail("method", DetailValue::Code(method))
                    .detail("session", DetailValue::Id(session.0));
                if !accepted {
                    let t = throttle_of(&mut c, &login).await?.after_failure(now);
                    save_throttle(&mut c, &login, t).await?;
                    let ev = AuditEvent { outcome: Outcome::Failure, ..ev }.detail("failures", DetailValue::Int(i64::from(t.failures)));
                    audit::append(&mut c, &ev, &meta).await?;
                    return Ok(false);
                }
                save_throttle(&mut c, &login, Throttle::default()).await?;
                exec!(&mut c, "UPDATE sessions SET mfa_verified_at = $2 WHERE id = $1 AND user_id = $3", session.0, now, user.0)?;
                audit::append(&mut c, &ev, &meta).await?;
                Ok(true)
            })
        })
        .await
    }

    /// The session behind an access-token hash, if the token exists (validity is the caller's call).
    pub async fn session_by_access(&self, token_hash: Vec<u8>) -> Result<Option<AuthSession>> {
        self.read(|mut c| {
            Box::pin(async move {
                let row = fetch!(
                    fetch_optional,
                    &mut c,
                    AuthRow,
                    "SELECT s.id AS session_id, s.user_id, s.org_id, s.device_id, u.role, u.patient_id, s.restriction, \
                     s.created_at, s.last_active_at, s.expires_at, a.expires_at AS token_expires_at, s.revoked_at, \
                     u.disabled_at, o.idle_timeout_secs, s.mfa_verified_at \
                     FROM access_tokens a JOIN sessions s ON s.id = a.session_id JOIN users u ON u.id = s.user_id \
                     JOIN organizations o ON o.id = s.org_id WHERE a.token_hash = $1",
                    token_hash.as_slice()
                )?;
                row.map(|r| {
                    Ok(AuthSession {
                        session_id: SessionId(r.session_id),
                        user_id: UserId(r.user_id),
                        org_id: OrgId(r.org_id),
                        device_id: DeviceId(r.device_id),
                        role: r.role.parse().map_err(|_| StoreError::Corrupt("users.role"))?,
                        patient_id: r.patient_id.map(PatientId),
                        restriction: r.restriction.as_deref().and_then(Restriction::parse),
                        created_at: r.created_at,
                        last_active_at: r.last_active_at,
                        expires_at: r.expires_at,
                        token_expires_at: r.token_expires_at,
                        revoked: r.revoked_at.is_some(),
                        user_disabled: r.disabled_at.is_some(),
                        idle_timeout_secs: r.idle_timeout_secs,
                        mfa_verified_at: r.mfa_verified_at,
                    })
                })
                .transpose()
            })
        })
        .await
    }

    /// Records activity on a session (the idle clock restarts).
    pub async fn touch_session(&self, session: SessionId, now: i64) -> Result<()> {
        self.write(move |mut c| {
            Box::pin(async move {
                exec!(&mut c, "UPDATE sessions SET last_active_at = $2 WHERE id = $1 AND last_active_at < $2", session.0, now)?;
                Ok(())
            })
        })
        .await
    }

    /// Exchanges a refresh token for new tokens. A token presented twice revokes its whole
    /// family (the session); so does one presented from a different device.
    pub async fn refresh(
        &self,
        old_refresh_hash: Vec<u8>,
        device: DeviceId,
        tokens: TokenHashes,
        meta: RequestMeta,
    ) -> Result<RefreshOutcome> {
        self.write(move |mut c| {
            Box::pin(async move {
                let now = now_ms();
                let Some(row) = fetch!(
                    fetch_optional,
                    &mut c,
                    RefreshRow,
                    "SELECT r.session_id, s.restriction, r.used_at, s.user_id, s.org_id, s.device_id, s.last_active_at, s.expires_at, \
                     s.revoked_at, u.disabled_at, o.idle_timeout_secs FROM refresh_tokens r \
                     JOIN sessions s ON s.id = r.session_id JOIN users u ON u.id = s.user_id \
                     JOIN organizations o ON o.id = s.org_id WHERE r.token_hash = $1",
                    old_refresh_hash.as_slice()
                )?
                else {
                    return Ok(RefreshOutcome::Rejected);
                };
                let session = SessionId(row.session_id);
                let user = UserId(row.user_id);
                let org = OrgId(row.org_id);
                let mut ev = login_event(AuditAction::TokenRefresh, Outcome::Failure, Some(org), Some(user))
                    .detail("session", DetailValue::Id(session.0));
                ev.device = Some(DeviceId(row.device_id));
                if row.revoked_at.is_some() || row.disabled_at.is_some() || row.expires_at <= now {
                    audit::append(&mut c, &ev.detail("reason", DetailValue::Code("session_ended")), &meta).await?;
                    return Ok(RefreshOutcome::Rejected);
                }
                if row.used_at.is_some() || row.device_id != device.0 {
                    revoke_session_row(&mut c, session, "refresh_reuse", now).await?;
                    ev.action = AuditAction::RefreshReuse;
                    let why = if row.used_at.is_some() { "token_reused" } else { "device_mismatch" };
                    audit::append(&mut c, &ev.detail("reason", DetailValue::Code(why)), &meta).await?;
                    return Ok(RefreshOutcome::Reused { session_id: session, user_id: user });
                }
                if now - row.last_active_at > row.idle_timeout_secs * 1000 {
                    revoke_session_row(&mut c, session, "idle_timeout", now).await?;
                    ev.action = AuditAction::SessionIdleTimeout;
                    ev.outcome = Outcome::Success;
                    audit::append(&mut c, &ev, &meta).await?;
                    return Ok(RefreshOutcome::Rejected);
                }
                exec!(&mut c, "UPDATE refresh_tokens SET used_at = $2 WHERE token_hash = $1", old_refresh_hash.as_slice(), now)?;
                // Older access tokens of the family stop working as soon as a new one is issued.
                exec!(&mut c, "DELETE FROM access_tokens WHERE session_id = $1", session.0)?;
                insert_tokens(&mut c, session, &tokens, now).await?;
                ev.outcome = Outcome::Success;
                audit::append(&mut c, &ev, &meta).await?;
                let restriction = row.restriction.as_deref().and_then(Restriction::parse);
                Ok(RefreshOutcome::Rotated { session_id: session, user_id: user, restriction })
            })
        })
        .await
    }

    /// Revokes one session of the organisation. `owner` limits it to that user's sessions
    /// (a user revoking their own); `None` is an admin. Returns the session's user.
    #[allow(clippy::too_many_arguments)]
    pub async fn revoke_session(
        &self,
        org: OrgId,
        session: SessionId,
        owner: Option<UserId>,
        actor: Option<UserId>,
        action: AuditAction,
        reason: &'static str,
        meta: RequestMeta,
    ) -> Result<UserId> {
        self.write(move |mut c| {
            Box::pin(async move {
                let user = scalar!(
                    fetch_optional,
                    &mut c,
                    uuid::Uuid,
                    "SELECT user_id FROM sessions WHERE id = $1 AND org_id = $2 AND revoked_at IS NULL",
                    session.0,
                    org.0
                )?
                .map(UserId)
                .ok_or(StoreError::NotFound)?;
                if owner.is_some_and(|o| o != user) {
                    return Err(StoreError::NotFound);
                }
                revoke_session_row(&mut c, session, reason, now_ms()).await?;
                let mut ev = AuditEvent::new(action, Outcome::Success)
                    .target("session", session)
                    .detail("user", DetailValue::Id(user.0))
                    .detail("reason", DetailValue::Code(reason));
                ev.org_id = Some(org);
                ev.actor = actor;
                audit::append(&mut c, &ev, &meta).await?;
                Ok(user)
            })
        })
        .await
    }

    /// Revokes every session of a user of the organisation; returns the revoked sessions.
    pub async fn revoke_all_sessions(&self, org: OrgId, user: UserId, actor: UserId, meta: RequestMeta) -> Result<Vec<SessionId>> {
        self.write(move |mut c| {
            Box::pin(async move {
                crate::users::user_in_org(&mut c, org, user).await?;
                let revoked = revoke_user_sessions(&mut c, user, None, "admin_revoked", now_ms()).await?;
                let mut ev = AuditEvent::new(AuditAction::SessionsRevokeAll, Outcome::Success)
                    .target("user", user)
                    .detail("sessions_revoked", DetailValue::Int(revoked.len() as i64));
                ev.org_id = Some(org);
                ev.actor = Some(actor);
                audit::append(&mut c, &ev, &meta).await?;
                Ok(revoked)
            })
        })
        .await
    }

    /// The user's live sessions, newest first.
    pub async fn sessions(&self, org: OrgId, user: UserId) -> Result<Vec<SessionInfo>> {
        self.read(|mut c| {
            Box::pin(async move {
                let rows = fetch!(
                    fetch_all,
                    &mut c,
                    SessionInfoRow,
                    "SELECT s.id, s.device_id, d.name, d.platform, s.created_at, s.last_active_at, s.source_ip \
                     FROM sessions s JOIN devices d ON d.id = s.device_id \
                     WHERE s.user_id = $1 AND s.org_id = $2 AND s.revoked_at IS NULL AND s.expires_at > $3 \
                     ORDER BY s.created_at DESC",
                    user.0,
                    org.0,
                    now_ms()
                )?;
                Ok(rows
                    .into_iter()
                    .map(|r| SessionInfo {
                        id: SessionId(r.id),
                        device_id: DeviceId(r.device_id),
                        device_name: r.name,
                        device_platform: r.platform,
                        created_at: r.created_at,
                        last_active_at: r.last_active_at,
                        source_ip: r.source_ip,
                    })
                    .collect())
            })
        })
        .await
    }

    /// Whether a session may still be used: not revoked, not past its lifetime, not idle, and
    /// its user not disabled. Open WebSocket connections check this periodically.
    pub async fn session_alive(&self, session: SessionId) -> Result<bool> {
        self.read(|mut c| {
            Box::pin(async move {
                let now = now_ms();
                let alive = scalar!(
                    fetch_optional,
                    &mut c,
                    i32,
                    "SELECT 1 FROM sessions s JOIN users u ON u.id = s.user_id JOIN organizations o ON o.id = s.org_id \
                     WHERE s.id = $1 AND s.revoked_at IS NULL AND u.disabled_at IS NULL AND s.expires_at > $2 \
                     AND s.last_active_at + o.idle_timeout_secs * 1000 >= $2",
                    session.0,
                    now
                )?;
                Ok(alive.is_some())
            })
        })
        .await
    }

    /// Deletes expired tokens, challenges and WebAuthn ceremonies (housekeeping; sessions themselves are kept as records).
    pub async fn purge_expired_tokens(&self) -> Result<u64> {
        self.write(|mut c| {
            Box::pin(async move {
                let now = now_ms();
                let a = exec!(&mut c, "DELETE FROM access_tokens WHERE expires_at < $1", now)?;
                let b = exec!(&mut c, "DELETE FROM login_challenges WHERE expires_at < $1", now)?;
                let w = exec!(&mut c, "DELETE FROM webauthn_ceremonies WHERE expires_at < $1", now)?;
                let p = exec!(&mut c, "DELETE FROM portal_links WHERE expires_at < $1", now)?;
                let o = exec!(&mut c, "DELETE FROM oidc_states WHERE expires_at < $1", now)?
                    + exec!(&mut c, "DELETE FROM oidc_handoffs WHERE expires_at < $1", now)?
                    + exec!(&mut c, "DELETE FROM oidc_logout_jtis WHERE expires_at < $1", now)?
                    + exec!(&mut c, "DELETE FROM oidc_challenges WHERE expires_at < $1", now)?;
                Ok(a + b + w + p + o)
            })
        })
        .await
    }
}
