//! The measured part: senders that POST messages and receivers that hold WebSocket streams,
//! sharing one table of send times so each delivery can be timed end to end.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hdrhistogram::Histogram;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::client::{self, Endpoint, Session, Ws};

/// Latencies are recorded in microseconds, up to two minutes.
pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid histogram bounds")
}

/// Who sends what where.
pub(crate) struct Plan {
    /// Conversation ids.
    pub(crate) conversations: Vec<String>,
    /// Members of each conversation (account indexes).
    pub(crate) members: Vec<Vec<usize>>,
    /// For each conversation and member position: how many connected receivers other than
    /// that sender should get the message.
    pub(crate) expected: Vec<Vec<u64>>,
    /// Sessions by account index.
    pub(crate) sessions: Vec<Session>,
    /// Messages to send.
    pub(crate) messages: u64,
    /// Fixed rate in messages per second, or as fast as possible.
    pub(crate) rate: Option<f64>,
    /// Bytes of text per message.
    pub(crate) body_bytes: usize,
}

impl Plan {
    /// The conversation and sender (account index) of message `n`.
    fn route(&self, n: u64) -> (usize, usize) {
        let c = (n % self.conversations.len() as u64) as usize;
        let m = &self.members[c];
        let pos = ((n / self.conversations.len() as u64) % m.len() as u64) as usize;
        (c, pos)
    }
}

/// State every sender and receiver shares.
pub(crate) struct Shared {
    /// Time zero of the run.
    epoch: Instant,
    /// Prefix of this run's transaction ids.
    tag: String,
    /// Send start of message `n`, in nanoseconds after `epoch` plus one (0: not sent yet).
    sent_at: Vec<AtomicU64>,
    /// Whether message `n` has reached a receiver other than its sender.
    seen: Vec<AtomicBool>,
    /// Next message to send.
    next: AtomicU64,
    /// Sends answered 201.
    pub(crate) acked: AtomicU64,
    /// Sends that failed (status other than 201, or no answer).
    pub(crate) errors: AtomicU64,
    /// Deliveries the acknowledged sends call for.
    pub(crate) expected: AtomicU64,
    /// Message frames received by someone other than the sender.
    pub(crate) delivered: AtomicU64,
    /// Frames at or below a sequence the connection had already seen.
    pub(crate) duplicates: AtomicU64,
    /// Message frames this run did not send.
    pub(crate) foreign: AtomicU64,
    /// Receivers whose stream ended or failed before the end.
    pub(crate) receiver_failures: AtomicU64,
    /// Nanoseconds after `epoch` of the latest first delivery.
    last_delivery: AtomicU64,
    /// A few distinct error descriptions.
    pub(crate) error_samples: Mutex<Vec<String>>,
    /// Latencies since the last sample (a soak reports them interval by interval).
    window: Mutex<Window>,
}

/// Latencies recorded in one sampling interval.
pub(crate) struct Window {
    /// POST until 201, microseconds.
    pub(crate) send: Histogram<u64>,
    /// Send start to first delivery to another member, microseconds.
    pub(crate) delivery: Histogram<u64>,
}

impl Window {
    fn new() -> Self {
        Self { send: histogram(), delivery: histogram() }
    }
}

impl Shared {
    /// Fresh state for `messages` messages.
    pub(crate) fn new(tag: &str, messages: u64) -> Arc<Self> {
        Arc::new(Self {
            epoch: Instant::now(),
            tag: format!("{tag}-"),
            sent_at: (0..messages).map(|_| AtomicU64::new(0)).collect(),
            seen: (0..messages).map(|_| AtomicBool::new(false)).collect(),
            next: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            expected: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            foreign: AtomicU64::new(0),
            receiver_failures: AtomicU64::new(0),
            last_delivery: AtomicU64::new(0),
            error_samples: Mutex::new(Vec::new()),
            window: Mutex::new(Window::new()),
        })
    }

    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    pub(crate) fn error(&self, what: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut s = self.error_samples.lock().unwrap_or_else(|p| p.into_inner());
        if s.len() < 5 && !s.contains(&what) {
            s.push(what);
        }
    }

    /// When the latest first delivery arrived, relative to time zero.
    pub(crate) fn last_delivery(&self) -> Duration {
        Duration::from_nanos(self.last_delivery.load(Ordering::Relaxed))
    }

    /// The latencies recorded since the previous call, starting a new interval.
    pub(crate) fn take_window(&self) -> Window {
        std::mem::replace(&mut *self.window.lock().unwrap_or_else(|p| p.into_inner()), Window::new())
    }

