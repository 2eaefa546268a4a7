//! The consent registry (docs/consent.md): `GET`/`POST /api/v1/patients/{patient_id}/consents`
//! (current grants and the whole history; record a grant) and `POST
//! /api/v1/patients/{patient_id}/consents/revoke`. Admins, the clinicians, nurses and staff on
//! the patient's care team, and the patient themself record and revoke; compliance officers
//! also read. A patient account sees only its own record (others look absent). Changes, reads
//! and refusals are audited with codes and ids only.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use ward_domain::audit::{AuditAction, AuditEvent, Outcome};
use ward_domain::consent::{ConsentChannel, ConsentGrant};
use ward_domain::ids::{PatientId, UserId};
use ward_domain::policy::{self, Denial};
use ward_domain::role::Role;

use super::dto::ts;
use crate::app::AppState;
use crate::auth::{Auth, Meta};
use crate::extract::{Json, Path};
use crate::problem::{ApiError, ApiResult, Problem};

pub(crate) fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(list_consents, record_consent))
        .routes(utoipa_axum::routes!(revoke_consent))
}

/// Where the actor stands with a patient: on the care team, or the patient themself. A patient
/// account asking about someone else, and a patient of another organisation, are not found.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Standing {
    pub(crate) on_care_team: bool,
    pub(crate) is_the_patient: bool,
}

pub(crate) async fn standing(state: &AppState, s: &Auth, patient: PatientId) -> ApiResult<Standing> {
    if s.actor.role == Role::Patient {
        let me = state.store.user(s.actor.org_id, s.actor.user_id).await?;
        if me.patient_id != Some(patient) {
            return Err(ApiError::not_found());
        }
        return Ok(Standing { on_care_team: false, is_the_patient: true });
    }
    let on_care_team = state.store.is_on_care_team(s.actor.org_id, patient, s.actor.user_id).await?;
    Ok(Standing { on_care_team, is_the_patient: false })
}

/// An audit event by the caller: organisation, user and device filled in.
pub(crate) fn actor_event(s: &Auth, action: AuditAction, outcome: Outcome) -> AuditEvent {
    let mut ev = AuditEvent::new(action, outcome);
    (ev.org_id, ev.actor, ev.device) = (Some(s.actor.org_id), Some(s.actor.user_id), Some(s.device));
    ev
}

/// Records a refused attempt on a patient's records, then answers 403.
pub(crate) async fn refuse(
    state: &AppState,
    s: &Auth,
    meta: ward_store::RequestMeta,
    action: AuditAction,
    patient: PatientId,
    denial: Denial,
) -> ApiError {
    let ev = actor_event(s, action, Outcome::Denied).target("patient", patient).patient(Some(patient));
    match state.store.record(ev, meta).await {
        Ok(_) => denial.into(),
        Err(e) => e.into(),
    }
}

/// One consent grant, current or ended.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct ConsentView {
    /// Id.
    pub(crate) id: uuid::Uuid,
    /// The patient.
    pub(crate) patient_id: PatientId,
    /// The channel.
    pub(crate) channel: ConsentChannel,
    /// Whether the grant is in force.
    pub(crate) current: bool,
    /// The version of the risk-warning text the patient was shown.
    pub(crate) warning_version: Option<String>,
    /// The patient's explicit statement that they insist (unsecured PHI).
    pub(crate) patient_insists: bool,
    /// When it was recorded (RFC 3339).
    pub(crate) recorded_at: String,
    /// Who recorded it.
    pub(crate) recorded_by: UserId,
    /// When it ended (RFC 3339).
    pub(crate) revoked_at: Option<String>,
    /// Who ended it.
    pub(crate) revoked_by: Option<UserId>,
    /// `revoked`, or `superseded` by a newer grant for the channel.
    pub(crate) end_reason: Option<&'static str>,
}

impl From<ward_store::Consent> for ConsentView {
    fn from(c: ward_store::Consent) -> Self {
        Self {
            id: c.id,
            patient_id: c.patient_id,
            channel: c.channel,
            current: c.is_current(),
            warning_version: c.warning_version,
            patient_insists: c.patient_insists,
            recorded_at: ts(c.recorded_at),
            recorded_by: c.recorded_by,
            revoked_at: c.revoked_at.map(ts),
            revoked_by: c.revoked_by,
            end_reason: c.end_reason.map(|e| e.as_str()),
        }
    }
}

