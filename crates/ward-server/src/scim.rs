//! The SCIM 2.0 service (RFC 7643, RFC 7644) under `/scim/v2`: an identity provider creates,
//! reads, lists, replaces, patches and deletes workforce accounts, authenticated by an
//! organisation's SCIM bearer token (`wst_…`, issued by an admin) and by nothing else.
//! Access tokens are refused here and SCIM tokens everywhere else (their prefixes differ, and
//! each extractor accepts only its own).
//!
//! Deprovisioning (`active` false, or DELETE) follows the termination procedure of HIPAA
//! 164.308(a)(3)(ii)(C): in one transaction the account is disabled, every session (and with
//! it every refresh token) revoked and a wipe queued to each device; then the signal closing
//! the person's connections goes out. Each step's time is kept (`scim_deprovisions`) for
//! `GET /api/v1/admin/scim/deprovisions` and the evidence bundle.
//!
//! Errors take RFC 7644 §3.12's form (`application/scim+json`, `scimType`) and change
//! nothing. Details name rules and positions, never a submitted value (user names and emails
//! are personal data).

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value as Json, json};
use ward_domain::audit::{AuditAction, AuditEvent, DetailValue, Outcome};
use ward_domain::ids::UserId;
use ward_domain::login::{LoginName, parse_label};
use ward_domain::role::Role;
use ward_domain::scim::filter::{AttrPath, AttrValue, Filter, Resource, Value};
use ward_domain::scim::{ERROR, LIST_RESPONSE, ScimType, USER_SCHEMA, patch};
use ward_store::{RequestMeta, ScimClient, ScimTokenCheck, ScimUser, ScimUserFields, ScimUserWrite, StoreError, now_ms};

use crate::api::dto::ts;
use crate::app::AppState;
use crate::auth::meta_of;
use crate::problem::{ApiError, InternalCause};
use crate::secrets::token_hash;

/// Prefix of SCIM bearer tokens.
pub const SCIM_PREFIX: &str = "wst_";
/// The media type of every SCIM answer.
pub const SCIM_MEDIA_TYPE: &str = "application/scim+json";
/// Largest page a list returns.
pub const MAX_PAGE: usize = 200;
/// Where the service lives.
pub const BASE: &str = "/scim/v2";
/// How many times a write computed from a version that changed meanwhile is computed again
/// (without `If-Match`; with it, the answer is 412).
const WRITE_ATTEMPTS: usize = 3;

/// The `/scim/v2` routes.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/Users", get(list_users).post(create_user))
        .route("/Users/.search", axum::routing::post(search_users))
        // The root search covers every resource type: Users and Groups.
        .route("/.search", axum::routing::post(search_all))
        .route("/Users/{id}", get(get_user).put(replace_user).patch(patch_user).delete(delete_user))
        .route("/Groups", get(crate::scim_groups::list_groups).post(crate::scim_groups::create_group))
        .route("/Groups/.search", axum::routing::post(crate::scim_groups::search_groups))
        .route(
            "/Groups/{id}",
            get(crate::scim_groups::get_group)
                .put(crate::scim_groups::replace_group)
                .patch(crate::scim_groups::patch_group)
                .delete(crate::scim_groups::delete_group),
        )
        .route("/ServiceProviderConfig", get(service_provider_config))
        .route("/ResourceTypes", get(resource_types))
        .route("/ResourceTypes/{name}", get(resource_type))
        .route("/Schemas", get(schemas))
        .route("/Schemas/{uri}", get(schema))
        .fallback(|| async { ScimError::new(StatusCode::NOT_FOUND, None, "no such SCIM endpoint") })
}

/// An RFC 7644 §3.12 error.
#[derive(Debug)]
pub struct ScimError {
    pub(crate) status: StatusCode,
    pub(crate) scim_type: Option<ScimType>,
    detail: String,
    internal: Option<String>,
}

impl ScimError {
    pub(crate) fn new(status: StatusCode, scim_type: Option<ScimType>, detail: impl Into<String>) -> ScimError {
        ScimError { status, scim_type, detail: detail.into(), internal: None }
    }

    pub(crate) fn bad(scim_type: ScimType, detail: impl Into<String>) -> ScimError {
        ScimError::new(StatusCode::BAD_REQUEST, Some(scim_type), detail)
    }

    pub(crate) fn not_found() -> ScimError {
        ScimError::new(StatusCode::NOT_FOUND, None, "no such resource")
    }

    fn unauthorized() -> ScimError {
        ScimError::new(StatusCode::UNAUTHORIZED, None, "a valid SCIM bearer token is required")
    }

    fn precondition_failed() -> ScimError {
        ScimError::new(StatusCode::PRECONDITION_FAILED, None, "the resource changed: its version does not match If-Match")
    }
}

impl From<ApiError> for ScimError {
    fn from(e: ApiError) -> ScimError {
        ScimError { status: e.status, scim_type: None, detail: e.detail.unwrap_or_else(|| e.title.to_owned()), internal: e.internal }
    }
}