    fn in_window(&self, f: impl FnOnce(&mut Window)) {
        f(&mut self.window.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// Time since time zero.
    pub(crate) fn elapsed(&self) -> Duration {
        self.epoch.elapsed()
    }
}

/// What one sender measured.
pub(crate) struct SenderReport {
    /// POST until 201, microseconds.
    pub(crate) latency: Histogram<u64>,
    /// How late sends started against the fixed-rate schedule, microseconds.
    pub(crate) lag: Histogram<u64>,
}

/// Sends messages until all are taken or `deadline` passes.
pub(crate) async fn sender(
    shared: Arc<Shared>,
    plan: Arc<Plan>,
    ep: Endpoint,
    http: reqwest::Client,
    started: tokio::time::Instant,
    deadline: tokio::time::Instant,
) -> SenderReport {
    let mut latency = histogram();
    let mut lag = histogram();
    let filler = "x".repeat(plan.body_bytes.saturating_sub(24).max(1));
    loop {
        let n = shared.next.fetch_add(1, Ordering::Relaxed);
        if n >= plan.messages {
            break;
        }
        if let Some(rate) = plan.rate {
            let due = started + Duration::from_secs_f64(n as f64 / rate);
            if due > deadline {
                break;
            }
            tokio::time::sleep_until(due).await;
            lag.saturating_record(tokio::time::Instant::now().saturating_duration_since(due).as_micros() as u64);
        }
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        let (c, pos) = plan.route(n);
        let from = plan.members[c][pos];
        let url = format!("{}/api/v1/conversations/{}/messages", ep.url, plan.conversations[c]);
        let body = json!({"client_txn_id": format!("{}{n}", shared.tag), "body": format!("load message {n} {filler}")});
        let t0 = Instant::now();
        shared.sent_at[n as usize].store(shared.now_ns() + 1, Ordering::Release);
        let session = &plan.sessions[from];
        let mut token = session.bearer();
        let mut sent = http.post(&url).bearer_auth(&token).json(&body).send().await;
        // A refresh may retire the token while this request is in flight: a client retries
        // once with the new one (the transaction id makes the retry idempotent).
        if sent.as_ref().is_ok_and(|r| r.status() == reqwest::StatusCode::UNAUTHORIZED) && session.bearer() != token {
            token = session.bearer();
            sent = http.post(&url).bearer_auth(&token).json(&body).send().await;
        }
        match sent {
            Ok(res) if res.status() == reqwest::StatusCode::CREATED => {
                // Read the body so the connection is reusable; the send is acknowledged on 201.
                let _ = res.bytes().await;
                let micros = t0.elapsed().as_micros() as u64;
                latency.saturating_record(micros);
                shared.in_window(|w| w.send.saturating_record(micros));
                shared.acked.fetch_add(1, Ordering::Relaxed);
                shared.expected.fetch_add(plan.expected[c][pos], Ordering::Relaxed);
            }
            Ok(res) => {
                let status = res.status();
                let text = res.text().await.unwrap_or_default();
                shared.error(format!("{status}: {}", text.chars().take(200).collect::<String>()));
            }
            Err(e) => shared.error(format!("request failed: {e}")),
        }
    }
    SenderReport { latency, lag }
}

#[derive(Deserialize)]
struct Frame {
    #[serde(rename = "type")]
    frame: String,
    conversation_id: Option<String>,
    seq: Option<i64>,
    kind: Option<String>,
    message: Option<FrameMessage>,
}

#[derive(Deserialize)]
struct FrameMessage {
    sender_id: String,
    client_txn_id: String,
}

/// Reads one account's stream until `stop`, timing each message's first delivery to someone
/// other than its sender. Acknowledges what it has seen every half second, as clients do.
pub(crate) async fn receiver(shared: Arc<Shared>, me: String, mut ws: Ws, mut stop: watch::Receiver<bool>) -> Histogram<u64> {
    let mut first = histogram();
    let mut last_seq: HashMap<String, i64> = HashMap::new();
    let mut unacked: HashMap<String, i64> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = tick.tick() => {
                for (conv, seq) in unacked.drain() {
                    if client::ack(&mut ws, &conv, seq).await.is_err() {
                        shared.receiver_failures.fetch_add(1, Ordering::Relaxed);
                        return first;
                    }
                }
            }
            frame = ws.next() => {
                let text = match frame {
                    Some(Ok(WsMessage::Text(t))) => t,
                    Some(Ok(WsMessage::Close(_))) | Some(Err(_)) | None => {
                        shared.receiver_failures.fetch_add(1, Ordering::Relaxed);
                        return first;
                    }
                    Some(Ok(_)) => continue,
                };
                let Ok(f) = serde_json::from_str::<Frame>(&text) else { continue };
                if f.frame != "event" {
                    continue;
                }
                let (Some(conv), Some(seq)) = (f.conversation_id, f.seq) else { continue };
                let prev = last_seq.get(&conv).copied().unwrap_or(0);
                if seq <= prev {
                    shared.duplicates.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                last_seq.insert(conv.clone(), seq);
                unacked.insert(conv, seq);
                if f.kind.as_deref() != Some("message") {
                    continue;
                }
                let Some(m) = f.message else { continue };
                if m.sender_id == me {
                    continue;
                }
                let n = m.client_txn_id.strip_prefix(&shared.tag).and_then(|n| n.parse::<usize>().ok());
                let Some(n) = n.filter(|&n| n < shared.sent_at.len()) else {
                    shared.foreign.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let now = shared.now_ns();
                shared.delivered.fetch_add(1, Ordering::Relaxed);
                let start = shared.sent_at[n].load(Ordering::Acquire);
                if start > 0 && !shared.seen[n].swap(true, Ordering::AcqRel) {
                    let micros = now.saturating_sub(start - 1) / 1000;
                    first.saturating_record(micros);
                    shared.in_window(|w| w.delivery.saturating_record(micros));
                    shared.last_delivery.fetch_max(now, Ordering::Relaxed);
                }
            }
        }
    }
    let _ = ws.close(None).await;
    first
}
