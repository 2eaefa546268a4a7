//! The results: a plain Markdown table (pasteable into docs/benchmarks.md) and, on request,
//! one JSON object.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::json;

use crate::procfs::Memory;

/// Everything one run measured.
pub(crate) struct Report {
    pub(crate) label: Option<String>,
    pub(crate) backend: &'static str,
    pub(crate) in_process: bool,
    pub(crate) users: usize,
    pub(crate) conversations: usize,
    pub(crate) members: usize,
    pub(crate) receivers: usize,
    pub(crate) concurrency: usize,
    pub(crate) connections: usize,
    /// The HTTP version the sender connections negotiated.
    pub(crate) http_version: String,
    pub(crate) rate: Option<f64>,
    pub(crate) messages: u64,
    pub(crate) acked: u64,
    pub(crate) errors: u64,
    pub(crate) error_samples: Vec<String>,
    pub(crate) send_wall: Duration,
    pub(crate) last_delivery: Duration,
    pub(crate) send_latency: Histogram<u64>,
    pub(crate) delivery: Histogram<u64>,
    pub(crate) lag: Histogram<u64>,
    pub(crate) delivered: u64,
    pub(crate) expected: u64,
    pub(crate) duplicates: u64,
    pub(crate) foreign: u64,
    pub(crate) receiver_failures: u64,
    pub(crate) mem_idle: Option<Memory>,
    pub(crate) mem_signed_in: Option<Memory>,
    pub(crate) mem_streams: Option<Memory>,
    pub(crate) mem_connected: Option<Memory>,
    pub(crate) mem_end: Option<Memory>,
    pub(crate) cpu_server: Option<f64>,
    pub(crate) cpu_self: Option<f64>,
    pub(crate) cpu_machine: Option<f64>,
    pub(crate) db_commits: Option<f64>,
    pub(crate) db_jobs: Option<f64>,
    pub(crate) ws_resyncs: Option<f64>,
    /// Receivers that never read their stream.
    pub(crate) slow_receivers: usize,
    /// A soak's interval samples (empty otherwise).
    pub(crate) samples: Vec<crate::soak::Sample>,
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn mem(m: Option<Memory>) -> String {
    m.map_or_else(|| "n/a".to_owned(), |m| format!("{:.1} MiB", mib(m.rss)))
}

fn lat(h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return "n/a".to_owned();
    }
    format!("{:.2} / {:.2} / {:.2} (max {:.2})", ms(h, 0.50), ms(h, 0.95), ms(h, 0.99), h.max() as f64 / 1000.0)
}

impl Report {
    fn throughput(&self) -> f64 {
        self.acked as f64 / self.send_wall.as_secs_f64().max(1e-9)
    }

