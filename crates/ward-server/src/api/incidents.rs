//! Breach incidents (docs/incidents.md): `POST`/`GET /api/v1/incidents`, `GET
//! /api/v1/incidents/{incident_id}` (with the notification plan), `POST .../assessment`,
//! `POST .../notifications`, `POST .../close`, and the one-step report of a misdirected message,
//! `POST /api/v1/conversations/{conversation_id}/messages/{message_id}/report-misdirected`.
//!
//! Compliance officers manage incidents; admins read them. Any workforce member of a
//! conversation can report one of its messages. Changes, reads and refusals are audited with
//! codes and counts only; the title and description are sealed and never audited or logged.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::Date;
use ward_domain::audit::{AuditAction, AuditEvent, DetailValue, Outcome};
use ward_domain::breach::{self, AssessmentOutcome, FactorRisk, ObligationKind, RiskAssessment, StateCode, StateRules, Urgency, urgency};
use ward_domain::ids::{ConversationId, MessageId, PatientId, UserId};
use ward_domain::policy;
use ward_store::{Incident, NewIncident};

use super::dto::ts;
use crate::app::AppState;
use crate::auth::{Auth, Meta};
use crate::extract::{Json, Path};
use crate::problem::{ApiError, ApiResult, Problem};

pub(crate) fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(list_incidents, create_incident))
        .routes(utoipa_axum::routes!(get_incident))
        .routes(utoipa_axum::routes!(assess_incident))
        .routes(utoipa_axum::routes!(record_notification))
        .routes(utoipa_axum::routes!(close_incident))
        .routes(utoipa_axum::routes!(report_misdirected))
}

/// Today's calendar day (UTC) by the store's clock, which tests can move.
pub(crate) fn today() -> Date {
    time::OffsetDateTime::from_unix_timestamp(ward_store::now_ms().div_euclid(1000)).map(|t| t.date()).unwrap_or(Date::MIN)
}

/// Records a refused call as a denied event of its action, then hands the error back.
async fn refused(
    state: &AppState,
    s: &Auth,
    meta: &ward_store::RequestMeta,
    action: AuditAction,
    incident: Option<uuid::Uuid>,
    why: &'static str,
    err: ApiError,
) -> ApiError {
    let mut ev = AuditEvent::new(action, Outcome::Denied).detail("reason", DetailValue::Code(why));
    if let Some(i) = incident {
        ev = ev.target("incident", i);
    }
    (ev.org_id, ev.actor, ev.device) = (Some(s.actor.org_id), Some(s.actor.user_id), Some(s.device));
    match state.store.record(ev, meta.clone()).await {
        Ok(_) => err,
        Err(e) => e.into(),
    }
}

/// Opens an incident.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateIncidentRequest {
    /// A short title (1 to 200 characters; stored sealed).
    pub(crate) title: String,
    /// What happened, which records (1 to 20000 characters; stored sealed, never audited).
    pub(crate) description: String,
    /// When the breach was discovered (`YYYY-MM-DD`, not in the future): starts every clock.
    #[schema(format = Date)]
    pub(crate) discovered_on: String,
    /// When it happened, if known (`YYYY-MM-DD`, not after discovery).
    #[schema(format = Date)]
    pub(crate) occurred_on: Option<String>,
    /// Individuals affected in total (at least 1).
    pub(crate) affected_count: u64,
    /// Affected residents per state (two-letter USPS code → count); may cover fewer than
    /// `affected_count` when residence is unknown. Unknown codes are refused.
    #[serde(default)]
    pub(crate) residents: BTreeMap<String, u64>,
    /// Affected patients known to Ward.
    #[serde(default)]
    pub(crate) patient_ids: Vec<PatientId>,
}

