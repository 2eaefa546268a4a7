//! Access review campaigns: `/api/v1/access-reviews` and the organisation's cadence at
//! `/api/v1/org/access-review-schedule` (164.308(a)(4) information access management,
//! 164.312(a)(1) access control; docs/access-reviews.md). Admins and compliance officers
//! review everyone but themselves, and may delegate items to a manager; a revocation disables the account as an admin's disable
//! does; closing marks undecided items `not_reviewed`; results export as JSON or CSV.

use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use ward_domain::access_review::{CampaignStatus, CampaignTrigger, Decision, ItemDecision, ReviewSchedule, RevokeReason, may_review};
use ward_domain::audit::{AuditAction, AuditEvent, DetailValue, Outcome};
use ward_domain::conversation::ConversationKind;
use ward_domain::ids::{CampaignId, ConversationId, UserId};
use ward_domain::role::Role;
use ward_store::{Campaign, ItemCounts, RequestMeta, ReviewItem, Store, StoreError, now_ms};

use super::dto::ts;
use crate::app::AppState;
use crate::auth::{Auth, Meta};
use crate::extract::{Json, Path, Query};
use crate::problem::{ApiError, ApiResult, Problem};

pub(crate) fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(list_campaigns, start_campaign))
        .routes(utoipa_axum::routes!(get_campaign))
        .routes(utoipa_axum::routes!(decide_item))
        .routes(utoipa_axum::routes!(assign_reviewer))
        .routes(utoipa_axum::routes!(close_campaign))
        .routes(utoipa_axum::routes!(export_campaign))
        .routes(utoipa_axum::routes!(set_schedule))
}

/// The organisation's review cadence.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ScheduleView {
    /// Days between campaigns (90: quarterly).
    cadence_days: u32,
    /// Days reviewers have to decide once a campaign opens.
    window_days: u32,
    /// When the server opens the next campaign (RFC 3339), a cadence after the last one.
    next_opening_at: String,
}

/// Items of a campaign by outcome.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct CountsView {
    total: u32,
    certified: u32,
    revoked: u32,
    not_reviewed: u32,
    /// Still to decide.
    pending: u32,
}

impl From<ItemCounts> for CountsView {
    fn from(n: ItemCounts) -> Self {
        CountsView { total: n.total, certified: n.certified, revoked: n.revoked, not_reviewed: n.not_reviewed, pending: n.pending }
    }
}

/// A campaign and its progress.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct CampaignView {
    id: CampaignId,
    status: CampaignStatus,
    /// What opened it: the schedule or a person.
    trigger: CampaignTrigger,
    /// When the snapshot was taken (RFC 3339).
    opened_at: String,
    opened_by: Option<UserId>,
    /// The decision deadline (RFC 3339).
    due_at: String,
    /// Open past its deadline.
    overdue: bool,
    closed_at: Option<String>,
    closed_by: Option<UserId>,
    counts: CountsView,
}

pub(crate) fn campaign_view(c: Campaign) -> CampaignView {
    CampaignView {
        id: c.id,
        status: c.status,
        trigger: c.origin,
        opened_at: ts(c.opened_at),
        opened_by: c.opened_by,
        due_at: ts(c.due_at),
        overdue: c.status == CampaignStatus::Open && now_ms() > c.due_at,
        closed_at: c.closed_at.map(ts),
        closed_by: c.closed_by,
        counts: c.counts.into(),
    }
}

/// One conversation the account belonged to at the snapshot.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct MembershipView {
    conversation_id: ConversationId,
    kind: ConversationKind,
}

/// One account's access as snapshotted when the campaign opened, and the decision on it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ItemView {
    user_id: UserId,
    login: String,
    display_name: String,
    role: Role,
    mfa_enabled: bool,
    membership_count: usize,
    memberships: Vec<MembershipView>,
    /// Last sign-in (RFC 3339), if any is on record.
    last_sign_in_at: Option<String>,
    /// Last message sent (RFC 3339), if any.
    last_message_at: Option<String>,
    /// `null` until decided; `not_reviewed` when the campaign closed without a decision.
    decision: Option<Decision>,
    /// A revocation's reason.
    reason: Option<RevokeReason>,
    /// The reviewer's note.
    note: Option<String>,
    decided_by: Option<UserId>,
    decided_at: Option<String>,
    /// The person the item was delegated to; `null`: the organisation's reviewers decide.
    reviewer_id: Option<UserId>,
}

