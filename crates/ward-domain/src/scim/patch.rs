//! SCIM PATCH (RFC 7644 §3.5.2): the request parsed into operations, and their application to
//! a resource's JSON representation. The service applies the operations to the resource as it
//! is, then validates the result exactly as a PUT of it would be, so PATCH cannot reach a
//! state PUT could not.

use serde_json::{Map, Value as Json};

use super::filter::{AttrPath, AttrValue, Filter, FilterError, Resource, Value};
use super::{PATCH_OP, ScimType};

/// Most operations one PATCH may carry.
pub const MAX_OPERATIONS: usize = 100;

/// What an operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// Adds a value (appends to a multi-valued attribute).
    Add,
    /// Replaces a value.
    Replace,
    /// Removes a value.
    Remove,
}

/// One operation.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchOp {
    /// What it does.
    pub kind: PatchKind,
    /// Where; `None` means the value is an object of attributes.
    pub path: Option<AttrPath>,
    /// A value selection on a multi-valued attribute (`members[value eq "…"]`): the operation
    /// applies to the elements it matches. With it, `path.sub` is the sub-attribute after `]`.
    pub select: Option<Filter>,
    /// The value (absent for remove).
    pub value: Option<Json>,
}

/// Why a PATCH was refused: the SCIM error type and a detail that names no value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchError {
    /// The `scimType`.
    pub scim_type: ScimType,
    /// A detail naming the operation's index and the rule.
    pub detail: String,
}

impl PatchError {
    fn new(scim_type: ScimType, detail: impl Into<String>) -> PatchError {
        PatchError { scim_type, detail: detail.into() }
    }
}

impl From<FilterError> for PatchError {
    fn from(e: FilterError) -> PatchError {
        PatchError::new(ScimType::InvalidPath, e.to_string())
    }
}

/// Parses a PATCH request body (already JSON).
pub fn parse_request(body: &Json) -> Result<Vec<PatchOp>, PatchError> {
    let obj = body.as_object().ok_or_else(|| PatchError::new(ScimType::InvalidSyntax, "the body must be a JSON object"))?;
    let schemas = obj.get("schemas").and_then(Json::as_array);
    if !schemas.is_some_and(|s| s.len() == 1 && s[0].as_str() == Some(PATCH_OP)) {
        return Err(PatchError::new(ScimType::InvalidSyntax, format!("schemas must be [\"{PATCH_OP}\"]")));
    }
    let ops = obj
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("Operations"))
        .and_then(|(_, v)| v.as_array())
        .ok_or_else(|| PatchError::new(ScimType::InvalidSyntax, "Operations must be an array"))?;
    if ops.is_empty() || ops.len() > MAX_OPERATIONS {
        return Err(PatchError::new(ScimType::InvalidSyntax, format!("Operations must hold 1 to {MAX_OPERATIONS} operations")));
    }
    ops.iter()
        .enumerate()
        .map(|(i, op)| {
            let op = op.as_object().ok_or_else(|| PatchError::new(ScimType::InvalidSyntax, format!("operation {i} is not an object")))?;
            let field = |name: &str| op.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v);
            let kind = match field("op").and_then(Json::as_str).map(str::to_ascii_lowercase).as_deref() {
                Some("add") => PatchKind::Add,
                Some("replace") => PatchKind::Replace,
                Some("remove") => PatchKind::Remove,
                _ => return Err(PatchError::new(ScimType::InvalidSyntax, format!("operation {i}: op must be add, replace or remove"))),
            };
            let (path, select) = match field("path") {
                None | Some(Json::Null) => (None, None),
                Some(Json::String(p)) => {
                    let (path, select) =
                        parse_path(p).map_err(|e| PatchError::new(ScimType::InvalidPath, format!("operation {i}: {e}")))?;
                    (Some(path), select)
                }
                Some(_) => return Err(PatchError::new(ScimType::InvalidPath, format!("operation {i}: path must be a string"))),
            };
            let value = field("value").cloned();
            match (kind, &path, &value) {
                (PatchKind::Remove, None, _) => Err(PatchError::new(ScimType::NoTarget, format!("operation {i}: remove needs a path"))),
                (PatchKind::Add | PatchKind::Replace, _, None) => {
                    Err(PatchError::new(ScimType::InvalidValue, format!("operation {i}: add and replace need a value")))
                }
                (PatchKind::Add | PatchKind::Replace, None, Some(v)) if !v.is_object() => Err(PatchError::new(
                    ScimType::InvalidValue,
                    format!("operation {i}: without a path the value must be an object of attributes"),
                )),
                _ => Ok(PatchOp { kind, path, select, value }),
            }
        })
        .collect()
}

