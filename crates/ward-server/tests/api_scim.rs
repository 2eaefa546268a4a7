//! SCIM 2.0 provisioning over real HTTPS and WebSocket, on SQLite and PostgreSQL: token
//! issuing and scoping, CRUD, filters, PATCH paths, ETags, RFC 7644 error bodies that change
//! nothing, and deprovisioning (a live stream closes, sessions and refresh tokens die, a wipe
//! is queued and acknowledged), with its timeline in order.

mod common;

use std::time::Duration;

use common::{Frame, Harness, Reply, captured, logs};
use reqwest::Method;
use serde_json::{Value, json};
use ward_domain::role::Role;
use ward_store::{Backend, on_both_backends};

on_both_backends!(scim_provisioning, scim_keeps_the_last_admin, scim2_tester_finds_no_violation);

const WAIT: Duration = Duration::from_secs(10);
const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const CANARY: &str = "Canary-Sc1m Display";

const REGISTRATION: &str = r#"{"platform":"ios","model":"iPhone16,1","os_version":"18.1","app_version":"1.0.0",
    "ownership":"corporate","supervised":true,"mdm_enrolled":true}"#;

async fn scim(h: &Harness, method: Method, path: &str, token: &str, body: Option<Value>, if_match: Option<&str>) -> Reply {
    let mut req = h.http.request(method, format!("{}/scim/v2{path}", h.url)).bearer_auth(token);
    if let Some(b) = body {
        req = req.header("content-type", "application/scim+json").body(b.to_string());
    }
    if let Some(tag) = if_match {
        req = req.header("if-match", tag);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.bytes().await.unwrap();
    let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
    Reply { status, headers, body }
}

/// An RFC 7644 §3.12 error: status, scimType and the SCIM media type.
fn scim_error(r: &Reply, status: u16, scim_type: Option<&str>) {
    assert_eq!(r.status.as_u16(), status, "{}", r.body);
    assert_eq!(r.headers["content-type"], "application/scim+json");
    assert_eq!(r.body["schemas"], json!(["urn:ietf:params:scim:api:messages:2.0:Error"]));
    assert_eq!(r.body["status"], status.to_string());
    assert_eq!(r.body["scimType"].as_str(), scim_type, "{}", r.body);
}

async fn audit(h: &Harness, action: &str) -> Vec<ward_store::AuditRecord> {
    h.store.audit_events(0, 100_000).await.unwrap().into_iter().filter(|e| e.action == action).collect()
}

fn ids(r: &Reply) -> Vec<String> {
    let mut v: Vec<String> = r.body["Resources"].as_array().unwrap().iter().map(|u| u["userName"].as_str().unwrap().to_owned()).collect();
    v.sort();
    v
}

async fn scim_provisioning(backend: Backend) {
    captured();
    let Some(h) = Harness::start(backend).await else { return };
    let o = h.org("acme", vec![]).await;
    let other = h.org("other", vec![]).await;
    let admin = h.account(&o, "admin@acme", Role::Admin).await;
    let officer = h.account(&o, "officer@acme", Role::ComplianceOfficer).await;
    let leaver = h.account(&o, "leaver@acme", Role::Nurse).await;
    let nurse = h.account(&o, "nurse@acme", Role::Nurse).await;
    h.account(&other, "stranger@other", Role::Clinician).await;
    let sadmin = h.login_stepped_up(&admin).await;
    let snurse = h.login(&nurse).await;
    let sofficer = h.login(&officer).await;

    // Tokens: admins only, with a step-up; shown once; useless outside /scim/v2.
    h.post("/api/v1/admin/scim/tokens", &snurse.access, json!({"label": "idp"})).await.expect_problem(403, "forbidden");
    let stale = h.login(&admin).await;
    h.store.test_age_mfa(ward_domain::ids::SessionId(stale.session_id.parse().unwrap()), 301_000).await;
    h.post("/api/v1/admin/scim/tokens", &stale.access, json!({"label": "idp"})).await.expect_problem(401, "step_up_required");
    let issued = h.post("/api/v1/admin/scim/tokens", &sadmin.access, json!({"label": "Okta"})).await.expect(201);
    let token = issued.body["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("wst_"));
    let listed = h.get("/api/v1/admin/scim/tokens", &sadmin.access).await.expect(200);
    assert_eq!(listed.body[0]["label"], "Okta");
    assert!(listed.body[0].get("token").is_none(), "the token is shown once");
    h.get("/api/v1/me", &token).await.expect_problem(401, "invalid_token");
    h.get("/api/v1/users", &token).await.expect_problem(401, "invalid_token");
    scim_error(&scim(&h, Method::GET, "/Users", &sadmin.access, None, None).await, 401, None);
    scim_error(&scim(&h, Method::GET, "/Users", "wst_unknown", None, None).await, 401, None);

    // Discovery.
    let spc = scim(&h, Method::GET, "/ServiceProviderConfig", &token, None, None).await;
    assert_eq!(
        (spc.status.as_u16(), spc.body["patch"]["supported"].as_bool(), spc.body["etag"]["supported"].as_bool()),
        (200, Some(true), Some(true))
    );
    assert_eq!(scim(&h, Method::GET, "/ResourceTypes", &token, None, None).await.body["Resources"][0]["id"], "User");
    assert_eq!(scim(&h, Method::GET, "/Schemas", &token, None, None).await.body["Resources"][0]["id"], USER);
    assert_eq!(scim(&h, Method::GET, &format!("/Schemas/{USER}"), &token, None, None).await.status.as_u16(), 200);

    // Create.
    let body = json!({"schemas": [USER], "userName": "Joy.Ng@acme", "displayName": CANARY, "externalId": "ext-1",
        "roles": [{"value": "clinician", "primary": true}]});
    let created = scim(&h, Method::POST, "/Users", &token, Some(body.clone()), None).await;
    assert_eq!(created.status.as_u16(), 201, "{}", created.body);
    assert_eq!(created.headers["content-type"], "application/scim+json");
    let joy = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(created.headers["location"], format!("/scim/v2/Users/{joy}"));
    assert_eq!((created.body["userName"].as_str(), created.body["active"].as_bool()), (Some("joy.ng@acme"), Some(true)));
    assert_eq!(created.body["roles"][0]["value"], "clinician");
    assert_eq!(created.headers["etag"].to_str().unwrap(), created.body["meta"]["version"].as_str().unwrap());
    scim_error(&scim(&h, Method::POST, "/Users", &token, Some(body.clone()), None).await, 409, Some("uniqueness"));
    let same_ext = json!({"schemas": [USER], "userName": "other@acme", "externalId": "ext-1"});
    scim_error(&scim(&h, Method::POST, "/Users", &token, Some(same_ext), None).await, 409, Some("uniqueness"));
    let plain = scim(&h, Method::POST, "/Users", &token, Some(json!({"schemas": [USER], "userName": "sam@acme"})), None).await;
    assert_eq!((plain.status.as_u16(), plain.body["roles"][0]["value"].as_str()), (201, Some("staff")), "least privilege by default");

    // Bad input: the standard's error, nothing created.
    let count = |r: &Reply| r.body["totalResults"].as_u64().unwrap();
    let before = count(&scim(&h, Method::GET, "/Users", &token, None, None).await);
    for (bad, scim_type) in [
        (json!({"schemas": ["urn:example:unknown"], "userName": "x1@acme"}), "invalidSyntax"),
        (json!({"schemas": [USER, "urn:example:ext"], "userName": "x2@acme"}), "invalidValue"),
        (json!({"schemas": [USER]}), "invalidValue"),
        (json!({"schemas": [USER], "userName": "bad name"}), "invalidValue"),
        (json!({"schemas": [USER], "userName": "x3@acme", "roles": [{"value": "patient"}]}), "invalidValue"),
        (json!({"schemas": [USER], "userName": "x4@acme", "active": "maybe"}), "invalidValue"),
        // The privileged roles are granted in Ward only.
        (json!({"schemas": [USER], "userName": "x5@acme", "roles": [{"value": "admin"}]}), "mutability"),
        (json!({"schemas": [USER], "userName": "x6@acme", "roles": [{"value": "compliance_officer"}]}), "mutability"),
    ] {
        scim_error(&scim(&h, Method::POST, "/Users", &token, Some(bad), None).await, 400, Some(scim_type));
    }
    let raw =
        h.http.post(format!("{}/scim/v2/Users", h.url)).bearer_auth(&token).header("content-type", "application/scim+json").body("{nope");
    let raw = raw.send().await.unwrap();
    assert_eq!(raw.status().as_u16(), 400);
    assert_eq!(count(&scim(&h, Method::GET, "/Users", &token, None, None).await), before);

    // List and filter: the organisation's workforce only.
    let all = scim(&h, Method::GET, "/Users", &token, None, None).await;
    assert_eq!(ids(&all), ["admin@acme", "joy.ng@acme", "leaver@acme", "nurse@acme", "officer@acme", "sam@acme"]);
    let q = |f: &str| format!("/Users?filter={}", urlencode(f));
    // Nor can SCIM demote an admin.
    let admin_id = scim(&h, Method::GET, &q(r#"userName eq "admin@acme""#), &token, None, None).await.body["Resources"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let demote =
        json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "roles", "value": [{"value": "staff", "primary": true}]}]});
    scim_error(&scim(&h, Method::PATCH, &format!("/Users/{admin_id}"), &token, Some(demote), None).await, 400, Some("mutability"));
    assert_eq!(h.store.user(o.id, admin.id).await.unwrap().role, Role::Admin);
    for (filter, want) in [
        ("userName eq \"JOY.NG@acme\"", vec!["joy.ng@acme"]),
        ("externalId eq \"EXT-1\"", vec![]),
        ("externalId eq \"ext-1\"", vec!["joy.ng@acme"]),
        ("roles.value eq \"nurse\" or userName sw \"sam\"", vec!["leaver@acme", "nurse@acme", "sam@acme"]),
        ("userName co \"acme\" and not (roles.value ne \"admin\")", vec!["admin@acme"]),
        ("externalId pr", vec!["joy.ng@acme"]),
        ("urn:ietf:params:scim:schemas:core:2.0:User:userName ew \"cer@acme\"", vec!["officer@acme"]),
        ("active eq true and (displayName co \"sc1m\")", vec!["joy.ng@acme"]),
    ] {
        let r = scim(&h, Method::GET, &q(filter), &token, None, None).await;
        assert_eq!(ids(&r), want, "{filter}");
    }
    let slim = scim(&h, Method::GET, &format!("{}&attributes=userName", q("externalId pr")), &token, None, None).await;
    let keys: Vec<&String> = slim.body["Resources"][0].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["id", "schemas", "userName"], "{}", slim.body);
    let search = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": "roles.value eq \"nurse\"",
        "excludedAttributes": ["roles", "meta"]});
    let found = scim(&h, Method::POST, "/Users/.search", &token, Some(search), None).await;
    assert_eq!(ids(&found), ["leaver@acme", "nurse@acme"]);
    assert!(found.body["Resources"][0].get("roles").is_none() && found.body["Resources"][0].get("meta").is_none(), "{}", found.body);
    let page = scim(&h, Method::GET, "/Users?startIndex=2&count=2", &token, None, None).await;
    assert_eq!((count(&page), page.body["startIndex"].as_u64(), page.body["itemsPerPage"].as_u64()), (6, Some(2), Some(2)));
    assert_eq!(ids(&page), ["joy.ng@acme", "leaver@acme"]);
    for bad in ["userName eq", "userName zz \"a\"", "(userName pr", "emails[type eq \"work\"]", "userName eq \"Canary-Sc1m"] {
        let r = scim(&h, Method::GET, &q(bad), &token, None, None).await;
        scim_error(&r, 400, Some("invalidFilter"));
        assert!(!r.body.to_string().contains("Canary-Sc1m"), "errors never echo values");
    }

    // PATCH paths.
    let path = format!("/Users/{joy}");
    let patch = |ops: Value| json!({"schemas": [PATCH], "Operations": ops});
    let r = scim(
        &h,
        Method::PATCH,
        &path,
        &token,
        Some(patch(json!([
            {"op": "replace", "path": "displayName", "value": "Dr Joy"},
            {"op": "remove", "path": "externalId"},
            {"op": "add", "path": "roles", "value": [{"value": "nurse", "primary": true}]},
        ]))),
        None,
    )
    .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.body);
    assert_eq!((r.body["displayName"].as_str(), r.body.get("externalId")), (Some("Dr Joy"), None));
    let r = scim(
        &h,
        Method::PATCH,
        &path,
        &token,
        Some(patch(json!([{"op": "replace", "value": {"externalId": "ext-9", "roles": [{"value": "nurse"}]}}]))),
        None,
    )
    .await;
    assert_eq!((r.body["externalId"].as_str(), r.body["roles"][0]["value"].as_str()), (Some("ext-9"), Some("nurse")), "{}", r.body);
    let tag = r.headers["etag"].to_str().unwrap().to_owned();
    for (ops, status, scim_type) in [
        (json!([{"op": "remove"}]), 400, "noTarget"),
        (json!([{"op": "remove", "path": "nickName"}]), 400, "noTarget"),
        (json!([{"op": "replace", "path": "emails[type eq \"work\"].value", "value": "x"}]), 400, "invalidPath"),
        (json!([{"op": "replace", "path": "id", "value": "x"}]), 400, "mutability"),
        (json!([{"op": "jump", "path": "active"}]), 400, "invalidSyntax"),
        (json!([{"op": "replace", "path": "userName", "value": "Canary Sc1m"}]), 400, "invalidValue"),
        (json!([{"op": "replace", "path": "displayName", "value": "ok"}, {"op": "remove", "path": "userName"}]), 400, "invalidValue"),
        (json!([{"op": "replace", "path": "userName", "value": "admin@acme"}]), 409, "uniqueness"),
    ] {
        let r = scim(&h, Method::PATCH, &path, &token, Some(patch(ops.clone())), None).await;
        scim_error(&r, status, Some(scim_type));
        assert!(!r.body.to_string().contains("Canary"), "{}", r.body);
    }
    let r = scim(&h, Method::PATCH, &path, &token, Some(json!({"schemas": ["urn:bad"], "Operations": []})), None).await;
    scim_error(&r, 400, Some("invalidSyntax"));
    let now = scim(&h, Method::GET, &path, &token, None, None).await;
    assert_eq!(now.headers["etag"].to_str().unwrap(), tag, "no refused request changed anything");

    // ETags: a stale If-Match is 412 and changes nothing; the current one works.
    let put = json!({"schemas": [USER], "userName": "joy.ng@acme", "displayName": "Joy Ng", "externalId": "ext-9"});
    scim_error(&scim(&h, Method::PUT, &path, &token, Some(put.clone()), Some("W/\"stale\"")).await, 412, None);
    scim_error(
        &scim(
            &h,
            Method::PATCH,
            &path,
            &token,
            Some(patch(json!([{"op": "replace", "path": "active", "value": false}]))),
            Some("W/\"stale\""),
        )
        .await,
        412,
        None,
    );
    assert_eq!(scim(&h, Method::GET, &path, &token, None, None).await.headers["etag"].to_str().unwrap(), tag);
    let r = scim(&h, Method::PUT, &path, &token, Some(put), Some(&tag)).await;
    assert_eq!(
        (r.status.as_u16(), r.body["displayName"].as_str(), r.body["roles"][0]["value"].as_str()),
        (200, Some("Joy Ng"), Some("nurse"))
    );
    let new_tag = r.headers["etag"].to_str().unwrap().to_owned();
    assert_ne!(new_tag, tag);
    let cached = h.http.get(format!("{}/scim/v2{path}", h.url)).bearer_auth(&token).header("if-none-match", &new_tag).send().await.unwrap();
    assert_eq!(cached.status().as_u16(), 304);
    // Another organisation's user, or an unknown id: 404.
    scim_error(&scim(&h, Method::GET, &format!("/Users/{}", ward_domain::ids::UserId::new()), &token, None, None).await, 404, None);

    // Deprovisioning with PATCH active=false: live session, refresh token, stream and device.
    let sleaver = h.login(&leaver).await;
    let reg = h
        .raw(Method::PUT, "/api/v1/me/device", Some(&sleaver.access), "application/json", REGISTRATION.as_bytes().to_vec())
        .await
        .expect(200);
    let secret = reg.body["wipe_secret"].as_str().unwrap().to_owned();
    let mut stream = h.stream(&sleaver).await;
    let found = scim(&h, Method::GET, &q("userName eq \"leaver@acme\""), &token, None, None).await;
    let leaver_id = found.body["Resources"][0]["id"].as_str().unwrap().to_owned();
    let r = scim(
        &h,
        Method::PATCH,
        &format!("/Users/{leaver_id}"),
        &token,
        Some(patch(json!([{"op": "replace", "path": "active", "value": false}]))),
        None,
    )
    .await;
    assert_eq!((r.status.as_u16(), r.body["active"].as_bool()), (200, Some(false)), "{}", r.body);
    h.get("/api/v1/me", &sleaver.access).await.expect_problem(403, "account_disabled");
    h.call(Method::POST, "/api/v1/auth/refresh", None, Some(json!({"refresh_token": sleaver.refresh, "device_id": sleaver.device_id})))
        .await
        .expect_problem(401, "invalid_refresh_token");
    let mut closed = false;
    for _ in 0..5 {
        match stream.next_frame(WAIT).await {
            Frame::Closed(_) => {
                closed = true;
                break;
            }
            Frame::Timeout => break,
            Frame::Json(_) => {}
        }
    }
    assert!(closed, "the deprovisioned person's connection closes");
    let cmd = h
        .call(Method::POST, "/api/v1/device-wipe/command", None, Some(json!({"device_id": sleaver.device_id, "wipe_secret": secret})))
        .await
        .expect(200);
    let wipe_id = cmd.body["wipe_id"].as_str().unwrap().to_owned();
    h.call(
        Method::POST,
        "/api/v1/device-wipe/ack",
        None,
        Some(json!({"device_id": sleaver.device_id, "wipe_secret": secret, "wipe_id": wipe_id})),
    )
    .await
    .expect(204);
    // Again: nothing left to do, no second timeline.
    scim(
        &h,
        Method::PATCH,
        &format!("/Users/{leaver_id}"),
        &token,
        Some(patch(json!([{"op": "replace", "path": "active", "value": false}]))),
        None,
    )
    .await;

    // DELETE: deprovisions (a live session) and leaves the SCIM view.
    let r = scim(&h, Method::DELETE, &format!("/Users/{}", nurse.id), &token, None, None).await;
    assert_eq!(r.status.as_u16(), 204, "{}", r.body);
    h.get("/api/v1/me", &snurse.access).await.expect_problem(403, "account_disabled");
    scim_error(&scim(&h, Method::GET, &format!("/Users/{}", nurse.id), &token, None, None).await, 404, None);
    scim_error(&scim(&h, Method::DELETE, &format!("/Users/{}", nurse.id), &token, None, None).await, 404, None);

    // The timeline: compliance officers read it, in order.
    h.get("/api/v1/admin/scim/deprovisions", &sadmin.access).await.expect(200);
    let t = h.get("/api/v1/admin/scim/deprovisions", &sofficer.access).await.expect(200);
    let list = t.body.as_array().unwrap();
    assert_eq!(list.len(), 2, "{}", t.body);
    let by = |cause: &str| list.iter().find(|d| d["cause"] == cause).unwrap().clone();
    let d = by("active_false");
    assert_eq!(
        (d["user_id"].as_str(), d["sessions_revoked"].as_i64(), d["wipes_queued"].as_i64()),
        (Some(leaver_id.as_str()), Some(1), Some(1))
    );
    let at = |k: &str| d[k].as_i64().unwrap();
    assert!(at("received_at_ms") <= at("sessions_revoked_at_ms"), "{d}");
    assert!(at("sessions_revoked_at_ms") <= at("wipes_queued_at_ms"), "{d}");
    assert!(at("wipes_queued_at_ms") <= at("connections_closed_at_ms"), "{d}");
    assert_eq!(d["wipes"][0]["device_id"], sleaver.device_id.as_str());
    assert!(d["wipes"][0]["acknowledged_at"].is_string(), "{d}");
    assert_eq!(by("delete")["user_id"], nurse.id.to_string());
    h.get("/api/v1/admin/scim/deprovisions?limit=0", &sofficer.access).await.expect_problem(400, "invalid_parameter");

    // Audit: every change recorded, refusals too, never a name.
    assert_eq!(audit(&h, "scim.deprovision").await.len(), 2);
    let users = audit(&h, "scim.user").await;
    assert!(users.iter().filter(|e| e.outcome == "success").count() >= 7);
    assert!(users.iter().any(|e| e.outcome == "failure" && e.detail.contains("uniqueness")));
    assert_eq!(audit(&h, "scim.token").await.len(), 1);
    for e in h.store.audit_events(0, 100_000).await.unwrap() {
        for personal in ["Canary", "joy.ng", "Dr Joy", "ext-9"] {
            assert!(!e.detail.contains(personal), "{} holds personal data: {}", e.action, e.detail);
        }
    }
    assert!(!logs().contains("Canary-Sc1m"), "the logs hold personal data");

    // A revoked token stops at once.
    let tid = issued.body["id"].as_str().unwrap();
    h.call(Method::DELETE, &format!("/api/v1/admin/scim/tokens/{tid}"), Some(&sadmin.access), None).await.expect(204);
    h.call(Method::DELETE, &format!("/api/v1/admin/scim/tokens/{tid}"), Some(&sadmin.access), None)
        .await
        .expect_problem(409, "invalid_state");
    scim_error(&scim(&h, Method::GET, "/Users", &token, None, None).await, 401, None);
}

