//! `ward roster reconcile`: the report as a table, remediation that disables the accounts of
//! people who left or are not on the roster (and does nothing the second time), and a bad
//! roster refused with one line naming the line and column, never a value.

mod support;

use std::path::Path;

use support::{fails, ok, open_store, ward};
use ward_device::DeviceRegistration;
use ward_domain::policy::Actor;
use ward_store::{DeviceClaim, NewSession, RequestMeta, TokenHashes, now_ms};

/// Signs `login` in on a new phone and registers it, as the server would.
async fn signed_in_with_a_phone(data: &Path, login: &str) {
    let store = open_store(data).await;
    let u = store.credentials(login).await.unwrap().unwrap().user;
    let actor = Actor { user_id: u.id, org_id: u.org_id, role: u.role };
    let meta = || RequestMeta { source_ip: Some("127.0.0.1".into()), request_id: None };
    let new = NewSession {
        user_id: u.id,
        device: DeviceClaim { id: None, name: "phone".into(), platform: "ios".into() },
        tokens: TokenHashes { access: vec![7; 32], access_expires_at: now_ms() + 60_000, refresh: vec![8; 32] },
        expires_at: now_ms() + 3_600_000,
        restriction: None,
        mfa_verified: false,
    };
    let device = store.login(u.org_id, login.into(), new, meta()).await.unwrap().1;
    let reg = DeviceRegistration::from_json(
        r#"{"platform":"ios","model":"iPhone16,1","os_version":"18.1","app_version":"1.0.0","ownership":"corporate","supervised":true,"mdm_enrolled":true}"#,
    )
    .unwrap();
    store.register_device(actor, device, reg, vec![9; 32], meta()).await.unwrap();
}

#[test]
fn reconcile_reports_then_remediates_once() {
    let d = tempfile::tempdir().expect("temporary directory");
    let p = d.path();
    ok(ward(p, &["org", "create", "--slug", "acme", "--name", "Acme Clinic"]));
    for (login, role) in [("stays@acme.test", "nurse"), ("gone@acme.test", "clinician"), ("stranger@acme.test", "staff")] {
        ok(ward(p, &["user", "add", "--org", "acme", "--login", login, "--name", "Someone", "--role", role]));
    }
    let roster = p.join("roster.csv");
    std::fs::write(
        &roster,
        "Name,employee_id,login,status,termination_date\n\
         \"Doe, Jane\",E1,stays@acme.test,active,\n\
         \"Roe, Rick\",E2,gone@acme.test,terminated,2026-01-31\n\
         \"New, Nora\",E3,new@acme.test,active,\n",
    )
    .unwrap();
    let file = roster.to_str().unwrap();
    let data = p.join("data");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(signed_in_with_a_phone(&data, "gone@acme.test"));

    let out = ok(ward(p, &["roster", "reconcile", "--org", "acme", "--file", file]));
    assert!(out.contains("roster: 3 people (1 terminated); workforce accounts: 3"), "{out}");
    assert!(out.contains("needing action (left or not on the roster, something live): 2"), "{out}");
    let line = |who: &str| out.lines().find(|l| l.trim_start().starts_with(who)).unwrap_or_else(|| panic!("no {who} in {out}")).to_owned();
    let gone: Vec<String> = line("gone@acme.test").split_whitespace().map(str::to_owned).collect();
    assert_eq!(gone, ["gone@acme.test", "clinician", "terminated", "active", "1", "1", "0", "0"], "{out}");
    assert!(line("stranger@acme.test").contains("not on roster"), "{out}");
    assert!(out.contains("active roster people with no account: 1") && out.contains("new@acme.test"), "{out}");
    assert!(!out.contains("Doe, Jane"), "other columns are ignored: {out}");
    let users = ok(ward(p, &["user", "list", "--org", "acme"]));
    assert!(!users.contains("disabled"), "reconciling alone changes nothing: {users}");

    let out = ok(ward(p, &["roster", "reconcile", "--org", "acme", "--file", file, "--remediate"]));
    assert!(out.contains("remediated gone@acme.test: disabled; 1 session(s) revoked; 1 wipe(s) queued (0 to devices"), "{out}");
    assert!(out.contains("remediated stranger@acme.test: disabled"), "{out}");
    assert!(out.trim_end().ends_with("remediated 2 account(s)"), "{out}");
    let users = ok(ward(p, &["user", "list", "--org", "acme"]));
    let state = |who: &str| users.lines().find(|l| l.starts_with(who)).unwrap().split('\t').nth(2).unwrap().to_owned();
    assert_eq!(
        (state("gone@acme.test"), state("stranger@acme.test"), state("stays@acme.test")),
        ("disabled".into(), "disabled".into(), "active".into())
    );

    let out = ok(ward(p, &["roster", "reconcile", "--org", "acme", "--file", file, "--remediate"]));
    assert!(out.contains("needing action (left or not on the roster, something live): 0"), "{out}");
    assert!(out.contains("already disabled, nothing live (no action needed): 2"), "{out}");
    assert!(out.trim_end().ends_with("remediated 0 account(s)"), "{out}");

    // The phone's wipe waits for it; the command line has no account, so the nil id asked.
    let wipes = runtime.block_on(async {
        let store = open_store(&data).await;
        let org = store.org_by_slug("acme").await.unwrap();
        let events = store.audit_events(0, 10_000).await.unwrap();
        (store.wipes(org.id, None).await.unwrap(), events)
    });
    assert_eq!(wipes.0.len(), 1);
    assert_eq!(wipes.0[0].reason, "deprovisioned: roster");
    assert!(wipes.0[0].requested_by.0.is_nil() && wipes.0[0].acknowledged_at.is_none());
    let actions: Vec<&str> = wipes.1.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions.iter().filter(|a| **a == "roster.remediate").count(), 4, "two accounts, two runs");
    assert_eq!(actions.iter().filter(|a| **a == "roster.reconcile").count(), 1);
    assert!(wipes.1.iter().filter(|e| e.action.starts_with("roster.")).all(|e| !e.detail.contains("@acme")), "counts and ids, no logins");
}

#[test]
fn a_bad_roster_is_refused_with_its_line() {
    let d = tempfile::tempdir().expect("temporary directory");
    let p = d.path();
    ok(ward(p, &["org", "create", "--slug", "acme", "--name", "Acme Clinic"]));
    let roster = p.join("roster.csv");
    std::fs::write(&roster, "employee_id,login,status\nE1,a@acme.test,active\nE2,secret-person@acme.test,retired\n").unwrap();
    let file = roster.to_str().unwrap();
    let err = fails(ward(p, &["roster", "reconcile", "--org", "acme", "--file", file]), "line 3: status must be active or terminated");
    assert!(!err.contains("secret-person") && !err.contains("retired"), "{err}");
    fails(ward(p, &["roster", "reconcile", "--org", "nowhere", "--file", file]), "line 3");
    std::fs::write(&roster, "employee_id,login\nE1,a@acme.test\n").unwrap();
    fails(ward(p, &["roster", "reconcile", "--org", "acme", "--file", file]), "no status column");
    fails(ward(p, &["roster", "reconcile", "--org", "acme", "--file", "/nonexistent/roster.csv"]), "cannot read");
}
