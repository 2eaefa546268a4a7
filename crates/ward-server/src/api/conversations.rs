//! Conversations, members, messages, recall and receipts: `/api/v1/conversations/...`.
//! A conversation the caller is not a member of answers 404, exactly like one that does not exist.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use ward_domain::audit::AuditAction;
use ward_domain::conversation::{ClientTxnId, ConversationKind, MemberRole, MessageText, StatedReason};
use ward_domain::ids::{ConversationId, MessageId, UserId};
use ward_domain::login::parse_label;
use ward_domain::page::PageLimit;
use ward_domain::role::Role;
use ward_store::{MemberSpec, NewConversation, NewMessage, Page, StoreError};

use super::dto::{
    AddMemberRequest, ConversationPage, ConversationSummaryView, ConversationView, CreateConversationRequest, EventSeq, MessagePage,
    MessageView, ReasonRequest, ReceiptRequest, SendMessageRequest,
};
use crate::app::AppState;
use crate::auth::{Auth, Meta};
use crate::extract::{Json, Path, Query};
use crate::problem::{ApiError, ApiResult, Problem};

pub(crate) fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(list_conversations, create_conversation))
        .routes(utoipa_axum::routes!(get_conversation))
        .routes(utoipa_axum::routes!(add_member))
        .routes(utoipa_axum::routes!(remove_member))
        .routes(utoipa_axum::routes!(list_messages, send_message))
        .routes(utoipa_axum::routes!(get_message))
        .routes(utoipa_axum::routes!(recall_message))
        .routes(utoipa_axum::routes!(post_receipt))
}

fn reason(r: Option<ReasonRequest>) -> ApiResult<Option<StatedReason>> {
    r.map(|r| StatedReason::parse(r.code, r.note)).transpose().map_err(Into::into)
}

/// Paging of the conversation list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ConversationListQuery {
    /// Continue with conversations older than this one.
    before: Option<ConversationId>,
    /// Page size, 1 to 200.
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
}

/// The caller's conversations, newest first, with unread counts.
#[utoipa::path(get, path = "/api/v1/conversations", tag = "conversations", security(("bearer" = [])), params(ConversationListQuery),
    responses((status = 200, body = ConversationPage), (status = 400, body = Problem), (status = 401, body = Problem)))]
async fn list_conversations(
    State(state): State<AppState>,
    s: Auth,
    Query(q): Query<ConversationListQuery>,
) -> ApiResult<Json<ConversationPage>> {
    let limit = PageLimit::parse(q.limit)?;
    let list = state.store.conversations(s.actor, q.before, limit.get()).await?;
    let next_cursor = if list.len() == limit.get() as usize { list.last().map(|c| c.id) } else { None };
    let mut items: Vec<ConversationSummaryView> = list.into_iter().map(Into::into).collect();
    // Titles are free text and may carry PHI: a device blocked from PHI does not get them.
    if let Some(notice) = super::devices::phi_withheld(&state, &s).await? {
        items.iter_mut().for_each(|c| c.withhold(&notice));
    }
    Ok(Json(ConversationPage { items, next_cursor }))
}

/// Starts a conversation with the caller as owner. Direct conversations have exactly one other
/// member and are reused (200) if they exist. Patient conversations are bound to a patient;
/// anyone outside the patient's care team needs a stated reason.
#[utoipa::path(post, path = "/api/v1/conversations", tag = "conversations", security(("bearer" = [])), request_body = CreateConversationRequest,
    responses((status = 201, body = ConversationView), (status = 200, body = ConversationView), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn create_conversation(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Json(req): Json<CreateConversationRequest>,
) -> ApiResult<(StatusCode, Json<ConversationView>)> {
    if req.members.len() > 500 {
        return Err(ApiError::validation_failed().detail("a conversation starts with at most 500 members"));
    }
    let title = match (&req.title, req.kind) {
        (Some(_), ConversationKind::Direct) => return Err(ApiError::validation_failed().detail("direct conversations have no title")),
        (Some(t), _) => Some(parse_label("title", t, 200)?),
        (None, _) => None,
    };
    let members =
        req.members.into_iter().map(|m| Ok(MemberSpec { user_id: m.user_id, reason: reason(m.reason)? })).collect::<ApiResult<Vec<_>>>()?;
    let spec = NewConversation { kind: req.kind, title, patient_id: req.patient_id, members, creator_reason: reason(req.reason)? };
    let created = state.store.create_conversation(s.actor, spec, meta.clone()).await.map_err(|e| match e {
        StoreError::NotFound => ApiError::not_found().detail("a member or the patient does not exist in this organisation"),
        // The kind does not fit the members or patient given: a bad request, not a conflict.
        StoreError::State(rule) => ApiError::validation_failed().detail(rule),
        other => other.into(),
    })?;
    for f in created.fanouts {
        state.publish(f).await;
    }
    let mut view: ConversationView = state.store.conversation(s.actor, created.id, meta).await?.into();
    if s.actor.role == Role::Patient {
        // A patient member sees the care team, not the organisation's groups behind it.
        view = view.for_patient();
    }
    if let Some(notice) = super::devices::phi_withheld(&state, &s).await? {
        view.withhold(&notice);
    }
    let status = if created.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(view)))
}

