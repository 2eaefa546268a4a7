//! WebAuthn (security keys and passkeys): registration and management of a user's
//! credentials, a WebAuthn assertion as the second step of a sign-in or as a step-up, and
//! passwordless sign-in with a discoverable credential. Serves 164.312(d) person
//! authentication. Ceremony state lives in the database (single use, short expiry), so any
//! node can finish a ceremony another began.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use ward_domain::audit::{AuditAction, AuditEvent, DetailValue, Outcome};
use ward_domain::ids::UserId;
use ward_domain::login::parse_label;
use ward_store::{
    Ceremony, CeremonyPurpose, NewSession, NewWebAuthnCredential, RequestMeta, Restriction, SecondFactor, WebAuthnCredential,
    WebAuthnFailure, WebAuthnUse, now_ms,
};
use webauthn_rs::prelude::{
    DiscoverableAuthentication, Passkey, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential,
    WebauthnError,
};

use super::auth::{device_claim, device_error, issue, tokens};
use super::dto::{DeviceRequest, StepUpView, Tokens, ts};
use crate::app::AppState;
use crate::auth::{AnySession, Auth, Meta, require_step_up};
use crate::extract::{Json, Path};
use crate::problem::{ApiError, ApiResult, Problem};
use crate::secrets::{CHALLENGE_PREFIX, recovery_codes, token_hash};

pub(crate) fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(begin_registration))
        .routes(utoipa_axum::routes!(list_credentials, finish_registration))
        .routes(utoipa_axum::routes!(rename_credential, remove_credential))
        .routes(utoipa_axum::routes!(mfa_options))
        .routes(utoipa_axum::routes!(mfa_finish))
        .routes(utoipa_axum::routes!(step_up_options))
        .routes(utoipa_axum::routes!(step_up_finish))
        .routes(utoipa_axum::routes!(passkey_options))
        .routes(utoipa_axum::routes!(passkey_finish))
}

/// Options for the browser's `navigator.credentials.create()` or `.get()`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CeremonyOptions {
    /// The ceremony to name when finishing (single use; expires after
    /// `[webauthn] challenge_ttl_secs`).
    pub(crate) ceremony_id: uuid::Uuid,
    /// When the ceremony expires.
    pub(crate) expires_at: String,
    /// The WebAuthn options (`publicKey` and, for passkey sign-in, `mediation`), as the
    /// browser API takes them (binary fields base64url).
    #[schema(value_type = Object)]
    pub(crate) options: Value,
}

/// Starting a registration.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegistrationBeginRequest {
    /// The account password: needed when this is the user's first second factor (otherwise a
    /// recent step-up is needed instead).
    pub(crate) password: Option<String>,
}

/// Finishing a registration.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegistrationFinishRequest {
    /// From the begin answer.
    pub(crate) ceremony_id: uuid::Uuid,
    /// The user's name for the credential ("YubiKey 5C", "work laptop"); at most 64 characters.
    pub(crate) label: String,
    /// The `PublicKeyCredential` from `navigator.credentials.create()`, JSON-encoded (binary
    /// fields base64url).
    #[schema(value_type = Object)]
    pub(crate) credential: Value,
}

/// A registered credential.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CredentialView {
    /// Ward's id for it.
    pub(crate) id: uuid::Uuid,
    /// The authenticator's credential id (base64url).
    pub(crate) credential_id: String,
    /// The user's name for it.
    pub(crate) label: String,
    /// Transports the authenticator reported.
    pub(crate) transports: Vec<String>,
    /// The last signature counter seen.
    pub(crate) sign_count: i64,
    /// Registered.
    pub(crate) created_at: String,
    /// Last used.
    pub(crate) last_used_at: Option<String>,
    /// Set when the counter went backwards (possible clone): the credential is refused.
    pub(crate) clone_suspected_at: Option<String>,
}

impl From<WebAuthnCredential> for CredentialView {
    fn from(c: WebAuthnCredential) -> Self {
        use base64::Engine as _;
        CredentialView {
            id: c.id,
            credential_id: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&c.credential_id),
            label: c.label,
            transports: c.transports,
            sign_count: c.sign_count,
            created_at: ts(c.created_at),
            last_used_at: c.last_used_at.map(ts),
            clone_suspected_at: c.clone_suspected_at.map(ts),
        }
    }
}

