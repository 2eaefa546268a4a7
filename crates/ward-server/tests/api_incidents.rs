//! Breach incidents over real HTTPS: a compliance officer opens an incident, signs the
//! four-factor assessment, reads the notification plan (state clocks stricter than HIPAA win,
//! urgencies by today's date), records notifications and closes it; admins only read; bad input
//! (unknown state codes, dates in the future, inconsistent assessments) is refused with a clear
//! error, nothing changes and the attempt is audited; a member reports a misdirected message in
//! one step; the description never reaches the audit log or the logs.

mod common;

use common::{Harness, captured, logs};
use reqwest::Method;
use serde_json::{Value, json};
use ward_domain::role::Role;
use ward_store::{Backend, on_both_backends};

on_both_backends!(incidents_run_from_report_to_close, a_member_reports_a_misdirected_message_in_one_step);

/// PHI in the description: it must stay out of the audit log and the logs.
const CANARY: &str = "INCCANARY-Q7 lab results for Jordan Ames mailed to a neighbour";

fn today() -> time::Date {
    time::OffsetDateTime::now_utc().date()
}

fn day(d: time::Date) -> String {
    d.to_string()
}

fn obligation<'a>(incident: &'a Value, key: &str) -> &'a Value {
    incident["plan"].as_array().unwrap().iter().find(|o| o["key"] == key).unwrap_or_else(|| panic!("no {key} in {incident}"))
}

