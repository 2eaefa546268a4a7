//! The business associate (BAA) vendor register (HIPAA 164.308(b)(1) business associate
//! contracts): `/api/v1/baa-vendors`, kept by admins and compliance officers. Each entry is
//! listed with its expiry classification; a periodic check raises the `baa_expiring` alert to
//! compliance officers before (and when) an agreement lapses (docs/compliance-registers.md).

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use ward_domain::audit::{AuditAction, AuditEvent, DetailValue, Outcome};
use ward_domain::ids::{UserId, VendorId};
use ward_domain::policy;
use ward_domain::registers::{BAA_WARN_DAYS, BaaExpiry, BaaStatus, VendorDraft, classify_baa};
use ward_store::{RequestMeta, StoreError, Vendor, now_ms};

use super::dto::ts;
use crate::app::AppState;
use crate::auth::{Auth, Meta};
use crate::extract::{Json, Path};
use crate::problem::{ApiError, ApiResult, Problem};

pub(crate) fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(list_vendors, create_vendor))
        .routes(utoipa_axum::routes!(update_vendor, delete_vendor))
}

/// A vendor entry to store.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct VendorRequest {
    /// The vendor's name (one line, at most 200 characters).
    vendor: String,
    /// What it does for the organisation (at most 2,000 characters).
    services: String,
    /// What data it receives (at most 2,000 characters).
    data_shared: String,
    baa_status: BaaStatus,
    /// `YYYY-MM-DD`; required when signed.
    signed_on: Option<String>,
    /// `YYYY-MM-DD`; not before `signed_on`.
    renewal_on: Option<String>,
    /// The workforce user who owns the relationship.
    owner: Option<UserId>,
}

/// A vendor in the register.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct VendorView {
    id: VendorId,
    vendor: String,
    services: String,
    data_shared: String,
    baa_status: BaaStatus,
    signed_on: Option<String>,
    renewal_on: Option<String>,
    owner: Option<UserId>,
    /// Against today: `active`, `expiring_soon` (renewal within 60 days), `expired` or
    /// `not_in_force` (not signed).
    expiry: BaaExpiry,
    /// RFC 3339.
    updated_at: String,
}

/// The register.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct VendorList {
    /// By vendor name.
    items: Vec<VendorView>,
}

/// Today's date (UTC) as `YYYY-MM-DD`, what the registers' dates compare with.
pub(crate) fn today() -> String {
    ts(now_ms()).get(..10).unwrap_or_default().to_owned()
}

pub(crate) fn view(v: Vendor, today: &str) -> VendorView {
    VendorView {
        id: v.id,
        expiry: classify_baa(v.baa_status, v.renewal_on.as_deref(), today, BAA_WARN_DAYS),
        vendor: v.name,
        services: v.services,
        data_shared: v.data_shared,
        baa_status: v.baa_status,
        signed_on: v.signed_on,
        renewal_on: v.renewal_on,
        owner: v.owner_id,
        updated_at: ts(v.updated_at),
    }
}

fn actor_event(s: &Auth, outcome: Outcome, reason: &'static str) -> AuditEvent {
    register_event(s, AuditAction::VendorChange, outcome, reason)
}

/// A register's refusal or failure event: the acting user and device, the reason code.
pub(super) fn register_event(s: &Auth, action: AuditAction, outcome: Outcome, reason: &'static str) -> AuditEvent {
    let mut ev = AuditEvent::new(action, outcome).detail("reason", DetailValue::Code(reason));
    ev.org_id = Some(s.actor.org_id);
    ev.actor = Some(s.actor.user_id);
    ev.device = Some(s.device);
    ev
}

async fn may_manage(state: &AppState, s: &Auth, meta: &RequestMeta) -> ApiResult<()> {
    may_manage_register(state, s, AuditAction::VendorChange, meta).await
}