/// Applies the operations in order to `resource` (the resource's JSON, without `meta`).
/// `schema` is the resource's core schema URI: a path prefixed with it means the same as the
/// bare name. Attribute names match ignoring case; the stored key keeps its first spelling.
pub fn apply(resource: &mut Map<String, Json>, schema: &str, ops: &[PatchOp]) -> Result<(), PatchError> {
    apply_with(resource, schema, &[], ops)
}

/// [`apply`] for a resource with schema extensions: a path prefixed with an extension's URI
/// (`urn:…:Group:role`) names an attribute of the object the resource keeps under that URI.
pub fn apply_with(resource: &mut Map<String, Json>, schema: &str, extensions: &[&str], ops: &[PatchOp]) -> Result<(), PatchError> {
    for (i, op) in ops.iter().enumerate() {
        let path = op.path.as_ref().map(|p| in_extension(p, extensions, i)).transpose()?;
        // Removing an attribute of an extension the resource does not carry: the state asked
        // for already holds.
        if op.kind == PatchKind::Remove
            && let Some(p) = &path
            && extensions.iter().any(|e| e.eq_ignore_ascii_case(&p.attr))
            && key_of(resource, &p.attr).is_none()
        {
            continue;
        }
        match (&path, op.kind) {
            (None, _) => {
                let Some(Json::Object(attrs)) = &op.value else {
                    return Err(PatchError::new(ScimType::InvalidValue, format!("operation {i}: value must be an object")));
                };
                for (k, v) in attrs {
                    let path = if extensions.iter().any(|e| e.eq_ignore_ascii_case(k)) {
                        AttrPath::new(k)
                    } else {
                        let p = AttrPath::parse(k).map_err(|e| PatchError::new(ScimType::InvalidPath, format!("operation {i}: {e}")))?;
                        in_extension(&p, extensions, i)?
                    };
                    set(resource, schema, &path, v.clone(), op.kind, i)?;
                }
            }
            (Some(path), kind) if op.select.is_some() => {
                let select = op.select.as_ref().ok_or_else(|| PatchError::new(ScimType::InvalidPath, "unreachable"))?;
                selected(resource, schema, path, select, kind, op.value.as_ref(), i)?;
            }
            (Some(path), PatchKind::Remove) => remove(resource, schema, path, op.value.as_ref(), i)?,
            (Some(path), kind) => set(resource, schema, path, op.value.clone().unwrap_or(Json::Null), kind, i)?,
        }
    }
    Ok(())
}

/// An extension attribute's path (`urn:…:Ext:attr`) as the path of a sub-attribute of the
/// object kept under the extension's URI; other paths as they are.
fn in_extension(path: &AttrPath, extensions: &[&str], i: usize) -> Result<AttrPath, PatchError> {
    // The extension's URI alone names its whole object (it parses as `urn:…:2.0` + `Group`).
    if path.sub.is_none()
        && let Some(uri) = &path.uri
        && let Some(ext) = extensions.iter().find(|e| e.eq_ignore_ascii_case(&format!("{uri}:{}", path.attr)))
    {
        return Ok(AttrPath::new(ext));
    }
    let Some(ext) = path.uri.as_deref().and_then(|u| extensions.iter().find(|e| e.eq_ignore_ascii_case(u))) else {
        return Ok(path.clone());
    };
    if path.sub.is_some() {
        return Err(PatchError::new(ScimType::InvalidPath, format!("operation {i}: the extension's attributes have no sub-attributes")));
    }
    Ok(AttrPath { uri: None, attr: (*ext).to_owned(), sub: Some(path.attr.clone()) })
}

