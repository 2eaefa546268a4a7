//! Structured logging. Log lines carry request ids, routes, statuses and error kinds; message
//! text and patient data never reach them (a test proves it with a canary string).

use tracing_subscriber::EnvFilter;

/// Dependencies that log WebSocket payloads (message text, access tokens) at their verbose
/// levels: capped at `info` whatever the configured filter says.
const PAYLOAD_LOGGERS: &[&str] = &["tungstenite=info", "tungstenite::protocol=info"];

/// The filter for a level or directive string (e.g. `trace` or `ward_server=debug,info`), with
/// the dependencies that would log message text capped.
pub fn filter(directives: &str) -> EnvFilter {
    cap(EnvFilter::new(directives))
}

fn cap(filter: EnvFilter) -> EnvFilter {
    PAYLOAD_LOGGERS.iter().filter_map(|d| d.parse().ok()).fold(filter, EnvFilter::add_directive)
}

/// Installs the global subscriber: JSON lines (default) or human-readable text, on stderr.
/// `level` is the `log.level` setting (`WARD_LOG__LEVEL` in the environment).
pub fn init(level: &str, format: &str) {
    let filter = filter(level);
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if format == "text" { builder.try_init() } else { builder.json().flatten_event(true).with_current_span(true).try_init() };
}
