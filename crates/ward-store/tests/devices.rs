//! Device trust storage on both backends: registration, posture reports with evaluations that
//! continue `failing_since`, the posture policy, spot checks reproducible from their seed, and
//! selective wipes (revocation, delivery, acknowledgement, replay).

use ward_device::{Action, DeviceRegistration, DeviceState, ItemId, ItemRule, PosturePolicy, PostureReport, StateKind};
use ward_domain::ids::DeviceId;
use ward_domain::role::Role;
use ward_store::testing::{DEVICE_REGISTRATION, TestDb, meta, org, registered_device, sign_in, user};
use ward_store::{
    Backend, DeviceClaim, NewSession, RefreshOutcome, StoreError, TokenHashes, WipeAck, WipeSource, now_ms, on_both_backends,
};

on_both_backends!(
    reports_are_stored_and_evaluated_in_sequence,
    only_the_session_device_reports,
    the_policy_defaults_to_the_baseline_and_changes_rejudge,
    spot_checks_are_reproducible_from_their_seed,
    a_wipe_revokes_at_once_and_is_acknowledged_once,
);

const GOOD: &str = r#"{"os_version":"18.1","passcode_present":true,"passcode_length":6,"passcode_alphanumeric":true,
    "erase_after_failed_attempts":10,"auto_lock_minutes":5,"icloud_backup_enabled":false,"icloud_photos_enabled":false,
    "siri_while_locked":false,"notification_preview":"when_unlocked","encrypted_backups":true,"jailbreak_detected":false,
    "app_attestation":"passed"}"#;

fn report(json: &str) -> PostureReport {
    PostureReport::from_json(json).unwrap()
}

fn with(changes: &[(&str, serde_json::Value)]) -> PostureReport {
    let mut v: serde_json::Value = serde_json::from_str(GOOD).unwrap();
    for (k, val) in changes {
        if val.is_null() {
            v.as_object_mut().unwrap().remove(*k);
        } else {
            v[*k] = val.clone();
        }
    }
    report(&v.to_string())
}

async fn reports_are_stored_and_evaluated_in_sequence(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let o = org(s, "acme").await;
    let a = user(s, &o, "a@acme", Role::Clinician).await;
    let d = registered_device(s, a, "a@acme", 1).await;
    let listed = s.devices(o.id, Some(a.user_id)).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].registration.as_ref().unwrap().model, "iPhone16,1");
    assert_eq!(listed[0].evaluation.as_ref().unwrap().state, DeviceState::Compliant, "nothing reported yet, nothing stale");

    let first = s.record_posture(a, d, d, report(GOOD), meta()).await.unwrap();
    assert_eq!(first.evaluation.state, DeviceState::Compliant);
    let weak = with(&[("passcode_length", 4.into())]);
    let second = s.record_posture(a, d, d, weak.clone(), meta()).await.unwrap();
    assert_eq!(second.evaluation.state.kind(), StateKind::InGrace);
    let since = second.evaluation.item(ItemId::PasscodeLength).unwrap().failing_since_ms.unwrap();
    let third = s.record_posture(a, d, d, weak, meta()).await.unwrap();
    assert_eq!(
        third.evaluation.item(ItemId::PasscodeLength).unwrap().failing_since_ms,
        Some(since),
        "a still-failing item keeps the time it began failing"
    );
    assert_eq!(s.phi_block(o.id, d).await.unwrap(), None, "in grace, PHI still flows");

    // No passcode blocks at once under the baseline.
    let open = with(&[
        ("passcode_present", false.into()),
        ("passcode_length", serde_json::Value::Null),
        ("passcode_alphanumeric", serde_json::Value::Null),
    ]);
    let fourth = s.record_posture(a, d, d, open.clone(), meta()).await.unwrap();
    assert_eq!(fourth.evaluation.state.kind(), StateKind::BlockPhi);
    let fix = s.phi_block(o.id, d).await.unwrap().expect("blocked");
    assert!(fix.contains(&ItemId::PasscodePresent), "{fix:?}");

    let history = s.posture_history(o.id, d, 100).await.unwrap();
    assert_eq!(history.len(), 4);
    assert_eq!(history[0].report, open, "newest first, stored as sent");
    let timelines = s.posture_timelines(o.id, 0).await.unwrap();
    let drift = ward_device::drift(&timelines[&d]);
    assert_eq!(drift.len(), 1, "one crossing: compliant to in grace");
    assert_eq!(drift[0].from, StateKind::Compliant);

    // Fixing it lifts the block.
    s.record_posture(a, d, d, report(GOOD), meta()).await.unwrap();
    assert_eq!(s.phi_block(o.id, d).await.unwrap(), None);
    let audit = s.audit_events(0, 10_000).await.unwrap();
    assert_eq!(audit.iter().filter(|e| e.action == "device.posture" && e.outcome == "success").count(), 5);
    assert!(audit.iter().any(|e| e.action == "device.register"));
}

