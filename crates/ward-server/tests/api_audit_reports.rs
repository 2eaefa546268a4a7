//! Audit exports and reports over real HTTPS: the FHIR R4 exports validate with an independent
//! FHIR library (fhir.resources in the test venv), CSV has stable columns, filters hold, the
//! accounting of disclosures lists exactly the disclosures outside the care team (and the exports
//! that cover the patient), the access report covers one user's activity with counts and
//! paging, only compliance officers and admins get in, and every use is itself audited.

mod common;

use std::path::Path;

use common::{Harness, Session};
use reqwest::Method;
use serde_json::{Value, json};
use ward_domain::role::Role;
use ward_store::{Backend, on_both_backends};

on_both_backends!(exports_validate_as_fhir_r4_and_reports_account_for_disclosures);
ward_store::on_sqlite!(bad_parameters_and_other_roles_are_refused);

/// A raw download: status, content type and body.
async fn download(h: &Harness, path: &str, s: &Session) -> (u16, String, String) {
    let res = h.http.get(format!("{}{path}", h.url)).bearer_auth(&s.access).send().await.unwrap();
    let status = res.status().as_u16();
    let ct = res.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    (status, ct, res.text().await.unwrap())
}

/// Runs scripts/validate_fhir.py with the test venv's Python. `None` when the venv is not set up
/// (a printed skip; a failure in CI).
fn validate_fhir(kind: &str, file: &Path) -> Option<String> {
    let Ok(python) = std::env::var("WARD_TEST_PYTHON") else {
        assert!(
            !ward_store::testing::pg_required(),
            "WARD_TEST_PYTHON is required in CI (run scripts/test, which installs fhir.resources)"
        );
        eprintln!("SKIPPED: FHIR validation needs WARD_TEST_PYTHON with fhir.resources (scripts/test sets it up)");
        return None;
    };
    let importable = std::process::Command::new(&python).args(["-c", "import fhir.resources"]).output().is_ok_and(|o| o.status.success());
    if !importable {
        assert!(!ward_store::testing::pg_required(), "fhir.resources is required in CI (run scripts/test, which installs it)");
        eprintln!("SKIPPED: fhir.resources is not importable by {python} (scripts/test installs it)");
        return None;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/validate_fhir.py");
    let out = std::process::Command::new(&python).arg(script).arg(kind).arg(file).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the {kind} export is not valid FHIR R4: {text}");
    Some(text)
}

async fn exports_validate_as_fhir_r4_and_reports_account_for_disclosures(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let org = h.org("acme", vec![]).await;
    let co_acc = h.account(&org, "co@acme", Role::ComplianceOfficer).await;
    let doc_acc = h.account(&org, "doc@acme", Role::Clinician).await;
    let nurse_acc = h.account(&org, "nurse@acme", Role::Nurse).await;
    let consultant_acc = h.account(&org, "consultant@acme", Role::Clinician).await;
    let staff_acc = h.account(&org, "staff@acme", Role::Staff).await;
    let (co, doc, nurse) = (h.login(&co_acc).await, h.login(&doc_acc).await, h.login(&nurse_acc).await);

    // Every kind of action: create (C), read (R), update (U), delete (D), execute (E).
    let p = h
        .post("/api/v1/patients", &doc.access, json!({"mrn": "MRN-1", "display_name": "Jane Doe", "care_team": [doc_acc.id, nurse_acc.id]}))
        .await
        .expect(201)
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let q = h
        .post("/api/v1/patients", &doc.access, json!({"mrn": "MRN-2", "display_name": "John Roe", "care_team": [doc_acc.id]}))
        .await
        .expect(201)
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    h.get(&format!("/api/v1/patients/{p}"), &nurse.access).await.expect(200);
    h.call(
        Method::PUT,
        &format!("/api/v1/patients/{p}/care-team"),
        Some(&doc.access),
        Some(json!({"care_team": [doc_acc.id, nurse_acc.id]})),
    )
    .await
    .expect(200);
    let conv = h
        .post(
            "/api/v1/conversations",
            &doc.access,
            json!({"kind": "patient", "title": "Bed 4", "patient_id": p, "members": [{"user_id": nurse_acc.id}]}),
        )
        .await
        .expect(201)
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let msg = h.send(&doc, &conv, "t1", "BP 90/60").await.expect(201).body["id"].as_str().unwrap().to_owned();
    h.get(&format!("/api/v1/conversations/{conv}/messages/{msg}"), &nurse.access).await.expect(200);
    h.post(&format!("/api/v1/conversations/{conv}/messages/{msg}/recall"), &doc.access, json!({})).await.expect(200);
    // The disclosure: a clinician outside the care team joins with a stated reason.
    h.post(
        &format!("/api/v1/conversations/{conv}/members"),
        &doc.access,
        json!({"user_id": consultant_acc.id, "reason": {"code": "consult", "note": "second opinion"}}),
    )
    .await
    .expect(201);
    // Not disclosures: a care-team member joining another patient's conversation is not about P,
    // and removing a member discloses nothing.
    let conv_q = h
        .post("/api/v1/conversations", &doc.access, json!({"kind": "patient", "title": "Bed 5", "patient_id": q, "members": []}))
        .await
        .expect(201)
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    h.call(Method::DELETE, &format!("/api/v1/conversations/{conv}/members/{}", consultant_acc.id), Some(&doc.access), None)
        .await
        .expect(204);
    h.call(
        Method::POST,
        "/api/v1/auth/login",
        None,
        Some(json!({"login": "doc@acme", "password": "wrong password", "device": {"name": "x", "platform": "cli"}})),
    )
    .await
    .expect(401);
    let spare = h.login(&nurse_acc).await;
    h.call(Method::POST, "/api/v1/auth/logout", Some(&spare.access), None).await.expect(204);
    let before_exports = ward_store::now_ms();
    // Exports are sensitive: they need a recent second-factor verification.
    h.step_up(&co).await;

    // FHIR NDJSON: one AuditEvent per line, valid R4.
    let dir = tempfile::tempdir().unwrap();
    let (status, ct, ndjson) = download(&h, "/api/v1/audit/export?format=fhir-ndjson", &co).await;
    assert_eq!(status, 200, "{ndjson}");
    assert_eq!(ct, "application/fhir+ndjson");
    let events: Vec<Value> = ndjson.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let org_events = h.store.search_audit(org.id, ward_store::AuditQuery::default(), 100_000).await.unwrap();
    assert_eq!(events.len(), org_events.len(), "every event of the organisation, and only those");
    let actions: std::collections::BTreeSet<&str> = events.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions.into_iter().collect::<Vec<_>>(), ["C", "D", "E", "R", "U"]);
    let login = events.iter().find(|e| e["subtype"][0]["code"] == "110122" && e["outcome"] == "4").expect("a failed login");
    assert_eq!(login["type"]["code"], "110114");
    assert_eq!(login["outcomeDesc"], "failure");
    assert!(events.iter().any(|e| e["subtype"][0]["code"] == "110123"), "a logout");
    let disclosure = events.iter().find(|e| e["subtype"].as_array().unwrap().iter().any(|c| c["code"] == "disclose")).unwrap();
    assert_eq!(disclosure["purposeOfEvent"][0]["coding"][0]["code"], "consult");
    assert_eq!(disclosure["entity"][0]["what"]["reference"], format!("Patient/{p}"));
    assert_eq!(disclosure["agent"][0]["who"]["identifier"]["value"], doc_acc.id.to_string());
    assert!(!ndjson.contains("second opinion") && !ndjson.contains("Jane") && !ndjson.contains("BP 90"), "names, notes or text leaked");
    let file = dir.path().join("events.ndjson");
    std::fs::write(&file, &ndjson).unwrap();
    if let Some(out) = validate_fhir("ndjson", &file) {
        assert!(out.contains(&format!("{} valid", events.len())), "{out}");
    }

    // A Bundle of the same, filtered to the patient.
    let (status, ct, bundle) = download(&h, &format!("/api/v1/audit/export?format=fhir-bundle&patient={p}"), &co).await;
    assert_eq!((status, ct.as_str()), (200, "application/fhir+json"));
    let b: Value = serde_json::from_str(&bundle).unwrap();
    assert_eq!(b["resourceType"], "Bundle");
    assert_eq!(b["type"], "collection");
    let entries = b["entry"].as_array().unwrap();
    assert!(entries.len() >= 6, "{}", entries.len());
    for e in entries {
        let patient = e["resource"]["entity"].as_array().unwrap().iter().find(|x| x["role"]["code"] == "1").expect("the patient entity");
        assert_eq!(patient["what"]["identifier"]["value"], p.as_str());
    }
    let file = dir.path().join("bundle.json");
    std::fs::write(&file, &bundle).unwrap();
    validate_fhir("bundle", &file);

    // CSV: stable header, one row per event, filtered by user and time.
    let (status, ct, csv) =
        download(&h, &format!("/api/v1/audit/export?format=csv&user={}&from=0&to={before_exports}", doc_acc.id), &co).await;
    assert_eq!((status, ct.as_str()), (200, "text/csv; charset=utf-8"));
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_owned).collect();
    assert_eq!(header, ward_server::audit_export::CSV_COLUMNS);
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let expected = org_events.iter().filter(|e| e.actor_user_id == Some(doc_acc.id.0) && e.occurred_at < before_exports).count();
    assert_eq!(rows.len(), expected);
    assert!(rows.iter().all(|r| r[4] == doc_acc.id.to_string()));
    let member_add = rows.iter().find(|r| &r[6] == "member.add" && &r[13] == "consult").expect("the disclosure row");
    assert_eq!(&member_add[10], p.as_str());

    // Exports that cannot cover P: another patient only, a user who never touched P.
    download(&h, &format!("/api/v1/audit/export?format=csv&patient={q}"), &co).await;
    download(&h, &format!("/api/v1/audit/export?format=csv&user={}", staff_acc.id), &co).await;
    // Each export is recorded as audit.export with its filters.
    let exports = h
        .store
        .search_audit(org.id, ward_store::AuditQuery { action: Some("audit.export".into()), ..Default::default() }, 100)
        .await
        .unwrap();
    assert_eq!(exports.len(), 5);
    assert!(exports.iter().all(|e| e.actor_user_id == Some(co_acc.id.0) && e.outcome == "success"));
    assert_eq!(exports[1].patient_id.map(|u| u.to_string()), Some(p.clone()));
    assert!(
        exports[2].detail.contains(r#""format":"csv""#) && exports[2].detail.contains(&doc_acc.id.to_string()),
        "{}",
        exports[2].detail
    );

    // The accounting of disclosures for P: the member added from outside the care team, then the
    // three exports that covered P (everything; P only; the doctor's events) and not the other two.
    let r = h.get(&format!("/api/v1/patients/{p}/disclosures"), &co.access).await.expect(200);
    let items = r.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 4, "{}", r.body);
    assert_eq!(items[0]["action"], "member.add");
    assert_eq!(items[0]["recipient_kind"], "user");
    assert_eq!(items[0]["recipient_id"], consultant_acc.id.to_string());
    assert_eq!(items[0]["disclosed_by"], doc_acc.id.to_string());
    assert_eq!(items[0]["purpose"], "consult");
    assert_eq!(items[0]["target_id"], conv.as_str());
    assert!(items[0]["purpose_statement"].as_str().unwrap().starts_with("Consultation"));
    assert!(!r.body.to_string().contains("second opinion"), "the free-text note is not part of the accounting");
    let export_idx: Vec<i64> = exports[..3].iter().map(|e| e.idx).collect();
    let listed: Vec<i64> = items[1..].iter().map(|i| i["idx"].as_i64().unwrap()).collect();
    assert_eq!(listed, export_idx);
    assert!(items[1..].iter().all(|i| i["purpose"] == "audit_export" && i["recipient_id"] == co_acc.id.to_string()));
    assert!(r.body["next_cursor"].is_null());
    // Paging and the time range.
    let first = h.get(&format!("/api/v1/patients/{p}/disclosures?limit=1"), &co.access).await.expect(200).body;
    assert_eq!(first["items"].as_array().unwrap().len(), 1);
    let cursor = first["next_cursor"].as_i64().unwrap();
    let rest = h.get(&format!("/api/v1/patients/{p}/disclosures?after={cursor}&limit=200"), &co.access).await.expect(200).body;
    assert_eq!(rest["items"].as_array().unwrap().len(), 3);
    let early = h.get(&format!("/api/v1/patients/{p}/disclosures?to={before_exports}"), &co.access).await.expect(200).body;
    assert_eq!(early["items"].as_array().unwrap().len(), 1);
    // The other patient: no one outside the team joined, but the unfiltered export and the
    // export filtered to Q covered them.
    let rq = h.get(&format!("/api/v1/patients/{q}/disclosures"), &co.access).await.expect(200).body;
    let q_idx: Vec<i64> = rq["items"].as_array().unwrap().iter().map(|i| i["idx"].as_i64().unwrap()).collect();
    assert_eq!(q_idx, [exports[0].idx, exports[2].idx, exports[3].idx], "{rq}");
    let _ = conv_q;

    // The access report for the doctor.
    let r = h.get(&format!("/api/v1/users/{}/access-report?to={before_exports}", doc_acc.id), &co.access).await.expect(200).body;
    assert_eq!(r["summary"]["total"].as_i64().unwrap() as usize, expected);
    assert_eq!(r["summary"]["patients"], 2);
    let counts = r["summary"]["by_action"].as_array().unwrap();
    assert!(counts.iter().any(|c| c["action"] == "auth.login" && c["outcome"] == "failure" && c["count"] == 1), "{counts:?}");
    assert!(counts.iter().any(|c| c["action"] == "message.recall" && c["count"] == 1));
    assert_eq!(r["items"].as_array().unwrap().len(), expected);
    let mut seen = Vec::new();
    let mut after: Option<i64> = None;
    loop {
        let path = match after {
            Some(a) => format!("/api/v1/users/{}/access-report?to={before_exports}&limit=3&after={a}", doc_acc.id),
            None => format!("/api/v1/users/{}/access-report?to={before_exports}&limit=3", doc_acc.id),
        };
        let page = h.get(&path, &co.access).await.expect(200).body;
        seen.extend(page["items"].as_array().unwrap().iter().map(|i| i["idx"].as_i64().unwrap()));
        match page["next_cursor"].as_i64() {
            Some(c) => after = Some(c),
            None => break,
        }
    }
    assert_eq!(seen.len(), expected, "paging loses or repeats nothing");
    assert!(seen.windows(2).all(|w| w[0] < w[1]));

    // Each report use is audited with who asked and what about.
    let reads = h
        .store
        .search_audit(org.id, ward_store::AuditQuery { action: Some("audit.read".into()), ..Default::default() }, 1000)
        .await
        .unwrap();
    assert!(reads.iter().any(|e| e.detail.contains("disclosures") && e.patient_id.map(|u| u.to_string()) == Some(p.clone())));
    assert!(reads.iter().any(|e| e.detail.contains("access_report") && e.detail.contains(&doc_acc.id.to_string())));
    // An admin may export too (recorded as who it was; alerts on it come later).
    let admin = h.login_stepped_up(&h.account(&org, "admin@acme", Role::Admin).await).await;
    assert_eq!(download(&h, "/api/v1/audit/export?format=csv", &admin).await.0, 200);
}

