//! Forwarding a message into another conversation, and patient authorizations
//! (docs/forwarding.md). Forwarding a patient's message to anyone outside the
//! patient's care team is a disclosure (HIPAA 164.502(b), 164.528): it needs a permitted purpose
//! (treatment, payment, operations) or a recorded patient authorization (164.508), and is
//! audited as `message.forward`, one event per recipient, which the patient's accounting of
//! disclosures lists.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use ward_domain::audit::{AuditAction, AuditEvent, DetailValue, Outcome};
use ward_domain::break_glass::ReasonText;
use ward_domain::conversation::{ClientTxnId, DisclosurePurpose};
use ward_domain::ids::{ConversationId, MessageId, PatientId, UserId};
use ward_domain::policy::Denial;
use ward_store::{ForwardBasis, StoreError};

use super::conversations::denied_as_audited;
use super::dto::{MessageView, ts};
use crate::app::AppState;
use crate::auth::{Auth, Meta};
use crate::extract::{Json, Path};
use crate::problem::{ApiError, ApiResult, Problem};

pub(crate) fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(forward_message))
        .routes(utoipa_axum::routes!(record_authorization))
}

/// A forward.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ForwardRequest {
    /// The conversation to forward into (the caller must be a member).
    pub(crate) target_conversation_id: ConversationId,
    /// Client-chosen id; retrying with the same id never forwards twice.
    pub(crate) client_txn_id: String,
    /// A note to put above the forwarded text.
    pub(crate) note: Option<String>,
    /// The permitted purpose, when a patient's message reaches anyone outside the care team.
    pub(crate) purpose: Option<DisclosurePurpose>,
    /// Or a recorded patient authorization (`POST /api/v1/patients/{id}/authorizations`).
    pub(crate) authorization_id: Option<uuid::Uuid>,
}

/// What a forward produced.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ForwardedView {
    /// The new message in the target conversation (attachments are not forwarded).
    pub(crate) message: MessageView,
    /// The message it copies.
    pub(crate) forwarded_from: MessageId,
}

/// Forwards a message into another conversation as a new message headed "Forwarded from
/// <sender>", linked to the source. A patient's message reaching anyone outside the patient's
/// care team (or any conversation other than the patient's own) needs `purpose` or
/// `authorization_id` (else 422 `disclosure_purpose_required`); each such recipient is recorded
/// in the patient's accounting of disclosures. Attachments are not forwarded.
#[utoipa::path(post, path = "/api/v1/conversations/{conversation_id}/messages/{message_id}/forward", tag = "messages",
    security(("bearer" = [])), params(("conversation_id" = ConversationId, Path), ("message_id" = MessageId, Path)),
    request_body = ForwardRequest,
    responses((status = 201, body = ForwardedView), (status = 200, body = ForwardedView), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn forward_message(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Path((id, msg)): Path<(ConversationId, MessageId)>,
    Json(req): Json<ForwardRequest>,
) -> ApiResult<(StatusCode, Json<ForwardedView>)> {
    // Forwarding copies content through the device: a device blocked from PHI may not.
    super::devices::require_phi_allowed(&state, &s, &meta).await?;
    let basis = match (req.purpose, req.authorization_id) {
        (Some(p), None) => Some(ForwardBasis::Purpose(p)),
        (None, Some(a)) => Some(ForwardBasis::Authorization(a)),
        (None, None) => None,
        (Some(_), Some(_)) => return Err(ApiError::validation_failed().detail("give purpose or authorization_id, not both")),
    };
    if let Some(n) = &req.note
        && n.len() > 4096
    {
        return Err(ApiError::validation_failed().detail("note must be at most 4096 bytes"));
    }
    let client_txn_id = ClientTxnId::parse(req.client_txn_id)?;
    let result = state
        .store
        .forward_message(s.actor, s.device, id, msg, req.target_conversation_id, client_txn_id, req.note.clone(), basis, meta.clone())
        .await;
    // A forward refused for want of a valid basis is an attempted disclosure: audited.
    if let Err(StoreError::Denied(d @ (Denial::DisclosurePurposeRequired | Denial::AuthorizationNotValid))) = &result {
        let code = if *d == Denial::DisclosurePurposeRequired { "purpose_required" } else { "authorization_not_valid" };
        let mut ev = AuditEvent::new(AuditAction::MessageForward, Outcome::Denied)
            .target("message", msg)
            .detail("conversation", DetailValue::Id(req.target_conversation_id.0))
            .detail("reason", DetailValue::Code(code));
        ev.org_id = Some(s.actor.org_id);
        ev.actor = Some(s.actor.user_id);
        ev.device = Some(s.device);
        state.store.record(ev, meta.clone()).await?;
    }
    let fwd = denied_as_audited(&state, &s, AuditAction::MessageForward, id, &meta, result).await?;
    let status = if fwd.sent.created { StatusCode::CREATED } else { StatusCode::OK };
    if let Some(f) = fwd.sent.event {
        state.metrics.messages_sent.inc();
        state.publish(f).await;
    }
    Ok((status, Json(ForwardedView { message: fwd.sent.message.into(), forwarded_from: fwd.source })))
}

/// A patient's authorization to disclose their information.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuthorizationRequest {
    /// Who may receive the information, as on the signed form (stored sealed, never audited).
    pub(crate) recipient: String,
    /// For what, as on the signed form (stored sealed, never audited).
    pub(crate) purpose: String,
    /// When the authorization expires (RFC 3339, in the future).
    pub(crate) expires_at: String,
}

