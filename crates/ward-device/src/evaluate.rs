//! Judging a device against the posture policy, item by item, at a time given by the caller.
//!
//! The result is a pure function of the policy, the device's facts, its latest report, the
//! time and when each item started failing, so any stored evaluation can be recomputed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::policy::{Action, ITEMS, ItemId, ItemSpec, PosturePolicy};
use crate::report::{Attestation, AutoLock, DeviceRegistration, EraseAfterFailures, NotificationPreview, PostureReport, ReceivedReport};

/// The shortest passcode the baseline accepts.
pub const MIN_PASSCODE_LENGTH: u8 = 6;
/// The most failed attempts before erasing that the baseline accepts.
pub const MAX_FAILED_ATTEMPTS: u8 = 10;
/// The longest Auto-Lock delay the baseline accepts, in seconds (5 minutes).
pub const MAX_AUTO_LOCK_SECONDS: u16 = 300;

/// What the server knows of a device besides its reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceFacts {
    /// What the device stated at registration (supervision decides which items apply).
    pub registration: DeviceRegistration,
    /// When it registered, in Unix ms (staleness counts from here until its first report).
    pub registered_at_ms: i64,
}

/// When each item began failing without a pass since, in Unix ms: from the previous
/// evaluation's [`Evaluation::failing_since`].
pub type FailingSince = BTreeMap<ItemId, i64>;

/// One item's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The requirement is met.
    Pass,
    /// The requirement is not met.
    Fail,
    /// Not judged on this device (a supervised-only item on an unsupervised device, or an
    /// iCloud item off Apple platforms).
    NotApplicable,
    /// The device did not report the setting.
    Unknown,
}

/// One item of an evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemResult {
    /// The item.
    pub item: ItemId,
    /// How it was judged.
    pub outcome: Outcome,
    /// The organisation's action for it.
    pub action: Action,
    /// Whether it counts as failing: `fail`, or `unknown` under a policy where unknown fails.
    pub failing: bool,
    /// Since when it has failed without passing (kept through `unknown`, so leaving a setting
    /// out of a report cannot restart the grace period).
    pub failing_since_ms: Option<i64>,
}

/// What the device may do after this evaluation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum DeviceState {
    /// No item with an action fails (record-only failures are kept in the items).
    Compliant,
    /// Items with the action warn-user fail: the user is told to fix them.
    Warn {
        /// The failing items to fix (warn and block items).
        fix: Vec<ItemId>,
    },
    /// A blocking item fails but its grace period runs: warned, still receiving PHI.
    InGrace {
        /// When the earliest grace period ends, in Unix ms.
        deadline_ms: i64,
        /// The failing items to fix (warn and block items).
        fix: Vec<ItemId>,
    },
    /// A blocking item has failed past its grace period: no message content, only a notice
    /// naming the settings to fix.
    BlockPhi {
        /// The failing items to fix (warn and block items).
        fix: Vec<ItemId>,
    },
}

impl DeviceState {
    /// Whether the device is compliant.
    pub fn is_compliant(&self) -> bool {
        matches!(self, DeviceState::Compliant)
    }

    /// Which state it is, without its details.
    pub fn kind(&self) -> StateKind {
        match self {
            DeviceState::Compliant => StateKind::Compliant,
            DeviceState::Warn { .. } => StateKind::Warn,
            DeviceState::InGrace { .. } => StateKind::InGrace,
            DeviceState::BlockPhi { .. } => StateKind::BlockPhi,
        }
    }
}

/// A [`DeviceState`] without its details, for reports and counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateKind {
    /// [`DeviceState::Compliant`].
    Compliant,
    /// [`DeviceState::Warn`].
    Warn,
    /// [`DeviceState::InGrace`].
    InGrace,
    /// [`DeviceState::BlockPhi`].
    BlockPhi,
}

/// A device judged against the policy at one time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evaluation {
    /// When, in Unix ms.
    pub evaluated_at_ms: i64,
    /// When the report judged was received (none before the first report).
    pub report_received_at_ms: Option<i64>,
    /// Every item, in the catalogue's order.
    pub items: Vec<ItemResult>,
    /// The overall state.
    pub state: DeviceState,
}