/// A registration's result.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RegisteredCredential {
    /// The credential.
    pub(crate) credential: CredentialView,
    /// Ten single-use recovery codes, shown only now: present when this was the user's first
    /// second factor.
    pub(crate) recovery_codes: Option<Vec<String>>,
}

/// Renaming a credential.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RenameRequest {
    /// The new name; at most 64 characters.
    pub(crate) label: String,
}

/// The second step of a sign-in, with WebAuthn.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MfaOptionsRequest {
    /// The token from the login response.
    pub(crate) mfa_token: String,
}

/// An assertion for the second step of a sign-in.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MfaAssertionRequest {
    /// The token from the login response.
    pub(crate) mfa_token: String,
    /// From the options answer.
    pub(crate) ceremony_id: uuid::Uuid,
    /// The `PublicKeyCredential` from `navigator.credentials.get()`, JSON-encoded.
    #[schema(value_type = Object)]
    pub(crate) credential: Value,
}

/// An assertion for a step-up.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AssertionRequest {
    /// From the options answer.
    pub(crate) ceremony_id: uuid::Uuid,
    /// The `PublicKeyCredential` from `navigator.credentials.get()`, JSON-encoded.
    #[schema(value_type = Object)]
    pub(crate) credential: Value,
}

/// A passwordless sign-in with a passkey.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PasskeySignInRequest {
    /// From the options answer.
    pub(crate) ceremony_id: uuid::Uuid,
    /// The `PublicKeyCredential` from `navigator.credentials.get()`, JSON-encoded.
    #[schema(value_type = Object)]
    pub(crate) credential: Value,
    /// The device signing in.
    pub(crate) device: DeviceRequest,
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal_cause(e.to_string())
}

fn options_json(v: &impl Serialize) -> ApiResult<Value> {
    serde_json::to_value(v).map_err(internal)
}

/// Stores a new ceremony and renders its options.
async fn open_ceremony(
    state: &AppState,
    purpose: CeremonyPurpose,
    user: Option<UserId>,
    session: Option<ward_domain::ids::SessionId>,
    login_challenge: Option<Vec<u8>>,
    ceremony_state: &impl Serialize,
    options: &impl Serialize,
) -> ApiResult<Json<CeremonyOptions>> {
    let id = uuid::Uuid::new_v4();
    let expires_at = now_ms() + i64::from(state.config.webauthn.challenge_ttl_secs) * 1000;
    let ceremony = Ceremony {
        id,
        purpose,
        user_id: user,
        session_id: session,
        login_challenge,
        state: serde_json::to_string(ceremony_state).map_err(internal)?,
        expires_at,
    };
    state.store.create_ceremony(ceremony).await?;
    Ok(Json(CeremonyOptions { ceremony_id: id, expires_at: ts(expires_at), options: options_json(options)? }))
}

/// The user's usable (not flagged) credentials as webauthn-rs passkeys.
fn passkeys(creds: &[WebAuthnCredential]) -> ApiResult<Vec<Passkey>> {
    creds.iter().filter(|c| c.clone_suspected_at.is_none()).map(|c| serde_json::from_str(&c.passkey).map_err(internal)).collect()
}

fn challenge_invalid() -> ApiError {
    ApiError::webauthn_challenge_invalid().detail("the WebAuthn challenge is unknown, already used, expired or not yours; begin again")
}

/// Reason code and problem for a webauthn-rs verification error.
fn assertion_error(e: &WebauthnError) -> (&'static str, ApiError) {
    let reason = match e {
        WebauthnError::CredentialPossibleCompromise => return ("counter_regression", ApiError::webauthn_possible_clone()),
        WebauthnError::MismatchedChallenge => "challenge_mismatch",
        WebauthnError::InvalidRPOrigin => "origin_mismatch",
        WebauthnError::InvalidRPIDHash => "rp_id_mismatch",
        WebauthnError::UserNotVerified | WebauthnError::UserNotPresent => "user_not_verified",
        WebauthnError::AuthenticationFailure => "bad_signature",
        WebauthnError::CredentialNotFound => "credential_not_allowed",
        _ => "invalid_assertion",
    };
    (reason, ApiError::webauthn_assertion_invalid())
}

