//! Audit retention: entries older than `audit.retention_days` (at least six years, HIPAA
//! 164.316(b)(2)(i)) leave the live database only as a verifiable archive segment
//! (`ward_audit::segment`, docs/audit-log.md).
//!
//! One archiving step takes the oldest contiguous run of live entries that are older than the
//! horizon and covered by the latest signed checkpoint, writes the segment to a temporary
//! file, syncs it, verifies it with the log's own verifier key, renames it into place and
//! syncs the directory; only then does one transaction record the segment (range, checkpoint
//! size, file name, SHA-256), delete the archived rows, and append the `audit.archive` event.
//! A crash anywhere before that transaction leaves the rows in place (and at worst a segment
//! file that the next run rewrites). A lock file in the archive directory keeps two archivers
//! from writing there at once.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use ward_audit::{Verifier, segment};
use ward_domain::audit::{AuditAction, AuditEvent, DetailValue, Outcome};
use ward_store::{AuditArchive, RequestMeta, Store};

/// Most entries one segment holds; a longer backlog becomes several segments.
pub const MAX_SEGMENT_ENTRIES: u64 = 1 << 20;

/// Rows read per query while writing a segment.
const PAGE: u64 = 10_000;

const DAY_MS: i64 = 86_400_000;

/// The retention horizon at `now_ms`: entries that occurred before it may be archived.
pub fn horizon_ms(now_ms: i64, retention_days: u32) -> i64 {
    now_ms.saturating_sub(i64::from(retention_days) * DAY_MS)
}

/// Parses `--before`: a date `YYYY-MM-DD` (midnight UTC) or an RFC 3339 time; Unix ms.
pub fn parse_time_ms(s: &str) -> anyhow::Result<i64> {
    use time::format_description::well_known::Rfc3339;
    let t = match time::OffsetDateTime::parse(s, &Rfc3339) {
        Ok(t) => t,
        Err(_) => {
            let date = time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]"))
                .map_err(|_| anyhow::anyhow!("{s:?} is neither a date (YYYY-MM-DD) nor an RFC 3339 time"))?;
            date.midnight().assume_utc()
        }
    };
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).map_err(|_| anyhow::anyhow!("{s:?} is out of range"))
}

/// Formats Unix ms as an RFC 3339 UTC time (for messages).
pub fn format_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| format!("{ms} ms"))
}

/// A segment written and recorded, its entries deleted from the live database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archived {
    /// First archived index.
    pub start: u64,
    /// One past the last archived index.
    pub end: u64,
    /// The checkpoint size it is proven against.
    pub tree_size: u64,
    /// The segment file.
    pub path: PathBuf,
    /// Its SHA-256, lower-case hex.
    pub sha256: String,
}

/// Archives the next segment of entries older than `horizon_ms` into `dir`, if there is one.
/// `progress` gets (entries written, entries in the segment).
pub async fn archive_once(
    store: &Store,
    verifier: &Verifier,
    dir: &Path,
    horizon_ms: i64,
    meta: RequestMeta,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> anyhow::Result<Option<Archived>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create the archive directory {}", dir.display()))?;
    // One archiver per directory at a time (a `ward audit archive` beside the server's daily
    // job): they would write the same file names. Released when `lock` is dropped.
    let lock_path = dir.join(".archive.lock");
    let lock = File::create(&lock_path).with_context(|| format!("cannot create {}", lock_path.display()))?;
    if let Err(e) = lock.try_lock() {
        anyhow::bail!("another archiver is working in {} ({e})", dir.display());
    }
    let start = store.audit_archived_end().await?;
    let Some(cp) = store.latest_checkpoint().await? else { return Ok(None) };
    let tree_size = cp.tree_size as u64;
    let cap = tree_size.min(start.saturating_add(MAX_SEGMENT_ENTRIES));
    if cap <= start {
        return Ok(None);
    }
    let end = store.audit_expired_end(start, horizon_ms, cap).await?;
    if end <= start {
        return Ok(None);
    }
    let (left, right) = segment::proof_nodes(start, end, tree_size)?;
    let header = segment::SegmentHeader {
        origin: verifier.name().to_owned(),
        start,
        end,
        tree_size,
        checkpoint: cp.note,
        left: store.tree_node_hashes(&left).await?,
        right: store.tree_node_hashes(&right).await?,
    };

    let file_name = format!("segment-{start:012}-{end:012}.ndjson");
    let path = dir.join(&file_name);
    let tmp = dir.join(format!(".{file_name}.tmp"));
    let written = write_segment(store, &header, &tmp, progress).await;
    let sha256 = match written.and_then(|sha| {
        let f = File::open(&tmp).with_context(|| format!("cannot reopen {}", tmp.display()))?;
        segment::verify_segment(BufReader::new(f), verifier, |_, _| {}).map_err(|e| {
            anyhow::anyhow!("refusing to archive entries {start}..{end}: they do not verify against checkpoint {tree_size}: {e}")
        })?;
        Ok(sha)
    }) {
        Ok(sha) => sha,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))?;
    File::open(dir).and_then(|d| d.sync_all()).with_context(|| format!("cannot sync the archive directory {}", dir.display()))?;

    let event = AuditEvent::new(AuditAction::AuditArchive, Outcome::Success)
        .detail("from", DetailValue::Int(start as i64))
        .detail("to", DetailValue::Int(end as i64))
        .detail("tree_size", DetailValue::Int(tree_size as i64));
    let record = AuditArchive {
        start_idx: start as i64,
        end_idx: end as i64,
        tree_size: tree_size as i64,
        file_name,
        file_sha256: sha256.clone(),
        created_at: 0,
    };
    store.record_audit_archive(record, event, meta).await?;
    Ok(Some(Archived { start, end, tree_size, path, sha256 }))
}

