//! The audit log for compliance officers and admins: the latest signed checkpoint, inclusion
//! and consistency proofs against it, and a search over the organisation's events.
//! Serves 164.312(b) audit controls; every use (and every refused use) is itself audited.

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use ward_domain::audit::{AuditAction, AuditEvent, DetailValue, Outcome};
use ward_domain::ids::{PatientId, UserId};
use ward_domain::page::PageLimit;
use ward_domain::policy;
use ward_store::AuditQuery;

use crate::app::AppState;
use crate::auth::{Auth, Meta};
use crate::extract::{Json, Query};
use crate::problem::{ApiError, ApiResult, Problem};

pub(crate) fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(latest_checkpoint))
        .routes(utoipa_axum::routes!(verifier_key))
        .routes(utoipa_axum::routes!(inclusion_proof))
        .routes(utoipa_axum::routes!(consistency_proof))
        .routes(utoipa_axum::routes!(search_events))
}

/// Checks the role and records the access (or the refusal) before anything is answered.
pub(crate) async fn audited(state: &AppState, s: &Auth, meta: ward_store::RequestMeta, op: &'static str) -> ApiResult<()> {
    let allowed = policy::may_read_audit_log(&s.actor);
    let outcome = if allowed.is_ok() { Outcome::Success } else { Outcome::Denied };
    let mut ev = AuditEvent::new(AuditAction::AuditLogRead, outcome).detail("op", DetailValue::Code(op));
    ev.org_id = Some(s.actor.org_id);
    ev.actor = Some(s.actor.user_id);
    ev.device = Some(s.device);
    state.store.record(ev, meta).await?;
    allowed.map_err(ApiError::from)
}

/// The latest signed checkpoint.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct CheckpointView {
    /// The log's origin (first line of the note).
    pub(crate) origin: String,
    /// The tree size the checkpoint commits to.
    pub(crate) size: u64,
    /// The base64 RFC 9162 root hash at that size.
    pub(crate) root: String,
    /// The C2SP signed note, verbatim (verify it with the log's vkey).
    pub(crate) note: String,
}

/// The latest signed checkpoint: JSON, or the bare signed note with `Accept: text/plain`.
/// If none was signed yet, one is signed now.
#[utoipa::path(get, path = "/api/v1/audit/checkpoint", tag = "audit", security(("bearer" = [])),
    responses((status = 200, body = CheckpointView), (status = 403, body = Problem)))]
async fn latest_checkpoint(State(state): State<AppState>, Meta(meta): Meta, s: Auth, headers: HeaderMap) -> ApiResult<Response> {
    audited(&state, &s, meta, "checkpoint").await?;
    let cp = match state.store.latest_checkpoint().await? {
        Some(cp) => cp,
        None => state.audit.checkpoint_now().await?,
    };
    let wants_text = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/plain"));
    if wants_text {
        return Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], cp.note).into_response());
    }
    let root = cp.root()?.to_string();
    Ok(Json(CheckpointView { origin: state.audit.origin().to_owned(), size: cp.tree_size as u64, root, note: cp.note }).into_response())
}

/// The log's verifier key.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct VerifierKeyView {
    /// The log's origin (the key's name).
    pub(crate) origin: String,
    /// The C2SP note verifier key, `<name>+<8 hex key id>+<base64(0x01 || Ed25519 public key)>`,
    /// as `ward audit verify --vkey` takes it (the server writes the same line to
    /// `<data_dir>/audit/verifier.vkey`).
    pub(crate) vkey: String,
}

/// The verifier key of the log's checkpoints: public, read-only. A copy kept away from the
/// server is what makes a check meaningful; this one lets a page check a note's signature and
/// show the key for comparison with that copy.
#[utoipa::path(get, path = "/api/v1/audit/verifier-key", tag = "audit", security(("bearer" = [])),
    responses((status = 200, body = VerifierKeyView), (status = 403, body = Problem)))]
