//! The signed-in user's own account: `/api/v1/me`, password, sessions and TOTP.

use axum::extract::State;
use axum::http::StatusCode;
use ward_domain::audit::AuditAction;
use ward_domain::ids::SessionId;
use ward_domain::login::NewPassword;

use super::dto::{
    ChangePasswordRequest, CodeRequest, MeView, RecoveryCodes, SessionView, StepUpRequest, StepUpView, TotpBeginRequest, TotpBeginResponse,
    ts,
};
use ward_store::RequestMeta;

use crate::app::AppState;
use crate::auth::{AnySession, Auth, Meta, require_step_up};
use crate::extract::{Json, Path};
use crate::problem::{ApiError, ApiResult, Problem};
use crate::secrets::{hash_password, random_bytes, recovery_codes, recovery_hash, totp, totp_step, verify_password};

pub(crate) fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(me))
        .routes(utoipa_axum::routes!(change_password))
        .routes(utoipa_axum::routes!(my_sessions))
        .routes(utoipa_axum::routes!(revoke_my_session))
        .routes(utoipa_axum::routes!(begin_totp, remove_totp))
        .routes(utoipa_axum::routes!(confirm_totp))
        .routes(utoipa_axum::routes!(new_recovery_codes))
        .routes(utoipa_axum::routes!(step_up))
}

/// The signed-in user, organisation and session (works for restricted sessions too).
#[utoipa::path(get, path = "/api/v1/me", tag = "me", security(("bearer" = [])),
    responses((status = 200, body = MeView), (status = 401, body = Problem)))]
async fn me(State(state): State<AppState>, s: AnySession) -> ApiResult<Json<MeView>> {
    let user = state.store.user(s.actor.org_id, s.actor.user_id).await?;
    let org = state.store.org(s.actor.org_id).await?;
    let access_reviews_to_decide =
        if s.actor.role.is_workforce() { state.store.access_reviews_to_decide(s.actor.org_id, s.actor.user_id).await? } else { 0 };
    Ok(Json(MeView {
        user: user.into(),
        org: org.into(),
        session_id: s.session,
        device_id: s.device,
        restriction: s.restriction.map(Into::into),
        access_reviews_to_decide,
    }))
}

/// Changes the user's password (required first when it is one-time). Every other session of
/// the user is revoked.
#[utoipa::path(post, path = "/api/v1/me/password", tag = "me", security(("bearer" = [])), request_body = ChangePasswordRequest,
    responses((status = 204), (status = 401, body = Problem), (status = 422, body = Problem)))]
async fn change_password(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: AnySession,
    Json(req): Json<ChangePasswordRequest>,
) -> ApiResult<StatusCode> {
    let a = s.actor;
    let new = NewPassword::parse(&req.new_password)?;
    if req.current_password == req.new_password {
        return Err(ApiError::validation_failed().detail("the new password must differ from the current one"));
    }
    let creds = state.store.credentials_by_id(a.org_id, a.user_id).await?;
    if req.current_password.len() > NewPassword::MAX_BYTES || !verify_password(req.current_password, creds.password_hash).await {
        return Err(ApiError::invalid_credentials().detail("the current password is wrong"));
    }
    let hash = hash_password(new.expose().to_owned()).await.map_err(ApiError::internal_cause)?;
    let org = state.store.org(a.org_id).await?;
    let next = (org.mfa_required_roles.contains(&a.role) && !creds.user.mfa_enabled).then_some(ward_store::Restriction::MfaEnrollment);
    let revoked = state.store.change_password(a.org_id, a.user_id, s.session, hash, next, meta).await?;
    if !revoked.is_empty() {
        state.end_sessions(a.user_id, Some(revoked)).await;
    }
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) fn session_views(list: Vec<ward_store::SessionInfo>, current: Option<SessionId>) -> Vec<SessionView> {
    list.into_iter()
        .map(|s| SessionView {
            current: Some(s.id) == current,
            id: s.id,
            device_id: s.device_id,
            device_name: s.device_name,
            device_platform: s.device_platform,
            created_at: ts(s.created_at),
            last_active_at: ts(s.last_active_at),
            source_ip: s.source_ip,
        })
        .collect()
}

