//! `--store-only`: the same sends straight into the store library, without HTTP, TLS or
//! WebSockets, to show how much of the end-to-end figure the durable, audited write path
//! alone allows on this machine.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use ward_domain::conversation::{ClientTxnId, ConversationKind, MessageText, Priority};
use ward_domain::ids::{ConversationId, DeviceId};
use ward_domain::policy::Actor;
use ward_domain::role::Role;
use ward_store::{DeviceClaim, MemberSpec, NewConversation, NewMessage, NewSession, RequestMeta, Store, TokenHashes, now_ms};

use crate::load::histogram;
use crate::provision::Provisioned;

/// What a store-only run measured.
pub(crate) struct StoreReport {
    pub(crate) backend: &'static str,
    pub(crate) concurrency: usize,
    pub(crate) messages: u64,
    pub(crate) acked: u64,
    pub(crate) errors: u64,
    pub(crate) wall: Duration,
    pub(crate) latency: Histogram<u64>,
    pub(crate) jobs: u64,
    pub(crate) commits: u64,
    pub(crate) cpu_self: Option<f64>,
    pub(crate) cpu_machine: Option<f64>,
}

impl StoreReport {
    /// Prints the table.
    pub(crate) fn print(&self) {
        let secs = self.wall.as_secs_f64().max(1e-9);
        let h = &self.latency;
        let q = |x: f64| h.value_at_quantile(x) as f64 / 1000.0;
        println!();
        println!(
            "store only (no HTTP, TLS or WebSocket) on {}: {} concurrent callers of Store::send_message, {} messages",
            self.backend, self.concurrency, self.messages
        );
        println!();
        println!("| metric | value |");
        println!("|---|---|");
        println!("| messages committed | {} of {} (errors {}) |", self.acked, self.messages, self.errors);
        println!("| wall time | {secs:.2} s |");
        println!("| throughput | {:.0} messages/s |", self.acked as f64 / secs);
        println!(
            "| send_message latency p50 / p95 / p99 | {:.2} / {:.2} / {:.2} (max {:.2}) ms |",
            q(0.5),
            q(0.95),
            q(0.99),
            h.max() as f64 / 1000.0
        );
        println!(
            "| write jobs / commits (group commit) | {} / {} ({:.1} jobs per commit) |",
            self.jobs,
            self.commits,
            self.jobs as f64 / (self.commits.max(1)) as f64
        );
        if let (Some(me), Some(busy)) = (self.cpu_self, self.cpu_machine) {
            println!(
                "| CPU while sending: this process / whole machine ({} cores) | {:.0}% / {:.0}% (everything else {:.0}%) |",
                crate::procfs::cores(),
                100.0 * me / secs,
                100.0 * busy / secs,
                100.0 * (busy - me).max(0.0) / secs
            );
        }
    }
}

fn meta() -> RequestMeta {
    RequestMeta { source_ip: Some("local-loadgen".into()), request_id: Some("loadgen-store-only".into()) }
}

/// Signs every account in through the store, makes the conversations, then sends `messages`
/// from `concurrency` tasks (bounded by `timeout`).
pub(crate) async fn run(
    store: &Store,
    prov: &Provisioned,
    groups: &[Vec<usize>],
    concurrency: usize,
    messages: u64,
    timeout: Duration,
) -> anyhow::Result<StoreReport> {
    let actor = |i: usize| Actor { user_id: prov.accounts[i].user_id, org_id: prov.org_id, role: Role::Clinician };
    let mut devices: Vec<DeviceId> = Vec::with_capacity(prov.accounts.len());
    for a in &prov.accounts {
        let token = |k: &str| format!("{k}{}", uuid::Uuid::new_v4()).into_bytes();
        let new = NewSession {
            user_id: a.user_id,
            device: DeviceClaim { id: None, name: "loadgen".into(), platform: "cli".into() },
            tokens: TokenHashes { access: token("a"), access_expires_at: now_ms() + 600_000, refresh: token("r") },
            expires_at: now_ms() + 3_600_000,
            restriction: None,
            mfa_verified: false,
        };
        let (_, device) = store.login(prov.org_id, a.login.clone(), new, meta()).await?;
        devices.push(device);
    }
    let mut convs: Vec<ConversationId> = Vec::with_capacity(groups.len());
    for (c, m) in groups.iter().enumerate() {
        let spec = NewConversation {
            kind: ConversationKind::Group,
            title: Some(format!("Store test {c}")),
            patient_id: None,
            members: m[1..].iter().map(|&i| MemberSpec { user_id: prov.accounts[i].user_id, reason: None }).collect(),
            creator_reason: None,
        };
        convs.push(store.create_conversation(actor(m[0]), spec, meta()).await?.id);
    }

    let stats = store.writer_stats();
    let (jobs0, commits0) = (stats.jobs.load(Ordering::Relaxed), stats.commits.load(Ordering::Relaxed));
    let actors: Vec<Actor> = (0..prov.accounts.len()).map(actor).collect();
    let shared = Arc::new((groups.to_vec(), convs, devices, actors, AtomicU64::new(0), AtomicU64::new(0)));
    let cpu0 = crate::procfs::cpu_seconds(std::process::id()).zip(crate::procfs::machine_busy_seconds());
    let started = Instant::now();
    let deadline = started + timeout;
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let shared = shared.clone();
            let store = store.clone();
            tokio::spawn(async move {
                let (groups, convs, devices, actors, next, errors) = &*shared;
                let mut h = histogram();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= messages || Instant::now() >= deadline {
                        break;
                    }
                    let c = (n % groups.len() as u64) as usize;
                    let who = groups[c][((n / groups.len() as u64) % groups[c].len() as u64) as usize];
                    let (Ok(txn), Ok(body)) = (ClientTxnId::parse(format!("store-{n}")), MessageText::parse(format!("load message {n}")))
                    else {
                        errors.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    let new = NewMessage {
                        conversation_id: convs[c],
                        client_txn_id: txn,
                        body,
                        priority: Priority::Routine,
                        corrects: None,
                        attachments: vec![],
                    };
                    let t0 = Instant::now();
                    match store.send_message(actors[who], devices[who], new, meta()).await {
                        Ok(_) => h.saturating_record(t0.elapsed().as_micros() as u64),
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                h
            })
        })
        .collect();
    let mut hists = Vec::with_capacity(concurrency);
    for t in tasks {
        hists.push(t.await?);
    }
    let wall = started.elapsed();
    let cpu1 = crate::procfs::cpu_seconds(std::process::id()).zip(crate::procfs::machine_busy_seconds());
    let cpu = cpu0.zip(cpu1).map(|((a0, b0), (a1, b1))| (a1 - a0, b1 - b0));
    let mut latency = histogram();
    for h in &hists {
        latency.add(h)?;
    }
    Ok(StoreReport {
        backend: match store.backend() {
            ward_store::Backend::Sqlite => "SQLite",
            ward_store::Backend::Postgres => "PostgreSQL",
        },
        concurrency,
        messages,
        acked: latency.len(),
        errors: shared.5.load(Ordering::Relaxed),
        wall,
        latency,
        jobs: stats.jobs.load(Ordering::Relaxed) - jobs0,
        commits: stats.commits.load(Ordering::Relaxed) - commits0,
        cpu_self: cpu.map(|c| c.0),
        cpu_machine: cpu.map(|c| c.1),
    })
}