/// A recorded authorization (its texts are not returned).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AuthorizationView {
    /// Id, to give as `authorization_id` when forwarding.
    pub(crate) id: uuid::Uuid,
    /// The patient.
    pub(crate) patient_id: PatientId,
    /// When it expires.
    pub(crate) expires_at: String,
    /// Who recorded it.
    pub(crate) recorded_by: UserId,
    /// When.
    pub(crate) recorded_at: String,
}

/// Records a patient's signed authorization (HIPAA 164.508) to disclose their information to
/// a recipient for a purpose until a date: admins and the patient's care team (clinicians,
/// nurses, staff).
#[utoipa::path(post, path = "/api/v1/patients/{patient_id}/authorizations", tag = "patients", security(("bearer" = [])),
    params(("patient_id" = PatientId, Path)), request_body = AuthorizationRequest,
    responses((status = 201, body = AuthorizationView), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 422, body = Problem)))]
async fn record_authorization(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Path(patient): Path<PatientId>,
    Json(req): Json<AuthorizationRequest>,
) -> ApiResult<(StatusCode, Json<AuthorizationView>)> {
    let recorded = async {
        let recipient = ReasonText::parse("recipient", &req.recipient).map_err(|e| ("recipient", ApiError::from(e)))?;
        let purpose = ReasonText::parse("purpose", &req.purpose).map_err(|e| ("purpose", ApiError::from(e)))?;
        let expires = time::OffsetDateTime::parse(&req.expires_at, &Rfc3339)
            .map_err(|_| ("expires_at", ApiError::validation_failed().detail("expires_at must be an RFC 3339 time")))?;
        let expires_ms = i64::try_from(expires.unix_timestamp_nanos() / 1_000_000)
            .map_err(|_| ("expires_at", ApiError::validation_failed().detail("expires_at is out of range")))?;
        if expires_ms <= ward_store::now_ms() {
            return Err(("expires_at", ApiError::validation_failed().detail("expires_at must be in the future")));
        }
        state.store.record_authorization(s.actor, patient, recipient, purpose, expires_ms, meta.clone()).await.map_err(|e| match e {
            StoreError::NotFound => ("unknown_patient", ApiError::not_found().detail("no such patient in this organisation")),
            StoreError::Denied(d) => ("role", d.into()),
            StoreError::State(why) => ("expires_at", ApiError::validation_failed().detail(why)),
            other => ("", other.into()),
        })
    }
    .await;
    let a = match recorded {
        Ok(a) => a,
        // A store failure is not a refusal: nothing to audit.
        Err(("", err)) => return Err(err),
        // Refusals are audited with the reason code and the patient id only, never the texts.
        Err((reason, err)) => {
            let outcome = if matches!(reason, "role" | "unknown_patient") { Outcome::Denied } else { Outcome::Failure };
            let mut ev = AuditEvent::new(AuditAction::AuthorizationRecord, outcome)
                .target("patient", patient.0)
                .detail("reason", DetailValue::Code(reason));
            ev.org_id = Some(s.actor.org_id);
            ev.actor = Some(s.actor.user_id);
            ev.device = Some(s.device);
            state.store.record(ev, meta).await?;
            return Err(err);
        }
    };
    Ok((
        StatusCode::CREATED,
        Json(AuthorizationView {
            id: a.id,
            patient_id: a.patient_id,
            expires_at: ts(a.expires_at),
            recorded_by: a.recorded_by,
            recorded_at: ts(a.recorded_at),
        }),
    ))
}
