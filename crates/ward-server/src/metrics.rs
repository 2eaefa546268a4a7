//! Prometheus metrics. Labels are route templates, methods and status codes only: never ids,
//! names or content.

use std::sync::Arc;
use std::sync::atomic::AtomicI64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of an HTTP request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// HTTP method.
    pub method: String,
    /// Route template, e.g. `/api/v1/conversations/{conversation_id}/messages`.
    pub route: String,
    /// Status code.
    pub status: u16,
}

/// Labels of a request duration.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// HTTP method.
    pub method: String,
    /// Route template.
    pub route: String,
}

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    /// Requests by route and status.
    pub requests: Family<RequestLabels, Counter>,
    /// Request durations by route.
    pub durations: Family<RouteLabels, Histogram>,
    /// Messages accepted (created, not retries).
    pub messages_sent: Counter,
    /// Open WebSocket connections.
    pub ws_connections: Gauge<i64, AtomicI64>,
    /// Events delivered over WebSockets.
    pub ws_events: Counter,
    /// Connections switched to catch-up because their buffer filled.
    pub ws_resyncs: Counter,
    /// Committed write transactions (from the store).
    pub db_commits: Counter,
    /// Committed write jobs (from the store).
    pub db_jobs: Counter,
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("ward");
        let requests = Family::<RequestLabels, Counter>::default();
        let durations = Family::<RouteLabels, Histogram>::new_with_constructor(|| Histogram::new(exponential_buckets(0.0005, 2.0, 16)));
        let messages_sent = Counter::default();
        let ws_connections = Gauge::default();
        let ws_events = Counter::default();
        let ws_resyncs = Counter::default();
        let db_commits = Counter::default();
        let db_jobs = Counter::default();
        registry.register("http_requests", "HTTP requests by route and status", requests.clone());
        registry.register("http_request_duration_seconds", "HTTP request duration", durations.clone());
        registry.register("messages_sent", "Messages accepted", messages_sent.clone());
        registry.register("ws_connections", "Open WebSocket connections", ws_connections.clone());
        registry.register("ws_events", "Events delivered over WebSockets", ws_events.clone());
        registry.register("ws_resyncs", "WebSocket connections that fell behind and caught up from the database", ws_resyncs.clone());
        registry.register("db_write_transactions", "Committed write transactions", db_commits.clone());
        registry.register("db_write_jobs", "Committed write jobs (several per transaction under load)", db_jobs.clone());
        Arc::new(Self { registry, requests, durations, messages_sent, ws_connections, ws_events, ws_resyncs, db_commits, db_jobs })
    }

    /// The text exposition.
    pub fn render(&self, store: &ward_store::Store) -> String {
        use std::sync::atomic::Ordering::Relaxed;
        let stats = store.writer_stats();
        // Counters only go up: add the difference since the last scrape.
        let commits = stats.commits.load(Relaxed);
        let jobs = stats.jobs.load(Relaxed);
        self.db_commits.inc_by(commits.saturating_sub(self.db_commits.get()));
        self.db_jobs.inc_by(jobs.saturating_sub(self.db_jobs.get()));
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
