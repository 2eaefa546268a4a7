//! `POST /api/v1/evidence/export`: the signed evidence bundle for an auditor (docs/evidence.md),
//! for compliance officers and admins after a recent second-factor verification. The export
//! and any refusal are audited as `evidence.export` with codes and counts only.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use ward_domain::audit::{AuditAction, AuditEvent, DetailValue, Outcome};
use ward_domain::policy;

use crate::app::AppState;
use crate::auth::{Auth, Meta};
use crate::problem::{ApiError, ApiResult, Problem};

pub(crate) fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new().routes(utoipa_axum::routes!(export_evidence))
}

/// The organisation's evidence bundle: a zip of the control map, each control's live export,
/// the latest signed audit checkpoint and a manifest of SHA-256 hashes signed with the
/// deployment's audit key (fingerprint in `X-Ward-Evidence-Key`). Compliance officers and
/// admins; needs a step-up.
#[utoipa::path(post, path = "/api/v1/evidence/export", tag = "audit", security(("bearer" = [])),
    responses((status = 200, description = "The signed bundle", content((String = "application/zip"))),
        (status = 401, body = Problem), (status = 403, body = Problem)))]
async fn export_evidence(State(state): State<AppState>, Meta(meta): Meta, s: Auth) -> ApiResult<Response> {
    if let Err(d) = policy::may_manage_compliance_registers(&s.actor) {
        let mut ev = AuditEvent::new(AuditAction::EvidenceExport, Outcome::Denied).detail("reason", DetailValue::Code("role"));
        ev.org_id = Some(s.actor.org_id);
        ev.actor = Some(s.actor.user_id);
        ev.device = Some(s.device);
        state.store.record(ev, meta).await?;
        return Err(d.into());
    }
    crate::auth::require_step_up(&state, &s, "evidence_export", &meta).await?;
    let org = state.store.org(s.actor.org_id).await?;
    let out = crate::evidence::export(
        &state.store,
        &state.config,
        &state.audit,
        &org,
        crate::evidence::Audience::Organisation(s.actor.user_id),
        meta,
        |_| {},
    )
    .await
    .map_err(|e| match e.downcast_ref::<crate::evidence::ListTooLong>() {
        // Ids and counts only: the message may be shown.
        Some(too_long) => ApiError::invalid_state().detail(too_long.to_string()),
        None => ApiError::internal_cause(e.to_string()),
    })?;
    let disposition = format!("attachment; filename=\"ward-evidence-{}.zip\"", org.slug);
    Ok((
        [
            (header::CONTENT_TYPE, "application/zip".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
            (header::HeaderName::from_static("x-ward-evidence-key"), out.fingerprint),
        ],
        out.archive,
    )
        .into_response())
}