fn check_uri(path: &AttrPath, schema: &str, i: usize) -> Result<(), PatchError> {
    match &path.uri {
        Some(uri) if !uri.eq_ignore_ascii_case(schema) => {
            Err(PatchError::new(ScimType::InvalidPath, format!("operation {i}: the path names a schema this resource does not have")))
        }
        _ => Ok(()),
    }
}

fn key_of(map: &Map<String, Json>, name: &str) -> Option<String> {
    map.keys().find(|k| k.eq_ignore_ascii_case(name)).cloned()
}

fn set(resource: &mut Map<String, Json>, schema: &str, path: &AttrPath, value: Json, kind: PatchKind, i: usize) -> Result<(), PatchError> {
    check_uri(path, schema, i)?;
    if path.attr.eq_ignore_ascii_case("schemas") || path.attr.eq_ignore_ascii_case("meta") || path.attr.eq_ignore_ascii_case("id") {
        return Err(PatchError::new(ScimType::Mutability, format!("operation {i}: {} cannot be changed", path.attr)));
    }
    let key = key_of(resource, &path.attr).unwrap_or_else(|| path.attr.clone());
    match &path.sub {
        None => {
            let slot = resource.entry(key).or_insert(Json::Null);
            match (kind, slot, value) {
                (PatchKind::Add, Json::Array(have), Json::Array(more)) => {
                    for v in more {
                        if !have.iter().any(|h| same_element(h, &v)) {
                            have.push(v);
                        }
                    }
                }
                (PatchKind::Add, Json::Object(have), Json::Object(more)) => have.extend(more),
                (_, slot, value) => *slot = value,
            }
        }
        Some(sub) => {
            let slot = resource.entry(key).or_insert_with(|| Json::Object(Map::new()));
            let Json::Object(inner) = slot else {
                return Err(PatchError::new(ScimType::InvalidPath, format!("operation {i}: {} has no sub-attributes", path.attr)));
            };
            let sub_key = key_of(inner, sub).unwrap_or_else(|| sub.clone());
            inner.insert(sub_key, value);
        }
    }
    Ok(())
}

/// A PATCH path: an attribute path, optionally with a value selection and a sub-attribute
/// after it (`members[value eq "…"]`, `emails[type eq "work"].value`).
pub fn parse_path(text: &str) -> Result<(AttrPath, Option<Filter>), FilterError> {
    let Some(open) = text.find('[') else { return Ok((AttrPath::parse(text)?, None)) };
    let close = text.rfind(']').ok_or(FilterError::Syntax { at: text.len(), expected: "`]`" })?;
    if close < open {
        return Err(FilterError::Syntax { at: close, expected: "`[` before `]`" });
    }
    let mut path = AttrPath::parse(&text[..open])?;
    if path.sub.is_some() {
        return Err(FilterError::Syntax { at: open, expected: "a multi-valued attribute before `[`" });
    }
    let select = Filter::parse(&text[open + 1..close]).map_err(|e| shift(e, open + 1))?;
    let rest = &text[close + 1..];
    if !rest.is_empty() {
        let sub = rest.strip_prefix('.').filter(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        let sub = sub.ok_or(FilterError::Syntax { at: close + 1, expected: "the end of the path or `.subAttribute`" })?;
        path.sub = Some(sub.to_owned());
    }
    Ok((path, Some(select)))
}

/// Reports an error inside a value selection at its offset in the whole path.
fn shift(e: FilterError, by: usize) -> FilterError {
    match e {
        FilterError::Syntax { at, expected } => FilterError::Syntax { at: at + by, expected },
        FilterError::Unsupported { at, what } => FilterError::Unsupported { at: at + by, what },
        other => other,
    }
}

/// An element of a multi-valued attribute, as a value selection sees it: its sub-attributes,
/// strings compared ignoring case.
struct Element<'a>(&'a Json);