pub(crate) fn item_view(i: ReviewItem) -> ItemView {
    ItemView {
        user_id: i.user_id,
        login: i.login,
        display_name: i.display_name,
        role: i.role,
        mfa_enabled: i.mfa_enabled,
        membership_count: i.memberships.len(),
        memberships: i.memberships.into_iter().map(|m| MembershipView { conversation_id: m.conversation_id, kind: m.kind }).collect(),
        last_sign_in_at: i.last_sign_in_at.map(ts),
        last_message_at: i.last_message_at.map(ts),
        decision: i.decision,
        reason: i.reason,
        note: i.note,
        decided_by: i.decided_by,
        decided_at: i.decided_at.map(ts),
        reviewer_id: i.reviewer,
    }
}

/// The campaigns, newest first, and the cadence.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct CampaignList {
    items: Vec<CampaignView>,
    schedule: ScheduleView,
}

/// A campaign with its items, by login name.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct CampaignDetail {
    campaign: CampaignView,
    items: Vec<ItemView>,
}

/// A reviewer's decision.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DecisionRequest {
    /// `certify` or `revoke`.
    decision: Decision,
    /// Required to revoke.
    reason: Option<RevokeReason>,
    /// One line, at most 500 characters; required when the reason is `other`.
    note: Option<String>,
}

/// Delegates items to a reviewer, or gives them back.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AssignRequest {
    /// An enabled workforce account of the organisation (a manager for their people), or
    /// `null` to give the items back to the organisation's reviewers.
    reviewer_id: Option<UserId>,
    /// The accounts whose items change hands: 1 to 1000, none of them the reviewer.
    user_ids: Vec<UserId>,
}

/// A new cadence.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ScheduleRequest {
    /// Days between campaigns, 7 to 366.
    cadence_days: u32,
    /// Days to decide, 1 to 90, shorter than the cadence.
    window_days: u32,
}

/// The format of an export.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ExportQuery {
    /// `json` (default) or `csv`.
    format: Option<String>,
}

fn event(s: &Auth, action: AuditAction, outcome: Outcome) -> AuditEvent {
    let mut ev = AuditEvent::new(action, outcome);
    ev.org_id = Some(s.actor.org_id);
    ev.actor = Some(s.actor.user_id);
    ev.device = Some(s.device);
    ev
}

/// The reviewers' role check (admins and compliance officers); a refusal is audited as `action`.
async fn reviewer(state: &AppState, s: &Auth, action: AuditAction, meta: &RequestMeta) -> ApiResult<()> {
    if let Err(d) = may_review(&s.actor) {
        state.store.record(event(s, action, Outcome::Denied).detail("reason", DetailValue::Code("role")), meta.clone()).await?;
        return Err(d.into());
    }
    Ok(())
}

/// Whether the actor reviews the whole organisation (`true`) or is a delegate with items in
/// `campaign` (any campaign when `None`); anyone else is refused, audited as `action`.
async fn reviewer_or_delegate(
    state: &AppState,
    s: &Auth,
    action: AuditAction,
    campaign: Option<CampaignId>,
    meta: &RequestMeta,
) -> ApiResult<bool> {
    if may_review(&s.actor).is_ok() {
        return Ok(true);
    }
    if s.actor.role.is_workforce() {
        let (org, me) = (s.actor.org_id, s.actor.user_id);
        let delegated = match campaign {
            None => !state.store.delegated_access_reviews(org, me).await?.is_empty(),
            Some(id) => match state.store.delegated_access_review(org, id, me).await {
                Ok(_) => true,
                Err(StoreError::NotFound) => false,
                Err(e) => return Err(e.into()),
            },
        };
        if delegated {
            return Ok(false);
        }
    }
    reviewer(state, s, action, meta).await.map(|()| true)
}

/// A store refusal of a decision or close, audited with its code before it is answered.
async fn refused(state: &AppState, ev: AuditEvent, e: StoreError, meta: &RequestMeta) -> ApiError {
    let code = match &e {
        StoreError::Denied(ward_domain::policy::Denial::OwnAccess) => "own_access",
        // A delegate deciding an item that is not theirs.
        StoreError::Denied(_) => "not_delegated",
        StoreError::State(why) if why.contains("last active admin") => "last_admin",
        StoreError::State(why) if why.contains("revoked") => "already_revoked",
        StoreError::State(_) => "closed",
        _ => return e.into(),
    };
    let outcome = if matches!(e, StoreError::Denied(_)) { Outcome::Denied } else { Outcome::Failure };
    let mut ev = ev.detail("refused", DetailValue::Code(code));
    ev.outcome = outcome;
    if let Err(audit) = state.store.record(ev, meta.clone()).await {
        return audit.into();
    }
    e.into()
}