/// Who an assertion is checked for, and how its refusal is audited.
struct Claimant {
    org: ward_domain::ids::OrgId,
    user: UserId,
    login: String,
    action: AuditAction,
}

/// How the ceremony is finished: with the user's allow-list state, or a discoverable one.
enum Finish {
    Listed(PasskeyAuthentication),
    Discoverable(DiscoverableAuthentication),
}

async fn refuse(state: &AppState, who: &Claimant, f: WebAuthnFailure, err: ApiError, meta: RequestMeta) -> ApiError {
    match state.store.webauthn_failed(who.org, who.user, who.login.clone(), f, meta).await {
        Ok(()) => err,
        Err(e) => e.into(),
    }
}

/// Verifies an assertion of `who`: the credential must be theirs and not flagged, the
/// signature, challenge, origin, relying party and user verification must check, and the
/// counter must move forward. A refusal is audited (and counted) before it is returned.
async fn verify_assertion(
    state: &AppState,
    who: &Claimant,
    pkc: &PublicKeyCredential,
    finish: Finish,
    meta: RequestMeta,
) -> ApiResult<WebAuthnUse> {
    let fail =
        |reason, credential, clone_suspected| WebAuthnFailure { action: who.action, reason, credential, clone_suspected, counts: true };
    let raw_id = pkc.get_credential_id().to_vec();
    let cred = match state.store.webauthn_credential_by_raw_id(raw_id).await? {
        Some(c) if c.user_id == who.user => c,
        other => {
            let reason = if other.is_some() { "foreign_credential" } else { "unknown_credential" };
            return Err(refuse(state, who, fail(reason, None, false), ApiError::webauthn_credential_unknown(), meta).await);
        }
    };
    if cred.clone_suspected_at.is_some() {
        let err =
            ApiError::webauthn_possible_clone().detail("this credential was flagged as possibly cloned; remove it and register again");
        return Err(refuse(state, who, fail("credential_flagged", Some(cred.id), false), err, meta).await);
    }
    let mut passkey: Passkey = serde_json::from_str(&cred.passkey).map_err(internal)?;
    let result = match finish {
        Finish::Listed(st) => state.webauthn.finish_passkey_authentication(pkc, &st),
        Finish::Discoverable(st) => state.webauthn.finish_discoverable_authentication_v2(pkc, st, &passkey),
    };
    let result = match result {
        Ok(r) => r,
        Err(e) => {
            let (reason, err) = assertion_error(&e);
            let clone = reason == "counter_regression";
            return Err(refuse(state, who, fail(reason, Some(cred.id), clone), err, meta).await);
        }
    };
    // The stored counter is authoritative (another node may have moved it since the ceremony
    // began). WebAuthn §7.2 step 21: a counter that does not move forward, where either side
    // is non-zero, signals a possible clone.
    let counter = result.counter();
    if (counter > 0 || cred.sign_count > 0) && i64::from(counter) <= cred.sign_count {
        return Err(refuse(state, who, fail("counter_regression", Some(cred.id), true), ApiError::webauthn_possible_clone(), meta).await);
    }
    if !result.user_verified() {
        return Err(refuse(state, who, fail("user_not_verified", Some(cred.id), false), ApiError::webauthn_assertion_invalid(), meta).await);
    }
    passkey.update_credential(&result);
    Ok(WebAuthnUse { credential: cred.id, counter, passkey: serde_json::to_string(&passkey).map_err(internal)? })
}

fn parse_assertion(v: Value) -> ApiResult<PublicKeyCredential> {
    serde_json::from_value(v).map_err(|_| ApiError::invalid_body().detail("credential is not a WebAuthn PublicKeyCredential"))
}

/// Starts registering a security key or passkey. The first second factor needs the account
/// password; with a second factor already enrolled, a recent step-up is needed instead.
#[utoipa::path(post, path = "/api/v1/me/webauthn/registrations", tag = "me", security(("bearer" = [])),
    request_body = RegistrationBeginRequest,
    responses((status = 200, body = CeremonyOptions), (status = 401, body = Problem), (status = 403, body = Problem)))]