/// The four-factor risk assessment of 45 CFR 164.402(2), signed by the caller.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AssessmentRequest {
    /// (i) Nature and extent of the PHI involved.
    pub(crate) nature_and_extent: FactorRisk,
    /// (ii) The unauthorized person who used it or to whom it was disclosed.
    pub(crate) unauthorized_recipient: FactorRisk,
    /// (iii) Whether the PHI was actually acquired or viewed.
    pub(crate) acquired_or_viewed: FactorRisk,
    /// (iv) The extent to which the risk has been mitigated.
    pub(crate) mitigation: FactorRisk,
    /// `low_probability_of_compromise` (only when every factor is `low`) or `breach`.
    pub(crate) outcome: AssessmentOutcome,
}

/// Records that a notification of the plan was made.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NotificationRequest {
    /// The obligation's `key` from the plan.
    pub(crate) obligation: String,
    /// The day it was made (`YYYY-MM-DD`, between discovery and today).
    #[schema(format = Date)]
    pub(crate) done_on: String,
}

/// The signed assessment.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AssessmentView {
    /// (i) Nature and extent.
    pub(crate) nature_and_extent: FactorRisk,
    /// (ii) Unauthorized recipient.
    pub(crate) unauthorized_recipient: FactorRisk,
    /// (iii) Acquired or viewed.
    pub(crate) acquired_or_viewed: FactorRisk,
    /// (iv) Mitigation.
    pub(crate) mitigation: FactorRisk,
    /// The outcome.
    pub(crate) outcome: AssessmentOutcome,
    /// Who signed it.
    pub(crate) signed_by: UserId,
    /// When (RFC 3339).
    pub(crate) signed_at: String,
}

/// One obligation of the plan, with its state.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ObligationView {
    /// Stable key (record notifications against it).
    pub(crate) key: String,
    /// What kind of recipient.
    pub(crate) kind: ObligationKind,
    /// The state, for per-state obligations.
    pub(crate) state: Option<String>,
    /// Who is told.
    pub(crate) recipient: String,
    /// The last day on which the notice is on time (`YYYY-MM-DD`).
    pub(crate) due_on: String,
    /// The rule that set the deadline (the earliest of those that apply).
    pub(crate) rule: String,
    /// Its source.
    pub(crate) source: String,
    /// Whether the rule was checked against the statute text (`false`: unconfirmed).
    pub(crate) verified: bool,
    /// The day it was done, if recorded.
    pub(crate) done_on: Option<String>,
    /// For open obligations: `pending`, `due_within_week`, `due_within_day` or `overdue`.
    pub(crate) urgency: Option<Urgency>,
}

/// One incident. `title` and `description` appear only when one incident is read.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct IncidentView {
    /// Id.
    pub(crate) id: uuid::Uuid,
    /// `manual` or `misdirected_message`.
    pub(crate) source: &'static str,
    /// The reported message's conversation.
    pub(crate) conversation_id: Option<ConversationId>,
    /// The reported message.
    pub(crate) message_id: Option<MessageId>,
    /// Who opened it.
    pub(crate) reported_by: UserId,
    /// When (RFC 3339).
    pub(crate) reported_at: String,
    /// Title (single reads only).
    pub(crate) title: Option<String>,
    /// Description (single reads only).
    pub(crate) description: Option<String>,
    /// Discovery date.
    pub(crate) discovered_on: String,
    /// Occurrence date.
    pub(crate) occurred_on: Option<String>,
    /// Individuals affected.
    pub(crate) affected_count: u64,
    /// Residents per state.
    pub(crate) residents: BTreeMap<String, u64>,
    /// Patients known to Ward.
    pub(crate) patient_ids: Vec<PatientId>,
    /// `open`, `assessed`, `notified` or `closed`.
    pub(crate) status: &'static str,
    /// The signed assessment.
    pub(crate) assessment: Option<AssessmentView>,
    /// The notification plan as computed and stored: at opening on the presumption of a breach
    /// (164.402), then at each signed assessment (empty when it found a low probability of
    /// compromise). Later rule changes do not move it.
    pub(crate) plan: Vec<ObligationView>,
    /// `presumed` (computed at opening), `assessed` (at the signed assessment) or `recomputed`
    /// (an incident from before plans were stored, computed from the current rules).
    pub(crate) plan_basis: &'static str,
    /// The review date of the state rules the plan was computed with (absent when recomputed).
    pub(crate) plan_rules_as_of: Option<String>,
    /// When the plan was computed (RFC 3339; absent when recomputed).
    pub(crate) plan_computed_at: Option<String>,
    /// The date the current state-rules table was last reviewed.
    pub(crate) state_rules_as_of: String,
    /// When it was closed (RFC 3339).
    pub(crate) closed_at: Option<String>,
}

