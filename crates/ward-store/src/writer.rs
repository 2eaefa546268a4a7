//! The single writer: every change goes through one connection that commits jobs in batches.
//!
//! Why: every acknowledged message must be durably committed (an fsync per commit), and an
//! fsync costs far more than the statements. Jobs that arrive while a commit is in flight are
//! gathered into the next transaction, each inside its own savepoint so one failing job does
//! not take the others down. A job's result is released only after its batch commits, so
//! nothing is acknowledged that is not on disk. One writer also makes the audit index and the
//! per-conversation sequences trivially gapless, and spares SQLite its busy-lock retries.
//!
//! Audit events that accompany no other change (a refused request, a read, a failed login)
//! are the most frequent writes and the simplest: a batch's worth of them is appended with one
//! index lookup and a few multi-row `INSERT`s instead of four statements each.

use std::time::{Duration, Instant};

use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use sqlx::{Connection, PgConnection, SqliteConnection};
use tokio::sync::{mpsc, oneshot};

use ward_domain::audit::AuditEvent;

use crate::RequestMeta;
use crate::audit;
use crate::db::{Conn, exec};
use crate::error::{Result, StoreError};

/// How many jobs running their own statements at most share one transaction.
const MAX_BATCH: usize = 512;
/// How many audit-only events at most share one transaction (they cost a row each).
const MAX_AUDIT_BATCH: usize = 4096;
/// How long the writer waits to connect to PostgreSQL, and for one batch to commit there,
/// before it gives the batch up as unavailable and drops the connection. Without a bound, a
/// network partition (no reset, just silence) would hold every write for the kernel's TCP
/// retransmission timeout, many minutes. Batches commit in milliseconds normally; the few jobs
/// that legitimately take long (deleting an archived audit segment of up to a million rows)
/// are sent with [`Writer::write_long`], and a batch holding one has no commit bound.
const PG_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const PG_COMMIT_TIMEOUT: Duration = Duration::from_secs(10);

type Completion = Box<dyn FnOnce(Result<()>) + Send>;
type RunJob = Box<dyn for<'c> FnOnce(Conn<'c>) -> BoxFuture<'c, (bool, Completion)> + Send>;

/// What the writer is asked to do.
#[allow(clippy::large_enum_variant, reason = "audit events, the commonest jobs, travel by value: no allocation each")]
pub(crate) enum Job {
    /// Run statements of the caller's own; `true` when it may legitimately run long.
    Run(RunJob, bool),
    /// Append an audit event that accompanies no other change; answered with its index.
    Audit(AuditOnly),
}

/// An audit event waiting for the next batch.
pub(crate) struct AuditOnly {
    event: AuditEvent,
    meta: RequestMeta,
    done: oneshot::Sender<Result<i64>>,
}

impl AuditOnly {
    /// The completion that answers the caller once the batch's fate is known.
    fn completion(self, outcome: Result<i64>) -> Completion {
        let done = self.done;
        Box::new(move |committed: Result<()>| {
            let _ = done.send(committed.and(outcome));
        })
    }

    /// The same append as a job of its own (a lone event, or the fallback when a batch's
    /// combined append fails and each event must succeed or fail alone).
    fn into_run(self) -> RunJob {
        let AuditOnly { event, meta, done } = self;
        run_job(move |mut c| Box::pin(async move { audit::append(&mut c, &event, &meta).await }), done)
    }
}

/// Wraps `f` as a job whose outcome is sent on `done` once its batch commits.
fn run_job<T, F>(f: F, done: oneshot::Sender<Result<T>>) -> RunJob
where
    T: Send + 'static,
    F: for<'c> FnOnce(Conn<'c>) -> BoxFuture<'c, Result<T>> + Send + 'static,
{
    Box::new(move |conn| {
        Box::pin(async move {
            let outcome = f(conn).await;
            let ok = outcome.is_ok();
            let completion: Completion = Box::new(move |committed: Result<()>| {
                let _ = done.send(committed.and(outcome));
            });
            (ok, completion)
        })
    })
}

