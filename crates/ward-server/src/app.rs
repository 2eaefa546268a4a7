//! The application: shared state, the router with its middleware, and the operational
//! endpoints (`/healthz`, `/readyz`, `/metrics`, `/api/v1/openapi.json`), with the web app
//! (`ward-web`) merged in at `/` and `/assets/`.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, Version, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper::body::{Frame, SizeHint};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use ward_fanout::{Delivery, FanOut, Signal};
use ward_store::{Fanout, Store};

use crate::api::dto::render_event;
use crate::config::Config;
use crate::hub::Hub;
use crate::metrics::{Metrics, RequestLabels, RouteLabels};
use crate::problem::{ApiError, InternalCause};

/// What handlers share. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Persistence.
    pub store: Store,
    /// Cross-node fan-out.
    pub fanout: Arc<dyn FanOut>,
    /// This node's connections.
    pub hub: Arc<Hub>,
    /// Configuration.
    pub config: Arc<Config>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The OpenAPI document, rendered once.
    pub openapi: Arc<String>,
    /// The audit log's integrator and signer.
    pub audit: Arc<crate::audit_log::AuditLog>,
    /// The attachment store.
    pub blobs: Arc<crate::attachments::Blobs>,
    /// The outbound content policy (built in the background at start).
    pub outbound: crate::outbound::OutboundPolicy,
    /// Request limits on the unauthenticated device wipe endpoints.
    pub wipe_limits: Arc<crate::rate_limit::WipeLimits>,
    /// Failed sign-ins per source address.
    pub login_limits: Arc<crate::rate_limit::RateLimiter>,
    /// Single sign-on starts per source address (each calls the provider).
    pub oidc_start_limits: Arc<crate::rate_limit::RateLimiter>,
    /// Refused back-channel logout tokens per organisation and source address: apart from
    /// `login_limits`, so failures elsewhere cannot stop a provider's logouts.
    pub oidc_logout_limits: Arc<crate::rate_limit::RateLimiter>,
    /// Badly signed inbound webhook requests per source address.
    pub inbound_limits: Arc<crate::rate_limit::RateLimiter>,
    /// The delivery providers and the worker's wake-up.
    pub notify: Arc<crate::notify::Notifier>,
    /// The WebAuthn relying party (checked by `Config::validate`).
    pub webauthn: Arc<webauthn_rs::Webauthn>,
    /// The inbound webhooks' signing keys.
    pub inbound: Arc<crate::inbound::InboundKeys>,
    /// The inbound webhook signatures accepted in the last minutes (replay protection).
    pub inbound_seen: Arc<crate::inbound::ReplayGuard>,
    /// The key inventory as last listed (a KMS listing walks the whole cloud account).
    pub(crate) key_inventory: Arc<crate::api::keys::InventoryCache>,
    /// The HTTP client for single sign-on providers.
    pub oidc_http: crate::oidc::OidcHttp,
}

impl AppState {
    /// Publishes a committed event to its recipients on every node.
    pub async fn publish(&self, f: Fanout) {
        // Pushes are queued after the live fan-out, off the request's path: a write per
        // message must not delay the WebSocket delivery everyone is waiting for.
        let push = (self.notify.push_enabled() && matches!(f.event.kind, ward_store::EventKind::Message(_))).then(|| f.clone());
        let delivery = Delivery {
            recipients: f.recipients,
            conversation_id: f.event.conversation_id,
            seq: f.event.seq,
            frame: render_event(f.event).into(),
        };
        if let Err(e) = self.fanout.publish(Signal::Deliver(Arc::new(delivery))).await {
            // Receivers fill the gap from the database when the next event arrives or on reconnect.
            tracing::warn!(error = %e, "could not publish event");
        }
        if let Some(f) = push {
            let state = self.clone();
            tokio::spawn(async move { state.queue_push(&f).await });
        }
    }
}

