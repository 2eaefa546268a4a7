//! Properties: parsing never panics and round-trips, evaluation is a function of its inputs,
//! and spot-check samples are large enough and reproducible.

use proptest::prelude::*;
use serde_json::{Map, Value};
use ward_device::evaluate::{DeviceFacts, DeviceState, FailingSince, blocked_from, evaluate};
use ward_device::policy::{Action, ITEMS, ItemRule, PosturePolicy};
use ward_device::report::{
    Attestation, AutoLock, DeviceRegistration, EraseAfterFailures, NotificationPreview, OsVersion, Ownership, Platform, PostureReport,
    ReceivedReport,
};
use ward_device::sample::{sample_size, spot_check};

const REPORT_FIELDS: [&str; 13] = [
    "os_version",
    "passcode_present",
    "passcode_length",
    "passcode_alphanumeric",
    "erase_after_failed_attempts",
    "auto_lock_minutes",
    "icloud_backup_enabled",
    "icloud_photos_enabled",
    "siri_while_locked",
    "notification_preview",
    "encrypted_backups",
    "jailbreak_detected",
    "app_attestation",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-100i64..100).prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        prop_oneof![
            Just("off".to_owned()),
            Just("never".to_owned()),
            Just("when_unlocked".to_owned()),
            Just("17.5.1".to_owned()),
            "[0-9.]{0,12}",
            ".{0,20}"
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(".{0,8}", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Objects over the report's own field names (and a stranger now and then), so parsing gets
/// past the field names to the values.
fn report_like() -> impl Strategy<Value = Value> {
    let key = prop_oneof![10 => prop::sample::select(REPORT_FIELDS.to_vec()).prop_map(str::to_owned), 1 => "[a-z_]{1,12}"];
    prop::collection::btree_map(key, json_value(), 0..14).prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>()))
}

fn os() -> impl Strategy<Value = OsVersion> {
    (1u16..30, 0u16..10, 0u16..5).prop_map(|(a, b, c)| OsVersion::new(a, b, c))
}

fn report() -> impl Strategy<Value = PostureReport> {
    let passcode = prop_oneof![
        Just((Some(false), None, None)),
        (prop::option::of(Just(true)), prop::option::of(1u8..=64), prop::option::of(any::<bool>())),
    ];
    let erase = prop::option::of(prop_oneof![Just(EraseAfterFailures::Off), (2u8..=11).prop_map(EraseAfterFailures::After)]);
    let auto_lock = prop::option::of(prop_oneof![
        Just(AutoLock::Never),
        prop::sample::select(AutoLock::OFFERED_SECONDS.to_vec()).prop_map(AutoLock::AfterSeconds)
    ]);
    let preview = prop::option::of(prop::sample::select(vec![
        NotificationPreview::Always,
        NotificationPreview::WhenUnlocked,
        NotificationPreview::Never,
    ]));
    let attestation = prop::option::of(prop::sample::select(vec![Attestation::Passed, Attestation::Failed, Attestation::Unavailable]));
    let flags = prop::collection::vec(prop::option::of(any::<bool>()), 6);
    (os(), passcode, erase, auto_lock, preview, attestation, flags).prop_map(
        |(os, (present, len, alnum), erase, auto_lock, preview, att, f)| {
            let mut r = PostureReport::new(os);
            r.passcode_present = present;
            r.passcode_length = len;
            r.passcode_alphanumeric = alnum;
            r.erase_after_failed_attempts = erase;
            r.auto_lock = auto_lock;
            r.notification_preview = preview;
            r.app_attestation = att;
            r.icloud_backup_enabled = f[0];
            r.icloud_photos_enabled = f[1];
            r.siri_while_locked = f[2];
            r.encrypted_backups = f[3];
            r.jailbreak_detected = f[4];
            r
        },
    )
}

fn policy() -> impl Strategy<Value = PosturePolicy> {
    let action = prop::sample::select(vec![Action::RecordOnly, Action::WarnUser, Action::BlockPhi]);
    let rules = prop::collection::vec((action, 0i64..10 * 86_400_000), ITEMS.len());
    (rules, 60_000i64..30 * 86_400_000, os(), any::<bool>()).prop_map(|(rules, stale_after_ms, minimum_os, unknown_fails)| {
        let mut p = PosturePolicy::default();
        p.rules = ITEMS.iter().zip(rules).map(|(s, (action, grace_ms))| ItemRule { item: s.id, action, grace_ms }).collect();
        p.stale_after_ms = stale_after_ms;
        p.minimum_os = minimum_os;
        p.unknown_fails = unknown_fails;
        p
    })
}

