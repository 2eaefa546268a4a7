//! Structured JSON logs with no message text or patient data, proved with a canary string.
//!
//! Every log line of the process (every target, TRACE and up) is captured as JSON in memory
//! while a canary travels through every place PHI can enter Ward: patient records, titles,
//! messages, corrections, recalls, stated reasons, patient account names, failed sign-ins and
//! malformed or mistyped bodies. The canary must then be absent from the logs, the audit log,
//! `/metrics` and every error body, and present where it belongs (what members read back), so
//! the test cannot pass by never carrying it.

mod common;

use ward_store::on_both_backends;

use std::time::Duration;

use common::canary::{Errors, assert_absent, assert_present};
use common::{Harness, captured, logs};
use reqwest::Method;
use serde_json::{Value, json};
use ward_domain::role::Role;
use ward_store::Backend;

/// The canary, in the case-folded form searched for (login names are lower-cased by Ward).
const CANARY: &str = "canary-7f3a9";
/// The canary as clients send it.
const LOUD: &str = "CANARY-7f3a9";

#[track_caller]
fn assert_no_canary(what: &str, haystack: &str) {
    assert_absent(what, haystack, &[CANARY]);
}

#[track_caller]
fn assert_canary(what: &str, haystack: &str) {
    assert_present(what, haystack, CANARY);
}

