//! Patient records and care teams: `/api/v1/patients`. The MRN travels only in bodies, never
//! in URLs, so it cannot reach access logs.

use axum::extract::State;
use axum::http::StatusCode;
use ward_domain::ids::{PatientId, UserId};
use ward_domain::login::parse_label;
use ward_domain::policy;
use ward_domain::role::Role;

use serde::Serialize;
use utoipa::ToSchema;

use super::dto::{CareTeamGroupsRequest, CareTeamRequest, CreatePatientRequest, OnCallRequest, PatientSearchRequest, PatientView};
use crate::app::AppState;
use crate::auth::{Auth, Meta};
use crate::extract::{Json, Path};
use crate::problem::{ApiError, ApiResult, Problem};

pub(crate) fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(create_patient))
        .routes(utoipa_axum::routes!(search_patient))
        .routes(utoipa_axum::routes!(get_patient))
        .routes(utoipa_axum::routes!(set_care_team))
        .routes(utoipa_axum::routes!(set_on_call))
        .routes(utoipa_axum::routes!(set_care_team_groups))
        .routes(utoipa_axum::routes!(team_groups))
}

fn mrn(raw: &str) -> ApiResult<String> {
    let m = parse_label("mrn", raw, 64)?;
    if !m.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(ApiError::validation_failed().detail("mrn may use only letters, digits and -"));
    }
    Ok(m)
}

/// The record as answered, with who on its care team is on call now.
pub(crate) async fn with_on_call(state: &AppState, p: ward_store::Patient) -> ApiResult<Json<PatientView>> {
    let on_call = state.store.on_call(p.org_id, p.id).await?;
    Ok(Json(PatientView::new(p, on_call)))
}