/// A conversation with its members and their receipts (and the patient, for patient conversations).
#[utoipa::path(get, path = "/api/v1/conversations/{conversation_id}", tag = "conversations", security(("bearer" = [])),
    params(("conversation_id" = ConversationId, Path)),
    responses((status = 200, body = ConversationView), (status = 404, body = Problem)))]
async fn get_conversation(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Path(id): Path<ConversationId>,
) -> ApiResult<Json<ConversationView>> {
    let mut view: ConversationView = state.store.conversation(s.actor, id, meta).await?.into();
    if s.actor.role == Role::Patient {
        // A patient member sees the care team, not the organisation's groups behind it.
        view = view.for_patient();
    }
    // A device blocked from PHI sees that the conversation is patient-linked, not who the
    // patient is (name and MRN are PHI), and not its title (free text that may carry PHI).
    if let Some(notice) = super::devices::phi_withheld(&state, &s).await? {
        view.withhold(&notice);
    }
    Ok(Json(view))
}

/// Adds a member (owners only; not to direct conversations). Someone outside the patient's
/// care team needs a stated reason, which is recorded.
#[utoipa::path(post, path = "/api/v1/conversations/{conversation_id}/members", tag = "conversations", security(("bearer" = [])),
    params(("conversation_id" = ConversationId, Path)), request_body = AddMemberRequest,
    responses((status = 201, body = EventSeq), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem),
        (status = 422, body = Problem)))]
async fn add_member(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Path(id): Path<ConversationId>,
    Json(req): Json<AddMemberRequest>,
) -> ApiResult<(StatusCode, Json<EventSeq>)> {
    let role = req.role.unwrap_or(MemberRole::Member);
    let fs = denied_as_audited(
        &state,
        &s,
        AuditAction::MemberAdd,
        id,
        &meta,
        state.store.add_member(s.actor, id, req.user_id, role, reason(req.reason)?, meta.clone()).await,
    )
    .await?;
    // The member_added event, then any minimum-necessary notice.
    let seq = fs.first().map_or(0, |f| f.event.seq);
    for f in fs {
        state.publish(f).await;
    }
    Ok((StatusCode::CREATED, Json(EventSeq { seq })))
}

/// Removes a member (owners remove anyone; members may leave).
#[utoipa::path(delete, path = "/api/v1/conversations/{conversation_id}/members/{user_id}", tag = "conversations", security(("bearer" = [])),
    params(("conversation_id" = ConversationId, Path), ("user_id" = UserId, Path)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn remove_member(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Path((id, user)): Path<(ConversationId, UserId)>,
) -> ApiResult<StatusCode> {
    let f = denied_as_audited(
        &state,
        &s,
        AuditAction::MemberRemove,
        id,
        &meta,
        state.store.remove_member(s.actor, id, user, meta.clone()).await,
    )
    .await?;
    state.publish(f).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Paging of messages: at most one of `after` and `before`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct MessageListQuery {
    /// Messages with a greater sequence (oldest first).
    after: Option<i64>,
    /// Messages with a smaller sequence.
    before: Option<i64>,
    /// Page size, 1 to 200.
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
}

/// A page of messages in sequence order; without `after` or `before`, the newest page.
/// Every read is audited.
#[utoipa::path(get, path = "/api/v1/conversations/{conversation_id}/messages", tag = "messages", security(("bearer" = [])),
    params(("conversation_id" = ConversationId, Path), MessageListQuery),
    responses((status = 200, body = MessagePage), (status = 400, body = Problem), (status = 404, body = Problem)))]
async fn list_messages(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Path(id): Path<ConversationId>,
    Query(q): Query<MessageListQuery>,
) -> ApiResult<Json<MessagePage>> {
    super::policies::require_acknowledged(&state, &s, &meta).await?;
    let limit = PageLimit::parse(q.limit)?;
    let page = match (q.after, q.before) {
        (None, None) => Page::Latest,
        (Some(a), None) if a >= 0 => Page::After(a),
        (None, Some(b)) if b >= 1 => Page::Before(b),
        (Some(_), Some(_)) => return Err(ApiError::invalid_parameter().detail("give after or before, not both")),
        _ => return Err(ApiError::invalid_parameter().detail("after must be at least 0 and before at least 1")),
    };
    let mut msgs = state.store.messages(s.actor, id, page, limit.get(), meta).await?;
    msgs.sort_by_key(|m| m.seq);
    let before_cursor = msgs.first().map(|m| m.seq).filter(|&s| s > 1);
    let after_cursor = msgs.last().map(|m| m.seq).or(match page {
        Page::After(a) => Some(a),
        _ => None,
    });
    let withheld = super::devices::phi_withheld(&state, &s).await?;
    let items = msgs.into_iter().map(|m| shown(m.into(), withheld.as_ref())).collect();
    Ok(Json(MessagePage { items, before_cursor, after_cursor }))
}

