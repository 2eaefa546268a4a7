//! Audit exports and reports for compliance officers and admins: the organisation's events as
//! FHIR R4 AuditEvents or CSV, the accounting of disclosures for one patient (HIPAA 164.528),
//! and the access report for one user (164.308(a)(1)(ii)(D)). Every use, and every refusal, is
//! itself audited: exports as `audit.export`, reports as `audit.read`.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use ward_domain::audit::{AuditAction, AuditEvent, DetailValue, Outcome};
use ward_domain::ids::{OrgId, PatientId, UserId};
use ward_domain::page::PageLimit;
use ward_domain::policy;
use ward_store::{AuditQuery, Store, TimeRange, now_ms};

use crate::app::AppState;
use crate::audit_export::reports::{ActivitySummaryView, ActivityView, DisclosureView};
use crate::audit_export::{Encoder, ExportFormat};
use crate::auth::{Auth, Meta};
use crate::extract::{Json, Path, Query};
use crate::problem::{ApiError, ApiResult, Problem};

/// Events read per query while streaming an export.
const EXPORT_PAGE: i64 = 1000;

pub(crate) fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(export_events))
        .routes(utoipa_axum::routes!(patient_disclosures))
        .routes(utoipa_axum::routes!(access_report))
}

/// Checks the role and records the use (or the refusal) before anything is answered.
async fn record_use(
    state: &AppState,
    s: &Auth,
    meta: ward_store::RequestMeta,
    event: AuditEvent,
    patient: Option<PatientId>,
) -> ApiResult<()> {
    let allowed = policy::may_read_audit_log(&s.actor);
    let mut ev = event;
    if allowed.is_err() {
        ev.outcome = Outcome::Denied;
    }
    ev.org_id = Some(s.actor.org_id);
    ev.actor = Some(s.actor.user_id);
    ev.device = Some(s.device);
    ev.patient = patient;
    state.store.record(ev, meta).await?;
    allowed.map_err(ApiError::from)
}

fn range(from: Option<i64>, to: Option<i64>) -> ApiResult<TimeRange> {
    if from.is_some_and(|f| f < 0) || to.is_some_and(|t| t < 0) || matches!((from, to), (Some(f), Some(t)) if f > t) {
        return Err(ApiError::validation_failed().detail("from and to are Unix milliseconds, and from must not be after to"));
    }
    Ok(TimeRange { from, to })
}

/// Parameters of an export.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ExportQuery {
    /// `fhir-ndjson` (default), `fhir-bundle` or `csv`.
    format: Option<String>,
    /// From this time (Unix ms, inclusive).
    from: Option<i64>,
    /// Up to this time (Unix ms, exclusive).
    to: Option<i64>,
    /// Only events by this user.
    user: Option<UserId>,
    /// Only events naming this patient (opaque id).
    patient: Option<PatientId>,
}

