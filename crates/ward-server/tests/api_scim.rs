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

on_both_backends!(
    scim_provisioning,
    scim_keeps_the_last_admin,
    scim2_tester_finds_no_violation,
    scim_groups_grant_roles_and_taking_them_away_drops_to_staff,
    scim_writes_are_conditional_in_their_transaction,
    scim_tokens_record_use_and_expire,
    scim_last_modified_and_tombstones
);

const WAIT: Duration = Duration::from_secs(10);
const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const WARD_GROUP: &str = "urn:ward:params:scim:schemas:extension:2.0:Group";
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
        ]))),
        None,
    )
    .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.body);
    assert_eq!((r.body["displayName"].as_str(), r.body.get("externalId")), (Some("Dr Joy"), None));
    // An account holds one role: `add` cannot give it a second (refused, not ignored); adding
    // the role it has changes nothing.
    let add = patch(json!([{"op": "add", "path": "roles", "value": [{"value": "nurse", "primary": true}]}]));
    let r = scim(&h, Method::PATCH, &path, &token, Some(add), None).await;
    scim_error(&r, 400, Some("invalidValue"));
    assert!(r.body["detail"].as_str().unwrap().contains("exactly one role"), "{}", r.body);
    let same = patch(json!([{"op": "add", "path": "roles", "value": [{"value": "clinician"}]}]));
    let r = scim(&h, Method::PATCH, &path, &token, Some(same), None).await;
    assert_eq!((r.status.as_u16(), r.body["roles"][0]["value"].as_str()), (200, Some("clinician")), "{}", r.body);
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
        (json!([{"op": "replace", "path": "emails[type eq \"work\"].value", "value": "x"}]), 400, "noTarget"),
        (json!([{"op": "replace", "path": "emails[type zz \"work\"].value", "value": "x"}]), 400, "invalidPath"),
        (json!([{"op": "add", "path": "groups", "value": [{"value": "x"}]}]), 400, "mutability"),
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

/// An organisation, its stepped-up admin session and a SCIM token.
async fn scim_setup(h: &Harness) -> (ward_store::Org, common::Account, common::Session, String) {
    let o = h.org("acme", vec![]).await;
    let admin = h.account(&o, "admin@acme", Role::Admin).await;
    let sadmin = h.login_stepped_up(&admin).await;
    let token = h.post("/api/v1/admin/scim/tokens", &sadmin.access, json!({"label": "idp"})).await.expect(201).body["token"]
        .as_str()
        .unwrap()
        .to_owned();
    (o, admin, sadmin, token)
}

async fn scim_user(h: &Harness, token: &str, login: &str, role: &str) -> String {
    let body = json!({"schemas": [USER], "userName": login, "displayName": CANARY, "roles": [{"value": role}]});
    let r = scim(h, Method::POST, "/Users", token, Some(body), None).await;
    assert_eq!(r.status.as_u16(), 201, "{}", r.body);
    r.body["id"].as_str().unwrap().to_owned()
}

async fn role_of(h: &Harness, o: &ward_store::Org, id: &str) -> Role {
    h.store.user(o.id, ward_domain::ids::UserId(id.parse().unwrap())).await.unwrap().role
}

fn members(r: &Reply) -> Vec<String> {
    let mut v: Vec<String> =
        r.body["members"].as_array().map(|m| m.iter().map(|m| m["value"].as_str().unwrap().to_owned()).collect()).unwrap_or_default();
    v.sort();
    v
}

