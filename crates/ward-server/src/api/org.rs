//! The caller's organisation and its policy: `/api/v1/org`.

use axum::extract::State;
use ward_domain::policy;

use super::dto::{OrgView, PolicyRequest};
use crate::app::AppState;
use crate::auth::{Auth, Meta};
use crate::extract::Json;
use crate::problem::{ApiError, ApiResult, Problem};

pub(crate) fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new().routes(utoipa_axum::routes!(get_org)).routes(utoipa_axum::routes!(set_policy))
}

/// The caller's organisation and policy.
#[utoipa::path(get, path = "/api/v1/org", tag = "org", security(("bearer" = [])),
    responses((status = 200, body = OrgView), (status = 401, body = Problem)))]
async fn get_org(State(state): State<AppState>, s: Auth) -> ApiResult<Json<OrgView>> {
    Ok(Json(state.store.org(s.actor.org_id).await?.into()))
}

/// Sets which roles must use a second factor and the idle timeout (admins only).
#[utoipa::path(put, path = "/api/v1/org/policy", tag = "org", security(("bearer" = [])), request_body = PolicyRequest,
    responses((status = 200, body = OrgView), (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn set_policy(State(state): State<AppState>, Meta(meta): Meta, s: Auth, Json(req): Json<PolicyRequest>) -> ApiResult<Json<OrgView>> {
    policy::may_administer(&s.actor)?;
    if !(60..=86_400).contains(&req.idle_timeout_secs) {
        return Err(ApiError::validation_failed().detail("idle_timeout_secs must be between 60 and 86400"));
    }
    let mut roles = req.mfa_required_roles;
    roles.sort_by_key(|r| r.as_str());
    roles.dedup();
    Ok(Json(state.store.set_org_policy(s.actor.org_id, s.actor.user_id, roles, req.idle_timeout_secs, meta).await?.into()))
}
