//! Organisation policies and their acknowledgment (HIPAA 164.316 policies and documentation,
//! 164.308(a)(5) security awareness): `/api/v1/policies/...` and
//! `/api/v1/me/policy-acknowledgments`.
//!
//! Admins and compliance officers publish policies (device checklist, BYOD agreement granting
//! remote-wipe authority, acceptable use, other); each publish is a new version everyone must
//! acknowledge again. Every user reads and acknowledges; the report lists who has not. When
//! the organisation requires it, a workforce user with an unacknowledged current policy gets
//! `403 policy_acknowledgment_required` on PHI-bearing endpoints, and the stream withholds
//! message content (docs/compliance-registers.md).

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use ward_domain::audit::{AuditAction, AuditEvent, DetailValue, Outcome};
use ward_domain::ids::{PolicyId, UserId};
use ward_domain::policy;
use ward_domain::registers::{PolicyDraft, PolicyKind};
use ward_store::{Policy, RequestMeta};

use super::dto::ts;
use crate::app::AppState;
use crate::auth::{AnySession, Auth, Meta};
use crate::extract::{Json, Path};
use crate::problem::{ApiError, ApiResult, Problem};

pub(crate) fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(list_policies, create_policy))
        .routes(utoipa_axum::routes!(acknowledgment_report))
        .routes(utoipa_axum::routes!(get_policy))
        .routes(utoipa_axum::routes!(publish_version))
        .routes(utoipa_axum::routes!(acknowledge))
        .routes(utoipa_axum::routes!(put_acknowledgment_setting))
}

/// A policy at its current version.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct PolicyView {
    id: PolicyId,
    kind: PolicyKind,
    /// The current version: acknowledge this one.
    version: i64,
    title: String,
    /// The full text (only when one policy is asked for).
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    /// When the current version was published (RFC 3339).
    published_at: String,
    /// When the caller acknowledged the current version (RFC 3339), if they did.
    acknowledged_at: Option<String>,
}

fn view(p: Policy, with_text: bool) -> PolicyView {
    PolicyView {
        id: p.id,
        kind: p.kind,
        version: p.version,
        title: p.title,
        text: with_text.then_some(p.text),
        published_at: ts(p.published_at),
        acknowledged_at: p.acknowledged_at.map(ts),
    }
}

/// The organisation's policies.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct PolicyList {
    /// Whether every current policy must be acknowledged before PHI access.
    require_acknowledgment_before_phi: bool,
    /// In publication order.
    items: Vec<PolicyView>,
}

/// A new policy.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewPolicyRequest {
    kind: PolicyKind,
    /// One line, at most 200 characters.
    title: String,
    /// The full text, at most 100,000 characters.
    text: String,
}

/// A new version of a policy.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PolicyVersionRequest {
    /// One line, at most 200 characters.
    title: String,
    /// The full text, at most 100,000 characters.
    text: String,
}

/// An acknowledgment of the version the user read.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AcknowledgeRequest {
    policy_id: PolicyId,
    /// The version read; it must still be the current one.
    version: i64,
}

/// The organisation's acknowledgment requirement.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AcknowledgmentSetting {
    /// When true, workforce users must acknowledge every current policy before PHI access.
    require_before_phi: bool,
}

/// A user who has not acknowledged a policy's current version.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct PendingUser {
    user_id: UserId,
    login: String,
}

/// One policy's acknowledgment status.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct PolicyAcknowledgmentStatus {
    policy_id: PolicyId,
    kind: PolicyKind,
    version: i64,
    title: String,
    /// Active workforce users.
    users: i64,
    /// How many of them acknowledged the current version.
    acknowledged: i64,
    /// Those who have not, by login.
    pending: Vec<PendingUser>,
}

/// Who has not acknowledged each current policy.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AcknowledgmentReport {
    items: Vec<PolicyAcknowledgmentStatus>,
}

fn actor_event(s: &Auth, action: AuditAction, outcome: Outcome) -> AuditEvent {
    let mut ev = AuditEvent::new(action, outcome);
    ev.org_id = Some(s.actor.org_id);
    ev.actor = Some(s.actor.user_id);
    ev.device = Some(s.device);
    ev
}