async fn verifier_key(State(state): State<AppState>, Meta(meta): Meta, s: Auth) -> ApiResult<Json<VerifierKeyView>> {
    audited(&state, &s, meta, "verifier_key").await?;
    Ok(Json(VerifierKeyView { origin: state.audit.origin().to_owned(), vkey: state.audit.verifier().to_string() }))
}

/// A proof: `{"leaf_index" | "old_size", "tree_size", "hashes": [base64…]}` as `ward_audit` defines.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ProofView {
    /// The leaf (inclusion proofs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) leaf_index: Option<u64>,
    /// The older tree size (consistency proofs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) old_size: Option<u64>,
    /// The tree size the proof is against.
    pub(crate) tree_size: u64,
    /// The proof hashes, base64.
    pub(crate) hashes: Vec<String>,
}

/// Parameters of an inclusion proof.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct InclusionQuery {
    /// The leaf (audit event index).
    index: u64,
    /// The tree size of a checkpoint (default: the latest checkpoint's).
    tree_size: Option<u64>,
}

/// Parameters of a consistency proof.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ConsistencyQuery {
    /// The older tree size.
    old_size: u64,
    /// The newer tree size (default: the latest checkpoint's).
    tree_size: Option<u64>,
}

/// The tree size to prove against: the one asked for, which must be integrated already
/// (integrating first if needed), or the latest checkpoint's.
async fn proof_size(state: &AppState, asked: Option<u64>) -> ApiResult<u64> {
    let size = match asked {
        Some(n) => n,
        None => state.store.latest_checkpoint().await?.map_or(0, |c| c.tree_size as u64),
    };
    if size > state.store.tree_size().await? && size > state.audit.integrate().await? {
        return Err(ApiError::validation_failed().detail("tree_size is larger than the log"));
    }
    Ok(size)
}

/// Fetches the nodes a proof plan names and folds them into the proof hashes.
async fn assemble(state: &AppState, plan: Result<ward_audit::ProofPlan, ward_audit::TreeError>) -> ApiResult<Vec<String>> {
    let plan = plan.map_err(|e| ApiError::validation_failed().detail(e.to_string()))?;
    let nodes = state.store.tree_node_hashes(plan.nodes()).await?;
    let hashes = plan.assemble(&nodes).map_err(ApiError::internal_cause)?;
    Ok(hashes.iter().map(ToString::to_string).collect())
}