impl From<StoreError> for ScimError {
    fn from(e: StoreError) -> ScimError {
        match e {
            StoreError::NotFound => ScimError::not_found(),
            StoreError::Conflict(what) => {
                ScimError::new(StatusCode::CONFLICT, Some(ScimType::Uniqueness), format!("{what} is already taken"))
            }
            StoreError::Changed => ScimError::precondition_failed(),
            // A privileged role is Ward's to grant and remove: that rule is about mutability.
            StoreError::State(why) if why.contains("not through SCIM") => ScimError::bad(ScimType::Mutability, why),
            StoreError::State(why) => ScimError::bad(ScimType::InvalidValue, why),
            other => ApiError::from(other).into(),
        }
    }
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let mut body = json!({"schemas": [ERROR], "status": self.status.as_u16().to_string(), "detail": self.detail});
        if let Some(t) = self.scim_type {
            body["scimType"] = json!(t.as_str());
        }
        let mut res = scim_json(self.status, &body);
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"scim\""));
        }
        if let Some(cause) = self.internal {
            res.extensions_mut().insert(InternalCause(cause));
        }
        res
    }
}

pub(crate) type ScimResult<T> = Result<T, ScimError>;

pub(crate) fn scim_json(status: StatusCode, body: &Json) -> Response {
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_MEDIA_TYPE))], body.to_string()).into_response()
}

/// The SCIM client behind a request: a live token of an organisation.
#[derive(Debug, Clone)]
pub struct ScimAuth {
    pub(crate) client: ScimClient,
    pub(crate) meta: RequestMeta,
}

impl FromRequestParts<AppState> for ScimAuth {
    type Rejection = ScimError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| t.starts_with(SCIM_PREFIX) && t.len() <= 128)
            .ok_or_else(ScimError::unauthorized)?;
        match state.store.scim_client(token_hash(token), now_ms()).await? {
            ScimTokenCheck::Live(client) => Ok(ScimAuth { client, meta: meta_of(parts) }),
            ScimTokenCheck::Expired => {
                Err(ScimError::new(StatusCode::UNAUTHORIZED, None, "the SCIM token has expired: an admin issues a new one"))
            }
            ScimTokenCheck::Unknown => Err(ScimError::unauthorized()),
        }
    }
}

/// A SCIM request body: `application/scim+json` or `application/json`, a JSON object.
pub(crate) fn body_json(headers: &HeaderMap, body: &Bytes) -> ScimResult<Map<String, Json>> {
    let media = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).and_then(|v| v.split(';').next()).map(str::trim);
    if !media.is_some_and(|m| m.eq_ignore_ascii_case(SCIM_MEDIA_TYPE) || m.eq_ignore_ascii_case("application/json")) {
        return Err(ScimError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, None, "send application/scim+json"));
    }
    match serde_json::from_slice::<Json>(body) {
        Ok(Json::Object(m)) => Ok(m),
        Ok(_) => Err(ScimError::bad(ScimType::InvalidSyntax, "the body must be a JSON object")),
        Err(_) => Err(ScimError::bad(ScimType::InvalidSyntax, "the body is not valid JSON")),
    }
}

/// The SCIM representation of a user without `meta` (also what PATCH edits).
fn user_attributes(u: &ScimUser) -> Map<String, Json> {
    let mut m = Map::new();
    m.insert("schemas".into(), json!([USER_SCHEMA]));
    m.insert("id".into(), json!(u.user.id.to_string()));
    if let Some(e) = &u.external_id {
        m.insert("externalId".into(), json!(e));
    }
    m.insert("userName".into(), json!(u.user.login));
    m.insert("displayName".into(), json!(u.user.display_name));
    m.insert("active".into(), json!(!u.user.disabled));
    m.insert("roles".into(), json!([{"value": u.user.role.as_str(), "primary": true}]));
    if !u.groups.is_empty() {
        let groups: Vec<Json> = u
            .groups
            .iter()
            .map(|g| json!({"value": g.id.to_string(), "display": g.display_name, "$ref": format!("{BASE}/Groups/{}", g.id), "type": "direct"}))
            .collect();
        m.insert("groups".into(), Json::Array(groups));
    }
    m
}

/// A weak ETag over the representation: it changes whenever any attribute does, whichever
/// path changed it (SCIM, the admin API, the roster).
pub(crate) fn etag(attrs: &Map<String, Json>) -> String {
    let digest = token_hash(&Json::Object(attrs.clone()).to_string());
    let hex: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
    format!("W/\"{hex}\"")
}

fn user_json(u: &ScimUser) -> (Json, String) {
    let mut m = user_attributes(u);
    let tag = etag(&m);
    m.insert(
        "meta".into(),
        json!({"resourceType": "User", "created": ts(u.user.created_at), "lastModified": ts(u.updated_at),
            "location": format!("{BASE}/Users/{}", u.user.id), "version": tag}),
    );
    (Json::Object(m), tag)
}