impl Evaluation {
    /// When each failing item began failing: pass it to the next [`evaluate`].
    pub fn failing_since(&self) -> FailingSince {
        self.items.iter().filter_map(|r| r.failing_since_ms.map(|t| (r.item, t))).collect()
    }

    /// The result for `item`.
    pub fn item(&self, item: ItemId) -> Option<&ItemResult> {
        self.items.iter().find(|r| r.item == item)
    }
}

/// Judges a device at `now_ms` against `policy`, from its latest report (none if it has not
/// reported yet) and when its items began failing.
pub fn evaluate(
    policy: &PosturePolicy,
    device: &DeviceFacts,
    latest: Option<&ReceivedReport>,
    now_ms: i64,
    failing_since: &FailingSince,
) -> Evaluation {
    let last_heard_ms = latest.map_or(device.registered_at_ms, |r| r.received_at_ms);
    let stale_from_ms = last_heard_ms.saturating_add(policy.stale_after_ms);
    let items: Vec<ItemResult> = ITEMS
        .iter()
        .map(|spec| {
            let outcome = judge(spec, policy, device, latest.map(|r| &r.report), now_ms, stale_from_ms);
            let rule = policy.rule(spec.id);
            let failing = outcome == Outcome::Fail || (outcome == Outcome::Unknown && policy.unknown_fails);
            let earlier = failing_since.get(&spec.id).copied();
            let failing_since_ms = match outcome {
                _ if failing => {
                    // Staleness began when the limit passed, not when it was noticed.
                    let began = if spec.id == ItemId::RecentReport { stale_from_ms } else { now_ms };
                    Some(earlier.map_or(began, |t| t.min(began)))
                }
                Outcome::Unknown => earlier,
                _ => None,
            };
            ItemResult { item: spec.id, outcome, action: rule.action, failing, failing_since_ms }
        })
        .collect();
    let state = overall(policy, &items, now_ms);
    Evaluation { evaluated_at_ms: now_ms, report_received_at_ms: latest.map(|r| r.received_at_ms), items, state }
}

/// When the device, judged by `evaluation` (made from `latest` at its time), will be blocked
/// from PHI if nothing changes: at once if it already is, when a grace period ends, or when
/// its latest report goes stale; `None` if no such time comes. A server keeps this beside the
/// evaluation, so a read only compares a time instead of evaluating again.
pub fn blocked_from(policy: &PosturePolicy, device: &DeviceFacts, latest: Option<&ReceivedReport>, evaluation: &Evaluation) -> Option<i64> {
    let now_ms = evaluation.evaluated_at_ms;
    let stale_from_ms = latest.map_or(device.registered_at_ms, |r| r.received_at_ms).saturating_add(policy.stale_after_ms);
    // The state changes only at these times: a grace period ending, the report going stale,
    // and the staleness item's own grace ending.
    let stale_grace_ms = policy.rule(ItemId::RecentReport).grace_ms;
    let mut candidates = vec![now_ms, stale_from_ms, stale_from_ms.saturating_add(stale_grace_ms)];
    if let DeviceState::InGrace { deadline_ms, .. } = evaluation.state {
        candidates.push(deadline_ms);
    }
    candidates.retain(|&t| t >= now_ms);
    candidates.sort_unstable();
    let since = evaluation.failing_since();
    candidates.into_iter().find(|&t| matches!(evaluate(policy, device, latest, t, &since).state, DeviceState::BlockPhi { .. }))
}

