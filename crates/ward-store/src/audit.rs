//! The one write path for audit events, and reads of them.
//!
//! Every store operation that changes something calls [`append`] inside the same job, so the
//! event commits if and only if the change does. Indexes are dense: the writer is the only
//! appender in a process, and on PostgreSQL an advisory lock also serialises other processes
//! (the `ward` admin commands) for the moment of the append.

use ward_domain::audit::AuditEvent;

use crate::db::{Conn, exec, fetch, scalar};
use crate::error::Result;
use crate::{RequestMeta, Store, now_ms};

/// The advisory lock key held while appending (PostgreSQL): "WARD" in ASCII.
const AUDIT_LOCK_KEY: i64 = 0x5741_5244;

/// Appends one event; returns its index.
pub(crate) async fn append(c: &mut Conn<'_>, event: &AuditEvent, meta: &RequestMeta) -> Result<i64> {
    if c.is_postgres() {
        exec!(c, "SELECT pg_advisory_xact_lock($1)", AUDIT_LOCK_KEY)?;
    }
    let idx = scalar!(fetch_one, c, i64, "SELECT COALESCE(MAX(idx) + 1, 0) FROM audit_events")?;
    exec!(
        c,
        "INSERT INTO audit_events (idx, occurred_at, org_id, actor_user_id, actor_device_id, action, outcome, \
         target_type, target_id, patient_id, source_ip, request_id, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        idx,
        now_ms(),
        event.org_id.map(|i| i.0),
        event.actor.map(|i| i.0),
        event.device.map(|i| i.0),
        event.action.as_str(),
        event.outcome.as_str(),
        event.target_type,
        event.target_id.as_deref(),
        event.patient.map(|i| i.0),
        meta.source_ip.as_deref(),
        meta.request_id.as_deref(),
        event.detail_json(),
    )?;
    Ok(idx)
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
        self.write(move |mut c| Box::pin(async move { append(&mut c, &event, &meta).await })).await
    }

    /// Audit events from index `from` onwards, oldest first, at most `limit`.
    pub async fn audit_events(&self, from: i64, limit: i64) -> Result<Vec<AuditRecord>> {
        self.read(|mut c| {
            Box::pin(async move {
                Ok(fetch!(
                    fetch_all,
                    &mut c,
                    AuditRecord,
                    "SELECT idx, occurred_at, org_id, actor_user_id, actor_device_id, action, outcome, target_type, \
                     target_id, patient_id, source_ip, request_id, detail FROM audit_events WHERE idx >= $1 ORDER BY idx LIMIT $2",
                    from,
                    limit
                )?)
            })
        })
        .await
    }
}