    /// Prints the table (and the JSON object when asked) to standard output.
    pub(crate) fn print(&self, json: bool) {
        let secs = self.send_wall.as_secs_f64();
        let rate = self.rate.map_or_else(|| "as fast as possible".to_owned(), |r| format!("{r} messages/s target"));
        let server = if self.in_process { "in-process server (RSS includes the load generator)" } else { "external server process" };
        println!();
        if let Some(l) = &self.label {
            println!("### {l}");
            println!();
        }
        println!(
            "{} on {}: {} users, {} group conversations x {}, {} WebSocket receivers, {} senders over {} {} connections, {} messages, {}",
            server,
            self.backend,
            self.users,
            self.conversations,
            self.members,
            self.receivers,
            self.concurrency,
            self.connections,
            self.http_version,
            self.messages,
            rate
        );
        println!();
        println!("| metric | value |");
        println!("|---|---|");
        println!("| messages acknowledged (201) | {} of {} |", self.acked, self.messages);
        println!("| send errors | {} |", self.errors);
        println!("| sending wall time | {secs:.2} s |");
        println!("| throughput (acknowledged / wall time) | {:.0} messages/s |", self.throughput());
        println!("| send latency p50 / p95 / p99, POST to 201 | {} ms |", lat(&self.send_latency));
        println!(
            "| delivery latency p50 / p95 / p99, send start to first WebSocket receipt by another member | {} ms |",
            lat(&self.delivery)
        );
        println!("| deliveries received / expected | {} / {} |", self.delivered, self.expected);
        if self.slow_receivers > 0 {
            println!("| slow receivers (streams open, never read; deliveries not expected) | {} |", self.slow_receivers);
        }
        if self.duplicates + self.foreign + self.receiver_failures > 0 {
            println!(
                "| duplicate frames / foreign frames / failed streams | {} / {} / {} |",
                self.duplicates, self.foreign, self.receiver_failures
            );
        }
        if self.rate.is_some() {
            println!("| send start behind schedule p99 / max | {:.2} / {:.2} ms |", ms(&self.lag, 0.99), self.lag.max() as f64 / 1000.0);
        }
        println!("| last first-delivery after start | {:.2} s |", self.last_delivery.as_secs_f64());
        println!("| server RSS idle (provisioned, no clients) | {} |", mem(self.mem_idle));
        println!("| server RSS after sign-ins / after streams opened | {} / {} |", mem(self.mem_signed_in), mem(self.mem_streams));
        println!("| server RSS with every client connected, before sending | {} |", mem(self.mem_connected));
        println!(
            "| server RSS at end / peak (VmHWM) | {} / {} |",
            mem(self.mem_end),
            self.mem_end.map_or("n/a".into(), |m| format!("{:.1} MiB", mib(m.peak)))
        );
        if let Some(c) = self.cpu_server {
            println!("| server CPU while sending | {c:.2} s ({:.0}% of one core) |", 100.0 * c / secs.max(1e-9));
        }
        if let (Some(c), false) = (self.cpu_self, self.in_process) {
            println!("| load generator CPU while sending | {c:.2} s ({:.0}% of one core) |", 100.0 * c / secs.max(1e-9));
        }
        if let Some(busy) = self.cpu_machine {
            let ours =
                if self.in_process { self.cpu_self.unwrap_or(0.0) } else { self.cpu_server.unwrap_or(0.0) + self.cpu_self.unwrap_or(0.0) };
            let cores = crate::procfs::cores();
            println!(
                "| machine CPU busy while sending (all {cores} cores) | {:.0}% of {:.0}% (everything else: other processes and the kernel {:.0}%) |",
                100.0 * busy / secs.max(1e-9),
                100.0 * cores as f64,
                100.0 * (busy - ours).max(0.0) / secs.max(1e-9)
            );
        }
        if let (Some(j), Some(c)) = (self.db_jobs, self.db_commits) {
            println!("| write jobs / commits (group commit) | {j:.0} / {c:.0} ({:.1} jobs per commit) |", j / c.max(1.0));
        }
        if let Some(r) = self.ws_resyncs.filter(|r| *r > 0.0) {
            println!("| WebSocket resyncs (buffer full, caught up from database) | {r:.0} |");
        }
        for e in &self.error_samples {
            println!("| error sample | {} |", e.replace('|', "\\|"));
        }
        if !self.samples.is_empty() {
            crate::soak::print(&self.samples);
        }
        if json {
            let m = |x: Option<Memory>| x.map(|m| json!({"rss_bytes": m.rss, "peak_bytes": m.peak}));
            let h = |h: &Histogram<u64>| json!({"p50_ms": ms(h, 0.5), "p95_ms": ms(h, 0.95), "p99_ms": ms(h, 0.99), "max_ms": h.max() as f64 / 1000.0, "count": h.len()});
            let v = json!({
                "label": self.label, "backend": self.backend, "in_process": self.in_process,
                "users": self.users, "conversations": self.conversations, "members": self.members,
                "receivers": self.receivers, "concurrency": self.concurrency, "connections": self.connections,
                "http_version": self.http_version, "rate": self.rate, "messages": self.messages, "acked": self.acked,
                "errors": self.errors, "wall_secs": secs, "messages_per_sec": self.throughput(),
                "send_latency": h(&self.send_latency), "delivery_latency": h(&self.delivery),
                "delivered": self.delivered, "expected": self.expected, "duplicates": self.duplicates,
                "server_rss_idle": m(self.mem_idle), "server_rss_signed_in": m(self.mem_signed_in), "server_rss_streams": m(self.mem_streams), "server_rss_connected": m(self.mem_connected), "server_rss_end": m(self.mem_end),
                "server_cpu_secs": self.cpu_server, "loadgen_cpu_secs": self.cpu_self, "machine_busy_cpu_secs": self.cpu_machine,
                "db_write_jobs": self.db_jobs, "db_write_commits": self.db_commits,
            });
            println!();
            println!("{v}");
        }
    }
}