impl AppState {
    /// A new message: queues a PHI-free push to the recipients' registered devices (not the
    /// sender's; only when a push provider is configured) and wakes the delivery worker.
    async fn queue_push(&self, f: &Fanout) {
        let ward_store::EventKind::Message(m) = &f.event.kind else { return };
        if !self.notify.push_enabled() {
            return;
        }
        let high = !matches!(m.priority, ward_domain::conversation::Priority::Routine);
        match self.store.enqueue_message_push(m.sender_id, m.conversation_id.0, Some(m.id.0), high, f.recipients.clone()).await {
            Ok(n) if n > 0 => self.notify.nudge(),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not queue new-message pushes"),
        }
    }
}

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Builds the state and the router (without a listener: tests can drive it directly).
pub fn build(
    store: Store,
    fanout: Arc<dyn FanOut>,
    config: Arc<Config>,
    audit: Arc<crate::audit_log::AuditLog>,
    blobs: Arc<crate::attachments::Blobs>,
    notify: Arc<crate::notify::Notifier>,
) -> (AppState, Router) {
    let metrics = Metrics::new();
    let hub = Hub::new(metrics.clone());
    hub.spawn(&fanout);
    let (api, mut openapi) = crate::api::router().split_for_parts();
    crate::api::document_common_problems(&mut openapi);
    let openapi = Arc::new(openapi.to_pretty_json().unwrap_or_default());
    let outbound =
        if config.outbound.build_at_start { crate::outbound::OutboundPolicy::warm() } else { crate::outbound::OutboundPolicy::default() };
    let wipe_limits = Arc::new(crate::rate_limit::WipeLimits::new(
        config.devices.wipe_requests_per_minute_per_address,
        config.devices.wipe_requests_per_minute_per_device,
    ));
    let login_limits = Arc::new(crate::rate_limit::RateLimiter::new(config.sessions.failed_logins_per_minute_per_address));
    let oidc_start_limits = Arc::new(crate::rate_limit::RateLimiter::new(config.oidc.starts_per_minute_per_address));
    let oidc_logout_limits = Arc::new(crate::rate_limit::RateLimiter::new(config.oidc.failed_logouts_per_minute_per_address));
    let inbound_limits = Arc::new(crate::rate_limit::RateLimiter::new(config.inbound.bad_signatures_per_minute_per_address));
    let webauthn = Arc::new(config.webauthn.relying_party().unwrap_or_else(|e| {
        // validate() refuses such a configuration; this default keeps a test-built state usable.
        tracing::error!(error = %e.0, "WebAuthn settings unusable; using the defaults");
        crate::config::WebAuthnConfig::default().relying_party().expect("the default relying party builds")
    }));
    // `start` reads the keys first and stops on a bad file; a state built directly (tests)
    // without them has no webhooks.
    let inbound = Arc::new(crate::inbound::InboundKeys::from_config(&config.inbound).unwrap_or_else(|e| {
        tracing::error!(error = %e, "inbound webhook keys unusable; the webhooks are off");
        crate::inbound::InboundKeys::default()
    }));
    let state = AppState {
        store,
        fanout,
        hub,
        config: config.clone(),
        metrics,
        openapi,
        audit,
        blobs,
        outbound,
        wipe_limits,
        login_limits,
        oidc_start_limits,
        oidc_logout_limits,
        inbound_limits,
        notify,
        webauthn,
        inbound,
        inbound_seen: Arc::default(),
        key_inventory: Arc::default(),
        // `start` builds it first and stops on a bad `ca_file`; otherwise (no CA certificates on
        // the host, or a state built directly by tests) a client that refuses every call, never
        // one without the checks.
        oidc_http: crate::oidc::OidcHttp::new(&config.oidc).unwrap_or_else(|e| {
            tracing::error!(error = %e, "single sign-on HTTP client unusable; provider calls will fail");
            crate::oidc::OidcHttp::unusable(&config.oidc)
        }),
    };
    let router = Router::new()
        .merge(api)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/api/v1/openapi.json", get(openapi_json))
        // The web app: its shell at `/` and its embedded assets under `/assets/`.
        .merge(ward_web::router())
        // SCIM provisioning: its own authentication and error form (RFC 7644).
        .nest(crate::scim::BASE, crate::scim::router())
        .fallback(|| async { ApiError::not_found() })
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(DefaultBodyLimit::max(config.limits.max_body_bytes))
        .layer(PropagateRequestIdLayer::new(X_REQUEST_ID.clone()))
        .layer(SetRequestIdLayer::new(X_REQUEST_ID.clone(), MakeRequestUuid))
        .layer(middleware::from_fn(only_uuid_request_ids))
        .with_state(state.clone());
    (state, router)
}