/// One resource's answer: its JSON (projected when asked), its ETag, and on 201 its Location
/// (`path` under the base, such as `Users/<id>`).
pub(crate) fn resource_response(status: StatusCode, body: Json, tag: &str, path: &str, projection: Option<&Projection>) -> Response {
    let body = match projection {
        Some(p) => p.apply(body),
        None => body,
    };
    let mut res = scim_json(status, &body);
    if let Ok(v) = HeaderValue::from_str(tag) {
        res.headers_mut().insert(header::ETAG, v);
    }
    if status == StatusCode::CREATED
        && let Ok(v) = HeaderValue::from_str(&format!("{BASE}/{path}"))
    {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res
}

fn user_response(status: StatusCode, u: &ScimUser, projection: Option<&Projection>) -> Response {
    let (body, tag) = user_json(u);
    resource_response(status, body, &tag, &format!("Users/{}", u.user.id), projection)
}

/// Refuses a write whose `If-Match` names another version (412, nothing changed).
pub(crate) fn check_if_match(headers: &HeaderMap, current: &str) -> ScimResult<()> {
    let Some(v) = headers.get(header::IF_MATCH) else { return Ok(()) };
    let v = v.to_str().map_err(|_| ScimError::bad(ScimType::InvalidSyntax, "If-Match is not readable"))?;
    let weak = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    if v.trim() == "*" || v.split(',').any(|t| weak(t) == weak(current)) { Ok(()) } else { Err(ScimError::precondition_failed()) }
}

fn parse_id(id: &str) -> ScimResult<UserId> {
    id.parse::<uuid::Uuid>().map(UserId).map_err(|_| ScimError::not_found())
}

pub(crate) fn field<'a>(m: &'a Map<String, Json>, name: &str) -> Option<&'a Json> {
    m.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v).filter(|v| !v.is_null())
}

/// Reads a User body (POST, PUT, or the result of a PATCH) into the fields Ward keeps.
/// `current` supplies the role when the body carries none.
fn user_fields(m: &Map<String, Json>, current: Option<&ScimUser>) -> ScimResult<ScimUserFields> {
    let schemas =
        field(m, "schemas").and_then(Json::as_array).ok_or_else(|| ScimError::bad(ScimType::InvalidSyntax, "schemas is required"))?;
    if !schemas.iter().any(|s| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(USER_SCHEMA))) {
        return Err(ScimError::bad(ScimType::InvalidSyntax, "schemas must include the core User schema"));
    }
    if schemas.iter().any(|s| !s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(USER_SCHEMA))) {
        return Err(ScimError::bad(ScimType::InvalidValue, "schemas names a schema this service does not support"));
    }
    let text = |name: &'static str| -> ScimResult<Option<&str>> {
        match field(m, name) {
            None => Ok(None),
            Some(Json::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(ScimError::bad(ScimType::InvalidValue, format!("{name} must be a string"))),
        }
    };
    let user_name = text("userName")?.ok_or_else(|| ScimError::bad(ScimType::InvalidValue, "userName is required"))?;
    let login = LoginName::parse(user_name).map_err(|e| ScimError::bad(ScimType::InvalidValue, format!("userName: {e}")))?;
    let display = match text("displayName")? {
        Some(d) => d.to_owned(),
        None => field(m, "name").and_then(|n| n.get("formatted")).and_then(Json::as_str).unwrap_or(user_name).to_owned(),
    };
    let display_name = parse_label("displayName", &display, 200).map_err(|e| ScimError::bad(ScimType::InvalidValue, e.to_string()))?;
    let external_id = text("externalId")?.map(str::to_owned);
    if external_id.as_ref().is_some_and(|e| e.is_empty() || e.len() > 256) {
        return Err(ScimError::bad(ScimType::InvalidValue, "externalId must be 1 to 256 bytes"));
    }
    let active = match field(m, "active") {
        // Absent keeps what the account has: a PUT that leaves the flag out must not undo an
        // admin's disable (incident response) behind their back.
        None => current.is_none_or(|c| !c.user.disabled),
        Some(Json::Bool(b)) => *b,
        // Some identity providers send the flag as a string.
        Some(Json::String(s)) if s.eq_ignore_ascii_case("true") => true,
        Some(Json::String(s)) if s.eq_ignore_ascii_case("false") => false,
        Some(_) => return Err(ScimError::bad(ScimType::InvalidValue, "active must be a boolean")),
    };
    let role = match field(m, "roles") {
        None => current.map_or(Role::Staff, |c| c.user.role),
        Some(Json::Array(roles)) => {
            let pick = roles.iter().find(|r| r.get("primary") == Some(&Json::Bool(true))).or_else(|| roles.first());
            match pick {
                None => current.map_or(Role::Staff, |c| c.user.role),
                Some(r) => r
                    .get("value")
                    .and_then(Json::as_str)
                    .and_then(|v| v.parse::<Role>().ok())
                    .filter(|r| r.is_workforce())
                    .ok_or_else(|| ScimError::bad(ScimType::InvalidValue, "roles: the value must be a Ward workforce role"))?,
            }
        }
        Some(_) => return Err(ScimError::bad(ScimType::InvalidValue, "roles must be an array")),
    };
    // The privileged roles are granted and taken away in Ward, with a step-up, by its admins:
    // a SCIM token (a long-lived secret held by another system) can neither grant them nor
    // change them, so a stolen one cannot take over the organisation's administration.
    let current_role = current.map(|c| c.user.role);
    let privileged = |r: Role| matches!(r, Role::Admin | Role::ComplianceOfficer);
    if current_role != Some(role) && (privileged(role) || current_role.is_some_and(privileged)) {
        return Err(ScimError::bad(
            ScimType::Mutability,
            "roles: admin and compliance_officer are granted and removed in Ward, not through SCIM",
        ));
    }
    Ok(ScimUserFields { login: login.to_string(), display_name, role, external_id, active })
}