/// Writes the segment to `path` and syncs it; returns the file's SHA-256 (hex).
async fn write_segment(
    store: &Store,
    header: &segment::SegmentHeader,
    path: &Path,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> anyhow::Result<String> {
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut w = HashingWriter { inner: BufWriter::new(file), digest: aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256) };
    w.write_all(segment::header_line(header).as_bytes())?;
    let (start, end) = (header.start, header.end);
    let mut next = start;
    while next < end {
        let rows = store.audit_events(next as i64, PAGE.min(end - next) as i64).await?;
        let hashes = store.integrated_leaf_hashes(next, rows.len() as u64).await?;
        if rows.is_empty() || hashes.len() != rows.len() {
            anyhow::bail!("audit entries from {next} are missing from the database or the tree");
        }
        for (r, (hidx, hash)) in rows.iter().zip(&hashes) {
            if r.idx as u64 != next || *hidx != next {
                anyhow::bail!("audit entry {next} is missing from the database or the tree");
            }
            w.write_all(segment::event_line(&r.leaf(), *hash).as_bytes())?;
            next += 1;
        }
        progress(next - start, end - start);
    }
    w.inner.flush()?;
    let digest = w.digest.finish();
    w.inner.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(digest.as_ref().iter().map(|b| format!("{b:02x}")).collect())
}

/// Hashes what goes through it, so the recorded SHA-256 is of exactly the bytes written.
struct HashingWriter<W> {
    inner: W,
    digest: aws_lc_rs::digest::Context,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.digest.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Archives every segment due at `now_ms`; returns them.
pub async fn archive_due(
    store: &Store,
    verifier: &Verifier,
    dir: &Path,
    horizon_ms: i64,
    meta: impl Fn() -> RequestMeta,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> anyhow::Result<Vec<Archived>> {
    let mut done = Vec::new();
    while let Some(a) = archive_once(store, verifier, dir, horizon_ms, meta(), progress).await? {
        done.push(a);
    }
    Ok(done)
}

/// The server's archiving job: ten minutes after start, then daily.
pub fn spawn_daily(store: Store, verifier: Verifier, dir: PathBuf, retention_days: u32) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let day = Duration::from_secs(86_400);
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + Duration::from_secs(600), day);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let horizon = horizon_ms(ward_store::now_ms(), retention_days);
            let meta = || RequestMeta { source_ip: None, request_id: Some(format!("archive-{}", uuid::Uuid::now_v7())) };
            match archive_due(&store, &verifier, &dir, horizon, meta, &mut |_, _| {}).await {
                Ok(done) => {
                    for a in done {
                        tracing::info!(start = a.start, end = a.end, tree_size = a.tree_size, "audit entries archived");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "audit archiving failed"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_horizons() {
        assert_eq!(parse_time_ms("1970-01-02").unwrap(), DAY_MS);
        assert_eq!(parse_time_ms("1970-01-01T00:00:01Z").unwrap(), 1000);
        assert_eq!(parse_time_ms("2026-01-01T01:00:00+01:00").unwrap(), parse_time_ms("2026-01-01").unwrap());
        assert!(parse_time_ms("yesterday").unwrap_err().to_string().contains("YYYY-MM-DD"));
        assert_eq!(horizon_ms(10 * DAY_MS, 2), 8 * DAY_MS);
        assert_eq!(format_ms(DAY_MS), "1970-01-02T00:00:00Z");
    }
}
