//! The one write path for audit events, and reads of them.
//!
//! Every store operation that changes something calls [`append`] inside the same job, so the
//! event commits if and only if the change does. Indexes are dense: the writer is the only
//! appender in a process, and on PostgreSQL an advisory lock also serialises other processes
//! (the `ward` admin commands) for the moment of the append.

use ward_audit::{AuditLeaf, Hash, NodeId};
use ward_domain::audit::AuditEvent;

use crate::db::{Conn, exec, fetch, scalar};
use crate::error::{Result, StoreError};
use crate::{RequestMeta, Store, now_ms};

/// The columns of an [`AuditRecord`], for `concat!` (sqlx takes only static SQL text).
macro_rules! audit_columns {
    () => {
        "idx, occurred_at, org_id, actor_user_id, actor_device_id, action, outcome, target_type, target_id, patient_id, \
         source_ip, request_id, detail"
    };
}
pub(crate) use audit_columns;

/// The same columns of `audit_events e`, for joins.
macro_rules! audit_columns_of_e {
    () => {
        "e.idx, e.occurred_at, e.org_id, e.actor_user_id, e.actor_device_id, e.action, e.outcome, e.target_type, e.target_id, \
         e.patient_id, e.source_ip, e.request_id, e.detail"
    };
}
pub(crate) use audit_columns_of_e;

/// The advisory lock key held while appending (PostgreSQL): "WARD" in ASCII.
const AUDIT_LOCK_KEY: i64 = 0x5741_5244;

/// The next index to assign: after the last event, or after the last archived one when every
/// live event was archived.
const NEXT_INDEX: &str = "SELECT COALESCE(MAX(idx) + 1, (SELECT COALESCE(MAX(end_idx), 0) FROM audit_archives)) FROM audit_events";

/// Appends one event; returns its index. The one-row case of [`append_many`], so there is a
/// single place where an event becomes a row.
pub(crate) async fn append(c: &mut Conn<'_>, event: &AuditEvent, meta: &RequestMeta) -> Result<i64> {
    append_many(c, &[(event, meta)]).await
}

/// Rows per multi-row `INSERT`, largest first. A batch is written as a sum of these (say
/// 300 = 256 + 32 + 8 + 4), so only these few statement texts exist, each prepared once per
/// connection. 512 rows of 13 columns bind 6,656 values, within both backends' limits
/// (SQLite 32,766, PostgreSQL 65,535).
const ROWS_PER_INSERT: [usize; 10] = [512, 256, 128, 64, 32, 16, 8, 4, 2, 1];

/// `{head} VALUES (…), (…), … {tail}` for each size of [`ROWS_PER_INSERT`]: PostgreSQL's
/// texts number their parameters (`$1`), SQLite's use anonymous `?`. (SQLite looks a `$N`
/// name up by walking a list of all of them, once per parameter: quadratic in a statement
/// of thousands, where it was most of the time spent.)
struct MultiRowSql {
    sqlite: Vec<String>,
    postgres: Vec<String>,
}

impl MultiRowSql {
    fn new(head: &str, columns: usize, tail: &str) -> Self {
        let texts = |param: &dyn Fn(usize) -> String| -> Vec<String> {
            ROWS_PER_INSERT
                .iter()
                .map(|&rows| {
                    let values: Vec<String> = (0..rows)
                        .map(|r| format!("({})", (1..=columns).map(|k| param(r * columns + k)).collect::<Vec<_>>().join(", ")))
                        .collect();
                    format!("{head} VALUES {} {tail}", values.join(", ")).trim_end().to_owned()
                })
                .collect()
        };
        MultiRowSql { sqlite: texts(&|_| "?".to_owned()), postgres: texts(&|n| format!("${n}")) }
    }
}

/// How to cut `len` rows into statements: (index into [`ROWS_PER_INSERT`], start, rows).
fn insert_chunks(len: usize) -> impl Iterator<Item = (usize, usize, usize)> {
    let mut start = 0;
    std::iter::from_fn(move || {
        let left = len - start;
        let (which, &rows) = ROWS_PER_INSERT.iter().enumerate().find(|&(_, &n)| n <= left)?;
        start += rows;
        Some((which, start - rows, rows))
    })
}

static INSERT_EVENTS_SQL: std::sync::LazyLock<MultiRowSql> =
    std::sync::LazyLock::new(|| MultiRowSql::new(concat!("INSERT INTO audit_events (", audit_columns!(), ")"), 13, ""));