async fn only_the_session_device_reports(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let o = org(s, "acme").await;
    let other_org = org(s, "other").await;
    let a = user(s, &o, "a@acme", Role::Clinician).await;
    let b = user(s, &o, "b@acme", Role::Nurse).await;
    let z = user(s, &other_org, "z@other", Role::Nurse).await;
    let da = registered_device(s, a, "a@acme", 1).await;
    let db_ = registered_device(s, b, "b@acme", 2).await;
    let dz = registered_device(s, z, "z@other", 3).await;
    let unregistered = sign_in(s, a, "a@acme", 4).await.1;
    for target in [db_, dz, DeviceId::new()] {
        let e = s.record_posture(a, da, target, report(GOOD), meta()).await.unwrap_err();
        assert!(matches!(e, StoreError::NotFound), "{e:?}");
    }
    // Even naming the session's device, another user's session cannot report for it.
    assert!(matches!(s.record_posture(b, da, da, report(GOOD), meta()).await, Err(StoreError::NotFound)));
    assert!(matches!(s.record_posture(a, unregistered, unregistered, report(GOOD), meta()).await, Err(StoreError::State(_))));
    assert!(s.posture_history(o.id, db_, 10).await.unwrap().is_empty());
    assert!(matches!(s.posture_history(o.id, dz, 10).await, Err(StoreError::NotFound)), "another tenant's device is not found");
    let audit = s.audit_events(0, 10_000).await.unwrap();
    assert_eq!(audit.iter().filter(|e| e.action == "device.posture" && e.outcome == "denied").count(), 4);
    // Registration is for one's own live device only.
    let reg = DeviceRegistration::from_json(DEVICE_REGISTRATION).unwrap();
    assert!(matches!(s.register_device(a, db_, reg, vec![9; 32], meta()).await, Err(StoreError::NotFound)));
    assert_eq!(s.devices(o.id, None).await.unwrap().len(), 3);
    assert_eq!(s.devices(other_org.id, None).await.unwrap().len(), 1);
}

async fn the_policy_defaults_to_the_baseline_and_changes_rejudge(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let o = org(s, "acme").await;
    let admin = user(s, &o, "admin@acme", Role::Admin).await;
    let a = user(s, &o, "a@acme", Role::Clinician).await;
    assert_eq!(s.posture_policy(o.id).await.unwrap(), PosturePolicy::default());
    let d = registered_device(s, a, "a@acme", 1).await;
    s.record_posture(a, d, d, with(&[("passcode_length", 4.into())]), meta()).await.unwrap();
    assert_eq!(s.device(o.id, d).await.unwrap().evaluation.unwrap().state.kind(), StateKind::InGrace);
    let mut p = PosturePolicy::default();
    p.rules.retain(|r| r.item != ItemId::PasscodeLength);
    p.rules.push(ItemRule { item: ItemId::PasscodeLength, action: Action::BlockPhi, grace_ms: 0 });
    assert_eq!(s.set_posture_policy(o.id, admin.user_id, p.clone(), meta()).await.unwrap(), 1);
    assert_eq!(s.posture_policy(o.id).await.unwrap(), p);
    assert!(s.phi_block(o.id, d).await.unwrap().is_some(), "no grace: blocked at once after the change");
    let audit = s.audit_events(0, 10_000).await.unwrap();
    assert!(audit.iter().any(|e| e.action == "device.posture_policy"));
}

async fn spot_checks_are_reproducible_from_their_seed(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let o = org(s, "acme").await;
    let co = user(s, &o, "co@acme", Role::ComplianceOfficer).await;
    for i in 0..12u8 {
        let u = user(s, &o, &format!("u{i}@acme"), Role::Nurse).await;
        registered_device(s, u, &format!("u{i}@acme"), i + 1).await;
    }
    let check = s.create_spot_check(o.id, co.user_id, 42, 25, meta()).await.unwrap();
    assert_eq!(check.population.len(), 12);
    assert_eq!(check.sample.len(), 3, "ceil(12 × 25%)");
    let again = ward_device::spot_check(&check.population, 42, 25).unwrap();
    assert_eq!(again, check.sample, "the recorded seed draws the same sample");
    let stored = s.spot_checks(o.id, Some(check.id)).await.unwrap();
    assert_eq!(stored, vec![check.clone()]);
    assert!(s.spot_checks(org(s, "other").await.id, Some(check.id)).await.unwrap().is_empty());
    assert!(matches!(s.create_spot_check(o.id, co.user_id, 1, 5, meta()).await, Err(StoreError::State(_))));
}