/// SCIM Groups: CRUD, filters, pagination, PATCH by value selection, ETags, discovery; a role
/// group's membership grants its role, leaving it (removed, replaced, the group deleted) drops
/// the account to staff, admins cannot join one, an account is in one role group at most;
/// every change audited without names; the admin API lists groups read-only.
async fn scim_groups_grant_roles_and_taking_them_away_drops_to_staff(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let (o, admin, sadmin, token) = scim_setup(&h).await;
    let nurse_account = h.account(&o, "nurse@acme", Role::Nurse).await;
    let a = scim_user(&h, &token, "a@acme", "staff").await;
    let b = scim_user(&h, &token, "b@acme", "staff").await;
    let c = scim_user(&h, &token, "c@acme", "staff").await;

    // Discovery.
    let types = scim(&h, Method::GET, "/ResourceTypes", &token, None, None).await;
    let names: Vec<&str> = types.body["Resources"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(names, ["User", "Group"]);
    assert_eq!(scim(&h, Method::GET, "/ResourceTypes/Group", &token, None, None).await.body["endpoint"], "/Groups");
    assert_eq!(scim(&h, Method::GET, &format!("/Schemas/{GROUP}"), &token, None, None).await.body["id"], GROUP);
    assert_eq!(scim(&h, Method::GET, &format!("/Schemas/{WARD_GROUP}"), &token, None, None).await.status.as_u16(), 200);

    // A plain group: membership changes no role.
    let everyone = json!({"schemas": [GROUP], "displayName": "Everyone", "externalId": "g-1",
        "members": [{"value": a}, {"value": b}]});
    let r = scim(&h, Method::POST, "/Groups", &token, Some(everyone.clone()), None).await;
    assert_eq!(r.status.as_u16(), 201, "{}", r.body);
    let everyone_id = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(r.headers["location"], format!("/scim/v2/Groups/{everyone_id}"));
    assert_eq!(r.headers["etag"].to_str().unwrap(), r.body["meta"]["version"].as_str().unwrap());
    assert_eq!(members(&r), {
        let mut v = vec![a.clone(), b.clone()];
        v.sort();
        v
    });
    assert_eq!(role_of(&h, &o, &a).await, Role::Staff);
    scim_error(&scim(&h, Method::POST, "/Groups", &token, Some(everyone), None).await, 409, Some("uniqueness"));
    let ua = scim(&h, Method::GET, &format!("/Users/{a}"), &token, None, None).await;
    assert_eq!(ua.body["groups"][0]["value"], everyone_id.as_str(), "{}", ua.body);
    assert_eq!(ua.body["groups"][0]["display"], "Everyone");

    // A role group: joining grants its role.
    let clin = json!({"schemas": [GROUP, WARD_GROUP], "displayName": "Clinicians", WARD_GROUP: {"role": "clinician"},
        "members": [{"value": a}]});
    let r = scim(&h, Method::POST, "/Groups", &token, Some(clin), None).await;
    assert_eq!(r.status.as_u16(), 201, "{}", r.body);
    let clin_id = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(r.body[WARD_GROUP]["role"], "clinician");
    assert_eq!(role_of(&h, &o, &a).await, Role::Clinician);
    let clin_path = format!("/Groups/{clin_id}");

    // Refused, changing nothing: privileged bindings and members, a second role group,
    // unknown and nested members, a user's own `roles` while a role group decides it.
    for (body, scim_type) in [
        (json!({"schemas": [GROUP, WARD_GROUP], "displayName": "Admins", WARD_GROUP: {"role": "admin"}}), "mutability"),
        (json!({"schemas": [GROUP, WARD_GROUP], "displayName": "X", WARD_GROUP: {"role": "patient"}}), "mutability"),
        (json!({"schemas": [GROUP, WARD_GROUP], "displayName": "Y", WARD_GROUP: {"role": "pilot"}}), "invalidValue"),
        (json!({"schemas": [GROUP], "displayName": "Z", "members": [{"value": "not-an-id"}]}), "invalidValue"),
        (
            json!({"schemas": [GROUP], "displayName": "Z", "members": [{"value": ward_domain::ids::UserId::new().to_string()}]}),
            "invalidValue",
        ),
        (json!({"schemas": [GROUP], "displayName": "Z", "members": [{"value": everyone_id, "type": "Group"}]}), "invalidValue"),
        (json!({"schemas": [GROUP]}), "invalidValue"),
        (json!({"schemas": [USER], "displayName": "Z"}), "invalidSyntax"),
    ] {
        scim_error(&scim(&h, Method::POST, "/Groups", &token, Some(body), None).await, 400, Some(scim_type));
    }
    let add = |id: &str| json!({"schemas": [PATCH], "Operations": [{"op": "add", "path": "members", "value": [{"value": id}]}]});
    let r = scim(&h, Method::PATCH, &clin_path, &token, Some(add(&admin.id.to_string())), None).await;
    scim_error(&r, 400, Some("mutability"));
    assert_eq!(role_of(&h, &o, &admin.id.to_string()).await, Role::Admin);
    let nurses = json!({"schemas": [GROUP, WARD_GROUP], "displayName": "Nurses", WARD_GROUP: {"role": "nurse"},
        "members": [{"value": c}]});
    let r = scim(&h, Method::POST, "/Groups", &token, Some(nurses), None).await;
    let nurses_id = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(role_of(&h, &o, &c).await, Role::Nurse);
    let r = scim(&h, Method::PATCH, &format!("/Groups/{nurses_id}"), &token, Some(add(&a)), None).await;
    scim_error(&r, 400, Some("invalidValue"));
    assert!(r.body["detail"].as_str().unwrap().contains("another role group"), "{}", r.body);
    assert_eq!(role_of(&h, &o, &a).await, Role::Clinician);
    let own = json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "roles", "value": [{"value": "nurse"}]}]});
    let r = scim(&h, Method::PATCH, &format!("/Users/{a}"), &token, Some(own), None).await;
    scim_error(&r, 400, Some("invalidValue"));
    assert!(r.body["detail"].as_str().unwrap().contains("role group"), "{}", r.body);

    // PATCH: add a member, remove one by value selection (leaving drops to staff).
    let r = scim(&h, Method::PATCH, &clin_path, &token, Some(add(&b)), None).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.body);
    assert_eq!(role_of(&h, &o, &b).await, Role::Clinician);
    let remove = json!({"schemas": [PATCH], "Operations": [{"op": "remove", "path": format!("members[value eq \"{a}\"]")}]});
    let r = scim(&h, Method::PATCH, &clin_path, &token, Some(remove), None).await;
    assert_eq!((r.status.as_u16(), members(&r)), (200, vec![b.clone()]), "{}", r.body);
    assert_eq!(role_of(&h, &o, &a).await, Role::Staff, "leaving a role group leaves no more access than before");
    let ua = scim(&h, Method::GET, &format!("/Users/{a}"), &token, None, None).await;
    assert_eq!(ua.body["groups"].as_array().unwrap().len(), 1, "{}", ua.body);

    // ETags: stale If-Match 412 (nothing changes), If-None-Match 304, the current one works.
    let cur = scim(&h, Method::GET, &clin_path, &token, None, None).await;
    let tag = cur.headers["etag"].to_str().unwrap().to_owned();
    scim_error(&scim(&h, Method::PATCH, &clin_path, &token, Some(add(&a)), Some("W/\"stale\"")).await, 412, None);
    assert_eq!(role_of(&h, &o, &a).await, Role::Staff);
    let cached =
        h.http.get(format!("{}/scim/v2{clin_path}", h.url)).bearer_auth(&token).header("if-none-match", &tag).send().await.unwrap();
    assert_eq!(cached.status().as_u16(), 304);

    // A changed binding: the members follow it (b, a clinician, becomes a nurse); removing it
    // drops them to staff; a binding may come back.
    let bind =
        |role: Value| json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": format!("{WARD_GROUP}:role"), "value": role}]});
    let r = scim(&h, Method::PATCH, &clin_path, &token, Some(bind(json!("nurse"))), Some(&tag)).await;
    assert_eq!((r.status.as_u16(), r.body[WARD_GROUP]["role"].as_str()), (200, Some("nurse")), "{}", r.body);
    assert_eq!(role_of(&h, &o, &b).await, Role::Nurse);
    let unbind = json!({"schemas": [PATCH], "Operations": [{"op": "remove", "path": format!("{WARD_GROUP}:role")}]});
    let r = scim(&h, Method::PATCH, &clin_path, &token, Some(unbind), None).await;
    assert_eq!((r.status.as_u16(), r.body.get(WARD_GROUP)), (200, None), "{}", r.body);
    assert_eq!(role_of(&h, &o, &b).await, Role::Staff, "an unbound group grants nothing");
    let r = scim(&h, Method::PATCH, &clin_path, &token, Some(bind(json!("clinician"))), None).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.body);
    assert_eq!(role_of(&h, &o, &b).await, Role::Clinician);
    let drop_all = json!({"schemas": [PATCH], "Operations": [{"op": "remove", "path": WARD_GROUP}]});
    assert_eq!(scim(&h, Method::PATCH, &clin_path, &token, Some(drop_all), None).await.status.as_u16(), 200);
    assert_eq!(role_of(&h, &o, &b).await, Role::Staff, "removing the whole extension unbinds too");
    let r = scim(&h, Method::PATCH, &clin_path, &token, Some(bind(json!("clinician"))), None).await;
    assert_eq!(role_of(&h, &o, &b).await, Role::Clinician);
    scim_error(&scim(&h, Method::PATCH, &clin_path, &token, Some(bind(json!("admin"))), None).await, 400, Some("mutability"));
    let tag = r.headers["etag"].to_str().unwrap().to_owned();
    // PUT: replacing the members drops those left out; leaving the extension out keeps it.
    let put = json!({"schemas": [GROUP], "displayName": "Doctors", "members": []});
    let r = scim(&h, Method::PUT, &clin_path, &token, Some(put), Some(&tag)).await;
    assert_eq!(
        (r.status.as_u16(), r.body["displayName"].as_str(), r.body[WARD_GROUP]["role"].as_str()),
        (200, Some("Doctors"), Some("clinician")),
        "{}",
        r.body
    );
    assert!(r.body.get("members").is_none(), "{}", r.body);
    assert_eq!(role_of(&h, &o, &b).await, Role::Staff);
    assert_ne!(r.body["meta"]["lastModified"], r.body["meta"]["created"]);

    // List, filter, pagination, the root search.
    let q = |f: &str| format!("/Groups?filter={}", urlencode(f));
    let (by_member, by_role) = (format!("members.value eq \"{a}\""), format!("{WARD_GROUP}:role eq \"nurse\""));
    for (filter, want) in [
        ("displayName eq \"everyone\"", vec!["Everyone"]),
        (by_member.as_str(), vec!["Everyone"]),
        ("externalId eq \"g-1\"", vec!["Everyone"]),
        (by_role.as_str(), vec!["Nurses"]),
        ("displayName sw \"D\" or displayName sw \"N\"", vec!["Doctors", "Nurses"]),
    ] {
        let r = scim(&h, Method::GET, &q(filter), &token, None, None).await;
        let got: Vec<&str> = r.body["Resources"].as_array().unwrap().iter().map(|g| g["displayName"].as_str().unwrap()).collect();
        assert_eq!(got, want, "{filter}");
    }
    let page = scim(&h, Method::GET, "/Groups?startIndex=2&count=1&attributes=displayName", &token, None, None).await;
    assert_eq!((page.body["totalResults"].as_u64(), page.body["itemsPerPage"].as_u64()), (Some(3), Some(1)));
    assert_eq!(page.body["Resources"][0]["displayName"], "Everyone");
    assert!(page.body["Resources"][0].get("members").is_none());
    let search = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
        "filter": "displayName eq \"Nurses\" or userName eq \"b@acme\""});
    let r = scim(&h, Method::POST, "/.search", &token, Some(search), None).await;
    assert_eq!(r.body["totalResults"], 2, "{}", r.body);

    // The admin API: read-only, admins only.
    let listed = h.get("/api/v1/admin/scim/groups", &sadmin.access).await.expect(200);
    let nurses_row = listed.body.as_array().unwrap().iter().find(|g| g["display_name"] == "Nurses").unwrap().clone();
    assert_eq!((nurses_row["role"].as_str(), nurses_row["members"].as_u64()), (Some("nurse"), Some(1)));
    let snurse = h.login(&nurse_account).await;
    h.get("/api/v1/admin/scim/groups", &snurse.access).await.expect_problem(403, "forbidden");

    // DELETE: its members leave it.
    let r = scim(&h, Method::DELETE, &format!("/Groups/{nurses_id}"), &token, None, None).await;
    assert_eq!(r.status.as_u16(), 204, "{}", r.body);
    assert_eq!(role_of(&h, &o, &c).await, Role::Staff);
    scim_error(&scim(&h, Method::GET, &format!("/Groups/{nurses_id}"), &token, None, None).await, 404, None);
    // A user deleted through SCIM leaves its groups.
    assert_eq!(scim(&h, Method::DELETE, &format!("/Users/{b}"), &token, None, None).await.status.as_u16(), 204);
    let r = scim(&h, Method::GET, &format!("/Groups/{everyone_id}"), &token, None, None).await;
    assert_eq!(members(&r), vec![a.clone()]);

    // Audit: each change, refusals too; role changes say so; never a name.
    let groups = audit(&h, "scim.group").await;
    assert!(groups.iter().filter(|e| e.outcome == "success").count() >= 6, "{}", groups.len());
    assert!(groups.iter().any(|e| e.outcome == "failure"));
    let roles = audit(&h, "admin.user_role").await;
    assert!(roles.iter().any(|e| e.detail.contains("scim_group")), "{roles:?}");
    for e in h.store.audit_events(0, 100_000).await.unwrap() {
        for personal in ["Canary", "Clinicians", "Everyone", "a@acme"] {
            assert!(!e.detail.contains(personal), "{} holds a name: {}", e.action, e.detail);
        }
    }
}

