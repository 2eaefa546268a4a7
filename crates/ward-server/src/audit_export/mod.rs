//! Audit events in formats for other systems: FHIR R4 AuditEvent (NDJSON, or a Bundle) and CSV
//! for spreadsheets. Shared by the API (`GET /api/v1/audit/export`) and the `ward audit export`
//! command. The verifiable NDJSON that `ward audit verify` reads is not here: it is
//! `ward_audit::ExportLine`.
//!
//! Output is produced incrementally by an [`Encoder`] (head, one chunk per event, tail), so an
//! export of any size streams in bounded memory.

pub mod fhir;
pub mod reports;

use ward_domain::disclosure;
use ward_store::AuditRecord;

/// An export format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ExportFormat {
    /// One FHIR R4 AuditEvent per line (`application/fhir+ndjson`).
    FhirNdjson,
    /// One FHIR R4 Bundle of type `collection` (`application/fhir+json`).
    FhirBundle,
    /// CSV with a header row and the [`CSV_COLUMNS`] (`text/csv`).
    Csv,
}

impl ExportFormat {
    /// The stable name (`fhir-ndjson`, `fhir-bundle`, `csv`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FhirNdjson => "fhir-ndjson",
            Self::FhirBundle => "fhir-bundle",
            Self::Csv => "csv",
        }
    }

    /// Parses the stable name.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::FhirNdjson, Self::FhirBundle, Self::Csv].into_iter().find(|f| f.as_str() == s)
    }

    /// The media type of the output.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::FhirNdjson => "application/fhir+ndjson",
            Self::FhirBundle => "application/fhir+json",
            Self::Csv => "text/csv; charset=utf-8",
        }
    }

    /// The usual file name extension.
    pub fn extension(self) -> &'static str {
        match self {
            Self::FhirNdjson => "ndjson",
            Self::FhirBundle => "json",
            Self::Csv => "csv",
        }
    }
}

/// The CSV columns, in order. Stable: new columns are only ever appended.
pub const CSV_COLUMNS: &[&str] = &[
    "idx",
    "occurred_at",
    "occurred_at_ms",
    "org_id",
    "actor_user_id",
    "actor_device_id",
    "action",
    "outcome",
    "target_type",
    "target_id",
    "patient_id",
    "source_ip",
    "request_id",
    "disclosure_purpose",
    "detail",
    "leaf_hash",
];

/// Writes one export incrementally.
pub struct Encoder {
    format: ExportFormat,
    origin: String,
    first: bool,
}

impl Encoder {
    /// An encoder for `format`; `origin` is the audit log's origin (the FHIR observer).
    pub fn new(format: ExportFormat, origin: impl Into<String>) -> Self {
        Self { format, origin: origin.into(), first: true }
    }

    /// What comes before the first event.
    pub fn head(&self, now_ms: i64) -> Vec<u8> {
        match self.format {
            ExportFormat::FhirNdjson => Vec::new(),
            ExportFormat::FhirBundle => fhir::bundle_head(&self.origin, now_ms).into_bytes(),
            ExportFormat::Csv => csv_row(CSV_COLUMNS.iter().map(|c| (*c).to_owned())),
        }
    }

    /// One event.
    pub fn event(&mut self, r: &AuditRecord) -> Vec<u8> {
        let first = std::mem::replace(&mut self.first, false);
        match self.format {
            ExportFormat::FhirNdjson => {
                let mut out = serde_json::to_vec(&fhir::audit_event(r, &self.origin)).unwrap_or_default();
                out.push(b'\n');
                out
            }
            ExportFormat::FhirBundle => {
                let mut out = if first { Vec::new() } else { b",".to_vec() };
                out.extend_from_slice(b"{\"resource\":");
                out.extend(serde_json::to_vec(&fhir::audit_event(r, &self.origin)).unwrap_or_default());
                out.push(b'}');
                out
            }
            ExportFormat::Csv => csv_row(csv_fields(r)),
        }
    }

    /// What comes after the last event.
    pub fn tail(&self) -> Vec<u8> {
        match self.format {
            ExportFormat::FhirBundle => b"]}\n".to_vec(),
            _ => Vec::new(),
        }
    }
}

fn csv_fields(r: &AuditRecord) -> impl Iterator<Item = String> {
    let opt = |v: Option<String>| v.unwrap_or_default();
    let purpose = disclosure::classify(&r.action, &r.outcome, r.actor_user_id, &r.detail).map(|d| d.purpose);
    [
        r.idx.to_string(),
        fhir::instant(r.occurred_at),
        r.occurred_at.to_string(),
        opt(r.org_id.map(|u| u.to_string())),
        opt(r.actor_user_id.map(|u| u.to_string())),
        opt(r.actor_device_id.map(|u| u.to_string())),
        r.action.clone(),
        r.outcome.clone(),
        opt(r.target_type.clone()),
        opt(r.target_id.clone()),
        opt(r.patient_id.map(|u| u.to_string())),
        opt(r.source_ip.clone()),
        opt(r.request_id.clone()),
        opt(purpose),
        r.detail.clone(),
        r.leaf().leaf_hash().to_string(),
    ]
    .into_iter()
}

/// One CSV record (RFC 4180 quoting by the `csv` crate). A field a spreadsheet would run as a
/// formula gets a leading `'` (values are ids and codes, but ids such as `target_id` are text).
pub fn csv_row(fields: impl IntoIterator<Item = String>) -> Vec<u8> {
    let mut w = csv::WriterBuilder::new().terminator(csv::Terminator::CRLF).from_writer(Vec::new());
    let fields: Vec<String> = fields.into_iter().map(defuse).collect();
    // Writing to a Vec cannot fail.
    let _ = w.write_record(&fields);
    w.into_inner().unwrap_or_default()
}

fn defuse(field: String) -> String {
    if field.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{field}") } else { field }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_round_trip_their_names() {
        for f in [ExportFormat::FhirNdjson, ExportFormat::FhirBundle, ExportFormat::Csv] {
            assert_eq!(ExportFormat::parse(f.as_str()), Some(f));
        }
        assert_eq!(ExportFormat::parse("verifiable"), None);
    }

    #[test]
    fn csv_quotes_and_defuses() {
        let row = String::from_utf8(csv_row(["a,b".to_owned(), "=1+1".to_owned(), r#"{"k":"v"}"#.to_owned()])).unwrap();
        assert_eq!(row, "\"a,b\",'=1+1,\"{\"\"k\"\":\"\"v\"\"}\"\r\n");
    }
}