/// The user's live sessions.
#[utoipa::path(get, path = "/api/v1/me/sessions", tag = "me", security(("bearer" = [])),
    responses((status = 200, body = Vec<SessionView>), (status = 401, body = Problem)))]
async fn my_sessions(State(state): State<AppState>, s: AnySession) -> ApiResult<Json<Vec<SessionView>>> {
    let list = state.store.sessions(s.actor.org_id, s.actor.user_id).await?;
    Ok(Json(session_views(list, Some(s.session))))
}

/// Revokes one of the user's sessions; its connections close at once.
#[utoipa::path(delete, path = "/api/v1/me/sessions/{session_id}", tag = "me", security(("bearer" = [])),
    params(("session_id" = SessionId, Path)),
    responses((status = 204), (status = 401, body = Problem), (status = 404, body = Problem)))]
async fn revoke_my_session(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: AnySession,
    Path(id): Path<SessionId>,
) -> ApiResult<StatusCode> {
    let a = s.actor;
    state.store.revoke_session(a.org_id, id, Some(a.user_id), Some(a.user_id), AuditAction::SessionRevoke, "user_revoked", meta).await?;
    state.end_sessions(a.user_id, Some(vec![id])).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Starts TOTP enrolment: returns a new secret to load into an authenticator app. The password
/// is asked again; a user who already has a second factor (a WebAuthn key) also needs a recent
/// step-up. Confirm with a code from the app.
#[utoipa::path(post, path = "/api/v1/me/mfa/totp", tag = "me", security(("bearer" = [])), request_body = TotpBeginRequest,
    responses((status = 200, body = TotpBeginResponse), (status = 401, body = Problem), (status = 409, body = Problem)))]
async fn begin_totp(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: AnySession,
    Json(req): Json<TotpBeginRequest>,
) -> ApiResult<Json<TotpBeginResponse>> {
    let a = s.actor;
    if s.restriction == Some(ward_store::Restriction::PasswordChange) {
        return Err(ApiError::password_change_required());
    }
    let creds = state.store.credentials_by_id(a.org_id, a.user_id).await?;
    if creds.totp_secret.is_some() {
        return Err(ApiError::invalid_state().detail("TOTP is already enrolled; remove it first"));
    }
    // Adding a factor next to an existing one must not be a way around it.
    if creds.user.mfa_enabled {
        require_step_up(&state, &s, "totp_enroll", &meta).await?;
    }
    check_password_again(&state, &creds, req.password, meta.clone()).await?;
    // 160 bits, as RFC 4226 recommends.
    let secret = random_bytes::<20>().to_vec();
    let t = totp(&secret, &creds.user.login).map_err(ApiError::internal_cause)?;
    let uri = t.to_url().map_err(ApiError::internal_cause)?;
    let encoded = t.secret().to_base32();
    state.store.begin_totp(a.org_id, a.user_id, secret, meta).await?;
    Ok(Json(TotpBeginResponse { secret: encoded, otpauth_uri: uri }))
}

/// Checks the account password asked again inside a session (TOTP enrolment, the first
/// WebAuthn registration) exactly as sign-in checks it: refused while the login name is
/// locked, a wrong password counted towards the lockout, and every refusal audited
/// (`auth.login` failure, reason `reauth_wrong_password` or `locked`). A hijacked session is
/// therefore no oracle for unlimited password guesses.
pub(crate) async fn check_password_again(
    state: &AppState,
    creds: &ward_store::Credentials,
    password: String,
    meta: RequestMeta,
) -> ApiResult<()> {
    let login = creds.user.login.clone();
    let who = Some((creds.user.org_id, creds.user.id));
    if let Some(wait) = state.store.throttle(&login).await?.locked(ward_store::now_ms()) {
        state.store.login_failed(login, who, "locked", true, meta).await?;
        return Err(ApiError::login_locked().retry_after(wait.max(1) as u64));
    }
    if password.is_empty() || password.len() > NewPassword::MAX_BYTES || !verify_password(password, creds.password_hash.clone()).await {
        state.store.login_failed(login, who, "reauth_wrong_password", false, meta).await?;
        return Err(ApiError::invalid_credentials().detail("the password is wrong"));
    }
    Ok(())
}

