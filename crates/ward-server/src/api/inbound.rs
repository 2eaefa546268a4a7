//! Webhooks for messages patients send in over channels Ward does not secure
//! (docs/notifications.md, "Patients who write in"): `POST /api/v1/inbound/{org}/sms` from the
//! SMS gateway and `POST /api/v1/inbound/{org}/email` from the mail provider, each signed with
//! the organisation's key (`x-ward-timestamp: <Unix seconds>`, `x-ward-signature: sha256=<hex
//! HMAC-SHA256 of "<timestamp>.<body>">`); a stale timestamp or a replayed signature is refused
//! like a wrong one (crate::inbound).
//!
//! The body is PHI (whatever the patient wrote). Only its `from` member is read; the rest is
//! never deserialised, stored, logged or audited, and the bytes are dropped at once. A sender
//! that is a patient's verified contact gets the fixed redirect to the portal through the
//! outbox, under the patient's consent for the channel and at most once per window. The
//! answer is the same `204` whoever sent it, so the webhook tells nobody whether a number or
//! address is known. Badly signed requests are limited per source address
//! (`inbound.bad_signatures_per_minute_per_address`): past the limit the address gets `429`
//! for the rest of the minute, and those requests are not audited one by one.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use ward_domain::audit::{AuditAction, AuditEvent, DetailValue, Outcome};
use ward_domain::consent::NoticeChannel;
use ward_domain::contact::ContactKind;
use ward_outbound::{Template, TemplateValues};
use ward_store::{Inbound, InboundOutcome};

use crate::app::AppState;
use crate::auth::Meta;
use crate::extract::Path;
use crate::inbound::{SIGNATURE_HEADER, SignedRequest, TIMESTAMP_HEADER};
use crate::problem::{ApiError, ApiResult, Problem};

pub(crate) fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new().routes(utoipa_axum::routes!(inbound_sms)).routes(utoipa_axum::routes!(inbound_email))
}

/// The only member read from an inbound body. Everything else in it (the text, the subject)
/// is skipped by the parser, never held in a string.
#[derive(serde::Deserialize)]
struct Sender {
    from: String,
}

/// An SMS a patient sent to the organisation's number, posted by the SMS gateway as JSON
/// (`{"from": "+E164", ...}`; other members are ignored). Answered `204` whatever the sender;
/// a patient's verified number gets the portal redirect by SMS.
#[utoipa::path(post, path = "/api/v1/inbound/{org}/sms", tag = "inbound",
    params(("org" = String, Path, description = "The organisation's slug")),
    responses((status = 204), (status = 400, body = Problem), (status = 401, body = Problem), (status = 429, body = Problem)))]
async fn inbound_sms(
    State(state): State<AppState>,
    Meta(meta): Meta,
    Path(org): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<StatusCode> {
    receive(&state, meta, &org, &headers, body, NoticeChannel::Sms).await
}

/// An email a patient sent to the organisation, posted by the mail provider as JSON
/// (`{"from": "Name <user@host>", ...}`; other members are ignored). Answered `204` whatever
/// the sender; a patient's verified address gets the portal redirect by email.
#[utoipa::path(post, path = "/api/v1/inbound/{org}/email", tag = "inbound",
    params(("org" = String, Path, description = "The organisation's slug")),
    responses((status = 204), (status = 400, body = Problem), (status = 401, body = Problem), (status = 429, body = Problem)))]
async fn inbound_email(
    State(state): State<AppState>,
    Meta(meta): Meta,
    Path(org): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<StatusCode> {
    receive(&state, meta, &org, &headers, body, NoticeChannel::Email).await
}

async fn receive(
    state: &AppState,
    meta: ward_store::RequestMeta,
    slug: &str,
    headers: &HeaderMap,
    body: Bytes,
    channel: NoticeChannel,
) -> ApiResult<StatusCode> {
    // An address that sent too many badly signed requests this minute is refused before
    // anything else, and not audited each time: knowing an organisation's slug must not let
    // anyone add audit rows without limit.
    let now = ward_store::now_ms();
    let address = meta.source_ip.as_deref().map(crate::rate_limit::address_key);
    if let Some(a) = &address
        && let Err(wait) = state.inbound_limits.blocked(a, now)
    {
        return Err(ApiError::rate_limited().retry_after(wait));
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let request = SignedRequest { org: slug, signature: header(SIGNATURE_HEADER), timestamp: header(TIMESTAMP_HEADER), body: &body };
    // An organisation without webhooks, and one that does not exist, answer like a bad
    // signature: the endpoint is no directory of organisations. Stale and replayed requests
    // get the same answer (the audit keeps the reason) and count towards the same limit.
    if let Err(refusal) = state.inbound.verify(&request, &state.inbound_seen, now.div_euclid(1000)) {
        if let Some(a) = &address {
            let _ = state.inbound_limits.check(a, now);
        }
        if let Ok(org) = state.store.org_by_slug(slug).await {
            let mut ev = AuditEvent::new(AuditAction::InboundReceive, Outcome::Denied)
                .detail("channel", DetailValue::Code(channel.as_str()))
                .detail("reason", DetailValue::Code(refusal.code()));
            ev.org_id = Some(org.id);
            state.store.record(ev, meta).await?;
        }
        return Err(ApiError::invalid_signature());
    }
    let org = state.store.org_by_slug(slug).await.map_err(|_| ApiError::invalid_signature())?;
    // The parser's own messages can quote the body: a fixed detail instead.
    let parsed = serde_json::from_slice::<Sender>(&body);
    drop(body);
    let Ok(Sender { from }) = parsed else {
        return Err(ApiError::invalid_body().detail("the body must be a JSON object with a string member `from`"));
    };
    let (kind, raw) = match channel {
        NoticeChannel::Email => (ContactKind::Email, ward_notify::mailbox_address(&from).unwrap_or_else(|| from.clone())),
        _ => (ContactKind::Phone, from.clone()),
    };
    // A sender that does not normalise is nobody's contact; it is still hashed for the audit.
    let sender = kind.normalize(&raw).unwrap_or(raw);
    let reply = redirect_text(state).await?;
    let every_ms = i64::from(state.config.inbound.redirect_every_minutes) * 60_000;
    let outcome = state.store.receive_inbound(org.id, Inbound { channel, sender, reply, every_ms }, meta).await?;
    match outcome {
        InboundOutcome::RedirectQueued { .. } => state.notify.nudge(),
        InboundOutcome::RedirectBlocked => {
            tracing::warn!(code = "redirect_blocked", "inbound.redirect_text does not pass the outbound content policy; nothing was sent");
        }
        _ => {}
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The configured redirect rendered with the portal link, if it passes the content policy.
async fn redirect_text(state: &AppState) -> ApiResult<Option<String>> {
    let policy = state.outbound.get().await?;
    let cfg = &state.config.inbound;
    let text = Template::parse(&cfg.redirect_text, &policy)
        .ok()
        .and_then(|t| t.render(&TemplateValues { portal_link: Some(&cfg.portal_link), ..TemplateValues::default() }).ok());
    Ok(text)
}