async fn schedule_view(store: &Store, org: ward_domain::ids::OrgId) -> ApiResult<ScheduleView> {
    let s = store.access_review_schedule(org).await?;
    let next = store.next_access_review_at(org).await?;
    Ok(ScheduleView { cadence_days: s.cadence_days, window_days: s.window_days, next_opening_at: ts(next) })
}

/// The organisation's campaigns, newest first, with their progress and the cadence (admins
/// and compliance officers). A delegate sees the campaigns with items delegated to them, the
/// counts being of those items.
#[utoipa::path(get, path = "/api/v1/access-reviews", tag = "access_reviews", security(("bearer" = [])),
    responses((status = 200, body = CampaignList), (status = 403, body = Problem)))]
async fn list_campaigns(State(state): State<AppState>, Meta(meta): Meta, s: Auth) -> ApiResult<Json<CampaignList>> {
    let whole = reviewer_or_delegate(&state, &s, AuditAction::AccessReviewRead, None, &meta).await?;
    let campaigns = if whole {
        state.store.access_review_campaigns(s.actor.org_id).await?
    } else {
        state.store.delegated_access_reviews(s.actor.org_id, s.actor.user_id).await?
    };
    let items = campaigns.into_iter().map(campaign_view).collect();
    Ok(Json(CampaignList { items, schedule: schedule_view(&state.store, s.actor.org_id).await? }))
}

/// Starts a campaign now: snapshots every enabled workforce account's role, conversation
/// memberships and last activity (admins and compliance officers, with a recent second-factor
/// verification). 409 while another campaign is open.
#[utoipa::path(post, path = "/api/v1/access-reviews", tag = "access_reviews", security(("bearer" = [])),
    responses((status = 201, body = CampaignView), (status = 401, body = Problem), (status = 403, body = Problem), (status = 409, body = Problem)))]
async fn start_campaign(State(state): State<AppState>, Meta(meta): Meta, s: Auth) -> ApiResult<(StatusCode, Json<CampaignView>)> {
    reviewer(&state, &s, AuditAction::AccessReviewOpen, &meta).await?;
    crate::auth::require_step_up(&state, &s, "access_review_start", &meta).await?;
    let c = state.store.open_access_review(s.actor.org_id, s.actor.user_id, meta).await?;
    Ok((StatusCode::CREATED, Json(campaign_view(c))))
}

/// A campaign with every item (admins and compliance officers), or with the items delegated
/// to the caller.
#[utoipa::path(get, path = "/api/v1/access-reviews/{campaign_id}", tag = "access_reviews", security(("bearer" = [])),
    params(("campaign_id" = CampaignId, Path)),
    responses((status = 200, body = CampaignDetail), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn get_campaign(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Path(id): Path<CampaignId>,
) -> ApiResult<Json<CampaignDetail>> {
    let whole = reviewer_or_delegate(&state, &s, AuditAction::AccessReviewRead, Some(id), &meta).await?;
    let (campaign, items) = if whole {
        (state.store.access_review_campaign(s.actor.org_id, id).await?, state.store.access_review_items(s.actor.org_id, id).await?)
    } else {
        state.store.delegated_access_review(s.actor.org_id, id, s.actor.user_id).await?
    };
    let campaign = campaign_view(campaign);
    let items: Vec<ItemView> = items.into_iter().map(item_view).collect();
    let ev = event(&s, AuditAction::AccessReviewRead, Outcome::Success)
        .target("access_review", id)
        .detail("items", DetailValue::Int(items.len() as i64));
    state.store.record(ev, meta).await?;
    Ok(Json(CampaignDetail { campaign, items }))
}

/// Certifies or revokes one account's access in an open campaign (admins and compliance
/// officers, or the person the item was delegated to; never about themselves). A revocation needs a reason and a recent second-factor
/// verification, and disables the account at once: its sessions end and its devices get a
/// wipe, as an admin's disable does. A certification may later become a revocation while the
/// campaign is open; a revocation is final.
#[utoipa::path(post, path = "/api/v1/access-reviews/{campaign_id}/items/{user_id}", tag = "access_reviews", security(("bearer" = [])),
    params(("campaign_id" = CampaignId, Path), ("user_id" = UserId, Path)), request_body = DecisionRequest,
    responses((status = 200, body = ItemView), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn decide_item(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Path((id, user)): Path<(CampaignId, UserId)>,
    Json(req): Json<DecisionRequest>,
) -> ApiResult<Json<ItemView>> {
    reviewer_or_delegate(&state, &s, AuditAction::AccessReviewDecide, Some(id), &meta).await?;
    let decision = ItemDecision::parse(req.decision, req.reason, req.note.as_deref())?;
    let ev =
        event(&s, AuditAction::AccessReviewDecide, Outcome::Failure).target("access_review", id).detail("user", DetailValue::Id(user.0));
    // Removing access is as sensitive as disabling the account. (Deciding on one's own access
    // is refused by the store whatever the factor's age.)
    if matches!(decision, ItemDecision::Revoke { .. }) && user != s.actor.user_id {
        crate::auth::require_step_up(&state, &s, "access_review_revoke", &meta).await?;
    }
    match state.store.decide_access_review(s.actor, id, user, decision, meta.clone()).await {
        Ok(done) => {
            if done.disabled {
                state.end_sessions(user, None).await;
            }
            Ok(Json(item_view(done.item)))
        }
        Err(e) => Err(refused(&state, ev, e, &meta).await),
    }
}

/// Delegates items of an open campaign to a reviewer (a manager decides on their people), or
/// gives them back with `reviewer_id: null` (admins and compliance officers). The delegate
/// sees and decides only those items; delegations carry over to the next campaign.
#[utoipa::path(put, path = "/api/v1/access-reviews/{campaign_id}/reviewers", tag = "access_reviews", security(("bearer" = [])),
    params(("campaign_id" = CampaignId, Path)), request_body = AssignRequest,
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem),
        (status = 422, body = Problem)))]
