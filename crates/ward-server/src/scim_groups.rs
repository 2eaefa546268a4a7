//! SCIM Groups (RFC 7643 §4.2) under `/scim/v2/Groups`: create, read, list and search with
//! the Users' filter language, replace, patch (members by value selection, e.g.
//! `members[value eq "…"]`), delete, with ETags and conditional writes as for Users.
//!
//! A group's Ward binding is the extension attribute
//! `urn:ward:params:scim:schemas:extension:2.0:Group:role`: absent, the group is a plain
//! directory group; `clinician`, `nurse` or `staff`, membership grants that role
//! (docs/identity.md, "SCIM groups"; the rules live in the store). Group
//! names and members' names are the identity provider's data, never logged or audited.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value as Json, json};
use ward_domain::audit::AuditAction;
use ward_domain::ids::UserId;
use ward_domain::login::parse_label;
use ward_domain::role::Role;
use ward_domain::scim::filter::{AttrPath, AttrValue, Filter, Resource, Value};
use ward_domain::scim::{GROUP_SCHEMA, ScimType, patch};
use ward_store::{ScimGroup, ScimGroupFields, StoreError};

use crate::api::dto::ts;
use crate::app::AppState;
use crate::scim::{
    BASE, ListRequest, Projection, QueryParams, ScimAuth, ScimError, ScimResult, attribute, body_json, check_if_match, etag, field,
    list_page, meta_of_doc, query_list_request, read_query, refused_as, resource_response, search_request, touches,
};

/// The schema of Ward's Group extension: the role binding.
pub(crate) const WARD_GROUP_SCHEMA: &str = "urn:ward:params:scim:schemas:extension:2.0:Group";
/// How many times a write is computed again when the group changed meanwhile (no If-Match).
const WRITE_ATTEMPTS: usize = 3;

/// The representation without `meta` (also what PATCH edits).
fn group_attributes(g: &ScimGroup) -> Map<String, Json> {
    let mut m = Map::new();
    let schemas = if g.role.is_some() { json!([GROUP_SCHEMA, WARD_GROUP_SCHEMA]) } else { json!([GROUP_SCHEMA]) };
    m.insert("schemas".into(), schemas);
    m.insert("id".into(), json!(g.id.to_string()));
    if let Some(e) = &g.external_id {
        m.insert("externalId".into(), json!(e));
    }
    m.insert("displayName".into(), json!(g.display_name));
    let members: Vec<Json> = g
        .members
        .iter()
        .map(|u| json!({"value": u.user_id.to_string(), "$ref": format!("{BASE}/Users/{}", u.user_id), "type": "User"}))
        .collect();
    // An unassigned multi-valued attribute is left out (RFC 7643 §2.5).
    if !members.is_empty() {
        m.insert("members".into(), Json::Array(members));
    }
    if let Some(role) = g.role {
        m.insert(WARD_GROUP_SCHEMA.into(), json!({"role": role.as_str()}));
    }
    m
}

fn group_json(g: &ScimGroup) -> (Json, String) {
    let mut m = group_attributes(g);
    let tag = etag(&m);
    m.insert(
        "meta".into(),
        json!({"resourceType": "Group", "created": ts(g.created_at), "lastModified": ts(g.updated_at),
            "location": format!("{BASE}/Groups/{}", g.id), "version": tag}),
    );
    (Json::Object(m), tag)
}

fn group_response(status: StatusCode, g: &ScimGroup, projection: Option<&Projection>) -> Response {
    let (body, tag) = group_json(g);
    resource_response(status, body, &tag, &format!("Groups/{}", g.id), projection)
}

fn parse_id(id: &str) -> ScimResult<uuid::Uuid> {
    id.parse::<uuid::Uuid>().map_err(|_| ScimError::not_found())
}