fn day(d: Date) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    d.format(&format).unwrap_or_default()
}

pub(crate) fn view(i: Incident) -> ApiResult<IncidentView> {
    let today = today();
    let plan = i
        .plan
        .into_iter()
        .map(|o| {
            let done = i.notifications.iter().find(|n| n.obligation_key == o.key).map(|n| day(n.done_on));
            ObligationView {
                urgency: if done.is_none() && i.status != ward_store::IncidentStatus::Closed { Some(urgency(o.due, today)) } else { None },
                done_on: done,
                key: o.key,
                kind: o.kind,
                state: o.state.map(|s| s.as_str().to_owned()),
                recipient: o.recipient,
                due_on: day(o.due),
                rule: o.rule,
                source: o.source,
                verified: o.verified,
            }
        })
        .collect();
    Ok(IncidentView {
        id: i.id,
        source: i.source.as_str(),
        conversation_id: i.conversation_id,
        message_id: i.message_id,
        reported_by: i.reported_by,
        reported_at: ts(i.reported_at),
        title: i.title,
        description: i.description,
        discovered_on: day(i.discovered_on),
        occurred_on: i.occurred_on.map(day),
        affected_count: i.affected_count,
        residents: i.residents.iter().map(|(s, n)| (s.as_str().to_owned(), *n)).collect(),
        patient_ids: i.patients,
        status: i.status.as_str(),
        assessment: i.assessment.map(|a| AssessmentView {
            nature_and_extent: a.assessment.nature_and_extent,
            unauthorized_recipient: a.assessment.unauthorized_recipient,
            acquired_or_viewed: a.assessment.acquired_or_viewed,
            mitigation: a.assessment.mitigation,
            outcome: a.assessment.outcome,
            signed_by: a.signed_by,
            signed_at: ts(a.signed_at),
        }),
        plan,
        plan_basis: i.plan_basis.as_str(),
        plan_rules_as_of: i.plan_rules_as_of.map(day),
        plan_computed_at: i.plan_computed_at.map(ts),
        state_rules_as_of: day(StateRules::embedded().as_of),
        closed_at: i.closed_at.map(ts),
    })
}

/// Opens a breach incident (compliance officers; audited without its text).
#[utoipa::path(post, path = "/api/v1/incidents", tag = "incidents", security(("bearer" = [])), request_body = CreateIncidentRequest,
    responses((status = 201, body = IncidentView), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 422, body = Problem)))]