/// Records a refused write (`scim.user` failure with the `scimType`), then returns the error.
async fn refused(state: &AppState, auth: &ScimAuth, op: &'static str, user: Option<UserId>, e: ScimError) -> ScimError {
    refused_as(state, auth, AuditAction::ScimUser, op, user.map(|u| ("user", u.0)), e).await
}

/// Records a refused write as a failure of `action`, then returns the error.
pub(crate) async fn refused_as(
    state: &AppState,
    auth: &ScimAuth,
    action: AuditAction,
    op: &'static str,
    target: Option<(&'static str, uuid::Uuid)>,
    e: ScimError,
) -> ScimError {
    if e.status.is_client_error() {
        let mut ev = AuditEvent::new(action, Outcome::Failure)
            .detail("op", DetailValue::Code(op))
            .detail("token", DetailValue::Id(auth.client.token))
            .detail("status", DetailValue::Int(i64::from(e.status.as_u16())));
        if let Some(t) = e.scim_type {
            ev = ev.detail("scim_type", DetailValue::Code(t.as_str()));
        }
        if let Some((kind, id)) = target {
            ev = ev.target(kind, id);
        }
        ev.org_id = Some(auth.client.org);
        if let Err(err) = state.store.record(ev, auth.meta.clone()).await {
            return err.into();
        }
    }
    e
}

/// Closes the deprovisioned person's connections and records when. The time is recorded only
/// when the close was signalled: evidence must not show a close that did not happen (the
/// connections' own session checks still end them within seconds).
async fn close_connections(state: &AppState, d: &ward_store::Deprovision) -> ScimResult<()> {
    if state.end_sessions(d.user_id, None).await {
        state.store.scim_connections_closed(d.id, now_ms()).await?;
    }
    Ok(())
}

/// A user as filters see it.
struct Filterable<'a>(&'a ScimUser);

impl Resource for Filterable<'_> {
    fn values(&self, path: &AttrPath) -> Vec<AttrValue> {
        let this = self.0;
        if path.uri.as_deref().is_some_and(|u| !u.eq_ignore_ascii_case(USER_SCHEMA)) {
            return Vec::new();
        }
        let s = |v: &str, case_exact| vec![AttrValue { value: Value::Str(v.to_owned()), case_exact }];
        if path.is("id", None) {
            s(&this.user.id.to_string(), true)
        } else if path.is("userName", None) {
            s(&this.user.login, false)
        } else if path.is("displayName", None) || path.is("name", Some("formatted")) {
            s(&this.user.display_name, false)
        } else if path.is("externalId", None) {
            this.external_id.as_deref().map(|e| s(e, true)).unwrap_or_default()
        } else if path.is("active", None) {
            vec![AttrValue { value: Value::Bool(!this.user.disabled), case_exact: false }]
        } else if path.is("roles", None) || path.is("roles", Some("value")) {
            s(this.user.role.as_str(), false)
        } else if path.is("groups", None) || path.is("groups", Some("value")) {
            this.groups.iter().flat_map(|g| s(&g.id.to_string(), false)).collect()
        } else if path.is("groups", Some("display")) {
            this.groups.iter().flat_map(|g| s(&g.display_name, false)).collect()
        } else if path.is("meta", Some("created")) {
            s(&ts(this.user.created_at), true)
        } else if path.is("meta", Some("lastModified")) {
            s(&ts(this.updated_at), true)
        } else if path.is("meta", Some("resourceType")) {
            s("User", false)
        } else {
            Vec::new()
        }
    }
}

pub(crate) fn positive(params: &[(String, String)], name: &str) -> ScimResult<Option<i64>> {
    match params.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)) {
        None => Ok(None),
        Some((_, v)) => {
            v.parse::<i64>().map(Some).map_err(|_| ScimError::bad(ScimType::InvalidValue, format!("{name} must be an integer")))
        }
    }
}

/// Which attributes an answer carries (RFC 7644 §3.4.2.5): `attributes` keeps only those
/// named (with `id` and `schemas`, always returned), `excludedAttributes` drops those named.
#[derive(Debug, Default)]
pub(crate) struct Projection {
    only: Vec<AttrPath>,
    without: Vec<AttrPath>,
}

impl Projection {
    pub(crate) fn parse(attributes: Option<&str>, excluded: Option<&str>) -> ScimResult<Projection> {
        let list = |v: Option<&str>| -> ScimResult<Vec<AttrPath>> {
            v.map(|v| v.split(',').map(str::trim).filter(|p| !p.is_empty()).map(AttrPath::parse).collect::<Result<Vec<_>, _>>())
                .transpose()
                .map(Option::unwrap_or_default)
                .map_err(|e| ScimError::bad(ScimType::InvalidPath, e.to_string()))
        };
        Ok(Projection { only: list(attributes)?, without: list(excluded)? })
    }