impl Resource for Element<'_> {
    fn values(&self, path: &AttrPath) -> Vec<AttrValue> {
        let Json::Object(m) = self.0 else { return Vec::new() };
        let Some(v) = key_of(m, &path.attr).and_then(|k| m.get(&k)) else { return Vec::new() };
        let v = match (v, &path.sub) {
            (Json::Object(inner), Some(sub)) => match key_of(inner, sub).and_then(|k| inner.get(&k)) {
                Some(v) => v,
                None => return Vec::new(),
            },
            (_, Some(_)) => return Vec::new(),
            (v, None) => v,
        };
        let value = match v {
            Json::String(s) => Value::Str(s.clone()),
            Json::Bool(b) => Value::Bool(*b),
            Json::Number(n) => n.as_f64().map_or(Value::Null, Value::Num),
            _ => Value::Null,
        };
        vec![AttrValue { value, case_exact: false }]
    }
}

/// An operation on the elements of a multi-valued attribute a value selection matches.
/// Removing what matches nothing is no error (the outcome asked for holds); replacing or
/// adding to nothing is `noTarget` (RFC 7644 §3.5.2.3).
fn selected(
    resource: &mut Map<String, Json>,
    schema: &str,
    path: &AttrPath,
    select: &Filter,
    kind: PatchKind,
    value: Option<&Json>,
    i: usize,
) -> Result<(), PatchError> {
    check_uri(path, schema, i)?;
    let no_target = || PatchError::new(ScimType::NoTarget, format!("operation {i}: the value selection matches no value"));
    let key = key_of(resource, &path.attr);
    let items = match key.as_ref().and_then(|k| resource.get_mut(k)) {
        Some(Json::Array(items)) => items,
        Some(_) => {
            return Err(PatchError::new(ScimType::InvalidPath, format!("operation {i}: {} is not multi-valued", path.attr)));
        }
        None if kind == PatchKind::Remove => return Ok(()),
        None => return Err(no_target()),
    };
    match (kind, &path.sub) {
        (PatchKind::Remove, None) => items.retain(|e| !select.matches(&Element(e))),
        (PatchKind::Remove, Some(sub)) => {
            for e in items.iter_mut().filter(|e| select.matches(&Element(e))) {
                if let Json::Object(m) = e
                    && let Some(k) = key_of(m, sub)
                {
                    m.remove(&k);
                }
            }
        }
        (_, sub) => {
            let value = value.cloned().unwrap_or(Json::Null);
            let mut hit = false;
            for e in items.iter_mut().filter(|e| select.matches(&Element(e))) {
                hit = true;
                match (sub, &mut *e, &value) {
                    (Some(sub), Json::Object(m), v) => {
                        let k = key_of(m, sub).unwrap_or_else(|| sub.clone());
                        m.insert(k, v.clone());
                    }
                    (None, Json::Object(m), Json::Object(more)) if kind == PatchKind::Add => m.extend(more.clone()),
                    (None, e, v) => *e = v.clone(),
                    (Some(_), _, _) => {
                        return Err(PatchError::new(ScimType::InvalidPath, format!("operation {i}: the values have no sub-attributes")));
                    }
                }
            }
            if !hit {
                return Err(no_target());
            }
        }
    }
    Ok(())
}

fn remove(resource: &mut Map<String, Json>, schema: &str, path: &AttrPath, value: Option<&Json>, i: usize) -> Result<(), PatchError> {
    check_uri(path, schema, i)?;
    let no_target = || PatchError::new(ScimType::NoTarget, format!("operation {i}: the path matches no value"));
    let key = key_of(resource, &path.attr).ok_or_else(no_target)?;
    match &path.sub {
        // Some identity providers name the elements to remove in the value
        // (`{"op": "remove", "path": "members", "value": [{"value": "…"}]}`): only those go.
        None if value.is_some_and(Json::is_array) => {
            let gone = value.and_then(Json::as_array).cloned().unwrap_or_default();
            if let Some(Json::Array(items)) = resource.get_mut(&key) {
                items.retain(|e| !gone.iter().any(|g| same_element(e, g)));
            }
        }
        None => {
            resource.remove(&key);
        }
        Some(sub) => {
            let Some(Json::Object(inner)) = resource.get_mut(&key) else { return Err(no_target()) };
            let sub_key = key_of(inner, sub).ok_or_else(no_target)?;
            inner.remove(&sub_key);
        }
    }
    Ok(())
}

