//! `--audit`: the audit log's storage figures (docs/benchmarks.md, "Audit log"):
//!
//! 1. appends: `Store::record` from many concurrent tasks, each a durable commit through the
//!    normal single-writer path (group commit included), with the server's integrator running
//!    alongside (`--integrate-every-ms`), then the integrator over the rest;
//! 2. bytes stored per event (SQLite: database file growth; events, then with tree nodes);
//! 3. a tree of `--tree-leaves` leaves in the store (synthetic leaf hashes after the real
//!    events, stored in big `store_tree_nodes` batches), and inclusion proof latency through
//!    the same calls the API makes (`inclusion_plan`, `tree_node_hashes`, `assemble`).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use ward_audit::{Frontier, NodeId, leaf_hash, tree};
use ward_domain::audit::{AuditAction, AuditEvent, DetailValue, Outcome};
use ward_domain::ids::{OrgId, UserId};
use ward_store::{RequestMeta, Store};

use crate::load::histogram;

/// Tree nodes per `store_tree_nodes` call while building the large tree.
const NODE_BATCH: usize = 200_000;

/// What an audit run measured.
pub(crate) struct AuditReport {
    backend: &'static str,
    concurrency: usize,
    events: u64,
    errors: u64,
    wall: Duration,
    latency: Histogram<u64>,
    jobs: u64,
    commits: u64,
    integrate: Duration,
    integrate_every_ms: u64,
    integrated_during: u64,
    integrate_rest: u64,
    bytes_events: Option<u64>,
    bytes_with_tree: Option<u64>,
    tree_leaves: u64,
    tree_build: Duration,
    proofs: Histogram<u64>,
    proof_hashes: usize,
}

impl AuditReport {
    /// Prints the table.
    pub(crate) fn print(&self) {
        let secs = self.wall.as_secs_f64().max(1e-9);
        let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        println!();
        println!("audit log on {}: {} concurrent callers of Store::record, {} events", self.backend, self.concurrency, self.events);
        println!();
        println!("| metric | value |");
        println!("|---|---|");
        println!("| events committed | {} (errors {}) |", self.latency.len(), self.errors);
        println!("| append throughput (durable commit) | {:.0} events/s ({secs:.2} s) |", self.latency.len() as f64 / secs);
        println!(
            "| record latency p50 / p99 / max | {:.2} / {:.2} / {:.2} ms |",
            ms(&self.latency, 0.5),
            ms(&self.latency, 0.99),
            self.latency.max() as f64 / 1000.0
        );
        println!(
            "| write jobs / commits (group commit) | {} / {} ({:.1} per commit) |",
            self.jobs,
            self.commits,
            self.jobs as f64 / self.commits.max(1) as f64
        );
        if self.integrate_every_ms > 0 {
            println!(
                "| integrated while appending (every {} ms, as the server does) | {} of {} events |",
                self.integrate_every_ms, self.integrated_during, self.events
            );
        }
        println!(
            "| integrating the rest into the tree | {} events in {:.2} s ({:.0} leaves/s) |",
            self.integrate_rest,
            self.integrate.as_secs_f64(),
            self.integrate_rest as f64 / self.integrate.as_secs_f64().max(1e-9)
        );
        let per = |b: Option<u64>| {
            b.map_or("n/a (PostgreSQL, or integrated while appending: see docs/benchmarks.md)".to_owned(), |b| {
                format!("{:.0} bytes", b as f64 / self.events.max(1) as f64)
            })
        };
        println!("| stored per event: row and indexes | {} |", per(self.bytes_events));
        println!("| stored per event: with its tree nodes | {} |", per(self.bytes_with_tree));
        println!(
            "| building a tree of {} leaves (store_tree_nodes, {NODE_BATCH} nodes per call) | {:.1} s |",
            self.tree_leaves,
            self.tree_build.as_secs_f64()
        );
        println!(
            "| inclusion proof at {} leaves ({} hashes) p50 / p99 / max, {} proofs | {:.3} / {:.3} / {:.3} ms |",
            self.tree_leaves,
            self.proof_hashes,
            self.proofs.len(),
            ms(&self.proofs, 0.5),
            ms(&self.proofs, 0.99),
            self.proofs.max() as f64 / 1000.0
        );
    }
}

/// The size on disk of a SQLite database (main file and write-ahead log).
fn sqlite_bytes(db: &std::path::Path) -> Option<u64> {
    let size = |p: PathBuf| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    db.exists().then(|| size(db.to_path_buf()) + size(PathBuf::from(wal)))
}

