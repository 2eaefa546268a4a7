//! Encrypted attachments: `/api/v1/conversations/{id}/attachments`. Only members of the
//! conversation may upload or download, exactly as for reading its messages; anyone else gets
//! 404. The file name travels in the `X-File-Name` header (percent-encoded UTF-8), never in the
//! URL, so that it cannot end up in access logs.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use percent_encoding::{NON_ALPHANUMERIC, percent_decode, utf8_percent_encode};
use ward_domain::ids::{AttachmentId, ConversationId};
use ward_domain::login::parse_label;
use ward_store::NewAttachment;

use super::dto::AttachmentView;
use crate::app::AppState;
use crate::attachments::too_large;
use crate::auth::{Auth, Meta};
use crate::extract::{Json, Path};
use crate::problem::{ApiError, ApiResult, Problem};

pub(crate) fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(upload_attachment))
        .routes(utoipa_axum::routes!(download_attachment))
}

/// The header that carries an upload's file name.
pub(crate) const FILE_NAME_HEADER: &str = "x-file-name";

/// The raw bytes of an attachment.
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)]
struct AttachmentContent(Vec<u8>);

fn parse_file_name(v: &HeaderValue) -> ApiResult<String> {
    let bad = || ApiError::validation_failed().detail("X-File-Name must be percent-encoded UTF-8");
    let decoded = percent_decode(v.as_bytes()).decode_utf8().map_err(|_| bad())?;
    let name = parse_label("file_name", &decoded, 255)?;
    if name.contains(['/', '\\']) {
        return Err(ApiError::validation_failed().detail("file_name must not contain a path"));
    }
    Ok(name)
}

/// Uploads a file to a conversation; the raw bytes are the request body. The `Content-Type`
/// must name an allowed type (by default JPEG, PNG, WebP and PDF) and match what the content
/// actually is; images lose their EXIF and XMP metadata (GPS location included). The content is
/// encrypted before it is stored. Refer to the attachment from a message with its id.
#[utoipa::path(post, path = "/api/v1/conversations/{conversation_id}/attachments", tag = "attachments", security(("bearer" = [])),
    params(("conversation_id" = ConversationId, Path),
        ("X-File-Name" = Option<String>, Header, description = "The file name, percent-encoded UTF-8 (at most 255 characters)")),
    request_body(content = AttachmentContent, content_type = "application/octet-stream",
        description = "The file's bytes, sent with its real Content-Type (image/jpeg, image/png, image/webp, application/pdf, ...)"),
    responses((status = 201, body = AttachmentView), (status = 404, body = Problem), (status = 413, body = Problem),
        (status = 415, body = Problem), (status = 422, body = Problem)))]
async fn upload_attachment(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Path(id): Path<ConversationId>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<AttachmentView>)> {
    let declared = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
        .ok_or_else(ApiError::attachment_type_not_allowed)?;
    let file_name = headers.get(FILE_NAME_HEADER).map(parse_file_name).transpose()?;
    let max = state.blobs.max_bytes();
    let announced = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > max) {
        return Err(too_large(max));
    }
    let draft = state.store.prepare_attachment(s.actor, id, meta.clone()).await?;
    let object_key = draft.object_key();
    let stored = state.blobs.upload(&draft, &declared, body.into_data_stream()).await?;
    let new = NewAttachment { content_type: stored.content_type.to_owned(), size: stored.size, file_name };
    match state.store.save_attachment(s.actor, draft, new, meta).await {
        Ok(a) => Ok((StatusCode::CREATED, Json(a.into()))),
        Err(e) => {
            state.blobs.remove(&object_key).await;
            Err(e.into())
        }
    }
}

/// Downloads an attachment's content, decrypted. A stored object that is missing, truncated,
/// reordered or altered answers 500 `attachment_damaged` before any content is sent.
#[utoipa::path(get, path = "/api/v1/conversations/{conversation_id}/attachments/{attachment_id}", tag = "attachments",
    security(("bearer" = [])), params(("conversation_id" = ConversationId, Path), ("attachment_id" = AttachmentId, Path)),
    responses((status = 200, body = AttachmentContent, content_type = "application/octet-stream",
            description = "The content, with its own Content-Type, `Content-Disposition: attachment` and `Cache-Control: no-store`"),
        (status = 404, body = Problem), (status = 410, body = Problem), (status = 500, body = Problem)))]
async fn download_attachment(
    State(state): State<AppState>,
    Meta(meta): Meta,
    s: Auth,
    Path((id, attachment)): Path<(ConversationId, AttachmentId)>,
) -> ApiResult<Response> {
    super::devices::require_phi_allowed(&state, &s, &meta).await?;
    let opened = state.store.open_attachment(s.actor, id, attachment, meta).await?;
    let body = state.blobs.download(&opened).await?;
    let a = &opened.attachment;
    let disposition = match &a.file_name {
        Some(name) => format!("attachment; filename*=UTF-8''{}", utf8_percent_encode(name, NON_ALPHANUMERIC)),
        None => "attachment".to_owned(),
    };
    let mut res = Response::new(body);
    let h = res.headers_mut();
    let value = |v: &str| HeaderValue::from_str(v).map_err(ApiError::internal_cause);
    h.insert(header::CONTENT_TYPE, value(&a.content_type)?);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(a.size));
    h.insert(header::CONTENT_DISPOSITION, value(&disposition)?);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    Ok(res)
}
