//! Single sign-on with OpenID Connect (docs/identity.md, "Single sign-on"): the browser flow
//! (`GET /api/v1/auth/oidc/{org}/start` → provider → `GET /api/v1/auth/oidc/callback` → the web
//! app at `/#/sso/<hand-over>` → `POST /api/v1/auth/oidc/complete`), back-channel logout
//! (`POST /api/v1/auth/oidc/{org}/backchannel-logout`), and the admins' provider settings
//! (`/api/v1/admin/oidc`).
//!
//! The callback never puts a session token in a URL: it leaves a one-time, two-minute
//! hand-over token in the fragment of the web app's address, which the app exchanges (with its
//! device) for a session exactly as a password sign-in would get one (`first_factor_passed`:
//! Ward's own second factor is still asked for when the account has one). Against login CSRF,
//! a cookie set at the start binds the callback to the browser that began the sign-in, and a
//! second one set at the callback binds the hand-over to the browser that came back: a link
//! to `/#/sso/<token>` is useless in anyone else's browser.

use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, COOKIE, HOST, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use ward_domain::audit::AuditAction;
use ward_domain::ids::UserId;
use ward_domain::login::{LoginName, parse_label};
use ward_domain::oidc::{RoleMapping, claim_values, role_for, validate_mapping};
use ward_domain::policy;
use ward_domain::role::Role;
use ward_store::{HandoffTaken, NewOidcHandoff, NewUser, OidcProvider, OidcProviderInput, OidcState, StateTaken, now_ms};

use super::auth::{FirstFactorLimit, device_claim, first_factor_passed};
use super::dto::{DeviceRequest, LoginResponse, ts};
use crate::app::AppState;
use crate::auth::{Auth, Meta};
use crate::extract::{Json, Path, Query};
use crate::oidc::{OidcError, ProviderSettings};
use crate::problem::{ApiError, ApiResult, Problem};
use crate::secrets::{SSO_HANDOFF_PREFIX, new_token, token_hash};

/// The browser-binding cookie: host-only, https-only, not readable by scripts, sent on the
/// provider's top-level redirect back (SameSite=Lax).
const BINDING_COOKIE: &str = "__Host-ward-sso";
/// The hand-over-binding cookie, set by the callback and sent only by the web app's own
/// same-origin fetch to `complete` (SameSite=Strict). `__Host-` requires `Path=/`, so it is
/// not narrowed to the `complete` path; it is HttpOnly and lives two minutes.
const HANDOFF_COOKIE: &str = "__Host-ward-sso-handoff";
/// How long the web app has to collect a finished sign-in.
const HANDOFF_TTL_MS: i64 = 120_000;
/// The callback path registered at providers.
pub(crate) const CALLBACK_PATH: &str = "/api/v1/auth/oidc/callback";

pub(crate) fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(start))
        .routes(utoipa_axum::routes!(callback))
        .routes(utoipa_axum::routes!(complete))
        .routes(utoipa_axum::routes!(backchannel_logout))
        .routes(utoipa_axum::routes!(get_provider, put_provider, delete_provider))
        .routes(utoipa_axum::routes!(get_link, link_user, unlink_user))
}

/// Where browsers reach Ward: `[oidc] public_url`, `[portal] public_url`, the first WebAuthn
/// origin. Without any, the request's own host (its `Host` header, or the authority of an
/// HTTP/2 request, which carries no `Host`) only when it is a loopback name or address (a
/// demo on one's own machine): anywhere else the caller chooses that header, and the redirect
/// URI (where the provider sends codes) must not be theirs to pick.
fn public_base(state: &AppState, headers: &HeaderMap, uri: &Uri) -> ApiResult<String> {
    let configured = state
        .config
        .oidc
        .public_url
        .as_deref()
        .or(state.config.portal.public_url.as_deref())
        .or_else(|| state.config.webauthn.origins.first().map(String::as_str));
    if let Some(u) = configured {
        return Ok(u.trim_end_matches('/').to_owned());
    }
    let host = headers.get(HOST).and_then(|h| h.to_str().ok()).or_else(|| uri.authority().map(|a| a.as_str()));
    match host.filter(|h| loopback_authority(h)) {
        Some(h) => Ok(format!("https://{}", h.to_ascii_lowercase())),
        None => Err(ApiError::oidc_public_url_required()
            .detail("set [oidc] public_url (or [portal] public_url): Ward does not take its address from the request's host")),
    }
}

