//! `ward roster reconcile`: compares an HR roster CSV with the organisation's workforce
//! accounts and, with `--remediate`, disables the accounts of people who left or are not on
//! the roster, revokes their sessions and sends their devices a wipe (each step audited).

use std::path::Path;

use ward_domain::audit::{AuditAction, AuditEvent, DetailValue, Outcome};
use ward_domain::roster::{FlagReason, FlaggedAccount, Roster, RosterReport, reconcile};
use ward_server::Config;
use ward_server::provision::operator_meta;

/// What to reconcile, and whether to act.
pub(crate) struct ReconcileRequest<'a> {
    /// The organisation's short name.
    pub(crate) org: &'a str,
    /// The roster CSV.
    pub(crate) file: &'a Path,
    /// Disable, revoke and wipe the flagged accounts.
    pub(crate) remediate: bool,
    /// Remediate although more than half of the workforce would be disabled.
    pub(crate) allow_mass: bool,
}

fn reason(r: FlagReason) -> &'static str {
    match r {
        FlagReason::Terminated => "terminated",
        FlagReason::NotOnRoster => "not on roster",
    }
}

fn print_accounts(title: &str, list: &[FlaggedAccount]) {
    println!("{title}: {}", list.len());
    if list.is_empty() {
        return;
    }
    let width = list.iter().map(|f| f.login.len()).max().unwrap_or(5).max(5);
    println!(
        "  {:<width$}  {:<17}  {:<14}  {:<7}  {:>8}  {:>7}  {:>9}  {:>12}",
        "login", "role", "why", "account", "sessions", "devices", "no-wipe", "pending-wipe"
    );
    for f in list {
        println!(
            "  {:<width$}  {:<17}  {:<14}  {:<7}  {:>8}  {:>7}  {:>9}  {:>12}",
            f.login,
            f.role.as_str(),
            reason(f.reason),
            if f.active { "active" } else { "disabled" },
            f.live_sessions,
            f.live_devices.len(),
            f.no_wipe_channel.len(),
            f.pending_wipes
        );
    }
}

fn print_report(r: &RosterReport) {
    println!("roster: {} people ({} terminated); workforce accounts: {}", r.roster_people, r.roster_terminated, r.accounts);
    print_accounts("needing action (left or not on the roster, something live)", &r.needs_action);
    print_accounts("already disabled, nothing live (no action needed)", &r.already_disabled);
    println!("active roster people with no account: {}", r.missing_accounts.len());
    for m in &r.missing_accounts {
        println!("  line {:<6} {:<16} {}", m.line, m.employee_id, m.login);
    }
}

fn counts(ev: AuditEvent, r: &RosterReport, org: ward_domain::ids::OrgId) -> AuditEvent {
    let mut ev = ev
        .detail("roster_people", DetailValue::Int(r.roster_people as i64))
        .detail("roster_terminated", DetailValue::Int(r.roster_terminated as i64))
        .detail("accounts", DetailValue::Int(r.accounts as i64))
        .detail("needs_action", DetailValue::Int(r.needs_action.len() as i64))
        .detail("already_disabled", DetailValue::Int(r.already_disabled.len() as i64))
        .detail("missing_accounts", DetailValue::Int(r.missing_accounts.len() as i64));
    ev.org_id = Some(org);
    ev
}

/// Runs `ward roster reconcile`.
pub(crate) async fn reconcile_cmd(config: &Config, req: &ReconcileRequest<'_>) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(req.file).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", req.file.display()))?;
    let roster = Roster::parse_csv(&text).map_err(|e| anyhow::anyhow!("{}: {e}", req.file.display()))?;
    let store = ward_server::open_store(config).await?;
    let org = store.org_by_slug(req.org).await.map_err(|_| anyhow::anyhow!("no organisation {}", req.org))?;
    let accounts = store.roster_snapshot(org.id).await?;
    let today = ward_server::api::dto::ts(ward_store::now_ms()).get(..10).unwrap_or_default().to_owned();
    let report = reconcile(&roster, &accounts, &today, None);
    print_report(&report);
    if !req.remediate {
        store.record(counts(AuditEvent::new(AuditAction::RosterReconcile, Outcome::Success), &report, org.id), operator_meta()).await?;
        if !report.needs_action.is_empty() {
            println!("run again with --remediate to disable, revoke and wipe");
        }
        return Ok(());
    }
    if let Some(why) = report.remediation_refusal(req.allow_mass) {
        let ev = counts(AuditEvent::new(AuditAction::RosterRemediate, Outcome::Failure), &report, org.id)
            .detail("reason", DetailValue::Code("mass_remediation_refused"));
        store.record(ev, operator_meta()).await?;
        anyhow::bail!("{why} (--allow-mass)");
    }
    let bar = crate::progress::entries("remediating", report.needs_action.len() as u64);
    let mut done = 0;
    for f in &report.needs_action {
        let step = store.remediate_roster_account(org.id, f.user_id, f.reason, None, operator_meta()).await?;
        bar.inc(1);
        if !step.changed() {
            continue;
        }
        done += 1;
        bar.suspend(|| {
            println!(
                "remediated {}: {}; {} session(s) revoked; {} wipe(s) queued ({} to devices that never registered)",
                f.login,
                if step.disabled { "disabled" } else { "was already disabled" },
                step.revoked_sessions.len(),
                step.wipes_queued.len(),
                step.no_wipe_channel.len()
            );
        });
    }
    bar.finish_and_clear();
    let ev = counts(AuditEvent::new(AuditAction::RosterRemediate, Outcome::Success), &report, org.id)
        .detail("remediated", DetailValue::Int(done));
    store.record(ev, operator_meta()).await?;
    println!("remediated {done} account(s)");
    Ok(())
}