/// Creates a patient record with its care team (admins, clinicians, nurses).
#[utoipa::path(post, path = "/api/v1/patients", tag = "patients", security(("bearer" = [])), request_body = CreatePatientRequest,
    responses((status = 201, body = PatientView), (status = 403, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn create_patient(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Json(req): Json<CreatePatientRequest>,
) -> ApiResult<(StatusCode, Json<PatientView>)> {
    policy::may_create_patient(&s.actor)?;
    let mrn = mrn(&req.mrn)?;
    let name = parse_label("display_name", &req.display_name, 200)?;
    if req.care_team.len() > 100 {
        return Err(ApiError::validation_failed().detail("a care team has at most 100 members"));
    }
    let p = state.store.create_patient(s.actor.org_id, s.actor.user_id, mrn, name, req.care_team, meta).await?;
    Ok((StatusCode::CREATED, Json(PatientView::new(p, Vec::new()))))
}

/// Finds a patient by exact MRN (staff only; audited).
#[utoipa::path(post, path = "/api/v1/patients/search", tag = "patients", security(("bearer" = [])), request_body = PatientSearchRequest,
    responses((status = 200, body = PatientView), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn search_patient(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Json(req): Json<PatientSearchRequest>,
) -> ApiResult<Json<PatientView>> {
    policy::may_use_directory(&s.actor)?;
    super::devices::require_phi_allowed(&state, &s, &meta).await?;
    let mrn = mrn(&req.mrn)?;
    let p = state.store.find_patient(s.actor.org_id, s.actor.user_id, mrn, meta).await?;
    with_on_call(&state, p).await
}

/// A patient record (staff, or the patient themself; audited).
#[utoipa::path(get, path = "/api/v1/patients/{patient_id}", tag = "patients", security(("bearer" = [])), params(("patient_id" = PatientId, Path)),
    responses((status = 200, body = PatientView), (status = 404, body = Problem)))]
async fn get_patient(State(state): State<AppState>, Meta(meta): Meta, s: Auth, Path(id): Path<PatientId>) -> ApiResult<Json<PatientView>> {
    super::devices::require_phi_allowed(&state, &s, &meta).await?;
    if s.actor.role == Role::Patient {
        let me = state.store.user(s.actor.org_id, s.actor.user_id).await?;
        if me.patient_id != Some(id) {
            return Err(ApiError::not_found());
        }
    }
    let p = state.store.read_patient(s.actor.org_id, s.actor.user_id, id, meta).await?;
    let Json(view) = with_on_call(&state, p).await?;
    // The patient sees their care team, not the organisation's groups behind it.
    Ok(Json(if s.actor.role == Role::Patient { view.for_patient() } else { view }))
}

/// Replaces a patient's care team (admins, or clinicians and nurses on the team).
#[utoipa::path(put, path = "/api/v1/patients/{patient_id}/care-team", tag = "patients", security(("bearer" = [])),
    params(("patient_id" = PatientId, Path)), request_body = CareTeamRequest,
    responses((status = 200, body = PatientView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn set_care_team(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Path(id): Path<PatientId>,
    Json(req): Json<CareTeamRequest>,
) -> ApiResult<Json<PatientView>> {
    if s.actor.role == Role::Patient {
        return Err(ApiError::forbidden());
    }
    let on_team = state.store.is_on_care_team(s.actor.org_id, id, s.actor.user_id).await?;
    policy::may_edit_care_team(&s.actor, on_team)?;
    if req.care_team.len() > 100 {
        return Err(ApiError::validation_failed().detail("a care team has at most 100 members"));
    }
    // The answer names the patient: not for a device blocked from PHI or a pending policy.
    super::devices::require_phi_allowed(&state, &s, &meta).await?;
    let p = state.store.set_care_team(s.actor.org_id, s.actor.user_id, id, req.care_team, meta).await?;
    with_on_call(&state, p).await
}

/// Puts a care-team member on or off call: on-call members are told when an urgent or STAT
/// message about the patient stays unread (escalation step 2). Authorized like care-team
/// edits; audited (`patient.on_call`).
#[utoipa::path(put, path = "/api/v1/patients/{patient_id}/care-team/{user_id}/on-call", tag = "patients", security(("bearer" = [])),
    params(("patient_id" = PatientId, Path), ("user_id" = UserId, Path)), request_body = OnCallRequest,
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn set_on_call(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Path((id, user)): Path<(PatientId, UserId)>,
    Json(req): Json<OnCallRequest>,
) -> ApiResult<StatusCode> {
    if s.actor.role == Role::Patient {
        return Err(ApiError::forbidden());
    }
    let on_team = state.store.is_on_care_team(s.actor.org_id, id, s.actor.user_id).await?;
    policy::may_edit_care_team(&s.actor, on_team)?;
    state.store.set_on_call(s.actor.org_id, s.actor.user_id, id, user, req.on_call, meta).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Attaches SCIM groups to a patient's care team, replacing the attached set: every active
/// workforce member of an attached group is on the care team, and joins or leaves it as the
/// identity provider changes the group (docs/identity.md, "Care teams from groups").
/// Authorized like care-team edits; each attach and detach audited (`patient.care_team`, the
/// group id and counts).
#[utoipa::path(put, path = "/api/v1/patients/{patient_id}/care-team/groups", tag = "patients", security(("bearer" = [])),
    params(("patient_id" = PatientId, Path)), request_body = CareTeamGroupsRequest,
    responses((status = 200, body = PatientView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn set_care_team_groups(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Path(id): Path<PatientId>,
    Json(req): Json<CareTeamGroupsRequest>,
) -> ApiResult<Json<PatientView>> {
    if s.actor.role == Role::Patient {
        return Err(ApiError::forbidden());
    }
    let on_team = state.store.is_on_care_team(s.actor.org_id, id, s.actor.user_id).await?;
    policy::may_edit_care_team(&s.actor, on_team)?;
    if req.group_ids.len() > ward_store::MAX_CARE_TEAM_GROUPS {
        return Err(ApiError::validation_failed().detail("a care team has at most 20 groups attached"));
    }
    super::devices::require_phi_allowed(&state, &s, &meta).await?;
    let p = state.store.set_care_team_groups(s.actor.org_id, s.actor.user_id, id, req.group_ids, meta).await.map_err(|e| match e {
        ward_store::StoreError::State(why) if why == ward_store::UNKNOWN_GROUP => ApiError::unknown_group().detail(why),
        other => other.into(),
    })?;
    with_on_call(&state, p).await
}

/// A group a care team may have attached.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TeamGroupView {
    /// Id.
    id: uuid::Uuid,
    /// The identity provider's name for it.
    display_name: String,
    /// How many members it has (active workforce accounts count toward a care team).
    members: usize,
}

/// The organisation's SCIM groups by name, for attaching to care teams (admins, clinicians and
/// nurses: those who may edit a care team). Names and counts only: no member, no patient.
#[utoipa::path(get, path = "/api/v1/groups", tag = "patients", security(("bearer" = [])),
    responses((status = 200, body = Vec<TeamGroupView>), (status = 403, body = Problem)))]
async fn team_groups(State(state): State<AppState>, s: Auth) -> ApiResult<Json<Vec<TeamGroupView>>> {
    policy::may_create_patient(&s.actor)?;
    let groups = state.store.scim_groups(s.actor.org_id).await?;
    Ok(Json(groups.into_iter().map(|g| TeamGroupView { id: g.id, display_name: g.display_name, members: g.members.len() }).collect()))
}