/// How the writer (re)opens its connection.
pub(crate) enum Connector {
    Sqlite(sqlx::sqlite::SqliteConnectOptions),
    Pg(sqlx::postgres::PgConnectOptions),
}

enum OwnedConn {
    Sqlite(SqliteConnection),
    Pg(PgConnection),
}

impl OwnedConn {
    fn as_conn(&mut self) -> Conn<'_> {
        match self {
            OwnedConn::Sqlite(c) => Conn::Sqlite(c),
            OwnedConn::Pg(c) => Conn::Pg(c),
        }
    }
}

/// Statistics the server exports as metrics.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Transactions committed.
    pub commits: std::sync::atomic::AtomicU64,
    /// Jobs committed.
    pub jobs: std::sync::atomic::AtomicU64,
}

/// A handle for submitting jobs to the writer task.
#[derive(Clone)]
pub(crate) struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    pub(crate) fn spawn(connector: Connector, stats: std::sync::Arc<WriterStats>) -> Writer {
        let (tx, rx) = mpsc::channel(MAX_AUDIT_BATCH);
        tokio::spawn(run(connector, rx, stats));
        Writer { jobs: tx }
    }

    /// Runs `f` inside the next batch and returns its result once the batch has committed.
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(Conn<'c>) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        let (done_tx, done_rx) = oneshot::channel::<Result<T>>();
        self.jobs.send(Job::Run(run_job(f, done_tx), false)).await.map_err(|_| StoreError::Unavailable)?;
        done_rx.await.map_err(|_| StoreError::Unavailable)?
    }

    /// As [`Writer::write`], for a job that may take longer than the PostgreSQL commit bound
    /// (its batch is not timed out).
    pub(crate) async fn write_long<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(Conn<'c>) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        let (done_tx, done_rx) = oneshot::channel::<Result<T>>();
        self.jobs.send(Job::Run(run_job(f, done_tx), true)).await.map_err(|_| StoreError::Unavailable)?;
        done_rx.await.map_err(|_| StoreError::Unavailable)?
    }

    /// Appends an audit event that accompanies no other change; returns its index once the
    /// batch holding it has committed.
    pub(crate) async fn append_audit(&self, event: AuditEvent, meta: RequestMeta) -> Result<i64> {
        let (done, done_rx) = oneshot::channel();
        self.jobs.send(Job::Audit(AuditOnly { event, meta, done })).await.map_err(|_| StoreError::Unavailable)?;
        done_rx.await.map_err(|_| StoreError::Unavailable)?
    }
}

async fn connect(connector: &Connector) -> Result<OwnedConn> {
    Ok(match connector {
        Connector::Sqlite(o) => OwnedConn::Sqlite(SqliteConnection::connect_with(o).await?),
        Connector::Pg(o) => OwnedConn::Pg(PgConnection::connect_with(o).await?),
    })
}