async fn create_incident(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Json(req): Json<CreateIncidentRequest>,
) -> ApiResult<(StatusCode, Json<IncidentView>)> {
    if let Err(d) = policy::may_manage_incidents(&s.actor) {
        return Err(refused(&state, &s, &meta, AuditAction::IncidentCreate, None, "role", d.into()).await);
    }
    let mut residents = BTreeMap::new();
    for (code, n) in req.residents {
        match StateCode::parse(&code) {
            // "ca" and "CA" are one state: two counts for it are a mistake, not a sum.
            Ok(c) if residents.contains_key(&c) => {
                let e = ApiError::validation_failed().detail("residents names a state twice");
                return Err(refused(&state, &s, &meta, AuditAction::IncidentCreate, None, "state", e).await);
            }
            Ok(c) => {
                residents.insert(c, n);
            }
            Err(e) => return Err(refused(&state, &s, &meta, AuditAction::IncidentCreate, None, "state", e.into()).await),
        }
    }
    let dates = breach::parse_day("discovered_on", &req.discovered_on)
        .and_then(|d| Ok((d, req.occurred_on.as_deref().map(|o| breach::parse_day("occurred_on", o)).transpose()?)));
    let (discovered_on, occurred_on) = match dates {
        Ok(d) => d,
        Err(e) => return Err(refused(&state, &s, &meta, AuditAction::IncidentCreate, None, "date", e.into()).await),
    };
    let new = NewIncident {
        title: req.title,
        description: req.description,
        discovered_on,
        occurred_on,
        affected_count: req.affected_count,
        residents,
        patients: req.patient_ids,
    };
    let i = state.store.create_incident(s.actor, new, today(), StateRules::embedded(), meta).await?;
    Ok((StatusCode::CREATED, Json(view(i)?)))
}

/// The organisation's incidents, newest first, each with its plan (compliance officers and
/// admins; no titles or descriptions).
#[utoipa::path(get, path = "/api/v1/incidents", tag = "incidents", security(("bearer" = [])),
    responses((status = 200, body = Vec<IncidentView>), (status = 403, body = Problem)))]
async fn list_incidents(State(state): State<AppState>, Meta(meta): Meta, s: Auth) -> ApiResult<Json<Vec<IncidentView>>> {
    if let Err(d) = policy::may_read_incidents(&s.actor) {
        return Err(refused(&state, &s, &meta, AuditAction::IncidentRead, None, "role", d.into()).await);
    }
    let list = state.store.incidents(s.actor.org_id).await?;
    Ok(Json(list.into_iter().map(view).collect::<ApiResult<Vec<_>>>()?))
}

/// One incident with its title, description and notification plan: deadlines, which are done,
/// due soon or overdue (compliance officers and admins; the read is audited).
#[utoipa::path(get, path = "/api/v1/incidents/{incident_id}", tag = "incidents", security(("bearer" = [])),
    params(("incident_id" = uuid::Uuid, Path)),
    responses((status = 200, body = IncidentView), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn get_incident(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Path(id): Path<uuid::Uuid>,
) -> ApiResult<Json<IncidentView>> {
    if let Err(d) = policy::may_read_incidents(&s.actor) {
        return Err(refused(&state, &s, &meta, AuditAction::IncidentRead, Some(id), "role", d.into()).await);
    }
    // The title and description may carry PHI.
    super::devices::require_phi_allowed(&state, &s, &meta).await?;
    Ok(Json(view(state.store.incident(s.actor, id, meta).await?)?))
}

/// Signs the four-factor risk assessment (compliance officers). 422 if the outcome does not
/// follow from the factors; 409 `invalid_state` once notified or closed.
#[utoipa::path(post, path = "/api/v1/incidents/{incident_id}/assessment", tag = "incidents", security(("bearer" = [])),
    params(("incident_id" = uuid::Uuid, Path)), request_body = AssessmentRequest,
    responses((status = 200, body = IncidentView), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn assess_incident(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Path(id): Path<uuid::Uuid>,
    Json(req): Json<AssessmentRequest>,
) -> ApiResult<Json<IncidentView>> {
    if let Err(d) = policy::may_manage_incidents(&s.actor) {
        return Err(refused(&state, &s, &meta, AuditAction::IncidentAssess, Some(id), "role", d.into()).await);
    }
    let a = RiskAssessment {
        nature_and_extent: req.nature_and_extent,
        unauthorized_recipient: req.unauthorized_recipient,
        acquired_or_viewed: req.acquired_or_viewed,
        mitigation: req.mitigation,
        outcome: req.outcome,
    };
    Ok(Json(view(state.store.assess_incident(s.actor, id, a, StateRules::embedded(), meta).await?)?))
}

/// Records a notification of the plan as made (compliance officers). 409 `invalid_state` for
/// an obligation not in the plan or an incident not assessed as a breach; 422 for a date in the
/// future or before discovery.
#[utoipa::path(post, path = "/api/v1/incidents/{incident_id}/notifications", tag = "incidents", security(("bearer" = [])),
    params(("incident_id" = uuid::Uuid, Path)), request_body = NotificationRequest,
    responses((status = 200, body = IncidentView), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn record_notification(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Path(id): Path<uuid::Uuid>,
    Json(req): Json<NotificationRequest>,
) -> ApiResult<Json<IncidentView>> {
    if let Err(d) = policy::may_manage_incidents(&s.actor) {
        return Err(refused(&state, &s, &meta, AuditAction::IncidentNotify, Some(id), "role", d.into()).await);
    }
    let done_on = match breach::parse_day("done_on", &req.done_on) {
        Ok(d) => d,
        Err(e) => return Err(refused(&state, &s, &meta, AuditAction::IncidentNotify, Some(id), "date", e.into()).await),
    };
    let i = state.store.record_notification(s.actor, id, req.obligation, done_on, today(), meta).await?;
    Ok(Json(view(i)?))
}

/// Closes an incident assessed as not a breach, or with every notification recorded
/// (compliance officers); otherwise 409 `invalid_state`.
#[utoipa::path(post, path = "/api/v1/incidents/{incident_id}/close", tag = "incidents", security(("bearer" = [])),
    params(("incident_id" = uuid::Uuid, Path)),
    responses((status = 200, body = IncidentView), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem)))]