static INSERT_NODES_SQL: std::sync::LazyLock<MultiRowSql> = std::sync::LazyLock::new(|| {
    MultiRowSql::new("INSERT INTO audit_tree_nodes (level, idx, hash)", 3, "ON CONFLICT (level, idx) DO NOTHING")
});

/// Takes the append lock (PostgreSQL; SQLite has one writer), held until the transaction
/// ends: Ward nodes sharing a database append one at a time. The writer takes it first thing
/// in every batch (writer.rs), so taking it again here and in `users::keep_another_admin`
/// only re-enters it; those calls keep the code correct for a transaction opened elsewhere.
pub(crate) async fn lock_appends(c: &mut Conn<'_>) -> Result<()> {
    if c.is_postgres() {
        exec!(c, "SELECT pg_advisory_xact_lock($1)", AUDIT_LOCK_KEY)?;
    }
    Ok(())
}

/// Appends several events that accompany no other change, with consecutive indexes from the
/// one returned. One index lookup and a few statements for the lot: this is what lets the
/// single writer keep up with a busy server's refusals and reads.
pub(crate) async fn append_many(c: &mut Conn<'_>, events: &[(&AuditEvent, &RequestMeta)]) -> Result<i64> {
    lock_appends(c).await?;
    let first = scalar!(fetch_one, c, i64, NEXT_INDEX)?;
    let at = now_ms();
    for (which, start, rows) in insert_chunks(events.len()) {
        let chunk = &events[start..start + rows];
        macro_rules! bind_rows {
            ($q:expr) => {{
                let mut q = $q;
                for (idx, (event, meta)) in (first + start as i64..).zip(chunk) {
                    q = q
                        .bind(idx)
                        .bind(at)
                        .bind(event.org_id.map(|i| i.0))
                        .bind(event.actor.map(|i| i.0))
                        .bind(event.device.map(|i| i.0))
                        .bind(event.action.as_str())
                        .bind(event.outcome.as_str())
                        .bind(event.target_type)
                        .bind(event.target_id.as_deref())
                        .bind(event.patient.map(|i| i.0))
                        .bind(meta.source_ip.as_deref())
                        .bind(meta.request_id.as_deref())
                        .bind(event.detail_json());
                }
                q
            }};
        }
        match c {
            Conn::Sqlite(c) => {
                bind_rows!(sqlx::query(INSERT_EVENTS_SQL.sqlite[which].as_str())).execute(&mut **c).await.map(|r| r.rows_affected())?
            }
            Conn::Pg(c) => {
                bind_rows!(sqlx::query(INSERT_EVENTS_SQL.postgres[which].as_str())).execute(&mut **c).await.map(|r| r.rows_affected())?
            }
        };
    }
    Ok(first)
}

/// A stored audit event as read back.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct AuditRecord {
    /// Dense position in the log, from 0.
    pub idx: i64,
    /// Unix milliseconds.
    pub occurred_at: i64,
    /// Tenant.
    pub org_id: Option<uuid::Uuid>,
    /// Acting user.
    pub actor_user_id: Option<uuid::Uuid>,
    /// Acting device.
    pub actor_device_id: Option<uuid::Uuid>,
    /// Dotted action name.
    pub action: String,
    /// success, failure or denied.
    pub outcome: String,
    /// Kind of record acted on.
    pub target_type: Option<String>,
    /// Id of the record acted on.
    pub target_id: Option<String>,
    /// Patient involved (opaque id).
    pub patient_id: Option<uuid::Uuid>,
    /// Client address.
    pub source_ip: Option<String>,
    /// Request id.
    pub request_id: Option<String>,
    /// JSON object of codes and counts.
    pub detail: String,
}

impl Store {
    /// Records an event that accompanies no other change (a refused request, a failed login).
    pub async fn record(&self, event: AuditEvent, meta: RequestMeta) -> Result<i64> {
        self.inner.writer.append_audit(event, meta).await
    }

    /// Audit events from index `from` onwards, oldest first, at most `limit`.
    pub async fn audit_events(&self, from: i64, limit: i64) -> Result<Vec<AuditRecord>> {
        self.read(|mut c| {
            Box::pin(async move {
                let sql = concat!("SELECT ", audit_columns!(), " FROM audit_events WHERE idx >= $1 ORDER BY idx LIMIT $2");
                Ok(fetch!(fetch_all, &mut c, AuditRecord, sql, from, limit)?)
            })
        })
        .await
    }
}

