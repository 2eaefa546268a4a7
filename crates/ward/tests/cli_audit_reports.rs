//! `ward audit export --format ...`, `ward audit disclosures` and `ward audit access-report` as
//! an operator runs them: the built binary on a temporary data directory (embedded SQLite). The
//! clinical activity the reports are about is written through the store, as the server would.

mod support;

use std::path::Path;
use std::process::Command;

use support::{fails, ok, open_store, ward};
use ward_domain::conversation::{AccessReason, ConversationKind, MemberRole, StatedReason};
use ward_domain::ids::PatientId;
use ward_domain::policy::Actor;
use ward_store::{MemberSpec, NewConversation, RequestMeta};

/// A patient, a patient conversation with a care-team nurse, and a consultant from outside the
/// care team added with a stated reason: one disclosure.
async fn clinical_activity(data: &Path) -> PatientId {
    let store = open_store(data).await;
    let meta = || RequestMeta { source_ip: Some("127.0.0.1".into()), request_id: None };
    let account = |login: &'static str| {
        let store = store.clone();
        async move {
            let u = store.credentials(login).await.unwrap().unwrap().user;
            Actor { user_id: u.id, org_id: u.org_id, role: u.role }
        }
    };
    let (doc, nurse, consultant) = (account("doc@acme").await, account("nurse@acme").await, account("consultant@acme").await);
    let p = store
        .create_patient(doc.org_id, doc.user_id, "MRN-7".into(), "Pat".into(), vec![doc.user_id, nurse.user_id], meta())
        .await
        .unwrap();
    let spec = NewConversation {
        kind: ConversationKind::Patient,
        title: None,
        patient_id: Some(p.id),
        members: vec![MemberSpec { user_id: nurse.user_id, reason: None }],
        creator_reason: None,
    };
    let conv = store.create_conversation(doc, spec, meta()).await.unwrap().id;
    let reason = StatedReason::parse(AccessReason::Consult, Some("echo review".into())).unwrap();
    store.add_member(doc, conv, consultant.user_id, MemberRole::Member, Some(reason), meta()).await.unwrap();
    p.id
}