/// Logs each request (method, route template, status, duration, request id: never bodies,
/// never query values), counts it, and logs the cause of any 5xx inside the request's span.
async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().as_str().to_owned();
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    let request_id = req.headers().get(&X_REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let span = tracing::info_span!("request", %method, %route, %request_id);
    let (req, body_read) = watch_http1_body(req);
    let mut res = tracing::Instrument::instrument(next.run(req), span.clone()).await;
    let status = res.status().as_u16();
    let elapsed = started.elapsed();
    let _enter = span.enter();
    if let Some(InternalCause(cause)) = res.extensions_mut().remove::<InternalCause>() {
        tracing::error!(status, cause = %cause, "request failed");
    }
    tracing::info!(status, duration_ms = elapsed.as_secs_f64() * 1000.0, "request");
    state.metrics.requests.get_or_create(&RequestLabels { method: method.clone(), route: route.clone(), status }).inc();
    state.metrics.durations.get_or_create(&RouteLabels { method, route }).observe(elapsed.as_secs_f64());
    let h = res.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        h.entry(name.clone()).or_insert(HeaderValue::from_static(value));
    }
    if !h.contains_key(header::CACHE_CONTROL) {
        // Responses can carry PHI: nothing may be cached.
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if body_read.is_some_and(|read| !read.load(Ordering::Relaxed)) {
        // HTTP/1.1: hyper closes a connection whose request body was left unread (a refusal
        // before or while reading it, such as 413), but without saying so; say it, so clients
        // do not send their next request on a connection that is about to close.
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    res
}

/// Keeps a client's `x-request-id` only if it is a UUID; anything else is replaced by a
/// generated one. The id is copied into logs and audit events, so it must not be a channel
/// for free text (which could carry PHI).
async fn only_uuid_request_ids(mut req: Request, next: Next) -> Response {
    let acceptable = req.headers().get(&X_REQUEST_ID).and_then(|v| v.to_str().ok()).is_some_and(|v| uuid::Uuid::try_parse(v).is_ok());
    if !acceptable {
        req.headers_mut().remove(&X_REQUEST_ID);
    }
    next.run(req).await
}

/// Wraps a non-empty HTTP/1.x request body to learn whether it was read to its end.
fn watch_http1_body(req: Request) -> (Request, Option<Arc<AtomicBool>>) {
    if req.version() >= Version::HTTP_2 || HttpBody::is_end_stream(req.body()) {
        return (req, None);
    }
    let read = Arc::new(AtomicBool::new(false));
    let watched = read.clone();
    (req.map(|inner| Body::new(WatchedBody { inner, read: watched })), Some(read))
}

struct WatchedBody {
    inner: Body,
    read: Arc<AtomicBool>,
}

impl HttpBody for WatchedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.read.store(true, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

const SECURITY_HEADERS: &[(HeaderName, &str)] = &[
    (header::STRICT_TRANSPORT_SECURITY, "max-age=63072000; includeSubDomains"),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::CONTENT_SECURITY_POLICY, "default-src 'none'; frame-ancestors 'none'"),
];

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => "ready".into_response(),
        Err(_) => ApiError::unavailable().detail("the database is not answering").retry_after(1).into_response(),
    }
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    let mut res = Response::new(Body::from(state.metrics.render(&state.store)));
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"));
    res
}

async fn openapi_json(State(state): State<AppState>) -> Response {
    let mut res = Response::new(Body::from(state.openapi.as_str().to_owned()));
    *res.status_mut() = StatusCode::OK;
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}
