//! Messaging over real HTTPS and WebSocket: sends, idempotency, ordering, receipts, recall,
//! corrections, paging, real-time delivery, resume after reconnect, revocation.

mod common;

use ward_store::{on_both_backends, on_sqlite};

use std::time::{Duration, Instant};

use common::{Frame, Harness};
use reqwest::Method;
use serde_json::json;
use ward_domain::role::Role;
use ward_store::Backend;

on_both_backends!(
    messages_flow_between_members_in_real_time,
    streams_resume_without_gaps_or_duplicates,
    the_list_shows_the_highest_unread_priority
);
on_sqlite!(
    out_of_order_and_lost_publications_still_arrive_in_order,
    revoking_sessions_closes_streams_within_a_second,
    patient_conversations_and_minimum_necessary,
    direct_conversations_are_reused
);

async fn messages_flow_between_members_in_real_time(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let org = h.org("acme", vec![]).await;
    let (a, b, c) = (
        h.account(&org, "a@acme", Role::Clinician).await,
        h.account(&org, "b@acme", Role::Nurse).await,
        h.account(&org, "c@acme", Role::Staff).await,
    );
    let (sa, sb, sc) = (h.login(&a).await, h.login(&b).await, h.login(&c).await);
    let conv = h.conversation(&sa, "group", &[&b]).await;
    let mut stream_b = h.stream(&sb).await;
    let mut stream_c = h.stream(&sc).await;

    let sent = h
        .post(
            &format!("/api/v1/conversations/{conv}/messages"),
            &sa.access,
            json!({"client_txn_id": "t1", "body": "BP 120/80", "priority": "stat"}),
        )
        .await
        .expect(201);
    assert_eq!(sent.body["seq"], 1);
    assert_eq!(sent.body["priority"], "stat");
    let ev = stream_b.next_of_kind("message", Duration::from_secs(5)).await.expect("b receives the message");
    assert_eq!(ev["kind"], "message");
    assert_eq!(ev["message"]["body"], "BP 120/80");
    assert_eq!(ev["message"]["priority"], "stat");
    assert!(stream_c.next_event(Duration::from_millis(300)).await.is_none(), "a non-member receives nothing");

    // A retry with the same transaction id returns the same message; no second event.
    let again = h
        .post(
            &format!("/api/v1/conversations/{conv}/messages"),
            &sa.access,
            json!({"client_txn_id": "t1", "body": "BP 120/80", "priority": "stat"}),
        )
        .await
        .expect(200);
    assert_eq!(again.body["id"], sent.body["id"]);
    h.send(&sa, &conv, "t1", "something else").await.expect_problem(409, "client_txn_id_reused");

    // Ordering and paging.
    for i in 2..=12 {
        h.send(&sa, &conv, &format!("t{i}"), &format!("note {i}")).await.expect(201);
    }
    let mut seqs = vec![ev["message"]["seq"].as_i64().unwrap()];
    while seqs.len() < 12 {
        let e = stream_b.next_event(Duration::from_secs(5)).await.expect("every message arrives");
        seqs.push(e["message"]["seq"].as_i64().unwrap());
    }
    assert_eq!(seqs, (1..=12).collect::<Vec<_>>(), "in order, no gaps, no duplicates");
    let latest = h.get(&format!("/api/v1/conversations/{conv}/messages?limit=5"), &sb.access).await.expect(200);
    let got: Vec<i64> = latest.body["items"].as_array().unwrap().iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert_eq!(got, vec![8, 9, 10, 11, 12]);
    let older = h.get(&format!("/api/v1/conversations/{conv}/messages?before=8&limit=5"), &sb.access).await.expect(200);
    let got: Vec<i64> = older.body["items"].as_array().unwrap().iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert_eq!(got, vec![3, 4, 5, 6, 7]);
    assert_eq!(older.body["before_cursor"], 3);

    // Receipts travel to the other members.
    let mut stream_a = h.stream(&sa).await;
    h.post(&format!("/api/v1/conversations/{conv}/receipts"), &sb.access, json!({"kind": "read", "up_to_seq": 12})).await.expect(204);
    let r = stream_a.next_of_kind("receipt", Duration::from_secs(5)).await.unwrap();
    assert_eq!((r["kind"].as_str(), r["receipt"].as_str(), r["up_to_seq"].as_i64()), (Some("receipt"), Some("read"), Some(12)));
    let detail = h.get(&format!("/api/v1/conversations/{conv}"), &sa.access).await.expect(200);
    let mb = detail.body["members"].as_array().unwrap().iter().find(|m| m["user_id"] == json!(b.id)).unwrap().clone();
    assert_eq!((mb["read_seq"].as_i64(), mb["delivered_seq"].as_i64()), (Some(12), Some(12)));
    let list = h.get("/api/v1/conversations", &sb.access).await.expect(200);
    assert_eq!(list.body["items"][0]["unread"], 0);

    // Recall: the text disappears for everyone, the record stays.
    let first = sent.body["id"].as_str().unwrap();
    h.post(&format!("/api/v1/conversations/{conv}/messages/{first}/recall"), &sb.access, json!({})).await.expect_problem(403, "not_sender");
    let recalled = h.post(&format!("/api/v1/conversations/{conv}/messages/{first}/recall"), &sa.access, json!({})).await.expect(200);
    assert!(recalled.body["body"].is_null() && recalled.body["recalled_at"].is_string());
    let r = stream_b.next_of_kind("recall", Duration::from_secs(5)).await.unwrap();
    assert_eq!((r["kind"].as_str(), r["message_id"].as_str()), (Some("recall"), Some(first)));
    let fetched = h.get(&format!("/api/v1/conversations/{conv}/messages/{first}"), &sb.access).await.expect(200);
    assert!(fetched.body["body"].is_null());

    // Corrections are new messages pointing at the corrected one.
    let second = h.get(&format!("/api/v1/conversations/{conv}/messages?after=1&limit=1"), &sa.access).await.expect(200);
    let second_id = second.body["items"][0]["id"].as_str().unwrap().to_owned();
    let fix = h
        .post(
            &format!("/api/v1/conversations/{conv}/messages"),
            &sa.access,
            json!({"client_txn_id": "fix", "body": "note 2 (corrected)", "corrects": second_id}),
        )
        .await
        .expect(201);
    assert_eq!((fix.body["seq"].as_i64(), fix.body["corrects"].as_str()), (Some(13), Some(second_id.as_str())));

    // Membership changes reach members; a removed member stops receiving.
    h.post(&format!("/api/v1/conversations/{conv}/members"), &sa.access, json!({"user_id": c.id})).await.expect(201);
    let joined = stream_c.next_of_kind("member_added", Duration::from_secs(5)).await.expect("the new member hears of joining");
    assert_eq!(joined["kind"], "member_added");
    h.call(Method::DELETE, &format!("/api/v1/conversations/{conv}/members/{}", c.id), Some(&sa.access), None).await.expect(204);
    let left = stream_c.next_of_kind("member_removed", Duration::from_secs(5)).await.expect("the removed member hears of it");
    assert_eq!(left["kind"], "member_removed");
    h.send(&sa, &conv, "after-removal", "not for c").await.expect(201);
    assert!(stream_c.next_event(Duration::from_millis(500)).await.is_none());
    h.get(&format!("/api/v1/conversations/{conv}/messages"), &sc.access).await.expect_problem(404, "not_found");

    // Reads and sends are audited, without content.
    let audit = h.store.audit_events(0, 100_000).await.unwrap();
    assert!(audit.iter().any(|e| e.action == "message.send" && e.actor_user_id == Some(a.id.0)));
    assert!(audit.iter().any(|e| e.action == "message.read" && e.actor_user_id == Some(b.id.0)));
    assert!(audit.iter().any(|e| e.action == "message.recall"));
    assert!(audit.iter().all(|e| !e.detail.contains("BP 120/80")));
}