/// Whether a `Host` value is exactly `localhost`, `127.0.0.1` or `[::1]` with an optional
/// port: no userinfo, path or anything else.
fn loopback_authority(host: &str) -> bool {
    let (name, port) = match (host.starts_with('['), host.find(']'), host.find(':')) {
        (true, Some(end), _) => host.split_at(end + 1),
        (true, None, _) => return false,
        (false, _, Some(i)) => host.split_at(i),
        (false, _, None) => (host, ""),
    };
    let port_ok = port.is_empty()
        || port.strip_prefix(':').is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok());
    port_ok && matches!(name.to_ascii_lowercase().as_str(), "localhost" | "127.0.0.1" | "[::1]")
}

fn settings(p: &OidcProvider) -> ProviderSettings {
    ProviderSettings {
        org: p.org_id,
        issuer: p.issuer.clone(),
        client_id: p.client_id.clone(),
        client_secret: p.client_secret.clone(),
        scopes: p.scopes.clone(),
    }
}

fn redirect(to: &str, cookies: &[String]) -> Response {
    let mut res = StatusCode::SEE_OTHER.into_response();
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(to) {
        h.insert(LOCATION, v);
    }
    for c in cookies.iter().filter_map(|c| HeaderValue::from_str(c).ok()) {
        h.append(SET_COOKIE, c);
    }
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// The value of a cookie in the request.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn provider_error(e: &OidcError) -> ApiError {
    tracing::warn!(error = %e, "single sign-on provider exchange failed");
    match e {
        OidcError::Token(_) => ApiError::oidc_token_invalid(),
        OidcError::Provider(_) | OidcError::Settings(_) => ApiError::oidc_provider_error(),
    }
}

/// Starts a single sign-on: redirects (303) the browser to the organisation's provider with
/// state, nonce and a PKCE S256 challenge; the state is kept server-side, usable once, for
/// `[oidc] state_ttl_secs`, and bound to this browser by a cookie.
#[utoipa::path(get, path = "/api/v1/auth/oidc/{org}/start", tag = "auth",
    params(("org" = String, Path, description = "The organisation's slug")),
    responses((status = 303, description = "To the provider"), (status = 404, body = Problem), (status = 429, body = Problem), (status = 502, body = Problem),
        (status = 503, body = Problem)))]
async fn start(
    State(state): State<AppState>,
    Meta(meta): Meta,
    Path(slug): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> ApiResult<Response> {
    // Anyone may call this and each call reaches the provider: a per-address budget.
    if let Some(a) = meta.source_ip.as_deref().map(crate::rate_limit::address_key)
        && let Err(wait) = state.oidc_start_limits.check(&a, now_ms())
    {
        return Err(ApiError::rate_limited().retry_after(wait));
    }
    let org = state.store.org_by_slug(&slug).await.map_err(|_| ApiError::oidc_not_configured())?;
    let p = state.store.oidc_provider(org.id, false).await?.ok_or_else(ApiError::oidc_not_configured)?;
    let redirect_uri = format!("{}{CALLBACK_PATH}", public_base(&state, &headers, &uri)?);
    let req = crate::oidc::authorization_request(&state.oidc_http, &settings(&p), &redirect_uri).await.map_err(|e| provider_error(&e))?;
    let ttl = i64::try_from(state.config.oidc.state_ttl_secs).unwrap_or(600);
    let kept = OidcState { org_id: org.id, nonce: req.nonce, pkce_verifier: req.pkce_verifier, redirect_uri };
    state.store.create_oidc_state(token_hash(&req.state), kept, now_ms() + ttl * 1000).await?;
    let binding = format!("{BINDING_COOKIE}={}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={ttl}", req.state);
    Ok(redirect(&req.url, &[binding]))
}

/// What the provider sends back.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct CallbackParams {
    /// The state from the start.
    state: Option<String>,
    /// The authorization code.
    code: Option<String>,
    /// An error code from the provider instead of a code.
    error: Option<String>,
}