/// The registers' role check (admins and compliance officers); a refusal is audited as `action`.
pub(super) async fn may_manage_register(state: &AppState, s: &Auth, action: AuditAction, meta: &RequestMeta) -> ApiResult<()> {
    if let Err(d) = policy::may_manage_compliance_registers(&s.actor) {
        state.store.record(register_event(s, action, Outcome::Denied, "role"), meta.clone()).await?;
        return Err(d.into());
    }
    Ok(())
}

/// Validates an entry; a refusal is audited (the rule broken, never a value).
async fn draft(state: &AppState, s: &Auth, r: &VendorRequest, meta: &RequestMeta) -> ApiResult<VendorDraft> {
    match VendorDraft::parse(&r.vendor, &r.services, &r.data_shared, r.baa_status, r.signed_on.as_deref(), r.renewal_on.as_deref()) {
        Ok(d) => Ok(d),
        Err(e) => {
            state.store.record(actor_event(s, Outcome::Failure, "invalid_vendor"), meta.clone()).await?;
            Err(e.into())
        }
    }
}

/// A store refusal of a register entry (an unknown owner, say) as a validation error.
pub(super) fn stored(e: StoreError) -> ApiError {
    match e {
        StoreError::State(why) => ApiError::validation_failed().detail(why),
        other => other.into(),
    }
}

/// The register, each entry with its expiry classification (admins and compliance officers).
#[utoipa::path(get, path = "/api/v1/baa-vendors", tag = "registers", security(("bearer" = [])),
    responses((status = 200, body = VendorList), (status = 403, body = Problem)))]
async fn list_vendors(State(state): State<AppState>, Meta(meta): Meta, s: Auth) -> ApiResult<Json<VendorList>> {
    may_manage(&state, &s, &meta).await?;
    let today = today();
    Ok(Json(VendorList { items: state.store.vendors(s.actor.org_id).await?.into_iter().map(|v| view(v, &today)).collect() }))
}

/// Adds a vendor (admins and compliance officers; audited with codes only).
#[utoipa::path(post, path = "/api/v1/baa-vendors", tag = "registers", security(("bearer" = [])), request_body = VendorRequest,
    responses((status = 201, body = VendorView), (status = 400, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn create_vendor(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Json(req): Json<VendorRequest>,
) -> ApiResult<(StatusCode, Json<VendorView>)> {
    may_manage(&state, &s, &meta).await?;
    let d = draft(&state, &s, &req, &meta).await?;
    let v = state.store.create_vendor(s.actor.org_id, s.actor.user_id, d, req.owner, meta).await.map_err(stored)?;
    Ok((StatusCode::CREATED, Json(view(v, &today()))))
}

/// Replaces a vendor's entry; a new renewal date re-arms the expiry alerts (admins and
/// compliance officers; audited).
#[utoipa::path(put, path = "/api/v1/baa-vendors/{vendor_id}", tag = "registers", security(("bearer" = [])),
    params(("vendor_id" = VendorId, Path)), request_body = VendorRequest,
    responses((status = 200, body = VendorView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn update_vendor(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Path(id): Path<VendorId>,
    Json(req): Json<VendorRequest>,
) -> ApiResult<Json<VendorView>> {
    may_manage(&state, &s, &meta).await?;
    let d = draft(&state, &s, &req, &meta).await?;
    let v = state.store.update_vendor(s.actor.org_id, s.actor.user_id, id, d, req.owner, meta).await.map_err(stored)?;
    Ok(Json(view(v, &today())))
}

/// Removes a vendor (admins and compliance officers; audited).
#[utoipa::path(delete, path = "/api/v1/baa-vendors/{vendor_id}", tag = "registers", security(("bearer" = [])),
    params(("vendor_id" = VendorId, Path)), responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn delete_vendor(State(state): State<AppState>, Meta(meta): Meta, s: Auth, Path(id): Path<VendorId>) -> ApiResult<StatusCode> {
    may_manage(&state, &s, &meta).await?;
    state.store.delete_vendor(s.actor.org_id, s.actor.user_id, id, meta).await?;
    Ok(StatusCode::NO_CONTENT)
}