async fn incidents_run_from_report_to_close(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    captured();
    let org = h.org("acme", vec![]).await;
    let co = h.login(&h.account(&org, "co@acme", Role::ComplianceOfficer).await).await;
    let admin = h.login(&h.account(&org, "admin@acme", Role::Admin).await).await;
    let nurse = h.login(&h.account(&org, "nurse@acme", Role::Nurse).await).await;

    // Discovered 55 days ago: New York's 30 days are past, HIPAA's 60 are within the week.
    let discovered = today() - time::Duration::days(55);
    let body = json!({
        "title": "Mailing error",
        "description": CANARY,
        "discovered_on": day(discovered),
        "affected_count": 700,
        "residents": {"NY": 600, "oh": 100},
    });

    // Other roles are refused before anything happens.
    h.post("/api/v1/incidents", &nurse.access, body.clone()).await.expect_problem(403, "forbidden");
    h.post("/api/v1/incidents", &admin.access, body.clone()).await.expect_problem(403, "forbidden");
    h.get("/api/v1/incidents", &nurse.access).await.expect_problem(403, "forbidden");

    // Bad input: clear errors, nothing kept.
    let mut unknown_state = body.clone();
    unknown_state["residents"] = json!({"ZZ": 5});
    let r = h.post("/api/v1/incidents", &co.access, unknown_state).await.expect_problem(422, "validation_failed");
    assert!(r.body["detail"].as_str().unwrap().contains("state"), "{}", r.body);
    let mut twice = body.clone();
    twice["residents"] = json!({"ca": 600, "CA": 10});
    let r = h.post("/api/v1/incidents", &co.access, twice).await.expect_problem(422, "validation_failed");
    assert!(r.body["detail"].as_str().unwrap().contains("twice"), "{}", r.body);
    let mut future = body.clone();
    future["discovered_on"] = json!(day(today() + time::Duration::days(2)));
    let r = h.post("/api/v1/incidents", &co.access, future).await.expect_problem(422, "validation_failed");
    assert!(r.body["detail"].as_str().unwrap().contains("discovered_on"), "{}", r.body);
    let mut too_many = body.clone();
    too_many["affected_count"] = json!(10);
    h.post("/api/v1/incidents", &co.access, too_many).await.expect_problem(422, "validation_failed");
    let r = h.get("/api/v1/incidents", &co.access).await.expect(200);
    assert_eq!(r.body.as_array().unwrap().len(), 0, "nothing kept");

    let created = h.post("/api/v1/incidents", &co.access, body).await.expect(201);
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(created.body["status"], "open");
    assert_eq!(created.body["residents"], json!({"NY": 600, "OH": 100}));
    // Unassessed, it is presumed a breach (164.402): the plan runs from discovery already.
    assert_eq!(created.body["plan_basis"], "presumed");
    assert!(created.body["plan"].as_array().unwrap().iter().any(|o| o["key"] == "individuals:NY"), "{}", created.body);
    assert!(created.body["plan"].as_array().unwrap().iter().all(|o| o["urgency"].is_string()));
    assert!(created.body["description"].is_null());
    let path = format!("/api/v1/incidents/{id}");

    // An inconsistent assessment is refused; the breach is signed.
    let low = json!({"nature_and_extent": "high", "unauthorized_recipient": "low", "acquired_or_viewed": "low", "mitigation": "low",
        "outcome": "low_probability_of_compromise"});
    h.post(&format!("{path}/assessment"), &co.access, low).await.expect_problem(422, "validation_failed");
    let breach = json!({"nature_and_extent": "high", "unauthorized_recipient": "medium", "acquired_or_viewed": "high",
        "mitigation": "low", "outcome": "breach"});
    h.post(&format!("{path}/assessment"), &admin.access, breach.clone()).await.expect_problem(403, "forbidden");
    let a = h.post(&format!("{path}/assessment"), &co.access, breach).await.expect(200);
    assert_eq!(a.body["status"], "assessed");
    assert_eq!(a.body["assessment"]["outcome"], "breach");
    assert_eq!(a.body["assessment"]["signed_by"], json!(co.account.id));

    // The plan: NY's 30 days beat HIPAA's 60 and are overdue; OH's 45 too; HHS goes with the
    // earliest individual notice (700 affected); media for NY (more than 500) only.
    let got = h.get(&path, &admin.access).await.expect(200).body;
    assert_eq!(got["description"], CANARY, "a single read opens the description");
    let ny = obligation(&got, "individuals:NY");
    assert_eq!(ny["due_on"], day(discovered + time::Duration::days(30)));
    assert_eq!(ny["urgency"], "overdue");
    assert_eq!(ny["verified"], false);
    assert!(ny["source"].as_str().unwrap().contains("covington"));
    assert_eq!(obligation(&got, "individuals:OH")["due_on"], day(discovered + time::Duration::days(45)));
    assert_eq!(obligation(&got, "hhs")["due_on"], ny["due_on"]);
    let media = obligation(&got, "media:NY");
    assert_eq!(media["due_on"], day(discovered + time::Duration::days(60)));
    assert_eq!(media["urgency"], "due_within_week");
    assert!(got["plan"].as_array().unwrap().iter().all(|o| o["key"] != "media:OH"));
    assert!(!got["state_rules_as_of"].as_str().unwrap().is_empty());
    // The plan shown is the one stored at the assessment, with the rules' review date.
    assert_eq!(got["plan_basis"], "assessed");
    assert_eq!(got["plan_rules_as_of"], got["state_rules_as_of"]);
    assert!(got["plan_computed_at"].is_string());

    // Reminders: the check raises one per open obligation's stage, and each becomes an
    // `incident_deadline` alert for the compliance officers.
    let n = h.store.send_incident_reminders(today(), Harness::meta()).await.unwrap();
    assert_eq!(n, got["plan"].as_array().unwrap().iter().filter(|o| o["urgency"] != "pending").count());
    assert!(n >= 3, "NY and OH individuals overdue, media due within the week");
    assert_eq!(h.store.send_incident_reminders(today(), Harness::meta()).await.unwrap(), 0, "once per stage");
    let mut alerts = 0;
    for _ in 0..100 {
        let list = h.get("/api/v1/audit/alerts", &co.access).await.expect(200).body;
        alerts = list["items"].as_array().or(list.as_array()).map_or(0, |a| a.iter().filter(|x| x["rule"] == "incident_deadline").count());
        if alerts == n {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(alerts, n, "each reminder raised an alert");

    // Notifications: dates in the future and unknown obligations are refused.
    let notes = format!("{path}/notifications");
    h.post(&notes, &co.access, json!({"obligation": "media:NY", "done_on": day(today() + time::Duration::days(1))}))
        .await
        .expect_problem(422, "validation_failed");
    h.post(&notes, &co.access, json!({"obligation": "media:OH", "done_on": day(today())})).await.expect_problem(409, "invalid_state");
    h.post(&format!("{path}/close"), &co.access, json!({})).await.expect_problem(409, "invalid_state");
    let mut last = Value::Null;
    let keys: Vec<String> = got["plan"].as_array().unwrap().iter().map(|o| o["key"].as_str().unwrap().to_owned()).collect();
    for k in &keys {
        last = h.post(&notes, &co.access, json!({"obligation": k, "done_on": day(today())})).await.expect(200).body;
    }
    assert_eq!(last["status"], "notified");
    assert!(last["plan"].as_array().unwrap().iter().all(|o| o["urgency"].is_null() && !o["done_on"].is_null()));
    let closed = h.post(&format!("{path}/close"), &co.access, json!({})).await.expect(200);
    assert_eq!(closed.body["status"], "closed");

    // Another organisation's officer sees nothing.
    let other = h.org("other", vec![]).await;
    let stranger = h.login(&h.account(&other, "co@other", Role::ComplianceOfficer).await).await;
    h.get(&path, &stranger.access).await.expect_problem(404, "not_found");

    // The audit log: refusals recorded; never the description.
    let events = h.store.audit_events(0, 100_000).await.unwrap();
    let count = |action: &str, outcome: &str| events.iter().filter(|e| e.action == action && e.outcome == outcome).count();
    assert_eq!(count("incident.create", "success"), 1);
    assert!(count("incident.create", "denied") >= 5, "role and bad-input refusals are audited");
    assert!(events.iter().any(|e| e.action == "incident.create" && e.outcome == "denied" && e.detail.contains("state")));
    assert_eq!(count("incident.notify", "success"), keys.len());
    assert!(count("incident.notify", "denied") >= 2);
    assert_eq!(count("incident.close", "success"), 1);
    for e in &events {
        let row = format!("{e:?}");
        assert!(!row.contains("INCCANARY") && !row.contains("Jordan Ames"), "PHI in the audit log: {row}");
    }
    let text = logs();
    assert!(!text.contains("INCCANARY") && !text.contains("Jordan Ames"), "the description reached the logs");
}

async fn a_member_reports_a_misdirected_message_in_one_step(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let org = h.org("acme", vec![]).await;
    let doc_acc = h.account(&org, "doc@acme", Role::Clinician).await;
    let nurse_acc = h.account(&org, "nurse@acme", Role::Nurse).await;
    let doc = h.login(&doc_acc).await;
    let nurse = h.login(&nurse_acc).await;
    let outsider = h.login(&h.account(&org, "out@acme", Role::Clinician).await).await;
    let co = h.login(&h.account(&org, "co@acme", Role::ComplianceOfficer).await).await;
    let conv = h.conversation(&doc, "group", &[&nurse_acc]).await;
    let msg = h.send(&doc, &conv, "m1", "wrong thread").await.expect(201).body["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/conversations/{conv}/messages/{msg}/report-misdirected");

    // Not a member: 404, as for any conversation one is not in.
    h.call(Method::POST, &path, Some(&outsider.access), None).await.expect_problem(404, "not_found");
    let other_msg = format!("/api/v1/conversations/{conv}/messages/{}/report-misdirected", uuid::Uuid::new_v4());
    h.call(Method::POST, &other_msg, Some(&nurse.access), None).await.expect_problem(404, "not_found");

    let r = h.call(Method::POST, &path, Some(&nurse.access), None).await.expect(201);
    assert_eq!(r.body["source"], "misdirected_message");
    assert_eq!(r.body["message_id"], msg);
    assert_eq!(r.body["conversation_id"], conv);
    assert_eq!(r.body["discovered_on"], day(today()));
    assert_eq!(r.body["status"], "open");
    // The compliance officer finds it in the list.
    let list = h.get("/api/v1/incidents", &co.access).await.expect(200).body;
    assert_eq!(list[0]["id"], r.body["id"]);
    let events = h.store.audit_events(0, 100_000).await.unwrap();
    assert!(events.iter().any(|e| e.action == "incident.create" && e.outcome == "success" && e.detail.contains("misdirected_message")));
    assert!(events.iter().any(|e| e.action == "incident.create" && e.outcome == "denied" && e.detail.contains("unknown_message")));
}
