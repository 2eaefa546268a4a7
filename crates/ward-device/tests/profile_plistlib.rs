//! The generated `.mobileconfig` read by an independent parser, Python's plistlib, and every
//! key and value checked against the baseline (`shared/spec/device-baseline.md` §1, §2, §5).
//!
//! Needs python3 (or `WARD_TEST_PYTHON`); without it the test prints SKIPPED, except with
//! CI=true, where it fails.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use ward_device::profile::{PreviewSetting, ProfileOptions, RandomUuids, profile_xml};

/// Reads a plist from stdin with plistlib (XML format only) and prints it as JSON with every
/// scalar tagged by its plist type, so a boolean cannot pass for an integer.
const DUMP: &str = r#"
import json, plistlib, sys
def tag(v):
    if isinstance(v, dict): return {k: tag(x) for k, x in v.items()}
    if isinstance(v, list): return [tag(x) for x in v]
    if isinstance(v, bool): return {"bool": v}
    if isinstance(v, int): return {"int": v}
    if isinstance(v, str): return {"string": v}
    return {"other": type(v).__name__}
print(json.dumps(tag(plistlib.loads(sys.stdin.buffer.read(), fmt=plistlib.FMT_XML))))
"#;

fn python() -> Option<String> {
    let python = std::env::var("WARD_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let works = Command::new(&python).args(["-c", "import plistlib"]).output().is_ok_and(|o| o.status.success());
    if works {
        return Some(python);
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(!ci, "python3 with plistlib is required in CI (CI=true)");
    eprintln!("SKIPPED: {python} with plistlib is not available (set WARD_TEST_PYTHON)");
    None
}

fn plistlib(python: &str, xml: &[u8]) -> Value {
    let mut child = Command::new(python)
        .args(["-c", DUMP])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python");
    child.stdin.take().expect("stdin").write_all(xml).expect("write the profile");
    let out = child.wait_with_output().expect("python finished");
    assert!(out.status.success(), "plistlib refused the profile: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON from python")
}

fn b(v: bool) -> Value {
    json!({ "bool": v })
}
fn i(v: i64) -> Value {
    json!({ "int": v })
}
fn s(v: &str) -> Value {
    json!({ "string": v })
}

/// Asserts that `payload` holds exactly the common keys plus `keys`, with these values, and a
/// version 4 UUID; returns the UUID.
fn check_payload(payload: &Value, identifier: &str, payload_type: &str, keys: &[(&str, Value)]) -> String {
    let obj = payload.as_object().expect("payload dictionary");
    let uuid = obj["PayloadUUID"]["string"].as_str().expect("PayloadUUID is a string").to_owned();
    assert_eq!(uuid::Uuid::parse_str(&uuid).expect("a UUID").get_version_num(), 4);
    let mut expected: Vec<(&str, Value)> =
        vec![("PayloadIdentifier", s(identifier)), ("PayloadType", s(payload_type)), ("PayloadVersion", i(1)), ("PayloadUUID", s(&uuid))];
    expected.extend(keys.iter().cloned());
    for (k, v) in &expected {
        assert_eq!(obj.get(*k), Some(v), "{payload_type}: {k}");
    }
    let allowed: Vec<&str> = expected.iter().map(|(k, _)| *k).chain(["PayloadDisplayName", "PayloadDescription"]).collect();
    for k in obj.keys() {
        assert!(allowed.contains(&k.as_str()), "{payload_type}: unexpected key {k}");
    }
    uuid
}

#[test]
fn plistlib_reads_every_baseline_key_and_value() {
    let Some(python) = python() else { return };
    let opts = ProfileOptions::new("org.example.hospital")
        .unwrap()
        .bundle_id("org.example.ward")
        .unwrap()
        .organisation("Example Hospital")
        .unwrap();
    let xml = profile_xml(&opts, &mut RandomUuids).unwrap();
    let top = plistlib(&python, &xml);

    // §5: the top level.
    let content = top["PayloadContent"].as_array().expect("PayloadContent is an array").clone();
    let mut header = top.as_object().expect("top-level dictionary").clone();
    header.remove("PayloadContent");
    let mut uuids = vec![check_payload(
        &Value::Object(header),
        "org.example.hospital.ward.baseline",
        "Configuration",
        &[("PayloadOrganization", s("Example Hospital")), ("TargetDeviceType", i(1))],
    )];
    assert_eq!(content.len(), 3);

    // §1 items 2–4 and §3: the passcode payload.
    uuids.push(check_payload(
        &content[0],
        "org.example.hospital.ward.baseline.passcode",
        "com.apple.mobiledevice.passwordpolicy",
        &[
            ("forcePIN", b(true)),
            ("allowSimple", b(false)),
            ("minLength", i(6)),
            ("requireAlphanumeric", b(true)),
            ("maxFailedAttempts", i(10)),
            ("maxInactivity", i(5)),
            ("maxGracePeriod", i(0)),
        ],
    ));

    // §1 items 5–9 and §2: the restrictions payload.
    uuids.push(check_payload(
        &content[1],
        "org.example.hospital.ward.baseline.restrictions",
        "com.apple.applicationaccess",
        &[
            ("allowCloudBackup", b(false)),
            ("allowCloudPhotoLibrary", b(false)),
            ("allowSharedStream", b(false)),
            ("allowPhotoStream", b(false)),
            ("allowAssistant", b(false)),
            ("allowAssistantWhileLocked", b(false)),
            ("forceEncryptedBackup", b(true)),
            ("allowOpenFromManagedToUnmanaged", b(false)),
            ("requireManagedPasteboard", b(true)),
            ("forceAirDropUnmanaged", b(true)),
            ("allowCloudDocumentSync", b(false)),
            ("allowCloudKeychainSync", b(false)),
            ("allowLockScreenNotificationsView", b(false)),
            ("allowLockScreenTodayView", b(false)),
            ("allowLockScreenControlCenter", b(false)),
            ("allowScreenShot", b(false)),
            ("allowAirDrop", b(false)),
            ("allowOpenFromUnmanagedToManaged", b(false)),
            ("allowManagedAppsCloudSync", b(false)),
            ("allowUnmanagedToReadManagedContacts", b(false)),
        ],
    ));

    // §1 item 1 and §4: previews only when unlocked, for Ward's bundle id.
    uuids.push(check_payload(
        &content[2],
        "org.example.hospital.ward.baseline.notifications",
        "com.apple.notificationsettings",
        &[("NotificationSettings", json!([{ "BundleIdentifier": s("org.example.ward"), "PreviewType": i(1) }]))],
    ));

    uuids.sort();
    uuids.dedup();
    assert_eq!(uuids.len(), 4, "every PayloadUUID is distinct");

    // The stricter preview setting.
    let never = profile_xml(&opts.previews(PreviewSetting::Never), &mut RandomUuids).unwrap();
    let never = plistlib(&python, &never);
    assert_eq!(never["PayloadContent"][2]["NotificationSettings"][0]["PreviewType"], i(2));
}