/// If-Match and the write it guards are one transaction: of concurrent writes sent with the
/// same version, exactly one succeeds and the others get 412; and the store refuses a write
/// computed from a version an admin changed meanwhile.
async fn scim_writes_are_conditional_in_their_transaction(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let (o, admin, _, token) = scim_setup(&h).await;
    let id = scim_user(&h, &token, "race@acme", "staff").await;
    let path = format!("/Users/{id}");
    let tag = scim(&h, Method::GET, &path, &token, None, None).await.headers["etag"].to_str().unwrap().to_owned();
    let mut tasks = Vec::new();
    for i in 0..6 {
        let (url, token, tag, http) = (format!("{}/scim/v2{path}", h.url), token.clone(), tag.clone(), h.http.clone());
        tasks.push(tokio::spawn(async move {
            let body =
                json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "displayName", "value": format!("Writer {i}")}]});
            let res = http
                .patch(url)
                .bearer_auth(token)
                .header("content-type", "application/scim+json")
                .header("if-match", tag)
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            res.status().as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 412, 412, 412, 412, 412], "one write per version");

    // An admin's change between the read and the write: the write is refused, not lost.
    let uid = ward_domain::ids::UserId(id.parse().unwrap());
    let client = match h.store.scim_client(ward_server::secrets::token_hash(&token), ward_store::now_ms()).await.unwrap() {
        ward_store::ScimTokenCheck::Live(c) => c,
        other => panic!("{other:?}"),
    };
    let read = h.store.scim_user(o.id, uid).await.unwrap();
    h.store.set_user_role(o.id, uid, Role::Nurse, admin.id, Harness::meta()).await.unwrap();
    let fields = ward_store::ScimUserFields {
        login: "race@acme".into(),
        display_name: "Late".into(),
        role: Role::Staff,
        external_id: None,
        active: true,
    };
    let w = ward_store::ScimUserWrite { id: uid, fields, op: "replace", received_at: ward_store::now_ms(), expected: read };
    let e = h.store.scim_update_user(client, w, Harness::meta()).await.unwrap_err();
    assert!(matches!(e, ward_store::StoreError::Changed), "{e:?}");
    assert_eq!(h.store.user(o.id, uid).await.unwrap().role, Role::Nurse, "the admin's change stands");
    // Without If-Match, a PATCH is computed again from the new version.
    let r = scim(
        &h,
        Method::PATCH,
        &path,
        &token,
        Some(json!({"schemas": [PATCH],
        "Operations": [{"op": "replace", "path": "displayName", "value": "After"}]})),
        None,
    )
    .await;
    assert_eq!((r.status.as_u16(), r.body["roles"][0]["value"].as_str()), (200, Some("nurse")), "{}", r.body);
}

