//! Reports read back from the audit log: the accounting of disclosures for one patient
//! (HIPAA 164.528), the access report for one user (164.308(a)(1)(ii)(D)), and the filtered
//! reads behind the FHIR and CSV exports.
//!
//! The per-patient scans use their own queries with `patient_id = $n` (not the optional
//! filters of `search_audit`), so the partial index `audit_events_by_patient_idx` serves them.
//! The per-user ones read `audit_actor_index` below the integrated tree size and scan the
//! events above it (migration `20261209000004_audit_actor_index` says why).

use ward_domain::disclosure::{self, Recipient};
use ward_domain::ids::{OrgId, PatientId, UserId};

use crate::audit::{AuditRecord, audit_columns, audit_columns_of_e, integrated_size};
use crate::db::{fetch, scalar};
use crate::error::Result;
use crate::{AuditQuery, Store};

/// Rows read per query while scanning for disclosures.
const SCAN: i64 = 1000;
/// Queries one request may spend scanning before it returns a short page with a cursor.
const SCAN_ROUNDS: usize = 20;

/// A time range in Unix milliseconds: `from` inclusive, `to` exclusive; either may be open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeRange {
    /// Inclusive start.
    pub from: Option<i64>,
    /// Exclusive end.
    pub to: Option<i64>,
}

/// One disclosure of a patient's information, as the accounting lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisclosureRecord {
    /// The audit event that records it (its index in the log).
    pub idx: i64,
    /// Unix milliseconds.
    pub occurred_at: i64,
    /// The dotted action name.
    pub action: String,
    /// Who disclosed (the acting user; `None` for the server operator).
    pub disclosed_by: Option<uuid::Uuid>,
    /// Who received it.
    pub recipient: Recipient,
    /// The purpose code.
    pub purpose: String,
    /// The record acted on.
    pub target_type: Option<String>,
    /// Its id.
    pub target_id: Option<String>,
}

/// A page of disclosures. `next_cursor` is set when the scan stopped early (the page may then be
/// shorter than asked, even empty): pass it as `after` to continue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisclosurePage {
    /// Oldest first.
    pub items: Vec<DisclosureRecord>,
    /// Where to continue, if anything is left.
    pub next_cursor: Option<i64>,
}

/// How often a user did one action with one outcome.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct ActionCount {
    /// Dotted action name.
    pub action: String,
    /// success, failure or denied.
    pub outcome: String,
    /// Number of events.
    pub count: i64,
}

/// What a user did over a period, in numbers.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct AccessSummary {
    /// Every event of theirs in the period.
    pub total: i64,
    /// Distinct patients their events named.
    pub patients: i64,
    /// Per action and outcome.
    pub by_action: Vec<ActionCount>,
}

impl Store {
    /// The organisation a patient record belongs to, if the record exists.
    pub async fn patient_org(&self, id: PatientId) -> Result<Option<OrgId>> {
        self.read(move |mut c| {
            Box::pin(async move {
                Ok(scalar!(fetch_optional, &mut c, uuid::Uuid, "SELECT org_id FROM patients WHERE id = $1", id.0)?.map(OrgId))
            })
        })
        .await
    }

    /// The organisation a user belongs to, if the account exists.
    pub async fn user_org(&self, id: UserId) -> Result<Option<OrgId>> {
        self.read(move |mut c| {
            Box::pin(
                async move { Ok(scalar!(fetch_optional, &mut c, uuid::Uuid, "SELECT org_id FROM users WHERE id = $1", id.0)?.map(OrgId)) },
            )
        })
        .await
    }

    /// Audit events matching `q`, in one organisation or (`None`) across all, by index, at most
    /// `limit`. The CLI exports across organisations; the API within the caller's.
    pub async fn search_audit_scoped(&self, org: Option<OrgId>, q: AuditQuery, limit: i64) -> Result<Vec<AuditRecord>> {
        self.read(move |mut c| {
            Box::pin(async move {
                let sql = concat!(
                    "SELECT ",
                    audit_columns!(),
                    " FROM audit_events WHERE ($1 IS NULL OR org_id = $1) AND idx > $2 \
                     AND ($3 IS NULL OR actor_user_id = $3) AND ($4 IS NULL OR patient_id = $4) \
                     AND ($5 IS NULL OR action = $5) AND ($6 IS NULL OR outcome = $6) \
                     AND ($7 IS NULL OR occurred_at >= $7) AND ($8 IS NULL OR occurred_at < $8) \
                     ORDER BY idx LIMIT $9"
                );
                Ok(fetch!(
                    fetch_all,
                    &mut c,
                    AuditRecord,
                    sql,
                    org.map(|o| o.0),
                    q.after.unwrap_or(-1),
                    q.actor,
                    q.patient,
                    q.action,
                    q.outcome,
                    q.from,
                    q.to,
                    limit
                )?)
            })
        })
        .await
    }