/// The role check of managing operations; a refusal is audited.
async fn may_manage(state: &AppState, s: &Auth, action: AuditAction, meta: &RequestMeta) -> ApiResult<()> {
    if let Err(d) = policy::may_manage_compliance_registers(&s.actor) {
        state.store.record(actor_event(s, action, Outcome::Denied).detail("reason", DetailValue::Code("role")), meta.clone()).await?;
        return Err(d.into());
    }
    Ok(())
}

/// A refused draft is audited (the rule broken, never the text).
async fn draft(state: &AppState, s: &Auth, title: &str, text: &str, meta: &RequestMeta) -> ApiResult<PolicyDraft> {
    match PolicyDraft::parse(title, text) {
        Ok(d) => Ok(d),
        Err(e) => {
            let ev = actor_event(s, AuditAction::PolicyPublish, Outcome::Failure).detail("reason", DetailValue::Code("invalid_policy"));
            state.store.record(ev, meta.clone()).await?;
            Err(e.into())
        }
    }
}

/// Refuses PHI to a workforce user who has not acknowledged every current policy while the
/// organisation requires it (`403 policy_acknowledgment_required`, audited). Patients are not
/// asked to acknowledge workforce policies.
pub(crate) async fn require_acknowledged(state: &AppState, s: &AnySession, meta: &RequestMeta) -> ApiResult<()> {
    if !s.actor.role.is_workforce() {
        return Ok(());
    }
    let pending = state.store.policies_blocking_phi(s.actor.org_id, s.actor.user_id).await?;
    if pending == 0 {
        return Ok(());
    }
    let mut ev = AuditEvent::new(AuditAction::PolicyAcknowledgmentRequired, Outcome::Denied).detail("pending", DetailValue::Int(pending));
    ev.org_id = Some(s.actor.org_id);
    ev.actor = Some(s.actor.user_id);
    ev.device = Some(s.device);
    state.store.record(ev, meta.clone()).await?;
    Err(ApiError::policy_acknowledgment_required()
        .detail(format!("acknowledge the organisation's current policies first ({pending} pending): see GET /api/v1/policies")))
}

/// Whether the session's user must still acknowledge policies before PHI (no audit: used to
/// withhold content on the stream).
pub(crate) async fn acknowledgment_pending(state: &AppState, s: &AnySession) -> ApiResult<bool> {
    Ok(s.actor.role.is_workforce() && state.store.policies_blocking_phi(s.actor.org_id, s.actor.user_id).await? > 0)
}

/// The organisation's policies at their current versions, with the caller's acknowledgment
/// (everyone).
#[utoipa::path(get, path = "/api/v1/policies", tag = "policies", security(("bearer" = [])),
    responses((status = 200, body = PolicyList), (status = 401, body = Problem)))]
async fn list_policies(State(state): State<AppState>, s: Auth) -> ApiResult<Json<PolicyList>> {
    let items = state.store.policies(s.actor.org_id, s.actor.user_id).await?;
    Ok(Json(PolicyList {
        require_acknowledgment_before_phi: state.store.policy_acknowledgment_required(s.actor.org_id).await?,
        items: items.into_iter().map(|p| view(p, false)).collect(),
    }))
}

/// Publishes a new policy at version 1 (admins and compliance officers; audited with kind and
/// version, never the text).
#[utoipa::path(post, path = "/api/v1/policies", tag = "policies", security(("bearer" = [])), request_body = NewPolicyRequest,
    responses((status = 201, body = PolicyView), (status = 400, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn create_policy(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Json(req): Json<NewPolicyRequest>,
) -> ApiResult<(StatusCode, Json<PolicyView>)> {
    may_manage(&state, &s, AuditAction::PolicyPublish, &meta).await?;
    let d = draft(&state, &s, &req.title, &req.text, &meta).await?;
    let p = state.store.publish_policy(s.actor.org_id, Some(s.actor.user_id), None, Some(req.kind), d, meta).await?;
    Ok((StatusCode::CREATED, Json(view(p, true))))
}

/// One policy at its current version, with its text and the caller's acknowledgment
/// (everyone).
#[utoipa::path(get, path = "/api/v1/policies/{policy_id}", tag = "policies", security(("bearer" = [])),
    params(("policy_id" = PolicyId, Path)), responses((status = 200, body = PolicyView), (status = 404, body = Problem)))]
async fn get_policy(State(state): State<AppState>, s: Auth, Path(id): Path<PolicyId>) -> ApiResult<Json<PolicyView>> {
    Ok(Json(view(state.store.policy(s.actor.org_id, id, s.actor.user_id).await?, true)))
}