impl AuditRecord {
    /// The event as the leaf the Merkle tree hashes (see `ward_audit::AuditLeaf`).
    pub fn leaf(&self) -> AuditLeaf {
        AuditLeaf {
            // Indexes are assigned from 0 upwards, never negative.
            idx: self.idx as u64,
            occurred_at: self.occurred_at,
            org_id: self.org_id,
            actor_user_id: self.actor_user_id,
            actor_device_id: self.actor_device_id,
            action: self.action.clone(),
            outcome: self.outcome.clone(),
            target_type: self.target_type.clone(),
            target_id: self.target_id.clone(),
            patient_id: self.patient_id,
            source_ip: self.source_ip.clone(),
            request_id: self.request_id.clone(),
            detail: self.detail.clone(),
        }
    }
}

/// A signed checkpoint as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredCheckpoint {
    /// The tree size it commits to.
    pub tree_size: i64,
    /// The root hash at that size (32 bytes).
    pub root_hash: Vec<u8>,
    /// The C2SP signed note, verbatim.
    pub note: String,
    /// Unix milliseconds when it was issued.
    pub created_at: i64,
}

impl StoredCheckpoint {
    /// The root hash as a [`Hash`].
    pub fn root(&self) -> Result<Hash> {
        Hash::try_from(self.root_hash.as_slice()).map_err(|_| StoreError::Corrupt("checkpoint root hash"))
    }
}

/// Nodes fetched per query by [`Store::tree_node_hashes`].
pub(crate) const NODES_PER_QUERY: usize = 16;

/// `SELECT … WHERE (level = $1 AND idx = $2) OR …` for [`NODES_PER_QUERY`] nodes: one literal
/// text for both backends, each term a primary-key lookup (a test checks the term count).
const NODES_SQL: &str = "SELECT level, idx, hash FROM audit_tree_nodes WHERE \
     (level = $1 AND idx = $2) OR (level = $3 AND idx = $4) OR (level = $5 AND idx = $6) OR (level = $7 AND idx = $8) OR \
     (level = $9 AND idx = $10) OR (level = $11 AND idx = $12) OR (level = $13 AND idx = $14) OR (level = $15 AND idx = $16) OR \
     (level = $17 AND idx = $18) OR (level = $19 AND idx = $20) OR (level = $21 AND idx = $22) OR (level = $23 AND idx = $24) OR \
     (level = $25 AND idx = $26) OR (level = $27 AND idx = $28) OR (level = $29 AND idx = $30) OR (level = $31 AND idx = $32)";

/// The given nodes as stored, [`NODES_PER_QUERY`] per query; absent ones are left out.
async fn fetch_nodes(c: &mut Conn<'_>, ids: &[(i16, i64)]) -> Result<Vec<((i16, i64), Hash)>> {
    let mut found = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(NODES_PER_QUERY) {
        // Unused slots ask for a node that cannot exist, so the text never changes.
        let padded = chunk.iter().copied().chain(std::iter::repeat((-1, -1))).take(NODES_PER_QUERY);
        macro_rules! bind_ids {
            ($q:expr) => {{
                let mut q = $q;
                for (level, idx) in padded {
                    q = q.bind(level).bind(idx);
                }
                q
            }};
        }
        let rows = match c {
            Conn::Sqlite(c) => bind_ids!(sqlx::query_as::<_, NodeAtRow>(NODES_SQL)).fetch_all(&mut **c).await?,
            Conn::Pg(c) => bind_ids!(sqlx::query_as::<_, NodeAtRow>(NODES_SQL)).fetch_all(&mut **c).await?,
        };
        for r in rows {
            let hash = Hash::try_from(r.hash.as_slice()).map_err(|_| StoreError::Corrupt("tree node hash"))?;
            found.push(((r.level, r.idx), hash));
        }
    }
    Ok(found)
}

/// The tree's upper nodes, kept in memory once read. Every inclusion or consistency proof
/// needs about one node per level, and the upper levels are few and shared by all proofs, so
/// after a warm-up a proof reads only its lowest levels from the database. Stored nodes never
/// change (triggers refuse updates and deletes), so nothing here ever needs invalidating.
#[derive(Default)]
pub(crate) struct TreeCache {
    nodes: std::sync::RwLock<std::collections::HashMap<(i16, i64), Hash>>,
}

