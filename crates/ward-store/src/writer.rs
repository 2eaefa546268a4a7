//! The single writer: every change goes through one connection that commits jobs in batches.
//!
//! Why: every acknowledged message must be durably committed (an fsync per commit), and an
//! fsync costs far more than the statements. Jobs that arrive while a commit is in flight are
//! gathered into the next transaction, each inside its own savepoint so one failing job does
//! not take the others down. A job's result is released only after its batch commits, so
//! nothing is acknowledged that is not on disk. One writer also makes the audit index and the
//! per-conversation sequences trivially gapless, and spares SQLite its busy-lock retries.

use std::time::Instant;

use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use sqlx::{Connection, PgConnection, SqliteConnection};
use tokio::sync::{mpsc, oneshot};

use crate::db::{Conn, exec};
use crate::error::{Result, StoreError};

/// How many jobs at most share one transaction.
const MAX_BATCH: usize = 512;

type Completion = Box<dyn FnOnce(Result<()>) + Send>;
pub(crate) type Job = Box<dyn for<'c> FnOnce(Conn<'c>) -> BoxFuture<'c, (bool, Completion)> + Send>;

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
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
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
        let job: Job = Box::new(move |conn| {
            Box::pin(async move {
                let outcome = f(conn).await;
                let ok = outcome.is_ok();
                let completion: Completion = Box::new(move |committed: Result<()>| {
                    let _ = done_tx.send(committed.and(outcome));
                });
                (ok, completion)
            })
        });
        self.jobs.send(job).await.map_err(|_| StoreError::Unavailable)?;
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
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if conn.is_none() {
            match connect(&connector).await {
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
        match commit_batch(c, &mut batch).await {
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
                for done in completions {
                    done(Err(StoreError::Unavailable));
                }
                fail_all(&mut batch);
                // The connection's state is unknown after a failed commit: start afresh.
                conn = None;
            }
        }
    }
}

fn fail_all(batch: &mut Vec<Job>) {
    // A job's completion only exists once it has run, so dropping the job drops its sender,
    // and the waiting caller sees the channel close: reported as Unavailable.
    batch.clear();
}

async fn commit_batch(c: &mut OwnedConn, batch: &mut Vec<Job>) -> std::result::Result<Vec<Completion>, (StoreError, Vec<Completion>)> {
    let begin = match c {
        OwnedConn::Sqlite(_) => "BEGIN IMMEDIATE",
        OwnedConn::Pg(_) => "BEGIN",
    };
    if let Err(e) = exec!(&mut c.as_conn(), begin) {
        return Err((e.into(), Vec::new()));
    }
    let isolate = batch.len() > 1;
    let mut completions = Vec::with_capacity(batch.len());
    for job in batch.drain(..) {
        if isolate && let Err(e) = exec!(&mut c.as_conn(), "SAVEPOINT job") {
            return Err((e.into(), completions));
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
            return Err((e.into(), completions));
        }
        if !isolate && !ok {
            // A lone failed job: roll back rather than commit its partial work.
            return match exec!(&mut c.as_conn(), "ROLLBACK") {
                Ok(_) => Ok(completions),
                Err(e) => Err((e.into(), completions)),
            };
        }
    }
    match exec!(&mut c.as_conn(), "COMMIT") {
        Ok(_) => Ok(completions),
        Err(e) => {
            let _ = exec!(&mut c.as_conn(), "ROLLBACK");
            Err((e.into(), completions))
        }
    }
}