async fn run(connector: Connector, mut rx: mpsc::Receiver<Job>, stats: std::sync::Arc<WriterStats>) {
    let mut conn: Option<OwnedConn> = None;
    let mut batch = Batch::default();
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.runs.len() < MAX_BATCH && batch.audits.len() < MAX_AUDIT_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let on_pg = matches!(connector, Connector::Pg(_));
        if conn.is_none() {
            let connected = if on_pg {
                tokio::time::timeout(PG_CONNECT_TIMEOUT, connect(&connector)).await.unwrap_or(Err(StoreError::Unavailable))
            } else {
                connect(&connector).await
            };
            match connected {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    tracing::error!(error = %e, "writer cannot connect to the database");
                    fail_all(&mut batch);
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let started = Instant::now();
        let size = batch.len();
        let bounded = on_pg && !batch.long;
        let work = commit_batch(c, std::mem::take(&mut batch));
        let outcome = if bounded {
            // On timeout the batch's completions are dropped with the future: each waiting
            // caller sees its channel close, reported as Unavailable. Whether the commit
            // happened is unknown to them, as with any lost connection; retries are idempotent
            // where it matters (a message's client_txn_id).
            tokio::time::timeout(PG_COMMIT_TIMEOUT, work).await.unwrap_or_else(|_| Err((StoreError::Unavailable, Vec::new())))
        } else {
            work.await
        };
        match outcome {
            Ok(completions) => {
                stats.commits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                stats.jobs.fetch_add(size as u64, std::sync::atomic::Ordering::Relaxed);
                tracing::trace!(size, elapsed_us = started.elapsed().as_micros() as u64, "batch committed");
                for done in completions {
                    done(Ok(()));
                }
            }
            Err((e, completions)) => {
                tracing::error!(error = %e, size, "batch did not commit");
                let full = matches!(e, StoreError::StorageFull);
                for done in completions {
                    done(Err(if full { StoreError::StorageFull } else { StoreError::Unavailable }));
                }
                // The connection's state is unknown after a failed commit: start afresh.
                conn = None;
            }
        }
    }
}

/// The jobs of one transaction, audit-only events apart.
#[derive(Default)]
struct Batch {
    runs: Vec<RunJob>,
    audits: Vec<AuditOnly>,
    /// A job in it may legitimately run long.
    long: bool,
}

impl Batch {
    fn push(&mut self, job: Job) {
        match job {
            Job::Run(run, long) => {
                self.runs.push(run);
                self.long |= long;
            }
            Job::Audit(audit) => self.audits.push(audit),
        }
    }

    fn len(&self) -> usize {
        self.runs.len() + self.audits.len()
    }
}

fn fail_all(batch: &mut Batch) {
    // A job's completion only exists once it has run, so dropping the job drops its sender,
    // and the waiting caller sees the channel close: reported as Unavailable.
    *batch = Batch::default();
}

type BatchOutcome = std::result::Result<Vec<Completion>, (StoreError, Vec<Completion>)>;

async fn commit_batch(c: &mut OwnedConn, batch: Batch) -> BatchOutcome {
    let begin = match c {
        OwnedConn::Sqlite(_) => "BEGIN IMMEDIATE",
        OwnedConn::Pg(_) => "BEGIN",
    };
    if let Err(e) = exec!(&mut c.as_conn(), begin) {
        return Err((e.into(), Vec::new()));
    }
    // On PostgreSQL, nodes sharing the database take turns from the start of each batch: the
    // audit append lock, which nearly every batch would take at its first audit event anyway,
    // is taken before any row lock. So no two nodes' batches can wait on each other's row and
    // append locks in opposite orders (a deadlock), and a check a job makes before writing
    // (the last active admin, a care team's groups) sees every other node's committed change.
    // Not for a long batch (deleting an archived audit segment): holding the lock through a
    // million-row delete would stall every other node's writes past their commit bound; its
    // jobs take the lock when they append, and the checks above take it themselves.
    if !batch.long
        && let Err(e) = audit::lock_appends(&mut c.as_conn()).await
    {
        let _ = exec!(&mut c.as_conn(), "ROLLBACK");
        return Err((e, Vec::new()));
    }
    let isolate = batch.len() > 1;
    let Batch { mut runs, mut audits, .. } = batch;
    // A lone audit event is simply a job; several are appended together after the others.
    if audits.len() == 1
        && let Some(audit) = audits.pop()
    {
        runs.push(audit.into_run());
    }
    let mut completions = Vec::with_capacity(runs.len() + audits.len());
    if let Flow::RolledBack = run_jobs(c, runs, isolate, &mut completions).await? {
        return Ok(completions);
    }
    if !audits.is_empty() {
        append_audits(c, audits, &mut completions).await?;
    }
    match exec!(&mut c.as_conn(), "COMMIT") {
        Ok(_) => Ok(completions),
        Err(e) => {
            let _ = exec!(&mut c.as_conn(), "ROLLBACK");
            Err((e.into(), completions))
        }
    }
}

/// Appends several audit-only events with one index lookup and multi-row inserts, inside a
/// savepoint. Should that fail, each is retried as a job of its own, so one bad event cannot
/// take the others down.
async fn append_audits(
    c: &mut OwnedConn,
    audits: Vec<AuditOnly>,
    completions: &mut Vec<Completion>,
) -> std::result::Result<(), (StoreError, Vec<Completion>)> {
    if let Err(e) = exec!(&mut c.as_conn(), "SAVEPOINT audits") {
        return Err((e.into(), std::mem::take(completions)));
    }
    let rows: Vec<(&AuditEvent, &RequestMeta)> = audits.iter().map(|a| (&a.event, &a.meta)).collect();
    match audit::append_many(&mut c.as_conn(), &rows).await {
        Ok(first) => {
            if let Err(e) = exec!(&mut c.as_conn(), "RELEASE SAVEPOINT audits") {
                let _ = exec!(&mut c.as_conn(), "ROLLBACK");
                return Err((e.into(), std::mem::take(completions)));
            }
            completions.extend((first..).zip(audits).map(|(idx, a)| a.completion(Ok(idx))));
            Ok(())
        }
        Err(e) => {
            tracing::warn!(error = %e, events = audits.len(), "combined audit append failed; appending one by one");
            let undone = match exec!(&mut c.as_conn(), "ROLLBACK TO SAVEPOINT audits") {
                Ok(_) => exec!(&mut c.as_conn(), "RELEASE SAVEPOINT audits"),
                Err(e) => Err(e),
            };
            if let Err(e) = undone {
                let _ = exec!(&mut c.as_conn(), "ROLLBACK");
                return Err((e.into(), std::mem::take(completions)));
            }
            run_jobs(c, audits.into_iter().map(AuditOnly::into_run).collect(), true, completions).await.map(|_| ())
        }
    }
}

/// Runs jobs in order, each in a savepoint when `isolate`, collecting their completions.
/// On an error that leaves the transaction unusable it rolls back and returns the
/// completions gathered so far; a lone failed job (not isolated) rolls the transaction back.
async fn run_jobs(
    c: &mut OwnedConn,
    runs: Vec<RunJob>,
    isolate: bool,
    completions: &mut Vec<Completion>,
) -> std::result::Result<Flow, (StoreError, Vec<Completion>)> {
    for job in runs {
        if isolate && let Err(e) = exec!(&mut c.as_conn(), "SAVEPOINT job") {
            return Err((e.into(), std::mem::take(completions)));
        }
        // A panicking job must not take the writer (and so every write) down with it: it
        // fails alone, and its waiter sees the channel close (reported as Unavailable).
        let (ok, done) = match AssertUnwindSafe(job(c.as_conn())).catch_unwind().await {
            Ok(outcome) => outcome,
            Err(_) => {
                tracing::error!("a write job panicked; it was rolled back");
                (false, Box::new(|_| {}) as Completion)
            }
        };
        completions.push(done);
        let step = match (isolate, ok) {
            (true, true) => exec!(&mut c.as_conn(), "RELEASE SAVEPOINT job"),
            (true, false) => match exec!(&mut c.as_conn(), "ROLLBACK TO SAVEPOINT job") {
                Ok(_) => exec!(&mut c.as_conn(), "RELEASE SAVEPOINT job"),
                Err(e) => Err(e),
            },
            (false, _) => Ok(0),
        };
        if let Err(e) = step {
            let _ = exec!(&mut c.as_conn(), "ROLLBACK");
            return Err((e.into(), std::mem::take(completions)));
        }
        if !isolate && !ok {
            // A lone failed job: roll back rather than commit its partial work; its completion
            // reports the job's own error.
            return match exec!(&mut c.as_conn(), "ROLLBACK") {
                Ok(_) => Ok(Flow::RolledBack),
                Err(e) => Err((e.into(), std::mem::take(completions))),
            };
        }
    }
    Ok(Flow::Continue)
}

/// Whether the transaction is still open after [`run_jobs`].
enum Flow {
    Continue,
    RolledBack,
}