/// The lowest level kept: a node there covers 256 leaves, so a tree of ten million leaves has
/// about 78,000 such nodes (some 5 MB), and a proof reads its 8 lowest nodes from the database.
const CACHED_FROM_LEVEL: i16 = 8;
/// At most this many nodes are kept (about 64 MB): enough for a tree of 128 million leaves.
const CACHED_NODES_MAX: usize = 1 << 20;

impl TreeCache {
    fn lookup(&self, ids: &[(i16, i64)]) -> std::collections::HashMap<(i16, i64), Hash> {
        let nodes = self.nodes.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        ids.iter().filter_map(|key| nodes.get(key).map(|h| (*key, *h))).collect()
    }

    fn keep(&self, fetched: &[((i16, i64), Hash)]) {
        let mut upper = fetched.iter().filter(|((level, _), _)| *level >= CACHED_FROM_LEVEL).peekable();
        if upper.peek().is_none() {
            return;
        }
        let mut nodes = self.nodes.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        for (key, hash) in upper {
            if nodes.len() >= CACHED_NODES_MAX {
                break;
            }
            nodes.insert(*key, *hash);
        }
    }
}

#[derive(sqlx::FromRow)]
struct NodeAtRow {
    level: i16,
    idx: i64,
    hash: Vec<u8>,
}

/// The number of leaves in the stored tree: events below it are integrated, and those with an
/// acting user are in `audit_actor_index`; events from it up are found by scanning.
pub(crate) async fn integrated_size(c: &mut Conn<'_>) -> Result<i64> {
    Ok(scalar!(fetch_one, c, i64, "SELECT COALESCE(MAX(idx) + 1, 0) FROM audit_tree_nodes WHERE level = 0")?)
}

fn to_i64(n: u64) -> Result<i64> {
    i64::try_from(n).map_err(|_| StoreError::State("number out of range"))
}

impl Store {
    /// The number of audit events: the next index to be assigned.
    pub async fn audit_size(&self) -> Result<u64> {
        self.read(|mut c| {
            Box::pin(async move {
                let n = scalar!(fetch_one, &mut c, i64, NEXT_INDEX)?;
                Ok(n as u64)
            })
        })
        .await
    }

    /// The leaf hashes of the events from index `from` onwards, in index order, at most
    /// `limit`. Computed from the rows themselves (`ward_audit::AuditLeaf`).
    pub async fn audit_leaf_hashes(&self, from: u64, limit: u64) -> Result<Vec<Hash>> {
        let rows = self.audit_events(to_i64(from)?, to_i64(limit)?).await?;
        let mut out = Vec::with_capacity(rows.len());
        for (expected, r) in (from..).zip(rows) {
            if r.idx as u64 != expected {
                return Err(StoreError::Corrupt("audit index gap"));
            }
            out.push(r.leaf().leaf_hash());
        }
        Ok(out)
    }

    /// The size of the stored tree: how many leaves have been integrated into
    /// `audit_tree_nodes`.
    pub async fn tree_size(&self) -> Result<u64> {
        self.read(|mut c| Box::pin(async move { Ok(integrated_size(&mut c).await? as u64) })).await
    }