async fn assign_reviewer(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Path(id): Path<CampaignId>,
    Json(req): Json<AssignRequest>,
) -> ApiResult<StatusCode> {
    reviewer(&state, &s, AuditAction::AccessReviewAssign, &meta).await?;
    if req.user_ids.is_empty() || req.user_ids.len() > 1000 {
        return Err(ApiError::validation_failed().detail("user_ids must name 1 to 1000 accounts"));
    }
    if let Some(r) = req.reviewer_id {
        match state.store.user(s.actor.org_id, r).await {
            Ok(_) => {}
            Err(StoreError::NotFound) => {
                return Err(ApiError::validation_failed().detail("reviewer_id is not an account of this organisation"));
            }
            Err(e) => return Err(e.into()),
        }
    }
    state.store.assign_access_review_items(s.actor, id, req.reviewer_id, req.user_ids, meta).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Closes an open campaign: every undecided item is marked `not_reviewed`, never certified
/// (admins and compliance officers; step-up).
#[utoipa::path(post, path = "/api/v1/access-reviews/{campaign_id}/close", tag = "access_reviews", security(("bearer" = [])),
    params(("campaign_id" = CampaignId, Path)),
    responses((status = 200, body = CampaignView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn close_campaign(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Path(id): Path<CampaignId>,
) -> ApiResult<Json<CampaignView>> {
    reviewer(&state, &s, AuditAction::AccessReviewClose, &meta).await?;
    // Closing freezes the evidence (undecided items become not_reviewed for good).
    crate::auth::require_step_up(&state, &s, "access_review_close", &meta).await?;
    let ev = event(&s, AuditAction::AccessReviewClose, Outcome::Failure).target("access_review", id);
    match state.store.close_access_review(s.actor.org_id, s.actor.user_id, id, meta.clone()).await {
        Ok(c) => Ok(Json(campaign_view(c))),
        Err(e) => Err(refused(&state, ev, e, &meta).await),
    }
}

/// A campaign's results as evidence: JSON (the campaign and every item) or CSV (one line per
/// item). Audited `access_review.export` (admins and compliance officers).
#[utoipa::path(get, path = "/api/v1/access-reviews/{campaign_id}/export", tag = "access_reviews", security(("bearer" = [])),
    params(("campaign_id" = CampaignId, Path), ExportQuery),
    responses((status = 200, description = "The results", content((CampaignDetail = "application/json"), (String = "text/csv"))),
        (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn export_campaign(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Path(id): Path<CampaignId>,
    Query(q): Query<ExportQuery>,
) -> ApiResult<Response> {
    reviewer(&state, &s, AuditAction::AccessReviewExport, &meta).await?;
    let csv = match q.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => return Err(ApiError::invalid_parameter().detail("format must be json or csv")),
    };
    let campaign = state.store.access_review_campaign(s.actor.org_id, id).await?;
    let items = state.store.access_review_items(s.actor.org_id, id).await?;
    let format = if csv { "csv" } else { "json" };
    let ev = event(&s, AuditAction::AccessReviewExport, Outcome::Success)
        .target("access_review", id)
        .detail("format", DetailValue::Code(format));
    state.store.record(ev, meta).await?;
    let disposition = format!("attachment; filename=\"access-review-{id}.{format}\"");
    if csv {
        let body = csv_of(&items);
        return Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()), (header::CONTENT_DISPOSITION, disposition)], body)
            .into_response());
    }
    let detail = CampaignDetail { campaign: campaign_view(campaign), items: items.into_iter().map(item_view).collect() };
    let body = serde_json::to_vec_pretty(&detail).map_err(ApiError::internal_cause)?;
    Ok(([(header::CONTENT_TYPE, "application/json".to_owned()), (header::CONTENT_DISPOSITION, disposition)], body).into_response())
}