    pub(crate) fn apply(&self, mut resource: Json) -> Json {
        let Json::Object(m) = &mut resource else { return resource };
        let always = |k: &str| k == "id" || k == "schemas";
        if !self.only.is_empty() {
            m.retain(|k, _| always(k) || self.only.iter().any(|p| p.attr.eq_ignore_ascii_case(k)));
            for p in self.only.iter().filter(|p| p.sub.is_some()) {
                // Only the named sub-attributes of a complex attribute, unless it is named whole.
                if self.only.iter().any(|q| q.sub.is_none() && q.attr.eq_ignore_ascii_case(&p.attr)) {
                    continue;
                }
                if let Some((_, Json::Object(inner))) = m.iter_mut().find(|(k, _)| k.eq_ignore_ascii_case(&p.attr)) {
                    inner.retain(|k, _| {
                        self.only
                            .iter()
                            .any(|q| q.attr.eq_ignore_ascii_case(&p.attr) && q.sub.as_deref().is_some_and(|s| s.eq_ignore_ascii_case(k)))
                    });
                }
            }
        }
        for p in &self.without {
            match &p.sub {
                None => m.retain(|k, _| always(k) || !p.attr.eq_ignore_ascii_case(k)),
                Some(sub) => {
                    if let Some((_, Json::Object(inner))) = m.iter_mut().find(|(k, _)| k.eq_ignore_ascii_case(&p.attr)) {
                        inner.retain(|k, _| !sub.eq_ignore_ascii_case(k));
                    }
                }
            }
        }
        resource
    }
}

/// What a list or search asks for.
#[derive(Debug, Default)]
pub(crate) struct ListRequest {
    pub(crate) filter: Option<Filter>,
    start: i64,
    count: i64,
    projection: Projection,
}

/// The users a list or search matches, in order.
async fn matching_users(state: &AppState, auth: &ScimAuth, filter: Option<&Filter>) -> ScimResult<Vec<Json>> {
    let users = state.store.scim_users(auth.client.org).await?;
    Ok(users.iter().filter(|u| filter.is_none_or(|f| f.matches(&Filterable(u)))).map(|u| user_json(u).0).collect())
}

/// The ListResponse of the requested page of `matching`.
pub(crate) fn list_page(req: &ListRequest, matching: Vec<Json>) -> Response {
    let total = matching.len();
    let page: Vec<Json> = matching
        .into_iter()
        .skip(usize::try_from(req.start - 1).unwrap_or(usize::MAX))
        .take(usize::try_from(req.count).unwrap_or(0))
        .map(|r| req.projection.apply(r))
        .collect();
    let body = json!({"schemas": [LIST_RESPONSE], "totalResults": total, "startIndex": req.start,
        "itemsPerPage": page.len(), "Resources": page});
    scim_json(StatusCode::OK, &body)
}

async fn list(state: &AppState, auth: &ScimAuth, req: ListRequest) -> ScimResult<Response> {
    let matching = matching_users(state, auth, req.filter.as_ref()).await?;
    Ok(list_page(&req, matching))
}

pub(crate) fn list_request(
    filter: Option<&str>,
    start: Option<i64>,
    count: Option<i64>,
    projection: Projection,
) -> ScimResult<ListRequest> {
    let filter = filter.map(|f| Filter::parse(f).map_err(|e| ScimError::bad(ScimType::InvalidFilter, e.to_string()))).transpose()?;
    // RFC 7644 §3.4.2.4: values below 1 are read as 1; a negative count as 0.
    let start = start.unwrap_or(1).max(1);
    let count = count.unwrap_or(MAX_PAGE as i64).clamp(0, MAX_PAGE as i64);
    Ok(ListRequest { filter, start, count, projection })
}

/// The query string of a read as axum hands it over.
pub(crate) type QueryParams = Result<Query<Vec<(String, String)>>, QueryRejection>;

/// A read's query string, and the `attributes`/`excludedAttributes` projection it asks for.
pub(crate) fn read_query(params: QueryParams) -> ScimResult<(Vec<(String, String)>, Projection)> {
    let Query(params) = params.map_err(|_| ScimError::bad(ScimType::InvalidSyntax, "the query string is not readable"))?;
    let projection = Projection::parse(param(&params, "attributes"), param(&params, "excludedAttributes"))?;
    Ok((params, projection))
}

/// A list's query string (`filter`, `startIndex`, `count` and the projection) as a request.
pub(crate) fn query_list_request(params: QueryParams) -> ScimResult<ListRequest> {
    let (params, projection) = read_query(params)?;
    list_request(param(&params, "filter"), positive(&params, "startIndex")?, positive(&params, "count")?, projection)
}

pub(crate) fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// `GET /scim/v2/Users?filter=…&startIndex=…&count=…&attributes=…&excludedAttributes=…`.
async fn list_users(State(state): State<AppState>, auth: ScimAuth, params: QueryParams) -> ScimResult<Response> {
    list(&state, &auth, query_list_request(params)?).await
}

