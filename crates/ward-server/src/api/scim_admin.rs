//! SCIM administration (docs/identity.md, "SCIM provisioning"): admins issue, list and revoke
//! the organisation's SCIM bearer tokens (issuing and revoking need a step-up and are
//! audited); compliance officers and admins read the deprovisioning timelines (HIPAA
//! 164.308(a)(3)(ii)(C) termination procedures), which the evidence bundle also carries.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use ward_domain::ids::{DeviceId, UserId};
use ward_domain::login::parse_label;
use ward_domain::policy;

use super::dto::ts;
use crate::app::AppState;
use crate::auth::{Auth, Meta};
use crate::extract::{Json, Path, Query};
use crate::problem::{ApiError, ApiResult, Problem};
use crate::scim::SCIM_PREFIX;
use crate::secrets::{new_token, token_hash};

pub(crate) fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(list_tokens, create_token))
        .routes(utoipa_axum::routes!(revoke_token))
        .routes(utoipa_axum::routes!(deprovisions))
        .routes(utoipa_axum::routes!(groups))
}

/// A SCIM token as listed (never the token itself).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ScimTokenView {
    /// Id.
    id: uuid::Uuid,
    /// Which identity provider it is for.
    label: String,
    /// The admin who issued it.
    created_by: UserId,
    /// When.
    created_at: String,
    /// When revoked.
    revoked_at: Option<String>,
    /// When the identity provider last presented it (to the minute; none: never).
    last_used_at: Option<String>,
    /// When it stops working (none: until revoked).
    expires_at: Option<String>,
    /// Its expiry has passed: it is refused.
    expired: bool,
}

impl From<ward_store::ScimToken> for ScimTokenView {
    fn from(t: ward_store::ScimToken) -> Self {
        ScimTokenView {
            id: t.id,
            label: t.label,
            created_by: t.created_by,
            created_at: ts(t.created_at),
            revoked_at: t.revoked_at.map(ts),
            last_used_at: t.last_used_at.map(ts),
            expires_at: t.expires_at.map(ts),
            expired: t.expires_at.is_some_and(|e| e <= ward_store::now_ms()),
        }
    }
}

/// A new token: shown once.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct IssuedScimToken {
    /// The token as listed.
    #[serde(flatten)]
    view: ScimTokenView,
    /// The bearer token for the identity provider (`wst_…`); Ward keeps only its hash.
    token: String,
}

/// What to issue.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateScimToken {
    /// Which identity provider it is for (1 to 100 characters).
    label: String,
    /// Days until it stops working (1 to 3650); absent, it works until revoked.
    expires_in_days: Option<u32>,
}

/// Longest lifetime a token may be given at issue, in days (ten years).
const MAX_TOKEN_DAYS: u32 = 3650;

/// Issues a SCIM bearer token for the organisation (admins, with a step-up). It works on
/// `/scim/v2` only. Audited `scim.token` (op `create`).
#[utoipa::path(post, path = "/api/v1/admin/scim/tokens", tag = "scim", security(("bearer" = [])), request_body = CreateScimToken,
    responses((status = 201, body = IssuedScimToken), (status = 401, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn create_token(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Json(req): Json<CreateScimToken>,
) -> ApiResult<(StatusCode, Json<IssuedScimToken>)> {
    policy::may_administer(&s.actor)?;
    let label = parse_label("label", &req.label, 100)?;
    let expires_at = match req.expires_in_days {
        None => None,
        Some(d) if (1..=MAX_TOKEN_DAYS).contains(&d) => Some(ward_store::now_ms() + i64::from(d) * 86_400_000),
        Some(_) => return Err(ApiError::validation_failed().detail(format!("expires_in_days must be 1 to {MAX_TOKEN_DAYS}"))),
    };
    crate::auth::require_step_up(&state, &s, "scim_token", &meta).await?;
    let token = new_token(SCIM_PREFIX);
    let t = state.store.create_scim_token(s.actor.org_id, label, token_hash(&token), expires_at, s.actor.user_id, meta).await?;
    Ok((StatusCode::CREATED, Json(IssuedScimToken { view: t.into(), token })))
}

/// The organisation's SCIM tokens, newest first (admins).
#[utoipa::path(get, path = "/api/v1/admin/scim/tokens", tag = "scim", security(("bearer" = [])),
    responses((status = 200, body = Vec<ScimTokenView>), (status = 403, body = Problem)))]
async fn list_tokens(State(state): State<AppState>, s: Auth) -> ApiResult<Json<Vec<ScimTokenView>>> {
    policy::may_administer(&s.actor)?;
    Ok(Json(state.store.scim_tokens(s.actor.org_id).await?.into_iter().map(Into::into).collect()))
}

