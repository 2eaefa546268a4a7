//! `ward audit export --format fhir-ndjson|fhir-bundle|csv`, `ward audit disclosures` and
//! `ward audit access-report`: the audit log in formats for other systems, and the two reports,
//! read straight from the database by the operator. Each run is itself audited.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ward_domain::audit::{AuditAction, AuditEvent, DetailValue, Outcome};
use ward_domain::ids::{PatientId, UserId};
use ward_server::audit_export::reports::{
    ACTIVITY_COLUMNS, ActivitySummaryView, ActivityView, DISCLOSURE_COLUMNS, DisclosureView, to_csv, to_table,
};
use ward_server::audit_export::{Encoder, ExportFormat};
use ward_server::provision::operator_meta;
use ward_store::{AuditQuery, Store, TimeRange, now_ms};

/// Rows read per query.
const PAGE: i64 = 5_000;

/// How a report is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ReportFormat {
    /// Aligned columns for reading.
    Table,
    /// CSV with a header row.
    Csv,
    /// One JSON document.
    Json,
}

/// Parses a time: Unix milliseconds, an RFC 3339 timestamp, or a date (`2026-01-31`, midnight UTC).
pub(crate) fn parse_time(s: &str) -> anyhow::Result<i64> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    if let Ok(t) = time::OffsetDateTime::parse(s, &Rfc3339) {
        return Ok((t.unix_timestamp_nanos() / 1_000_000) as i64);
    }
    let date_format = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(d) = time::Date::parse(s, &date_format) {
        return Ok(d.midnight().assume_utc().unix_timestamp() * 1000);
    }
    anyhow::bail!("{s:?} is not a time: give Unix milliseconds, an RFC 3339 timestamp or a date such as 2026-01-31")
}

/// A checked time range from optional command-line values.
pub(crate) fn time_range(from: Option<&str>, to: Option<&str>) -> anyhow::Result<TimeRange> {
    let range = TimeRange { from: from.map(parse_time).transpose()?, to: to.map(parse_time).transpose()? };
    if let (Some(f), Some(t)) = (range.from, range.to)
        && f > t
    {
        anyhow::bail!("--from must not be after --to");
    }
    Ok(range)
}

/// Resolves a login name to its account.
pub(crate) async fn user_by_login(store: &Store, login: &str) -> anyhow::Result<ward_store::User> {
    let name = ward_domain::login::LoginName::parse(login)?;
    store.credentials(name.as_str()).await?.map(|c| c.user).ok_or_else(|| anyhow::anyhow!("no account named {name}"))
}

/// What to export.
pub(crate) struct ExportFilter {
    pub(crate) range: TimeRange,
    pub(crate) user: Option<UserId>,
    pub(crate) patient: Option<PatientId>,
}

fn progress(total: u64, what: &'static str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{msg} {wide_bar} {pos}/{len} entries ({per_sec}, {eta} left)") {
        bar.set_style(style);
    }
    bar.set_message(what);
    bar
}

/// Writes the events matching `filter`, across all organisations, in `format`; returns how many.
pub(crate) async fn export(store: &Store, origin: &str, out: &Path, format: ExportFormat, filter: ExportFilter) -> anyhow::Result<u64> {
    let mut ev = AuditEvent::new(AuditAction::AuditExport, Outcome::Success).detail("format", DetailValue::Code(format.as_str()));
    if let Some(f) = filter.range.from {
        ev = ev.detail("from", DetailValue::Int(f));
    }
    if let Some(t) = filter.range.to {
        ev = ev.detail("to", DetailValue::Int(t));
    }
    if let Some(u) = filter.user {
        ev = ev.detail("user", DetailValue::Id(u.0));
    }
    // A filtered export belongs to the organisation of the patient or user it is about, so that
    // it shows in that organisation's accounting of disclosures; a whole-log export has none.
    ev.org_id = match (filter.patient, filter.user) {
        (Some(p), _) => store.patient_org(p).await?,
        (None, Some(u)) => store.user_org(u).await?,
        (None, None) => None,
    };
    store.record(ev.patient(filter.patient), operator_meta()).await?;
    let size = store.audit_size().await?;
    let file = File::create(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut w = BufWriter::new(file);
    let mut enc = Encoder::new(format, origin);
    w.write_all(&enc.head(now_ms()))?;
    let query = AuditQuery {
        actor: filter.user.map(|u| u.0),
        patient: filter.patient.map(|p| p.0),
        from: filter.range.from,
        to: filter.range.to,
        ..AuditQuery::default()
    };
    let bar = progress(size, "exporting");
    let mut after = -1;
    let mut written = 0u64;
    'pages: loop {
        let rows = store.search_audit_scoped(None, AuditQuery { after: Some(after), ..query.clone() }, PAGE).await?;
        for r in &rows {
            if r.idx as u64 >= size {
                break 'pages;
            }
            w.write_all(&enc.event(r))?;
            written += 1;
            after = r.idx;
        }
        bar.set_position(after.max(0) as u64);
        if (rows.len() as i64) < PAGE {
            break;
        }
    }
    w.write_all(&enc.tail())?;
    w.flush()?;
    w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    bar.finish_and_clear();
    Ok(written)
}