fn judge(
    spec: &ItemSpec,
    policy: &PosturePolicy,
    device: &DeviceFacts,
    report: Option<&PostureReport>,
    now_ms: i64,
    stale_from_ms: i64,
) -> Outcome {
    let reg = &device.registration;
    if (spec.apple_only && !reg.platform.is_apple()) || (spec.supervised_only && !reg.supervised) {
        return Outcome::NotApplicable;
    }
    match spec.id {
        ItemId::RecentReport => return pass_if(now_ms < stale_from_ms),
        ItemId::OsMinimum => return pass_if(report.map_or(reg.os_version, |r| r.os_version) >= policy.minimum_os),
        _ => {}
    }
    let Some(r) = report else { return Outcome::Unknown };
    let no_passcode = r.passcode_present == Some(false);
    let verdict = match spec.id {
        ItemId::PasscodePresent => r.passcode_present,
        ItemId::PasscodeLength if no_passcode => Some(false),
        ItemId::PasscodeLength => r.passcode_length.map(|n| n >= MIN_PASSCODE_LENGTH),
        ItemId::PasscodeAlphanumeric if no_passcode => Some(false),
        ItemId::PasscodeAlphanumeric => r.passcode_alphanumeric,
        ItemId::EraseAfterFailedAttempts => r.erase_after_failed_attempts.map(|e| match e {
            EraseAfterFailures::After(n) => n <= MAX_FAILED_ATTEMPTS,
            EraseAfterFailures::Off => false,
        }),
        ItemId::AutoLock => r.auto_lock.map(|a| match a {
            AutoLock::AfterSeconds(s) => s <= MAX_AUTO_LOCK_SECONDS,
            AutoLock::Never => false,
        }),
        ItemId::IcloudBackupOff => r.icloud_backup_enabled.map(|on| !on),
        ItemId::IcloudPhotosOff => r.icloud_photos_enabled.map(|on| !on),
        ItemId::SiriWhileLockedOff => r.siri_while_locked.map(|on| !on),
        ItemId::NotificationPreviews => r.notification_preview.map(|p| p != NotificationPreview::Always),
        ItemId::EncryptedBackups => r.encrypted_backups,
        ItemId::NotJailbroken => r.jailbreak_detected.map(|j| !j),
        ItemId::AppAttestation => match r.app_attestation {
            Some(Attestation::Passed) => Some(true),
            Some(Attestation::Failed) => Some(false),
            Some(Attestation::Unavailable) | None => None,
        },
        ItemId::OsMinimum | ItemId::RecentReport => None,
    };
    verdict.map_or(Outcome::Unknown, pass_if)
}

fn pass_if(ok: bool) -> Outcome {
    if ok { Outcome::Pass } else { Outcome::Fail }
}

