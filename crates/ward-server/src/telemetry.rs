//! Structured logging. Log lines carry request ids, routes, statuses and error kinds; message
//! text and patient data never reach them (a test proves it with a canary string).

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber: JSON lines (default) or human-readable text, on stderr.
pub fn init(level: &str, format: &str) {
    let filter = EnvFilter::try_from_env("WARD_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if format == "text" { builder.try_init() } else { builder.json().flatten_event(true).with_current_span(true).try_init() };
}