async fn bad_parameters_and_other_roles_are_refused(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let org = h.org("acme", vec![]).await;
    let other = h.org("other", vec![]).await;
    let co = h.login(&h.account(&org, "co@acme", Role::ComplianceOfficer).await).await;
    let nurse_acc = h.account(&org, "nurse@acme", Role::Nurse).await;
    let nurse = h.login(&nurse_acc).await;
    let foreign = h.account(&other, "x@other", Role::Clinician).await;
    let doc = h.login(&h.account(&org, "doc@acme", Role::Clinician).await).await;
    let p =
        h.post("/api/v1/patients", &doc.access, json!({"mrn": "M-1", "display_name": "P", "care_team": []})).await.expect(201).body["id"]
            .as_str()
            .unwrap()
            .to_owned();
    let random = uuid::Uuid::new_v4();

    for path in [
        "/api/v1/audit/export?format=xml".to_owned(),
        "/api/v1/audit/export?format=csv&bogus=1".to_owned(),
        "/api/v1/audit/export?user=not-a-uuid".to_owned(),
        format!("/api/v1/patients/{p}/disclosures?limit=ten"),
        "/api/v1/patients/not-a-uuid/disclosures".to_owned(),
    ] {
        h.get(&path, &co.access).await.expect_problem(400, "invalid_parameter");
    }
    for path in [
        "/api/v1/audit/export?from=10&to=5".to_owned(),
        format!("/api/v1/patients/{p}/disclosures?limit=0"),
        format!("/api/v1/users/{}/access-report?from=-1", nurse_acc.id),
        format!("/api/v1/users/{}/access-report?after=-5", nurse_acc.id),
    ] {
        h.get(&path, &co.access).await.expect_problem(422, "validation_failed");
    }
    // Another organisation's records, or none at all: not found.
    h.get(&format!("/api/v1/users/{}/access-report", foreign.id), &co.access).await.expect_problem(404, "not_found");
    h.get(&format!("/api/v1/users/{random}/access-report"), &co.access).await.expect_problem(404, "not_found");
    h.get(&format!("/api/v1/patients/{random}/disclosures"), &co.access).await.expect_problem(404, "not_found");

    // Other roles are refused, and the refusal is recorded (an export attempt as audit.export).
    let before = h.store.audit_size().await.unwrap() as i64;
    for path in [
        "/api/v1/audit/export".to_owned(),
        format!("/api/v1/patients/{p}/disclosures"),
        format!("/api/v1/users/{}/access-report", nurse_acc.id),
    ] {
        h.get(&path, &nurse.access).await.expect_problem(403, "forbidden");
    }
    let refused = h.store.audit_events(before, 100).await.unwrap();
    let denied: Vec<&str> =
        refused.iter().filter(|e| e.outcome == "denied" && e.actor_user_id == Some(nurse_acc.id.0)).map(|e| e.action.as_str()).collect();
    assert_eq!(denied, ["audit.export", "audit.read", "audit.read"]);
    // A refused export is no disclosure.
    let d = h.get(&format!("/api/v1/patients/{p}/disclosures"), &co.access).await.expect(200).body;
    assert!(d["items"].as_array().unwrap().is_empty(), "{d}");
}