fn overall(policy: &PosturePolicy, items: &[ItemResult], now_ms: i64) -> DeviceState {
    let acting: Vec<&ItemResult> = items.iter().filter(|r| r.failing && r.action != Action::RecordOnly).collect();
    let fix: Vec<ItemId> = acting.iter().map(|r| r.item).collect();
    let deadlines = acting.iter().filter(|r| r.action == Action::BlockPhi).map(|r| {
        let since = r.failing_since_ms.unwrap_or(now_ms);
        since.saturating_add(policy.rule(r.item).grace_ms)
    });
    match deadlines.min() {
        Some(deadline_ms) if deadline_ms <= now_ms => DeviceState::BlockPhi { fix },
        Some(deadline_ms) => DeviceState::InGrace { deadline_ms, fix },
        None if fix.is_empty() => DeviceState::Compliant,
        None => DeviceState::Warn { fix },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{ItemRule, default_rule};
    use crate::report::{OsVersion, Ownership, Platform};

    const DAY: i64 = 86_400_000;
    const T0: i64 = 1_800_000_000_000;

    fn device(supervised: bool) -> DeviceFacts {
        DeviceFacts {
            registration: DeviceRegistration {
                platform: Platform::Ios,
                model: "iPhone16,1".into(),
                os_version: OsVersion::new(18, 1, 0),
                app_version: "1.0.0".into(),
                ownership: if supervised { Ownership::Corporate } else { Ownership::Byod },
                supervised,
                mdm_enrolled: supervised,
            },
            registered_at_ms: T0,
        }
    }

    fn compliant_report() -> PostureReport {
        PostureReport::from_json(
            r#"{"os_version":"18.1","passcode_present":true,"passcode_length":6,"passcode_alphanumeric":true,
            "erase_after_failed_attempts":10,"auto_lock_minutes":5,"icloud_backup_enabled":false,
            "icloud_photos_enabled":false,"siri_while_locked":false,"notification_preview":"when_unlocked",
            "encrypted_backups":true,"jailbreak_detected":false,"app_attestation":"passed"}"#,
        )
        .unwrap()
    }

    fn at(report: PostureReport, received_at_ms: i64) -> ReceivedReport {
        ReceivedReport { received_at_ms, report }
    }

    #[test]
    fn a_baseline_phone_is_compliant_on_every_item() {
        let e = evaluate(&PosturePolicy::default(), &device(true), Some(&at(compliant_report(), T0)), T0 + 1, &FailingSince::new());
        assert_eq!(e.state, DeviceState::Compliant);
        assert!(e.items.iter().all(|r| r.outcome == Outcome::Pass && !r.failing), "{e:?}");
        assert!(e.failing_since().is_empty());
    }

    #[test]
    fn supervised_only_items_are_not_applicable_on_unsupervised_devices() {
        let mut r = compliant_report();
        r.icloud_backup_enabled = Some(true);
        r.icloud_photos_enabled = Some(true);
        r.notification_preview = Some(NotificationPreview::Always);
        let byod = evaluate(&PosturePolicy::default(), &device(false), Some(&at(r.clone(), T0)), T0, &FailingSince::new());
        assert_eq!(byod.state, DeviceState::Compliant);
        for id in [ItemId::IcloudBackupOff, ItemId::IcloudPhotosOff, ItemId::NotificationPreviews] {
            assert_eq!(byod.item(id).unwrap().outcome, Outcome::NotApplicable);
        }
        let corp = evaluate(&PosturePolicy::default(), &device(true), Some(&at(r, T0)), T0, &FailingSince::new());
        assert_eq!(
            corp.state,
            DeviceState::InGrace {
                deadline_ms: T0 + 7 * DAY,
                fix: vec![ItemId::IcloudBackupOff, ItemId::IcloudPhotosOff, ItemId::NotificationPreviews]
            }
        );
    }

    #[test]
    fn icloud_items_do_not_apply_to_android() {
        let mut d = device(true);
        d.registration.platform = Platform::Android;
        let e = evaluate(&PosturePolicy::default(), &d, Some(&at(compliant_report(), T0)), T0, &FailingSince::new());
        assert_eq!(e.item(ItemId::IcloudBackupOff).unwrap().outcome, Outcome::NotApplicable);
        assert_eq!(e.item(ItemId::NotificationPreviews).unwrap().outcome, Outcome::Pass);
    }

    #[test]
    fn each_setting_fails_its_item() {
        let cases: Vec<(&str, ItemId)> = vec![
            (r#""passcode_present":false"#, ItemId::PasscodePresent),
            (r#""passcode_length":5"#, ItemId::PasscodeLength),
            (r#""passcode_alphanumeric":false"#, ItemId::PasscodeAlphanumeric),
            (r#""erase_after_failed_attempts":11"#, ItemId::EraseAfterFailedAttempts),
            (r#""erase_after_failed_attempts":"off""#, ItemId::EraseAfterFailedAttempts),
            (r#""auto_lock_minutes":10"#, ItemId::AutoLock),
            (r#""auto_lock_minutes":"never""#, ItemId::AutoLock),
            (r#""icloud_backup_enabled":true"#, ItemId::IcloudBackupOff),
            (r#""icloud_photos_enabled":true"#, ItemId::IcloudPhotosOff),
            (r#""siri_while_locked":true"#, ItemId::SiriWhileLockedOff),
            (r#""notification_preview":"always""#, ItemId::NotificationPreviews),
            (r#""encrypted_backups":false"#, ItemId::EncryptedBackups),
            (r#""jailbreak_detected":true"#, ItemId::NotJailbroken),
            (r#""app_attestation":"failed""#, ItemId::AppAttestation),
            (r#""os_version":"14.8""#, ItemId::OsMinimum),
        ];
        for (field, item) in cases {
            let mut v: serde_json::Value = serde_json::from_str(&compliant_report().to_json()).unwrap();
            let patch: serde_json::Value = serde_json::from_str(&format!("{{{field}}}")).unwrap();
            for (k, x) in patch.as_object().unwrap() {
                v[k] = x.clone();
            }
            if field.contains("passcode_present") {
                let obj = v.as_object_mut().unwrap();
                obj.remove("passcode_length");
                obj.remove("passcode_alphanumeric");
            }
            let r = PostureReport::from_json(&v.to_string()).unwrap();
            let e = evaluate(&PosturePolicy::default(), &device(true), Some(&at(r, T0)), T0, &FailingSince::new());
            let failing: Vec<ItemId> = e.items.iter().filter(|r| r.outcome == Outcome::Fail).map(|r| r.item).collect();
            if item == ItemId::PasscodePresent {
                // No passcode also fails its length and letters.
                assert_eq!(failing, [ItemId::PasscodePresent, ItemId::PasscodeLength, ItemId::PasscodeAlphanumeric]);
            } else {
                assert_eq!(failing, [item], "{field}");
            }
            assert!(!e.state.is_compliant(), "{field}");
        }
    }

    #[test]
    fn actions_decide_the_state() {
        let mut r = compliant_report();
        r.siri_while_locked = Some(true); // warn by default
        let p = PosturePolicy::default();
        let e = evaluate(&p, &device(true), Some(&at(r.clone(), T0)), T0, &FailingSince::new());
        assert_eq!(e.state, DeviceState::Warn { fix: vec![ItemId::SiriWhileLockedOff] });

        let mut record_only = p.clone();
        record_only.rules.retain(|x| x.item != ItemId::SiriWhileLockedOff);
        record_only.rules.push(ItemRule { item: ItemId::SiriWhileLockedOff, action: Action::RecordOnly, grace_ms: 0 });
        let e = evaluate(&record_only, &device(true), Some(&at(r.clone(), T0)), T0, &FailingSince::new());
        assert_eq!(e.state, DeviceState::Compliant);
        assert_eq!(e.item(ItemId::SiriWhileLockedOff).unwrap().outcome, Outcome::Fail);

        // A jailbreak blocks at once (no grace), and the fix list names the warn item too.
        r.jailbreak_detected = Some(true);
        let e = evaluate(&p, &device(true), Some(&at(r, T0)), T0, &FailingSince::new());
        assert_eq!(e.state, DeviceState::BlockPhi { fix: vec![ItemId::SiriWhileLockedOff, ItemId::NotJailbroken] });
    }

    #[test]
    fn grace_runs_from_the_first_failure_and_then_blocks() {
        let p = PosturePolicy::default();
        let mut r = compliant_report();
        r.auto_lock = Some(AutoLock::Never);
        let first = evaluate(&p, &device(true), Some(&at(r.clone(), T0)), T0, &FailingSince::new());
        let deadline = T0 + default_rule(ItemId::AutoLock).grace_ms;
        assert_eq!(first.state, DeviceState::InGrace { deadline_ms: deadline, fix: vec![ItemId::AutoLock] });
        assert_eq!(first.failing_since(), FailingSince::from([(ItemId::AutoLock, T0)]));

        // A later report leaving the setting out keeps the clock running.
        let silent = PostureReport::new(OsVersion::new(18, 1, 0));
        let mid = evaluate(&p, &device(true), Some(&at(silent, T0 + DAY)), T0 + DAY, &first.failing_since());
        assert_eq!(mid.item(ItemId::AutoLock).unwrap().outcome, Outcome::Unknown);
        assert_eq!(mid.failing_since().get(&ItemId::AutoLock), Some(&T0));

        let late = evaluate(&p, &device(true), Some(&at(r.clone(), deadline)), deadline, &mid.failing_since());
        assert_eq!(late.state, DeviceState::BlockPhi { fix: vec![ItemId::AutoLock] });
        let just_before = evaluate(&p, &device(true), Some(&at(r, deadline - 1)), deadline - 1, &first.failing_since());
        assert!(matches!(just_before.state, DeviceState::InGrace { .. }));

        // Fixing it clears the clock.
        let fixed = evaluate(&p, &device(true), Some(&at(compliant_report(), deadline)), deadline, &late.failing_since());
        assert_eq!(fixed.state, DeviceState::Compliant);
        assert!(fixed.failing_since().is_empty());
    }

    #[test]
    fn blocked_from_names_the_end_of_grace_or_staleness() {
        let p = PosturePolicy::default();
        let d = device(true);
        let good = at(compliant_report(), T0);
        let e = evaluate(&p, &d, Some(&good), T0, &FailingSince::new());
        assert_eq!(blocked_from(&p, &d, Some(&good), &e), Some(T0 + p.stale_after_ms));
        let mut weak = compliant_report();
        weak.passcode_length = Some(4);
        let weak = at(weak, T0);
        let e = evaluate(&p, &d, Some(&weak), T0, &FailingSince::new());
        assert!(matches!(e.state, DeviceState::InGrace { .. }));
        assert_eq!(blocked_from(&p, &d, Some(&weak), &e), Some(T0 + 7 * DAY));
        let mut open = compliant_report();
        open.passcode_present = Some(false);
        open.passcode_length = None;
        open.passcode_alphanumeric = None;
        let open = at(open, T0);
        let e = evaluate(&p, &d, Some(&open), T0, &FailingSince::new());
        assert_eq!(blocked_from(&p, &d, Some(&open), &e), Some(T0));
        let mut lax = p.clone();
        lax.rules = ITEMS.iter().map(|s| ItemRule { item: s.id, action: Action::RecordOnly, grace_ms: 0 }).collect();
        let e = evaluate(&lax, &d, Some(&open), T0, &FailingSince::new());
        assert_eq!(blocked_from(&lax, &d, Some(&open), &e), None);
    }

    #[test]
    fn a_silent_device_goes_stale() {
        let p = PosturePolicy::default();
        let report = at(compliant_report(), T0);
        let fresh = evaluate(&p, &device(true), Some(&report), T0 + p.stale_after_ms - 1, &FailingSince::new());
        assert_eq!(fresh.state, DeviceState::Compliant);
        let stale = evaluate(&p, &device(true), Some(&report), T0 + p.stale_after_ms + DAY, &FailingSince::new());
        assert_eq!(stale.state, DeviceState::BlockPhi { fix: vec![ItemId::RecentReport] });
        assert_eq!(stale.item(ItemId::RecentReport).unwrap().failing_since_ms, Some(T0 + p.stale_after_ms));

        // Never reported: every report item unknown, staleness counted from registration.
        let never = evaluate(&p, &device(true), None, T0 + 1, &FailingSince::new());
        assert_eq!(never.state, DeviceState::Compliant);
        assert_eq!(never.item(ItemId::PasscodePresent).unwrap().outcome, Outcome::Unknown);
        assert_eq!(never.item(ItemId::OsMinimum).unwrap().outcome, Outcome::Pass);
        let never = evaluate(&p, &device(true), None, T0 + p.stale_after_ms, &FailingSince::new());
        assert_eq!(never.item(ItemId::RecentReport).unwrap().outcome, Outcome::Fail);
    }

    #[test]
    fn unknown_can_be_made_to_fail() {
        let p = PosturePolicy { unknown_fails: true, ..PosturePolicy::default() };
        let e = evaluate(&p, &device(false), Some(&at(PostureReport::new(OsVersion::new(18, 0, 0)), T0)), T0, &FailingSince::new());
        assert_eq!(e.item(ItemId::PasscodePresent).unwrap().outcome, Outcome::Unknown);
        assert!(e.item(ItemId::PasscodePresent).unwrap().failing);
        assert!(matches!(e.state, DeviceState::BlockPhi { ref fix } if fix.contains(&ItemId::PasscodePresent)));
        // Items that do not apply never fail.
        assert_eq!(e.item(ItemId::NotificationPreviews).unwrap().outcome, Outcome::NotApplicable);
        assert!(!e.item(ItemId::NotificationPreviews).unwrap().failing);
    }

    #[test]
    fn evaluations_round_trip_as_json() {
        let mut r = compliant_report();
        r.auto_lock = Some(AutoLock::Never);
        let e = evaluate(&PosturePolicy::default(), &device(true), Some(&at(r, T0)), T0, &FailingSince::new());
        let json = serde_json::to_string(&e).unwrap();
        assert!(json.contains(r#""state":"in_grace""#), "{json}");
        assert_eq!(serde_json::from_str::<Evaluation>(&json).unwrap(), e);
    }
}