/// Two elements of a multi-valued attribute are the same when their `value`s are (ignoring
/// case), or, without one, when they are equal.
fn same_element(a: &Json, b: &Json) -> bool {
    let value = |j: &Json| j.as_object().and_then(|m| key_of(m, "value").and_then(|k| m.get(&k).cloned()));
    match (value(a), value(b)) {
        (Some(Json::String(x)), Some(Json::String(y))) => x.eq_ignore_ascii_case(&y),
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::USER_SCHEMA;
    use serde_json::json;

    fn req(ops: Json) -> Json {
        json!({"schemas": [PATCH_OP], "Operations": ops})
    }

    fn user() -> Map<String, Json> {
        json!({"userName": "bob", "active": true, "name": {"givenName": "Bob"}, "emails": [{"value": "a@x"}]}).as_object().cloned().unwrap()
    }

    #[test]
    fn add_replace_remove_with_and_without_paths() {
        let ops = parse_request(&req(json!([
            {"op": "Replace", "path": "active", "value": false},
            {"op": "add", "path": "name.familyName", "value": "Jones"},
            {"op": "replace", "value": {"displayName": "Dr Jones", "NAME.givenName": "Robert"}},
            {"op": "add", "path": "emails", "value": [{"value": "b@x"}]},
            {"op": "remove", "path": "urn:ietf:params:scim:schemas:core:2.0:User:externalId2"},
        ])))
        .unwrap();
        let mut u = user();
        let err = apply(&mut u, USER_SCHEMA, &ops).unwrap_err();
        assert_eq!(err.scim_type, ScimType::NoTarget);
        let mut u = user();
        apply(&mut u, USER_SCHEMA, &ops[..4]).unwrap();
        assert_eq!(
            Json::Object(u),
            json!({"userName": "bob", "active": false, "displayName": "Dr Jones",
                "name": {"givenName": "Robert", "familyName": "Jones"}, "emails": [{"value": "a@x"}, {"value": "b@x"}]})
        );
    }

    #[test]
    fn malformed_requests_get_their_scim_type() {
        let cases = [
            (json!([]), ScimType::InvalidSyntax),
            (json!([{"op": "move", "path": "a"}]), ScimType::InvalidSyntax),
            (json!([{"op": "remove"}]), ScimType::NoTarget),
            (json!([{"op": "add", "path": "a"}]), ScimType::InvalidValue),
            (json!([{"op": "add", "value": 3}]), ScimType::InvalidValue),
            (json!([{"op": "add", "path": "emails[type eq \"work\"", "value": "x"}]), ScimType::InvalidPath),
            (json!([{"op": "add", "path": "emails[type zz \"work\"]", "value": "x"}]), ScimType::InvalidPath),
            (json!([{"op": "add", "path": "emails[type eq \"work\"]x", "value": "x"}]), ScimType::InvalidPath),
            (json!([{"op": "add", "path": "a..b", "value": "x"}]), ScimType::InvalidPath),
            (json!([{"op": "add", "path": 7, "value": "x"}]), ScimType::InvalidPath),
            (json!("nope"), ScimType::InvalidSyntax),
        ];
        for (ops, want) in cases {
            assert_eq!(parse_request(&req(ops.clone())).unwrap_err().scim_type, want, "{ops}");
        }
        assert_eq!(parse_request(&json!({"Operations": []})).unwrap_err().scim_type, ScimType::InvalidSyntax);
        let ops = parse_request(&req(json!([{"op": "replace", "path": "id", "value": "x"}]))).unwrap();
        assert_eq!(apply(&mut user(), USER_SCHEMA, &ops).unwrap_err().scim_type, ScimType::Mutability);
        let ops = parse_request(&req(json!([{"op": "replace", "path": "urn:other:schema:active", "value": false}]))).unwrap();
        assert_eq!(apply(&mut user(), USER_SCHEMA, &ops).unwrap_err().scim_type, ScimType::InvalidPath);
    }

    #[test]
    fn value_selections_pick_elements_of_a_multi_valued_attribute() {
        let group = || {
            json!({"displayName": "Nurses", "members": [{"value": "A1"}, {"value": "b2", "display": "B"}, {"value": "c3"}]})
                .as_object()
                .cloned()
                .unwrap()
        };
        let run = |ops: Json| {
            let mut g = group();
            let ops = parse_request(&req(ops))?;
            apply(&mut g, "urn:ietf:params:scim:schemas:core:2.0:Group", &ops).map(|()| g.get("members").cloned().unwrap_or(Json::Null))
        };
        let values = |m: Json| m.as_array().unwrap().iter().map(|e| e["value"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
        assert_eq!(values(run(json!([{"op": "remove", "path": "members[value eq \"a1\"]"}])).unwrap()), ["b2", "c3"]);
        assert_eq!(values(run(json!([{"op": "remove", "path": "members[value eq \"zz\"]"}])).unwrap()), ["A1", "b2", "c3"]);
        assert_eq!(values(run(json!([{"op": "remove", "path": "members", "value": [{"value": "c3"}, {"value": "B2"}]}])).unwrap()), ["A1"]);
        assert_eq!(run(json!([{"op": "remove", "path": "members"}])).unwrap(), Json::Null);
        let r = run(json!([{"op": "replace", "path": "members[value eq \"b2\"].display", "value": "Bee"}])).unwrap();
        assert_eq!(r[1], json!({"value": "b2", "display": "Bee"}));
        let e = run(json!([{"op": "replace", "path": "members[value eq \"zz\"].display", "value": "x"}])).unwrap_err();
        assert_eq!(e.scim_type, ScimType::NoTarget);
        let e = run(json!([{"op": "remove", "path": "displayName[value eq \"x\"]"}])).unwrap_err();
        assert_eq!(e.scim_type, ScimType::InvalidPath);
        assert_eq!(
            values(run(json!([{"op": "add", "path": "members", "value": [{"value": "d4"}, {"value": "A1"}]}])).unwrap()),
            ["A1", "b2", "c3", "d4"]
        );
    }

    #[test]
    fn extension_paths_reach_the_extension_object() {
        let ext = "urn:ward:params:scim:schemas:extension:2.0:Group";
        let group = "urn:ietf:params:scim:schemas:core:2.0:Group";
        let mut g = json!({"displayName": "N"}).as_object().cloned().unwrap();
        let ops = parse_request(&req(json!([{"op": "add", "path": format!("{ext}:role"), "value": "nurse"}]))).unwrap();
        apply_with(&mut g, group, &[ext], &ops).unwrap();
        assert_eq!(g[ext], json!({"role": "nurse"}));
        let ops = parse_request(&req(json!([{"op": "replace", "value": {ext: {"role": "staff"}}}]))).unwrap();
        apply_with(&mut g, group, &[ext], &ops).unwrap();
        assert_eq!(g[ext], json!({"role": "staff"}));
        let ops = parse_request(&req(json!([{"op": "remove", "path": format!("{ext}:role")}]))).unwrap();
        apply_with(&mut g, group, &[ext], &ops).unwrap();
        assert_eq!(g[ext], json!({}));
        assert_eq!(apply(&mut g, group, &ops).unwrap_err().scim_type, ScimType::InvalidPath, "unknown without the extension");
        let ops = parse_request(&req(json!([{"op": "add", "path": ext, "value": {"role": "clinician"}}]))).unwrap();
        apply_with(&mut g, group, &[ext], &ops).unwrap();
        assert_eq!(g[ext], json!({"role": "clinician"}));
        let ops = parse_request(&req(json!([{"op": "remove", "path": ext}]))).unwrap();
        apply_with(&mut g, group, &[ext], &ops).unwrap();
        assert!(g.get(ext).is_none());
        let ops = parse_request(&req(json!([{"op": "remove", "path": format!("{ext}:role")}]))).unwrap();
        apply_with(&mut g, group, &[ext], &ops).unwrap();
    }
}
