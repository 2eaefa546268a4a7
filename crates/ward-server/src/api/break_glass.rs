//! Break-glass emergency access (HIPAA 164.312(a)(2)(ii)): `/api/v1/break-glass/...`.
//!
//! A clinician or nurse who is not in a patient's conversations states a reason (a category
//! and free text, the text sealed and never audited), steps up, and gets read-only access to
//! the patient's conversations for `[break_glass] access_minutes`. Compliance officers are
//! alerted at once (the `break_glass_access` alert, through the anomaly-alert evaluator and
//! the WebSocket stream); every read is audited as a disclosure, so it appears in the
//! patient's accounting of disclosures; a compliance officer reviews each use. After the
//! window, the grant's reads answer 404 exactly as for a non-member.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use ward_domain::audit::{AuditAction, AuditEvent, DetailValue, Outcome};
use ward_domain::break_glass::{ReasonCategory, ReasonText, ReviewStatus};
use ward_domain::ids::{ConversationId, PatientId, UserId};
use ward_domain::page::PageLimit;
use ward_domain::policy;
use ward_store::{BreakGlassGrant, Page, now_ms};

use super::dto::{MessagePage, MessageView, ts};
use crate::app::AppState;
use crate::auth::{Auth, Meta, require_step_up};
use crate::extract::{Json, Path, Query};
use crate::problem::{ApiError, ApiResult, Problem};

pub(crate) fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(request_access, my_grants))
        .routes(utoipa_axum::routes!(grant_conversations))
        .routes(utoipa_axum::routes!(grant_messages))
        .routes(utoipa_axum::routes!(review_queue))
        .routes(utoipa_axum::routes!(review_grant))
        .routes(utoipa_axum::routes!(revoke_grant))
}

/// A break-glass request.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BreakGlassRequest {
    /// The patient whose conversations are needed.
    pub(crate) patient_id: PatientId,
    /// Why, as a category (recorded in the audit log).
    pub(crate) reason_category: ReasonCategory,
    /// Why, in words (mandatory, at most 1000 characters). It may name the patient and their
    /// condition: it is stored sealed, shown only to compliance reviewers, never audited.
    pub(crate) reason: String,
}

/// A break-glass grant.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct BreakGlassView {
    /// Id.
    pub(crate) id: uuid::Uuid,
    /// The patient.
    pub(crate) patient_id: PatientId,
    /// Who asked (and may read).
    pub(crate) requester_id: UserId,
    /// The stated category.
    pub(crate) reason_category: ReasonCategory,
    /// The stated reason: only in the review queue.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
    /// When it was granted.
    pub(crate) granted_at: String,
    /// When read access ends.
    pub(crate) expires_at: String,
    /// Whether reads are allowed now.
    pub(crate) active: bool,
    /// When it was ended early.
    pub(crate) revoked_at: Option<String>,
    /// Who ended it early.
    pub(crate) revoked_by: Option<UserId>,
    /// The compliance review.
    pub(crate) review_status: ReviewStatus,
    /// Who reviewed it.
    pub(crate) reviewed_by: Option<UserId>,
    /// When.
    pub(crate) reviewed_at: Option<String>,
    /// The reviewer's note: only in the review queue.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) review_note: Option<String>,
}

/// Records a refused break-glass call (wrong role, bad reason) as a denied or failed event of
/// its action, then hands the error back: refusals on this sensitive endpoint are evidence too.
async fn refused(
    state: &AppState,
    s: &Auth,
    meta: &ward_store::RequestMeta,
    action: AuditAction,
    grant: Option<uuid::Uuid>,
    why: &'static str,
    err: ApiError,
) -> ApiError {
    let outcome = if why == "role" { Outcome::Denied } else { Outcome::Failure };
    let mut ev = AuditEvent::new(action, outcome).detail("reason", DetailValue::Code(why));
    if let Some(g) = grant {
        ev = ev.target("break_glass", g);
    }
    ev.org_id = Some(s.actor.org_id);
    ev.actor = Some(s.actor.user_id);
    ev.device = Some(s.device);
    match state.store.record(ev, meta.clone()).await {
        Ok(_) => err,
        Err(e) => e.into(),
    }
}

pub(crate) fn view(g: BreakGlassGrant) -> BreakGlassView {
    BreakGlassView {
        active: g.active_at(now_ms()),
        id: g.id,
        patient_id: g.patient_id,
        requester_id: g.requester_id,
        reason_category: g.reason_category,
        reason: g.reason,
        granted_at: ts(g.granted_at),
        expires_at: ts(g.expires_at),
        revoked_at: g.revoked_at.map(ts),
        revoked_by: g.revoked_by,
        review_status: g.review_status,
        reviewed_by: g.reviewed_by,
        reviewed_at: g.reviewed_at.map(ts),
        review_note: g.review_note,
    }
}