/// The organisation's audit events as FHIR R4 AuditEvents (NDJSON or a collection Bundle) or
/// CSV, streamed in index order. Recorded as `audit.export` with its filters; an export that
/// covers a patient appears in that patient's accounting of disclosures.
#[utoipa::path(get, path = "/api/v1/audit/export", tag = "audit", security(("bearer" = [])), params(ExportQuery),
    responses(
        (status = 200, description = "The export", content(
            (String = "application/fhir+ndjson"), (String = "application/fhir+json"), (String = "text/csv"))),
        (status = 400, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn export_events(State(state): State<AppState>, Meta(meta): Meta, s: Auth, Query(q): Query<ExportQuery>) -> ApiResult<Response> {
    let format = match q.format.as_deref() {
        None => ExportFormat::FhirNdjson,
        Some(f) => {
            ExportFormat::parse(f).ok_or_else(|| ApiError::invalid_parameter().detail("format must be fhir-ndjson, fhir-bundle or csv"))?
        }
    };
    let window = range(q.from, q.to)?;
    let mut ev = AuditEvent::new(AuditAction::AuditExport, Outcome::Success).detail("format", DetailValue::Code(format.as_str()));
    if let Some(f) = window.from {
        ev = ev.detail("from", DetailValue::Int(f));
    }
    if let Some(t) = window.to {
        ev = ev.detail("to", DetailValue::Int(t));
    }
    if let Some(u) = q.user {
        ev = ev.detail("user", DetailValue::Id(u.0));
    }
    // The role first (a role that may never export hears `forbidden`), then the step-up; the
    // use is recorded only once both pass, so an `audit.export` event is an export that ran.
    if policy::may_read_audit_log(&s.actor).is_ok() {
        crate::auth::require_step_up(&state, &s, "audit_export", &meta).await?;
    }
    record_use(&state, &s, meta, ev, q.patient).await?;
    let query = AuditQuery {
        actor: q.user.map(|u| u.0),
        patient: q.patient.map(|p| p.0),
        from: window.from,
        to: window.to,
        ..AuditQuery::default()
    };
    // Events appended while the export streams are left for the next export.
    let upto = state.store.audit_size().await? as i64;
    let encoder = Encoder::new(format, state.audit.origin());
    let body = Body::from_stream(export_stream(state.store.clone(), s.actor.org_id, query, upto, encoder));
    let disposition = format!("attachment; filename=\"ward-audit.{}\"", format.extension());
    Ok(([(header::CONTENT_TYPE, format.content_type().to_owned()), (header::CONTENT_DISPOSITION, disposition)], body).into_response())
}

enum Phase {
    Head,
    Events(i64),
    Tail,
    Done,
}

/// The export as a stream of chunks: head, one chunk per page of events, tail. A storage error
/// ends the stream with an error, so the client sees a broken transfer, never a short file
/// that looks complete.
fn export_stream(
    store: Store,
    org: OrgId,
    query: AuditQuery,
    upto: i64,
    encoder: Encoder,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    futures_util::stream::unfold((Phase::Head, encoder), move |(phase, mut enc)| {
        let (store, query) = (store.clone(), query.clone());
        async move {
            match phase {
                Phase::Head => Some((Ok(Bytes::from(enc.head(now_ms()))), (Phase::Events(-1), enc))),
                Phase::Events(after) => match store.search_audit(org, AuditQuery { after: Some(after), ..query }, EXPORT_PAGE).await {
                    Ok(rows) => {
                        let mut chunk = Vec::new();
                        let mut last = after;
                        for r in rows.iter().take_while(|r| r.idx < upto) {
                            chunk.extend(enc.event(r));
                            last = r.idx;
                        }
                        let more = rows.len() as i64 == EXPORT_PAGE && rows.last().is_some_and(|r| r.idx < upto);
                        let next = if more { Phase::Events(last) } else { Phase::Tail };
                        Some((Ok(Bytes::from(chunk)), (next, enc)))
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "audit export failed while streaming");
                        Some((Err(std::io::Error::other("audit export failed")), (Phase::Done, enc)))
                    }
                },
                Phase::Tail => Some((Ok(Bytes::from(enc.tail())), (Phase::Done, enc))),
                Phase::Done => None,
            }
        }
    })
}

/// Parameters of a report page.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ReportQuery {
    /// From this time (Unix ms, inclusive).
    from: Option<i64>,
    /// Up to this time (Unix ms, exclusive).
    to: Option<i64>,
    /// The cursor: the `next_cursor` of the previous page.
    after: Option<i64>,
    /// Page size, 1 to 200.
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
}

impl ReportQuery {
    fn checked(&self) -> ApiResult<(TimeRange, Option<i64>, PageLimit)> {
        let limit = PageLimit::parse(self.limit)?;
        if self.after.is_some_and(|a| a < -1) {
            return Err(ApiError::validation_failed().detail("after must not be negative"));
        }
        Ok((range(self.from, self.to)?, self.after, limit))
    }
}