async fn a_wipe_revokes_at_once_and_is_acknowledged_once(backend: Backend) {
    let Some(db) = TestDb::open(backend).await else { return };
    let s = &db.store;
    let o = org(s, "acme").await;
    let admin = user(s, &o, "admin@acme", Role::Admin).await;
    let a = user(s, &o, "a@acme", Role::Clinician).await;
    let b = user(s, &o, "b@acme", Role::Clinician).await;
    let d = registered_device(s, a, "a@acme", 1).await;
    let db_ = registered_device(s, b, "b@acme", 2).await;
    // A user may report only their own device lost.
    let e = s.request_wipe(o.id, db_, Some(a.user_id), a.user_id, "lost".into(), WipeSource::LostByUser, meta()).await.unwrap_err();
    assert!(matches!(e, StoreError::NotFound));
    let done = s.request_wipe(o.id, d, None, admin.user_id, "left the organisation".into(), WipeSource::Admin, meta()).await.unwrap();
    assert_eq!(done.revoked_sessions.len(), 1);
    assert_eq!(done.wipe.user_id, a.user_id);
    assert!(s.session_by_access(vec![1; 32]).await.unwrap().is_none(), "the access token is gone");
    assert!(matches!(
        s.refresh(
            vec![101; 32],
            d,
            TokenHashes { access: vec![50; 32], access_expires_at: now_ms() + 60_000, refresh: vec![51; 32] },
            meta()
        )
        .await
        .unwrap(),
        RefreshOutcome::Rejected
    ));
    // Signing in again naming the wiped device is refused.
    let again = NewSession {
        user_id: a.user_id,
        device: DeviceClaim { id: Some(d), name: "phone".into(), platform: "ios".into() },
        tokens: TokenHashes { access: vec![60; 32], access_expires_at: now_ms() + 60_000, refresh: vec![61; 32] },
        expires_at: now_ms() + 3_600_000,
        restriction: None,
        mfa_verified: false,
    };
    assert!(matches!(s.login(o.id, "a@acme".into(), again, meta()).await, Err(StoreError::State(_))));
    assert!(matches!(
        s.request_wipe(o.id, d, None, admin.user_id, "again".into(), WipeSource::Admin, meta()).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(s.device(o.id, d).await.unwrap().revoked_at.is_some());

    // The command needs the device's own secret; the first fetch records delivery.
    assert_eq!(s.fetch_wipe(d, vec![2; 32], meta()).await.unwrap(), None);
    assert_eq!(s.fetch_wipe(db_, vec![2; 32], meta()).await.unwrap(), None, "no wipe for that device");
    let cmd = s.fetch_wipe(d, vec![1; 32], meta()).await.unwrap().unwrap();
    assert_eq!(cmd.id, done.wipe.id);
    let delivered = cmd.delivered_at.unwrap();
    assert_eq!(s.fetch_wipe(d, vec![1; 32], meta()).await.unwrap().unwrap().delivered_at, Some(delivered));

    // Overdue until acknowledged.
    s.test_execute("UPDATE device_wipes SET requested_at = requested_at - 100000000".into()).await.unwrap();
    assert_eq!(s.wipes(o.id, Some(now_ms() - 1000)).await.unwrap().len(), 1);
    assert_eq!(s.acknowledge_wipe(d, vec![1; 32], uuid::Uuid::now_v7(), meta()).await.unwrap(), WipeAck::Unknown);
    assert_eq!(s.acknowledge_wipe(d, vec![3; 32], cmd.id, meta()).await.unwrap(), WipeAck::Unknown);
    let WipeAck::Acknowledged(w) = s.acknowledge_wipe(d, vec![1; 32], cmd.id, meta()).await.unwrap() else { panic!("not acknowledged") };
    assert!(w.acknowledged_at.is_some());
    assert_eq!(s.acknowledge_wipe(d, vec![1; 32], cmd.id, meta()).await.unwrap(), WipeAck::Replayed);
    // An id that is no device at all is answered the same way, and leaves no audit row
    // (anyone can send those).
    let before = s.audit_size().await.unwrap();
    assert_eq!(s.acknowledge_wipe(DeviceId::new(), vec![1; 32], cmd.id, meta()).await.unwrap(), WipeAck::Unknown);
    assert_eq!(s.fetch_wipe(DeviceId::new(), vec![1; 32], meta()).await.unwrap(), None);
    assert_eq!(s.audit_size().await.unwrap(), before);
    assert!(s.wipes(o.id, Some(now_ms() - 1000)).await.unwrap().is_empty(), "acknowledged wipes are not overdue");
    let all = s.wipes(o.id, None).await.unwrap();
    assert_eq!(all[0].acknowledged_at, w.acknowledged_at, "a replay changed nothing");
    let audit = s.audit_events(0, 10_000).await.unwrap();
    assert_eq!(audit.iter().filter(|e| e.action == "device.wipe_ack" && e.outcome == "failure").count(), 3);
    assert_eq!(audit.iter().filter(|e| e.action == "device.wipe_delivered" && e.outcome == "success").count(), 1);
    // The wrong secret presented for a real device is its organisation's business.
    assert!(audit.iter().any(|e| e.action == "device.wipe_delivered"
        && e.outcome == "failure"
        && e.org_id == Some(o.id.0)
        && e.detail.contains("wrong_secret")));
    assert!(audit.iter().any(|e| e.action == "device.wipe" && e.detail.contains("sessions_revoked")));
    assert!(!audit.iter().any(|e| e.detail.contains("left the organisation")), "the reason text stays out of the audit log");
}