async fn begin_registration(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: AnySession,
    Json(req): Json<RegistrationBeginRequest>,
) -> ApiResult<Json<CeremonyOptions>> {
    let a = s.actor;
    if s.restriction == Some(Restriction::PasswordChange) {
        return Err(ApiError::password_change_required());
    }
    let creds = state.store.credentials_by_id(a.org_id, a.user_id).await?;
    if creds.user.mfa_enabled {
        require_step_up(&state, &s, "webauthn_register", &meta).await?;
    } else {
        super::me::check_password_again(&state, &creds, req.password.unwrap_or_default(), meta.clone()).await?;
    }
    let existing = state.store.webauthn_credentials(a.org_id, a.user_id).await?;
    let exclude = existing.iter().map(|c| c.credential_id.clone()).collect::<Vec<_>>();
    let (ccr, reg) = state
        .webauthn
        .start_passkey_registration(a.user_id.0, &creds.user.login, &creds.user.display_name, Some(exclude))
        .map_err(internal)?;
    // Ask for a discoverable credential, so the same key can also sign in without a password.
    let mut options = options_json(&ccr)?;
    if let Some(sel) = options.pointer_mut("/publicKey/authenticatorSelection").and_then(Value::as_object_mut) {
        sel.insert("residentKey".into(), Value::String("preferred".into()));
    }
    open_ceremony(&state, CeremonyPurpose::Register, Some(a.user_id), Some(s.session), None, &reg, &options).await
}

/// Finishes a registration; the credential is stored under the given label. If it is the
/// user's first second factor, the answer carries ten recovery codes (shown only now), and
/// an enrolment restriction is lifted from the session.
#[utoipa::path(post, path = "/api/v1/me/webauthn/credentials", tag = "me", security(("bearer" = [])),
    request_body = RegistrationFinishRequest,
    responses((status = 201, body = RegisteredCredential), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn finish_registration(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: AnySession,
    Json(req): Json<RegistrationFinishRequest>,
) -> ApiResult<(StatusCode, Json<RegisteredCredential>)> {
    let a = s.actor;
    if s.restriction == Some(Restriction::PasswordChange) {
        return Err(ApiError::password_change_required());
    }
    let label = parse_label("label", &req.label, 64)?;
    let rpkc: RegisterPublicKeyCredential = serde_json::from_value(req.credential)
        .map_err(|_| ApiError::invalid_body().detail("credential is not a WebAuthn registration response"))?;
    let ceremony = state.store.take_ceremony(req.ceremony_id, CeremonyPurpose::Register).await?;
    let Some(ceremony) = ceremony.filter(|c| c.user_id == Some(a.user_id) && c.session_id == Some(s.session)) else {
        return Err(challenge_invalid());
    };
    let reg: PasskeyRegistration = serde_json::from_str(&ceremony.state).map_err(internal)?;
    let creds = state.store.credentials_by_id(a.org_id, a.user_id).await?;
    let passkey = match state.webauthn.finish_passkey_registration(&rpkc, &reg) {
        Ok(p) => p,
        Err(e) => {
            let f = WebAuthnFailure {
                action: AuditAction::WebAuthnRegister,
                reason: registration_reason(&e),
                credential: None,
                clone_suspected: false,
                counts: false,
            };
            state.store.webauthn_failed(a.org_id, a.user_id, creds.user.login.clone(), f, meta).await?;
            return Err(ApiError::webauthn_registration_invalid());
        }
    };
    let transports = rpkc
        .response
        .transports
        .iter()
        .flatten()
        .filter_map(|t| serde_json::to_value(t).ok().and_then(|v| v.as_str().map(str::to_owned)))
        .filter(|t| t != "unknown")
        .collect();
    let new = NewWebAuthnCredential {
        credential_id: passkey.cred_id().to_vec(),
        label,
        passkey: serde_json::to_string(&passkey).map_err(internal)?,
        sign_count: 0,
        transports,
    };
    let (codes, hashes) = if creds.user.mfa_enabled {
        (None, None)
    } else {
        let (c, h) = recovery_codes();
        (Some(c), Some(h))
    };
    let cred = state.store.add_webauthn_credential(a.org_id, a.user_id, s.session, new, hashes, meta).await.map_err(|e| match e {
        ward_store::StoreError::Conflict(_) => ApiError::conflict().detail("this credential is already registered"),
        other => other.into(),
    })?;
    Ok((StatusCode::CREATED, Json(RegisteredCredential { credential: cred.into(), recovery_codes: codes })))
}

fn registration_reason(e: &WebauthnError) -> &'static str {
    match e {
        WebauthnError::MismatchedChallenge => "challenge_mismatch",
        WebauthnError::InvalidRPOrigin => "origin_mismatch",
        WebauthnError::InvalidRPIDHash => "rp_id_mismatch",
        WebauthnError::UserNotVerified | WebauthnError::UserNotPresent => "user_not_verified",
        _ => "invalid_registration",
    }
}

