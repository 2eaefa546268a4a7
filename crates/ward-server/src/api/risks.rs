//! The risk register of the HIPAA risk analysis (164.308(a)(1)(ii)(A) risk analysis, (B)
//! risk management): `/api/v1/risks`, kept by admins and compliance officers, listed by
//! score (likelihood × impact on 1–5 scales) with overdue reviews flagged
//! (docs/compliance-registers.md).

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use ward_domain::audit::{AuditAction, AuditEvent, DetailValue, Outcome};
use ward_domain::ids::{RiskId, UserId};
use ward_domain::policy;
use ward_domain::registers::{RiskDraft, RiskStatus, review_overdue, risk_score};
use ward_store::{RequestMeta, Risk, TrainingRecord};

use super::dto::ts;
use super::vendors::{may_manage_register, register_event, stored, today};
use crate::app::AppState;
use crate::auth::{Auth, Meta};
use crate::extract::{Json, Path};
use crate::problem::{ApiResult, Problem};

pub(crate) fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(list_risks, create_risk))
        .routes(utoipa_axum::routes!(update_risk, delete_risk))
        .routes(utoipa_axum::routes!(list_training, record_training))
        .routes(utoipa_axum::routes!(my_training))
}

/// A risk entry to store.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RiskRequest {
    /// What could go wrong (at most 2,000 characters).
    risk: String,
    /// 1 (rare) to 5 (almost certain).
    likelihood: i64,
    /// 1 (negligible) to 5 (severe).
    impact: i64,
    status: RiskStatus,
    /// Next review, `YYYY-MM-DD`.
    review_on: String,
    /// The workforce user who owns it.
    owner: Option<UserId>,
}

/// A risk in the register.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct RiskView {
    id: RiskId,
    risk: String,
    likelihood: u8,
    impact: u8,
    /// Likelihood × impact, 1–25.
    score: u8,
    status: RiskStatus,
    review_on: String,
    /// The review date has passed and the risk is not closed.
    review_overdue: bool,
    owner: Option<UserId>,
    /// RFC 3339.
    updated_at: String,
}

/// The register, highest score first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct RiskList {
    items: Vec<RiskView>,
}

pub(crate) fn view(r: Risk, today: &str) -> RiskView {
    RiskView {
        id: r.id,
        score: risk_score(r.likelihood, r.impact),
        review_overdue: review_overdue(r.status, &r.review_on, today),
        risk: r.description,
        likelihood: r.likelihood,
        impact: r.impact,
        status: r.status,
        review_on: r.review_on,
        owner: r.owner_id,
        updated_at: ts(r.updated_at),
    }
}

fn actor_event(s: &Auth, outcome: Outcome, reason: &'static str) -> AuditEvent {
    register_event(s, AuditAction::RiskChange, outcome, reason)
}

async fn may_manage(state: &AppState, s: &Auth, meta: &RequestMeta) -> ApiResult<()> {
    may_manage_register(state, s, AuditAction::RiskChange, meta).await
}

async fn draft(state: &AppState, s: &Auth, r: &RiskRequest, meta: &RequestMeta) -> ApiResult<RiskDraft> {
    match RiskDraft::parse(&r.risk, r.likelihood, r.impact, r.status, &r.review_on) {
        Ok(d) => Ok(d),
        Err(e) => {
            state.store.record(actor_event(s, Outcome::Failure, "invalid_risk"), meta.clone()).await?;
            Err(e.into())
        }
    }
}

/// The risk register, highest score first, with overdue reviews flagged (admins and
/// compliance officers).
#[utoipa::path(get, path = "/api/v1/risks", tag = "registers", security(("bearer" = [])),
    responses((status = 200, body = RiskList), (status = 403, body = Problem)))]
async fn list_risks(State(state): State<AppState>, Meta(meta): Meta, s: Auth) -> ApiResult<Json<RiskList>> {
    may_manage(&state, &s, &meta).await?;
    let today = today();
    Ok(Json(RiskList { items: state.store.risks(s.actor.org_id).await?.into_iter().map(|r| view(r, &today)).collect() }))
}