fn record_report(org: ward_domain::ids::OrgId, op: &'static str, patient: Option<PatientId>, user: Option<UserId>) -> AuditEvent {
    let mut ev = AuditEvent::new(AuditAction::AuditLogRead, Outcome::Success).detail("op", DetailValue::Code(op)).patient(patient);
    if let Some(u) = user {
        ev = ev.detail("user", DetailValue::Id(u.0));
    }
    ev.org_id = Some(org);
    ev
}

/// The accounting of disclosures for one patient, rendered in `format`.
pub(crate) async fn disclosures(store: &Store, patient: PatientId, range: TimeRange, format: ReportFormat) -> anyhow::Result<Vec<u8>> {
    let org = store.patient_org(patient).await?.ok_or_else(|| anyhow::anyhow!("no patient record {patient}"))?;
    store.record(record_report(org, "disclosures", Some(patient), None), operator_meta()).await?;
    let mut items: Vec<DisclosureView> = Vec::new();
    let mut after = None;
    loop {
        let page = store.disclosures(org, patient, range, after, PAGE as usize).await?;
        items.extend(page.items.into_iter().map(DisclosureView::from));
        match page.next_cursor {
            Some(c) => after = Some(c),
            None => break,
        }
    }
    Ok(match format {
        ReportFormat::Json => {
            let doc = serde_json::json!({"patient_id": patient, "from": range.from, "to": range.to, "items": items});
            let mut out = serde_json::to_vec_pretty(&doc)?;
            out.push(b'\n');
            out
        }
        ReportFormat::Csv => to_csv(DISCLOSURE_COLUMNS, items.iter().map(DisclosureView::fields)),
        ReportFormat::Table => {
            let rows: Vec<Vec<String>> = items.iter().map(DisclosureView::fields).collect();
            let mut out = format!("Accounting of disclosures for patient {patient}: {} disclosure(s)\n\n", items.len());
            out.push_str(&to_table(DISCLOSURE_COLUMNS, &rows));
            out.into_bytes()
        }
    })
}

/// Everything one user did over `range`, rendered in `format`.
pub(crate) async fn access_report(store: &Store, login: &str, range: TimeRange, format: ReportFormat) -> anyhow::Result<Vec<u8>> {
    let user = user_by_login(store, login).await?;
    store.record(record_report(user.org_id, "access_report", None, Some(user.id)), operator_meta()).await?;
    let summary: ActivitySummaryView = store.user_activity_summary(user.org_id, user.id, range).await?.into();
    let bar = progress(summary.total.max(0) as u64, "reading");
    let mut items: Vec<ActivityView> = Vec::new();
    let mut after = None;
    loop {
        let rows = store.user_activity(user.org_id, user.id, range, after, PAGE).await?;
        let full = rows.len() as i64 == PAGE;
        after = rows.last().map(|r| r.idx).or(after);
        items.extend(rows.into_iter().map(ActivityView::from));
        bar.set_position(items.len() as u64);
        if !full {
            break;
        }
    }
    bar.finish_and_clear();
    Ok(match format {
        ReportFormat::Json => {
            let doc = serde_json::json!({"user_id": user.id, "from": range.from, "to": range.to, "summary": summary, "items": items});
            let mut out = serde_json::to_vec_pretty(&doc)?;
            out.push(b'\n');
            out
        }
        ReportFormat::Csv => to_csv(ACTIVITY_COLUMNS, items.iter().map(ActivityView::fields)),
        ReportFormat::Table => {
            let mut out =
                format!("Access report for user {}: {} event(s), {} distinct patient(s)\n\n", user.id, summary.total, summary.patients);
            let counts: Vec<Vec<String>> =
                summary.by_action.iter().map(|a| vec![a.action.clone(), a.outcome.clone(), a.count.to_string()]).collect();
            out.push_str(&to_table(&["action", "outcome", "count"], &counts));
            out.push('\n');
            let rows: Vec<Vec<String>> = items.iter().map(ActivityView::fields).collect();
            out.push_str(&to_table(ACTIVITY_COLUMNS, &rows));
            out.into_bytes()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_in_three_spellings() {
        assert_eq!(parse_time("1767225600000").unwrap(), 1_767_225_600_000);
        assert_eq!(parse_time("2026-01-01T00:00:00Z").unwrap(), 1_767_225_600_000);
        assert_eq!(parse_time("2026-01-01").unwrap(), 1_767_225_600_000);
        assert!(parse_time("yesterday").is_err());
        assert!(time_range(Some("2026-01-02"), Some("2026-01-01")).is_err());
    }
}
