//! Sign-in: `POST /api/v1/auth/login`, `/auth/mfa`, `/auth/refresh`, `/auth/logout`.
//! Serves 164.312(d) person authentication and 164.312(a)(2)(iii) automatic logoff.

use axum::extract::State;
use axum::http::StatusCode;
use ward_domain::audit::AuditAction;
use ward_domain::login::{LoginName, NewPassword, parse_label};
use ward_store::{DeviceClaim, NewSession, RefreshOutcome, Restriction, SecondFactor, TokenHashes, now_ms};

use super::dto::{DeviceRequest, LoginRequest, LoginResponse, MfaRequest, RefreshRequest, RestrictionView, Tokens, ts};
use crate::app::AppState;
use crate::auth::{AnySession, Meta};
use crate::extract::Json;
use crate::problem::{ApiError, ApiResult, Problem};
use crate::secrets::{
    ACCESS_PREFIX, CHALLENGE_PREFIX, DUMMY_HASH, REFRESH_PREFIX, new_token, recovery_hash, token_hash, totp_step, verify_password,
};

pub(crate) fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(login))
        .routes(utoipa_axum::routes!(mfa))
        .routes(utoipa_axum::routes!(refresh))
        .routes(utoipa_axum::routes!(logout))
}

pub(super) fn device_claim(d: DeviceRequest) -> ApiResult<DeviceClaim> {
    Ok(DeviceClaim {
        id: d.id,
        name: parse_label("device.name", &d.name, 100)?,
        platform: parse_label("device.platform", &d.platform, 32)?,
    })
}

/// Fresh tokens for a session, and their hashes for the store.
pub(super) struct Issued {
    access: String,
    refresh: String,
    pub(super) hashes: TokenHashes,
}

/// The session a sign-in's second factor opens, whichever factor answered (TOTP, a recovery
/// code, WebAuthn): second factor verified now, restricted to a password change while the
/// password is one-time.
pub(super) fn second_factor_session(state: &AppState, challenge: &ward_store::Challenge) -> (Issued, NewSession) {
    let restriction = challenge.password_must_change.then_some(Restriction::PasswordChange);
    let issued = issue(state);
    let new = NewSession {
        user_id: challenge.user_id,
        device: challenge.device.clone(),
        tokens: issued.hashes.clone(),
        expires_at: now_ms() + state.config.sessions.session_ttl_secs * 1000,
        restriction,
        mfa_verified: true,
    };
    (issued, new)
}

pub(super) fn issue(state: &AppState) -> Issued {
    let access = new_token(ACCESS_PREFIX);
    let refresh = new_token(REFRESH_PREFIX);
    let hashes = TokenHashes {
        access: token_hash(&access),
        access_expires_at: now_ms() + state.config.sessions.access_ttl_secs * 1000,
        refresh: token_hash(&refresh),
    };
    Issued { access, refresh, hashes }
}

pub(super) fn tokens(
    issued: Issued,
    session: ward_domain::ids::SessionId,
    device: ward_domain::ids::DeviceId,
    r: Option<Restriction>,
) -> Tokens {
    Tokens {
        access_expires_at: ts(issued.hashes.access_expires_at),
        access_token: issued.access,
        refresh_token: issued.refresh,
        session_id: session,
        device_id: device,
        restriction: r.map(RestrictionView::from),
    }
}