/// `POST /scim/v2/Users/.search` (RFC 7644 §3.4.3): the list's parameters in a SearchRequest body.
async fn search_users(State(state): State<AppState>, auth: ScimAuth, headers: HeaderMap, body: Bytes) -> ScimResult<Response> {
    let req = search_request(&headers, &body)?;
    list(&state, &auth, req).await
}

/// `POST /scim/v2/.search`: users, then groups.
async fn search_all(State(state): State<AppState>, auth: ScimAuth, headers: HeaderMap, body: Bytes) -> ScimResult<Response> {
    let req = search_request(&headers, &body)?;
    let mut matching = matching_users(&state, &auth, req.filter.as_ref()).await?;
    matching.extend(crate::scim_groups::matching_groups(&state, &auth, req.filter.as_ref()).await?);
    Ok(list_page(&req, matching))
}

/// A SearchRequest body (RFC 7644 §3.4.3) read as a list request.
pub(crate) fn search_request(headers: &HeaderMap, body: &Bytes) -> ScimResult<ListRequest> {
    let m = body_json(headers, body)?;
    let search = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
    if !field(&m, "schemas").and_then(Json::as_array).is_some_and(|s| s.iter().any(|v| v.as_str() == Some(search))) {
        return Err(ScimError::bad(ScimType::InvalidSyntax, "schemas must be the SearchRequest message"));
    }
    let text = |name: &str| -> ScimResult<Option<String>> {
        match field(&m, name) {
            None => Ok(None),
            Some(Json::String(s)) => Ok(Some(s.clone())),
            Some(Json::Array(a)) => Ok(Some(a.iter().filter_map(Json::as_str).collect::<Vec<_>>().join(","))),
            Some(_) => Err(ScimError::bad(ScimType::InvalidValue, format!("{name} must be a string or a list of strings"))),
        }
    };
    let int = |name: &str| -> ScimResult<Option<i64>> {
        match field(&m, name) {
            None => Ok(None),
            Some(v) => v.as_i64().map(Some).ok_or_else(|| ScimError::bad(ScimType::InvalidValue, format!("{name} must be an integer"))),
        }
    };
    let projection = Projection::parse(text("attributes")?.as_deref(), text("excludedAttributes")?.as_deref())?;
    list_request(text("filter")?.as_deref(), int("startIndex")?, int("count")?, projection)
}

/// 304 with the ETag when `If-None-Match` names the resource's current version `tag`.
pub(crate) fn not_modified(headers: &HeaderMap, tag: &str) -> Option<Response> {
    let listed = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok())?;
    if !listed.split(',').any(|t| t.trim() == tag) {
        return None;
    }
    let mut res = StatusCode::NOT_MODIFIED.into_response();
    if let Ok(v) = HeaderValue::from_str(tag) {
        res.headers_mut().insert(header::ETAG, v);
    }
    Some(res)
}

/// `GET /scim/v2/Users/{id}`; `If-None-Match` with the current version answers 304.
async fn get_user(
    State(state): State<AppState>,
    auth: ScimAuth,
    Path(id): Path<String>,
    headers: HeaderMap,
    params: QueryParams,
) -> ScimResult<Response> {
    let (_, projection) = read_query(params)?;
    let u = state.store.scim_user(auth.client.org, parse_id(&id)?).await?;
    let (body, tag) = user_json(&u);
    if let Some(res) = not_modified(&headers, &tag) {
        return Ok(res);
    }
    Ok(resource_response(StatusCode::OK, body, &tag, &format!("Users/{}", u.user.id), Some(&projection)))
}

/// `POST /scim/v2/Users`: a workforce account (role `staff` unless `roles` names another),
/// with no usable password until an admin issues a one-time one.
async fn create_user(State(state): State<AppState>, auth: ScimAuth, headers: HeaderMap, body: Bytes) -> ScimResult<Response> {
    let result = async {
        let m = body_json(&headers, &body)?;
        let f = user_fields(&m, None)?;
        // A random password no one knows: the account signs in once an admin issues a
        // one-time password.
        let hash = crate::secrets::hash_password(crate::secrets::new_token("")).await.map_err(ApiError::internal_cause)?;
        Ok(state.store.scim_create_user(auth.client, f, hash, auth.meta.clone()).await?)
    }
    .await;
    match result {
        Ok(u) => Ok(user_response(StatusCode::CREATED, &u, None)),
        Err(e) => Err(refused(&state, &auth, "create", None, e).await),
    }
}