/// The user's WebAuthn credentials.
#[utoipa::path(get, path = "/api/v1/me/webauthn/credentials", tag = "me", security(("bearer" = [])),
    responses((status = 200, body = Vec<CredentialView>), (status = 401, body = Problem)))]
async fn list_credentials(State(state): State<AppState>, s: AnySession) -> ApiResult<Json<Vec<CredentialView>>> {
    let list = state.store.webauthn_credentials(s.actor.org_id, s.actor.user_id).await?;
    Ok(Json(list.into_iter().map(Into::into).collect()))
}

/// Renames one of the user's credentials.
#[utoipa::path(patch, path = "/api/v1/me/webauthn/credentials/{credential_id}", tag = "me", security(("bearer" = [])),
    params(("credential_id" = uuid::Uuid, Path)), request_body = RenameRequest,
    responses((status = 200, body = CredentialView), (status = 401, body = Problem), (status = 404, body = Problem)))]
async fn rename_credential(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Path(id): Path<uuid::Uuid>,
    Json(req): Json<RenameRequest>,
) -> ApiResult<Json<CredentialView>> {
    let label = parse_label("label", &req.label, 64)?;
    let cred = state.store.rename_webauthn_credential(s.actor.org_id, s.actor.user_id, id, label, meta).await?;
    Ok(Json(cred.into()))
}

/// Removes one of the user's credentials (needs a recent step-up). Removing the last second
/// factor is refused where the organisation requires MFA for the user's role.
#[utoipa::path(delete, path = "/api/v1/me/webauthn/credentials/{credential_id}", tag = "me", security(("bearer" = [])),
    params(("credential_id" = uuid::Uuid, Path)),
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn remove_credential(State(state): State<AppState>, Meta(meta): Meta, s: Auth, Path(id): Path<uuid::Uuid>) -> ApiResult<StatusCode> {
    let a = s.actor;
    if !state.store.webauthn_credentials(a.org_id, a.user_id).await?.iter().any(|c| c.id == id) {
        return Err(ApiError::not_found());
    }
    require_step_up(&state, &s, "webauthn_remove", &meta).await?;
    let org = state.store.org(a.org_id).await?;
    let required = org.mfa_required_roles.contains(&a.role);
    if !state.store.remove_webauthn_credential(a.org_id, a.user_id, id, required, meta).await? {
        return Err(ApiError::forbidden().detail("your organisation requires a second factor for your role; register another one first"));
    }
    Ok(StatusCode::NO_CONTENT)
}

fn mfa_token_unknown() -> ApiError {
    ApiError::invalid_mfa_code().detail("the sign-in attempt is unknown or has expired")
}

async fn login_challenge(state: &AppState, mfa_token: &str) -> ApiResult<(Vec<u8>, ward_store::Challenge)> {
    if !mfa_token.starts_with(CHALLENGE_PREFIX) || mfa_token.len() > 128 {
        return Err(mfa_token_unknown());
    }
    let hash = token_hash(mfa_token);
    let challenge = state.store.challenge(hash.clone()).await?.ok_or_else(mfa_token_unknown)?;
    if let Some(wait) = state.store.throttle(&challenge.login).await?.locked(now_ms()) {
        return Err(ApiError::login_locked().retry_after(wait.max(1) as u64));
    }
    Ok((hash, challenge))
}

/// WebAuthn options for the second step of a sign-in (after `POST /api/v1/auth/login`
/// answered `mfa_required`).
#[utoipa::path(post, path = "/api/v1/auth/mfa/webauthn/options", tag = "auth", request_body = MfaOptionsRequest,
    responses((status = 200, body = CeremonyOptions), (status = 401, body = Problem), (status = 409, body = Problem), (status = 429, body = Problem)))]