/// Signs in with a login name and password.
///
/// Wrong names and wrong passwords get the same answer after the same work. Repeated failures
/// lock the name (known or not) with a growing backoff, and too many failures from one address
/// (any names) answer `rate_limited` for the rest of the minute. If the user has TOTP, the
/// answer is a challenge for `POST /api/v1/auth/mfa`.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = LoginResponse), (status = 401, body = Problem), (status = 403, body = Problem), (status = 429, body = Problem)))]
async fn login(State(state): State<AppState>, Meta(meta): Meta, Json(req): Json<LoginRequest>) -> ApiResult<Json<LoginResponse>> {
    let device = device_claim(req.device)?;
    let now = now_ms();
    // Password spraying (many names, few tries each) from one address: refused before any
    // lookup, so the answer is the same for every name.
    let address = meta.source_ip.as_deref().map(crate::rate_limit::address_key);
    let failed_from_address = || {
        if let Some(a) = &address {
            let _ = state.login_limits.check(a, now);
        }
    };
    if let Some(a) = &address
        && let Err(wait) = state.login_limits.blocked(a, now)
    {
        if let Ok(login) = LoginName::parse(&req.login) {
            state.store.login_failed(login.to_string(), None, "address_limited", false, meta).await?;
        }
        return Err(ApiError::rate_limited().retry_after(wait));
    }
    let Ok(login) = LoginName::parse(&req.login) else {
        // A name that cannot exist still costs a hash, so timing tells nothing.
        verify_password(req.password, DUMMY_HASH.clone()).await;
        failed_from_address();
        return Err(ApiError::invalid_credentials());
    };
    if req.password.len() > NewPassword::MAX_BYTES {
        failed_from_address();
        return Err(ApiError::invalid_credentials());
    }
    let creds = state.store.credentials(login.as_str()).await?;
    let who = creds.as_ref().map(|c| (c.user.org_id, c.user.id));
    if let Some(wait) = state.store.throttle(login.as_str()).await?.locked(now) {
        failed_from_address();
        state.store.login_failed(login.to_string(), who, "locked", true, meta).await?;
        return Err(ApiError::login_locked().retry_after(wait.max(1) as u64));
    }
    let hash = creds.as_ref().map_or_else(|| DUMMY_HASH.clone(), |c| c.password_hash.clone());
    let password_ok = verify_password(req.password, hash).await;
    let Some(creds) = creds.filter(|_| password_ok) else {
        failed_from_address();
        let reason = if who.is_some() { "wrong_password" } else { "unknown_login" };
        state.store.login_failed(login.to_string(), who, reason, false, meta).await?;
        return Err(ApiError::invalid_credentials());
    };
    let user = &creds.user;
    if user.disabled {
        state.store.login_failed(login.to_string(), who, "disabled", false, meta).await?;
        return Err(ApiError::account_disabled());
    }
    first_factor_passed(&state, user, login.to_string(), device, meta).await
}

/// The per-address sign-in failure limit (`[sessions] failed_logins_per_minute_per_address`)
/// for first factors other than the password (portal links, single sign-on callbacks and
/// hand-overs): [`FirstFactorLimit::enter`] refuses an address over the limit before anything
/// is looked up, [`FirstFactorLimit::failed`] counts a refusal.
pub(super) struct FirstFactorLimit<'a> {
    state: &'a AppState,
    address: Option<String>,
    now: i64,
}

impl<'a> FirstFactorLimit<'a> {
    /// `429 rate_limited` (with `Retry-After`) when the request's address is over the limit.
    pub(super) fn enter(state: &'a AppState, meta: &ward_store::RequestMeta) -> ApiResult<Self> {
        let now = now_ms();
        let address = meta.source_ip.as_deref().map(crate::rate_limit::address_key);
        if let Some(a) = &address
            && let Err(wait) = state.login_limits.blocked(a, now)
        {
            return Err(ApiError::rate_limited().retry_after(wait));
        }
        Ok(Self { state, address, now })
    }

    /// Counts one failure of this address.
    pub(super) fn failed(&self) {
        if let Some(a) = &self.address {
            let _ = self.state.login_limits.check(a, self.now);
        }
    }
}

/// After the first factor (a password, or a portal link): a challenge for the second factor
/// when the account has one, else a session, restricted while the password must change or a
/// required second factor is not enrolled.
pub(super) async fn first_factor_passed(
    state: &AppState,
    user: &ward_store::User,
    login: String,
    device: DeviceClaim,
    meta: ward_store::RequestMeta,
) -> ApiResult<Json<LoginResponse>> {
    let now = now_ms();
    if user.mfa_enabled {
        let token = new_token(CHALLENGE_PREFIX);
        let expires = now + state.config.sessions.mfa_challenge_ttl_secs * 1000;
        state.store.create_challenge(user.org_id, user.id, token_hash(&token), device, expires, meta).await?;
        return Ok(Json(LoginResponse::MfaRequired { mfa_token: token, expires_at: ts(expires) }));
    }
    let org = state.store.org(user.org_id).await?;
    let restriction = if user.password_must_change {
        Some(Restriction::PasswordChange)
    } else if org.mfa_required_roles.contains(&user.role) {
        Some(Restriction::MfaEnrollment)
    } else {
        None
    };
    let issued = issue(state);
    let new = NewSession {
        user_id: user.id,
        device,
        tokens: issued.hashes.clone(),
        expires_at: now + state.config.sessions.session_ttl_secs * 1000,
        restriction,
        mfa_verified: false,
    };
    let (session, device) = state.store.login(user.org_id, login, new, meta).await.map_err(device_error)?;
    Ok(Json(LoginResponse::Authenticated { tokens: tokens(issued, session, device, restriction) }))
}