/// Reads a Group body (POST, PUT, or the result of a PATCH). `current` supplies the binding
/// when the body leaves the extension out (a client that does not know the extension must not
/// unbind a group by omission).
fn group_fields(m: &Map<String, Json>, current: Option<&ScimGroup>) -> ScimResult<ScimGroupFields> {
    let schemas =
        field(m, "schemas").and_then(Json::as_array).ok_or_else(|| ScimError::bad(ScimType::InvalidSyntax, "schemas is required"))?;
    let is = |s: &Json, uri: &str| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(uri));
    if !schemas.iter().any(|s| is(s, GROUP_SCHEMA)) {
        return Err(ScimError::bad(ScimType::InvalidSyntax, "schemas must include the core Group schema"));
    }
    if schemas.iter().any(|s| !is(s, GROUP_SCHEMA) && !is(s, WARD_GROUP_SCHEMA)) {
        return Err(ScimError::bad(ScimType::InvalidValue, "schemas names a schema this service does not support"));
    }
    let display = match field(m, "displayName") {
        Some(Json::String(s)) => s,
        Some(_) => return Err(ScimError::bad(ScimType::InvalidValue, "displayName must be a string")),
        None => return Err(ScimError::bad(ScimType::InvalidValue, "displayName is required")),
    };
    let display_name = parse_label("displayName", display, 200).map_err(|e| ScimError::bad(ScimType::InvalidValue, e.to_string()))?;
    let external_id = match field(m, "externalId") {
        None => None,
        Some(Json::String(e)) if !e.is_empty() && e.len() <= 256 => Some(e.clone()),
        Some(_) => return Err(ScimError::bad(ScimType::InvalidValue, "externalId must be a string of 1 to 256 bytes")),
    };
    let members = match field(m, "members") {
        None => Vec::new(),
        Some(Json::Array(items)) => items.iter().map(member).collect::<ScimResult<Vec<_>>>()?,
        Some(_) => return Err(ScimError::bad(ScimType::InvalidValue, "members must be an array")),
    };
    let role = match field(m, WARD_GROUP_SCHEMA) {
        None => current.and_then(|c| c.role),
        Some(Json::Object(ext)) => match field(ext, "role") {
            None => None,
            Some(Json::String(r)) => {
                let role =
                    r.parse::<Role>().map_err(|_| ScimError::bad(ScimType::InvalidValue, "role: must be clinician, nurse or staff"))?;
                if !matches!(role, Role::Clinician | Role::Nurse | Role::Staff) {
                    return Err(ScimError::bad(
                        ScimType::Mutability,
                        "role: a role group grants clinician, nurse or staff; admin and compliance_officer are granted in Ward, not through SCIM",
                    ));
                }
                Some(role)
            }
            Some(_) => return Err(ScimError::bad(ScimType::InvalidValue, "role must be a string")),
        },
        Some(_) => return Err(ScimError::bad(ScimType::InvalidValue, "the Ward Group extension must be an object")),
    };
    Ok(ScimGroupFields { display_name, external_id, role, members })
}

/// One `members` value: a user of the organisation (nested groups are not supported).
fn member(v: &Json) -> ScimResult<UserId> {
    let bad = |why: &'static str| ScimError::bad(ScimType::InvalidValue, why);
    let Json::Object(m) = v else { return Err(bad("members: each value must be an object")) };
    if field(m, "type").and_then(Json::as_str).is_some_and(|t| !t.eq_ignore_ascii_case("User")) {
        return Err(bad("members: only users can be members (nested groups are not supported)"));
    }
    let id = field(m, "value").and_then(Json::as_str).ok_or_else(|| bad("members: each value needs a value (a user id)"))?;
    id.parse::<uuid::Uuid>().map(UserId).map_err(|_| bad("members: a value names no user of this organisation"))
}

/// A group as filters see it.
struct Filterable<'a>(&'a ScimGroup);

impl Resource for Filterable<'_> {
    fn values(&self, path: &AttrPath) -> Vec<AttrValue> {
        let g = self.0;
        let s = |v: &str, case_exact| vec![AttrValue { value: Value::Str(v.to_owned()), case_exact }];
        if path.uri.as_deref().is_some_and(|u| u.eq_ignore_ascii_case(WARD_GROUP_SCHEMA)) {
            return if path.is("role", None) { g.role.map(|r| s(r.as_str(), false)).unwrap_or_default() } else { Vec::new() };
        }
        if path.uri.as_deref().is_some_and(|u| !u.eq_ignore_ascii_case(GROUP_SCHEMA)) {
            return Vec::new();
        }
        if path.is("id", None) {
            s(&g.id.to_string(), true)
        } else if path.is("displayName", None) {
            s(&g.display_name, false)
        } else if path.is("externalId", None) {
            g.external_id.as_deref().map(|e| s(e, true)).unwrap_or_default()
        } else if path.is("members", None) || path.is("members", Some("value")) {
            g.members.iter().flat_map(|m| s(&m.user_id.to_string(), false)).collect()
        } else if path.is("meta", Some("created")) {
            s(&ts(g.created_at), true)
        } else if path.is("meta", Some("lastModified")) {
            s(&ts(g.updated_at), true)
        } else if path.is("meta", Some("resourceType")) {
            s("Group", false)
        } else {
            Vec::new()
        }
    }
}