/// Runs the three phases; `sqlite` is the database file when the store is SQLite.
pub(crate) async fn run(
    config: &ward_server::Config,
    store: &Store,
    sqlite: Option<PathBuf>,
    args: &crate::Args,
) -> anyhow::Result<AuditReport> {
    let (concurrency, events, tree_leaves, proofs, integrate_every_ms) =
        (args.concurrency, args.messages, args.tree_leaves, args.proofs, args.integrate_every_ms);
    // Sizes are taken with the WAL checkpointed and emptied, so each byte is counted once.
    store.checkpoint_wal().await?;
    let bytes0 = sqlite.as_deref().and_then(sqlite_bytes);
    let stats = store.writer_stats();
    let (jobs0, commits0) = (stats.jobs.load(Ordering::Relaxed), stats.commits.load(Ordering::Relaxed));
    let next = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
    let org = OrgId(uuid::Uuid::now_v7());
    let log = Arc::new(ward_server::audit_log::AuditLog::open(config, store.clone())?);
    // The server's integrator competes with the appends for the one writer: run it alongside.
    let appending = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let integrator = (integrate_every_ms > 0).then(|| {
        let (log, appending) = (log.clone(), appending.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(integrate_every_ms));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while appending.load(Ordering::Relaxed) {
                tick.tick().await;
                if let Err(e) = log.integrate().await {
                    crate::say(format!("integration failed: {e}"));
                }
            }
        })
    });
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|t| {
            let (store, next) = (store.clone(), next.clone());
            tokio::spawn(async move {
                let mut h = histogram();
                let user = UserId(uuid::Uuid::now_v7());
                loop {
                    let n = next.0.fetch_add(1, Ordering::Relaxed);
                    if n >= events {
                        break;
                    }
                    // A typical read event: ids, a target, a reason code and a count.
                    let mut ev = AuditEvent::new(AuditAction::MessageRead, Outcome::Success)
                        .detail("count", DetailValue::Int((n % 20) as i64))
                        .detail("reason", DetailValue::Code("treatment"));
                    ev.org_id = Some(org);
                    ev.actor = Some(user);
                    ev.target_type = Some("conversation");
                    ev.target_id = Some(uuid::Uuid::now_v7().to_string());
                    let meta = RequestMeta {
                        source_ip: Some(format!("10.0.{}.{}", t % 256, n % 256)),
                        request_id: Some(uuid::Uuid::now_v7().to_string()),
                    };
                    let t0 = Instant::now();
                    match store.record(ev, meta).await {
                        Ok(_) => h.saturating_record(t0.elapsed().as_micros() as u64),
                        Err(_) => {
                            next.1.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                h
            })
        })
        .collect();
    let mut latency = histogram();
    for t in tasks {
        latency.add(&t.await?)?;
    }
    let wall = started.elapsed();
    let integrated_during = store.tree_size().await?;
    appending.store(false, Ordering::Relaxed);
    if let Some(task) = integrator {
        task.await?;
    }
    // Where the last round alongside the appends left the tree.
    let integrated_after = store.tree_size().await?;
    store.checkpoint_wal().await?;
    let (jobs, commits) = (stats.jobs.load(Ordering::Relaxed) - jobs0, stats.commits.load(Ordering::Relaxed) - commits0);
    // With the integrator alongside, the growth holds tree nodes too: only the total is clean.
    let bytes_events =
        (integrate_every_ms == 0).then(|| sqlite.as_deref().and_then(sqlite_bytes).zip(bytes0).map(|(a, b)| a.saturating_sub(b))).flatten();

    crate::say("integrating the rest of the events into the tree");
    let t0 = Instant::now();
    let size = log.integrate().await?;
    let integrate = t0.elapsed();
    let integrate_rest = size.saturating_sub(integrated_after);
    // Leaves from here on are synthetic, with known leaf hashes.
    let synthetic_from = size;
    store.checkpoint_wal().await?;
    let bytes_with_tree = sqlite.as_deref().and_then(sqlite_bytes).zip(bytes0).map(|(a, b)| a.saturating_sub(b));

    crate::say(format!("extending the stored tree from {size} to {tree_leaves} leaves"));
    let t0 = Instant::now();
    let plan = tree::root_plan(size);
    let mut frontier = Frontier::restore(size, store.tree_node_hashes(plan.nodes()).await?)?;
    let mut batch: Vec<(NodeId, ward_audit::Hash)> = Vec::with_capacity(NODE_BATCH + 64);
    while frontier.size() < tree_leaves {
        let leaf = leaf_hash(&frontier.size().to_be_bytes());
        frontier.append(leaf, |id, h| batch.push((id, *h)));
        if batch.len() >= NODE_BATCH {
            store.store_tree_nodes(std::mem::take(&mut batch)).await?;
            if frontier.size() % 1_000_000 < 100_000 {
                crate::say(format!("  {} leaves", frontier.size()));
            }
        }
    }
    store.store_tree_nodes(batch).await?;
    let tree_build = t0.elapsed();
    let size = frontier.size();
    anyhow::ensure!(store.tree_size().await? == size, "the stored tree has another size than built");
    let root = frontier.root();

    crate::say(format!("{proofs} inclusion proofs at tree size {size}"));
    let mut hist = histogram();
    let mut proof_hashes = 0;
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..proofs {
        // xorshift: indexes spread over the whole tree, so most node reads miss every cache
        // but the database's own.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let index = x % size;
        let t0 = Instant::now();
        let plan = tree::inclusion_plan(index, size)?;
        let nodes = store.tree_node_hashes(plan.nodes()).await?;
        let hashes = plan.assemble(&nodes)?;
        hist.saturating_record(t0.elapsed().as_micros() as u64);
        proof_hashes = hashes.len();
        // Only the synthetic leaves have a known leaf hash here; check those proofs fully.
        if index >= synthetic_from {
            ward_audit::proof::verify_inclusion(index, size, &leaf_hash(&index.to_be_bytes()), &hashes, &root)?;
        }
    }
    Ok(AuditReport {
        backend: match store.backend() {
            ward_store::Backend::Sqlite => "SQLite",
            ward_store::Backend::Postgres => "PostgreSQL",
        },
        concurrency,
        events,
        errors: next.1.load(Ordering::Relaxed),
        wall,
        latency,
        jobs,
        commits,
        integrate,
        integrate_every_ms,
        integrated_during,
        integrate_rest,
        bytes_events,
        bytes_with_tree,
        tree_leaves: size,
        tree_build,
        proofs: hist,
        proof_hashes,
    })
}