/// SCIM cannot disable, delete or demote the organisation's last active admin: each attempt
/// gets a 400 `invalidValue` SCIM error, is audited as a failure, and changes nothing (the
/// admin stays active and signed in, no deprovisioning is recorded). With a second admin, the
/// first can go; the second is then the last.
async fn scim_keeps_the_last_admin(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let o = h.org("acme", vec![]).await;
    let admin = h.account(&o, "admin@acme", Role::Admin).await;
    let sadmin = h.login_stepped_up(&admin).await;
    let token = h.post("/api/v1/admin/scim/tokens", &sadmin.access, json!({"label": "idp"})).await.expect(201).body["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let patch = |ops: Value| json!({"schemas": [PATCH], "Operations": ops});
    let path = format!("/Users/{}", admin.id);
    // (request, scimType, what the refusal says): a role change is refused before the last-admin
    // rule, since SCIM never changes an admin's role.
    let attempts = [
        (Method::PATCH, Some(patch(json!([{"op": "replace", "path": "active", "value": false}]))), "invalidValue", "last active admin"),
        (
            Method::PATCH,
            Some(patch(json!([{"op": "replace", "path": "roles", "value": [{"value": "nurse", "primary": true}]}]))),
            "mutability",
            "granted and removed in Ward",
        ),
        (
            Method::PUT,
            Some(json!({"schemas": [USER], "userName": "admin@acme", "active": false, "roles": [{"value": "admin"}]})),
            "invalidValue",
            "last active admin",
        ),
        (
            Method::PUT,
            Some(json!({"schemas": [USER], "userName": "admin@acme", "roles": [{"value": "compliance_officer"}]})),
            "mutability",
            "granted and removed in Ward",
        ),
        (Method::DELETE, None, "invalidValue", "last active admin"),
    ];
    for (method, body, scim_type, why) in attempts {
        let r = scim(&h, method.clone(), &path, &token, body, None).await;
        scim_error(&r, 400, Some(scim_type));
        assert!(r.body["detail"].as_str().unwrap().contains(why), "{method}: {}", r.body);
    }
    let r = scim(&h, Method::GET, &path, &token, None, None).await;
    assert_eq!((r.status.as_u16(), r.body["active"].as_bool(), r.body["roles"][0]["value"].as_str()), (200, Some(true), Some("admin")));
    h.call(Method::GET, "/api/v1/me", Some(&sadmin.access), None).await.expect(200);
    let d = h.call(Method::GET, "/api/v1/admin/scim/deprovisions", Some(&sadmin.access), None).await.expect(200);
    assert_eq!(d.body, json!([]), "nothing was deprovisioned");
    let refused = audit(&h, "scim.user").await.into_iter().filter(|e| e.outcome == "failure").count();
    assert_eq!(refused, 5, "each refusal is audited");

    // A second admin (made in Ward: SCIM grants no admin role): now the first may be
    // deactivated, and the second is the last.
    let second = h.account(&o, "second@acme", Role::Admin).await;
    let off = patch(json!([{"op": "replace", "path": "active", "value": false}]));
    let r = scim(&h, Method::PATCH, &path, &token, Some(off.clone()), None).await;
    assert_eq!((r.status.as_u16(), r.body["active"].as_bool()), (200, Some(false)), "{}", r.body);
    let second_path = format!("/Users/{}", second.id);
    scim_error(&scim(&h, Method::DELETE, &second_path, &token, None, None).await, 400, Some("invalidValue"));
    scim_error(&scim(&h, Method::PATCH, &second_path, &token, Some(off), None).await, 400, Some("invalidValue"));
    // A disabled admin is no longer an active one: deleting the first is allowed.
    assert_eq!(scim(&h, Method::DELETE, &path, &token, None, None).await.status.as_u16(), 204);
}

/// scim2-tester (PyPI), an independent conformance checker, against a live server: no check may
/// report a violation of a MUST (ERROR or CRITICAL). Needs WARD_TEST_SCIM_TESTER (the Python of
/// the venv scripts/test makes); without it the test prints SKIPPED, except with CI=true.
async fn scim2_tester_finds_no_violation(backend: Backend) {
    let Ok(python) = std::env::var("WARD_TEST_SCIM_TESTER") else {
        assert!(
            !ward_store::testing::pg_required(),
            "WARD_TEST_SCIM_TESTER is required in CI (run scripts/test, which installs scim2-tester)"
        );
        eprintln!("SKIPPED: the SCIM conformance check needs WARD_TEST_SCIM_TESTER (scripts/test sets it up)");
        return;
    };
    let Some(h) = Harness::start(backend).await else { return };
    let o = h.org("acme", vec![]).await;
    let admin = h.account(&o, "admin@acme", Role::Admin).await;
    let sadmin = h.login_stepped_up(&admin).await;
    let token = h.post("/api/v1/admin/scim/tokens", &sadmin.access, json!({"label": "scim2-tester"})).await.expect(201).body["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let cert = h.running.as_ref().unwrap().cert_path.clone();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/scim_conformance.py");
    let url = format!("{}/scim/v2", h.url);
    // Off the runtime's threads: the server under test runs on them.
    let out =
        tokio::task::spawn_blocking(move || std::process::Command::new(&python).arg(script).arg(&url).arg(&token).arg(&cert).output())
            .await
            .unwrap()
            .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    eprintln!("{text}");
    assert!(out.status.success(), "scim2-tester found violations:\n{text}");
    assert!(text.contains(" checks, 0 failed"), "{text}");
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}