async fn streams_resume_without_gaps_or_duplicates(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let org = h.org("acme", vec![]).await;
    let (a, b) = (h.account(&org, "a@acme", Role::Clinician).await, h.account(&org, "b@acme", Role::Nurse).await);
    let (sa, sb) = (h.login(&a).await, h.login(&b).await);
    let conv = h.conversation(&sa, "group", &[&b]).await;
    let mut s1 = h.stream(&sb).await;
    for i in 1..=5 {
        h.send(&sa, &conv, &format!("m{i}"), &format!("message {i}")).await.expect(201);
    }
    let mut message_seqs = Vec::new();
    for _ in 0..5 {
        let e = s1.next_of_kind("message", Duration::from_secs(5)).await.unwrap();
        message_seqs.push(e["seq"].as_i64().unwrap());
    }
    // Acknowledge up to the fourth message only, then drop the connection.
    s1.ack(&conv, message_seqs[3]).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    drop(s1);
    for i in 6..=8 {
        h.send(&sa, &conv, &format!("m{i}"), &format!("message {i}")).await.expect(201);
    }
    // The new connection replays from the last acknowledged event: message 5 again (never
    // acknowledged), then 6..8, then live traffic, with no gap and no duplicate.
    let mut s2 = h.stream(&sb).await;
    h.send(&sa, &conv, "m9", "message 9").await.expect(201);
    let mut bodies = Vec::new();
    let mut seqs = Vec::new();
    while bodies.len() < 5 {
        let e = s2.next_event(Duration::from_secs(5)).await.expect("replay and live events arrive");
        seqs.push(e["seq"].as_i64().unwrap());
        bodies.push(e["message"]["body"].as_str().unwrap().to_owned());
    }
    assert_eq!(bodies, ["message 5", "message 6", "message 7", "message 8", "message 9"]);
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "event sequence without gaps: {seqs:?}");
    assert!(s2.next_event(Duration::from_millis(300)).await.is_none(), "nothing twice");
    let audit = h.store.audit_events(0, 100_000).await.unwrap();
    assert!(audit.iter().any(|e| e.action == "stream.replay" && e.actor_user_id == Some(b.id.0)));

    // Browsers authenticate with a first frame instead of a header.
    let mut s3 = h.stream_unauthenticated().await;
    s3.send_json(json!({"type": "auth", "access_token": sb.access})).await;
    assert_eq!(s3.next_json(Duration::from_secs(5)).await.unwrap()["type"], "ready");
    let mut s4 = h.stream_unauthenticated().await;
    s4.send_json(json!({"type": "auth", "access_token": "wat_forged"})).await;
    assert_eq!(s4.next_json(Duration::from_secs(5)).await.unwrap()["type"], "error");
    assert!(matches!(s4.next_frame(Duration::from_secs(5)).await, Frame::Closed(Some(4401))));
}