/// The groups a list or search matches, in order.
pub(crate) async fn matching_groups(state: &AppState, auth: &ScimAuth, filter: Option<&Filter>) -> ScimResult<Vec<Json>> {
    let groups = state.store.scim_groups(auth.client.org).await?;
    Ok(groups.iter().filter(|g| filter.is_none_or(|f| f.matches(&Filterable(g)))).map(|g| group_json(g).0).collect())
}

async fn list(state: &AppState, auth: &ScimAuth, req: ListRequest) -> ScimResult<Response> {
    let matching = matching_groups(state, auth, req.filter.as_ref()).await?;
    Ok(list_page(&req, matching))
}

/// `GET /scim/v2/Groups?filter=…&startIndex=…&count=…&attributes=…&excludedAttributes=…`.
pub(crate) async fn list_groups(State(state): State<AppState>, auth: ScimAuth, params: QueryParams) -> ScimResult<Response> {
    list(&state, &auth, query_list_request(params)?).await
}

/// `POST /scim/v2/Groups/.search`.
pub(crate) async fn search_groups(State(state): State<AppState>, auth: ScimAuth, headers: HeaderMap, body: Bytes) -> ScimResult<Response> {
    let req = search_request(&headers, &body)?;
    list(&state, &auth, req).await
}

/// `GET /scim/v2/Groups/{id}`; `If-None-Match` with the current version answers 304.
pub(crate) async fn get_group(
    State(state): State<AppState>,
    auth: ScimAuth,
    Path(id): Path<String>,
    headers: HeaderMap,
    params: QueryParams,
) -> ScimResult<Response> {
    let (_, projection) = read_query(params)?;
    let g = state.store.scim_group(auth.client.org, parse_id(&id)?).await?;
    let (_, tag) = group_json(&g);
    if let Some(res) = crate::scim::not_modified(&headers, &tag) {
        return Ok(res);
    }
    Ok(group_response(StatusCode::OK, &g, Some(&projection)))
}

/// `POST /scim/v2/Groups`.
pub(crate) async fn create_group(State(state): State<AppState>, auth: ScimAuth, headers: HeaderMap, body: Bytes) -> ScimResult<Response> {
    let result = async {
        let m = body_json(&headers, &body)?;
        let f = group_fields(&m, None)?;
        Ok(state.store.scim_create_group(auth.client, f, auth.meta.clone()).await?)
    }
    .await;
    match result {
        Ok(g) => Ok(group_response(StatusCode::CREATED, &g, None)),
        Err(e) => Err(refused_as(&state, &auth, AuditAction::ScimGroup, "create", None, e).await),
    }
}