/// A SCIM token records its last use (at most once a minute) and may be given an expiry at
/// issue; an expired token gets a 401 SCIM error saying so.
async fn scim_tokens_record_use_and_expire(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let (_, _, sadmin, token) = scim_setup(&h).await;
    let listed = h.get("/api/v1/admin/scim/tokens", &sadmin.access).await.expect(200);
    assert!(listed.body[0]["last_used_at"].is_null() && listed.body[0]["expires_at"].is_null(), "{}", listed.body);
    assert_eq!(scim(&h, Method::GET, "/Users", &token, None, None).await.status.as_u16(), 200);
    let listed = h.get("/api/v1/admin/scim/tokens", &sadmin.access).await.expect(200);
    let first = listed.body[0]["last_used_at"].as_str().expect("recorded").to_owned();
    let id: uuid::Uuid = listed.body[0]["id"].as_str().unwrap().parse().unwrap();
    h.store.test_age_scim_token(id, 120_000).await;
    let aged = h.get("/api/v1/admin/scim/tokens", &sadmin.access).await.expect(200).body[0]["last_used_at"].as_str().unwrap().to_owned();
    assert_ne!(aged, first);
    scim(&h, Method::GET, "/Users", &token, None, None).await;
    let again = h.get("/api/v1/admin/scim/tokens", &sadmin.access).await.expect(200).body[0]["last_used_at"].as_str().unwrap().to_owned();
    assert_ne!(again, aged, "a use after a minute is recorded");

    // Expiry.
    h.post("/api/v1/admin/scim/tokens", &sadmin.access, json!({"label": "x", "expires_in_days": 0}))
        .await
        .expect_problem(422, "validation_failed");
    let issued = h.post("/api/v1/admin/scim/tokens", &sadmin.access, json!({"label": "short", "expires_in_days": 1})).await.expect(201);
    assert!(issued.body["expires_at"].is_string(), "{}", issued.body);
    let short = issued.body["token"].as_str().unwrap().to_owned();
    assert_eq!(scim(&h, Method::GET, "/Users", &short, None, None).await.status.as_u16(), 200);
    h.store.test_age_scim_token(issued.body["id"].as_str().unwrap().parse().unwrap(), 2 * 86_400_000).await;
    let r = scim(&h, Method::GET, "/Users", &short, None, None).await;
    scim_error(&r, 401, None);
    assert!(r.body["detail"].as_str().unwrap().contains("expired"), "{}", r.body);
    let listed = h.get("/api/v1/admin/scim/tokens", &sadmin.access).await.expect(200);
    let row = listed.body.as_array().unwrap().iter().find(|t| t["label"] == "short").unwrap().clone();
    assert_eq!(row["expired"], true);
    assert_eq!(scim(&h, Method::GET, "/Users", &token, None, None).await.status.as_u16(), 200, "other tokens still work");
}