/// The inclusion proof of one event in the tree of `tree_size` leaves.
#[utoipa::path(get, path = "/api/v1/audit/proofs/inclusion", tag = "audit", security(("bearer" = [])), params(InclusionQuery),
    responses((status = 200, body = ProofView), (status = 400, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn inclusion_proof(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Query(q): Query<InclusionQuery>,
) -> ApiResult<Json<ProofView>> {
    audited(&state, &s, meta, "inclusion_proof").await?;
    let size = proof_size(&state, q.tree_size).await?;
    if q.index >= size {
        return Err(ApiError::validation_failed().detail("index must be below tree_size"));
    }
    let hashes = assemble(&state, ward_audit::tree::inclusion_plan(q.index, size)).await?;
    Ok(Json(ProofView { leaf_index: Some(q.index), old_size: None, tree_size: size, hashes }))
}

/// The consistency proof between two tree sizes.
#[utoipa::path(get, path = "/api/v1/audit/proofs/consistency", tag = "audit", security(("bearer" = [])), params(ConsistencyQuery),
    responses((status = 200, body = ProofView), (status = 400, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn consistency_proof(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Query(q): Query<ConsistencyQuery>,
) -> ApiResult<Json<ProofView>> {
    audited(&state, &s, meta, "consistency_proof").await?;
    let size = proof_size(&state, q.tree_size).await?;
    if q.old_size > size {
        return Err(ApiError::validation_failed().detail("old_size must not exceed tree_size"));
    }
    let hashes = assemble(&state, ward_audit::tree::consistency_plan(q.old_size, size)).await?;
    Ok(Json(ProofView { leaf_index: None, old_size: Some(q.old_size), tree_size: size, hashes }))
}

/// Search criteria; all given ones must match.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct EventQuery {
    /// The acting user.
    actor: Option<UserId>,
    /// The patient involved (opaque id).
    patient: Option<PatientId>,
    /// A dotted action name, e.g. `message.read`.
    action: Option<String>,
    /// `success`, `failure` or `denied`.
    outcome: Option<String>,
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

/// One audit event as served, with its leaf hash.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AuditEventView {
    /// Index in the log (the leaf index).
    pub(crate) idx: i64,
    /// Unix milliseconds.
    pub(crate) occurred_at: i64,
    /// Acting user.
    pub(crate) actor_user_id: Option<uuid::Uuid>,
    /// Acting device.
    pub(crate) actor_device_id: Option<uuid::Uuid>,
    /// Dotted action name.
    pub(crate) action: String,
    /// success, failure or denied.
    pub(crate) outcome: String,
    /// Kind of record acted on.
    pub(crate) target_type: Option<String>,
    /// Id of the record acted on.
    pub(crate) target_id: Option<String>,
    /// Patient involved (opaque id).
    pub(crate) patient_id: Option<uuid::Uuid>,
    /// Client address.
    pub(crate) source_ip: Option<String>,
    /// Request id.
    pub(crate) request_id: Option<String>,
    /// Codes and counts (a JSON object as text, exactly as hashed).
    pub(crate) detail: String,
    /// The base64 leaf hash (docs/audit-log.md).
    pub(crate) leaf_hash: String,
}

/// A page of audit events.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AuditEventPage {
    /// The events, by index.
    pub(crate) items: Vec<AuditEventView>,
    /// Pass as `after` for the next page; absent on the last page.
    pub(crate) next_cursor: Option<i64>,
    /// Entries below this index were archived past retention (`ward audit archive`) and are
    /// searched in their segment files, not here; 0 if none were. Their proofs still work.
    pub(crate) archived_before: u64,
}

/// The organisation's audit events, by index, with cursor paging.
#[utoipa::path(get, path = "/api/v1/audit/events", tag = "audit", security(("bearer" = [])), params(EventQuery),
    responses((status = 200, body = AuditEventPage), (status = 400, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn search_events(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Query(q): Query<EventQuery>,
) -> ApiResult<Json<AuditEventPage>> {
    audited(&state, &s, meta, "search").await?;
    let limit = PageLimit::parse(q.limit)?;
    if let Some(a) = &q.action
        && AuditAction::parse(a).is_none()
    {
        return Err(ApiError::validation_failed().detail("action is not a known audit action"));
    }
    if let Some(o) = &q.outcome
        && !matches!(o.as_str(), "success" | "failure" | "denied")
    {
        return Err(ApiError::validation_failed().detail("outcome must be success, failure or denied"));
    }
    if q.after.is_some_and(|a| a < -1) || matches!((q.from, q.to), (Some(f), Some(t)) if f > t) {
        return Err(ApiError::validation_failed().detail("after must not be negative and from must not be after to"));
    }
    let query = AuditQuery {
        actor: q.actor.map(|u| u.0),
        patient: q.patient.map(|p| p.0),
        action: q.action,
        outcome: q.outcome,
        from: q.from,
        to: q.to,
        after: q.after,
    };
    let rows = state.store.search_audit(s.actor.org_id, query, i64::from(limit.get())).await?;
    let next_cursor = if rows.len() == limit.get() as usize { rows.last().map(|r| r.idx) } else { None };
    let items = rows
        .into_iter()
        .map(|r| {
            let leaf_hash = r.leaf().leaf_hash().to_string();
            AuditEventView {
                idx: r.idx,
                occurred_at: r.occurred_at,
                actor_user_id: r.actor_user_id,
                actor_device_id: r.actor_device_id,
                action: r.action,
                outcome: r.outcome,
                target_type: r.target_type,
                target_id: r.target_id,
                patient_id: r.patient_id,
                source_ip: r.source_ip,
                request_id: r.request_id,
                detail: r.detail,
                leaf_hash,
            }
        })
        .collect();
    let archived_before = state.store.audit_archived_end().await?;
    Ok(Json(AuditEventPage { items, next_cursor, archived_before }))
}
