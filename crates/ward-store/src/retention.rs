//! Audit retention: the record of archive segments, and the one way archived events leave
//! `audit_events` (the table's DELETE trigger lets only rows inside a recorded segment go).

use ward_audit::{Hash, tree};
use ward_domain::audit::AuditEvent;

use crate::audit::append;
use crate::db::{exec, fetch, scalar};
use crate::error::{Result, StoreError};
use crate::{RequestMeta, Store, now_ms};

/// One archive segment: entries `start_idx..end_idx`, proven against the checkpoint at
/// `tree_size`, written to `file_name` (in the archive directory) whose SHA-256 is `file_sha256`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct AuditArchive {
    /// The first archived index.
    pub start_idx: i64,
    /// One past the last archived index.
    pub end_idx: i64,
    /// The checkpoint size the segment is proven against.
    pub tree_size: i64,
    /// The segment file's name.
    pub file_name: String,
    /// The segment file's SHA-256, lower-case hex.
    pub file_sha256: String,
    /// Unix milliseconds when it was recorded.
    pub created_at: i64,
}

fn to_i64(n: u64) -> Result<i64> {
    i64::try_from(n).map_err(|_| StoreError::State("number out of range"))
}

impl Store {
    /// The number of archived entries: every index below it has left `audit_events`.
    pub async fn audit_archived_end(&self) -> Result<u64> {
        self.read(|mut c| {
            Box::pin(async move {
                let n = scalar!(fetch_one, &mut c, i64, "SELECT COALESCE(MAX(end_idx), 0) FROM audit_archives")?;
                Ok(n as u64)
            })
        })
        .await
    }

    /// Where the live log starts: the archived size and the compact range of the archived
    /// entries (the stored perfect subtrees covering them), from which a verifier continues
    /// the tree (`ward_audit::LogVerifier::start_at`).
    pub async fn audit_base(&self) -> Result<(u64, Vec<Hash>)> {
        let size = self.audit_archived_end().await?;
        let hashes = self.tree_node_hashes(tree::root_plan(size).nodes()).await?;
        Ok((size, hashes))
    }

    /// Every recorded archive segment, oldest first.
    pub async fn audit_archives(&self) -> Result<Vec<AuditArchive>> {
        self.read(|mut c| {
            Box::pin(async move {
                Ok(fetch!(
                    fetch_all,
                    &mut c,
                    AuditArchive,
                    "SELECT start_idx, end_idx, tree_size, file_name, file_sha256, created_at FROM audit_archives ORDER BY start_idx"
                )?)
            })
        })
        .await
    }

    /// The end of the run of live entries from `start` that occurred before `horizon_ms`
    /// (Unix ms), capped at `cap`: the first index at or after `start` that is at or after the
    /// horizon, or the log size. Returns `start` if the run is empty.
    pub async fn audit_expired_end(&self, start: u64, horizon_ms: i64, cap: u64) -> Result<u64> {
        let (start_i, cap_i) = (to_i64(start)?, to_i64(cap)?);
        let end = self
            .read(move |mut c| {
                Box::pin(async move {
                    let first_live = scalar!(
                        fetch_one,
                        &mut c,
                        Option<i64>,
                        "SELECT MIN(idx) FROM audit_events WHERE idx >= $1 AND idx < $2 AND occurred_at >= $3",
                        start_i,
                        cap_i,
                        horizon_ms
                    )?;
                    let last = scalar!(
                        fetch_one,
                        &mut c,
                        Option<i64>,
                        "SELECT MAX(idx) FROM audit_events WHERE idx >= $1 AND idx < $2",
                        start_i,
                        cap_i
                    )?;
                    Ok(first_live.or(last.map(|l| l + 1)).unwrap_or(start_i))
                })
            })
            .await?;
        Ok((end as u64).max(start))
    }

    /// Records an archive segment and deletes its entries, with `event` (the record of this
    /// archiving) appended, all in one transaction. The segment must continue the last one and
    /// be covered by a stored checkpoint (the table's trigger checks both); every index in the
    /// range must be present. Returns the index of `event`.
    pub async fn record_audit_archive(&self, archive: AuditArchive, event: AuditEvent, meta: RequestMeta) -> Result<i64> {
        let archive = AuditArchive { created_at: now_ms(), ..archive };
        // Up to a million rows deleted: exempt from the writer's PostgreSQL commit bound.
        self.write_long(move |mut c| {
            Box::pin(async move {
                exec!(
                    &mut c,
                    "INSERT INTO audit_archives (start_idx, end_idx, tree_size, file_name, file_sha256, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                    archive.start_idx,
                    archive.end_idx,
                    archive.tree_size,
                    archive.file_name.clone(),
                    archive.file_sha256.clone(),
                    archive.created_at
                )
                .map_err(|e| match StoreError::from(e) {
                    StoreError::Conflict(_) => StoreError::Conflict("audit archive"),
                    StoreError::Database(_) => {
                        StoreError::State("an archive segment must continue the last one and be covered by a checkpoint")
                    }
                    other => other,
                })?;
                let deleted = exec!(&mut c, "DELETE FROM audit_events WHERE idx >= $1 AND idx < $2", archive.start_idx, archive.end_idx)?;
                if deleted != (archive.end_idx - archive.start_idx) as u64 {
                    // Rolls the whole transaction back: the archive record must match the rows.
                    return Err(StoreError::Corrupt("audit entries missing from the archived range"));
                }
                // The per-user index is keyed by user first: this scans it, once per segment.
                exec!(&mut c, "DELETE FROM audit_actor_index WHERE idx >= $1 AND idx < $2", archive.start_idx, archive.end_idx)?;
                append(&mut c, &event, &meta).await
            })
        })
        .await
    }
}