pub(super) fn device_error(e: ward_store::StoreError) -> ApiError {
    match e {
        ward_store::StoreError::State("unknown or revoked device") => {
            ApiError::validation_failed().detail("device.id is not a device of this user, or it was revoked")
        }
        other => other.into(),
    }
}

/// Completes a sign-in with a TOTP code or a recovery code. Each code works once; wrong codes
/// count towards the lockout.
#[utoipa::path(post, path = "/api/v1/auth/mfa", tag = "auth", request_body = MfaRequest,
    responses((status = 200, body = Tokens), (status = 401, body = Problem), (status = 429, body = Problem)))]
async fn mfa(State(state): State<AppState>, Meta(meta): Meta, Json(req): Json<MfaRequest>) -> ApiResult<Json<Tokens>> {
    if !req.mfa_token.starts_with(CHALLENGE_PREFIX) || req.mfa_token.len() > 128 {
        return Err(ApiError::invalid_mfa_code().detail("the sign-in attempt is unknown or has expired"));
    }
    let hash = token_hash(&req.mfa_token);
    let challenge = state
        .store
        .challenge(hash.clone())
        .await?
        .ok_or_else(|| ApiError::invalid_mfa_code().detail("the sign-in attempt is unknown or has expired"))?;
    if let Some(wait) = state.store.throttle(&challenge.login).await?.locked(now_ms()) {
        return Err(ApiError::login_locked().retry_after(wait.max(1) as u64));
    }
    let factor = match (&req.code, &req.recovery_code, &challenge.totp_secret) {
        (Some(code), None, Some(secret)) => totp_step(secret, &challenge.login, code).map_or(SecondFactor::Invalid, SecondFactor::TotpStep),
        (None, Some(rc), _) if rc.len() <= 64 => SecondFactor::RecoveryCode(recovery_hash(rc)),
        (Some(_), Some(_), _) => return Err(ApiError::invalid_body().detail("send either code or recovery_code, not both")),
        _ => SecondFactor::Invalid,
    };
    let (issued, new) = second_factor_session(&state, &challenge);
    let restriction = new.restriction;
    match state.store.answer_challenge(hash, challenge, factor, new, meta).await.map_err(|e| match e {
        ward_store::StoreError::NotFound => ApiError::invalid_mfa_code().detail("the sign-in attempt is unknown or has expired"),
        other => device_error(other),
    })? {
        Some((session, device)) => Ok(Json(tokens(issued, session, device, restriction))),
        None => Err(ApiError::invalid_mfa_code()),
    }
}

/// Exchanges a refresh token for new tokens. Each refresh token works once: presenting a used
/// one (a sign of theft) revokes the whole session, as does presenting it from another device.
#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = Tokens), (status = 401, body = Problem)))]
async fn refresh(State(state): State<AppState>, Meta(meta): Meta, Json(req): Json<RefreshRequest>) -> ApiResult<Json<Tokens>> {
    if !req.refresh_token.starts_with(REFRESH_PREFIX) || req.refresh_token.len() > 128 {
        return Err(ApiError::invalid_refresh_token());
    }
    let issued = issue(&state);
    match state.store.refresh(token_hash(&req.refresh_token), req.device_id, issued.hashes.clone(), meta).await? {
        RefreshOutcome::Rotated { session_id, restriction, .. } => Ok(Json(tokens(issued, session_id, req.device_id, restriction))),
        RefreshOutcome::Reused { session_id, user_id } => {
            state.end_sessions(user_id, Some(vec![session_id])).await;
            Err(ApiError::invalid_refresh_token().detail("this refresh token was already used; the session has been revoked"))
        }
        RefreshOutcome::Rejected => Err(ApiError::invalid_refresh_token()),
    }
}

/// Ends the current session.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = Problem)))]
async fn logout(State(state): State<AppState>, Meta(meta): Meta, s: AnySession) -> ApiResult<StatusCode> {
    let a = s.actor;
    state.store.revoke_session(a.org_id, s.session, Some(a.user_id), Some(a.user_id), AuditAction::Logout, "logout", meta).await?;
    state.end_sessions(a.user_id, Some(vec![s.session])).await;
    Ok(StatusCode::NO_CONTENT)
}
