//! The JSON API under `/api/v1`, one module per area; the router and the OpenAPI document are
//! built from the same declarations, so they cannot disagree.

pub(crate) mod access_reviews;
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
pub(crate) mod escalations;
pub(crate) mod evidence;
pub(crate) mod forwarding;
pub(crate) mod inbound;
pub(crate) mod incidents;
pub(crate) mod keys;
pub(crate) mod lifecycle;
pub(crate) mod me;
pub(crate) mod notices;
pub(crate) mod oidc;
pub(crate) mod org;
pub(crate) mod patients;
pub(crate) mod policies;
pub(crate) mod portal;
pub(crate) mod risks;
pub(crate) mod roster;
pub(crate) mod scim_admin;
pub(crate) mod users;
pub(crate) mod vendors;
pub(crate) mod webauthn;

use utoipa::openapi::path::Operation;
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

/// Completes the document with what every operation can answer besides its own responses, so
/// that clients and API fuzzers (schemathesis) see the whole contract: error responses are
/// `application/problem+json`; every operation can refuse a malformed request (400), be
/// throttled (429) or find the database unavailable (503); authenticated ones can refuse the
/// token (401) or the caller (403: role, a password that must change, an unacknowledged policy);
/// those with a body can refuse its size (413) or type (415); a value in a body or query can
/// be refused (422); writes can find storage full (507).
pub(crate) fn document_common_problems(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};

    const PROBLEM_JSON: &str = "application/problem+json";
    // (status, description, whether it applies to an operation, given whether it writes)
    type Applies = fn(&Operation, bool) -> bool;
    let common: [(&str, &str, Applies); 9] = [
        ("400", "The request is malformed: a body, path or query parameter that does not parse", |_, _| true),
        ("401", "No valid access token: missing, expired or revoked", |op, _| is_secured(op)),
        ("403", "The caller may not do this", |op, _| is_secured(op)),
        ("413", "The request body is too large", |op, _| op.request_body.is_some()),
        ("415", "The body's content type is not the one this operation takes", |op, _| op.request_body.is_some()),
        ("422", "A value in the body or query is not acceptable (the detail names the field)", |op, _| {
            op.request_body.is_some() || has_query(op)
        }),
        ("429", "Too many requests; retry after the time in Retry-After", |_, _| true),
        ("503", "The database is unavailable; retry after the time in Retry-After", |_, _| true),
        ("507", "The server is out of storage space", |_, write| write),
    ];
    for item in doc.paths.paths.values_mut() {
        let ops =
            [(&mut item.get, false), (&mut item.put, true), (&mut item.post, true), (&mut item.delete, true), (&mut item.patch, true)];
        for (op, write) in ops {
            let Some(op) = op.as_mut() else { continue };
            for (status, response) in op.responses.responses.iter_mut() {
                let is_error = status.starts_with('4') || status.starts_with('5');
                // Only Ward's own problem bodies: an endpoint that answers in another
                // standard's error form (OIDC back-channel logout) keeps its content type.
                if let (true, RefOr::T(response)) = (is_error, response)
                    && response.content.get("application/json").is_some_and(is_problem)
                    && let Some(content) = response.content.shift_remove("application/json")
                {
                    response.content.insert(PROBLEM_JSON.to_owned(), content);
                }
            }
            for (status, description, applies) in common {
                if applies(op, write) && !op.responses.responses.contains_key(status) {
                    let content = ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build();
                    let response = ResponseBuilder::new().description(description).content(PROBLEM_JSON, content).build();
                    op.responses.responses.insert(status.to_owned(), RefOr::T(response));
                }
            }
        }
    }
}

fn is_problem(content: &utoipa::openapi::Content) -> bool {
    matches!(&content.schema, Some(utoipa::openapi::RefOr::Ref(r)) if r.ref_location.ends_with("/Problem"))
}

fn is_secured(op: &Operation) -> bool {
    op.security.as_ref().is_some_and(|s| !s.is_empty())
}

fn has_query(op: &Operation) -> bool {
    use utoipa::openapi::path::ParameterIn;
    op.parameters.iter().flatten().any(|p| matches!(p.parameter_in, ParameterIn::Query))
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
        .merge(portal::routes())
        .merge(oidc::routes())
        .merge(contacts::routes())
        .merge(conversations::routes())
        .merge(escalations::routes())
        .merge(attachments::routes())
        .merge(alerts::routes())
        .merge(lifecycle::routes())
        .merge(devices::routes())
        .merge(roster::routes())
        .merge(scim_admin::routes())
        .merge(break_glass::routes())
        .merge(forwarding::routes())
        .merge(incidents::routes())
        .merge(keys::routes())
        .merge(policies::routes())
        .merge(vendors::routes())
        .merge(risks::routes())
        .merge(access_reviews::routes())
        .merge(evidence::routes())
        .routes(utoipa_axum::routes!(crate::ws::stream))
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    /// The served document: every error response is problem+json, every operation declares
    /// the common problems, and query parameters are documented in the query (utoipa's
    /// default for `IntoParams` is the path, which no client could use).
    #[test]
    fn the_document_declares_problems_and_query_parameters() {
        let (_, mut doc) = super::router().split_for_parts();
        super::document_common_problems(&mut doc);
        let doc: Value = serde_json::from_str(&doc.to_json().unwrap()).unwrap();
        let mut operations = 0;
        let mut query_params = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                operations += 1;
                let responses = op["responses"].as_object().unwrap();
                for status in ["400", "429", "503"] {
                    assert!(responses.contains_key(status), "{method} {path} does not declare {status}");
                }
                for (status, response) in responses {
                    if status.starts_with('4') || status.starts_with('5') {
                        let types: Vec<&String> = response["content"].as_object().map(|c| c.keys().collect()).unwrap_or_default();
                        // The one exception: OIDC back-channel logout answers a malformed
                        // logout token in that standard's own JSON error form.
                        let own_form = path.ends_with("/backchannel-logout") && status == "400";
                        let expected = if own_form { "application/json" } else { "application/problem+json" };
                        assert_eq!(types, [expected], "{method} {path} {status}");
                    }
                }
                for p in op["parameters"].as_array().into_iter().flatten() {
                    let name = p["name"].as_str().unwrap();
                    if p["in"] == "header" {
                        continue;
                    }
                    let templated = path.contains(&format!("{{{name}}}"));
                    assert_eq!(p["in"], if templated { "path" } else { "query" }, "{method} {path} parameter {name}");
                    query_params += usize::from(!templated);
                }
            }
        }
        assert!(operations > 100 && query_params > 20, "{operations} operations, {query_params} query parameters");
    }
}