/// The provider's redirect back: spends the state (once), exchanges the code with the PKCE
/// verifier, validates the ID token (signature, issuer, audience, expiry, nonce), finds the
/// account linked to the subject (or creates one when just-in-time accounts are on), and sends
/// the browser to the web app with a one-time hand-over token. Every refusal is problem+json,
/// changes nothing, and is audited `oidc.login` with a reason.
#[utoipa::path(get, path = "/api/v1/auth/oidc/callback", tag = "auth", params(CallbackParams),
    responses((status = 303, description = "To the web app"), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem), (status = 429, body = Problem), (status = 502, body = Problem)))]
async fn callback(
    State(state): State<AppState>,
    Meta(meta): Meta,
    headers: HeaderMap,
    Query(q): Query<CallbackParams>,
) -> ApiResult<Response> {
    // Refusals are audited; an address that keeps failing is stopped before that, like
    // failed password sign-ins, so it cannot fill the audit log.
    let limit = FirstFactorLimit::enter(&state, &meta)?;
    let count_failure = || limit.failed();
    let refuse = |org: Option<ward_domain::ids::OrgId>, reason: &'static str, err: ApiError| {
        let store = state.store.clone();
        let meta = meta.clone();
        count_failure();
        async move {
            store.oidc_refused(AuditAction::OidcLogin, org, reason, meta).await?;
            Err::<Response, ApiError>(err)
        }
    };
    let Some(st) = q.state.filter(|s| !s.is_empty() && s.len() <= 256) else {
        return refuse(None, "state_missing", ApiError::oidc_state_invalid()).await;
    };
    // The state must come back to the browser that started: a callback carried to someone
    // else's browser (login CSRF) has no matching cookie.
    let bound = cookie(&headers, BINDING_COOKIE).is_some_and(|c| c == st);
    let taken = state.store.take_oidc_state(token_hash(&st), meta.clone()).await?;
    let kept = match taken {
        StateTaken::Live(k) => k,
        // Spent and expired states are audited by the store.
        StateTaken::Spent => {
            count_failure();
            return Err(ApiError::oidc_state_invalid());
        }
        StateTaken::Unknown => return refuse(None, "state_unknown", ApiError::oidc_state_invalid()).await,
    };
    let org = kept.org_id;
    if !bound {
        return refuse(Some(org), "browser_mismatch", ApiError::oidc_state_invalid()).await;
    }
    if q.error.is_some() {
        return refuse(Some(org), "provider_error", ApiError::oidc_provider_error().detail("the provider did not sign the user in")).await;
    }
    let Some(code) = q.code.filter(|c| !c.is_empty() && c.len() <= 2048) else {
        return refuse(Some(org), "code_missing", ApiError::oidc_state_invalid()).await;
    };
    let Some(p) = state.store.oidc_provider(org, true).await? else {
        return refuse(Some(org), "not_configured", ApiError::oidc_not_configured()).await;
    };
    let identity =
        match crate::oidc::exchange(&state.oidc_http, &settings(&p), &kept.redirect_uri, &code, &kept.pkce_verifier, &kept.nonce).await {
            Ok(i) => i,
            Err(e) => {
                let reason = if matches!(e, OidcError::Token(_)) { "token_invalid" } else { "provider_error" };
                return refuse(Some(org), reason, provider_error(&e)).await;
            }
        };
    let (user, jit) = match state.store.oidc_linked_user(org, identity.subject.clone()).await? {
        Some(u) => (u, false),
        None if p.jit_enabled => {
            let values = claim_values(identity.claims.get(&p.role_claim));
            let Some(role) = role_for(&values, &p.role_map, p.jit_default_role) else {
                return refuse(Some(org), "no_role", ApiError::oidc_no_role()).await;
            };
            (jit_account(&state, org, &identity, role, meta.clone()).await?, true)
        }
        None => return refuse(Some(org), "not_linked", ApiError::oidc_account_not_linked()).await,
    };
    if user.disabled {
        return refuse(Some(org), "disabled", ApiError::account_disabled()).await;
    }
    let token = new_token(SSO_HANDOFF_PREFIX);
    let browser = new_token("");
    let handoff = NewOidcHandoff {
        token_hash: token_hash(&token),
        browser_hash: token_hash(&browser),
        sid: identity.sid,
        jit,
        expires_at: now_ms() + HANDOFF_TTL_MS,
    };
    state.store.create_oidc_handoff(handoff, &user, meta).await?;
    let clear = format!("{BINDING_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0");
    let bind = format!("{HANDOFF_COOKIE}={browser}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={}", HANDOFF_TTL_MS / 1000);
    // The web app at the address the sign-in started from (its redirect URI's origin), not
    // one taken from this request.
    let base = kept.redirect_uri.strip_suffix(CALLBACK_PATH).unwrap_or(&kept.redirect_uri);
    Ok(redirect(&format!("{base}/#/sso/{token}"), &[clear, bind]))
}

