//! The soak: the same senders and receivers held at a steady rate for a long time, sampled
//! at intervals (server memory, open files, latencies, errors), with the trend of each.
//!
//! A soak outlives the access-token lifetime, so a refresher renews every session's tokens
//! the way a client does; the streams stay open on their sessions throughout.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::watch;

use crate::client::{Endpoint, Session};
use crate::load::Shared;
use crate::procfs;

/// One sampling interval's figures.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    /// End of the interval, seconds after sending started.
    pub(crate) at_secs: f64,
    /// Server resident memory, bytes.
    pub(crate) rss: Option<u64>,
    /// Of it, anonymous and file-backed (the mapped database), bytes.
    pub(crate) split: Option<(u64, u64)>,
    /// Server open file descriptors.
    pub(crate) fds: Option<usize>,
    /// Sends acknowledged in the interval.
    pub(crate) acked: u64,
    /// Send errors in the interval (refresh failures included).
    pub(crate) errors: u64,
    /// Deliveries received in the interval.
    pub(crate) delivered: u64,
    /// Send latency p50 and p99 in the interval, ms.
    pub(crate) send_ms: Option<(f64, f64)>,
    /// Delivery latency p50 and p99 in the interval, ms.
    pub(crate) delivery_ms: Option<(f64, f64)>,
    /// Streams that have failed so far.
    pub(crate) failed_streams: u64,
}

/// Samples every `every` until `stop`, then once more.
pub(crate) async fn sampler(shared: Arc<Shared>, server_pid: Option<u32>, every: Duration, mut stop: watch::Receiver<bool>) -> Vec<Sample> {
    let started = tokio::time::Instant::now();
    let mut samples = Vec::new();
    let (mut acked, mut errors, mut delivered) = (0, 0, 0);
    let mut tick = tokio::time::interval_at(started + every, every);
    loop {
        let last = tokio::select! {
            _ = tick.tick() => false,
            _ = stop.changed() => true,
        };
        let window = shared.take_window();
        let quantiles = |h: &hdrhistogram::Histogram<u64>| {
            (!h.is_empty()).then(|| (h.value_at_quantile(0.5) as f64 / 1000.0, h.value_at_quantile(0.99) as f64 / 1000.0))
        };
        let (a, e, d) = (shared.acked.load(Relaxed), shared.errors.load(Relaxed), shared.delivered.load(Relaxed));
        samples.push(Sample {
            at_secs: started.elapsed().as_secs_f64(),
            rss: server_pid.and_then(procfs::memory).map(|m| m.rss),
            split: server_pid.and_then(procfs::memory_split),
            fds: server_pid.and_then(procfs::open_fds),
            acked: a - acked,
            errors: e - errors,
            delivered: d - delivered,
            send_ms: quantiles(&window.send),
            delivery_ms: quantiles(&window.delivery),
            failed_streams: shared.receiver_failures.load(Relaxed),
        });
        (acked, errors, delivered) = (a, e, d);
        if last {
            return samples;
        }
    }
}

/// Refreshes every session's tokens every `every` until `stop`; a failed refresh counts as
/// an error of the run.
pub(crate) async fn refresher(
    shared: Arc<Shared>,
    sessions: Vec<Session>,
    ep: Endpoint,
    http: reqwest::Client,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        // Owned clones: a spawned task's futures must not borrow across the stream.
        let results: Vec<anyhow::Result<()>> = futures_util::stream::iter(sessions.iter().cloned())
            .map(|s| {
                let (http, ep) = (http.clone(), ep.clone());
                async move { s.refresh(&http, &ep).await }
            })
            .buffer_unordered(8)
            .collect()
            .await;
        for e in results.into_iter().filter_map(Result::err) {
            shared.error(format!("token refresh: {e}"));
        }
    }
}

/// Least-squares slope of `y` over `x` (per unit of x); `None` with fewer than two points.
pub(crate) fn slope(points: &[(f64, f64)]) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let n = points.len() as f64;
    let (mx, my) = (points.iter().map(|p| p.0).sum::<f64>() / n, points.iter().map(|p| p.1).sum::<f64>() / n);
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx == 0.0 {
        return None;
    }
    Some(points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum::<f64>() / sxx)
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn pair(p: Option<(f64, f64)>) -> String {
    p.map_or_else(|| "n/a".to_owned(), |(a, b)| format!("{a:.1} / {b:.1}"))
}

/// Prints the samples as a Markdown table, then the trends over the second half of the run
/// (the first half includes warm-up: caches, pools and buffers filling).
pub(crate) fn print(samples: &[Sample]) {
    println!();
    println!("Samples (each row covers the interval ending at its time):");
    println!();
    println!(
        "| time | server RSS | of it anonymous / file-backed | open fds | acked | errors | delivered | send p50 / p99 ms | delivery p50 / p99 ms | failed streams |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for s in samples {
        println!(
            "| {:.0} s | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            s.at_secs,
            s.rss.map_or("n/a".into(), |r| format!("{:.1} MiB", mib(r))),
            s.split.map_or("n/a".into(), |(a, f)| format!("{:.1} / {:.1} MiB", mib(a), mib(f))),
            s.fds.map_or("n/a".into(), |f| f.to_string()),
            s.acked,
            s.errors,
            s.delivered,
            pair(s.send_ms),
            pair(s.delivery_ms),
            s.failed_streams
        );
    }
    let half: Vec<&Sample> = samples.iter().skip(samples.len() / 2).collect();
    let trend = |pick: &dyn Fn(&Sample) -> Option<f64>| -> Option<f64> {
        let pts: Vec<(f64, f64)> = half.iter().filter_map(|s| Some((s.at_secs / 3600.0, pick(s)?))).collect();
        slope(&pts)
    };
    println!();
    println!("| trend over the second half | per hour |");
    println!("|---|---|");
    let show = |v: Option<f64>, unit: &str| v.map_or("n/a".into(), |v| format!("{v:+.2} {unit}"));
    println!("| server RSS | {} |", show(trend(&|s| s.rss.map(mib)), "MiB"));
    println!("| server RSS, anonymous only (heap: what a leak grows) | {} |", show(trend(&|s| s.split.map(|(a, _)| mib(a))), "MiB"));
    println!("| open file descriptors | {} |", show(trend(&|s| s.fds.map(|f| f as f64)), "fds"));
    println!("| send latency p99 | {} |", show(trend(&|s| s.send_ms.map(|p| p.1)), "ms"));
    println!("| delivery latency p99 | {} |", show(trend(&|s| s.delivery_ms.map(|p| p.1)), "ms"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_of_a_line_and_of_a_flat_series() {
        let line: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 3.0 * i as f64 + 7.0)).collect();
        assert!((slope(&line).unwrap() - 3.0).abs() < 1e-9);
        let flat: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 5.0)).collect();
        assert_eq!(slope(&flat), Some(0.0));
        assert_eq!(slope(&[(1.0, 2.0)]), None);
        assert_eq!(slope(&[(1.0, 2.0), (1.0, 3.0)]), None);
    }
}
