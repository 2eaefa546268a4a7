//! `ward roster reconcile`: the report as a table, remediation that disables the accounts of
//! people who left or are not on the roster (and does nothing the second time), and a bad
//! roster refused with one line naming the line and column, never a value.

mod support;

use support::{fails, ok, ward};

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

    let out = ok(ward(p, &["roster", "reconcile", "--org", "acme", "--file", file]));
    assert!(out.contains("roster: 3 people (1 terminated); workforce accounts: 3"), "{out}");
    assert!(out.contains("needing action (left or not on the roster, something live): 2"), "{out}");
    let line = |who: &str| out.lines().find(|l| l.trim_start().starts_with(who)).unwrap_or_else(|| panic!("no {who} in {out}")).to_owned();
    assert!(line("gone@acme.test").contains("terminated") && line("gone@acme.test").contains("active"), "{out}");
    assert!(line("stranger@acme.test").contains("not on roster"), "{out}");
    assert!(out.contains("active roster people with no account: 1") && out.contains("new@acme.test"), "{out}");
    assert!(!out.contains("Doe, Jane"), "other columns are ignored: {out}");
    let users = ok(ward(p, &["user", "list", "--org", "acme"]));
    assert!(!users.contains("disabled"), "reconciling alone changes nothing: {users}");

    let out = ok(ward(p, &["roster", "reconcile", "--org", "acme", "--file", file, "--remediate"]));
    assert!(out.contains("remediated gone@acme.test: disabled; 0 session(s) revoked; 0 wipe(s) queued"), "{out}");
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