/// Creates the just-in-time account: a login name derived from the organisation and the
/// subject (never the subject itself, which can be an email address), the provider's display
/// name when it is a usable label, and a random password no one knows.
async fn jit_account(
    state: &AppState,
    org: ward_domain::ids::OrgId,
    identity: &crate::oidc::Identity,
    role: Role,
    meta: ward_store::RequestMeta,
) -> ApiResult<ward_store::User> {
    let o = state.store.org(org).await?;
    // The issuer too: the same subject at a later provider is another person.
    let issuer = identity.claims.get("iss").and_then(serde_json::Value::as_str).unwrap_or_default();
    let digest = token_hash(&format!("{}\n{issuer}\n{}", org.0, identity.subject));
    let short: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let login = LoginName::parse(&format!("sso-{short}@{}", o.slug)).map_err(|_| ApiError::internal_cause("derived login name"))?;
    let name = ["name", "preferred_username"]
        .iter()
        .filter_map(|k| identity.claims.get(*k).and_then(serde_json::Value::as_str))
        .find_map(|n| parse_label("name", n, 100).ok())
        .unwrap_or_else(|| "Single sign-on user".to_owned());
    let hash = crate::secrets::hash_password(new_token("")).await.map_err(ApiError::internal_cause)?;
    let new = NewUser {
        org_id: org,
        login: login.to_string(),
        display_name: name,
        role,
        password_hash: hash,
        password_must_change: false,
        patient_id: None,
    };
    Ok(state.store.oidc_create_user(new, identity.subject.clone(), meta).await?)
}

/// A hand-over to exchange.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CompleteRequest {
    /// The token from `/#/sso/<token>`.
    token: String,
    /// The device signing in.
    device: DeviceRequest,
}

/// Exchanges the callback's one-time hand-over for a session, as after a password: a
/// challenge for the second factor when the account has one, else tokens (restricted while a
/// required second factor is not enrolled). A provider's own MFA claim (`amr`) does not count
/// as Ward's second factor. Only the browser the callback sent to the web app can redeem it:
/// the request must carry the HttpOnly cookie set with the hand-over (the web app's
/// same-origin fetch sends it); without it the answer is `oidc_handoff_invalid`, nothing is
/// spent, and the refusal is audited.
#[utoipa::path(post, path = "/api/v1/auth/oidc/complete", tag = "auth", request_body = CompleteRequest,
    responses((status = 200, body = LoginResponse), (status = 401, body = Problem), (status = 403, body = Problem), (status = 429, body = Problem)))]
async fn complete(
    State(state): State<AppState>,
    Meta(meta): Meta,
    headers: HeaderMap,
    Json(req): Json<CompleteRequest>,
) -> ApiResult<([(axum::http::HeaderName, HeaderValue); 1], Json<LoginResponse>)> {
    let device = device_claim(req.device)?;
    let now = now_ms();
    let limit = FirstFactorLimit::enter(&state, &meta)?;
    let refuse = |org: Option<ward_domain::ids::OrgId>, reason: &'static str| {
        let store = state.store.clone();
        let meta = meta.clone();
        limit.failed();
        async move {
            store.oidc_refused(AuditAction::OidcLogin, org, reason, meta).await?;
            Err(ApiError::oidc_handoff_invalid())
        }
    };
    if !req.token.starts_with(SSO_HANDOFF_PREFIX) || req.token.len() > 128 {
        return refuse(None, "handoff_unknown").await;
    }
    let browser = cookie(&headers, HANDOFF_COOKIE).filter(|c| !c.is_empty() && c.len() <= 128).map(token_hash);
    let (user, sid) = match state.store.redeem_oidc_handoff(token_hash(&req.token), browser).await? {
        HandoffTaken::Redeemed(user, sid) => (user, sid),
        HandoffTaken::WrongBrowser(org) => return refuse(Some(org), "handoff_browser_mismatch").await,
        HandoffTaken::Unknown => return refuse(None, "handoff_unknown").await,
    };
    if user.disabled {
        return Err(ApiError::account_disabled());
    }
    let login = user.login.clone();
    let answer = first_factor_passed(&state, &user, login, device, meta).await?;
    match &answer.0 {
        LoginResponse::Authenticated { tokens } => state.store.bind_oidc_session(&user, tokens.session_id, sid).await?,
        // The session opens when Ward's second factor is answered; bind it then.
        LoginResponse::MfaRequired { mfa_token, .. } => {
            let expires = now + state.config.sessions.mfa_challenge_ttl_secs * 1000;
            state.store.create_oidc_challenge(token_hash(mfa_token), &user, sid, expires).await?;
        }
    }
    let clear = format!("{HANDOFF_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0");
    let clear = HeaderValue::from_str(&clear).map_err(|_| ApiError::internal_cause("cookie header"))?;
    Ok(([(SET_COOKIE, clear)], answer))
}

