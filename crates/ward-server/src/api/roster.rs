//! HR roster reconciliation (docs/devices.md; HIPAA 164.308(a)(3)(ii)(C) termination
//! procedures): an admin posts the roster CSV and gets the accounts, sessions and devices of
//! people who left or are not on the roster, and the roster people with no account; with
//! confirmation, every flagged account is disabled, its sessions revoked and its devices sent
//! a wipe, each step audited. The roster is personal data: it is never stored or logged, and
//! the audit log records counts and user ids only.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, header};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use ward_domain::audit::{AuditAction, AuditEvent, DetailValue, Outcome};
use ward_domain::ids::{DeviceId, UserId};
use ward_domain::policy;
use ward_domain::roster::{FlagReason, Roster, RosterError, RosterReport, reconcile};
use ward_store::{RequestMeta, now_ms};

use super::dto::ts;
use crate::app::AppState;
use crate::auth::{Auth, Meta};
use crate::extract::{Json, Query};
use crate::problem::{ApiError, ApiResult, Problem};

/// Largest roster body (about 100,000 people).
pub(crate) const ROSTER_MAX_BYTES: usize = 16 * 1024 * 1024;

pub(crate) fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(reconcile_roster))
        .routes(utoipa_axum::routes!(remediate_roster))
        .layer(DefaultBodyLimit::max(ROSTER_MAX_BYTES))
}

/// What remediation did to one account.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RemediatedAccount {
    /// The account.
    user_id: UserId,
    /// Its login.
    login: String,
    /// Why it was flagged.
    reason: FlagReason,
    /// Disabled now (false: it already was).
    disabled: bool,
    /// Sessions revoked now (their connections were closed).
    sessions_revoked: usize,
    /// Devices sent a wipe now (reason `deprovisioned: roster`).
    wipes_queued: Vec<DeviceId>,
    /// Of those, devices that never registered: their sessions were revoked and the wipe is
    /// closed as `no_wipe_channel`.
    no_wipe_channel: Vec<DeviceId>,
}

/// The outcome of a remediation run.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RemediationReport {
    /// When it ran.
    ran_at: String,
    /// The reconciliation it acted on.
    report: RosterReport,
    /// One entry per account acted on; an account with nothing left to do has none.
    remediated: Vec<RemediatedAccount>,
}

/// The confirmation remediation needs.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct RemediateQuery {
    /// Must be `true`: disabling accounts and wiping devices is not undone by enabling them.
    confirm: Option<bool>,
    /// `true` to act although more than half of the workforce would be disabled (refused
    /// otherwise, as the mark of a truncated roster).
    allow_mass: Option<bool>,
}

fn require_csv(headers: &HeaderMap) -> ApiResult<()> {
    let ok = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("text/csv"));
    if ok { Ok(()) } else { Err(ApiError::unsupported_media_type().detail("send the roster as text/csv")) }
}

/// Admins only; anyone else is refused, and the refusal audited (a roster names the workforce).
async fn administers(state: &AppState, s: &Auth, action: AuditAction, meta: &RequestMeta) -> ApiResult<()> {
    if let Err(denial) = policy::may_administer(&s.actor) {
        state.store.record(org_event(action, Outcome::Denied, s).detail("reason", DetailValue::Code("role")), meta.clone()).await?;
        return Err(denial.into());
    }
    Ok(())
}

fn org_event(action: AuditAction, outcome: Outcome, s: &Auth) -> AuditEvent {
    let mut ev = AuditEvent::new(action, outcome);
    ev.org_id = Some(s.actor.org_id);
    ev.actor = Some(s.actor.user_id);
    ev
}

/// Parses the body and reconciles it with the accounts now; a refused roster is audited
/// (`roster.reconcile` failure with the line, never a value).
async fn reconciled(state: &AppState, s: &Auth, headers: &HeaderMap, body: &Bytes, meta: &RequestMeta) -> ApiResult<RosterReport> {
    administers(state, s, AuditAction::RosterReconcile, meta).await?;
    require_csv(headers)?;
    let parsed = std::str::from_utf8(body).map_err(|_| RosterError::Unreadable { line: 0 }).and_then(Roster::parse_csv);
    let roster = match parsed {
        Ok(r) => r,
        Err(e) => {
            let line = match &e {
                RosterError::Unreadable { line } | RosterError::BadField { line, .. } | RosterError::Duplicate { line, .. } => *line,
                _ => 1,
            };
            let ev = org_event(AuditAction::RosterReconcile, Outcome::Failure, s)
                .detail("reason", DetailValue::Code("invalid_roster"))
                .detail("line", DetailValue::Int(i64::try_from(line).unwrap_or(i64::MAX)));
            state.store.record(ev, meta.clone()).await?;
            return Err(ApiError::invalid_roster().detail(e.to_string()));
        }
    };
    let accounts = state.store.roster_snapshot(s.actor.org_id).await?;
    let today = ts(now_ms()).get(..10).unwrap_or_default().to_owned();
    Ok(reconcile(&roster, &accounts, &today, Some(s.actor.user_id)))
}