async fn revoking_sessions_closes_streams_within_a_second(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let org = h.org("acme", vec![]).await;
    let admin = h.account(&org, "admin@acme", Role::Admin).await;
    let nurse = h.account(&org, "nurse@acme", Role::Nurse).await;
    let sadmin = h.login_stepped_up(&admin).await;
    let (s1, s2) = (h.login(&nurse).await, h.login(&nurse).await);
    let (mut w1, mut w2) = (h.stream(&s1).await, h.stream(&s2).await);

    // The user revokes one of their own sessions: only that stream closes.
    h.call(Method::DELETE, &format!("/api/v1/me/sessions/{}", s2.session_id), Some(&s1.access), None).await.expect(204);
    let started = Instant::now();
    assert_eq!(w2.next_json(Duration::from_secs(1)).await.unwrap()["type"], "session_ended");
    assert!(matches!(w2.next_frame(Duration::from_secs(1)).await, Frame::Closed(Some(4001))));
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(matches!(w1.next_frame(Duration::from_millis(200)).await, Frame::Timeout), "the other session stays open");
    h.get("/api/v1/me", &s2.access).await.expect_problem(401, "session_ended");

    // An admin revokes all of the user's sessions.
    let started = Instant::now();
    let r = h.call(Method::DELETE, &format!("/api/v1/users/{}/sessions", nurse.id), Some(&sadmin.access), None).await.expect(200);
    assert_eq!(r.body["revoked"], 1);
    assert_eq!(w1.next_json(Duration::from_secs(1)).await.unwrap()["type"], "session_ended");
    assert!(started.elapsed() < Duration::from_secs(1), "connections close within a second");
    h.get("/api/v1/me", &s1.access).await.expect_problem(401, "session_ended");
    let sessions = h.get(&format!("/api/v1/users/{}/sessions", nurse.id), &sadmin.access).await.expect(200);
    assert_eq!(sessions.body.as_array().unwrap().len(), 0);

    // Disabling a user also ends their streams and sign-ins.
    let s3 = h.login(&nurse).await;
    let mut w3 = h.stream(&s3).await;
    h.post(&format!("/api/v1/users/{}/disable", nurse.id), &sadmin.access, json!({})).await.expect(200);
    assert_eq!(w3.next_json(Duration::from_secs(1)).await.unwrap()["type"], "session_ended");
    let r = h
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"login": "nurse@acme", "password": common::PASSWORD, "device": {"name": "x", "platform": "ios"}})),
        )
        .await;
    r.expect_problem(403, "account_disabled");
}