    /// One user's events in the organisation over `range`, after index `after`, at most `limit`.
    pub async fn user_activity(
        &self,
        org: OrgId,
        user: UserId,
        range: TimeRange,
        after: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditRecord>> {
        self.read(move |mut c| {
            Box::pin(async move {
                // Integrated events through the per-user index, in index order; then, if the
                // page is not full, the newer ones by scanning from the tree size up.
                let integrated = integrated_size(&mut c).await?;
                let sql = concat!(
                    "SELECT ",
                    audit_columns_of_e!(),
                    " FROM audit_actor_index a JOIN audit_events e ON e.idx = a.idx \
                     WHERE a.actor_user_id = $1 AND a.idx > $2 AND a.idx < $3 AND e.org_id = $4 \
                     AND ($5 IS NULL OR e.occurred_at >= $5) AND ($6 IS NULL OR e.occurred_at < $6) ORDER BY a.idx LIMIT $7"
                );
                let after = after.unwrap_or(-1);
                let mut page = fetch!(fetch_all, &mut c, AuditRecord, sql, user.0, after, integrated, org.0, range.from, range.to, limit)?;
                let rest = limit - page.len() as i64;
                if rest > 0 {
                    let sql = concat!(
                        "SELECT ",
                        audit_columns!(),
                        " FROM audit_events WHERE idx >= $1 AND idx > $2 AND actor_user_id = $3 AND org_id = $4 \
                         AND ($5 IS NULL OR occurred_at >= $5) AND ($6 IS NULL OR occurred_at < $6) ORDER BY idx LIMIT $7"
                    );
                    page.extend(fetch!(fetch_all, &mut c, AuditRecord, sql, integrated, after, user.0, org.0, range.from, range.to, rest)?);
                }
                Ok(page)
            })
        })
        .await
    }

    /// Counts of one user's events over `range`: per action and outcome, and distinct patients.
    pub async fn user_activity_summary(&self, org: OrgId, user: UserId, range: TimeRange) -> Result<AccessSummary> {
        self.read(move |mut c| {
            Box::pin(async move {
                let integrated = integrated_size(&mut c).await?;
                let by_action = fetch!(
                    fetch_all,
                    &mut c,
                    ActionCount,
                    "SELECT action, outcome, COUNT(*) AS count FROM audit_events WHERE idx IN (SELECT idx FROM audit_actor_index \
                     WHERE actor_user_id = $1 AND idx < $5 UNION ALL SELECT idx FROM audit_events WHERE idx >= $5 AND actor_user_id = $1) \
                     AND org_id = $2 AND ($3 IS NULL OR occurred_at >= $3) AND ($4 IS NULL OR occurred_at < $4) \
                     GROUP BY action, outcome ORDER BY action, outcome",
                    user.0,
                    org.0,
                    range.from,
                    range.to,
                    integrated
                )?;
                let patients = scalar!(
                    fetch_one,
                    &mut c,
                    i64,
                    "SELECT COUNT(DISTINCT patient_id) FROM audit_events WHERE idx IN (SELECT idx FROM audit_actor_index \
                     WHERE actor_user_id = $1 AND idx < $5 UNION ALL SELECT idx FROM audit_events WHERE idx >= $5 AND actor_user_id = $1) \
                     AND org_id = $2 AND ($3 IS NULL OR occurred_at >= $3) AND ($4 IS NULL OR occurred_at < $4)",
                    user.0,
                    org.0,
                    range.from,
                    range.to,
                    integrated
                )?;
                Ok(AccessSummary { total: by_action.iter().map(|a| a.count).sum(), patients, by_action })
            })
        })
        .await
    }

    /// The accounting of disclosures of one patient's information over `range`, oldest first:
    /// every event of the patient that [`ward_domain::disclosure::classify`] calls a disclosure,
    /// plus every audit export without a patient filter whose range covers one of the patient's
    /// events. At most `limit` items; see [`DisclosurePage`] for the cursor.
    pub async fn disclosures(
        &self,
        org: OrgId,
        patient: PatientId,
        range: TimeRange,
        after: Option<i64>,
        limit: usize,
    ) -> Result<DisclosurePage> {
        let mut cursor = after.unwrap_or(-1);
        let mut items = Vec::new();
        for _ in 0..SCAN_ROUNDS {
            let rows = self.patient_events(org, patient, range, cursor).await?;
            let exhausted = (rows.len() as i64) < SCAN;
            let upper = if exhausted { i64::MAX } else { rows.last().map_or(i64::MAX, |r| r.idx) };
            let exports = self.unfiltered_exports(org, range, cursor, upper).await?;
            // The exports list may be cut at SCAN rows too: then stop the round where it stops.
            let upper = if exports.len() as i64 == SCAN { exports.last().map_or(upper, |e| e.idx).min(upper) } else { upper };
            let mut merged: Vec<(AuditRecord, bool)> = rows
                .into_iter()
                .map(|r| (r, false))
                .chain(exports.into_iter().map(|e| (e, true)))
                .filter(|(r, _)| r.idx <= upper)
                .collect();
            merged.sort_by_key(|(r, _)| r.idx);
            for (r, coverage) in merged {
                let Some(d) = disclosure::classify(&r.action, &r.outcome, r.actor_user_id, &r.detail) else { continue };
                if coverage && !self.export_covers(org, patient, &r).await? {
                    continue;
                }
                items.push(DisclosureRecord {
                    idx: r.idx,
                    occurred_at: r.occurred_at,
                    action: r.action,
                    disclosed_by: r.actor_user_id,
                    recipient: d.recipient,
                    purpose: d.purpose,
                    target_type: r.target_type,
                    target_id: r.target_id,
                });
                if items.len() == limit {
                    return Ok(DisclosurePage { next_cursor: Some(r.idx), items });
                }
            }
            if upper == i64::MAX {
                return Ok(DisclosurePage { items, next_cursor: None });
            }
            cursor = upper;
        }
        Ok(DisclosurePage { items, next_cursor: Some(cursor) })
    }

    async fn patient_events(&self, org: OrgId, patient: PatientId, range: TimeRange, after: i64) -> Result<Vec<AuditRecord>> {
        self.read(move |mut c| {
            Box::pin(async move {
                let sql = concat!(
                    "SELECT ",
                    audit_columns!(),
                    " FROM audit_events WHERE patient_id = $1 AND org_id = $2 AND idx > $3 \
                     AND ($4 IS NULL OR occurred_at >= $4) AND ($5 IS NULL OR occurred_at < $5) ORDER BY idx LIMIT $6"
                );
                Ok(fetch!(fetch_all, &mut c, AuditRecord, sql, patient.0, org.0, after, range.from, range.to, SCAN)?)
            })
        })
        .await
    }

    /// Audit exports naming no patient (they may cover any), of this organisation or of the
    /// operator's whole-log exports (no organisation), with index in `(after, upto]`.
    async fn unfiltered_exports(&self, org: OrgId, range: TimeRange, after: i64, upto: i64) -> Result<Vec<AuditRecord>> {
        self.read(move |mut c| {
            Box::pin(async move {
                let sql = concat!(
                    "SELECT ",
                    audit_columns!(),
                    " FROM audit_events WHERE action = 'audit.export' AND idx > $1 AND idx <= $2 \
                     AND patient_id IS NULL AND (org_id = $3 OR org_id IS NULL) \
                     AND ($4 IS NULL OR occurred_at >= $4) AND ($5 IS NULL OR occurred_at < $5) ORDER BY idx LIMIT $6"
                );
                Ok(fetch!(fetch_all, &mut c, AuditRecord, sql, after, upto, org.0, range.from, range.to, SCAN)?)
            })
        })
        .await
    }

    /// Whether an export without a patient filter handed over at least one event of the
    /// patient: one that precedes it and matches the export's own filters (detail keys `from`,
    /// `to`, `user`; absent means unfiltered).
    async fn export_covers(&self, org: OrgId, patient: PatientId, export: &AuditRecord) -> Result<bool> {
        let detail: serde_json::Value = serde_json::from_str(&export.detail).unwrap_or_default();
        let from = detail["from"].as_i64();
        let to = detail["to"].as_i64();
        let user: Option<uuid::Uuid> = detail["user"].as_str().and_then(|u| u.parse().ok());
        let before = export.idx;
        self.read(move |mut c| {
            Box::pin(async move {
                Ok(scalar!(
                    fetch_optional,
                    &mut c,
                    i64,
                    "SELECT idx FROM audit_events WHERE patient_id = $1 AND org_id = $2 AND idx < $3 \
                     AND ($4 IS NULL OR occurred_at >= $4) AND ($5 IS NULL OR occurred_at < $5) \
                     AND ($6 IS NULL OR actor_user_id = $6) ORDER BY idx LIMIT 1",
                    patient.0,
                    org.0,
                    before,
                    from,
                    to,
                    user
                )?
                .is_some())
            })
        })
        .await
    }
}
