//! The application: shared state, the router with its middleware, and the operational
//! endpoints (`/healthz`, `/readyz`, `/metrics`, `/api/v1/openapi.json`).

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
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
}

impl AppState {
    /// Publishes a committed event to its recipients on every node.
    pub async fn publish(&self, f: Fanout) {
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
    }
}

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Builds the state and the router (without a listener: tests can drive it directly).
pub fn build(store: Store, fanout: Arc<dyn FanOut>, config: Arc<Config>) -> (AppState, Router) {
    let metrics = Metrics::new();
    let hub = Hub::new(metrics.clone());
    hub.spawn(&fanout);
    let (api, openapi) = crate::api::router().split_for_parts();
    let openapi = Arc::new(openapi.to_pretty_json().unwrap_or_default());
    let state = AppState { store, fanout, hub, config: config.clone(), metrics, openapi };
    let router = Router::new()
        .merge(api)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/api/v1/openapi.json", get(openapi_json))
        .fallback(|| async { ApiError::not_found() })
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(DefaultBodyLimit::max(config.limits.max_body_bytes))
        .layer(PropagateRequestIdLayer::new(X_REQUEST_ID.clone()))
        .layer(SetRequestIdLayer::new(X_REQUEST_ID.clone(), MakeRequestUuid))
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
    res
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
