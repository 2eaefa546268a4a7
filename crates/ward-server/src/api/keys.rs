//! The key inventory for compliance officers and admins: which key provider protects the data
//! keys and its key-encryption key (KEK) versions. Ids and dates only, never key material;
//! the data-key counts are deployment-wide (other tenants'), so they stay with the operator's
//! `ward keys inventory`. KEKs are the deployment's too, so each is named by an opaque label
//! (a hash of the provider's id) rather than a KMS ARN (cloud account and region) or an HSM
//! label; `ward keys inventory` shows the operator both. Serves 164.312(a)(2)(iv) (encryption)
//! documentation; every read, and every refused read, is audited as `keys.inventory`.

use std::time::{Duration, Instant};

use axum::extract::State;
use serde::Serialize;
use ward_domain::audit::{AuditAction, AuditEvent, DetailValue, Outcome};
use ward_domain::policy;

use super::dto::ts;
use crate::app::AppState;
use crate::auth::{Auth, Meta};
use crate::extract::Json;
use crate::problem::{ApiError, ApiResult, Problem};

pub(crate) fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new().routes(utoipa_axum::routes!(key_inventory))
}

/// How long a listing is reused: listing a KMS walks the whole cloud account, and any officer
/// of any organisation may ask.
const CACHE_FOR: Duration = Duration::from_secs(60);

/// The last listing and when it was made.
#[derive(Default)]
pub(crate) struct InventoryCache(tokio::sync::Mutex<Option<(Instant, Vec<KekView>)>>);

/// One KEK version of the provider.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct KekView {
    /// An opaque label for this version: `kek-` and the first 12 hex digits of the SHA-256 of
    /// the provider's id for it (`ward keys inventory` prints both).
    pub(crate) kek_id: String,
    /// When it was created (RFC 3339), where the provider knows it.
    pub(crate) created_at: Option<String>,
    /// Whether new data keys are wrapped under it.
    pub(crate) current: bool,
}

/// The key inventory.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct KeyInventoryView {
    /// The key provider: `file`, `pkcs11` or `kms`.
    pub(crate) provider: &'static str,
    /// Every KEK version the provider holds, as it lists them.
    pub(crate) keks: Vec<KekView>,
}

/// The key provider and its KEK versions (compliance officers and admins; audited). No key
/// material, and no counts of data keys (those span the deployment's organisations).
#[utoipa::path(get, path = "/api/v1/keys", tag = "audit", security(("bearer" = [])),
    responses((status = 200, body = KeyInventoryView), (status = 401, body = Problem), (status = 403, body = Problem)))]
async fn key_inventory(State(state): State<AppState>, Meta(meta): Meta, s: Auth) -> ApiResult<Json<KeyInventoryView>> {
    let allowed = policy::may_read_audit_log(&s.actor);
    let outcome = if allowed.is_ok() { Outcome::Success } else { Outcome::Denied };
    let mut ev = AuditEvent::new(AuditAction::KeyInventory, outcome).detail("all", DetailValue::Bool(false));
    (ev.org_id, ev.actor, ev.device) = (Some(s.actor.org_id), Some(s.actor.user_id), Some(s.device));
    state.store.record(ev, meta).await?;
    allowed.map_err(ApiError::from)?;
    let provider = state.store.keyring().provider().clone();
    let mut cache = state.key_inventory.0.lock().await;
    let keks = match cache.as_ref() {
        Some((at, keks)) if at.elapsed() < CACHE_FOR => keks.clone(),
        _ => {
            let listed = provider.keks().await.map_err(ApiError::internal_cause)?;
            let keks: Vec<KekView> = listed
                .into_iter()
                .map(|k| KekView { kek_id: crate::keys::kek_label(&k.kek_id), created_at: k.created_at.map(ts), current: k.current })
                .collect();
            *cache = Some((Instant::now(), keks.clone()));
            keks
        }
    };
    Ok(Json(KeyInventoryView { provider: provider.kind(), keks }))
}