/// A patient's consents.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ConsentList {
    /// The grants in force, one per channel at most.
    pub(crate) current: Vec<ConsentView>,
    /// Every grant ever recorded, newest first (the evidence).
    pub(crate) history: Vec<ConsentView>,
}

/// Records a consent.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RecordConsentRequest {
    /// The channel.
    pub(crate) channel: ConsentChannel,
    /// The version of the risk-warning text shown (1 to 32 letters, digits, `.`, `_`, `-`);
    /// required for `unsecured_phi`.
    pub(crate) warning_version: Option<String>,
    /// The patient's explicit statement that they insist on PHI over an unsecured channel
    /// after the warning; required (true) for `unsecured_phi`, refused for other channels.
    #[serde(default)]
    pub(crate) patient_insists: bool,
}

/// Revokes the current consent for a channel.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RevokeConsentRequest {
    /// The channel.
    pub(crate) channel: ConsentChannel,
}

/// A patient's current consents and their whole history (audited).
#[utoipa::path(get, path = "/api/v1/patients/{patient_id}/consents", tag = "consent", security(("bearer" = [])),
    params(("patient_id" = PatientId, Path)),
    responses((status = 200, body = ConsentList), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn list_consents(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Path(id): Path<PatientId>,
) -> ApiResult<Json<ConsentList>> {
    let st = standing(&state, &s, id).await?;
    if let Err(d) = policy::may_read_consent(&s.actor, st.on_care_team, st.is_the_patient) {
        return Err(refuse(&state, &s, meta, AuditAction::ConsentRead, id, d).await);
    }
    let history: Vec<ConsentView> =
        state.store.consent_history(s.actor.org_id, s.actor.user_id, id, meta).await?.into_iter().map(Into::into).collect();
    let current = history.iter().filter(|c| c.current).cloned().collect();
    Ok(Json(ConsentList { current, history }))
}

/// Records a consent to a channel, superseding the current one for that channel (audited).
#[utoipa::path(post, path = "/api/v1/patients/{patient_id}/consents", tag = "consent", security(("bearer" = [])),
    params(("patient_id" = PatientId, Path)), request_body = RecordConsentRequest,
    responses((status = 201, body = ConsentView), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 422, body = Problem)))]
async fn record_consent(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Path(id): Path<PatientId>,
    Json(req): Json<RecordConsentRequest>,
) -> ApiResult<(StatusCode, Json<ConsentView>)> {
    let st = standing(&state, &s, id).await?;
    if let Err(d) = policy::may_record_consent(&s.actor, st.on_care_team, st.is_the_patient) {
        return Err(refuse(&state, &s, meta, AuditAction::ConsentRecord, id, d).await);
    }
    let grant = ConsentGrant::new(req.channel, req.warning_version, req.patient_insists)?;
    let c = state.store.record_consent(s.actor.org_id, s.actor.user_id, id, grant, meta).await?;
    Ok((StatusCode::CREATED, Json(c.into())))
}

/// Revokes the current consent to a channel; answers the ended grant (audited). 409
/// `invalid_state` if there is none.
#[utoipa::path(post, path = "/api/v1/patients/{patient_id}/consents/revoke", tag = "consent", security(("bearer" = [])),
    params(("patient_id" = PatientId, Path)), request_body = RevokeConsentRequest,
    responses((status = 200, body = ConsentView), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem)))]
async fn revoke_consent(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Path(id): Path<PatientId>,
    Json(req): Json<RevokeConsentRequest>,
) -> ApiResult<Json<ConsentView>> {
    let st = standing(&state, &s, id).await?;
    if let Err(d) = policy::may_record_consent(&s.actor, st.on_care_team, st.is_the_patient) {
        return Err(refuse(&state, &s, meta, AuditAction::ConsentRevoke, id, d).await);
    }
    Ok(Json(state.store.revoke_consent(s.actor.org_id, s.actor.user_id, id, req.channel, meta).await?.into()))
}
