//! Access review campaigns over real HTTPS: a compliance officer with a fresh step-up starts
//! a campaign; the items show each account's role, memberships and last activity; reviewers
//! certify and revoke (a revocation needs a reason and disables the account: its session
//! stops working at once), never about themselves; other roles and tenants are refused;
//! closing marks undecided items `not_reviewed`; results export as JSON and CSV; every step
//! is audited without the reviewer's note.

mod common;

use common::Harness;
use reqwest::Method;
use serde_json::json;
use ward_domain::role::Role;
use ward_store::{Backend, on_both_backends};

on_both_backends!(access_review_campaign_over_http, a_delegate_reviews_their_people_over_http);

async fn access_review_campaign_over_http(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let (a, b) = (h.org("arva", vec![]).await, h.org("arvb", vec![]).await);
    let co_acc = h.account(&a, "co@arva", Role::ComplianceOfficer).await;
    let admin_acc = h.account(&a, "admin@arva", Role::Admin).await;
    let nurse_acc = h.account(&a, "nurse@arva", Role::Nurse).await;
    let doc_acc = h.account(&a, "doc@arva", Role::Clinician).await;
    let b_admin = h.login_stepped_up(&h.account(&b, "admin@arvb", Role::Admin).await).await;
    let nurse = h.login(&nurse_acc).await;
    let doc = h.login(&doc_acc).await;
    let conv = h.conversation(&doc, "group", &[&nurse_acc]).await;
    h.send(&doc, &conv, "t1", "hello").await.expect(201);
    let path = "/api/v1/access-reviews";

    // Other roles are refused; starting needs a second-factor verification.
    h.get(path, &nurse.access).await.expect_problem(403, "forbidden");
    h.call(Method::POST, path, Some(&nurse.access), None).await.expect_problem(403, "forbidden");
    let co = h.login(&co_acc).await;
    h.call(Method::POST, path, Some(&co.access), None).await.expect_problem(403, "mfa_enrollment_required");
    let list = h.get(path, &co.access).await.expect(200).body;
    assert_eq!((list["items"].as_array().unwrap().len(), list["schedule"]["cadence_days"].as_i64()), (0, Some(90)));
    h.step_up(&co).await;
    let started = h.call(Method::POST, path, Some(&co.access), None).await.expect(201).body;
    assert_eq!((started["status"].as_str(), started["trigger"].as_str()), (Some("open"), Some("manual")));
    assert_eq!(started["counts"]["pending"], 4);
    h.call(Method::POST, path, Some(&co.access), None).await.expect_problem(409, "invalid_state");
    let id = started["id"].as_str().unwrap().to_owned();
    let one = format!("{path}/{id}");

    let detail = h.get(&one, &co.access).await.expect(200).body;
    let items = detail["items"].as_array().unwrap();
    let item = |login: &str| items.iter().find(|i| i["login"] == login).unwrap().clone();
    let d = item("doc@arva");
    assert_eq!((d["role"].as_str(), d["membership_count"].as_i64()), (Some("clinician"), Some(1)));
    assert_eq!(
        (d["memberships"][0]["conversation_id"].as_str(), d["memberships"][0]["kind"].as_str()),
        (Some(conv.as_str()), Some("group"))
    );
    assert!(d["last_sign_in_at"].is_string() && d["last_message_at"].is_string(), "{d}");
    assert!(item("admin@arva")["last_sign_in_at"].is_null());
    // Another tenant: not found.
    h.get(&one, &b_admin.access).await.expect_problem(404, "not_found");
    let decide = |user: &ward_domain::ids::UserId| format!("{one}/items/{user}");
    h.post(&decide(&nurse_acc.id), &b_admin.access, json!({"decision": "certify"})).await.expect_problem(404, "not_found");
    h.post(&decide(&nurse_acc.id), &nurse.access, json!({"decision": "certify"})).await.expect_problem(403, "forbidden");

    // Separation of duties, and a revocation needs a reason.
    h.post(&decide(&co_acc.id), &co.access, json!({"decision": "certify"})).await.expect_problem(403, "forbidden");
    h.post(&decide(&doc_acc.id), &co.access, json!({"decision": "revoke"})).await.expect_problem(422, "validation_failed");
    h.post(&decide(&doc_acc.id), &co.access, json!({"decision": "revoke", "reason": "other"}))
        .await
        .expect_problem(422, "validation_failed");
    h.post(&decide(&doc_acc.id), &co.access, json!({"decision": "not_reviewed"})).await.expect_problem(422, "validation_failed");

    let certified = h.post(&decide(&nurse_acc.id), &co.access, json!({"decision": "certify"})).await.expect(200).body;
    assert_eq!((certified["decision"].as_str(), certified["decided_by"].as_str()), (Some("certify"), Some(co_acc.id.to_string().as_str())));
    // The doctor's session works until the revocation, and not after.
    h.get("/api/v1/me", &doc.access).await.expect(200);
    let revoked = h
        .post(&decide(&doc_acc.id), &co.access, json!({"decision": "revoke", "reason": "other", "note": "Locum contract ended"}))
        .await
        .expect(200)
        .body;
    assert_eq!(
        (revoked["decision"].as_str(), revoked["reason"].as_str(), revoked["note"].as_str()),
        (Some("revoke"), Some("other"), Some("Locum contract ended"))
    );
    let after = h.get("/api/v1/me", &doc.access).await;
    assert!(matches!(after.status.as_u16(), 401 | 403), "the revoked account's session still works: {}", after.body);
    assert!(h.store.user(a.id, doc_acc.id).await.unwrap().disabled);
    h.post(&decide(&doc_acc.id), &co.access, json!({"decision": "certify"})).await.expect_problem(409, "invalid_state");
    // The admin certifies the compliance officer (the officer could not).
    let admin = h.login_stepped_up(&admin_acc).await;
    h.post(&decide(&co_acc.id), &admin.access, json!({"decision": "certify"})).await.expect(200);

    let progress = h.get(&one, &co.access).await.expect(200).body["campaign"]["counts"].clone();
    assert_eq!(progress, json!({"total": 4, "certified": 2, "revoked": 1, "not_reviewed": 0, "pending": 1}));

    // Close: the admin's own item was never decided, so it is not reviewed, not certified.
    h.post(&format!("{one}/close"), &nurse.access, json!({})).await.expect_problem(403, "forbidden");
    // Closing freezes the evidence: it needs a second factor like starting does.
    let co_no_mfa = h.login(&h.account(&a, "co2@arva", Role::ComplianceOfficer).await).await;
    h.call(Method::POST, &format!("{one}/close"), Some(&co_no_mfa.access), None).await.expect_problem(403, "mfa_enrollment_required");
    let closed = h.call(Method::POST, &format!("{one}/close"), Some(&admin.access), None).await.expect(200).body;
    assert_eq!(
        (closed["status"].as_str(), closed["counts"]["not_reviewed"].as_i64(), closed["overdue"].as_bool()),
        (Some("closed"), Some(1), Some(false))
    );
    h.call(Method::POST, &format!("{one}/close"), Some(&admin.access), None).await.expect_problem(409, "invalid_state");
    h.post(&decide(&admin_acc.id), &co.access, json!({"decision": "certify"})).await.expect_problem(409, "invalid_state");

    // Exports.
    let json_export = h.get(&format!("{one}/export"), &co.access).await.expect(200);
    assert_eq!(json_export.body["campaign"]["status"], "closed");
    let admin_item = json_export.body["items"].as_array().unwrap().iter().find(|i| i["login"] == "admin@arva").unwrap().clone();
    assert_eq!(admin_item["decision"], "not_reviewed");
    h.get(&format!("{one}/export?format=xml"), &co.access).await.expect_problem(400, "invalid_parameter");
    let csv = h.http.get(format!("{}{one}/export?format=csv", h.url)).bearer_auth(&co.access).send().await.unwrap();
    assert_eq!(csv.status().as_u16(), 200);
    assert!(csv.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    let text = csv.text().await.unwrap();
    assert!(text.starts_with("user_id,login,display_name,role,"), "{text}");
    assert_eq!(text.lines().count(), 5, "{text}");
    assert!(text.lines().any(|l| l.contains("\"doc@arva\"") && l.contains("\"revoke\"") && l.contains("Locum contract ended")), "{text}");
    assert!(text.lines().any(|l| l.contains("\"admin@arva\"") && l.contains("\"not_reviewed\"")), "{text}");

    // The cadence: checked, then changed.
    let sched = "/api/v1/org/access-review-schedule";
    h.call(Method::PUT, sched, Some(&co.access), Some(json!({"cadence_days": 30, "window_days": 30})))
        .await
        .expect_problem(422, "validation_failed");
    h.call(Method::PUT, sched, Some(&nurse.access), Some(json!({"cadence_days": 30, "window_days": 7})))
        .await
        .expect_problem(403, "forbidden");
    h.call(Method::PUT, sched, Some(&co_no_mfa.access), Some(json!({"cadence_days": 30, "window_days": 7})))
        .await
        .expect_problem(403, "mfa_enrollment_required");
    let s = h.call(Method::PUT, sched, Some(&co.access), Some(json!({"cadence_days": 30, "window_days": 7}))).await.expect(200).body;
    assert_eq!((s["cadence_days"].as_i64(), s["window_days"].as_i64()), (Some(30), Some(7)));
    let list = h.get(path, &co.access).await.expect(200).body;
    assert_eq!(list["schedule"]["cadence_days"], 30);
    assert_eq!(list["items"][0]["id"].as_str(), Some(id.as_str()));
    assert_eq!(h.get(path, &b_admin.access).await.expect(200).body["items"], json!([]));

    // Audited, with codes and ids: never the note.
    let audit = h.store.audit_events(0, 100_000).await.unwrap();
    for action in [
        "access_review.open",
        "access_review.decide",
        "access_review.close",
        "access_review.export",
        "access_review.read",
        "access_review.schedule",
    ] {
        assert!(audit.iter().any(|e| e.action == action), "{action} not audited");
    }
    assert!(audit.iter().all(|e| !e.detail.contains("Locum")));
    assert!(audit.iter().any(|e| e.action == "access_review.decide" && e.outcome == "denied" && e.detail.contains("own_access")));
    assert!(audit.iter().any(|e| e.action == "access_review.decide" && e.outcome == "denied" && e.detail.contains("role")));
    assert!(audit.iter().any(|e| e.action == "admin.user_disable" && e.detail.contains("access_review")));
}

/// A compliance officer delegates two nurses' items to their lead: the lead sees that campaign
/// with only those items (and the count in /me), certifies one, is refused another's item and
/// every reviewer-only action; bad delegations are refused with a reason.
async fn a_delegate_reviews_their_people_over_http(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let a = h.org("dlga", vec![]).await;
    let b = h.org("dlgb", vec![]).await;
    let co_acc = h.account(&a, "co@dlga", Role::ComplianceOfficer).await;
    let co_id = co_acc.id;
    let co = h.login_stepped_up(&co_acc).await;
    let lead_acc = h.account(&a, "lead@dlga", Role::Nurse).await;
    let n1 = h.account(&a, "n1@dlga", Role::Nurse).await;
    let n2 = h.account(&a, "n2@dlga", Role::Nurse).await;
    let doc = h.account(&a, "doc@dlga", Role::Clinician).await;
    let pat = h.account(&a, "pat@dlga", Role::Patient).await;
    let outsider = h.account(&b, "n@dlgb", Role::Nurse).await;
    let lead = h.login(&lead_acc).await;
    let path = "/api/v1/access-reviews";
    // Without a delegation the lead has no access reviews at all.
    h.get(path, &lead.access).await.expect_problem(403, "forbidden");
    assert_eq!(h.get("/api/v1/me", &lead.access).await.expect(200).body["access_reviews_to_decide"], 0);
    let id = h.call(Method::POST, path, Some(&co.access), None).await.expect(201).body["id"].as_str().unwrap().to_owned();
    let assign = format!("{path}/{id}/reviewers");
    let put = |body: serde_json::Value| h.call(Method::PUT, &assign, Some(&co.access), Some(body));

    // Bad delegations change nothing.
    put(json!({"reviewer_id": lead_acc.id, "user_ids": []})).await.expect_problem(422, "validation_failed");
    put(json!({"reviewer_id": lead_acc.id, "user_ids": [lead_acc.id]})).await.expect_problem(422, "validation_failed");
    put(json!({"reviewer_id": pat.id, "user_ids": [n1.id]})).await.expect_problem(422, "validation_failed");
    put(json!({"reviewer_id": outsider.id, "user_ids": [n1.id]})).await.expect_problem(422, "validation_failed");
    put(json!({"reviewer_id": lead_acc.id, "user_ids": [outsider.id]})).await.expect_problem(404, "not_found");
    put(json!({"reviewer_id": lead_acc.id})).await.expect_problem(400, "invalid_body");
    h.call(Method::PUT, &assign, Some(&lead.access), Some(json!({"reviewer_id": lead_acc.id, "user_ids": [n1.id]})))
        .await
        .expect_problem(403, "forbidden");
    h.get(path, &lead.access).await.expect_problem(403, "forbidden");

    put(json!({"reviewer_id": lead_acc.id, "user_ids": [n1.id, n2.id]})).await.expect(204);
    assert_eq!(h.get("/api/v1/me", &lead.access).await.expect(200).body["access_reviews_to_decide"], 2);
    let list = h.get(path, &lead.access).await.expect(200).body;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0]["counts"]["total"], 2, "counts of the delegated items only: {list}");
    let detail = h.get(&format!("{path}/{id}"), &lead.access).await.expect(200).body;
    let logins: Vec<&str> = detail["items"].as_array().unwrap().iter().map(|i| i["login"].as_str().unwrap()).collect();
    assert_eq!(logins, ["n1@dlga", "n2@dlga"]);
    assert_eq!(detail["items"][0]["reviewer_id"], json!(lead_acc.id));
    // The organisation's reviewers see who decides.
    let all = h.get(&format!("{path}/{id}"), &co.access).await.expect(200).body;
    let doc_item = all["items"].as_array().unwrap().iter().find(|i| i["login"] == "doc@dlga").unwrap().clone();
    assert_eq!(doc_item["reviewer_id"], json!(null));

    h.post(&format!("{path}/{id}/items/{}", n1.id), &lead.access, json!({"decision": "certify"})).await.expect(200);
    h.post(&format!("{path}/{id}/items/{}", doc.id), &lead.access, json!({"decision": "certify"})).await.expect_problem(403, "forbidden");
    // Revoking needs the delegate's own second factor, as anyone's revocation does.
    h.post(&format!("{path}/{id}/items/{}", n2.id), &lead.access, json!({"decision": "revoke", "reason": "not_needed"}))
        .await
        .expect_problem(403, "mfa_enrollment_required");
    // Nobody picks their own reviewer.
    put(json!({"reviewer_id": lead_acc.id, "user_ids": [co_id]})).await.expect_problem(422, "validation_failed");
    h.call(Method::POST, &format!("{path}/{id}/close"), Some(&lead.access), None).await.expect_problem(403, "forbidden");
    h.get(&format!("{path}/{id}/export"), &lead.access).await.expect_problem(403, "forbidden");
    h.call(Method::POST, path, Some(&lead.access), None).await.expect_problem(403, "forbidden");
    assert_eq!(h.get("/api/v1/me", &lead.access).await.expect(200).body["access_reviews_to_decide"], 1);
    let audit = h.store.audit_events(0, 10_000).await.unwrap();
    assert!(audit.iter().any(|e| e.action == "access_review.assign" && e.detail.contains(&lead_acc.id.to_string())));
    assert!(audit.iter().any(|e| e.action == "access_review.decide" && e.detail.contains("\"delegated\":true")));
}