async fn close_incident(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Path(id): Path<uuid::Uuid>,
) -> ApiResult<Json<IncidentView>> {
    if let Err(d) = policy::may_manage_incidents(&s.actor) {
        return Err(refused(&state, &s, &meta, AuditAction::IncidentClose, Some(id), "role", d.into()).await);
    }
    Ok(Json(view(state.store.close_incident(s.actor, id, meta).await?)?))
}

/// Reports a message as sent to the wrong recipients, opening an incident in one step: linked
/// to the message, its conversation's patient affected, discovered today (workforce members of
/// the conversation; others get 404 as for any conversation they are not in).
#[utoipa::path(post, path = "/api/v1/conversations/{conversation_id}/messages/{message_id}/report-misdirected", tag = "incidents",
    security(("bearer" = [])), params(("conversation_id" = ConversationId, Path), ("message_id" = MessageId, Path)),
    responses((status = 201, body = IncidentView), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn report_misdirected(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Path((conv, msg)): Path<(ConversationId, MessageId)>,
) -> ApiResult<(StatusCode, Json<IncidentView>)> {
    if let Err(d) = policy::may_report_misdirected(&s.actor) {
        return Err(refused(&state, &s, &meta, AuditAction::IncidentCreate, None, "role", d.into()).await);
    }
    let i = state.store.report_misdirected(s.actor, conv, msg, today(), StateRules::embedded(), meta).await?;
    Ok((StatusCode::CREATED, Json(view(i)?)))
}

/// How often the server looks for approaching breach-notification deadlines.
const REMINDER_INTERVAL: std::time::Duration = std::time::Duration::from_secs(600);

/// Starts the reminder check: every ten minutes, each open obligation a week or a day from
/// its deadline, or past it, is reminded once per stage (an `incident.reminder` audit event
/// that the alert evaluator turns into an `incident_deadline` alert for compliance officers).
pub(crate) fn spawn_reminders(store: ward_store::Store) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match store.send_incident_reminders(today(), ward_store::RequestMeta::default()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(reminders = n, "breach-notification deadline reminders raised"),
                Err(e) => tracing::warn!(error = %e, "breach-notification reminder check failed; retrying later"),
            }
            tokio::time::sleep(REMINDER_INTERVAL).await;
        }
    })
}
