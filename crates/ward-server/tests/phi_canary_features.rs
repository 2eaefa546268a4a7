//! The PHI canary sweep, feature by feature (the companion of `phi_canary.rs`, which covers
//! patient records, messages, sign-ins and malformed bodies).
//!
//! A canary travels through attachments (file name and content), patient contacts (a phone
//! number and an email address), notices by SMS, email and push, forwarding with a note and a
//! patient's authorization (recipient and purpose), break-glass (reason and review note),
//! incidents (title, description and the patient list), a misdirected-message report, the
//! compliance registers (risks, business associates), and legal holds, with local fake push,
//! SMS and SMTP providers. It must then be absent from everything Ward emits outside the
//! encrypted store: every log line (TRACE and up), `/metrics`, every error body, every audit
//! entry, the FHIR and CSV audit exports, the access report, the accounting of disclosures, the
//! evidence bundle (every entry, decompressed), what reached the providers, and every byte
//! under the data directory (on PostgreSQL, every row too). Where it belongs (what authorised
//! members read back, the patient's own export) it is asserted present, so the test cannot pass
//! by never carrying it.
//!
//! Allowed by design (docs/notifications.md): a template's first-name value in the SMS and
//! email text of a notice, and the contact's number or address as the provider's recipient.

mod common;

use std::io::Read as _;
use std::time::Duration;

use aws_lc_rs::encoding::AsDer;
use base64::Engine;
use common::canary::{Errors, assert_absent, assert_present, find};
use common::{Harness, Session, captured, logs};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Method;
use serde_json::{Value, json};
use ward_domain::role::Role;
use ward_notify::fake::{FakeHttp, FakeSmtp, Recorded};
use ward_store::{Backend, ContactOwner, on_both_backends};

on_both_backends!(canary_stays_out_of_every_feature);

/// The canary, in the case-folded form searched for.
const CANARY: &str = "canary-b41e6";
/// The canary as clients send it.
const LOUD: &str = "CANARY-b41e6";
/// A first name for a notice template: allowed in the SMS and email text of that notice only.
const FIRST: &str = "Quillonette";
/// The patient's phone number: allowed only as the SMS gateway's recipient.
const PHONE: &str = "+14155550178";

/// Carried by register entries (risks, business associates). Registers are not PHI by design
/// (docs/compliance-registers.md): they are stored as written and the evidence bundle carries
/// them as listed, but like PHI their texts stay out of the logs, metrics, errors and audit log.
const REGISTER: &str = "regcanary-5e0f";

/// Carried by a legal hold's reason: "the legal matter; never patient information"
/// (docs/retention.md), stored as written, but kept out of everything Ward emits.
const HOLD: &str = "holdcanary-91ab";

fn email() -> String {
    format!("{CANARY}.mail@example.org")
}

/// Fails if `haystack` carries any of the canary, the first name, the phone number or the email.
#[track_caller]
fn assert_clean(what: &str, haystack: &str) {
    assert_absent(what, haystack, &[CANARY, FIRST, PHONE, &email()]);
}

/// As [`assert_clean`], and without the register and legal-hold canaries either.
#[track_caller]
fn assert_clean_all(what: &str, haystack: &str) {
    assert_clean(what, haystack);
    assert_absent(what, haystack, &[REGISTER, HOLD]);
}

#[track_caller]
fn assert_canary(what: &str, haystack: &str) {
    assert_present(what, haystack, CANARY);
}

fn pem(label: &str, der: &[u8]) -> String {
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", base64::engine::general_purpose::STANDARD.encode(der))
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..200 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap_or_else(|| panic!("no id in {v}")).to_owned()
}

/// A PDF-looking body carrying the canary on every line.
fn pdf() -> Vec<u8> {
    let mut b = b"%PDF-1.7\n".to_vec();
    for i in 0..2000 {
        b.extend_from_slice(format!("% {LOUD} scan line {i}\n").as_bytes());
    }
    b
}