async fn mfa_options(State(state): State<AppState>, Json(req): Json<MfaOptionsRequest>) -> ApiResult<Json<CeremonyOptions>> {
    let (hash, challenge) = login_challenge(&state, &req.mfa_token).await?;
    let creds = state.store.webauthn_credentials(challenge.org_id, challenge.user_id).await?;
    let keys = passkeys(&creds)?;
    if keys.is_empty() {
        return Err(ApiError::invalid_state().detail("no usable WebAuthn credential is registered; use a TOTP or recovery code"));
    }
    let (rcr, st) = state.webauthn.start_passkey_authentication(&keys).map_err(internal)?;
    open_ceremony(&state, CeremonyPurpose::Mfa, Some(challenge.user_id), None, Some(hash), &st, &rcr).await
}

/// Completes a sign-in with a WebAuthn assertion instead of a TOTP code. Failures count
/// towards the login name's lockout, as wrong codes do.
#[utoipa::path(post, path = "/api/v1/auth/mfa/webauthn", tag = "auth", request_body = MfaAssertionRequest,
    responses((status = 200, body = Tokens), (status = 400, body = Problem), (status = 401, body = Problem), (status = 429, body = Problem)))]
async fn mfa_finish(State(state): State<AppState>, Meta(meta): Meta, Json(req): Json<MfaAssertionRequest>) -> ApiResult<Json<Tokens>> {
    let (hash, challenge) = login_challenge(&state, &req.mfa_token).await?;
    let pkc = parse_assertion(req.credential)?;
    let who = Claimant { org: challenge.org_id, user: challenge.user_id, login: challenge.login.clone(), action: AuditAction::MfaVerify };
    let ceremony = state.store.take_ceremony(req.ceremony_id, CeremonyPurpose::Mfa).await?;
    let Some(ceremony) = ceremony.filter(|c| c.user_id == Some(challenge.user_id) && c.login_challenge.as_deref() == Some(hash.as_slice()))
    else {
        let f =
            WebAuthnFailure { action: who.action, reason: "challenge_invalid", credential: None, clone_suspected: false, counts: false };
        return Err(refuse(&state, &who, f, challenge_invalid(), meta).await);
    };
    let st: PasskeyAuthentication = serde_json::from_str(&ceremony.state).map_err(internal)?;
    let used = verify_assertion(&state, &who, &pkc, Finish::Listed(st), meta.clone()).await?;
    let (issued, new) = super::auth::second_factor_session(&state, &challenge);
    let restriction = new.restriction;
    match state.store.answer_challenge(hash, challenge, SecondFactor::WebAuthn(used), new, meta).await.map_err(|e| match e {
        ward_store::StoreError::NotFound => mfa_token_unknown(),
        other => device_error(other),
    })? {
        Some((session, device)) => Ok(Json(tokens(issued, session, device, restriction))),
        None => Err(ApiError::webauthn_assertion_invalid().detail("the credential's counter moved on or it was flagged; try again")),
    }
}

async fn step_up_claimant(state: &AppState, s: &AnySession, meta: &RequestMeta) -> ApiResult<Claimant> {
    let a = s.actor;
    let user = state.store.user(a.org_id, a.user_id).await?;
    if let Some(wait) = state.store.throttle(&user.login).await?.locked(now_ms()) {
        let mut ev = AuditEvent::new(AuditAction::StepUp, Outcome::Failure)
            .target("user", a.user_id)
            .detail("method", DetailValue::Code("webauthn"))
            .detail("reason", DetailValue::Code("locked"));
        ev.org_id = Some(a.org_id);
        ev.actor = Some(a.user_id);
        state.store.record(ev, meta.clone()).await?;
        return Err(ApiError::login_locked().retry_after(wait.max(1) as u64));
    }
    Ok(Claimant { org: a.org_id, user: a.user_id, login: user.login, action: AuditAction::StepUp })
}

/// WebAuthn options for a step-up of the signed-in user.
#[utoipa::path(post, path = "/api/v1/me/step-up/webauthn/options", tag = "me", security(("bearer" = [])),
    responses((status = 200, body = CeremonyOptions), (status = 401, body = Problem), (status = 409, body = Problem)))]