fn counts(ev: AuditEvent, r: &RosterReport) -> AuditEvent {
    ev.detail("roster_people", DetailValue::Int(r.roster_people as i64))
        .detail("roster_terminated", DetailValue::Int(r.roster_terminated as i64))
        .detail("accounts", DetailValue::Int(r.accounts as i64))
        .detail("needs_action", DetailValue::Int(r.needs_action.len() as i64))
        .detail("already_disabled", DetailValue::Int(r.already_disabled.len() as i64))
        .detail("missing_accounts", DetailValue::Int(r.missing_accounts.len() as i64))
        .detail("excluded_self", DetailValue::Bool(r.excluded_self.is_some()))
}

/// Compares an HR roster (CSV: `employee_id`, `login`, `status` = `active`|`terminated`,
/// optional `termination_date` = `YYYY-MM-DD`; other columns ignored) with the organisation's
/// workforce accounts: accounts of people who left or are not on the roster with their live
/// sessions and devices, those already disabled, and active roster people with no account.
/// Changes nothing; audited with counts only.
#[utoipa::path(post, path = "/api/v1/admin/roster/reconcile", tag = "roster", security(("bearer" = [])),
    request_body(content = String, content_type = "text/csv", description = "The roster, header line first"),
    responses((status = 200, body = RosterReport), (status = 403, body = Problem), (status = 413, body = Problem),
        (status = 415, body = Problem), (status = 422, body = Problem)))]
async fn reconcile_roster(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<RosterReport>> {
    let report = reconciled(&state, &s, &headers, &body, &meta).await?;
    state.store.record(counts(org_event(AuditAction::RosterReconcile, Outcome::Success, &s), &report), meta).await?;
    Ok(Json(report))
}

/// Reconciles the roster as `/reconcile` does, then remediates every flagged account that
/// has something live: disables it, revokes its sessions (closing their connections) and
/// sends each of its devices a wipe (`deprovisioned: roster`), each step audited. The caller's
/// own account is never touched (`excluded_self`). Needs `?confirm=true`. A second run with
/// the same roster changes nothing.
#[utoipa::path(post, path = "/api/v1/admin/roster/remediate", tag = "roster", security(("bearer" = [])), params(RemediateQuery),
    request_body(content = String, content_type = "text/csv", description = "The roster, header line first"),
    responses((status = 200, body = RemediationReport), (status = 403, body = Problem), (status = 413, body = Problem),
        (status = 415, body = Problem), (status = 422, body = Problem)))]
async fn remediate_roster(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Query(q): Query<RemediateQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<RemediationReport>> {
    administers(&state, &s, AuditAction::RosterRemediate, &meta).await?;
    if q.confirm != Some(true) {
        return Err(ApiError::validation_failed().detail("remediation disables accounts and wipes devices: add ?confirm=true"));
    }
    crate::auth::require_step_up(&state, &s, "roster_remediate", &meta).await?;
    let report = reconciled(&state, &s, &headers, &body, &meta).await?;
    if let Some(why) = report.remediation_refusal(q.allow_mass == Some(true)) {
        let ev = counts(org_event(AuditAction::RosterRemediate, Outcome::Failure, &s), &report)
            .detail("reason", DetailValue::Code("mass_remediation_refused"));
        state.store.record(ev, meta).await?;
        return Err(ApiError::invalid_roster().detail(why));
    }
    let mut remediated = Vec::new();
    for f in &report.needs_action {
        let step = state.store.remediate_roster_account(s.actor.org_id, f.user_id, f.reason, Some(s.actor.user_id), meta.clone()).await?;
        if !step.changed() {
            continue;
        }
        if !step.revoked_sessions.is_empty() || step.disabled {
            state.end_sessions(f.user_id, None).await;
        }
        remediated.push(RemediatedAccount {
            user_id: f.user_id,
            login: f.login.clone(),
            reason: f.reason,
            disabled: step.disabled,
            sessions_revoked: step.revoked_sessions.len(),
            wipes_queued: step.wipes_queued,
            no_wipe_channel: step.no_wipe_channel,
        });
    }
    let ev = counts(org_event(AuditAction::RosterRemediate, Outcome::Success, &s), &report)
        .detail("remediated", DetailValue::Int(remediated.len() as i64));
    state.store.record(ev, meta).await?;
    Ok(Json(RemediationReport { ran_at: ts(now_ms()), report, remediated }))
}