async fn write_group(
    state: &AppState,
    auth: &ScimAuth,
    id: uuid::Uuid,
    headers: &HeaderMap,
    body: &Bytes,
    op: &'static str,
) -> ScimResult<ScimGroup> {
    let m = body_json(headers, body)?;
    let ops = if op == "patch" {
        let ops = patch::parse_request(&Json::Object(m.clone())).map_err(|e| ScimError::bad(e.scim_type, e.detail))?;
        if ops.iter().any(|o| touches(o, "members") && o.path.as_ref().is_some_and(|p| p.sub.is_some())) {
            return Err(ScimError::bad(ScimType::Mutability, "members: a member's sub-attributes cannot be changed"));
        }
        Some(ops)
    } else {
        None
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let current = state.store.scim_group(auth.client.org, id).await?;
        let attrs = group_attributes(&current);
        check_if_match(headers, &etag(&attrs))?;
        let next = match &ops {
            Some(ops) => {
                let mut edited = attrs;
                patch::apply_with(&mut edited, GROUP_SCHEMA, &[WARD_GROUP_SCHEMA], ops)
                    .map_err(|e| ScimError::bad(e.scim_type, e.detail))?;
                // The representation carries the extension when bound: gone after the
                // operations, it was removed (unlike a PUT that leaves it out).
                if field(&edited, WARD_GROUP_SCHEMA).is_none() {
                    edited.insert(WARD_GROUP_SCHEMA.into(), json!({}));
                }
                edited
            }
            None => m.clone(),
        };
        if field(&next, "id").and_then(Json::as_str).is_some_and(|v| v != id.to_string()) {
            return Err(ScimError::bad(ScimType::Mutability, "id cannot be changed"));
        }
        let f = group_fields(&next, Some(&current))?;
        match state.store.scim_update_group(auth.client, current, f, op, auth.meta.clone()).await {
            Ok(g) => return Ok(g),
            Err(StoreError::Changed) if headers.get(header::IF_MATCH).is_none() && attempt < WRITE_ATTEMPTS => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// `PUT /scim/v2/Groups/{id}`: replaces the name, external id and members.
pub(crate) async fn replace_group(
    State(state): State<AppState>,
    auth: ScimAuth,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ScimResult<Response> {
    let id = parse_id(&id)?;
    match write_group(&state, &auth, id, &headers, &body, "replace").await {
        Ok(g) => Ok(group_response(StatusCode::OK, &g, None)),
        Err(e) => Err(refused_as(&state, &auth, AuditAction::ScimGroup, "replace", Some(("scim_group", id)), e).await),
    }
}

/// `PATCH /scim/v2/Groups/{id}`: operations applied to the current representation, the result
/// checked as a PUT of it would be.
pub(crate) async fn patch_group(
    State(state): State<AppState>,
    auth: ScimAuth,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ScimResult<Response> {
    let id = parse_id(&id)?;
    match write_group(&state, &auth, id, &headers, &body, "patch").await {
        Ok(g) => Ok(group_response(StatusCode::OK, &g, None)),
        Err(e) => Err(refused_as(&state, &auth, AuditAction::ScimGroup, "patch", Some(("scim_group", id)), e).await),
    }
}

/// `DELETE /scim/v2/Groups/{id}` (204): its members leave it.
pub(crate) async fn delete_group(
    State(state): State<AppState>,
    auth: ScimAuth,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ScimResult<Response> {
    let id = parse_id(&id)?;
    let result = async {
        let current = state.store.scim_group(auth.client.org, id).await?;
        check_if_match(&headers, &etag(&group_attributes(&current)))?;
        let expected = headers.contains_key(header::IF_MATCH).then_some(current);
        state.store.scim_delete_group(auth.client, id, expected, auth.meta.clone()).await?;
        Ok(())
    }
    .await;
    match result {
        Ok(()) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(e) => Err(refused_as(&state, &auth, AuditAction::ScimGroup, "delete", Some(("scim_group", id)), e).await),
    }
}

pub(crate) fn group_resource_type() -> Json {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
        "id": "Group", "name": "Group", "endpoint": "/Groups",
        "description": "A group of workforce accounts; a role group's membership grants a clinical role",
        "schema": GROUP_SCHEMA, "schemaExtensions": [{"schema": WARD_GROUP_SCHEMA, "required": false}],
        "meta": meta_of_doc("ResourceType", "ResourceTypes/Group"),
    })
}

pub(crate) fn group_schema() -> Json {
    let sub = |name: &str, kind: &str, mutability: &str, description: &str| {
        let mut a = attribute(name, kind, name == "value", false, mutability, "none", description);
        if name == "$ref" {
            a["referenceTypes"] = json!(["User"]);
        }
        a
    };
    let mut member_type = sub("type", "string", "immutable", "User (nested groups are not supported)");
    member_type["canonicalValues"] = json!(["User"]);
    let members = json!({"name": "members", "type": "complex", "multiValued": true, "required": false, "caseExact": false,
        "mutability": "readWrite", "returned": "default", "uniqueness": "none",
        "description": "The group's members: users of the organisation",
        "subAttributes": [sub("value", "string", "immutable", "The user's id"), sub("$ref", "reference", "immutable", "The user's URI"),
            member_type]});
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": GROUP_SCHEMA, "name": "Group", "description": "Group",
        "attributes": [
            attribute("displayName", "string", true, false, "readWrite", "server", "The group's name (unique in the organisation)"),
            attribute("externalId", "string", false, true, "readWrite", "none", "The identity provider's id (unique in the organisation)"),
            members,
        ],
        "meta": meta_of_doc("Schema", &format!("Schemas/{GROUP_SCHEMA}")),
    })
}

pub(crate) fn group_extension_schema() -> Json {
    let mut role = attribute(
        "role",
        "string",
        false,
        false,
        "readWrite",
        "none",
        "The Ward role membership grants (clinician, nurse or staff); absent for a plain group. Members follow a change",
    );
    role["canonicalValues"] = json!(["clinician", "nurse", "staff"]);
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": WARD_GROUP_SCHEMA, "name": "WardGroup", "description": "Ward's binding of a group to a role",
        "attributes": [role],
        "meta": meta_of_doc("Schema", &format!("Schemas/{WARD_GROUP_SCHEMA}")),
    })
}