/// The verification code Ward queued for a contact (read from the store's outbox).
async fn code_sent(h: &Harness, org: ward_domain::ids::OrgId, owner: ContactOwner, contact: &str) -> String {
    let mut out = Vec::new();
    for _ in 0..100 {
        out = h.store.contact_outbox(org, owner, contact.parse().unwrap()).await.unwrap();
        if !out.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let m = out.last().expect("a verification message");
    m.body.split_once("code is ").expect("the code").1.chars().take(6).collect()
}

/// Every file under the system's temporary directory in an entry created since `since`: where
/// the server's temporary files would be if it wrote any outside its data directory.
fn new_temporary_files(since: std::time::SystemTime) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return out };
    let mut todo: Vec<std::path::PathBuf> = entries
        .flatten()
        .filter(|e| e.metadata().and_then(|m| m.created().or_else(|_| m.modified())).is_ok_and(|c| c >= since))
        .map(|e| e.path())
        .collect();
    while let Some(p) = todo.pop() {
        if p.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&p) {
                todo.extend(entries.flatten().map(|e| e.path()));
            }
        } else if std::fs::metadata(&p).is_ok_and(|m| m.len() <= 64 << 20) {
            // (Larger files belong to other tests running beside this one, such as disk_full.)
            if let Ok(bytes) = std::fs::read(&p) {
                out.push((p, bytes));
            }
        }
    }
    out
}