/// Confirms TOTP enrolment with a code from the app; if TOTP is the user's first second factor,
/// returns ten single-use recovery codes (shown only now), otherwise an empty list (the
/// existing codes stay, and a recent step-up is needed), and lifts an enrolment restriction
/// from the session.
#[utoipa::path(post, path = "/api/v1/me/mfa/totp/confirm", tag = "me", security(("bearer" = [])), request_body = CodeRequest,
    responses((status = 200, body = RecoveryCodes), (status = 401, body = Problem), (status = 409, body = Problem)))]
async fn confirm_totp(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: AnySession,
    Json(req): Json<CodeRequest>,
) -> ApiResult<Json<RecoveryCodes>> {
    let a = s.actor;
    let creds = state.store.credentials_by_id(a.org_id, a.user_id).await?;
    let pending = creds.totp_pending_secret.ok_or_else(|| ApiError::invalid_state().detail("start enrolment first"))?;
    // With a WebAuthn key already enrolled, confirming must not mint a fresh step-up (or new
    // recovery codes) for someone holding only a stolen session and the password.
    let first_factor = !creds.user.mfa_enabled;
    if !first_factor {
        require_step_up(&state, &s, "totp_enroll", &meta).await?;
    }
    let step = totp_step(&pending, &creds.user.login, &req.code).ok_or_else(ApiError::invalid_mfa_code)?;
    let (codes, hashes) = if first_factor { recovery_codes() } else { (Vec::new(), Vec::new()) };
    state.store.confirm_totp(a.org_id, a.user_id, s.session, step, hashes, meta).await?;
    Ok(Json(RecoveryCodes { recovery_codes: codes }))
}

/// Removes TOTP (with a current code). Refused where the organisation requires MFA for the role.
#[utoipa::path(delete, path = "/api/v1/me/mfa/totp", tag = "me", security(("bearer" = [])), request_body = CodeRequest,
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem)))]
async fn remove_totp(State(state): State<AppState>, Meta(meta): Meta, s: Auth, Json(req): Json<CodeRequest>) -> ApiResult<StatusCode> {
    let a = s.actor;
    let org = state.store.org(a.org_id).await?;
    if org.mfa_required_roles.contains(&a.role) {
        return Err(ApiError::forbidden().detail("your organisation requires a second factor for your role"));
    }
    verify_current_code(&state, &s, &req.code, meta.clone()).await?;
    state.store.remove_totp(a.org_id, a.user_id, a.user_id, meta).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Replaces the recovery codes (with a current TOTP code).
#[utoipa::path(post, path = "/api/v1/me/mfa/recovery-codes", tag = "me", security(("bearer" = [])), request_body = CodeRequest,
    responses((status = 200, body = RecoveryCodes), (status = 401, body = Problem)))]
async fn new_recovery_codes(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Json(req): Json<CodeRequest>,
) -> ApiResult<Json<RecoveryCodes>> {
    verify_current_code(&state, &s, &req.code, meta.clone()).await?;
    let (codes, hashes) = recovery_codes();
    state.store.set_recovery_codes(s.actor.org_id, s.actor.user_id, hashes, meta).await?;
    Ok(Json(RecoveryCodes { recovery_codes: codes }))
}

/// A current TOTP code for changing the second factor itself. A correct one is a step-up
/// too, so it goes through the same checks: refused while the login name is locked, wrong
/// codes counted towards the lockout, every attempt audited.
async fn verify_current_code(state: &AppState, s: &AnySession, code: &str, meta: RequestMeta) -> ApiResult<()> {
    let creds = state.store.credentials_by_id(s.actor.org_id, s.actor.user_id).await?;
    if creds.totp_secret.is_none() {
        return Err(ApiError::invalid_state().detail("TOTP is not enrolled"));
    }
    verify_second_factor(state, s, Some(code), None, meta).await
}