async fn write_user(
    state: &AppState,
    auth: &ScimAuth,
    id: UserId,
    headers: &HeaderMap,
    body: &Bytes,
    op: &'static str,
) -> ScimResult<ScimUser> {
    let received_at = now_ms();
    let m = body_json(headers, body)?;
    let ops = if op == "patch" {
        let ops = patch::parse_request(&Json::Object(m.clone())).map_err(|e| ScimError::bad(e.scim_type, e.detail))?;
        if ops.iter().any(|o| touches(o, "groups")) {
            return Err(ScimError::bad(ScimType::Mutability, "groups is read-only: change the group's members instead"));
        }
        Some(ops)
    } else {
        None
    };
    // The write is computed from the version read here and committed only if the account is
    // still that version (checked in the write's transaction): with If-Match a change in
    // between is a 412; without, the write is computed again from the new version.
    let mut attempt = 0;
    loop {
        attempt += 1;
        let current = state.store.scim_user(auth.client.org, id).await?;
        let attrs = user_attributes(&current);
        check_if_match(headers, &etag(&attrs))?;
        let next = match &ops {
            Some(ops) => {
                let mut edited = attrs;
                patch::apply(&mut edited, USER_SCHEMA, ops).map_err(|e| ScimError::bad(e.scim_type, e.detail))?;
                one_role(&edited)?;
                edited
            }
            None => m.clone(),
        };
        if field(&next, "id").and_then(Json::as_str).is_some_and(|v| v != id.to_string()) {
            return Err(ScimError::bad(ScimType::Mutability, "id cannot be changed"));
        }
        let fields = user_fields(&next, Some(&current))?;
        let w = ScimUserWrite { id, fields, op, received_at, expected: current };
        match state.store.scim_update_user(auth.client, w, auth.meta.clone()).await {
            Ok((user, deprovision)) => {
                if let Some(d) = deprovision {
                    close_connections(state, &d).await?;
                }
                return Ok(user);
            }
            Err(StoreError::Changed) if headers.get(header::IF_MATCH).is_none() && attempt < WRITE_ATTEMPTS => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Whether a PATCH operation names `attr` (in its path, or among a path-less value's keys).
pub(crate) fn touches(op: &patch::PatchOp, attr: &str) -> bool {
    match &op.path {
        Some(p) => p.attr.eq_ignore_ascii_case(attr),
        None => op
            .value
            .as_ref()
            .and_then(Json::as_object)
            .is_some_and(|m| m.keys().any(|k| AttrPath::parse(k).is_ok_and(|p| p.attr.eq_ignore_ascii_case(attr)))),
    }
}

/// A Ward account holds exactly one role: a PATCH that leaves `roles` with two different
/// values (an `add` beside the current one) is refused rather than silently ignored.
fn one_role(edited: &Map<String, Json>) -> ScimResult<()> {
    let Some(Json::Array(roles)) = field(edited, "roles") else { return Ok(()) };
    let mut values: Vec<String> = roles.iter().filter_map(|r| r.get("value").and_then(Json::as_str)).map(str::to_ascii_lowercase).collect();
    values.sort();
    values.dedup();
    if values.len() > 1 {
        return Err(ScimError::bad(
            ScimType::InvalidValue,
            "roles: a Ward account holds exactly one role: use replace (an add cannot give it a second one)",
        ));
    }
    Ok(())
}

/// `PUT /scim/v2/Users/{id}`: replaces the attributes; `active: false` deprovisions.
async fn replace_user(
    State(state): State<AppState>,
    auth: ScimAuth,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ScimResult<Response> {
    let id = parse_id(&id)?;
    match write_user(&state, &auth, id, &headers, &body, "replace").await {
        Ok(u) => Ok(user_response(StatusCode::OK, &u, None)),
        Err(e) => Err(refused(&state, &auth, "replace", Some(id), e).await),
    }
}

/// `PATCH /scim/v2/Users/{id}`: add, replace and remove operations, applied to the current
/// representation and then checked as a PUT of the result would be.
async fn patch_user(
    State(state): State<AppState>,
    auth: ScimAuth,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ScimResult<Response> {
    let id = parse_id(&id)?;
    match write_user(&state, &auth, id, &headers, &body, "patch").await {
        Ok(u) => Ok(user_response(StatusCode::OK, &u, None)),
        Err(e) => Err(refused(&state, &auth, "patch", Some(id), e).await),
    }
}

/// `DELETE /scim/v2/Users/{id}`: deprovisions and removes the account from SCIM (204).
async fn delete_user(State(state): State<AppState>, auth: ScimAuth, Path(id): Path<String>, headers: HeaderMap) -> ScimResult<Response> {
    let received_at = now_ms();
    let id = parse_id(&id)?;
    let result = async {
        let current = state.store.scim_user(auth.client.org, id).await?;
        check_if_match(&headers, &etag(&user_attributes(&current)))?;
        // With If-Match, the version checked is the version deleted (same transaction).
        let expected = headers.contains_key(header::IF_MATCH).then_some(current);
        if let Some(d) = state.store.scim_delete_user(auth.client, id, received_at, expected, auth.meta.clone()).await? {
            close_connections(&state, &d).await?;
        }
        Ok(())
    }
    .await;
    match result {
        Ok(()) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(e) => Err(refused(&state, &auth, "delete", Some(id), e).await),
    }
}

pub(crate) fn meta_of_doc(resource_type: &str, location: &str) -> Json {
    json!({"resourceType": resource_type, "location": format!("{BASE}/{location}")})
}

fn service_provider_config_json() -> Json {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": MAX_PAGE},
        "changePassword": {"supported": false},
        "sort": {"supported": false},
        "etag": {"supported": true},
        "authenticationSchemes": [{"type": "oauthbearertoken", "name": "SCIM bearer token",
            "description": "An organisation's SCIM token (wst_...), issued by an admin", "primary": true}],
        "meta": meta_of_doc("ServiceProviderConfig", "ServiceProviderConfig"),
    })
}

async fn service_provider_config(_auth: ScimAuth) -> Response {
    scim_json(StatusCode::OK, &service_provider_config_json())
}

fn user_resource_type() -> Json {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
        "id": "User", "name": "User", "endpoint": "/Users", "description": "Workforce account",
        "schema": USER_SCHEMA, "schemaExtensions": [],
        "meta": meta_of_doc("ResourceType", "ResourceTypes/User"),
    })
}

async fn resource_types(_auth: ScimAuth) -> Response {
    let list = vec![user_resource_type(), crate::scim_groups::group_resource_type()];
    scim_json(
        StatusCode::OK,
        &json!({"schemas": [LIST_RESPONSE], "totalResults": list.len(), "startIndex": 1, "itemsPerPage": list.len(), "Resources": list}),
    )
}

async fn resource_type(_auth: ScimAuth, Path(name): Path<String>) -> ScimResult<Response> {
    match name.as_str() {
        "User" => Ok(scim_json(StatusCode::OK, &user_resource_type())),
        "Group" => Ok(scim_json(StatusCode::OK, &crate::scim_groups::group_resource_type())),
        _ => Err(ScimError::not_found()),
    }
}

pub(crate) fn attribute(
    name: &str,
    kind: &str,
    required: bool,
    case_exact: bool,
    mutability: &str,
    uniqueness: &str,
    description: &str,
) -> Json {
    json!({"name": name, "type": kind, "multiValued": false, "description": description, "required": required,
        "caseExact": case_exact, "mutability": mutability, "returned": "default", "uniqueness": uniqueness})
}

fn user_schema() -> Json {
    // Published read-only: a Ward role is one of a fixed set, which generic clients cannot
    // know (they would send arbitrary strings). Ward still honours a `roles` value on write
    // when it names clinician, nurse or staff, and refuses any other value or a change to or
    // from a privileged role (docs/identity.md).
    let mut value = attribute("value", "string", true, false, "readOnly", "none", "The role");
    value["canonicalValues"] = json!(["clinician", "nurse", "staff"]);
    let roles = json!({"name": "roles", "type": "complex", "multiValued": true, "required": false, "caseExact": false,
        "mutability": "readOnly", "returned": "default", "uniqueness": "none",
        "description": "The Ward role: clinician, nurse or staff through SCIM; admin and compliance_officer are granted in Ward and cannot be set or changed here",
        "subAttributes": [value, attribute("primary", "boolean", false, false, "readOnly", "none", "The role in force")]});
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": USER_SCHEMA, "name": "User", "description": "Workforce account",
        "attributes": [
            attribute("userName", "string", true, false, "readWrite", "server", "Login name (case-folded)"),
            attribute("displayName", "string", true, false, "readWrite", "none", "Name shown to others (defaults to userName on create)"),
            attribute("externalId", "string", false, true, "readWrite", "none", "The identity provider's id (unique in the organisation)"),
            attribute("active", "boolean", true, false, "readWrite", "none", "false deprovisions: disable, revoke sessions, wipe devices (defaults to true on create)"),
            roles,
            groups_attribute(),
        ],
        "meta": meta_of_doc("Schema", &format!("Schemas/{USER_SCHEMA}")),
    })
}