async fn step_up_options(State(state): State<AppState>, s: Auth) -> ApiResult<Json<CeremonyOptions>> {
    let creds = state.store.webauthn_credentials(s.actor.org_id, s.actor.user_id).await?;
    let keys = passkeys(&creds)?;
    if keys.is_empty() {
        return Err(ApiError::invalid_state().detail("no usable WebAuthn credential is registered; step up with a TOTP or recovery code"));
    }
    let (rcr, st) = state.webauthn.start_passkey_authentication(&keys).map_err(internal)?;
    open_ceremony(&state, CeremonyPurpose::StepUp, Some(s.actor.user_id), Some(s.session), None, &st, &rcr).await
}

/// Step-up with a WebAuthn assertion: sensitive actions are allowed for the next
/// `[sessions] step_up_max_age_secs`. Failures count towards the login name's lockout, and
/// every attempt is audited (`auth.step_up`, method `webauthn`).
#[utoipa::path(post, path = "/api/v1/me/step-up/webauthn", tag = "me", security(("bearer" = [])), request_body = AssertionRequest,
    responses((status = 200, body = StepUpView), (status = 400, body = Problem), (status = 401, body = Problem), (status = 429, body = Problem)))]
async fn step_up_finish(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Json(req): Json<AssertionRequest>,
) -> ApiResult<Json<StepUpView>> {
    let pkc = parse_assertion(req.credential)?;
    let who = step_up_claimant(&state, &s, &meta).await?;
    let ceremony = state.store.take_ceremony(req.ceremony_id, CeremonyPurpose::StepUp).await?;
    let Some(ceremony) = ceremony.filter(|c| c.user_id == Some(s.actor.user_id) && c.session_id == Some(s.session)) else {
        let f =
            WebAuthnFailure { action: who.action, reason: "challenge_invalid", credential: None, clone_suspected: false, counts: false };
        return Err(refuse(&state, &who, f, challenge_invalid(), meta).await);
    };
    let st: PasskeyAuthentication = serde_json::from_str(&ceremony.state).map_err(internal)?;
    let used = verify_assertion(&state, &who, &pkc, Finish::Listed(st), meta.clone()).await?;
    if !state.store.step_up(who.org, who.user, who.login, s.session, SecondFactor::WebAuthn(used), meta).await? {
        return Err(ApiError::webauthn_assertion_invalid().detail("the credential's counter moved on or it was flagged; try again"));
    }
    let now = now_ms();
    let valid = i64::from(state.config.sessions.step_up_max_age_secs) * 1000;
    Ok(Json(StepUpView { mfa_verified_at: ts(now), valid_until: ts(now + valid) }))
}

/// Options for a passwordless sign-in with a passkey (a discoverable credential): no login
/// name is needed; the authenticator picks the account.
#[utoipa::path(post, path = "/api/v1/auth/passkey/options", tag = "auth",
    responses((status = 200, body = CeremonyOptions)))]
async fn passkey_options(State(state): State<AppState>, Meta(meta): Meta) -> ApiResult<Json<CeremonyOptions>> {
    // Unauthenticated and it stores a ceremony: every call counts against the address's
    // failed-sign-in allowance (`sessions.failed_logins_per_minute_per_address`).
    if let Some(a) = meta.source_ip.as_deref().map(crate::rate_limit::address_key)
        && let Err(wait) = state.login_limits.check(&a, ward_store::now_ms())
    {
        state.store.record(passkey_limited(), meta).await?;
        return Err(ApiError::rate_limited().retry_after(wait));
    }
    let (mut rcr, st) = state.webauthn.start_discoverable_authentication().map_err(internal)?;
    // An explicit sign-in button, not browser autofill: let the browser show its own picker.
    rcr.mediation = None;
    open_ceremony(&state, CeremonyPurpose::Passkey, None, None, None, &st, &rcr).await
}

/// Signs in with a passkey. User verification is required, so the session counts as
/// MFA-verified (possession plus PIN or biometrics). The account checks of a password sign-in
/// apply (disabled account, lockout, device); failures are audited and count towards the
/// account's lockout.
#[utoipa::path(post, path = "/api/v1/auth/passkey", tag = "auth", request_body = PasskeySignInRequest,
    responses((status = 200, body = Tokens), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 429, body = Problem)))]