    /// Stores completed perfect subtrees in one transaction. Storing a node again is a no-op
    /// (nodes never change), so an integrator that crashed half-way can simply redo its work.
    pub async fn store_tree_nodes(&self, nodes: Vec<(NodeId, Hash)>) -> Result<()> {
        let nodes =
            nodes.into_iter().map(|(id, h)| Ok((i16::from(id.level), to_i64(id.index)?, h.0.to_vec()))).collect::<Result<Vec<_>>>()?;
        self.write(move |mut c| {
            Box::pin(async move {
                // Multi-row statements: building a large tree (or catching up after a burst) is
                // bound by statements, not bytes.
                for (which, start, rows) in insert_chunks(nodes.len()) {
                    macro_rules! bind_nodes {
                        ($q:expr) => {{
                            let mut q = $q;
                            for (level, idx, hash) in &nodes[start..start + rows] {
                                q = q.bind(*level).bind(*idx).bind(hash.as_slice());
                            }
                            q
                        }};
                    }
                    match &mut c {
                        Conn::Sqlite(c) => bind_nodes!(sqlx::query(INSERT_NODES_SQL.sqlite[which].as_str()))
                            .execute(&mut **c)
                            .await
                            .map(|r| r.rows_affected())?,
                        Conn::Pg(c) => bind_nodes!(sqlx::query(INSERT_NODES_SQL.postgres[which].as_str()))
                            .execute(&mut **c)
                            .await
                            .map(|r| r.rows_affected())?,
                    };
                }
                // The leaves' events join the per-user index in the same transaction, so the
                // index covers exactly the integrated tree (see `actor_watermark`).
                let leaves = nodes.iter().filter(|(level, _, _)| *level == 0).map(|(_, idx, _)| *idx);
                if let Some((lo, hi)) =
                    leaves.fold(None, |r: Option<(i64, i64)>, i| Some(r.map_or((i, i), |(lo, hi)| (lo.min(i), hi.max(i)))))
                {
                    exec!(
                        &mut c,
                        "INSERT INTO audit_actor_index (actor_user_id, idx) SELECT actor_user_id, idx FROM audit_events \
                         WHERE idx >= $1 AND idx <= $2 AND actor_user_id IS NOT NULL ON CONFLICT (actor_user_id, idx) DO NOTHING",
                        lo,
                        hi
                    )?;
                }
                Ok(())
            })
        })
        .await
    }

    /// The hashes of the given nodes, in order; [`StoreError::NotFound`] if one is not stored.
    ///
    /// One query per [`NODES_PER_QUERY`] nodes (an inclusion proof in a tree of ten million
    /// leaves needs two), not one per node: each statement is a round trip to the database
    /// (or to SQLite's worker thread), which is what an API proof's latency is made of.
    pub async fn tree_node_hashes(&self, ids: &[NodeId]) -> Result<Vec<Hash>> {
        let ids = ids.iter().map(|id| Ok((i16::from(id.level), to_i64(id.index)?))).collect::<Result<Vec<_>>>()?;
        let mut found = self.inner.tree_cache.lookup(&ids);
        let missing: Vec<(i16, i64)> = ids.iter().filter(|key| !found.contains_key(key)).copied().collect();
        if !missing.is_empty() {
            let fetched = self.read(move |mut c| Box::pin(async move { fetch_nodes(&mut c, &missing).await })).await?;
            self.inner.tree_cache.keep(&fetched);
            found.extend(fetched);
        }
        ids.iter().map(|key| found.get(key).copied().ok_or(StoreError::NotFound)).collect()
    }

    /// The checkpoint with the largest tree size, if any.
    pub async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>> {
        self.read(|mut c| {
            Box::pin(async move {
                Ok(fetch!(
                    fetch_optional,
                    &mut c,
                    StoredCheckpoint,
                    "SELECT tree_size, root_hash, note, created_at FROM audit_checkpoints ORDER BY tree_size DESC LIMIT 1"
                )?)
            })
        })
        .await
    }

    /// The checkpoint at exactly `size`, if one was issued.
    pub async fn checkpoint(&self, size: u64) -> Result<Option<StoredCheckpoint>> {
        let size = to_i64(size)?;
        self.read(move |mut c| {
            Box::pin(async move {
                Ok(fetch!(
                    fetch_optional,
                    &mut c,
                    StoredCheckpoint,
                    "SELECT tree_size, root_hash, note, created_at FROM audit_checkpoints WHERE tree_size = $1",
                    size
                )?)
            })
        })
        .await
    }

    /// Checkpoints with tree size at least `from`, smallest first, at most `limit`.
    pub async fn checkpoints(&self, from: u64, limit: u64) -> Result<Vec<StoredCheckpoint>> {
        let (from, limit) = (to_i64(from)?, to_i64(limit)?);
        self.read(move |mut c| {
            Box::pin(async move {
                Ok(fetch!(fetch_all, &mut c, StoredCheckpoint, "SELECT tree_size, root_hash, note, created_at FROM audit_checkpoints WHERE tree_size >= $1 ORDER BY tree_size LIMIT $2", from, limit)?)
            })
        })
        .await
    }