/// The accounting of disclosures for one patient.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct DisclosuresPage {
    /// The patient (opaque id).
    pub(crate) patient_id: PatientId,
    /// Disclosures, oldest first.
    pub(crate) items: Vec<DisclosureView>,
    /// Pass as `after` for the next page; absent on the last page. A page may be shorter than
    /// `limit` (even empty) and still have a next page: the scan stops after a bounded amount
    /// of work.
    pub(crate) next_cursor: Option<i64>,
}

/// The accounting of disclosures of one patient's information outside the care team (HIPAA
/// 164.528): date, recipient, purpose and who disclosed, read from the audit log.
#[utoipa::path(get, path = "/api/v1/patients/{patient_id}/disclosures", tag = "audit", security(("bearer" = [])),
    params(("patient_id" = PatientId, Path), ReportQuery),
    responses((status = 200, body = DisclosuresPage), (status = 400, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn patient_disclosures(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Path(patient): Path<PatientId>,
    Query(q): Query<ReportQuery>,
) -> ApiResult<Json<DisclosuresPage>> {
    let (window, after, limit) = q.checked()?;
    let in_org = state.store.patient_org(patient).await? == Some(s.actor.org_id);
    let ev = AuditEvent::new(AuditAction::AuditLogRead, Outcome::Success).detail("op", DetailValue::Code("disclosures"));
    record_use(&state, &s, meta, ev, in_org.then_some(patient)).await?;
    if !in_org {
        return Err(ApiError::not_found());
    }
    let page = state.store.disclosures(s.actor.org_id, patient, window, after, limit.get() as usize).await?;
    Ok(Json(DisclosuresPage {
        patient_id: patient,
        items: page.items.into_iter().map(Into::into).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// One user's activity over a period.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AccessReportPage {
    /// The user.
    pub(crate) user_id: UserId,
    /// The period's start (Unix ms), if bounded.
    pub(crate) from: Option<i64>,
    /// The period's end (Unix ms, exclusive), if bounded.
    pub(crate) to: Option<i64>,
    /// Counts over the whole period (not just this page).
    pub(crate) summary: ActivitySummaryView,
    /// Their events, by index.
    pub(crate) items: Vec<ActivityView>,
    /// Pass as `after` for the next page; absent on the last page.
    pub(crate) next_cursor: Option<i64>,
}

/// Everything one user read and did over a period (information system activity review,
/// HIPAA 164.308(a)(1)(ii)(D)), with counts per action and outcome.
#[utoipa::path(get, path = "/api/v1/users/{user_id}/access-report", tag = "audit", security(("bearer" = [])),
    params(("user_id" = UserId, Path), ReportQuery),
    responses((status = 200, body = AccessReportPage), (status = 400, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn access_report(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Path(user): Path<UserId>,
    Query(q): Query<ReportQuery>,
) -> ApiResult<Json<AccessReportPage>> {
    let (window, after, limit) = q.checked()?;
    let ev = AuditEvent::new(AuditAction::AuditLogRead, Outcome::Success)
        .detail("op", DetailValue::Code("access_report"))
        .detail("user", DetailValue::Id(user.0));
    record_use(&state, &s, meta, ev, None).await?;
    // Another organisation's user, or none: not found.
    state.store.user(s.actor.org_id, user).await?;
    let summary = state.store.user_activity_summary(s.actor.org_id, user, window).await?;
    let rows = state.store.user_activity(s.actor.org_id, user, window, after, i64::from(limit.get())).await?;
    let next_cursor = if rows.len() == limit.get() as usize { rows.last().map(|r| r.idx) } else { None };
    Ok(Json(AccessReportPage {
        user_id: user,
        from: window.from,
        to: window.to,
        summary: summary.into(),
        items: rows.into_iter().map(Into::into).collect(),
        next_cursor,
    }))
}