/// A conversation about the patient, as a break-glass reader sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct BreakGlassConversationView {
    /// Id.
    pub(crate) id: ConversationId,
    /// Title.
    pub(crate) title: Option<String>,
    /// When it started.
    pub(crate) created_at: String,
    /// The newest message's sequence number.
    pub(crate) last_message_seq: i64,
}

/// Requests emergency read access to a patient's conversations (clinicians and nurses; needs
/// a recent second-factor verification). Compliance officers are alerted at once.
#[utoipa::path(post, path = "/api/v1/break-glass", tag = "break-glass", security(("bearer" = [])), request_body = BreakGlassRequest,
    responses((status = 201, body = BreakGlassView), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn request_access(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Json(req): Json<BreakGlassRequest>,
) -> ApiResult<(StatusCode, Json<BreakGlassView>)> {
    let action = AuditAction::BreakGlassRequest;
    if let Err(d) = policy::may_request_break_glass(&s.actor) {
        return Err(refused(&state, &s, &meta, action, None, "role", d.into()).await);
    }
    let reason = match ReasonText::parse("reason", &req.reason) {
        Ok(r) => r,
        Err(e) => return Err(refused(&state, &s, &meta, action, None, "invalid_reason", e.into()).await),
    };
    require_step_up(&state, &s, "break_glass", &meta).await?;
    let minutes = state.config.break_glass.access_minutes;
    let grant = state.store.request_break_glass(s.actor, s.device, req.patient_id, req.reason_category, reason, minutes, meta).await?;
    Ok((StatusCode::CREATED, Json(view(grant))))
}

/// The caller's break-glass grants that are still open, newest first.
#[utoipa::path(get, path = "/api/v1/break-glass", tag = "break-glass", security(("bearer" = [])),
    responses((status = 200, body = Vec<BreakGlassView>), (status = 401, body = Problem)))]
async fn my_grants(State(state): State<AppState>, s: Auth) -> ApiResult<Json<Vec<BreakGlassView>>> {
    let list = state.store.my_break_glass_grants(s.actor, now_ms()).await?;
    Ok(Json(list.into_iter().map(view).collect()))
}

/// The patient's conversations, read under an open grant of the caller (audited as a
/// break-glass disclosure). A grant that ended, or is not the caller's, answers 404.
#[utoipa::path(get, path = "/api/v1/break-glass/{grant_id}/conversations", tag = "break-glass", security(("bearer" = [])),
    params(("grant_id" = uuid::Uuid, Path)),
    responses((status = 200, body = Vec<BreakGlassConversationView>), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn grant_conversations(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Path(grant): Path<uuid::Uuid>,
) -> ApiResult<Json<Vec<BreakGlassConversationView>>> {
    super::devices::require_phi_allowed(&state, &s, &meta).await?;
    let list = state.store.break_glass_conversations(s.actor, s.device, grant, now_ms(), meta).await?;
    Ok(Json(
        list.into_iter()
            .map(|c| BreakGlassConversationView {
                id: c.id,
                title: c.title,
                created_at: ts(c.created_at),
                last_message_seq: c.last_message_seq,
            })
            .collect(),
    ))
}

/// Paging of messages read under a grant.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct GrantMessageQuery {
    /// Messages after this sequence number, oldest first.
    after: Option<i64>,
    /// Messages before this sequence number, newest first.
    before: Option<i64>,
    /// Page size, 1 to 200.
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
}

