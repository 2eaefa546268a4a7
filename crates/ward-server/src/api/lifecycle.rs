//! Retention and legal hold (docs/retention.md; HIPAA 164.316(b)(2)(i), 164.310(d)(2)(i)):
//! `GET`/`PUT /api/v1/org/retention` (periods per conversation kind), `POST`/`GET
//! /api/v1/legal-holds`, `POST /api/v1/legal-holds/{hold_id}/release`, `GET
//! /api/v1/retention/shreds` (the shred records): compliance officers and admins only, changes
//! and refusals audited. `POST /api/v1/patients/{patient_id}/export`: a patient's
//! conversations as a readable archive for a right-of-access request (164.524).

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use ward_domain::audit::{AuditAction, AuditEvent, Outcome};
use ward_domain::ids::{PatientId, UserId};
use ward_domain::lifecycle::{HoldReason, HoldSubject, RetentionPolicy};
use ward_domain::page::PageLimit;
use ward_domain::policy;

use super::dto::ts;
use crate::app::AppState;
use crate::auth::{Auth, Meta};
use crate::extract::{Json, Path, Query};
use crate::problem::{ApiError, ApiResult, Problem};

pub(crate) fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(get_policy, put_policy))
        .routes(utoipa_axum::routes!(place_hold, list_holds))
        .routes(utoipa_axum::routes!(release_hold))
        .routes(utoipa_axum::routes!(list_shreds))
        .routes(utoipa_axum::routes!(export_patient))
}

/// Records a refused attempt, then answers 403.
async fn refuse(state: &AppState, s: &Auth, meta: ward_store::RequestMeta, action: AuditAction, denial: policy::Denial) -> ApiError {
    let mut ev = AuditEvent::new(action, Outcome::Denied);
    ev.org_id = Some(s.actor.org_id);
    ev.actor = Some(s.actor.user_id);
    ev.device = Some(s.device);
    if let Err(e) = state.store.record(ev, meta).await {
        return e.into();
    }
    denial.into()
}

/// The organisation's retention periods in days per conversation kind (defaults: patient
/// 2192, direct and group 365).
#[utoipa::path(get, path = "/api/v1/org/retention", tag = "retention", security(("bearer" = [])),
    responses((status = 200, body = RetentionPolicy), (status = 403, body = Problem)))]
async fn get_policy(State(state): State<AppState>, s: Auth) -> ApiResult<Json<RetentionPolicy>> {
    policy::may_manage_retention(&s.actor)?;
    Ok(Json(state.store.retention_policy(s.actor.org_id).await?))
}

/// Replaces the organisation's retention periods (1 to 36500 days each; audited).
#[utoipa::path(put, path = "/api/v1/org/retention", tag = "retention", security(("bearer" = [])), request_body = RetentionPolicy,
    responses((status = 200, body = RetentionPolicy), (status = 400, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn put_policy(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Json(p): Json<RetentionPolicy>,
) -> ApiResult<Json<RetentionPolicy>> {
    if let Err(d) = policy::may_manage_retention(&s.actor) {
        return Err(refuse(&state, &s, meta, AuditAction::RetentionPolicy, d).await);
    }
    Ok(Json(state.store.set_retention_policy(s.actor, p, meta).await?))
}

/// A legal hold to place.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct HoldRequest {
    /// What it holds.
    pub(crate) subject_kind: HoldSubject,
    /// The user, conversation or patient id.
    pub(crate) subject_id: uuid::Uuid,
    /// The legal matter (1 to 500 characters; no patient information).
    pub(crate) reason: String,
}

/// A legal hold.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct HoldView {
    /// Id.
    pub(crate) id: uuid::Uuid,
    /// What it holds.
    pub(crate) subject_kind: HoldSubject,
    /// The user, conversation or patient id.
    pub(crate) subject_id: uuid::Uuid,
    /// The legal matter.
    pub(crate) reason: String,
    /// Who placed it.
    pub(crate) placed_by: UserId,
    /// When (RFC 3339).
    pub(crate) placed_at: String,
    /// Who released it.
    pub(crate) released_by: Option<UserId>,
    /// When it was released (RFC 3339); absent while it stands.
    pub(crate) released_at: Option<String>,
    /// Whether it stands.
    pub(crate) active: bool,
}

impl From<ward_store::LegalHold> for HoldView {
    fn from(h: ward_store::LegalHold) -> Self {
        Self {
            id: h.id,
            subject_kind: h.subject_kind,
            subject_id: h.subject_id,
            reason: h.reason,
            placed_by: h.placed_by,
            placed_at: ts(h.placed_at),
            released_by: h.released_by,
            active: h.released_at.is_none(),
            released_at: h.released_at.map(ts),
        }
    }
}

/// Legal holds.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct HoldList {
    /// Newest first.
    pub(crate) items: Vec<HoldView>,
}

/// Which holds to list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct HoldQuery {
    /// Only holds that stand (default false: all, released ones too).
    active: Option<bool>,
}