/// The back-channel logout error body (Back-Channel Logout 1.0 section 2.8, OAuth 2.0 error
/// form), which providers understand; Ward's problem+json is not used here.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LogoutError {
    /// `invalid_request`.
    error: &'static str,
    /// Why, in fixed words.
    error_description: &'static str,
}

fn logout_refused(description: &'static str) -> Response {
    let mut res =
        (StatusCode::BAD_REQUEST, axum::Json(LogoutError { error: "invalid_request", error_description: description })).into_response();
    res.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// Back-channel logout from the organisation's provider (OpenID Connect Back-Channel Logout
/// 1.0): a form with `logout_token`, a JWT signed by the provider. Valid tokens end the Ward
/// sessions opened under the provider session (`sid`), or else every session of the account
/// linked to `sub`; a token id (`jti`) works once. Refusals answer 400 in the standard's own
/// form (`{"error": "invalid_request", ...}`), change nothing and are audited `oidc.logout`.
#[utoipa::path(post, path = "/api/v1/auth/oidc/{org}/backchannel-logout", tag = "auth",
    params(("org" = String, Path, description = "The organisation's slug")),
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "logout_token=<JWT>"),
    responses((status = 200, description = "Sessions ended"), (status = 400, body = LogoutError), (status = 429, body = Problem)))]
async fn backchannel_logout(
    State(state): State<AppState>,
    Meta(meta): Meta,
    Path(slug): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    // Bad tokens are audited, so an address sending many is stopped: counted per organisation
    // and address, apart from sign-in failures (which would let anyone sharing the provider's
    // address get its logouts dropped).
    let now = now_ms();
    let slug_key: String = slug.chars().take(64).collect();
    let address = meta.source_ip.as_deref().map(|a| format!("{slug_key}\n{}", crate::rate_limit::address_key(a)));
    if let Some(a) = &address
        && let Err(wait) = state.oidc_logout_limits.blocked(a, now)
    {
        return Err(ApiError::rate_limited().retry_after(wait));
    }
    let count_failure = || {
        if let Some(a) = &address {
            let _ = state.oidc_logout_limits.check(a, now);
        }
    };
    let Ok(org) = state.store.org_by_slug(&slug).await else {
        count_failure();
        return Ok(logout_refused("unknown organisation"));
    };
    let refused = |reason: &'static str, description: &'static str| {
        let store = state.store.clone();
        let meta = meta.clone();
        count_failure();
        async move {
            store.oidc_refused(AuditAction::OidcLogout, Some(org.id), reason, meta).await?;
            Ok::<Response, ApiError>(logout_refused(description))
        }
    };
    let form = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let token = form
        .then(|| form_urlencoded::parse(&body[..]).find(|(k, _)| k == "logout_token").map(|(_, v)| v.into_owned()))
        .flatten()
        .filter(|t| !t.is_empty() && t.len() <= 16_384);
    let Some(token) = token else {
        return refused("malformed", "the body must be a form with logout_token").await;
    };
    let Some(p) = state.store.oidc_provider(org.id, false).await? else {
        return refused("not_configured", "single sign-on is not set up for this organisation").await;
    };
    let claims = match crate::oidc::verify_logout_token(&state.oidc_http, &settings(&p), &token, now_ms()).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "back-channel logout token refused");
            return refused("token_invalid", "the logout token is not valid").await;
        }
    };
    match state.store.oidc_backchannel_logout(org.id, claims.jti, claims.remember_until, claims.sub, claims.sid, meta).await? {
        // Validly signed: a provider retrying is not an attack, so it is not counted (the store
        // audited it).
        ward_store::LogoutOutcome::Replayed => Ok(logout_refused("the logout token was already used")),
        ward_store::LogoutOutcome::Revoked(ended) => {
            end_sessions(&state, ended).await;
            let mut res = StatusCode::OK.into_response();
            res.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            Ok(res)
        }
    }
}

