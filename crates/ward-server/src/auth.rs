//! Authentication as extractors: a handler that names [`Auth`] only runs for a live,
//! unrestricted session; [`AnySession`] also admits sessions limited to changing a one-time
//! password or enrolling a second factor. [`Meta`] carries the request's source and id into
//! audit events.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use ward_domain::audit::AuditAction;
use ward_domain::ids::{DeviceId, SessionId};
use ward_domain::policy::Actor;
use ward_fanout::Signal;
use ward_store::{RequestMeta, Restriction, now_ms};

use crate::app::AppState;
use crate::problem::ApiError;
use crate::secrets::{ACCESS_PREFIX, token_hash};

/// The client's network address, put in each request's extensions by the listener.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub std::net::SocketAddr);

/// How long between recorded activity updates: the idle clock has this much slack, and a busy
/// client does not cause a write per request.
const TOUCH_EVERY_MS: i64 = 15_000;

/// An authenticated session, possibly restricted.
#[derive(Debug, Clone)]
pub struct AnySession {
    /// Who is asking.
    pub actor: Actor,
    /// The session.
    pub session: SessionId,
    /// Its device.
    pub device: DeviceId,
    /// When the session began (Unix ms).
    pub created_at: i64,
    /// When a second factor was last verified (Unix ms).
    pub mfa_verified_at: Option<i64>,
    /// What the session is limited to.
    pub restriction: Option<Restriction>,
}

/// An authenticated session with full access.
#[derive(Debug, Clone)]
pub struct Auth(pub AnySession);

impl std::ops::Deref for Auth {
    type Target = AnySession;
    fn deref(&self) -> &AnySession {
        &self.0
    }
}

/// Request metadata for audit events.
#[derive(Debug, Clone)]
pub struct Meta(pub RequestMeta);

impl<S: Send + Sync> FromRequestParts<S> for Meta {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Meta(meta_of(parts)))
    }
}

/// The audit metadata of a request.
pub fn meta_of(parts: &Parts) -> RequestMeta {
    RequestMeta {
        source_ip: parts.extensions.get::<ClientAddr>().map(|a| a.0.ip().to_string()),
        request_id: parts.headers.get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_owned),
    }
}

/// The bearer token of a request: `Ok(None)` when there is no Authorization header.
pub fn bearer(parts: &Parts) -> Result<Option<&str>, ApiError> {
    bearer_header(&parts.headers)
}

/// The bearer token in request headers: `Ok(None)` when there is no Authorization header.
pub fn bearer_header(headers: &axum::http::HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(v) = headers.get(AUTHORIZATION) else { return Ok(None) };
    let v = v.to_str().map_err(|_| ApiError::invalid_token())?;
    let token = v.strip_prefix("Bearer ").ok_or_else(ApiError::invalid_token)?.trim();
    if !token.starts_with(ACCESS_PREFIX) || token.len() > 128 {
        return Err(ApiError::invalid_token());
    }
    Ok(Some(token))
}

/// Resolves an access token to a live session, ending it if it went idle.
pub async fn authenticate(state: &AppState, token: &str, meta: RequestMeta) -> Result<AnySession, ApiError> {
    let s = state.store.session_by_access(token_hash(token)).await?.ok_or_else(ApiError::invalid_token)?;
    let now = now_ms();
    if s.user_disabled {
        return Err(ApiError::account_disabled());
    }
    if s.revoked || s.expires_at <= now {
        return Err(ApiError::session_ended());
    }
    if now - s.last_active_at > s.idle_timeout_secs * 1000 {
        // Automatic logoff (164.312(a)(2)(iii)): the session ends server-side, and its
        // connections close.
        let ended =
            state.store.revoke_session(s.org_id, s.session_id, None, None, AuditAction::SessionIdleTimeout, "idle_timeout", meta).await;
        if ended.is_ok() {
            state.end_sessions(s.user_id, Some(vec![s.session_id])).await;
        }
        return Err(ApiError::session_ended().detail("the session was idle for too long"));
    }
    if s.token_expires_at <= now {
        return Err(ApiError::token_expired());
    }
    if now - s.last_active_at > TOUCH_EVERY_MS {
        let store = state.store.clone();
        let id = s.session_id;
        tokio::spawn(async move {
            if let Err(e) = store.touch_session(id, now).await {
                tracing::warn!(error = %e, "could not record session activity");
            }
        });
    }
    Ok(AnySession {
        actor: Actor { user_id: s.user_id, org_id: s.org_id, role: s.role },
        session: s.session_id,
        device: s.device_id,
        created_at: s.created_at,
        mfa_verified_at: s.mfa_verified_at,
        restriction: s.restriction,
    })
}

impl FromRequestParts<AppState> for AnySession {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = bearer(parts)?.ok_or_else(ApiError::missing_token)?;
        authenticate(state, token, meta_of(parts)).await
    }
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let s = AnySession::from_request_parts(parts, state).await?;
        match s.restriction {
            None => Ok(Auth(s)),
            Some(Restriction::PasswordChange) => Err(ApiError::password_change_required()),
            Some(Restriction::MfaEnrollment) => Err(ApiError::mfa_enrollment_required()),
        }
    }
}

/// The step-up guard for sensitive actions (audit export, role changes, admin wipes,
/// break-glass): the session's last second-factor verification must be at most
/// `[sessions] step_up_max_age_secs` old. Otherwise the answer is `401 step_up_required` with
/// an RFC 9470 challenge (`insufficient_user_authentication`, `max_age`), or `403
/// mfa_enrollment_required` for a user with no second factor to verify; either refusal is
/// audited as `auth.step_up_required` naming the action (`for`). Handlers call it after their
/// role check, so a role that may never do the action still gets `forbidden`.
pub async fn require_step_up(state: &AppState, s: &AnySession, action: &'static str, meta: &RequestMeta) -> Result<(), ApiError> {
    let max_age = state.config.sessions.step_up_max_age_secs;
    if s.mfa_verified_at.is_some_and(|at| now_ms() - at <= i64::from(max_age) * 1000) {
        return Ok(());
    }
    let enrolled = state.store.user(s.actor.org_id, s.actor.user_id).await?.mfa_enabled;
    let (reason, err) = if enrolled {
        ("stale", ApiError::step_up(max_age))
    } else {
        (
            "not_enrolled",
            ApiError::mfa_enrollment_required()
                .detail("this action needs a second-factor verification; enrol TOTP or a security key first"),
        )
    };
    let mut ev = ward_domain::audit::AuditEvent::new(AuditAction::StepUpRequired, ward_domain::audit::Outcome::Denied)
        .target("session", s.session)
        .detail("for", ward_domain::audit::DetailValue::Code(action))
        .detail("reason", ward_domain::audit::DetailValue::Code(reason));
    ev.org_id = Some(s.actor.org_id);
    ev.actor = Some(s.actor.user_id);
    ev.device = Some(s.device);
    state.store.record(ev, meta.clone()).await?;
    Err(err)
}

impl AppState {
    /// Tells every node to close the user's connections (all, or those of `sessions`).
    /// Returns whether every node was told; when not, each connection's periodic session
    /// check closes it anyway, within seconds.
    pub async fn end_sessions(&self, user: ward_domain::ids::UserId, sessions: Option<Vec<SessionId>>) -> bool {
        match self.fanout.publish(Signal::EndSessions { user, sessions }).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "could not publish session end");
                false
            }
        }
    }
}