/// `meta.lastModified` follows real changes (SCIM or an admin), not the creation time; a user
/// deleted through SCIM keeps its login and externalId (a tombstone), and reusing either is a
/// 409 that says so.
async fn scim_last_modified_and_tombstones(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let (o, admin, _, token) = scim_setup(&h).await;
    let body = json!({"schemas": [USER], "userName": "gone@acme", "externalId": "ext-gone"});
    let created = scim(&h, Method::POST, "/Users", &token, Some(body.clone()), None).await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    let path = format!("/Users/{id}");
    assert_eq!(created.body["meta"]["lastModified"], created.body["meta"]["created"]);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let r = scim(
        &h,
        Method::PATCH,
        &path,
        &token,
        Some(json!({"schemas": [PATCH],
        "Operations": [{"op": "replace", "path": "displayName", "value": "Changed"}]})),
        None,
    )
    .await;
    let patched = r.body["meta"]["lastModified"].as_str().unwrap().to_owned();
    assert_ne!(r.body["meta"]["lastModified"], created.body["meta"]["created"], "{}", r.body);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let uid = ward_domain::ids::UserId(id.parse().unwrap());
    h.store.set_user_role(o.id, uid, Role::Nurse, admin.id, Harness::meta()).await.unwrap();
    let r = scim(&h, Method::GET, &path, &token, None, None).await;
    assert_ne!(r.body["meta"]["lastModified"].as_str().unwrap(), patched, "an admin's change counts too");

    assert_eq!(scim(&h, Method::DELETE, &path, &token, None, None).await.status.as_u16(), 204);
    let r = scim(&h, Method::POST, "/Users", &token, Some(body), None).await;
    scim_error(&r, 409, Some("uniqueness"));
    assert!(r.body["detail"].as_str().unwrap().contains("deleted through SCIM"), "{}", r.body);
    let r =
        scim(&h, Method::POST, "/Users", &token, Some(json!({"schemas": [USER], "userName": "new@acme", "externalId": "ext-gone"})), None)
            .await;
    scim_error(&r, 409, Some("uniqueness"));
    assert!(r.body["detail"].as_str().unwrap().contains("externalId (held by an account deleted through SCIM"), "{}", r.body);
}
