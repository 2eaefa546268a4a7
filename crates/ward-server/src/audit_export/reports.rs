//! The accounting of disclosures and the access report as served (JSON) and printed (CSV and a
//! plain table), shared by the API and the `ward audit` commands. Ids and codes only: names are
//! resolved, where needed, by whoever delivers the report.

use serde::Serialize;
use ward_domain::disclosure::purpose_statement;
use ward_store::{AccessSummary, AuditRecord, DisclosureRecord};

use super::csv_row;
use super::fhir::instant;

/// One disclosure of a patient's information (HIPAA 164.528(b)(2)).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DisclosureView {
    /// The audit event recording it (index in the verifiable log).
    pub idx: i64,
    /// When, in Unix milliseconds.
    pub occurred_at: i64,
    /// When, as RFC 3339 UTC.
    pub date: String,
    /// The dotted action (`member.add`, `audit.export`, ...).
    pub action: String,
    /// Who disclosed: the acting user's id (absent for the server operator).
    pub disclosed_by: Option<uuid::Uuid>,
    /// `user` or `operator`.
    pub recipient_kind: &'static str,
    /// The recipient's user id, when a user.
    pub recipient_id: Option<uuid::Uuid>,
    /// The purpose code (a stated reason code, or `audit_export`).
    pub purpose: String,
    /// A brief statement of the purpose, fixed per code.
    pub purpose_statement: &'static str,
    /// The kind of record through which it was disclosed (`conversation`).
    pub target_type: Option<String>,
    /// Its id.
    pub target_id: Option<String>,
}

impl From<DisclosureRecord> for DisclosureView {
    fn from(d: DisclosureRecord) -> Self {
        DisclosureView {
            idx: d.idx,
            occurred_at: d.occurred_at,
            date: instant(d.occurred_at),
            action: d.action,
            disclosed_by: d.disclosed_by,
            recipient_kind: d.recipient.kind(),
            recipient_id: d.recipient.user_id(),
            purpose_statement: purpose_statement(&d.purpose),
            purpose: d.purpose,
            target_type: d.target_type,
            target_id: d.target_id,
        }
    }
}

/// The columns of a disclosures CSV or table.
pub const DISCLOSURE_COLUMNS: &[&str] = &[
    "date",
    "action",
    "disclosed_by",
    "recipient_kind",
    "recipient_id",
    "purpose",
    "purpose_statement",
    "target_type",
    "target_id",
    "idx",
];

impl DisclosureView {
    /// The fields in [`DISCLOSURE_COLUMNS`] order.
    pub fn fields(&self) -> Vec<String> {
        let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        vec![
            self.date.clone(),
            self.action.clone(),
            self.disclosed_by.map_or_else(|| "operator".into(), |u| u.to_string()),
            self.recipient_kind.into(),
            opt(self.recipient_id.map(|u| u.to_string())),
            self.purpose.clone(),
            self.purpose_statement.into(),
            opt(self.target_type.clone()),
            opt(self.target_id.clone()),
            self.idx.to_string(),
        ]
    }
}

/// One event of a user's activity.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ActivityView {
    /// Index in the verifiable log.
    pub idx: i64,
    /// Unix milliseconds.
    pub occurred_at: i64,
    /// RFC 3339 UTC.
    pub time: String,
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
    /// The device used.
    pub device_id: Option<uuid::Uuid>,
    /// Client address.
    pub source_ip: Option<String>,
    /// Codes and counts (JSON object as text).
    pub detail: String,
}

impl From<AuditRecord> for ActivityView {
    fn from(r: AuditRecord) -> Self {
        ActivityView {
            idx: r.idx,
            occurred_at: r.occurred_at,
            time: instant(r.occurred_at),
            action: r.action,
            outcome: r.outcome,
            target_type: r.target_type,
            target_id: r.target_id,
            patient_id: r.patient_id,
            device_id: r.actor_device_id,
            source_ip: r.source_ip,
            detail: r.detail,
        }
    }
}

/// The columns of an access report CSV or table.
pub const ACTIVITY_COLUMNS: &[&str] =
    &["time", "action", "outcome", "target_type", "target_id", "patient_id", "device_id", "source_ip", "detail", "idx"];

impl ActivityView {
    /// The fields in [`ACTIVITY_COLUMNS`] order.
    pub fn fields(&self) -> Vec<String> {
        let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        vec![
            self.time.clone(),
            self.action.clone(),
            self.outcome.clone(),
            opt(self.target_type.clone()),
            opt(self.target_id.clone()),
            opt(self.patient_id.map(|u| u.to_string())),
            opt(self.device_id.map(|u| u.to_string())),
            opt(self.source_ip.clone()),
            self.detail.clone(),
            self.idx.to_string(),
        ]
    }
}

/// How often the user did one action with one outcome.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ActionCountView {
    /// Dotted action name.
    pub action: String,
    /// success, failure or denied.
    pub outcome: String,
    /// Number of events.
    pub count: i64,
}

/// The user's activity over the period, in numbers.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ActivitySummaryView {
    /// Every event of theirs in the period.
    pub total: i64,
    /// Distinct patients their events named.
    pub patients: i64,
    /// Per action and outcome.
    pub by_action: Vec<ActionCountView>,
}

impl From<AccessSummary> for ActivitySummaryView {
    fn from(s: AccessSummary) -> Self {
        ActivitySummaryView {
            total: s.total,
            patients: s.patients,
            by_action: s.by_action.into_iter().map(|a| ActionCountView { action: a.action, outcome: a.outcome, count: a.count }).collect(),
        }
    }
}

/// A header and rows as CSV.
pub fn to_csv(columns: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> Vec<u8> {
    let mut out = csv_row(columns.iter().map(|c| (*c).to_owned()));
    for r in rows {
        out.extend(csv_row(r));
    }
    out
}

/// A header and rows as an aligned plain-text table.
pub fn to_table(columns: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = columns.iter().map(|c| c.chars().count()).collect();
    for r in rows {
        for (w, f) in widths.iter_mut().zip(r) {
            *w = (*w).max(f.chars().count());
        }
    }
    let line = |fields: &mut dyn Iterator<Item = &str>| -> String {
        let cells: Vec<String> = fields.zip(&widths).map(|(f, w)| format!("{f:<w$}")).collect();
        cells.join("  ").trim_end().to_owned() + "\n"
    };
    let mut out = line(&mut columns.iter().copied());
    for r in rows {
        out.push_str(&line(&mut r.iter().map(String::as_str)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let t = to_table(&["a", "bb"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(t, "a    bb\nxxx  y\n");
    }
}
