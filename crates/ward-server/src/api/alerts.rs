//! Anomaly alerts (docs/audit-log.md, "Anomaly alerts"): the organisation's rules
//! (`GET`/`PUT /api/v1/org/alert-rules`), the alerts raised (`GET /api/v1/audit/alerts`,
//! `POST /api/v1/audit/alerts/{alert_id}/acknowledge`) and the restricted flag on patients
//! (`PUT /api/v1/patients/{patient_id}/restricted`). Compliance officers and admins only;
//! changes, list reads and refusals are audited. Serves 164.308(a)(1)(ii)(D) and 164.312(b).

use axum::extract::State;
use serde::{Deserialize, Serialize};
use ward_domain::alerts::{AlertRules, RuleCode};
use ward_domain::audit::{AuditAction, AuditEvent, Outcome};
use ward_domain::ids::{PatientId, UserId};
use ward_domain::page::PageLimit;
use ward_domain::policy;

use super::dto::{PatientView, ts};
use crate::app::AppState;
use crate::auth::{Auth, Meta};
use crate::extract::{Json, Path, Query};
use crate::problem::{ApiError, ApiResult, Problem};

pub(crate) fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(get_rules, put_rules))
        .routes(utoipa_axum::routes!(list_alerts))
        .routes(utoipa_axum::routes!(acknowledge))
        .routes(utoipa_axum::routes!(set_restricted))
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

/// The organisation's anomaly rules (defaults until changed).
#[utoipa::path(get, path = "/api/v1/org/alert-rules", tag = "alerts", security(("bearer" = [])),
    responses((status = 200, body = AlertRules), (status = 403, body = Problem)))]
async fn get_rules(State(state): State<AppState>, s: Auth) -> ApiResult<Json<AlertRules>> {
    policy::may_manage_alerts(&s.actor)?;
    Ok(Json(state.store.alert_rules(s.actor.org_id).await?))
}

/// Replaces the organisation's anomaly rules (audited as an org policy change).
#[utoipa::path(put, path = "/api/v1/org/alert-rules", tag = "alerts", security(("bearer" = [])), request_body = AlertRules,
    responses((status = 200, body = AlertRules), (status = 400, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn put_rules(State(state): State<AppState>, Meta(meta): Meta, s: Auth, Json(rules): Json<AlertRules>) -> ApiResult<Json<AlertRules>> {
    if let Err(d) = policy::may_manage_alerts(&s.actor) {
        return Err(refuse(&state, &s, meta, AuditAction::OrgPolicy, d).await);
    }
    rules.validate()?;
    Ok(Json(state.store.set_alert_rules(s.actor.org_id, s.actor.user_id, rules, meta).await?))
}

/// An alert: ids, the rule, counts and times; never names or content.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AlertView {
    /// Id.
    pub(crate) id: uuid::Uuid,
    /// The rule that raised it.
    pub(crate) rule: RuleCode,
    /// When (RFC 3339).
    pub(crate) raised_at: String,
    /// The user concerned (the actor, or the account attacked).
    pub(crate) subject_user_id: Option<UserId>,
    /// The patient concerned.
    pub(crate) subject_patient_id: Option<PatientId>,
    /// The count observed in the window.
    pub(crate) count: Option<i64>,
    /// The threshold in force.
    pub(crate) threshold: Option<i64>,
    /// The window in minutes.
    pub(crate) window_minutes: Option<i64>,
    /// The audit event that tripped the rule.
    pub(crate) trigger_idx: i64,
    /// The alert's own `alert.raised` audit event.
    pub(crate) audit_idx: i64,
    /// When it was acknowledged (RFC 3339).
    pub(crate) acknowledged_at: Option<String>,
    /// Who acknowledged it.
    pub(crate) acknowledged_by: Option<UserId>,
}

impl From<ward_store::Alert> for AlertView {
    fn from(a: ward_store::Alert) -> Self {
        Self {
            id: a.id,
            rule: a.rule,
            raised_at: ts(a.raised_at),
            subject_user_id: a.subject_user,
            subject_patient_id: a.subject_patient,
            count: a.observed,
            threshold: a.threshold,
            window_minutes: a.window_minutes,
            trigger_idx: a.trigger_idx,
            audit_idx: a.audit_idx,
            acknowledged_at: a.acknowledged_at.map(ts),
            acknowledged_by: a.acknowledged_by,
        }
    }
}

/// The stream frame `{"type":"alert","alert":{...}}` sent to compliance officers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AlertFrame {
    /// Always `alert`.
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    /// The alert.
    pub(crate) alert: AlertView,
}