fn device() -> impl Strategy<Value = DeviceFacts> {
    let platform = prop::sample::select(vec![Platform::Ios, Platform::Ipados, Platform::Android]);
    (platform, os(), any::<bool>(), any::<bool>(), 0i64..1_000_000).prop_map(|(platform, os_version, supervised, mdm_enrolled, at)| {
        DeviceFacts {
            registration: DeviceRegistration {
                platform,
                model: "iPhone16,1".into(),
                os_version,
                app_version: "1.0.0".into(),
                ownership: if supervised { Ownership::Corporate } else { Ownership::Byod },
                supervised,
                mdm_enrolled,
            },
            registered_at_ms: at,
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parsing_never_panics_and_accepted_reports_round_trip(v in prop_oneof![json_value(), report_like()]) {
        let text = v.to_string();
        if let Ok(r) = PostureReport::from_json(&text) {
            prop_assert_eq!(PostureReport::from_json(&r.to_json()).unwrap(), r);
        }
        let _ = DeviceRegistration::from_json(&text);
        let _ = PosturePolicy::from_json(&text);
    }

    #[test]
    fn parsing_arbitrary_text_never_panics(text in ".{0,200}") {
        let _ = PostureReport::from_json(&text);
        let _ = DeviceRegistration::from_json(&text);
    }

    #[test]
    fn generated_reports_round_trip(r in report()) {
        prop_assert_eq!(PostureReport::from_json(&r.to_json()).unwrap(), r);
    }

    #[test]
    fn evaluation_is_a_function_of_its_inputs(
        p in policy(),
        d in device(),
        r in prop::option::of(report()),
        received in 0i64..2_000_000_000,
        now in 0i64..4_000_000_000,
        since in prop::collection::btree_map(prop::sample::select(ITEMS.iter().map(|s| s.id).collect::<Vec<_>>()), 0i64..4_000_000_000, 0..5),
    ) {
        let received = r.map(|report| ReceivedReport { received_at_ms: received, report });
        let since: FailingSince = since;
        let a = evaluate(&p, &d, received.as_ref(), now, &since);
        prop_assert_eq!(&a, &evaluate(&p, &d, received.as_ref(), now, &since));
        // Recomputing from the stored JSON of every input gives the same evaluation.
        let p2 = PosturePolicy::from_json(&serde_json::to_string(&p).unwrap()).unwrap();
        let d2: DeviceFacts = serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap();
        let r2: Option<ReceivedReport> = serde_json::from_str(&serde_json::to_string(&received).unwrap()).unwrap();
        prop_assert_eq!(&a, &evaluate(&p2, &d2, r2.as_ref(), now, &since));
        prop_assert_eq!(&serde_json::from_str::<ward_device::Evaluation>(&serde_json::to_string(&a).unwrap()).unwrap(), &a);

        // The state agrees with the items.
        let acting: Vec<_> = a.items.iter().filter(|i| i.failing && i.action != Action::RecordOnly).map(|i| i.item).collect();
        let blocking = a.items.iter().any(|i| i.failing && i.action == Action::BlockPhi);
        match &a.state {
            DeviceState::Compliant => prop_assert!(acting.is_empty()),
            DeviceState::Warn { fix } => { prop_assert!(!blocking); prop_assert_eq!(fix, &acting); }
            DeviceState::InGrace { deadline_ms, fix } => { prop_assert!(blocking && *deadline_ms > now); prop_assert_eq!(fix, &acting); }
            DeviceState::BlockPhi { fix } => { prop_assert!(blocking); prop_assert_eq!(fix, &acting); }
        }
        for i in &a.items {
            if i.failing { prop_assert!(i.failing_since_ms.is_some()); }
        }
    }

    #[test]
    fn blocked_from_is_the_first_blocked_time(
        p in policy(),
        d in device(),
        r in prop::option::of(report()),
        received in 0i64..2_000_000_000,
        now in 0i64..4_000_000_000,
    ) {
        let received = r.map(|report| ReceivedReport { received_at_ms: received, report });
        let e = evaluate(&p, &d, received.as_ref(), now, &FailingSince::new());
        let since = e.failing_since();
        let blocked = |t: i64| matches!(evaluate(&p, &d, received.as_ref(), t, &since).state, DeviceState::BlockPhi { .. });
        match blocked_from(&p, &d, received.as_ref(), &e) {
            Some(t) => {
                prop_assert!(t >= now);
                prop_assert!(blocked(t));
                prop_assert!(t == now || !blocked(t - 1));
            }
            // Nothing blocks it later either (years after every grace period and staleness).
            None => prop_assert!(!blocked(now) && !blocked(now.max(received.as_ref().map_or(0, |r| r.received_at_ms)) + 3 * 366 * 86_400_000)),
        }
    }

    #[test]
    fn samples_hold_at_least_ten_percent_and_repeat(
        ids in prop::collection::vec(any::<u32>(), 0..400),
        seed in any::<u64>(),
        percent in 10u8..=100,
    ) {
        let mut distinct = ids.clone();
        distinct.sort();
        distinct.dedup();
        let sample = spot_check(&ids, seed, percent).unwrap();
        prop_assert_eq!(sample.len(), sample_size(distinct.len(), percent).unwrap());
        prop_assert!(sample.len() * 10 >= distinct.len());
        if !distinct.is_empty() { prop_assert!(!sample.is_empty()); }
        prop_assert!(sample.windows(2).all(|w| w[0] < w[1]));
        prop_assert!(sample.iter().all(|s| distinct.binary_search(s).is_ok()));
        let mut reversed = ids.clone();
        reversed.reverse();
        prop_assert_eq!(&spot_check(&reversed, seed, percent).unwrap(), &sample);
    }
}