/// Closes the connections of revoked sessions on every node, like other revocations.
async fn end_sessions(state: &AppState, ended: Vec<(UserId, ward_domain::ids::SessionId)>) {
    let mut by_user: std::collections::BTreeMap<UserId, Vec<ward_domain::ids::SessionId>> = Default::default();
    for (u, s) in ended {
        by_user.entry(u).or_default().push(s);
    }
    for (u, sessions) in by_user {
        state.end_sessions(u, Some(sessions)).await;
    }
}

/// The organisation's provider as admins see it (never the client secret).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OidcProviderView {
    /// Issuer URL.
    issuer: String,
    /// Ward's client id at the provider.
    client_id: String,
    /// Whether a client secret is stored (it is never shown).
    has_client_secret: bool,
    /// Scopes asked for besides `openid`.
    scopes: Vec<String>,
    /// The ID token claim holding role or group names.
    role_claim: String,
    /// Claim value to Ward role; the first entry the provider asserts wins.
    role_map: Vec<RoleMapping>,
    /// Whether unknown provider users get an account.
    jit_enabled: bool,
    /// The role of a new account when no entry matches (clinician, nurse or staff), or none
    /// (the sign-in is refused).
    jit_default_role: Option<Role>,
    /// The redirect URI to register at the provider; null when Ward's public address must be
    /// configured first (`public_url_required`).
    redirect_uri: Option<String>,
    /// The back-channel logout URI to register at the provider; null like `redirect_uri`.
    backchannel_logout_uri: Option<String>,
    /// Whether `[oidc] public_url` (or `[portal] public_url`) must be set before single
    /// sign-on works: none is configured and this request did not come to a loopback host.
    public_url_required: bool,
    /// Who last changed it.
    updated_by: UserId,
    /// When.
    updated_at: String,
}

fn view(state: &AppState, (headers, uri): (&HeaderMap, &Uri), slug: &str, p: OidcProvider) -> OidcProviderView {
    let base = public_base(state, headers, uri).ok();
    OidcProviderView {
        issuer: p.issuer,
        client_id: p.client_id,
        has_client_secret: p.has_client_secret,
        scopes: p.scopes,
        role_claim: p.role_claim,
        role_map: p.role_map,
        jit_enabled: p.jit_enabled,
        jit_default_role: p.jit_default_role,
        redirect_uri: base.as_ref().map(|b| format!("{b}{CALLBACK_PATH}")),
        backchannel_logout_uri: base.as_ref().map(|b| format!("{b}/api/v1/auth/oidc/{slug}/backchannel-logout")),
        public_url_required: base.is_none(),
        updated_by: p.updated_by,
        updated_at: ts(p.updated_at),
    }
}

/// Provider settings to store.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct OidcProviderRequest {
    /// Issuer URL (https).
    issuer: String,
    /// Client id (1 to 255 characters).
    client_id: String,
    /// Client secret (at most 512 characters); omit to keep the stored one. Stored sealed.
    client_secret: Option<String>,
    /// Extra scopes (at most 20; `openid` is always asked for).
    #[serde(default)]
    scopes: Vec<String>,
    /// The claim holding role or group names (default `groups`).
    role_claim: Option<String>,
    /// Claim value to Ward role (at most 50; never `patient`). A privileged role (admin,
    /// compliance officer) comes only from an entry naming it.
    #[serde(default)]
    role_map: Vec<RoleMapping>,
    /// Create accounts for unknown provider users.
    #[serde(default)]
    jit_enabled: bool,
    /// The role of a new account when no entry matches: clinician, nurse or staff.
    jit_default_role: Option<Role>,
}