async fn patient_conversations_and_minimum_necessary(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let org = h.org("acme", vec![]).await;
    let doc = h.account(&org, "doc@acme", Role::Clinician).await;
    let nurse = h.account(&org, "nurse@acme", Role::Nurse).await;
    let consultant = h.account(&org, "consult@acme", Role::Clinician).await;
    let sdoc = h.login(&doc).await;
    let p = h
        .post("/api/v1/patients", &sdoc.access, json!({"mrn": "MRN-1001", "display_name": "Jamie Rivera", "care_team": [doc.id, nurse.id]}))
        .await
        .expect(201);
    let pid = p.body["id"].as_str().unwrap().to_owned();
    let patient = h.account_for_patient(&org, "jamie@acme", Role::Patient, Some(ward_domain::ids::PatientId(pid.parse().unwrap()))).await;
    let spatient = h.login(&patient).await;
    // Outside the care team: refused without a reason...
    let r = h
        .post("/api/v1/conversations", &sdoc.access, json!({"kind": "patient", "title": "Jamie", "patient_id": pid, "members": [{"user_id": nurse.id}, {"user_id": patient.id}, {"user_id": consultant.id}]}))
        .await;
    r.expect_problem(422, "reason_required");
    // ...accepted with one, and the reason is shown to members.
    let r = h
        .post(
            "/api/v1/conversations",
            &sdoc.access,
            json!({"kind": "patient", "title": "Jamie", "patient_id": pid,
            "members": [{"user_id": nurse.id}, {"user_id": patient.id}, {"user_id": consultant.id, "reason": {"code": "consult"}}]}),
        )
        .await
        .expect(201);
    let conv = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(r.body["patient"]["mrn"], "MRN-1001");
    let m = r.body["members"].as_array().unwrap().iter().find(|m| m["user_id"] == json!(consultant.id)).unwrap().clone();
    assert_eq!(m["reason"], "consult");
    // The patient reads and replies in their own conversation, but cannot start conversations.
    h.send(&spatient, &conv, "p1", "Thank you, see you Tuesday").await.expect(201);
    h.post("/api/v1/conversations", &spatient.access, json!({"kind": "group", "title": "x", "members": [{"user_id": doc.id}]}))
        .await
        .expect_problem(403, "forbidden");
    // A patient cannot be added to someone else's conversation.
    let other = h.conversation(&sdoc, "group", &[&nurse]).await;
    h.post(&format!("/api/v1/conversations/{other}/members"), &sdoc.access, json!({"user_id": patient.id}))
        .await
        .expect_problem(422, "ineligible_member");
    // Patient lookup by MRN is in the body and audited with the opaque id only.
    let found = h.post("/api/v1/patients/search", &sdoc.access, json!({"mrn": "MRN-1001"})).await.expect(200);
    assert_eq!(found.body["id"], pid);
    h.post("/api/v1/patients/search", &spatient.access, json!({"mrn": "MRN-1001"})).await.expect_problem(403, "forbidden");
    let audit = h.store.audit_events(0, 100_000).await.unwrap();
    assert!(audit.iter().any(|e| e.action == "patient.read" && e.patient_id.map(|p| p.to_string()) == Some(pid.clone())));
    assert!(audit.iter().all(|e| !e.detail.contains("MRN-1001") && !e.detail.contains("Jamie")));
}

async fn direct_conversations_are_reused(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let org = h.org("acme", vec![]).await;
    let (a, b) = (h.account(&org, "a@acme", Role::Clinician).await, h.account(&org, "b@acme", Role::Nurse).await);
    let (sa, sb) = (h.login(&a).await, h.login(&b).await);
    let first = h.conversation(&sa, "direct", &[&b]).await;
    let second = h.post("/api/v1/conversations", &sb.access, json!({"kind": "direct", "members": [{"user_id": a.id}]})).await.expect(200);
    assert_eq!(second.body["id"], first);
    h.post(&format!("/api/v1/conversations/{first}/members"), &sa.access, json!({"user_id": a.id}))
        .await
        .expect_problem(409, "invalid_state");
    let c = h.account(&org, "c@acme", Role::Staff).await;
    h.post(&format!("/api/v1/conversations/{first}/members"), &sa.access, json!({"user_id": c.id}))
        .await
        .expect_problem(409, "invalid_state");
}