/// Places a legal hold: while it stands, nothing it covers is shredded or deleted (audited).
#[utoipa::path(post, path = "/api/v1/legal-holds", tag = "retention", security(("bearer" = [])), request_body = HoldRequest,
    responses((status = 201, body = HoldView), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn place_hold(State(state): State<AppState>, Meta(meta): Meta, s: Auth, Json(req): Json<HoldRequest>) -> ApiResult<Response> {
    if let Err(d) = policy::may_manage_retention(&s.actor) {
        return Err(refuse(&state, &s, meta, AuditAction::LegalHoldPlace, d).await);
    }
    let reason = HoldReason::parse(req.reason)?;
    let hold = state.store.place_hold(s.actor, req.subject_kind, req.subject_id, reason, meta).await?;
    Ok((axum::http::StatusCode::CREATED, Json(HoldView::from(hold))).into_response())
}

/// The organisation's legal holds, newest first.
#[utoipa::path(get, path = "/api/v1/legal-holds", tag = "retention", security(("bearer" = [])), params(HoldQuery),
    responses((status = 200, body = HoldList), (status = 400, body = Problem), (status = 403, body = Problem)))]
async fn list_holds(State(state): State<AppState>, s: Auth, Query(q): Query<HoldQuery>) -> ApiResult<Json<HoldList>> {
    policy::may_manage_retention(&s.actor)?;
    let holds = state.store.legal_holds(s.actor.org_id, q.active.unwrap_or(false)).await?;
    Ok(Json(HoldList { items: holds.into_iter().map(HoldView::from).collect() }))
}

/// Releases a legal hold (audited); releasing twice is `409 invalid_state`.
#[utoipa::path(post, path = "/api/v1/legal-holds/{hold_id}/release", tag = "retention", security(("bearer" = [])),
    params(("hold_id" = uuid::Uuid, Path)),
    responses((status = 200, body = HoldView), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn release_hold(State(state): State<AppState>, Meta(meta): Meta, s: Auth, Path(id): Path<uuid::Uuid>) -> ApiResult<Json<HoldView>> {
    if let Err(d) = policy::may_manage_retention(&s.actor) {
        return Err(refuse(&state, &s, meta, AuditAction::LegalHoldRelease, d).await);
    }
    Ok(Json(state.store.release_hold(s.actor, id, meta).await?.into()))
}

/// One crypto-shredding: what went, when, under which period.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ShredView {
    /// Id.
    pub(crate) id: uuid::Uuid,
    /// `conversation`.
    pub(crate) scope_kind: String,
    /// The conversation.
    pub(crate) scope_id: uuid::Uuid,
    /// The destroyed data key versions.
    pub(crate) versions: Vec<u32>,
    /// Messages that became tombstones.
    pub(crate) message_count: i64,
    /// Whether every key of the conversation went (its title too).
    pub(crate) whole: bool,
    /// The conversation kind whose period applied.
    pub(crate) policy_kind: String,
    /// The period in days.
    pub(crate) policy_days: i32,
    /// Content older than this had expired (RFC 3339).
    pub(crate) horizon: String,
    /// When (RFC 3339).
    pub(crate) shredded_at: String,
}

/// Shred records.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ShredList {
    /// Newest first.
    pub(crate) items: Vec<ShredView>,
}

/// How many records to list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ShredQuery {
    /// Page size, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
}

/// The organisation's shred records, newest first: the auditor's evidence that expired
/// content was destroyed and under which policy.
#[utoipa::path(get, path = "/api/v1/retention/shreds", tag = "retention", security(("bearer" = [])), params(ShredQuery),
    responses((status = 200, body = ShredList), (status = 400, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn list_shreds(State(state): State<AppState>, s: Auth, Query(q): Query<ShredQuery>) -> ApiResult<Json<ShredList>> {
    policy::may_manage_retention(&s.actor)?;
    let limit = PageLimit::parse(q.limit)?;
    let records = state.store.shred_records(s.actor.org_id, limit.get()).await?;
    Ok(Json(ShredList {
        items: records
            .into_iter()
            .map(|r| ShredView {
                id: r.id,
                scope_kind: r.scope_kind,
                scope_id: r.scope_id,
                versions: r.versions,
                message_count: r.message_count,
                whole: r.whole_scope,
                policy_kind: r.policy_kind,
                policy_days: r.policy_days,
                horizon: ts(r.horizon_at),
                shredded_at: ts(r.shredded_at),
            })
            .collect(),
    }))
}

/// A patient's conversations as a zip archive: `index.txt`, one readable transcript per
/// conversation and `export.json` (compliance officers and admins, or the patient themself;
/// audited as `patient.export`).
#[utoipa::path(post, path = "/api/v1/patients/{patient_id}/export", tag = "patients", security(("bearer" = [])),
    params(("patient_id" = PatientId, Path)),
    responses((status = 200, description = "The archive", content((String = "application/zip"))),
        (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn export_patient(State(state): State<AppState>, Meta(meta): Meta, s: Auth, Path(id): Path<PatientId>) -> ApiResult<Response> {
    super::devices::require_phi_allowed(&state, &s, &meta).await?;
    let export = state.store.patient_export(s.actor, id, meta).await?;
    let zip = crate::lifecycle::patient_archive(&export).map_err(|e| ApiError::internal_cause(e.to_string()))?;
    let disposition = format!("attachment; filename=\"ward-patient-{id}.zip\"");
    Ok(([(header::CONTENT_TYPE, "application/zip".to_owned()), (header::CONTENT_DISPOSITION, disposition)], zip).into_response())
}