/// Paging of the alert list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct AlertQuery {
    /// The cursor: the `next_cursor` of the previous page.
    before: Option<i64>,
    /// Only alerts nobody acknowledged yet.
    unacknowledged: Option<bool>,
    /// Page size, 1 to 200.
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
}

/// A page of alerts, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AlertPage {
    /// The alerts.
    pub(crate) items: Vec<AlertView>,
    /// Pass as `before` for the next page; absent on the last page.
    pub(crate) next_cursor: Option<i64>,
}

/// The organisation's anomaly alerts, newest first (audited as an audit log read).
#[utoipa::path(get, path = "/api/v1/audit/alerts", tag = "alerts", security(("bearer" = [])), params(AlertQuery),
    responses((status = 200, body = AlertPage), (status = 400, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn list_alerts(State(state): State<AppState>, Meta(meta): Meta, s: Auth, Query(q): Query<AlertQuery>) -> ApiResult<Json<AlertPage>> {
    super::audit::audited(&state, &s, meta, "alerts").await?;
    let limit = PageLimit::parse(q.limit)?;
    if q.before.is_some_and(|b| b < 0) {
        return Err(ApiError::validation_failed().detail("before must not be negative"));
    }
    let rows = state.store.alerts(s.actor.org_id, q.before, q.unacknowledged.unwrap_or(false), i64::from(limit.get())).await?;
    let next_cursor = if rows.len() == limit.get() as usize { rows.last().map(|a| a.audit_idx) } else { None };
    Ok(Json(AlertPage { items: rows.into_iter().map(AlertView::from).collect(), next_cursor }))
}

/// Acknowledges an alert (audited; acknowledging again keeps the first acknowledgement).
#[utoipa::path(post, path = "/api/v1/audit/alerts/{alert_id}/acknowledge", tag = "alerts", security(("bearer" = [])),
    params(("alert_id" = uuid::Uuid, Path)),
    responses((status = 200, body = AlertView), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn acknowledge(State(state): State<AppState>, Meta(meta): Meta, s: Auth, Path(id): Path<uuid::Uuid>) -> ApiResult<Json<AlertView>> {
    if let Err(d) = policy::may_manage_alerts(&s.actor) {
        return Err(refuse(&state, &s, meta, AuditAction::AlertAcknowledge, d).await);
    }
    Ok(Json(state.store.acknowledge_alert(s.actor.org_id, s.actor.user_id, id, meta).await?.into()))
}

/// Sets or clears a patient's restricted flag.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RestrictedRequest {
    /// Restricted (staff member, VIP): every access to the patient's records raises an alert.
    pub(crate) restricted: bool,
}

/// Flags a patient as restricted, or clears the flag (compliance officers and admins; audited).
#[utoipa::path(put, path = "/api/v1/patients/{patient_id}/restricted", tag = "patients", security(("bearer" = [])),
    params(("patient_id" = PatientId, Path)), request_body = RestrictedRequest,
    responses((status = 200, body = PatientView), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn set_restricted(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Path(id): Path<PatientId>,
    Json(req): Json<RestrictedRequest>,
) -> ApiResult<Json<PatientView>> {
    if let Err(d) = policy::may_manage_alerts(&s.actor) {
        return Err(refuse(&state, &s, meta, AuditAction::PatientRestrict, d).await);
    }
    // The answer names the patient: not for a device blocked from PHI or a pending policy.
    super::devices::require_phi_allowed(&state, &s, &meta).await?;
    let p = state.store.set_patient_restricted(s.actor.org_id, s.actor.user_id, id, req.restricted, meta).await?;
    super::patients::with_on_call(&state, p).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_frames_hold_ids_and_codes_only() {
        let a = ward_store::Alert {
            id: uuid::Uuid::nil(),
            org_id: ward_domain::ids::OrgId(uuid::Uuid::nil()),
            rule: RuleCode::BulkPatientAccess,
            raised_at: 0,
            subject_user: Some(UserId(uuid::Uuid::nil())),
            subject_patient: None,
            observed: Some(21),
            threshold: Some(20),
            window_minutes: Some(60),
            trigger_idx: 7,
            audit_idx: 8,
            acknowledged_at: None,
            acknowledged_by: None,
        };
        let v: serde_json::Value = serde_json::from_str(&crate::alerts::render_alert(&a)).unwrap();
        assert_eq!(v["type"], "alert");
        assert_eq!(v["alert"]["rule"], "bulk_patient_access");
        let keys: Vec<_> = v["alert"].as_object().unwrap().keys().cloned().collect();
        for k in keys {
            assert!(!k.contains("name") && !k.contains("body") && !k.contains("mrn"), "unexpected field {k}");
        }
    }
}