/// Events of one conversation can be published out of order (one committed batch, several
/// nodes) or not at all (a fan-out outage). The stream still delivers them in sequence, once.
async fn out_of_order_and_lost_publications_still_arrive_in_order(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let org = h.org("acme", vec![]).await;
    let (a, b) = (h.account(&org, "a@acme", Role::Clinician).await, h.account(&org, "b@acme", Role::Nurse).await);
    let (sa, sb) = (h.login(&a).await, h.login(&b).await);
    let conv = h.conversation(&sa, "group", &[&b]).await;
    let mut stream = h.stream(&sb).await;
    while stream.next_event(Duration::from_millis(300)).await.is_some() {}
    let state = h.running.as_ref().unwrap().state.clone();
    let actor = ward_domain::policy::Actor { user_id: a.id, org_id: org.id, role: Role::Clinician };
    let conv_id: ward_domain::ids::ConversationId = conv.parse().unwrap();
    let mut sent = Vec::new();
    for i in 1..=6 {
        let m = ward_store::NewMessage {
            conversation_id: conv_id,
            client_txn_id: ward_domain::conversation::ClientTxnId::parse(format!("o{i}")).unwrap(),
            body: ward_domain::conversation::MessageText::parse(format!("out of order {i}")).unwrap(),
            priority: ward_domain::conversation::Priority::Routine,
            corrects: None,
            attachments: vec![],
        };
        sent.push(h.store.send_message(actor, ward_domain::ids::DeviceId::new(), m, Harness::meta()).await.unwrap().event.unwrap());
    }
    // Published 3, 1, 2 (reordered in memory); 4 and 5 never published; 6 published last.
    for i in [2, 0, 1, 5] {
        state.publish(sent[i].clone()).await;
    }
    let mut bodies = Vec::new();
    while bodies.len() < 6 {
        let e = stream.next_of_kind("message", Duration::from_secs(5)).await.expect("every message arrives");
        bodies.push(e["message"]["body"].as_str().unwrap().to_owned());
    }
    assert_eq!(bodies, (1..=6).map(|i| format!("out of order {i}")).collect::<Vec<_>>());
    assert!(stream.next_event(Duration::from_millis(300)).await.is_none(), "nothing twice");
}

/// The conversation list carries the highest priority among the caller's unread messages from
/// others (the web app's STAT badge): recalled ones and the caller's own do not count, and
/// reading clears it.
async fn the_list_shows_the_highest_unread_priority(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let org = h.org("prio", vec![]).await;
    let (a, b) = (h.account(&org, "a@prio", Role::Clinician).await, h.account(&org, "b@prio", Role::Nurse).await);
    let (sa, sb) = (h.login(&a).await, h.login(&b).await);
    let conv = h.conversation(&sa, "group", &[&b]).await;
    let msgs = format!("/api/v1/conversations/{conv}/messages");
    let listed = |who: &common::Session| {
        let (h, who, conv) = (&h, who.clone(), conv.clone());
        async move {
            let r = h.get("/api/v1/conversations", &who.access).await.expect(200);
            r.body["items"].as_array().unwrap().iter().find(|c| c["id"] == conv.as_str()).cloned().unwrap()
        }
    };
    assert_eq!(listed(&sb).await["unread_priority"], serde_json::Value::Null, "nothing unread");
    let send = |txn: &'static str, priority: &'static str| {
        let (h, sa, msgs) = (&h, sa.clone(), msgs.clone());
        async move { h.post(&msgs, &sa.access, json!({"client_txn_id": txn, "body": "K 3.1", "priority": priority})).await.expect(201) }
    };
    send("p1", "routine").await;
    assert_eq!(listed(&sb).await["unread_priority"], "routine");
    send("p2", "urgent").await;
    let stat = send("p3", "stat").await;
    send("p4", "routine").await;
    let b_view = listed(&sb).await;
    assert_eq!((b_view["unread"].as_i64(), b_view["unread_priority"].as_str()), (Some(4), Some("stat")));
    assert_eq!(listed(&sa).await["unread_priority"], serde_json::Value::Null, "the sender's own messages do not count");
    let id = stat.body["id"].as_str().unwrap();
    h.post(&format!("{msgs}/{id}/recall"), &sa.access, json!({})).await.expect(200);
    assert_eq!(listed(&sb).await["unread_priority"], "urgent", "a recalled STAT no longer counts");
    h.post(&format!("/api/v1/conversations/{conv}/receipts"), &sb.access, json!({"kind": "read", "up_to_seq": 4})).await.expect(204);
    assert_eq!(listed(&sb).await["unread_priority"], serde_json::Value::Null, "reading clears it");
}