fn token_like(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.:/".contains(&b))
}

fn parse_request(state: &AppState, r: OidcProviderRequest) -> ApiResult<OidcProviderInput> {
    let bad = |d: &str| ApiError::validation_failed().detail(d.to_owned());
    state.oidc_http.check_issuer(&r.issuer).map_err(|_| bad("issuer must be an https URL"))?;
    if r.issuer.len() > 500 {
        return Err(bad("issuer must be at most 500 characters"));
    }
    if r.client_id.is_empty() || r.client_id.len() > 255 || r.client_id.chars().any(char::is_control) {
        return Err(bad("client_id must be 1 to 255 characters without control characters"));
    }
    if r.client_secret.as_ref().is_some_and(|s| s.is_empty() || s.len() > 512 || s.chars().any(char::is_control)) {
        return Err(bad("client_secret must be 1 to 512 characters without control characters"));
    }
    if r.scopes.len() > 20 || !r.scopes.iter().all(|s| token_like(s, 100)) {
        return Err(bad("scopes: at most 20, each 1 to 100 of letters, digits and _ - . : /"));
    }
    let role_claim = r.role_claim.unwrap_or_else(|| "groups".to_owned());
    if !token_like(&role_claim, 100) {
        return Err(bad("role_claim must be 1 to 100 of letters, digits and _ - . : /"));
    }
    validate_mapping(&r.role_map, r.jit_default_role)?;
    let mut scopes: Vec<String> = r.scopes.into_iter().filter(|s| s != "openid").collect();
    scopes.dedup();
    Ok(OidcProviderInput {
        issuer: r.issuer,
        client_id: r.client_id,
        client_secret: r.client_secret,
        scopes,
        role_claim,
        role_map: r.role_map,
        jit_enabled: r.jit_enabled,
        jit_default_role: r.jit_default_role,
    })
}

/// The organisation's single sign-on provider (admins; never the client secret).
#[utoipa::path(get, path = "/api/v1/admin/oidc", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = OidcProviderView), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn get_provider(State(state): State<AppState>, s: Auth, headers: HeaderMap, uri: Uri) -> ApiResult<Json<OidcProviderView>> {
    policy::may_administer(&s.actor)?;
    let p = state.store.oidc_provider(s.actor.org_id, false).await?.ok_or_else(ApiError::oidc_not_configured)?;
    let org = state.store.org(s.actor.org_id).await?;
    Ok(Json(view(&state, (&headers, &uri), &org.slug, p)))
}

/// Sets the organisation's single sign-on provider (admins, with a step-up; audited
/// `oidc.config` op `set`, never the secret).
#[utoipa::path(put, path = "/api/v1/admin/oidc", tag = "auth", security(("bearer" = [])), request_body = OidcProviderRequest,
    responses((status = 200, body = OidcProviderView), (status = 401, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn put_provider(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    headers: HeaderMap,
    uri: Uri,
    Json(req): Json<OidcProviderRequest>,
) -> ApiResult<Json<OidcProviderView>> {
    policy::may_administer(&s.actor)?;
    let input = parse_request(&state, req)?;
    crate::auth::require_step_up(&state, &s, "oidc_config", &meta).await?;
    let (p, ended) = state.store.set_oidc_provider(s.actor.org_id, s.actor.user_id, input, meta).await?;
    // A new issuer cleared the links: the sessions they opened are revoked, close them.
    end_sessions(&state, ended).await;
    // The next sign-in discovers the provider afresh (on this node; others within the
    // metadata lifetime, or at once when the issuer changed: the cache is keyed by issuer).
    state.oidc_http.invalidate(s.actor.org_id);
    let org = state.store.org(s.actor.org_id).await?;
    Ok(Json(view(&state, (&headers, &uri), &org.slug, p)))
}

/// Removes the organisation's provider: single sign-on stops (admins, with a step-up; audited
/// `oidc.config` op `delete`). Existing sessions are not ended.
#[utoipa::path(delete, path = "/api/v1/admin/oidc", tag = "auth", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn delete_provider(State(state): State<AppState>, Meta(meta): Meta, s: Auth) -> ApiResult<StatusCode> {
    policy::may_administer(&s.actor)?;
    crate::auth::require_step_up(&state, &s, "oidc_config", &meta).await?;
    state.oidc_http.invalidate(s.actor.org_id);
    match state.store.delete_oidc_provider(s.actor.org_id, s.actor.user_id, meta).await {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(ward_store::StoreError::NotFound) => Err(ApiError::oidc_not_configured()),
        Err(e) => Err(e.into()),
    }
}

/// A provider subject to link.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LinkRequest {
    /// The provider's `sub` for this person (1 to 255 characters).
    subject: String,
}