/// Verifies a second factor of the signed-in user, as sign-in does: refused while the login
/// name is locked, each wrong code counted towards the lockout, every attempt audited
/// (`auth.step_up`), and a success refreshes the session's MFA time.
async fn verify_second_factor(
    state: &AppState,
    s: &AnySession,
    code: Option<&str>,
    recovery_code: Option<&str>,
    meta: RequestMeta,
) -> ApiResult<()> {
    let a = s.actor;
    let creds = state.store.credentials_by_id(a.org_id, a.user_id).await?;
    let secret = creds.totp_secret.as_deref();
    // Someone whose only factor is a security key verifies it through the WebAuthn step-up,
    // or here with one of the recovery codes the key's registration gave them.
    if secret.is_none() && state.store.webauthn_credentials(a.org_id, a.user_id).await?.is_empty() {
        return Err(ApiError::mfa_enrollment_required().detail("there is no second factor to verify; enrol TOTP or a security key first"));
    }
    let login = creds.user.login.clone();
    if let Some(wait) = state.store.throttle(&login).await?.locked(ward_store::now_ms()) {
        let mut ev = ward_domain::audit::AuditEvent::new(AuditAction::StepUp, ward_domain::audit::Outcome::Failure)
            .target("user", a.user_id)
            .detail("reason", ward_domain::audit::DetailValue::Code("locked"));
        ev.org_id = Some(a.org_id);
        ev.actor = Some(a.user_id);
        state.store.record(ev, meta).await?;
        return Err(ApiError::login_locked().retry_after(wait.max(1) as u64));
    }
    let factor = match (code, recovery_code) {
        (Some(code), None) => {
            let Some(secret) = secret else {
                return Err(ApiError::invalid_body()
                    .detail("this account has no TOTP authenticator: use a security key (the WebAuthn step-up) or a recovery code"));
            };
            totp_step(secret, &login, code).map_or(ward_store::SecondFactor::Invalid, ward_store::SecondFactor::TotpStep)
        }
        (None, Some(rc)) if rc.len() <= 64 => ward_store::SecondFactor::RecoveryCode(recovery_hash(rc)),
        (None, Some(_)) => ward_store::SecondFactor::Invalid,
        (Some(_), Some(_)) => return Err(ApiError::invalid_body().detail("send either code or recovery_code, not both")),
        (None, None) => return Err(ApiError::invalid_body().detail("send code or recovery_code")),
    };
    if !state.store.step_up(a.org_id, a.user_id, login, s.session, factor, meta).await? {
        return Err(ApiError::invalid_mfa_code());
    }
    Ok(())
}

/// Step-up: verifies the second factor again (a TOTP code, or one of the recovery codes for
/// someone without their authenticator) so that sensitive actions are allowed for the next
/// `[sessions] step_up_max_age_secs`. Each code works once; wrong codes count towards the
/// login name's lockout exactly as at sign-in, and every attempt is audited (`auth.step_up`).
#[utoipa::path(post, path = "/api/v1/me/step-up", tag = "me", security(("bearer" = [])), request_body = StepUpRequest,
    responses((status = 200, body = StepUpView), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 429, body = Problem)))]
async fn step_up(State(state): State<AppState>, Meta(meta): Meta, s: Auth, Json(req): Json<StepUpRequest>) -> ApiResult<Json<StepUpView>> {
    verify_second_factor(&state, &s, req.code.as_deref(), req.recovery_code.as_deref(), meta).await?;
    let now = ward_store::now_ms();
    let valid = i64::from(state.config.sessions.step_up_max_age_secs) * 1000;
    Ok(Json(StepUpView { mfa_verified_at: ts(now), valid_until: ts(now + valid) }))
}
