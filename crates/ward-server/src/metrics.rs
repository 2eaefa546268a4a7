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

/// Labels of a message on the audit syslog stream.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SyslogMessageLabels {
    /// `event` or `checkpoint`.
    pub kind: &'static str,
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
    /// Audit events committed but not yet written to the syslog stream.
    pub audit_syslog_lag: Gauge<i64, AtomicI64>,
    /// Messages written to the syslog stream, by kind (resent ones count again).
    pub audit_syslog_messages: Family<SyslogMessageLabels, Counter>,
    /// Syslog connections that failed or were lost.
    pub audit_syslog_reconnects: Counter,
    /// Whether a syslog connection is open (0 or 1).
    pub audit_syslog_connected: Gauge<i64, AtomicI64>,
    /// Syslog connections closed without the receiver's close_notify answer.
    pub audit_syslog_unconfirmed: Counter,
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
        let audit_syslog_lag = Gauge::default();
        let audit_syslog_messages = Family::<SyslogMessageLabels, Counter>::default();
        let audit_syslog_reconnects = Counter::default();
        let audit_syslog_connected = Gauge::default();
        let audit_syslog_unconfirmed = Counter::default();
        registry.register("audit_syslog_lag_entries", "Audit events not yet written to the syslog stream", audit_syslog_lag.clone());
        registry.register("audit_syslog_messages", "Messages written to the audit syslog stream", audit_syslog_messages.clone());
        registry.register("audit_syslog_reconnects", "Audit syslog connections that failed or were lost", audit_syslog_reconnects.clone());
        registry.register("audit_syslog_connected", "Whether the audit syslog connection is open", audit_syslog_connected.clone());
        registry.register(
            "audit_syslog_unconfirmed_closes",
            "Audit syslog connections the receiver closed without answering close_notify",
            audit_syslog_unconfirmed.clone(),
        );
        Arc::new(Self {
            registry,
            requests,
            durations,
            messages_sent,
            ws_connections,
            ws_events,
            ws_resyncs,
            db_commits,
            db_jobs,
            audit_syslog_lag,
            audit_syslog_messages,
            audit_syslog_reconnects,
            audit_syslog_connected,
            audit_syslog_unconfirmed,
        })
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