/// Publishes a new version of a policy: everyone must acknowledge it again (admins and
/// compliance officers; audited).
#[utoipa::path(post, path = "/api/v1/policies/{policy_id}/versions", tag = "policies", security(("bearer" = [])),
    params(("policy_id" = PolicyId, Path)), request_body = PolicyVersionRequest,
    responses((status = 201, body = PolicyView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn publish_version(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Path(id): Path<PolicyId>,
    Json(req): Json<PolicyVersionRequest>,
) -> ApiResult<(StatusCode, Json<PolicyView>)> {
    may_manage(&state, &s, AuditAction::PolicyPublish, &meta).await?;
    let d = draft(&state, &s, &req.title, &req.text, &meta).await?;
    let p = state.store.publish_policy(s.actor.org_id, Some(s.actor.user_id), Some(id), None, d, meta).await?;
    Ok((StatusCode::CREATED, Json(view(p, true))))
}

/// Acknowledges the current version of a policy (everyone). A version that is no longer
/// current answers `409 invalid_state` (read it again); acknowledging twice changes nothing.
#[utoipa::path(post, path = "/api/v1/me/policy-acknowledgments", tag = "policies", security(("bearer" = [])),
    request_body = AcknowledgeRequest,
    responses((status = 200, body = PolicyView), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn acknowledge(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Json(req): Json<AcknowledgeRequest>,
) -> ApiResult<Json<PolicyView>> {
    match state.store.acknowledge_policy(s.actor.org_id, s.actor.user_id, req.policy_id, req.version, meta.clone()).await {
        Ok(p) => Ok(Json(view(p, false))),
        Err(ward_store::StoreError::State(why)) => {
            let ev = actor_event(&s, AuditAction::PolicyAcknowledge, Outcome::Failure)
                .target("policy", req.policy_id)
                .detail("version", DetailValue::Int(req.version))
                .detail("reason", DetailValue::Code("not_current"));
            state.store.record(ev, meta).await?;
            Err(ApiError::invalid_state().detail(why))
        }
        Err(e) => Err(e.into()),
    }
}

/// For each current policy, the active workforce users who have not acknowledged it (admins
/// and compliance officers).
#[utoipa::path(get, path = "/api/v1/policies/acknowledgment-report", tag = "policies", security(("bearer" = [])),
    responses((status = 200, body = AcknowledgmentReport), (status = 403, body = Problem)))]
async fn acknowledgment_report(State(state): State<AppState>, Meta(meta): Meta, s: Auth) -> ApiResult<Json<AcknowledgmentReport>> {
    may_manage(&state, &s, AuditAction::PolicyAcknowledge, &meta).await?;
    Ok(Json(ack_report(state.store.acknowledgment_report(s.actor.org_id).await?)))
}

/// The acknowledgment report as the API and the evidence bundle show it.
pub(crate) fn ack_report(gaps: Vec<ward_store::AcknowledgmentGap>) -> AcknowledgmentReport {
    let items = gaps
        .into_iter()
        .map(|g| PolicyAcknowledgmentStatus {
            policy_id: g.policy_id,
            kind: g.kind,
            version: g.version,
            title: g.title,
            users: g.users,
            acknowledged: g.users - g.pending.len() as i64,
            pending: g.pending.into_iter().map(|(user_id, login)| PendingUser { user_id, login }).collect(),
        })
        .collect();
    AcknowledgmentReport { items }
}

/// Turns the "acknowledge every current policy before PHI access" requirement on or off
/// (admins and compliance officers; audited).
#[utoipa::path(put, path = "/api/v1/org/policy-acknowledgment", tag = "policies", security(("bearer" = [])),
    request_body = AcknowledgmentSetting,
    responses((status = 200, body = AcknowledgmentSetting), (status = 400, body = Problem), (status = 403, body = Problem)))]
async fn put_acknowledgment_setting(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Json(req): Json<AcknowledgmentSetting>,
) -> ApiResult<Json<AcknowledgmentSetting>> {
    may_manage(&state, &s, AuditAction::PolicySettings, &meta).await?;
    state.store.set_policy_acknowledgment_required(s.actor.org_id, s.actor.user_id, req.require_before_phi, meta).await?;
    Ok(Json(AcknowledgmentSetting { require_before_phi: req.require_before_phi }))
}