    /// Records a signed checkpoint. [`StoreError::Conflict`] if one exists at that size.
    pub async fn insert_checkpoint(&self, size: u64, root: Hash, note: String) -> Result<StoredCheckpoint> {
        let cp = StoredCheckpoint { tree_size: to_i64(size)?, root_hash: root.0.to_vec(), note, created_at: now_ms() };
        self.write(move |mut c| {
            Box::pin(async move {
                exec!(
                    &mut c,
                    "INSERT INTO audit_checkpoints (tree_size, root_hash, note, created_at) VALUES ($1, $2, $3, $4)",
                    cp.tree_size,
                    cp.root_hash.clone(),
                    cp.note.clone(),
                    cp.created_at
                )
                .map_err(|e| match StoreError::from(e) {
                    StoreError::Conflict(_) => StoreError::Conflict("checkpoint"),
                    other => other,
                })?;
                Ok(cp)
            })
        })
        .await
    }
}

/// What an audit search matches; every given criterion must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// The acting user.
    pub actor: Option<uuid::Uuid>,
    /// The patient involved.
    pub patient: Option<uuid::Uuid>,
    /// The dotted action name.
    pub action: Option<String>,
    /// `success`, `failure` or `denied`.
    pub outcome: Option<String>,
    /// Unix milliseconds, inclusive.
    pub from: Option<i64>,
    /// Unix milliseconds, exclusive.
    pub to: Option<i64>,
    /// Only events with a larger index (the cursor).
    pub after: Option<i64>,
}

impl Store {
    /// The organisation's audit events matching `q`, by index, at most `limit`.
    pub async fn search_audit(&self, org: ward_domain::ids::OrgId, q: AuditQuery, limit: i64) -> Result<Vec<AuditRecord>> {
        self.search_audit_scoped(Some(org), q, limit).await
    }
}

#[derive(sqlx::FromRow)]
struct LeafRow {
    idx: i64,
    hash: Vec<u8>,
}

impl Store {
    /// The leaf hashes the tree holds (level-0 nodes) from index `from`, in index order, at
    /// most `limit`, as `(index, hash)`.
    pub async fn integrated_leaf_hashes(&self, from: u64, limit: u64) -> Result<Vec<(u64, Hash)>> {
        let (from, limit) = (to_i64(from)?, to_i64(limit)?);
        self.read(move |mut c| {
            Box::pin(async move {
                let rows = fetch!(
                    fetch_all,
                    &mut c,
                    LeafRow,
                    "SELECT idx, hash FROM audit_tree_nodes WHERE level = 0 AND idx >= $1 ORDER BY idx LIMIT $2",
                    from,
                    limit
                )?;
                rows.into_iter()
                    .map(|r| Ok((r.idx as u64, Hash::try_from(r.hash.as_slice()).map_err(|_| StoreError::Corrupt("tree node hash"))?)))
                    .collect()
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn batches_are_cut_into_the_fixed_statement_sizes() {
        for len in [0usize, 1, 2, 3, 255, 256, 257, 300, 1000, 4096] {
            let chunks: Vec<_> = super::insert_chunks(len).collect();
            assert_eq!(chunks.iter().map(|c| c.2).sum::<usize>(), len, "{len}");
            let mut next = 0;
            for &(which, start, rows) in &chunks {
                assert_eq!((start, super::ROWS_PER_INSERT[which]), (next, rows));
                next += rows;
            }
        }
        let two = super::ROWS_PER_INSERT.len() - 2;
        let pg = &super::INSERT_NODES_SQL.postgres[two];
        assert!(pg.ends_with("VALUES ($1, $2, $3), ($4, $5, $6) ON CONFLICT (level, idx) DO NOTHING"), "{pg}");
        let lite = &super::INSERT_NODES_SQL.sqlite[two];
        assert!(lite.ends_with("VALUES (?, ?, ?), (?, ?, ?) ON CONFLICT (level, idx) DO NOTHING"), "{lite}");
        assert!(super::INSERT_EVENTS_SQL.postgres[0].ends_with(&format!("${})", 512 * 13)));
        assert_eq!(super::INSERT_EVENTS_SQL.sqlite[0].matches('?').count(), 512 * 13);
    }

    #[test]
    fn nodes_sql_has_one_term_per_node() {
        assert_eq!(super::NODES_SQL.matches("(level = $").count(), super::NODES_PER_QUERY);
        assert!(super::NODES_SQL.contains(&format!("idx = ${})", 2 * super::NODES_PER_QUERY)));
    }
}
