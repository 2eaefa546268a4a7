//! What escalation did for a conversation's urgent and STAT messages that stayed unread
//! (docs/notifications.md, "Escalation"): `GET /api/v1/conversations/{id}/escalations`. Ids,
//! steps, outcomes and counts only; who was told stays out, as in the audit log.

use axum::extract::State;
use serde::Serialize;
use ward_domain::ids::ConversationId;

use super::dto::ts;
use crate::app::AppState;
use crate::auth::{Auth, Meta};
use crate::extract::{Json, Path};
use crate::problem::{ApiError, ApiResult, Problem};

/// The newest steps listed per conversation.
const MAX_STEPS: i64 = 500;

pub(crate) fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new().routes(utoipa_axum::routes!(conversation_escalations))
}

/// One escalation step taken for a message.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct EscalationView {
    /// The message that stayed unread.
    pub(crate) message_id: uuid::Uuid,
    /// 1: its recipients were told again; 2: the patient's on-call care-team members were told.
    pub(crate) step: i64,
    /// `notified`, `no_one` (nobody to tell) or `no_device` (nobody told has a device).
    pub(crate) outcome: String,
    /// How many people the step addressed.
    pub(crate) people: i64,
    /// How many pushes it queued.
    pub(crate) devices: i64,
    /// When.
    pub(crate) at: String,
}

/// The escalation steps of the conversation's messages, oldest first (the newest 500).
/// Workforce members of the conversation only; others get 404 as for any conversation they
/// are not in, patients 403.
#[utoipa::path(get, path = "/api/v1/conversations/{conversation_id}/escalations", tag = "messages", security(("bearer" = [])),
    params(("conversation_id" = ConversationId, Path)),
    responses((status = 200, body = Vec<EscalationView>), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn conversation_escalations(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Path(id): Path<ConversationId>,
) -> ApiResult<Json<Vec<EscalationView>>> {
    if !s.actor.role.is_workforce() {
        return Err(ApiError::forbidden());
    }
    // Membership (and tenancy) as for reading the conversation itself.
    state.store.conversation(s.actor, id, meta).await?;
    let steps = state.store.conversation_escalations(s.actor.org_id, id, MAX_STEPS).await?;
    Ok(Json(
        steps
            .into_iter()
            .map(|e| EscalationView {
                message_id: e.message_id,
                step: e.step,
                outcome: e.outcome,
                people: e.people,
                devices: e.devices,
                at: ts(e.created_at),
            })
            .collect(),
    ))
}