async fn canary_stays_out_of_logs_audit_metrics_and_errors(backend: Backend) {
    captured();
    let Some(h) = Harness::start(backend).await else { return };
    let mut errors = Errors(Vec::new());
    let org = h.org("wardfour", vec![]).await;
    let admin = h.account(&org, "admin@wardfour", Role::Admin).await;
    let doc = h.account(&org, "doc@wardfour", Role::Clinician).await;
    let nurse = h.account(&org, "nurse@wardfour", Role::Nurse).await;
    let consultant = h.account(&org, "consultant@wardfour", Role::Clinician).await;
    let (s_admin, s_doc, s_nurse, s_cons) = (h.login(&admin).await, h.login(&doc).await, h.login(&nurse).await, h.login(&consultant).await);
    // The admin exports the audit log below: a sensitive action, after a step-up.
    h.step_up(&s_admin).await;

    // A patient record: MRN and name carry the canary.
    let mrn = format!("{LOUD}-MRN-0042");
    let r = h
        .post(
            "/api/v1/patients",
            &s_doc.access,
            json!({"mrn": mrn, "display_name": format!("Jane {LOUD} Doe"), "care_team": [doc.id, nurse.id]}),
        )
        .await
        .expect(201);
    assert_canary("the created patient", &r.body.to_string());
    let patient = r.body["id"].as_str().unwrap().to_owned();
    let found = h.post("/api/v1/patients/search", &s_nurse.access, json!({"mrn": mrn})).await.expect(200);
    assert_eq!(found.body["id"], patient.as_str());
    errors.problem(h.post("/api/v1/patients/search", &s_nurse.access, json!({"mrn": format!("{LOUD}-NONE")})).await, 404, "not_found");
    errors.problem(
        h.post("/api/v1/patients", &s_doc.access, json!({"mrn": mrn, "display_name": format!("Again {LOUD}")})).await,
        409,
        "conflict",
    );
    errors.problem(
        h.post("/api/v1/patients", &s_doc.access, json!({"mrn": format!("{LOUD} spaced"), "display_name": LOUD})).await,
        422,
        "validation_failed",
    );
    errors.problem(
        h.post("/api/v1/patients/search", &s_nurse.access, json!({"mrn": format!("{LOUD}/bad")})).await,
        422,
        "validation_failed",
    );

    // The patient's own account: its login name is PHI too.
    let patient_login = format!("{CANARY}.patient@wardfour");
    let r = h
        .post(
            "/api/v1/users",
            &s_admin.access,
            json!({"login": patient_login, "display_name": format!("{LOUD} (patient)"), "role": "patient", "patient_id": patient}),
        )
        .await
        .expect(201);
    assert_canary("the created patient account", &r.body.to_string());
    errors.problem(
        h.post(
            "/api/v1/users",
            &s_admin.access,
            json!({"login": patient_login, "display_name": LOUD, "role": "patient", "patient_id": patient}),
        )
        .await,
        409,
        "conflict",
    );

    // The patient's email address carries the canary: added, claimed twice, malformed,
    // verified with a wrong code, and reported bounced.
    let contacts = format!("/api/v1/patients/{patient}/contacts");
    let r = h.post(&contacts, &s_doc.access, json!({"kind": "email", "value": format!("{LOUD}@Example.org")})).await.expect(201);
    assert_canary("the created contact", &r.body.to_string());
    let contact = r.body["id"].as_str().unwrap().to_owned();
    errors.problem(
        h.post(&contacts, &s_doc.access, json!({"kind": "email", "value": format!("{LOUD}@example.org")})).await,
        409,
        "conflict",
    );
    errors.problem(
        h.post(&contacts, &s_doc.access, json!({"kind": "email", "value": format!("{LOUD}@@example")})).await,
        422,
        "validation_failed",
    );
    errors.problem(h.post(&contacts, &s_doc.access, json!({"kind": "phone", "value": LOUD})).await, 422, "validation_failed");
    errors.problem(
        h.post("/api/v1/me/contacts", &s_doc.access, json!({"kind": "email", "value": format!("{LOUD} @x.org")})).await,
        422,
        "validation_failed",
    );
    h.call(Method::POST, &format!("{contacts}/{contact}/verify"), Some(&s_doc.access), None).await.expect(202);
    errors.problem(h.post(&format!("{contacts}/{contact}/confirm"), &s_doc.access, json!({"code": LOUD})).await, 422, "validation_failed");
    errors.problem(
        h.post("/api/v1/contacts/suppress", &s_admin.access, json!({"contact_id": LOUD, "reason": "bounce"})).await,
        400,
        "invalid_body",
    );
    h.post("/api/v1/contacts/suppress", &s_admin.access, json!({"contact_id": contact, "reason": "bounce"})).await.expect(200);
    assert_canary("the patient's contacts", &h.get(&contacts, &s_nurse.access).await.expect(200).body.to_string());

    // A patient conversation with a canary title; the nurse listens on the stream.
    let mut stream = h.stream(&s_nurse).await;
    let r = h
        .post(
            "/api/v1/conversations",
            &s_doc.access,
            json!({"kind": "patient", "title": format!("{LOUD} handover"), "patient_id": patient, "members": [{"user_id": nurse.id}]}),
        )
        .await
        .expect(201);
    let conv = r.body["id"].as_str().unwrap().to_owned();
    assert_canary("the conversation", &r.body.to_string());
    let msgs = format!("/api/v1/conversations/{conv}/messages");

    // Messages with the canary in the text (and in the client's transaction id).
    let text = format!("BP 90/60, {LOUD} on bed 4, please review");
    let sent = h
        .post(&msgs, &s_doc.access, json!({"client_txn_id": format!("txn-{LOUD}-1"), "body": text, "priority": "urgent"}))
        .await
        .expect(201);
    let msg = sent.body["id"].as_str().unwrap().to_owned();
    let ev = stream.next_of_kind("message", Duration::from_secs(5)).await.expect("the nurse receives the message");
    assert_canary("the streamed message", &ev.to_string());
    // A retry with other content is a conflict that does not echo either text.
    errors.problem(
        h.post(&msgs, &s_doc.access, json!({"client_txn_id": format!("txn-{LOUD}-1"), "body": format!("other {LOUD}")})).await,
        409,
        "client_txn_id_reused",
    );
    let fixed = h
        .post(&msgs, &s_doc.access, json!({"client_txn_id": "txn-2", "body": format!("Correction: BP 95/60, {LOUD}"), "corrects": msg}))
        .await
        .expect(201);
    let fixed_id = fixed.body["id"].as_str().unwrap().to_owned();
    stream.next_of_kind("message", Duration::from_secs(5)).await.expect("the correction arrives");
    h.post(&format!("/api/v1/conversations/{conv}/receipts"), &s_nurse.access, json!({"kind": "read", "up_to_seq": 2})).await.expect(204);

    // A consultant from outside the care team joins with a stated reason whose note has the canary.
    let r = h
        .post(
            &format!("/api/v1/conversations/{conv}/members"),
            &s_doc.access,
            json!({"user_id": consultant.id, "reason": {"code": "other", "note": format!("second opinion on {LOUD}")}}),
        )
        .await
        .expect(201);
    assert!(r.body["seq"].is_i64());
    errors.problem(
        h.post(
            &format!("/api/v1/conversations/{conv}/members"),
            &s_doc.access,
            json!({"user_id": admin.id, "reason": {"code": "other", "note": "\u{7}"}}),
        )
        .await,
        422,
        "validation_failed",
    );
    // What a member reads back carries the canary: the test is not vacuous.
    let read = h.get(&format!("{msgs}/{msg}"), &s_cons.access).await.expect(200);
    assert_eq!(read.body["body"], text.as_str());
    let page = h.get(&msgs, &s_cons.access).await.expect(200);
    assert_canary("the consultant's page of messages", &page.body.to_string());
    let detail = h.get(&format!("/api/v1/conversations/{conv}"), &s_cons.access).await.expect(200);
    assert_canary("the conversation as a member sees it", &detail.body.to_string());

    // Recall: the text disappears for everyone; the stream says so without it.
    let recalled = h.post(&format!("{msgs}/{msg}/recall"), &s_doc.access, json!({})).await.expect(200);
    assert!(recalled.body["body"].is_null(), "{}", recalled.body);
    let ev = stream.next_of_kind("recall", Duration::from_secs(5)).await.expect("the recall arrives");
    assert_no_canary("the recall event", &ev.to_string());
    errors.problem(h.post(&format!("{msgs}/{fixed_id}/recall"), &s_nurse.access, json!({})).await, 403, "not_sender");
    let read = h.get(&format!("{msgs}/{msg}"), &s_cons.access).await.expect(200);
    assert!(read.body["body"].is_null());

    // Failed sign-ins: the canary as a password, as a login name, and as a malformed name.
    let login = |login: &str, password: &str| json!({"login": login, "password": password, "device": {"name": "phone", "platform": "ios"}});
    for (name, password) in [
        (doc.login.clone(), format!("{LOUD}-password")),
        (format!("{CANARY}@nowhere"), "whatever it is".to_owned()),
        (format!("{LOUD}.Dr@wardfour"), LOUD.to_owned()),
        (format!("{LOUD} with spaces"), LOUD.to_owned()),
        (patient_login.clone(), format!("{LOUD}-guess")),
    ] {
        errors.problem(h.call(Method::POST, "/api/v1/auth/login", None, Some(login(&name, &password))).await, 401, "invalid_credentials");
    }
    errors.problem(
        h.call(Method::POST, "/api/v1/auth/mfa", None, Some(json!({"mfa_token": format!("wmc_{LOUD}"), "code": "123456"}))).await,
        401,
        "invalid_mfa_code",
    );
    errors.problem(
        h.call(
            Method::POST,
            "/api/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": format!("wrt_{LOUD}"), "device_id": s_doc.device_id})),
        )
        .await,
        401,
        "invalid_refresh_token",
    );
    errors.problem(h.get("/api/v1/me", &format!("wat_{LOUD}")).await, 401, "invalid_token");
    errors.problem(
        h.post(
            "/api/v1/me/password",
            &s_cons.access,
            json!({"current_password": format!("{LOUD}-old"), "new_password": format!("{LOUD}-new-password")}),
        )
        .await,
        401,
        "invalid_credentials",
    );

    // Malformed and mistyped bodies carrying the canary.
    let raw = |bytes: String| bytes.into_bytes();
    for (path, body, status, code) in [
        (msgs.clone(), raw(format!(r#"{{"client_txn_id":"t9","body":"{LOUD} cut off"#)), 400, "malformed_json"),
        (msgs.clone(), raw(format!(r#"{{"client_txn_id":"t9","body":"{LOUD}"}} {LOUD}"#)), 400, "malformed_json"),
        (msgs.clone(), raw(format!(r#"{{"client_txn_id":"t9","body":{LOUD}}}"#)), 400, "malformed_json"),
        (msgs.clone(), raw(format!(r#"{{"client_txn_id":"t9","body":"ok","priority":"{LOUD}"}}"#)), 400, "invalid_body"),
        (msgs.clone(), raw(format!(r#"{{"client_txn_id":"t9","body":["{LOUD}"]}}"#)), 400, "invalid_body"),
        (msgs.clone(), raw(format!(r#"{{"client_txn_id":"t9","body":"ok","{LOUD}":1}}"#)), 400, "invalid_body"),
        (msgs.clone(), raw(format!(r#"{{"client_txn_id":"t9","body":"ok","corrects":"{LOUD}"}}"#)), 400, "invalid_body"),
        (msgs.clone(), raw(format!(r#"{{"client_txn_id":"t 9 {LOUD}","body":"ok"}}"#)), 422, "validation_failed"),
        (msgs.clone(), raw(format!(r#"{{"client_txn_id":"t9","body":"{LOUD}\u0000"}}"#)), 422, "validation_failed"),
        (msgs.clone(), raw(format!(r#"{{"{LOUD}":{{"body":"{LOUD}"}}}}"#)), 400, "invalid_body"),
        ("/api/v1/conversations".into(), raw(format!(r#"{{"kind":"{LOUD}","members":[]}}"#)), 400, "invalid_body"),
        (
            "/api/v1/conversations".into(),
            raw(format!(r#"{{"kind":"group","title":"{LOUD}","members":[{{"user_id":"{LOUD}"}}]}}"#)),
            400,
            "invalid_body",
        ),
        (
            "/api/v1/conversations".into(),
            raw(format!(r#"{{"kind":"group","title":"{LOUD}","members":[{{"user_id":"{}","{LOUD}":true}}]}}"#, nurse.id)),
            400,
            "invalid_body",
        ),
        ("/api/v1/patients".into(), raw(format!(r#"{{"mrn":"{LOUD}","display_name":{{"first":"{LOUD}"}}}}"#)), 400, "invalid_body"),
        ("/api/v1/patients".into(), raw(format!(r#"{{"mrn":"{LOUD}","display_name":"x","care_team":["{LOUD}"]}}"#)), 400, "invalid_body"),
        ("/api/v1/patients/search".into(), raw(format!(r#"{{"mrn":"{LOUD}","name":"{LOUD}"}}"#)), 400, "invalid_body"),
        ("/api/v1/auth/login".into(), raw(format!(r#"{{"login":"{LOUD}","password":{LOUD}}}"#)), 400, "malformed_json"),
        ("/api/v1/auth/login".into(), raw(format!(r#"{{"login":"{LOUD}","password":"{LOUD}"}}"#)), 400, "invalid_body"),
        (
            "/api/v1/auth/login".into(),
            raw(format!(r#"{{"login":"{LOUD}","password":"{LOUD}","device":{{"name":"x","platform":"y","{LOUD}":1}}}}"#)),
            400,
            "invalid_body",
        ),
    ] {
        let token = if path.starts_with("/api/v1/auth") { None } else { Some(s_doc.access.as_str()) };
        let r = h.raw(Method::POST, &path, token, "application/json", body).await;
        errors.problem(r, status, code);
    }
    errors.problem(
        h.raw(Method::POST, &msgs, Some(&s_doc.access), "text/plain", LOUD.as_bytes().to_vec()).await,
        415,
        "unsupported_media_type",
    );
    errors.problem(h.get(&format!("/api/v1/patients/{LOUD}"), &s_doc.access).await, 400, "invalid_parameter");
    errors.problem(h.get(&format!("/api/v1/conversations?before={LOUD}"), &s_doc.access).await, 400, "invalid_parameter");

    // A stream client that sends the canary in frames of its own.
    stream.send_json(json!({"type": "ack", "conversation_id": LOUD, "seq": 1})).await;
    stream.send_json(json!({"type": LOUD})).await;
    let mut junk = h.stream_unauthenticated().await;
    junk.send_json(json!({"type": "auth", "access_token": format!("wat_{LOUD}")})).await;
    if let Some(frame) = junk.next_json(Duration::from_secs(5)).await {
        assert_no_canary("the stream's error frame", &frame.to_string());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Metrics.
    let metrics = h.call(Method::GET, "/metrics", None, None).await.expect(200);
    let metrics = metrics.body.as_str().unwrap_or_default().to_owned();
    assert!(metrics.contains("ward_http_requests"), "{metrics}");
    assert!(metrics.contains("/api/v1/conversations/{conversation_id}/messages"), "{metrics}");
    assert_no_canary("/metrics", &metrics);

    // Every error body.
    assert!(errors.0.len() >= 35, "{}", errors.0.len());
    for body in &errors.0 {
        assert_no_canary("an error body", body);
    }

    // The audit log: every column of every row.
    let audit = h.store.audit_events(0, 1_000_000).await.unwrap();
    let actions: Vec<&str> = audit.iter().map(|e| e.action.as_str()).collect();
    for expected in
        ["patient.create", "admin.user_create", "conversation.create", "message.send", "message.recall", "member.add", "auth.login"]
    {
        assert!(actions.iter().any(|a| a.starts_with(expected)), "no {expected} event in {actions:?}");
    }
    assert!(audit.iter().any(|e| e.outcome == "failure"), "failed sign-ins are audited");
    for e in &audit {
        assert_no_canary("the audit log", &serde_json::to_string(e).unwrap());
    }

    // The audit exports and reports: FHIR, CSV, the accounting of disclosures (the consultant
    // joined with a canary in the reason's note) and the access report of the doctor.
    for format in ["fhir-ndjson", "fhir-bundle", "csv"] {
        let res = h.http.get(format!("{}/api/v1/audit/export?format={format}", h.url)).bearer_auth(&s_admin.access).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let text = res.text().await.unwrap();
        assert!(text.contains("member.add") && text.contains(&patient), "the {format} export is empty or lacks the patient's events");
        assert_no_canary(&format!("the {format} export"), &text);
    }
    let disclosures = h.get(&format!("/api/v1/patients/{patient}/disclosures"), &s_admin.access).await.expect(200);
    assert!(disclosures.body["items"].as_array().unwrap().iter().any(|d| d["purpose"] == "other"), "{}", disclosures.body);
    assert_no_canary("the accounting of disclosures", &disclosures.body.to_string());
    let report = h.get(&format!("/api/v1/users/{}/access-report?limit=200", doc.id), &s_admin.access).await.expect(200);
    assert!(report.body["summary"]["total"].as_i64().unwrap() > 5);
    assert_no_canary("the access report", &report.body.to_string());

    // The logs: captured for real (this test's requests are there), and free of the canary.
    let text = logs();
    let lines: Vec<Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert!(lines.len() > 100, "too few log lines: {}", lines.len());
    assert!(text.lines().all(|l| serde_json::from_str::<Value>(l).is_ok()), "every log line is JSON");
    let requests = lines
        .iter()
        .filter(|l| l["message"] == "request" && l["span"]["route"] == "/api/v1/conversations/{conversation_id}/messages")
        .count();
    assert!(requests >= 3, "the requests of this test are not in the captured log");
    // Dependencies log too, at their most verbose: the TLS server, the database driver, the store.
    for (target, level) in [("rustls::server", "TRACE"), ("sqlx::query", "DEBUG"), ("ward_store", "TRACE"), ("ward_server", "INFO")] {
        assert!(
            lines.iter().any(|l| l["level"] == level && l["target"].as_str().is_some_and(|t| t.starts_with(target))),
            "no {level} line from {target} was captured"
        );
    }
    let leaks: Vec<String> = lines
        .iter()
        .filter(|l| l.to_string().to_ascii_lowercase().contains(CANARY))
        .map(|l| {
            format!("{} {} {} {}", l["level"], l["target"], l["log.file"], l["message"].to_string().chars().take(150).collect::<String>())
        })
        .collect();
    assert!(leaks.is_empty(), "LEAKS:\n{}", leaks.join("\n"));
    assert_no_canary("the logs", &text);
}

on_both_backends!(canary_stays_out_of_logs_audit_metrics_and_errors);