/// Changes the organisation's review cadence (admins and compliance officers; step-up; audited).
#[utoipa::path(put, path = "/api/v1/org/access-review-schedule", tag = "access_reviews", security(("bearer" = [])),
    request_body = ScheduleRequest,
    responses((status = 200, body = ScheduleView), (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn set_schedule(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Json(req): Json<ScheduleRequest>,
) -> ApiResult<Json<ScheduleView>> {
    reviewer(&state, &s, AuditAction::AccessReviewSchedule, &meta).await?;
    let schedule = ReviewSchedule::parse(req.cadence_days, req.window_days)?;
    // A longer cadence weakens a HIPAA control: the same proof of presence as starting one.
    crate::auth::require_step_up(&state, &s, "access_review_schedule", &meta).await?;
    state.store.set_access_review_schedule(s.actor.org_id, s.actor.user_id, schedule, meta).await?;
    Ok(Json(schedule_view(&state.store, s.actor.org_id).await?))
}

/// The CSV export: a header line, then one line per item. Cells are quoted, and a cell that
/// a spreadsheet would read as a formula gets a leading apostrophe.
fn csv_of(items: &[ReviewItem]) -> String {
    let mut out = String::from(
        "user_id,login,display_name,role,mfa_enabled,membership_count,conversation_kinds,last_sign_in_at,last_message_at,decision,reason,note,decided_by,decided_at\n",
    );
    for i in items {
        let mut kinds: Vec<&str> = i.memberships.iter().map(|m| m.kind.as_str()).collect();
        kinds.sort_unstable();
        kinds.dedup();
        let cells = [
            i.user_id.to_string(),
            i.login.clone(),
            i.display_name.clone(),
            i.role.as_str().to_owned(),
            i.mfa_enabled.to_string(),
            i.memberships.len().to_string(),
            kinds.join(" "),
            i.last_sign_in_at.map(ts).unwrap_or_default(),
            i.last_message_at.map(ts).unwrap_or_default(),
            i.decision.map(|d| d.as_str().to_owned()).unwrap_or_else(|| "pending".to_owned()),
            i.reason.map(|r| r.as_str().to_owned()).unwrap_or_default(),
            i.note.clone().unwrap_or_default(),
            i.decided_by.map(|u| u.to_string()).unwrap_or_default(),
            i.decided_at.map(ts).unwrap_or_default(),
        ];
        let line: Vec<String> = cells.iter().map(|c| csv_cell(c.as_str())).collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out
}

fn csv_cell(v: &str) -> String {
    let guarded = if v.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{v}") } else { v.to_owned() };
    format!("\"{}\"", guarded.replace('"', "\"\""))
}

/// How often the server looks for organisations whose review cadence has come due.
const SCHEDULE_CHECK: Duration = Duration::from_secs(300);

/// Opens each organisation's campaign when its cadence comes due (no actor: the server).
/// Safe on every node: at most one campaign per organisation can be open.
pub(crate) fn spawn_scheduler(store: Store) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match store.open_due_access_reviews(now_ms(), RequestMeta::default()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(campaigns = n, "scheduled access reviews opened"),
                Err(e) => tracing::warn!(error = %e, "access review schedule check failed; retrying later"),
            }
            tokio::time::sleep(SCHEDULE_CHECK).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_are_quoted_and_formulas_defused() {
        assert_eq!(csv_cell("plain"), "\"plain\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("=HYPERLINK(1)"), "\"'=HYPERLINK(1)\"");
        assert_eq!(csv_cell("-2"), "\"'-2\"");
    }
}
