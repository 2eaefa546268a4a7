//! Deprovisioning on both backends: disabling a user queues a wipe to each of their devices in
//! the same transaction; a device that never registered gets a closed `no_wipe_channel` wipe;
//! the roster snapshot and remediation (disable, revoke, wipe) are audited and idempotent.

use ward_domain::ids::DeviceId;
use ward_domain::role::Role;
use ward_domain::roster::{FlagReason, Roster, reconcile};
use ward_store::testing::{TestDb, meta, org, registered_device, sign_in, user};
use ward_store::{Backend, NO_WIPE_CHANNEL, WipeSource, now_ms, on_both_backends};

on_both_backends!(
    disabling_a_user_queues_wipes_to_their_devices,
    a_wipe_of_an_unregistered_device_is_closed_not_overdue,
    roster_remediation_disables_revokes_and_wipes_once,
);

async fn disabling_a_user_queues_wipes_to_their_devices(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let o = org(s, "acme").await;
    let admin = user(s, &o, "admin@acme", Role::Admin).await;
    let a = user(s, &o, "a@acme", Role::Clinician).await;
    let phone = registered_device(s, a, "a@acme", 1).await;
    let laptop = sign_in(s, a, "a@acme", 2).await.1;
    let revoked = s.set_user_disabled(o.id, a.user_id, true, Some(admin.user_id), meta()).await.unwrap();
    assert_eq!(revoked.len(), 2);
    let wipes = s.wipes(o.id, None).await.unwrap();
    assert_eq!(wipes.len(), 2);
    assert!(wipes.iter().all(|w| w.source == WipeSource::Deprovisioned && w.reason == "deprovisioned" && w.user_id == a.user_id));
    let by = |d: DeviceId| wipes.iter().find(|w| w.device_id == d).unwrap();
    assert_eq!(by(phone).closed_reason, None);
    assert_eq!(by(laptop).closed_reason.as_deref(), Some(NO_WIPE_CHANNEL));
    assert!(s.device(o.id, phone).await.unwrap().revoked_at.is_some());
    // The phone fetches its command with its secret.
    assert_eq!(s.fetch_wipe(phone, vec![1; 32], meta()).await.unwrap().unwrap().id, by(phone).id);
    // Disabling again (or after re-enabling) queues nothing new: the devices are revoked.
    s.set_user_disabled(o.id, a.user_id, false, Some(admin.user_id), meta()).await.unwrap();
    s.set_user_disabled(o.id, a.user_id, true, Some(admin.user_id), meta()).await.unwrap();
    assert_eq!(s.wipes(o.id, None).await.unwrap().len(), 2);
    let audit = s.audit_events(0, 10_000).await.unwrap();
    assert_eq!(audit.iter().filter(|e| e.action == "device.wipe" && e.detail.contains("deprovisioned")).count(), 2);
    assert!(audit.iter().any(|e| e.action == "admin.user_disable" && e.detail.contains("wipes_queued")));
    // The command line has no user id: the wipe records the nil id.
    let b = user(s, &o, "b@acme", Role::Nurse).await;
    let bd = registered_device(s, b, "b@acme", 3).await;
    s.set_user_disabled(o.id, b.user_id, true, None, meta()).await.unwrap();
    let w = s.wipes(o.id, None).await.unwrap().into_iter().find(|w| w.device_id == bd).unwrap();
    assert!(w.requested_by.0.is_nil());
}