/// Links an existing workforce account to a provider subject, so that person signs in with
/// single sign-on (admins, with a step-up; audited `oidc.config` op `link`). `409 conflict`
/// when the subject is linked to another account. Relinking to another subject ends the
/// account's single sign-on sessions (the old subject's logouts could no longer reach them).
#[utoipa::path(put, path = "/api/v1/admin/oidc/links/{user_id}", tag = "auth", security(("bearer" = [])),
    params(("user_id" = UserId, Path)), request_body = LinkRequest,
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn link_user(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Path(user): Path<UserId>,
    Json(req): Json<LinkRequest>,
) -> ApiResult<StatusCode> {
    policy::may_administer(&s.actor)?;
    if req.subject.is_empty() || req.subject.len() > 255 || req.subject.chars().any(char::is_control) {
        return Err(ApiError::validation_failed().detail("subject must be 1 to 255 characters without control characters"));
    }
    crate::auth::require_step_up(&state, &s, "oidc_config", &meta).await?;
    match state.store.oidc_link_user(s.actor.org_id, user, req.subject, s.actor.user_id, meta).await {
        Ok(ended) => {
            end_sessions(&state, ended).await;
            Ok(StatusCode::NO_CONTENT)
        }
        Err(ward_store::StoreError::State(_)) => Err(ApiError::validation_failed().detail("only workforce accounts use single sign-on")),
        Err(e) => Err(e.into()),
    }
}

/// An account's single sign-on link, as admins see it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OidcLinkView {
    /// Whether the organisation has a provider set up.
    provider_configured: bool,
    /// Whether the account is linked to a provider subject.
    linked: bool,
    /// The provider's `sub` for this person, when linked.
    subject: Option<String>,
    /// When the link was made (by an admin, or at the account's just-in-time creation).
    linked_at: Option<String>,
}

/// Whether an account of the organisation is linked to a provider subject, and to which
/// (admins). `404 not_found` for an account of another organisation.
#[utoipa::path(get, path = "/api/v1/admin/oidc/links/{user_id}", tag = "auth", security(("bearer" = [])),
    params(("user_id" = UserId, Path)),
    responses((status = 200, body = OidcLinkView), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn get_link(State(state): State<AppState>, s: Auth, Path(user): Path<UserId>) -> ApiResult<Json<OidcLinkView>> {
    policy::may_administer(&s.actor)?;
    let link = state.store.oidc_link_of(s.actor.org_id, user).await?;
    let provider_configured = state.store.oidc_provider(s.actor.org_id, false).await?.is_some();
    Ok(Json(OidcLinkView {
        provider_configured,
        linked: link.is_some(),
        linked_at: link.as_ref().map(|l| ts(l.created_at)),
        subject: link.map(|l| l.subject),
    }))
}

/// Removes an account's link to its provider subject: that person no longer signs in with
/// single sign-on (admins, with a step-up; audited `oidc.config` op `unlink`). Its single
/// sign-on sessions end (the provider could no longer end them); password and passkey
/// sessions stay. `404 not_found` when the account is not linked.
#[utoipa::path(delete, path = "/api/v1/admin/oidc/links/{user_id}", tag = "auth", security(("bearer" = [])),
    params(("user_id" = UserId, Path)),
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn unlink_user(State(state): State<AppState>, Meta(meta): Meta, s: Auth, Path(user): Path<UserId>) -> ApiResult<StatusCode> {
    policy::may_administer(&s.actor)?;
    crate::auth::require_step_up(&state, &s, "oidc_config", &meta).await?;
    let ended = state.store.oidc_unlink_user(s.actor.org_id, user, s.actor.user_id, meta).await?;
    end_sessions(&state, ended).await;
    Ok(StatusCode::NO_CONTENT)
}