/// Adds a risk (admins and compliance officers; audited with the score and codes only).
#[utoipa::path(post, path = "/api/v1/risks", tag = "registers", security(("bearer" = [])), request_body = RiskRequest,
    responses((status = 201, body = RiskView), (status = 400, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn create_risk(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Json(req): Json<RiskRequest>,
) -> ApiResult<(StatusCode, Json<RiskView>)> {
    may_manage(&state, &s, &meta).await?;
    let d = draft(&state, &s, &req, &meta).await?;
    let r = state.store.create_risk(s.actor.org_id, s.actor.user_id, d, req.owner, meta).await.map_err(stored)?;
    Ok((StatusCode::CREATED, Json(view(r, &today()))))
}

/// Replaces a risk's entry (admins and compliance officers; audited).
#[utoipa::path(put, path = "/api/v1/risks/{risk_id}", tag = "registers", security(("bearer" = [])),
    params(("risk_id" = RiskId, Path)), request_body = RiskRequest,
    responses((status = 200, body = RiskView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn update_risk(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Path(id): Path<RiskId>,
    Json(req): Json<RiskRequest>,
) -> ApiResult<Json<RiskView>> {
    may_manage(&state, &s, &meta).await?;
    let d = draft(&state, &s, &req, &meta).await?;
    let r = state.store.update_risk(s.actor.org_id, s.actor.user_id, id, d, req.owner, meta).await.map_err(stored)?;
    Ok(Json(view(r, &today())))
}

/// Removes a risk (admins and compliance officers; audited).
#[utoipa::path(delete, path = "/api/v1/risks/{risk_id}", tag = "registers", security(("bearer" = [])),
    params(("risk_id" = RiskId, Path)), responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn delete_risk(State(state): State<AppState>, Meta(meta): Meta, s: Auth, Path(id): Path<RiskId>) -> ApiResult<StatusCode> {
    may_manage(&state, &s, &meta).await?;
    state.store.delete_risk(s.actor.org_id, s.actor.user_id, id, meta).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A training completion to record.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TrainingRequest {
    /// The workforce user who completed it.
    user_id: UserId,
    /// The course (one line, at most 200 characters).
    course: String,
    /// `YYYY-MM-DD`.
    completed_on: String,
}

/// A completed training course.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct TrainingView {
    #[schema(value_type = String, format = Uuid)]
    id: uuid::Uuid,
    user_id: UserId,
    course: String,
    completed_on: String,
    recorded_by: Option<UserId>,
}

/// Training records, newest completion first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct TrainingList {
    items: Vec<TrainingView>,
}

pub(crate) fn training_view(t: TrainingRecord) -> TrainingView {
    TrainingView { id: t.id, user_id: t.user_id, course: t.course, completed_on: t.completed_on, recorded_by: t.recorded_by }
}

/// Every training record of the organisation (admins and compliance officers).
#[utoipa::path(get, path = "/api/v1/training-records", tag = "registers", security(("bearer" = [])),
    responses((status = 200, body = TrainingList), (status = 403, body = Problem)))]
async fn list_training(State(state): State<AppState>, Meta(meta): Meta, s: Auth) -> ApiResult<Json<TrainingList>> {
    may_manage(&state, &s, &meta).await?;
    let items = state.store.training_records(s.actor.org_id, None).await?;
    Ok(Json(TrainingList { items: items.into_iter().map(training_view).collect() }))
}

/// Records that a workforce user completed a course (admins and compliance officers;
/// audited `training.record`).
#[utoipa::path(post, path = "/api/v1/training-records", tag = "registers", security(("bearer" = [])), request_body = TrainingRequest,
    responses((status = 201, body = TrainingView), (status = 400, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn record_training(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Json(req): Json<TrainingRequest>,
) -> ApiResult<(StatusCode, Json<TrainingView>)> {
    if let Err(d) = policy::may_manage_compliance_registers(&s.actor) {
        let mut ev = AuditEvent::new(AuditAction::TrainingRecord, Outcome::Denied).detail("reason", DetailValue::Code("role"));
        ev.org_id = Some(s.actor.org_id);
        ev.actor = Some(s.actor.user_id);
        state.store.record(ev, meta).await?;
        return Err(d.into());
    }
    let course = ward_domain::login::parse_label("course", &req.course, ward_domain::registers::TITLE_MAX)?;
    let completed_on = ward_domain::registers::parse_date("completed_on", &req.completed_on)?;
    let t = state.store.record_training(s.actor.org_id, s.actor.user_id, req.user_id, course, completed_on, meta).await.map_err(stored)?;
    Ok((StatusCode::CREATED, Json(training_view(t))))
}

/// The caller's own training records (everyone).
#[utoipa::path(get, path = "/api/v1/me/training-records", tag = "registers", security(("bearer" = [])),
    responses((status = 200, body = TrainingList)))]
async fn my_training(State(state): State<AppState>, s: Auth) -> ApiResult<Json<TrainingList>> {
    let items = state.store.training_records(s.actor.org_id, Some(s.actor.user_id)).await?;
    Ok(Json(TrainingList { items: items.into_iter().map(training_view).collect() }))
}