async fn a_wipe_of_an_unregistered_device_is_closed_not_overdue(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let o = org(s, "acme").await;
    let admin = user(s, &o, "admin@acme", Role::Admin).await;
    let a = user(s, &o, "a@acme", Role::Clinician).await;
    let d = sign_in(s, a, "a@acme", 1).await.1;
    let done = s.request_wipe(o.id, d, None, admin.user_id, "lost".into(), WipeSource::Admin, meta()).await.unwrap();
    assert_eq!(done.revoked_sessions.len(), 1, "its sessions are revoked at once");
    assert_eq!(done.wipe.closed_reason.as_deref(), Some(NO_WIPE_CHANNEL));
    assert!(s.session_by_access(vec![1; 32]).await.unwrap().is_none());
    s.test_execute("UPDATE device_wipes SET requested_at = requested_at - 100000000".into()).await.unwrap();
    assert!(s.wipes(o.id, Some(now_ms() - 1000)).await.unwrap().is_empty(), "a closed wipe is never overdue");
    let audit = s.audit_events(0, 10_000).await.unwrap();
    assert!(audit.iter().any(|e| e.action == "device.wipe" && e.detail.contains("no_wipe_channel")));
}

async fn roster_remediation_disables_revokes_and_wipes_once(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let o = org(s, "acme").await;
    let other = org(s, "other").await;
    let admin = user(s, &o, "admin@acme", Role::Admin).await;
    let gone = user(s, &o, "gone@acme", Role::Clinician).await;
    let stays = user(s, &o, "stays@acme", Role::Nurse).await;
    let z = user(s, &other, "z@other", Role::Nurse).await;
    let gone_phone = registered_device(s, gone, "gone@acme", 1).await;
    registered_device(s, stays, "stays@acme", 2).await;
    registered_device(s, z, "z@other", 3).await;
    let roster =
        Roster::parse_csv("employee_id,login,status\nE0,admin@acme,active\nE1,gone@acme,terminated\nE2,stays@acme,active\n").unwrap();

    let snapshot = s.roster_snapshot(o.id).await.unwrap();
    assert_eq!(snapshot.len(), 3, "only this organisation's accounts");
    let g = snapshot.iter().find(|a| a.user_id == gone.user_id).unwrap();
    assert_eq!((g.live_sessions, g.devices.len(), g.disabled), (1, 1, false));
    assert!(g.devices[0].wipe_channel && !g.devices[0].revoked);
    let report = reconcile(&roster, &snapshot, "2026-12-01", Some(admin.user_id));
    assert_eq!(report.needs_action.len(), 1);
    assert_eq!(report.needs_action[0].user_id, gone.user_id);

    let step = s.remediate_roster_account(o.id, gone.user_id, FlagReason::Terminated, Some(admin.user_id), meta()).await.unwrap();
    assert!(step.disabled);
    assert_eq!(step.revoked_sessions.len(), 1);
    assert_eq!(step.wipes_queued, vec![gone_phone]);
    assert!(step.no_wipe_channel.is_empty());
    let w = s.wipes(o.id, None).await.unwrap();
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].reason, ward_store::ROSTER_WIPE_REASON);

    let after = reconcile(&roster, &s.roster_snapshot(o.id).await.unwrap(), "2026-12-01", Some(admin.user_id));
    assert!(after.needs_action.is_empty());
    assert_eq!(after.already_disabled.len(), 1);
    assert_eq!(after.already_disabled[0].pending_wipes, 1);
    let audit_before = s.audit_size().await.unwrap();
    let again = s.remediate_roster_account(o.id, gone.user_id, FlagReason::Terminated, Some(admin.user_id), meta()).await.unwrap();
    assert!(!again.changed(), "a second run is a no-op");
    assert_eq!(s.audit_size().await.unwrap(), audit_before, "and audits nothing");
    // Another tenant's user cannot be remediated from here.
    assert!(s.remediate_roster_account(o.id, z.user_id, FlagReason::NotOnRoster, Some(admin.user_id), meta()).await.is_err());
    let audit = s.audit_events(0, 10_000).await.unwrap();
    let remediate: Vec<_> = audit.iter().filter(|e| e.action == "roster.remediate").collect();
    assert_eq!(remediate.len(), 1);
    assert!(remediate[0].detail.contains("terminated") && !remediate[0].detail.contains("gone@acme"), "ids and counts, no names");
    assert!(audit.iter().any(|e| e.action == "admin.user_disable" && e.detail.contains("roster")));
    assert!(audit.iter().any(|e| e.action == "device.wipe" && e.detail.contains("deprovisioned")));
}