async fn canary_stays_out_of_every_feature(backend: Backend) {
    captured();
    let started = std::time::SystemTime::now() - Duration::from_secs(1);
    let fcm = FakeHttp::start().await;
    let sms = FakeHttp::start().await;
    let smtp = FakeSmtp::start().await;
    let keys = tempfile::tempdir().unwrap();
    let rsa = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let account = json!({"type": "service_account", "project_id": "ward-test", "client_email": "push@ward-test.example",
        "private_key": pem("PRIVATE KEY", rsa.as_der().unwrap().as_ref()), "token_uri": format!("{}/token", fcm.url)});
    std::fs::write(keys.path().join("fcm.json"), account.to_string()).unwrap();
    std::fs::write(keys.path().join("sms-token"), "gateway-secret-3\n").unwrap();
    let kp = keys.path().to_path_buf();
    let (fcm_url, sms_url, smtp_port) = (fcm.url.clone(), format!("{}/send", sms.url), smtp.port);
    let Some(h) = Harness::start_with(backend, move |c| {
        let n = &mut c.notify;
        common::notify::fast(n);
        n.retry_base_ms = 10;
        common::notify::fake_fcm(n, fcm_url, &kp);
        common::notify::fake_sms(n, sms_url);
        n.sms.token_file = Some(kp.join("sms-token"));
        common::notify::fake_email(n, smtp_port);
    })
    .await
    else {
        return;
    };
    let mut errors = Errors(Vec::new());
    let org = h.org("wardfive", vec![]).await;
    let admin_acc = h.account(&org, "admin@wardfive", Role::Admin).await;
    let doc_acc = h.account(&org, "doc@wardfive", Role::Clinician).await;
    let nurse_acc = h.account(&org, "nurse@wardfive", Role::Nurse).await;
    let billing_acc = h.account(&org, "billing@wardfive", Role::Staff).await;
    let er_acc = h.account(&org, "er@wardfive", Role::Clinician).await;
    let co_acc = h.account(&org, "co@wardfive", Role::ComplianceOfficer).await;
    let admin = h.login_stepped_up(&admin_acc).await;
    let (doc, nurse, billing) = (h.login(&doc_acc).await, h.login(&nurse_acc).await, h.login(&billing_acc).await);
    let er = h.login_stepped_up(&er_acc).await;
    let co = h.login_stepped_up(&co_acc).await;

    // The patient: name and MRN carry the canary; the patient has an account of their own.
    let mrn = format!("{LOUD}-MRN-77");
    let r = h
        .post(
            "/api/v1/patients",
            &doc.access,
            json!({"mrn": mrn, "display_name": format!("Jane {LOUD} Doe"), "care_team": [doc_acc.id, nurse_acc.id]}),
        )
        .await
        .expect(201);
    let patient = id(&r.body);
    let pid = ward_domain::ids::PatientId(patient.parse().unwrap());
    let patient_acc = h.account_for_patient(&org, "pat@wardfive", Role::Patient, Some(pid)).await;
    let me = h.login(&patient_acc).await;

    // Push tokens: the nurse's phone and the patient's portal app.
    let push_token = |s: &Session, token: &str| {
        let (access, body) = (s.access.clone(), json!({"platform": "fcm", "token": token}));
        let h = &h;
        async move { h.call(Method::PUT, "/api/v1/me/device/push-token", Some(&access), Some(body)).await }
    };
    push_token(&nurse, "fcm-nurse-token-1").await.expect(200);
    push_token(&me, "fcm-patient-token-1").await.expect(200);

    // --- messages and attachments --------------------------------------------------------------
    let r = h
        .post(
            "/api/v1/conversations",
            &doc.access,
            json!({"kind": "patient", "title": format!("{LOUD} bed 9"), "patient_id": patient, "members": [{"user_id": nurse_acc.id}]}),
        )
        .await
        .expect(201);
    let conv = id(&r.body);
    let msgs = format!("/api/v1/conversations/{conv}/messages");
    let file_name = format!("Scan of {LOUD} Doe.pdf");
    let content = pdf();
    let res = h
        .http
        .post(format!("{}/api/v1/conversations/{conv}/attachments", h.url))
        .bearer_auth(&doc.access)
        .header("content-type", "application/pdf")
        .header("x-file-name", utf8_percent_encode(&file_name, NON_ALPHANUMERIC).to_string())
        .body(content.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let att: Value = res.json().await.unwrap();
    assert_eq!(att["file_name"], file_name.as_str());
    let att = id(&att);
    // An upload refused for its type: the refusal carries neither the name nor the content.
    let res = h
        .http
        .post(format!("{}/api/v1/conversations/{conv}/attachments", h.url))
        .bearer_auth(&doc.access)
        .header("content-type", "application/pdf")
        .header("x-file-name", utf8_percent_encode(&format!("{LOUD}.exe"), NON_ALPHANUMERIC).to_string())
        .body(format!("MZ {LOUD} not a pdf").into_bytes())
        .send()
        .await
        .unwrap();
    assert!(res.status().is_client_error(), "{}", res.status());
    errors.0.push(res.text().await.unwrap());
    let text = format!("K+ 6.1 for {LOUD}, see the scan");
    let sent = h.post(&msgs, &doc.access, json!({"client_txn_id": "c1", "body": text, "priority": "urgent", "attachments": [att]})).await;
    let msg = id(&sent.expect(201).body);
    wait_for("the push to the nurse", || fcm.sends().iter().any(|r| r.body.contains("fcm-nurse-token-1"))).await;
    // The nurse reads the message and downloads the file: the canary travelled.
    let read = h.get(&format!("{msgs}/{msg}"), &nurse.access).await.expect(200);
    assert_eq!(read.body["body"], text.as_str());
    let res =
        h.http.get(format!("{}/api/v1/conversations/{conv}/attachments/{att}", h.url)).bearer_auth(&nurse.access).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let disposition = res.headers()["content-disposition"].to_str().unwrap().to_owned();
    assert!(disposition.contains(&utf8_percent_encode(&file_name, NON_ALPHANUMERIC).to_string()), "{disposition}");
    assert!(res.bytes().await.unwrap() == content, "the nurse reads the content back");

    // --- contacts: a phone number and an email address, verified ------------------------------
    let contacts = format!("/api/v1/patients/{patient}/contacts");
    let owner = ContactOwner::Patient(pid);
    let phone = id(&h.post(&contacts, &doc.access, json!({"kind": "phone", "value": PHONE})).await.expect(201).body);
    let mail = id(&h.post(&contacts, &doc.access, json!({"kind": "email", "value": email()})).await.expect(201).body);
    for c in [&phone, &mail] {
        h.call(Method::POST, &format!("{contacts}/{c}/verify"), Some(&doc.access), None).await.expect(202);
        let code = code_sent(&h, org.id, owner, c).await;
        let wrong = if code == "000000" { "111111" } else { "000000" };
        errors.problem(
            h.post(&format!("{contacts}/{c}/confirm"), &doc.access, json!({"code": wrong})).await,
            422,
            "invalid_verification_code",
        );
        h.post(&format!("{contacts}/{c}/confirm"), &doc.access, json!({"code": code})).await.expect(200);
    }
    errors.problem(h.post(&contacts, &doc.access, json!({"kind": "email", "value": email()})).await, 409, "conflict");
    errors.problem(
        h.post(&contacts, &doc.access, json!({"kind": "phone", "value": format!("{PHONE}{LOUD}")})).await,
        422,
        "validation_failed",
    );
    let listed = h.get(&contacts, &nurse.access).await.expect(200).body.to_string();
    assert!(listed.contains(PHONE) && listed.to_ascii_lowercase().contains(&email()), "{listed}");

    // --- notices by SMS, email and push ---------------------------------------------------------
    for channel in ["sms_notices", "email_notices", "portal"] {
        h.post(&format!("/api/v1/patients/{patient}/consents"), &doc.access, json!({"channel": channel})).await.expect(201);
    }
    let templates = "/api/v1/org/notice-templates";
    let notices = format!("/api/v1/patients/{patient}/notices");
    let values = json!({"first_name": FIRST, "date": "Tuesday", "time": "10:30", "location_name": "Clinic B"});
    for channel in ["sms", "email", "push"] {
        let t = h
            .post(
                templates,
                &admin.access,
                json!({"name": format!("reminder {channel}"), "channel": channel,
                "body": "Hello {first_name}, see you {date} at {time}, {location_name}."}),
            )
            .await
            .expect(201);
        let n = h.post(&notices, &doc.access, json!({"template_id": t.body["id"], "channel": channel, "values": values})).await;
        assert_eq!(n.status.as_u16(), 201, "{channel} notice: {}", n.body);
        // The sender sees the rendered text (push too: the portal app fetches it by id).
        assert!(n.body.to_string().contains(FIRST), "{}", n.body);
        // A value carrying the canary and a clinical word is refused without echoing it.
        let bad = json!({"template_id": t.body["id"], "channel": channel,
            "values": {"first_name": FIRST, "date": format!("Tuesday, {LOUD} depression review")}});
        let r = h.post(&notices, &doc.access, bad).await;
        assert!(r.status.is_client_error(), "{}", r.body);
        errors.0.push(r.body.to_string());
    }
    wait_for("the notice by SMS", || sms.sends().iter().any(|r| r.body.contains(FIRST))).await;
    wait_for("the notice by email", || smtp.received().iter().any(|m| m.data.contains(FIRST))).await;
    wait_for("the notice by push", || fcm.sends().iter().any(|r| r.body.contains("fcm-patient-token-1"))).await;

    // --- forwarding, authorizations and disclosures ---------------------------------------------
    let billing_group = h.conversation(&billing, "group", &[&doc_acc]).await;
    let fwd = format!("{msgs}/{msg}/forward");
    let f = h
        .post(
            &fwd,
            &doc.access,
            json!({"target_conversation_id": billing_group, "client_txn_id": "f1", "note": format!("claim for {LOUD}"), "purpose": "payment"}),
        )
        .await
        .expect(201);
    assert_canary("the forwarded message", &f.body["message"]["body"].to_string());
    let auths = format!("/api/v1/patients/{patient}/authorizations");
    errors.problem(
        h.post(&auths, &doc.access, json!({"recipient": format!("Dr {LOUD}"), "purpose": LOUD, "expires_at": "2001-01-01T00:00:00Z"}))
            .await,
        422,
        "validation_failed",
    );
    let a = h
        .post(
            &auths,
            &doc.access,
            json!({"recipient": format!("Dr {LOUD}, Ortho"), "purpose": format!("opinion on {LOUD}"),
            "expires_at": "2099-01-01T00:00:00Z"}),
        )
        .await
        .expect(201);
    h.post(&fwd, &doc.access, json!({"target_conversation_id": billing_group, "client_txn_id": "f2", "authorization_id": a.body["id"]}))
        .await
        .expect(201);
    assert_canary(
        "the billing group's messages",
        &h.get(&format!("/api/v1/conversations/{billing_group}/messages"), &billing.access).await.expect(200).body.to_string(),
    );

    // --- break-glass ----------------------------------------------------------------------------
    let g = h
        .post(
            "/api/v1/break-glass",
            &er.access,
            json!({"patient_id": patient, "reason_category": "other", "reason": format!("{LOUD} collapsed in ED")}),
        )
        .await
        .expect(201);
    let grant = id(&g.body);
    let seen = h.get(&format!("/api/v1/break-glass/{grant}/conversations/{conv}/messages"), &er.access).await.expect(200);
    assert_canary("the break-glass read", &seen.body.to_string());
    let queue = h.get("/api/v1/break-glass/reviews", &co.access).await.expect(200);
    assert_canary("the review queue", &queue.body.to_string());
    h.post(
        &format!("/api/v1/break-glass/{grant}/review"),
        &co.access,
        json!({"status": "justified", "note": format!("{LOUD} was in resus")}),
    )
    .await
    .expect(200);

    // --- incidents ------------------------------------------------------------------------------
    let today = time::OffsetDateTime::now_utc().date();
    let inc = h
        .post(
            "/api/v1/incidents",
            &co.access,
            json!({"title": format!("Misfiled {LOUD} chart"), "description": format!("{LOUD} letter sent to the wrong address"),
                "discovered_on": (today - time::Duration::days(55)).to_string(), "affected_count": 1, "residents": {"NY": 1}, "patient_ids": [patient]}),
        )
        .await
        .expect(201);
    let inc = id(&inc.body);
    assert_canary("the incident", &h.get(&format!("/api/v1/incidents/{inc}"), &co.access).await.expect(200).body.to_string());
    // Its deadline reminders (raised by a timer in the server) are audited with ids only.
    assert!(h.store.send_incident_reminders(today, Harness::meta()).await.unwrap() > 0);
    errors.problem(
        h.post("/api/v1/incidents", &co.access, json!({"title": LOUD, "description": LOUD, "discovered_on": LOUD, "affected_count": 1}))
            .await,
        422,
        "validation_failed",
    );
    let reported = h.call(Method::POST, &format!("{msgs}/{msg}/report-misdirected"), Some(&nurse.access), None).await.expect(201);
    assert_clean("the misdirected-message incident", &reported.body.to_string());

    // --- registers and legal holds --------------------------------------------------------------
    let risk = h
        .post(
            "/api/v1/risks",
            &co.access,
            json!({"risk": format!("{REGISTER}: charts on a lost laptop"), "likelihood": 3, "impact": 4,
            "status": "open", "review_on": "2099-01-01"}),
        )
        .await
        .expect(201);
    assert!(risk.body.to_string().contains(REGISTER), "{}", risk.body);
    let vendor = h
        .post("/api/v1/baa-vendors", &co.access, json!({"vendor": format!("{REGISTER} Couriers"), "services": format!("courier {REGISTER}"),
            "data_shared": format!("paper charts {REGISTER}"), "baa_status": "signed", "signed_on": "2025-01-01", "renewal_on": "2099-01-31"}))
        .await
        .expect(201);
    assert!(vendor.body.to_string().contains(REGISTER), "{}", vendor.body);
    let hold = h
        .post(
            "/api/v1/legal-holds",
            &co.access,
            json!({"subject_kind": "conversation", "subject_id": conv, "reason": format!("{HOLD} v. Ward")}),
        )
        .await
        .expect(201);
    assert!(hold.body.to_string().contains(HOLD), "{}", hold.body);
    errors.problem(
        h.post(
            "/api/v1/legal-holds",
            &co.access,
            json!({"subject_kind": "conversation", "subject_id": conv, "reason": format!("{HOLD}\u{7}")}),
        )
        .await,
        422,
        "validation_failed",
    );

    // The patient's own export (right of access) carries their data: the right place for it.
    let res = h.http.post(format!("{}/api/v1/patients/{patient}/export", h.url)).bearer_auth(&me.access).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(res.bytes().await.unwrap().to_vec())).unwrap();
    let mut all = String::new();
    for i in 0..zip.len() {
        zip.by_index(i).unwrap().read_to_string(&mut all).unwrap();
    }
    assert_canary("the patient's own export", &all);
    assert!(all.contains(&text), "the message text is in the patient's export");
    tokio::time::sleep(Duration::from_millis(300)).await;

    // --- what Ward emits ------------------------------------------------------------------------
    // Audit exports, the access report and the accounting of disclosures.
    for format in ["fhir-ndjson", "fhir-bundle", "csv"] {
        let res = h.http.get(format!("{}/api/v1/audit/export?format={format}", h.url)).bearer_auth(&admin.access).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let text = res.text().await.unwrap();
        for action in ["attachment", "break_glass", "incident", "legal_hold", "notice"] {
            assert!(text.contains(action), "no {action} event in the {format} export");
        }
        assert_clean_all(&format!("the {format} audit export"), &text);
    }
    for user in [&doc_acc, &er_acc, &co_acc] {
        let report = h.get(&format!("/api/v1/users/{}/access-report?limit=200", user.id), &admin.access).await.expect(200);
        assert!(report.body["summary"]["total"].as_i64().unwrap() > 0);
        assert_clean_all("the access report", &report.body.to_string());
    }
    let disclosures = h.get(&format!("/api/v1/patients/{patient}/disclosures"), &admin.access).await.expect(200);
    assert!(disclosures.body["items"].as_array().unwrap().len() >= 2, "{}", disclosures.body);
    assert_clean("the accounting of disclosures", &disclosures.body.to_string());

    // The evidence bundle: every entry, decompressed.
    let res = h.http.post(format!("{}/api/v1/evidence/export", h.url)).bearer_auth(&co.access).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let archive = res.bytes().await.unwrap().to_vec();
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(archive.clone())).unwrap();
    assert!(zip.len() > 3);
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).unwrap();
        let name = f.name().to_owned();
        let mut data = Vec::new();
        f.read_to_end(&mut data).unwrap();
        assert_clean(&format!("the evidence bundle's {name}"), &String::from_utf8_lossy(&data));
        for needle in [&mrn, "Jane", "K+ 6.1", HOLD] {
            assert!(find(&String::from_utf8_lossy(&data), needle).is_none(), "{needle} in the evidence bundle's {name}");
        }
    }
    assert_clean("the evidence bundle", &String::from_utf8_lossy(&archive));

    // The providers: ids and generic texts by push; the notice's checked text by SMS and email,
    // to the verified number and address; no message text, patient name or MRN anywhere.
    let pushes = fcm.sends();
    assert!(pushes.len() >= 2);
    for p in fcm.requests() {
        assert_clean("a push provider request", &p.all_text());
    }
    let notice_texts: Vec<Recorded> = sms.sends();
    assert!(notice_texts.iter().any(|r| r.json()["text"].as_str().is_some_and(|t| t.contains(FIRST))), "the SMS notice went out");
    for r in sms.requests() {
        let mut body = r.json();
        assert!(body["to"] == PHONE || body.is_null(), "{body}");
        // The documented exceptions: the recipient, and the first name in a notice's text.
        body["to"] = Value::Null;
        let text = body.to_string().replace(FIRST, "");
        assert_clean("an SMS", &text);
        assert_clean("an SMS request's headers", &format!("{:?}{}", r.headers, r.path));
    }
    let mails = smtp.received();
    assert!(mails.len() >= 2, "a code and a notice by email");
    for m in &mails {
        let mut data = String::new();
        for line in m.data.lines() {
            // The recipient's address may stand in its `To` header, nowhere else.
            if line.to_ascii_lowercase().starts_with("to:") {
                assert!(line.to_ascii_lowercase().contains(&email()), "{line}");
                continue;
            }
            data.push_str(line);
            data.push('\n');
        }
        assert_clean("an email", &data.replace(FIRST, ""));
        for c in &m.commands {
            if c.to_ascii_uppercase().starts_with("RCPT TO:") {
                assert!(c.to_ascii_lowercase().contains(&email()), "{c}");
            } else {
                assert_clean("an SMTP command", c);
            }
        }
    }

    // Metrics and error bodies.
    let metrics = h.call(Method::GET, "/metrics", None, None).await.expect(200);
    let metrics = metrics.body.as_str().unwrap_or_default().to_owned();
    assert!(metrics.contains("/api/v1/conversations/{conversation_id}/attachments"), "{metrics}");
    assert_clean_all("/metrics", &metrics);
    assert!(errors.0.len() >= 11, "{}", errors.0.len());
    for body in &errors.0 {
        assert_clean_all("an error body", body);
    }

    // The audit log: every column of every row.
    let audit = h.store.audit_events(0, 1_000_000).await.unwrap();
    let actions: Vec<&str> = audit.iter().map(|e| e.action.as_str()).collect();
    for expected in [
        "attachment.",
        "incident.reminder",
        "patient.export",
        "contact.",
        "notice.",
        "push.",
        "message.forward",
        "break_glass.",
        "incident.",
        "legal_hold.",
    ] {
        assert!(actions.iter().any(|a| a.starts_with(expected)), "no {expected} event in {actions:?}");
    }
    for e in &audit {
        assert_clean_all("the audit log", &serde_json::to_string(e).unwrap());
    }

    // Every byte under the data directory (database, WAL, blobs, audit files, certificates,
    // anything else) and, on PostgreSQL, every row of every table: sealed, so no canary, no
    // message text and no attachment bytes in plain text (register entries and hold reasons
    // are stored as written, by design).
    let stored = h.db.raw_contents().await;
    assert!(stored.len() > 10_000, "the data directory was scanned");
    let stored = String::from_utf8_lossy(&stored);
    assert_clean("the data directory", &stored);
    assert!(!stored.contains("K+ 6.1"), "message text stored in plain text");
    assert!(!stored.contains("scan line 1"), "attachment content stored in plain text");

    // Temporary files: anything created under the temporary directory during the test.
    let temporary = new_temporary_files(started);
    assert!(!temporary.is_empty(), "the test's own data directory is there");
    for (path, bytes) in &temporary {
        assert_clean(&format!("the temporary file {}", path.display()), &String::from_utf8_lossy(bytes));
    }

    // The logs: captured for real, and free of all of it.
    let text = logs();
    assert!(text.contains("/api/v1/conversations/{conversation_id}/attachments"), "the requests of this test are in the captured log");
    let leaks: Vec<String> = text
        .lines()
        .filter(|l| [CANARY, FIRST, PHONE, REGISTER, HOLD, &email()].iter().any(|n| find(l, n).is_some()))
        .map(|l| l.chars().take(300).collect())
        .collect();
    assert!(leaks.is_empty(), "LEAKS:\n{}", leaks.join("\n"));
}
