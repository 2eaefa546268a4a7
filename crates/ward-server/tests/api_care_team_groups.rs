//! Care teams from SCIM groups (docs/identity.md, "Care teams from groups"), over real HTTPS
//! on SQLite and PostgreSQL: a care-team editor attaches the organisation's SCIM groups to a
//! patient's care team; their active workforce members are on it (no disclosure reason to add
//! them to the patient's conversation, on-call eligible), and leave it at once when the
//! identity provider removes them (PATCH, group DELETE, deprovisioning, user DELETE) unless
//! they are direct members or in another attached group. Direct edits replace only the direct
//! members. Attach and detach are permitted to care-team editors only, refused for another
//! organisation's group, and audited without PHI; SCIM shows nothing of it.

mod common;

use common::{Harness, Reply, Session};
use reqwest::Method;
use serde_json::{Value, json};
use ward_domain::role::Role;
use ward_store::{Backend, on_both_backends};

on_both_backends!(care_teams_from_scim_groups, ward_side_disable_and_what_a_patient_sees);

const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const MRN: &str = "MRN-C4N4RY-77";
const NAME: &str = "Canary Patientname";

async fn scim(h: &Harness, method: Method, path: &str, token: &str, body: Option<Value>) -> Reply {
    let mut req = h.http.request(method, format!("{}/scim/v2{path}", h.url)).bearer_auth(token);
    if let Some(b) = body {
        req = req.header("content-type", "application/scim+json").body(b.to_string());
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.bytes().await.unwrap();
    let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
    Reply { status, headers, body }
}

async fn scim_token(h: &Harness, admin: &Session) -> String {
    h.post("/api/v1/admin/scim/tokens", &admin.access, json!({"label": "idp"})).await.expect(201).body["token"].as_str().unwrap().to_owned()
}

async fn group(h: &Harness, token: &str, name: &str, members: &[String]) -> String {
    let members: Vec<Value> = members.iter().map(|m| json!({"value": m})).collect();
    let r = scim(h, Method::POST, "/Groups", token, Some(json!({"schemas": [GROUP], "displayName": name, "members": members}))).await;
    assert_eq!(r.status.as_u16(), 201, "{}", r.body);
    r.body["id"].as_str().unwrap().to_owned()
}

fn patch(op: &str, member: &str) -> Value {
    match op {
        "add" => json!({"schemas": [PATCH], "Operations": [{"op": "add", "path": "members", "value": [{"value": member}]}]}),
        _ => json!({"schemas": [PATCH], "Operations": [{"op": "remove", "path": format!("members[value eq \"{member}\"]")}]}),
    }
}

fn ids(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v.as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_owned()).collect();
    out.sort();
    out
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// The care-team entry for a user: (direct, via groups), or None when off the team.
fn entry(p: &Value, user: &str) -> Option<(bool, Vec<String>)> {
    p["care_team_members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["user_id"] == user)
        .map(|m| (m["direct"].as_bool().unwrap(), ids(&m["via_groups"])))
}

async fn audit(h: &Harness, action: &str) -> Vec<ward_store::AuditRecord> {
    h.store.audit_events(0, 100_000).await.unwrap().into_iter().filter(|e| e.action == action).collect()
}

async fn care_teams_from_scim_groups(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let o = h.org("acme", vec![]).await;
    let other = h.org("other", vec![]).await;
    let admin = h.account(&o, "admin@acme", Role::Admin).await;
    let doc = h.account(&o, "doc@acme", Role::Clinician).await;
    let nurse = h.account(&o, "nurse@acme", Role::Nurse).await;
    let clerk = h.account(&o, "clerk@acme", Role::Staff).await;
    let outsider = h.account(&o, "outsider@acme", Role::Clinician).await;
    let other_admin = h.account(&other, "admin@other", Role::Admin).await;
    let other_user = h.account(&other, "nurse@other", Role::Nurse).await;
    let sadmin = h.login_stepped_up(&admin).await;
    let token = scim_token(&h, &sadmin).await;
    let other_token = scim_token(&h, &h.login_stepped_up(&other_admin).await).await;
    let sdoc = h.login(&doc).await;
    let sclerk = h.login(&clerk).await;
    let soutsider = h.login(&outsider).await;
    let (n, c, d) = (nurse.id.to_string(), clerk.id.to_string(), doc.id.to_string());

    let p = h
        .post("/api/v1/patients", &sdoc.access, json!({"mrn": MRN, "display_name": NAME, "care_team": [doc.id, clerk.id]}))
        .await
        .expect(201);
    let pid = p.body["id"].as_str().unwrap().to_owned();
    let patient_path = format!("/api/v1/patients/{pid}");
    let groups_path = format!("{patient_path}/care-team/groups");
    let put_groups = |s: &Session, ids: Vec<&str>| {
        let s = s.access.clone();
        let path = groups_path.clone();
        let h = &h;
        let ids: Vec<String> = ids.into_iter().map(str::to_owned).collect();
        async move { h.call(Method::PUT, &path, Some(&s), Some(json!({"group_ids": ids}))).await }
    };

    let cardio = group(&h, &token, "Cardiology ward 3", &[n.clone(), c.clone()]).await;
    let night = group(&h, &token, "Night shift", std::slice::from_ref(&n)).await;
    let foreign = group(&h, &other_token, "Cardiology ward 3", &[other_user.id.to_string()]).await;

    // The group names care-team editors choose from: names and counts, editors only.
    let listed = h.get("/api/v1/groups", &sdoc.access).await.expect(200);
    let names: Vec<&str> = listed.body.as_array().unwrap().iter().map(|g| g["display_name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Cardiology ward 3", "Night shift"]);
    assert_eq!(listed.body[0]["members"], 2);
    h.get("/api/v1/groups", &sclerk.access).await.expect_problem(403, "forbidden");

    // Permission: a staff member on the team and a clinician off it may not attach.
    put_groups(&sclerk, vec![&cardio]).await.expect_problem(403, "forbidden");
    put_groups(&soutsider, vec![&cardio]).await.expect_problem(403, "forbidden");
    // Another organisation's group, or an unknown id: one answer, nothing changes.
    put_groups(&sdoc, vec![&foreign]).await.expect_problem(422, "unknown_group");
    put_groups(&sdoc, vec![&uuid::Uuid::new_v4().to_string()]).await.expect_problem(422, "unknown_group");
    let many: Vec<String> = (0..21).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    put_groups(&sdoc, many.iter().map(String::as_str).collect()).await.expect_problem(422, "validation_failed");
    let r = h.call(Method::PUT, &groups_path, Some(&sdoc.access), Some(json!({"group_ids": ["nope"]}))).await;
    assert_eq!(r.status.as_u16(), 400, "{}", r.body);
    assert_eq!(h.get(&patient_path, &sdoc.access).await.body["care_team_groups"], json!([]));

    // Attach: the group's members are on the care team, marked as through it.
    let r = put_groups(&sdoc, vec![&cardio]).await.expect(200);
    assert_eq!(ids(&r.body["care_team"]), sorted(vec![d.clone(), n.clone(), c.clone()]), "{}", r.body);
    assert_eq!(ids(&r.body["direct_care_team"]), sorted(vec![d.clone(), c.clone()]));
    assert_eq!(r.body["care_team_groups"][0]["display_name"], "Cardiology ward 3");
    assert_eq!(entry(&r.body, &n), Some((false, vec![cardio.clone()])));
    assert_eq!(entry(&r.body, &c), Some((true, vec![cardio.clone()])));
    assert_eq!(entry(&r.body, &d), Some((true, vec![])));
    // ...with all it implies: added to the patient's conversation without a disclosure
    // reason, and eligible to be on call.
    let conv = h
        .post(
            "/api/v1/conversations",
            &sdoc.access,
            json!({"kind": "patient", "title": "Handover", "patient_id": pid, "members": [{"user_id": nurse.id}]}),
        )
        .await;
    assert!(conv.status.is_success(), "{}", conv.body);
    h.call(Method::PUT, &format!("{patient_path}/care-team/{n}/on-call"), Some(&sdoc.access), Some(json!({"on_call": true})))
        .await
        .expect(204);
    assert_eq!(ids(&h.get(&patient_path, &sdoc.access).await.body["on_call"]), vec![n.clone()]);
    // The nurse, on the team through the group, may edit the care team too.
    let snurse = h.login(&nurse).await;
    put_groups(&snurse, vec![&cardio]).await.expect(200);

    // A direct edit replaces the direct members only: members through the group stay.
    let r = h
        .call(Method::PUT, &format!("{patient_path}/care-team"), Some(&sdoc.access), Some(json!({"care_team": [doc.id]})))
        .await
        .expect(200);
    assert_eq!(ids(&r.body["care_team"]), sorted(vec![d.clone(), n.clone(), c.clone()]), "{}", r.body);
    assert_eq!(ids(&r.body["direct_care_team"]), vec![d.clone()]);
    assert_eq!(entry(&r.body, &c), Some((false, vec![cardio.clone()])));
    assert_eq!(ids(&r.body["on_call"]), vec![n.clone()], "staying on the team keeps the on-call flag");
    h.call(Method::PUT, &format!("{patient_path}/care-team"), Some(&sdoc.access), Some(json!({"care_team": [doc.id, clerk.id]})))
        .await
        .expect(200);

    // The identity provider removes members: off the team at once, unless also direct.
    let r = scim(&h, Method::PATCH, &format!("/Groups/{cardio}"), &token, Some(patch("remove", &c))).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.body);
    let r = scim(&h, Method::PATCH, &format!("/Groups/{cardio}"), &token, Some(patch("remove", &n))).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.body);
    let p = h.get(&patient_path, &sdoc.access).await.expect(200);
    assert_eq!(entry(&p.body, &n), None, "{}", p.body);
    assert_eq!(entry(&p.body, &c), Some((true, vec![])), "a direct member stays");
    assert_eq!(ids(&p.body["on_call"]), Vec::<String>::new(), "leaving drops the on-call flag");
    let r = h
        .post(
            &format!("/api/v1/conversations/{}/members", conv.body["id"].as_str().unwrap()),
            &sdoc.access,
            json!({"user_id": outsider.id}),
        )
        .await;
    r.expect_problem(422, "reason_required");
    // Added back: on the team again, not on call.
    scim(&h, Method::PATCH, &format!("/Groups/{cardio}"), &token, Some(patch("add", &n))).await;
    let p = h.get(&patient_path, &sdoc.access).await.expect(200);
    assert_eq!(entry(&p.body, &n), Some((false, vec![cardio.clone()])));
    assert_eq!(ids(&p.body["on_call"]), Vec::<String>::new());

    // Two groups: detaching one keeps the members of the other.
    let r = put_groups(&sdoc, vec![&cardio, &night]).await.expect(200);
    assert_eq!(entry(&r.body, &n), Some((false, sorted(vec![cardio.clone(), night.clone()]))));
    let r = put_groups(&sdoc, vec![&night]).await.expect(200);
    assert_eq!(entry(&r.body, &n), Some((false, vec![night.clone()])));
    // The identity provider deletes the group: detached, its members gone from the team.
    let r = scim(&h, Method::DELETE, &format!("/Groups/{night}"), &token, None).await;
    assert_eq!(r.status.as_u16(), 204, "{}", r.body);
    let p = h.get(&patient_path, &sdoc.access).await.expect(200);
    assert_eq!((entry(&p.body, &n), &p.body["care_team_groups"]), (None, &json!([])), "{}", p.body);

    // Deprovisioned (active false) or deleted through SCIM: off the team at once.
    let user = |login: &str| json!({"schemas": [USER], "userName": login, "displayName": "Leaver", "roles": [{"value": "nurse"}]});
    let leaver = scim(&h, Method::POST, "/Users", &token, Some(user("leaver@acme"))).await.body["id"].as_str().unwrap().to_owned();
    let gone = scim(&h, Method::POST, "/Users", &token, Some(user("gone@acme"))).await.body["id"].as_str().unwrap().to_owned();
    scim(&h, Method::PATCH, &format!("/Groups/{cardio}"), &token, Some(patch("add", &leaver))).await;
    scim(&h, Method::PATCH, &format!("/Groups/{cardio}"), &token, Some(patch("add", &gone))).await;
    let r = put_groups(&sdoc, vec![&cardio]).await.expect(200);
    assert!(entry(&r.body, &leaver).is_some() && entry(&r.body, &gone).is_some(), "{}", r.body);
    let off = json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "active", "value": false}]});
    assert_eq!(scim(&h, Method::PATCH, &format!("/Users/{leaver}"), &token, Some(off)).await.status.as_u16(), 200);
    assert_eq!(scim(&h, Method::DELETE, &format!("/Users/{gone}"), &token, None).await.status.as_u16(), 204);
    let p = h.get(&patient_path, &sdoc.access).await.expect(200);
    assert_eq!((entry(&p.body, &leaver), entry(&p.body, &gone)), (None, None), "{}", p.body);
    assert_eq!(entry(&p.body, &n), Some((false, vec![cardio.clone()])));
    // Enabled again: back on it.
    let on = json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "active", "value": true}]});
    assert_eq!(scim(&h, Method::PATCH, &format!("/Users/{leaver}"), &token, Some(on)).await.status.as_u16(), 200);
    assert!(entry(&h.get(&patient_path, &sdoc.access).await.body, &leaver).is_some());

    // SCIM shows nothing of it; the Provisioning screen a count.
    let g = scim(&h, Method::GET, &format!("/Groups/{cardio}"), &token, None).await;
    assert!(!g.body.to_string().contains(&pid) && !g.body.to_string().to_lowercase().contains("care"), "{}", g.body);
    let listed = h.get("/api/v1/admin/scim/groups", &sadmin.access).await.expect(200);
    let row = listed.body.as_array().unwrap().iter().find(|g| g["id"] == cardio.as_str()).unwrap().clone();
    assert_eq!(row["care_teams"], 1, "{row}");

    // Detach: members through it leave; direct members stay.
    let r = put_groups(&sdoc, vec![]).await.expect(200);
    assert_eq!(ids(&r.body["care_team"]), sorted(vec![d.clone(), c.clone()]), "{}", r.body);

    // A direct member whose account was disabled since does not block edits of the team (a
    // disabled account still cannot join one).
    let off = json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "active", "value": false}]});
    assert_eq!(scim(&h, Method::PATCH, &format!("/Users/{c}"), &token, Some(off)).await.status.as_u16(), 200);
    let team = format!("{patient_path}/care-team");
    let r = h.call(Method::PUT, &team, Some(&sdoc.access), Some(json!({"care_team": [doc.id, clerk.id, nurse.id]}))).await.expect(200);
    assert_eq!(ids(&r.body["direct_care_team"]), sorted(vec![d.clone(), c.clone(), n.clone()]));
    h.call(Method::PUT, &team, Some(&sdoc.access), Some(json!({"care_team": [doc.id, gone]}))).await.expect_problem(409, "invalid_state");

    // Audited: attach and detach with the group id and counts, no PHI.
    let events = audit(&h, "patient.care_team").await;
    let attach: Vec<_> = events.iter().filter(|e| e.detail.contains("group_attach")).collect();
    let detach: Vec<_> = events.iter().filter(|e| e.detail.contains("group_detach")).collect();
    assert!(attach.len() >= 3 && detach.len() >= 3, "{events:?}");
    assert!(attach.iter().any(|e| e.detail.contains(&cardio) && e.patient_id.map(|p| p.to_string()) == Some(pid.clone())));
    assert!(detach.iter().any(|e| e.detail.contains("scim_group_delete") && e.detail.contains(&night)));
    for e in &events {
        assert!(!e.detail.contains(MRN) && !e.detail.contains(NAME) && !e.detail.contains("Cardiology"), "{e:?}");
    }
    assert!(audit(&h, "scim.group").await.iter().any(|e| e.detail.contains("care_teams")));
}