/// Validates a FHIR export with the test venv's fhir.resources; skipped (printed) without it,
/// required in CI.
fn validate_fhir(kind: &str, file: &Path) {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    let Ok(python) = std::env::var("WARD_TEST_PYTHON") else {
        assert!(!ci, "WARD_TEST_PYTHON is required in CI (run scripts/test, which installs fhir.resources)");
        eprintln!("SKIPPED: FHIR validation needs WARD_TEST_PYTHON with fhir.resources (scripts/test sets it up)");
        return;
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/validate_fhir.py");
    let out = Command::new(&python).arg(script).arg(kind).arg(file).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !ci && text.contains("No module named 'fhir'") {
        eprintln!("SKIPPED: fhir.resources is not importable by {python} (scripts/test installs it)");
        return;
    }
    assert!(out.status.success(), "not valid FHIR R4: {text}");
}

#[test]
fn exports_and_reports_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(ward(d, &["org", "create", "--slug", "acme", "--name", "Acme"]));
    for (login, role) in [("doc@acme", "clinician"), ("nurse@acme", "nurse"), ("consultant@acme", "clinician")] {
        ok(ward(d, &["user", "add", "--org", "acme", "--login", login, "--name", login, "--role", role]));
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let patient = runtime.block_on(clinical_activity(&d.join("data"))).to_string();

    // The accounting: one disclosure so far, in every format.
    let csv = ok(ward(d, &["audit", "disclosures", "--patient", &patient, "--format", "csv"]));
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "date,action,disclosed_by,recipient_kind,recipient_id,purpose,purpose_statement,target_type,target_id,idx");
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(lines[1].contains(",member.add,") && lines[1].contains(",consult,"), "{csv}");
    assert!(!csv.contains("echo review"), "the free-text note stays out of the accounting");
    let table = ok(ward(d, &["audit", "disclosures", "--patient", &patient]));
    assert!(table.starts_with(&format!("Accounting of disclosures for patient {patient}: 1 disclosure(s)")), "{table}");

    // FHIR exports of the patient's events, valid R4; the export is then itself a disclosure.
    let ndjson = d.join("p.ndjson");
    let out = ok(ward(d, &["audit", "export", "--format", "fhir-ndjson", "--patient", &patient, "--out", ndjson.to_str().unwrap()]));
    assert!(out.starts_with("exported ") && out.contains("fhir-ndjson"), "{out}");
    let text = std::fs::read_to_string(&ndjson).unwrap();
    let events: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(events.len() >= 4, "{text}");
    assert!(events.iter().all(|e| e["resourceType"] == "AuditEvent" && text.contains(&format!("Patient/{patient}"))));
    assert!(!text.contains("MRN-7") && !text.contains("echo review"));
    validate_fhir("ndjson", &ndjson);
    let bundle = d.join("all.json");
    ok(ward(d, &["audit", "export", "--format", "fhir-bundle", "--from", "2020-01-01", "--out", bundle.to_str().unwrap()]));
    validate_fhir("bundle", &bundle);
    let json: serde_json::Value =
        serde_json::from_str(&ok(ward(d, &["audit", "disclosures", "--patient", &patient, "--format", "json"]))).unwrap();
    let items = json["items"].as_array().unwrap();
    assert_eq!(items.len(), 3, "the member, then the two exports: {json}");
    assert!(items[1..].iter().all(|i| i["recipient_kind"] == "operator" && i["purpose"] == "audit_export"));

    // CSV of one user's events, and the access report.
    let csv_file = d.join("doc.csv");
    ok(ward(d, &["audit", "export", "--format", "csv", "--user", "doc@acme", "--out", csv_file.to_str().unwrap()]));
    let csv = std::fs::read_to_string(&csv_file).unwrap();
    assert!(csv.starts_with("idx,occurred_at,occurred_at_ms,org_id,actor_user_id,"), "{csv}");
    // patient.create, the owner's and the nurse's member.add, conversation.create, the consultant's member.add.
    assert_eq!(csv.lines().count(), 6, "{csv}");
    let report: serde_json::Value =
        serde_json::from_str(&ok(ward(d, &["audit", "access-report", "--user", "doc@acme", "--format", "json", "--to", "2999-01-01"])))
            .unwrap();
    assert_eq!(report["summary"]["total"], 5);
    assert_eq!(report["summary"]["patients"], 1);
    assert_eq!(report["items"].as_array().unwrap().len(), 5);
    let table = ok(ward(d, &["audit", "access-report", "--user", "doc@acme"]));
    assert!(table.contains("5 event(s), 1 distinct patient(s)") && table.contains("member.add"), "{table}");
    let report_csv = ok(ward(d, &["audit", "access-report", "--user", "nurse@acme", "--format", "csv"]));
    assert_eq!(report_csv.lines().count(), 1, "the nurse did nothing: {report_csv}");

    // The verifiable export is still the default, and still verifies with the new events in it.
    ok(ward(d, &["audit", "checkpoint"]));
    let log = d.join("log.ndjson");
    ok(ward(d, &["audit", "export", "--out", log.to_str().unwrap()]));
    let vkey = d.join("data/audit/verifier.vkey");
    let verified = ok(ward(d, &["audit", "verify", "--export", log.to_str().unwrap(), "--vkey", vkey.to_str().unwrap()]));
    assert!(verified.starts_with("verified "), "{verified}");

    // Bad input: one line, non-zero exit.
    let out = d.join("x");
    let out = out.to_str().unwrap();
    fails(ward(d, &["audit", "export", "--out", out, "--from", "2026-01-01"]), "verifiable export is always complete");
    fails(ward(d, &["audit", "export", "--out", out, "--format", "xml"]), "--format must be");
    fails(ward(d, &["audit", "export", "--out", out, "--format", "csv", "--from", "yesterday"]), "is not a time");
    fails(
        ward(d, &["audit", "export", "--out", out, "--format", "csv", "--from", "2026-02-01", "--to", "2026-01-01"]),
        "--from must not be after --to",
    );
    fails(ward(d, &["audit", "export", "--out", out, "--format", "csv", "--user", "nobody@acme"]), "no account named");
    fails(ward(d, &["audit", "disclosures", "--patient", &uuid::Uuid::new_v4().to_string()]), "no patient record");
    fails(ward(d, &["audit", "access-report", "--user", "nobody@acme"]), "no account named");
}