/// Revokes a SCIM token at once (admins, with a step-up). Audited `scim.token` (op `revoke`).
#[utoipa::path(delete, path = "/api/v1/admin/scim/tokens/{token_id}", tag = "scim", security(("bearer" = [])),
    params(("token_id" = uuid::Uuid, Path)),
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem)))]
async fn revoke_token(State(state): State<AppState>, Meta(meta): Meta, s: Auth, Path(id): Path<uuid::Uuid>) -> ApiResult<StatusCode> {
    policy::may_administer(&s.actor)?;
    crate::auth::require_step_up(&state, &s, "scim_token", &meta).await?;
    state.store.revoke_scim_token(s.actor.org_id, id, s.actor.user_id, meta).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// One device's wipe in a deprovisioning.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WipeStepView {
    /// The device.
    device_id: DeviceId,
    /// Queued.
    requested_at: String,
    /// The device fetched the command.
    delivered_at: Option<String>,
    /// The device confirmed the wipe.
    acknowledged_at: Option<String>,
    /// Closed without reaching the device (`no_wipe_channel`: it never registered).
    closed_reason: Option<String>,
}

/// A deprovisioning's timeline: request received → sessions revoked → wipes queued →
/// connections closed → each wipe acknowledged. Times are RFC 3339 with milliseconds in
/// `*_ms` twins (Unix ms) for exact ordering.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeprovisionView {
    /// Id.
    pub(crate) id: uuid::Uuid,
    /// The account.
    pub(crate) user_id: UserId,
    /// The SCIM token that asked.
    pub(crate) token_id: uuid::Uuid,
    /// `active_false` or `delete`.
    pub(crate) cause: String,
    /// The request arrived (Unix ms).
    pub(crate) received_at_ms: i64,
    /// Every session and refresh token revoked (Unix ms).
    pub(crate) sessions_revoked_at_ms: i64,
    /// How many sessions.
    pub(crate) sessions_revoked: i64,
    /// Every wipe queued (Unix ms).
    pub(crate) wipes_queued_at_ms: i64,
    /// How many wipes.
    pub(crate) wipes_queued: i64,
    /// The signal closing the person's connections was sent (Unix ms).
    pub(crate) connections_closed_at_ms: Option<i64>,
    /// Each wipe and its progress.
    pub(crate) wipes: Vec<WipeStepView>,
}

impl From<ward_store::DeprovisionRecord> for DeprovisionView {
    fn from(r: ward_store::DeprovisionRecord) -> Self {
        DeprovisionView {
            id: r.id,
            user_id: r.user_id,
            token_id: r.token_id,
            cause: r.cause,
            received_at_ms: r.received_at,
            sessions_revoked_at_ms: r.sessions_revoked_at,
            sessions_revoked: r.sessions_revoked,
            wipes_queued_at_ms: r.wipes_queued_at,
            wipes_queued: r.wipes_queued,
            connections_closed_at_ms: r.connections_closed_at,
            wipes: r
                .wipes
                .into_iter()
                .map(|w| WipeStepView {
                    device_id: w.device_id,
                    requested_at: ts(w.requested_at),
                    delivered_at: w.delivered_at.map(ts),
                    acknowledged_at: w.acknowledged_at.map(ts),
                    closed_reason: w.closed_reason,
                })
                .collect(),
        }
    }
}

/// How many timelines.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct DeprovisionQuery {
    /// 1 to 500 (default 100).
    limit: Option<u32>,
}

/// The organisation's SCIM deprovisioning timelines, newest first (compliance officers and
/// admins; audited as `audit.read`, op `scim_deprovisions`).
#[utoipa::path(get, path = "/api/v1/admin/scim/deprovisions", tag = "scim", security(("bearer" = [])), params(DeprovisionQuery),
    responses((status = 200, body = Vec<DeprovisionView>), (status = 400, body = Problem), (status = 403, body = Problem)))]
async fn deprovisions(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Query(q): Query<DeprovisionQuery>,
) -> ApiResult<Json<Vec<DeprovisionView>>> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid_parameter().detail("limit must be from 1 to 500"));
    }
    super::audit::audited(&state, &s, meta, "scim_deprovisions").await?;
    Ok(Json(state.store.scim_deprovisions(s.actor.org_id, limit).await?.into_iter().map(Into::into).collect()))
}

/// A SCIM group as the Provisioning screen shows it: name, binding, member count.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ScimGroupView {
    /// Id.
    id: uuid::Uuid,
    /// The identity provider's name for it.
    display_name: String,
    /// The role membership grants (`clinician`, `nurse`, `staff`), or none for a plain group.
    role: Option<String>,
    /// How many members.
    members: usize,
    /// How many patients' care teams it is attached to (a count only).
    care_teams: i64,
    /// Last change (name or members).
    updated_at: String,
}

/// The organisation's SCIM groups, read-only: the identity provider manages them (admins).
#[utoipa::path(get, path = "/api/v1/admin/scim/groups", tag = "scim", security(("bearer" = [])),
    responses((status = 200, body = Vec<ScimGroupView>), (status = 403, body = Problem)))]
async fn groups(State(state): State<AppState>, s: Auth) -> ApiResult<Json<Vec<ScimGroupView>>> {
    policy::may_administer(&s.actor)?;
    let groups = state.store.scim_groups(s.actor.org_id).await?;
    let counts = state.store.care_team_group_counts(s.actor.org_id).await?;
    Ok(Json(
        groups
            .into_iter()
            .map(|g| ScimGroupView {
                care_teams: counts.get(&g.id).copied().unwrap_or(0),
                id: g.id,
                display_name: g.display_name,
                role: g.role.map(|r| r.as_str().to_owned()),
                members: g.members.len(),
                updated_at: ts(g.updated_at),
            })
            .collect(),
    ))
}