/// Disabled in Ward (`POST /users/{id}/disable`): off the care teams it was on through a group
/// at once; enabled again: back on them. A patient reading their own record or their
/// conversation sees their care team, not the organisation's groups behind it (no group names,
/// attach times, member lists or `via_groups`).
async fn ward_side_disable_and_what_a_patient_sees(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let o = h.org("acme", vec![]).await;
    let admin = h.account(&o, "admin@acme", Role::Admin).await;
    let doc = h.account(&o, "doc@acme", Role::Clinician).await;
    let nurse = h.account(&o, "nurse@acme", Role::Nurse).await;
    let sadmin = h.login_stepped_up(&admin).await;
    let token = scim_token(&h, &sadmin).await;
    let sdoc = h.login(&doc).await;
    let n = nurse.id.to_string();
    let p = h.post("/api/v1/patients", &sdoc.access, json!({"mrn": MRN, "display_name": NAME, "care_team": [doc.id]})).await.expect(201);
    let pid = p.body["id"].as_str().unwrap().to_owned();
    let patient_path = format!("/api/v1/patients/{pid}");
    let cardio = group(&h, &token, "Cardiology ward 3", std::slice::from_ref(&n)).await;
    let r =
        h.call(Method::PUT, &format!("{patient_path}/care-team/groups"), Some(&sdoc.access), Some(json!({"group_ids": [cardio]}))).await;
    let r = r.expect(200);
    assert_eq!(entry(&r.body, &n), Some((false, vec![cardio.clone()])));
    assert_eq!(r.body["care_team_groups"][0]["member_count"], 1, "{}", r.body);

    // Disabled in Ward: off the team; enabled: back on it.
    h.post(&format!("/api/v1/users/{n}/disable"), &sadmin.access, json!({})).await.expect(200);
    let p = h.get(&patient_path, &sdoc.access).await.expect(200);
    assert_eq!(entry(&p.body, &n), None, "{}", p.body);
    assert_eq!(p.body["care_team_groups"][0]["member_count"], 0, "{}", p.body);
    h.post(&format!("/api/v1/users/{n}/enable"), &sadmin.access, json!({})).await.expect(200);
    let p = h.get(&patient_path, &sdoc.access).await.expect(200);
    assert_eq!(entry(&p.body, &n), Some((false, vec![cardio.clone()])), "{}", p.body);

    // The patient's own view: the same care team, no group data.
    let acc = h.account_for_patient(&o, "pat@acme", Role::Patient, Some(ward_domain::ids::PatientId(pid.parse().unwrap()))).await;
    let spatient = h.login(&acc).await;
    let mine = h.get(&patient_path, &spatient.access).await.expect(200);
    assert_eq!(ids(&mine.body["care_team"]), sorted(vec![doc.id.to_string(), n.clone()]), "{}", mine.body);
    assert_eq!(mine.body["care_team_groups"], json!([]), "{}", mine.body);
    assert_eq!(entry(&mine.body, &n), Some((false, vec![])));
    assert!(!mine.body.to_string().contains("Cardiology") && !mine.body.to_string().contains(&cardio), "{}", mine.body);
    let conv = h
        .post(
            "/api/v1/conversations",
            &sdoc.access,
            json!({"kind": "patient", "title": "Jamie", "patient_id": pid, "members": [{"user_id": nurse.id}, {"user_id": acc.id}]}),
        )
        .await;
    assert!(conv.status.is_success(), "{}", conv.body);
    assert_eq!(conv.body["patient"]["care_team_groups"][0]["id"], cardio.as_str(), "staff see the groups");
    let cid = conv.body["id"].as_str().unwrap();
    let seen = h.get(&format!("/api/v1/conversations/{cid}"), &spatient.access).await.expect(200);
    assert_eq!(seen.body["patient"]["care_team_groups"], json!([]), "{}", seen.body);
    assert!(!seen.body.to_string().contains("Cardiology") && !seen.body.to_string().contains(&cardio), "{}", seen.body);
    let staff = h.get(&format!("/api/v1/conversations/{cid}"), &sdoc.access).await.expect(200);
    assert_eq!(staff.body["patient"]["care_team_groups"][0]["display_name"], "Cardiology ward 3");
}