/// Sends a message. Retrying with the same `client_txn_id` returns the first message (200)
/// instead of creating another; the same id with different content is a conflict.
#[utoipa::path(post, path = "/api/v1/conversations/{conversation_id}/messages", tag = "messages", security(("bearer" = [])),
    params(("conversation_id" = ConversationId, Path)), request_body = SendMessageRequest,
    responses((status = 201, body = MessageView), (status = 200, body = MessageView), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 413, body = Problem), (status = 422, body = Problem)))]
async fn send_message(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Path(id): Path<ConversationId>,
    Json(req): Json<SendMessageRequest>,
) -> ApiResult<(StatusCode, Json<MessageView>)> {
    super::policies::require_acknowledged(&state, &s, &meta).await?;
    if req.attachments.len() > ward_store::MAX_ATTACHMENTS_PER_MESSAGE {
        return Err(ApiError::validation_failed().detail("a message refers to at most 10 attachments"));
    }
    let new = NewMessage {
        conversation_id: id,
        client_txn_id: ClientTxnId::parse(req.client_txn_id)?,
        body: MessageText::parse(req.body)?,
        priority: req.priority,
        corrects: req.corrects,
        attachments: req.attachments,
    };
    let sent = denied_as_audited(
        &state,
        &s,
        AuditAction::MessageSend,
        id,
        &meta,
        state.store.send_message(s.actor, s.device, new, meta.clone()).await,
    )
    .await?;
    let status = if sent.created { StatusCode::CREATED } else { StatusCode::OK };
    if let Some(f) = sent.event {
        state.metrics.messages_sent.inc();
        state.publish(f).await;
    }
    Ok((status, Json(sent.message.into())))
}

/// One message (audited read).
#[utoipa::path(get, path = "/api/v1/conversations/{conversation_id}/messages/{message_id}", tag = "messages", security(("bearer" = [])),
    params(("conversation_id" = ConversationId, Path), ("message_id" = MessageId, Path)),
    responses((status = 200, body = MessageView), (status = 404, body = Problem)))]
async fn get_message(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Path((id, msg)): Path<(ConversationId, MessageId)>,
) -> ApiResult<Json<MessageView>> {
    super::policies::require_acknowledged(&state, &s, &meta).await?;
    let m = state.store.message(s.actor, id, msg, meta).await?;
    let withheld = super::devices::phi_withheld(&state, &s).await?;
    Ok(Json(shown(m.into(), withheld.as_ref())))
}

/// A message as the session's device may see it: without content while the organisation's
/// posture policy blocks the device from PHI.
fn shown(m: MessageView, withheld: Option<&super::dto::PhiWithheld>) -> MessageView {
    match withheld {
        Some(notice) => m.withhold(notice),
        None => m,
    }
}

/// Recalls a message (sender only): its text disappears for every member; the record stays
/// for retention and legal hold.
#[utoipa::path(post, path = "/api/v1/conversations/{conversation_id}/messages/{message_id}/recall", tag = "messages",
    security(("bearer" = [])), params(("conversation_id" = ConversationId, Path), ("message_id" = MessageId, Path)),
    responses((status = 200, body = MessageView), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn recall_message(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Path((id, msg)): Path<(ConversationId, MessageId)>,
) -> ApiResult<Json<MessageView>> {
    let f = denied_as_audited(&state, &s, AuditAction::MessageRecall, id, &meta, state.store.recall(s.actor, id, msg, meta.clone()).await)
        .await?;
    if let Some(f) = f {
        state.publish(f).await;
    }
    let m = state.store.message(s.actor, id, msg, meta).await?;
    let withheld = super::devices::phi_withheld(&state, &s).await?;
    Ok(Json(shown(m.into(), withheld.as_ref())))
}

/// Moves the caller's delivered or read watermark forward (never back).
#[utoipa::path(post, path = "/api/v1/conversations/{conversation_id}/receipts", tag = "messages", security(("bearer" = [])),
    params(("conversation_id" = ConversationId, Path)), request_body = ReceiptRequest,
    responses((status = 204), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn post_receipt(
    State(state): State<AppState>,
    s: Auth,
    Path(id): Path<ConversationId>,
    Json(req): Json<ReceiptRequest>,
) -> ApiResult<StatusCode> {
    if let Some(f) = state.store.receipt(s.actor, id, req.kind, req.up_to_seq).await? {
        state.publish(f).await;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Passes a store result through, auditing a not-found answer as a denied access attempt.
pub(crate) async fn denied_as_audited<T>(
    state: &AppState,
    s: &Auth,
    action: AuditAction,
    conv: ConversationId,
    meta: &ward_store::RequestMeta,
    result: Result<T, StoreError>,
) -> ApiResult<T> {
    match result {
        Err(StoreError::NotFound) => {
            state.store.record_denied(s.actor, action, conv, meta.clone()).await?;
            Err(ApiError::not_found())
        }
        other => other.map_err(Into::into),
    }
}
