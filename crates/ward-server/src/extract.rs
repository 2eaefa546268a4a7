//! Extractors that turn every malformed request into a problem+json answer: JSON bodies
//! (content type, UTF-8, syntax, shape, unknown fields), path ids and query strings.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::problem::ApiError;

/// A JSON body (request) or response.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).and_then(|v| v.split(';').next()).is_some_and(|m| {
            let m = m.trim();
            m.eq_ignore_ascii_case("application/json") || m.to_ascii_lowercase().ends_with("+json")
        });
        if !is_json {
            return Err(ApiError::unsupported_media_type());
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::payload_too_large()
            } else {
                ApiError::malformed_json().detail("the body could not be read")
            }
        })?;
        parse_json(&bytes).map(Json)
    }
}

/// Parses JSON, describing failures by position and path only (never by value).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if std::str::from_utf8(bytes).is_err() {
        return Err(ApiError::malformed_json().detail("the body is not valid UTF-8"));
    }
    // Every request body is an object; serde would otherwise read a struct from an array of
    // its fields in declaration order, a form no client is meant to send.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(ApiError::invalid_body().detail("the body must be a JSON object, not an array"));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        // The path names fields Ward knows, except when the last step is an unknown field: that
        // name is the client's own text (it could carry PHI), so it is left out.
        let unknown = e.inner().to_string().starts_with("unknown field");
        let segments: Vec<_> = e.path().iter().collect();
        let known = &segments[..segments.len() - usize::from(unknown && !segments.is_empty())];
        let mut path = String::new();
        for s in known {
            if !path.is_empty() && !matches!(s, serde_path_to_error::Segment::Seq { .. }) {
                path.push('.');
            }
            path.push_str(&s.to_string());
        }
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let at = if path.is_empty() { "the top level".to_owned() } else { format!("`{path}`") };
                let what = if unknown { "an unknown field" } else { "a field that is missing or of the wrong type" };
                ApiError::invalid_body().detail(format!("{what} at {at}"))
            }
            _ => ApiError::malformed_json().detail(format!("syntax error at line {} column {}", inner.line(), inner.column())),
        }
    })?;
    // Anything after the value makes the body malformed too.
    de.end().map_err(|_| ApiError::malformed_json().detail("unexpected data after the JSON value"))?;
    Ok(value)
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Path parameters, with malformed ids answered as problem+json.
#[derive(Debug, Clone, Copy)]
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|_| ApiError::invalid_parameter().detail("a path parameter is not a valid id"))
    }
}

/// Query parameters, with malformed values answered as problem+json.
#[derive(Debug, Clone, Copy)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let q = parts.uri.query().unwrap_or_default();
        serde_urlencoded_parse(q).map(Query)
    }
}

fn serde_urlencoded_parse<T: DeserializeOwned>(q: &str) -> Result<T, ApiError> {
    axum::extract::Query::<T>::try_from_uri(&format!("/?{q}").parse().map_err(|_| ApiError::invalid_parameter())?)
        .map(|axum::extract::Query(v)| v)
        .map_err(|_| ApiError::invalid_parameter().detail("a query parameter is missing, unknown or malformed"))
}
