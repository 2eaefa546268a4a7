//! Patient portal one-time sign-in links (docs/identity.md): the care team mints one for a
//! patient account (`POST /api/v1/patients/{patient_id}/portal-link`; whoever may send the
//! patient a notice) to carry in a PHI-free notice's `{portal_link}`, and the patient
//! exchanges it once (`POST /api/v1/auth/link`) in place of a password. The second factor, if
//! the account has one, is still asked for. Only the token's hash is stored; the audit log
//! never holds the token.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use ward_domain::audit::AuditAction;
use ward_domain::ids::PatientId;
use ward_domain::policy;
use ward_store::{PortalRedemption, now_ms};

use super::auth::{FirstFactorLimit, device_claim, first_factor_passed};
use super::consents::{refuse, standing};
use super::dto::{DeviceRequest, LoginResponse, ts};
use crate::app::AppState;
use crate::auth::{Auth, Meta};
use crate::extract::{Json, Path};
use crate::problem::{ApiError, ApiResult, Problem};
use crate::secrets::{PORTAL_LINK_PREFIX, new_token, token_hash};

pub(crate) fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new().routes(utoipa_axum::routes!(create_link)).routes(utoipa_axum::routes!(redeem_link))
}

/// A minted link.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct PortalLinkView {
    /// The link: `<portal.public_url>/#/link/<token>`, or `/#/link/<token>` when the server
    /// knows no public address. It signs the patient in once.
    pub(crate) url: String,
    /// When it stops working (RFC 3339).
    pub(crate) expires_at: String,
}

/// A link to exchange.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LinkRequest {
    /// The token from the link.
    pub(crate) token: String,
    /// The device signing in.
    pub(crate) device: DeviceRequest,
}

/// Where links point: the configured address, else the first WebAuthn origin, else none.
fn public_base(state: &AppState) -> String {
    let base = state.config.portal.public_url.as_deref().or_else(|| state.config.webauthn.origins.first().map(String::as_str));
    base.unwrap_or("").trim_end_matches('/').to_owned()
}

/// Mints a one-time portal sign-in link for the patient's account (the care team members who
/// may send the patient notices; audited, never with the token). Refused with
/// `patient_account_required` when the patient has no enabled account.
#[utoipa::path(post, path = "/api/v1/patients/{patient_id}/portal-link", tag = "auth", security(("bearer" = [])),
    params(("patient_id" = PatientId, Path)),
    responses((status = 201, body = PortalLinkView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn create_link(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Path(id): Path<PatientId>,
) -> ApiResult<(StatusCode, Json<PortalLinkView>)> {
    let st = standing(&state, &s, id).await?;
    if let Err(d) = policy::may_send_notice(&s.actor, st.on_care_team) {
        return Err(refuse(&state, &s, meta, AuditAction::PortalLink, id, d).await);
    }
    let token = new_token(PORTAL_LINK_PREFIX);
    let expires = now_ms() + i64::try_from(state.config.portal.link_ttl_secs).unwrap_or(i64::MAX / 2_000) * 1000;
    match state.store.create_portal_link(s.actor.org_id, s.actor.user_id, id, token_hash(&token), expires, meta).await {
        Ok(_) => {}
        Err(ward_store::StoreError::State("no patient account")) => {
            return Err(ApiError::patient_account_required().detail("the patient has no enabled patient account to sign in to"));
        }
        Err(e) => return Err(e.into()),
    }
    let url = format!("{}/#/link/{token}", public_base(&state));
    Ok((StatusCode::CREATED, Json(PortalLinkView { url, expires_at: ts(expires) })))
}

/// Signs in with a one-time portal link instead of a password. Unknown, used and expired
/// links get the same answer; failures count towards the per-address sign-in limit. If the
/// account has a second factor, the answer is a challenge for `POST /api/v1/auth/mfa` (or the
/// WebAuthn sign-in step), exactly as after a password.
#[utoipa::path(post, path = "/api/v1/auth/link", tag = "auth", request_body = LinkRequest,
    responses((status = 200, body = LoginResponse), (status = 401, body = Problem), (status = 403, body = Problem), (status = 429, body = Problem)))]
async fn redeem_link(State(state): State<AppState>, Meta(meta): Meta, Json(req): Json<LinkRequest>) -> ApiResult<Json<LoginResponse>> {
    let device = device_claim(req.device)?;
    let limit = FirstFactorLimit::enter(&state, &meta)?;
    let failed = || {
        limit.failed();
        ApiError::invalid_portal_link()
    };
    if !req.token.starts_with(PORTAL_LINK_PREFIX) || req.token.len() > 128 {
        return Err(failed());
    }
    let user = match state.store.redeem_portal_link(token_hash(&req.token), meta.clone()).await? {
        PortalRedemption::Invalid => return Err(failed()),
        PortalRedemption::Disabled(_) => return Err(ApiError::account_disabled()),
        PortalRedemption::Redeemed(u) => u,
    };
    let login = user.login.clone();
    first_factor_passed(&state, &user, login, device, meta).await
}