/// A page of messages of one of the patient's conversations, read under an open grant of the
/// caller (audited as a break-glass disclosure with the sequence range). Read-only: nothing
/// is marked read or delivered.
#[utoipa::path(get, path = "/api/v1/break-glass/{grant_id}/conversations/{conversation_id}/messages", tag = "break-glass",
    security(("bearer" = [])), params(("grant_id" = uuid::Uuid, Path), ("conversation_id" = ConversationId, Path), GrantMessageQuery),
    responses((status = 200, body = MessagePage), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn grant_messages(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Path((grant, conv)): Path<(uuid::Uuid, ConversationId)>,
    Query(q): Query<GrantMessageQuery>,
) -> ApiResult<Json<MessagePage>> {
    let limit = PageLimit::parse(q.limit)?;
    let page = match (q.after, q.before) {
        (None, None) => Page::Latest,
        (Some(a), None) if a >= 0 => Page::After(a),
        (None, Some(b)) if b >= 1 => Page::Before(b),
        (Some(_), Some(_)) => return Err(ApiError::invalid_parameter().detail("give after or before, not both")),
        _ => return Err(ApiError::invalid_parameter().detail("after must be at least 0 and before at least 1")),
    };
    super::devices::require_phi_allowed(&state, &s, &meta).await?;
    let mut msgs = state.store.break_glass_messages(s.actor, s.device, grant, conv, page, limit.get(), now_ms(), meta).await?;
    msgs.sort_by_key(|m| m.seq);
    let before_cursor = msgs.first().map(|m| m.seq).filter(|&s| s > 1);
    let after_cursor = msgs.last().map(|m| m.seq).or(match page {
        Page::After(a) => Some(a),
        _ => None,
    });
    Ok(Json(MessagePage { items: msgs.into_iter().map(MessageView::from).collect(), before_cursor, after_cursor }))
}

/// Filter of the review queue.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct QueueQuery {
    /// Only grants with this review status (`pending`, `justified`, `unjustified`).
    status: Option<ReviewStatus>,
    /// At most this many (1 to 500, default 100).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

/// The review queue (compliance officers): every grant of the organisation with its reason,
/// pending first, then newest first. Reading it is audited (`audit.read`, op `break_glass_queue`).
#[utoipa::path(get, path = "/api/v1/break-glass/reviews", tag = "break-glass", security(("bearer" = [])), params(QueueQuery),
    responses((status = 200, body = Vec<BreakGlassView>), (status = 400, body = Problem), (status = 403, body = Problem)))]
async fn review_queue(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Query(q): Query<QueueQuery>,
) -> ApiResult<Json<Vec<BreakGlassView>>> {
    if let Err(d) = policy::may_review_break_glass(&s.actor) {
        return Err(refused(&state, &s, &meta, AuditAction::BreakGlassReview, None, "role", d.into()).await);
    }
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid_parameter().detail("limit must be from 1 to 500"));
    }
    super::audit::audited(&state, &s, meta, "break_glass_queue").await?;
    let list = state.store.break_glass_queue(s.actor.org_id, q.status, limit).await?;
    Ok(Json(list.into_iter().map(view).collect()))
}

/// A compliance officer's verdict on a break-glass use.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReviewRequest {
    /// `justified` or `unjustified`.
    pub(crate) status: ReviewStatus,
    /// A note (at most 1000 characters; sealed like the reason, never audited).
    pub(crate) note: Option<String>,
}

/// Marks a break-glass use justified or unjustified (compliance officers; once per grant).
#[utoipa::path(post, path = "/api/v1/break-glass/{grant_id}/review", tag = "break-glass", security(("bearer" = [])),
    params(("grant_id" = uuid::Uuid, Path)), request_body = ReviewRequest,
    responses((status = 200, body = BreakGlassView), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn review_grant(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Path(grant): Path<uuid::Uuid>,
    Json(req): Json<ReviewRequest>,
) -> ApiResult<Json<BreakGlassView>> {
    if let Err(d) = policy::may_review_break_glass(&s.actor) {
        return Err(refused(&state, &s, &meta, AuditAction::BreakGlassReview, Some(grant), "role", d.into()).await);
    }
    if req.status == ReviewStatus::Pending {
        return Err(ApiError::validation_failed().detail("status must be justified or unjustified"));
    }
    let note = match req.note.as_deref().map(str::trim) {
        Some(n) if !n.is_empty() => Some(ReasonText::parse("note", n)?),
        _ => None,
    };
    Ok(Json(view(state.store.review_break_glass(s.actor, grant, req.status, note, meta).await?)))
}

/// Ends a grant early (compliance officers and admins): its reads answer 404 from now on.
#[utoipa::path(post, path = "/api/v1/break-glass/{grant_id}/revoke", tag = "break-glass", security(("bearer" = [])),
    params(("grant_id" = uuid::Uuid, Path)),
    responses((status = 200, body = BreakGlassView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn revoke_grant(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Path(grant): Path<uuid::Uuid>,
) -> ApiResult<Json<BreakGlassView>> {
    if let Err(d) = policy::may_revoke_break_glass(&s.actor) {
        return Err(refused(&state, &s, &meta, AuditAction::BreakGlassRevoke, Some(grant), "role", d.into()).await);
    }
    Ok(Json(view(state.store.revoke_break_glass(s.actor, grant, meta).await?)))
}