async fn passkey_finish(State(state): State<AppState>, Meta(meta): Meta, Json(req): Json<PasskeySignInRequest>) -> ApiResult<Json<Tokens>> {
    // Refused before any work while the address is over its allowance; each failure counts.
    let address = meta.source_ip.as_deref().map(crate::rate_limit::address_key);
    if let Some(a) = &address
        && let Err(wait) = state.login_limits.blocked(a, ward_store::now_ms())
    {
        state.store.record(passkey_limited(), meta).await?;
        return Err(ApiError::rate_limited().retry_after(wait));
    }
    let r = passkey_sign_in(&state, meta, req).await;
    if r.is_err()
        && let Some(a) = &address
    {
        let _ = state.login_limits.check(a, ward_store::now_ms());
    }
    r
}

/// The audit event of a passkey request refused for its address's rate.
fn passkey_limited() -> AuditEvent {
    AuditEvent::new(AuditAction::Login, Outcome::Failure)
        .detail("method", DetailValue::Code("passkey"))
        .detail("reason", DetailValue::Code("address_limited"))
}

async fn passkey_sign_in(state: &AppState, meta: ward_store::RequestMeta, req: PasskeySignInRequest) -> ApiResult<Json<Tokens>> {
    let device = device_claim(req.device)?;
    let pkc = parse_assertion(req.credential)?;
    let anonymous = |reason: &'static str| {
        AuditEvent::new(AuditAction::Login, Outcome::Failure)
            .detail("method", DetailValue::Code("passkey"))
            .detail("reason", DetailValue::Code(reason))
    };
    let Some(ceremony) = state.store.take_ceremony(req.ceremony_id, CeremonyPurpose::Passkey).await? else {
        state.store.record(anonymous("challenge_invalid"), meta).await?;
        return Err(challenge_invalid());
    };
    let st: DiscoverableAuthentication = serde_json::from_str(&ceremony.state).map_err(internal)?;
    // The user handle the authenticator returned must be the credential owner's.
    let handle = pkc.get_user_unique_id().and_then(|b| uuid::Uuid::from_slice(b).ok());
    let cred = state.store.webauthn_credential_by_raw_id(pkc.get_credential_id().to_vec()).await?;
    let Some(cred) = cred.filter(|c| handle == Some(c.user_id.0)) else {
        state.store.record(anonymous("unknown_credential"), meta).await?;
        return Err(ApiError::webauthn_credential_unknown());
    };
    let creds = state.store.credentials_by_id(cred.org_id, cred.user_id).await?;
    let login = creds.user.login.clone();
    let who = Claimant { org: cred.org_id, user: cred.user_id, login: login.clone(), action: AuditAction::Login };
    if let Some(wait) = state.store.throttle(&login).await?.locked(now_ms()) {
        state.store.login_failed(login, Some((who.org, who.user)), "locked", true, meta).await?;
        return Err(ApiError::login_locked().retry_after(wait.max(1) as u64));
    }
    if creds.user.disabled {
        state.store.login_failed(login, Some((who.org, who.user)), "disabled", false, meta).await?;
        return Err(ApiError::account_disabled());
    }
    let used = verify_assertion(state, &who, &pkc, Finish::Discoverable(st), meta.clone()).await?;
    let restriction = creds.user.password_must_change.then_some(Restriction::PasswordChange);
    let issued = issue(state);
    let new = NewSession {
        user_id: who.user,
        device,
        tokens: issued.hashes.clone(),
        expires_at: now_ms() + state.config.sessions.session_ttl_secs * 1000,
        restriction,
        mfa_verified: true,
    };
    match state.store.passkey_login(who.org, login, used, new, meta).await.map_err(|e| match e {
        ward_store::StoreError::State("account disabled") => ApiError::account_disabled(),
        other => device_error(other),
    })? {
        Some((session, device)) => Ok(Json(tokens(issued, session, device, restriction))),
        None => Err(ApiError::webauthn_assertion_invalid().detail("the credential's counter moved on or it was flagged; try again")),
    }
}
