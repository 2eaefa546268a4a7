//! The JSON API under `/api/v1`, one module per area; the router and the OpenAPI document are
//! built from the same declarations, so they cannot disagree.

pub(crate) mod alerts;
pub(crate) mod attachments;
pub(crate) mod audit;
pub(crate) mod audit_reports;
pub(crate) mod auth;
pub(crate) mod break_glass;
pub(crate) mod consents;
pub(crate) mod contacts;
pub(crate) mod conversations;
pub(crate) mod devices;
pub mod dto;
pub(crate) mod evidence;
pub(crate) mod forwarding;
pub(crate) mod inbound;
pub(crate) mod incidents;
pub(crate) mod lifecycle;
pub(crate) mod me;
pub(crate) mod notices;
pub(crate) mod org;
pub(crate) mod patients;
pub(crate) mod policies;
pub(crate) mod risks;
pub(crate) mod roster;
pub(crate) mod users;
pub(crate) mod vendors;
pub(crate) mod webauthn;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::app::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "Ward API", description = "Secure clinical messaging: accounts, sessions, conversations, messages and the real-time stream. \
        Errors are RFC 9457 problem details with a stable `code`."),
    modifiers(&BearerAuth),
    components(schemas(crate::problem::Problem, dto::EventFrame, alerts::AlertFrame))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()));
    }
}

/// Every API route with its OpenAPI document.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(auth::routes())
        .merge(audit::routes())
        .merge(audit_reports::routes())
        .merge(me::routes())
        .merge(webauthn::routes())
        .merge(users::routes())
        .merge(org::routes())
        .merge(patients::routes())
        .merge(consents::routes())
        .merge(notices::routes())
        .merge(inbound::routes())
        .merge(contacts::routes())
        .merge(conversations::routes())
        .merge(attachments::routes())
        .merge(alerts::routes())
        .merge(lifecycle::routes())
        .merge(devices::routes())
        .merge(roster::routes())
        .merge(break_glass::routes())
        .merge(forwarding::routes())
        .merge(incidents::routes())
        .merge(policies::routes())
        .merge(vendors::routes())
        .merge(risks::routes())
        .merge(evidence::routes())
        .routes(utoipa_axum::routes!(crate::ws::stream))
}