/// The User's `groups`: read-only (RFC 7643 §4.1.2), changed through the groups' members.
fn groups_attribute() -> Json {
    let sub = |name: &str, kind: &str, description: &str| {
        let mut a = attribute(name, kind, false, false, "readOnly", "none", description);
        if name == "$ref" {
            a["referenceTypes"] = json!(["Group"]);
        }
        a
    };
    json!({"name": "groups", "type": "complex", "multiValued": true, "required": false, "caseExact": false,
        "mutability": "readOnly", "returned": "default", "uniqueness": "none",
        "description": "The SCIM groups the account belongs to (change a group's members to change them)",
        "subAttributes": [sub("value", "string", "The group's id"), sub("$ref", "reference", "The group's URI"),
            sub("display", "string", "The group's display name"), sub("type", "string", "direct")]})
}

async fn schemas(_auth: ScimAuth) -> Response {
    let list = vec![user_schema(), crate::scim_groups::group_schema(), crate::scim_groups::group_extension_schema()];
    scim_json(
        StatusCode::OK,
        &json!({"schemas": [LIST_RESPONSE], "totalResults": list.len(), "startIndex": 1, "itemsPerPage": list.len(), "Resources": list}),
    )
}

async fn schema(_auth: ScimAuth, Path(uri): Path<String>) -> ScimResult<Response> {
    match uri.as_str() {
        USER_SCHEMA => Ok(scim_json(StatusCode::OK, &user_schema())),
        ward_domain::scim::GROUP_SCHEMA => Ok(scim_json(StatusCode::OK, &crate::scim_groups::group_schema())),
        crate::scim_groups::WARD_GROUP_SCHEMA => Ok(scim_json(StatusCode::OK, &crate::scim_groups::group_extension_schema())),
        _ => Err(ScimError::not_found()),
    }
}
