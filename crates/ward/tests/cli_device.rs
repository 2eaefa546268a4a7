//! `ward device profile` as an administrator runs it: the unsigned `.mobileconfig` written to a
//! file or standard output, and refused options. (Every key and value is checked against the
//! baseline by ward-device's plistlib test; this checks the command around it.)

mod support;

use plist::{Dictionary, Value};

use support::{fails, ok, stderr, ward};

fn read(bytes: &[u8]) -> Dictionary {
    Value::from_reader_xml(bytes).expect("an XML plist").into_dictionary().expect("a dictionary at the top")
}

/// The profile's identifiers and UUIDs, top level first.
fn ids_and_uuids(profile: &Dictionary) -> (Vec<String>, Vec<String>) {
    let text = |d: &Dictionary, k: &str| d[k].as_string().expect("a string").to_owned();
    let mut ids = vec![text(profile, "PayloadIdentifier")];
    let mut uuids = vec![text(profile, "PayloadUUID")];
    for p in profile["PayloadContent"].as_array().expect("PayloadContent") {
        let p = p.as_dictionary().expect("a payload");
        ids.push(text(p, "PayloadIdentifier"));
        uuids.push(text(p, "PayloadUUID"));
    }
    (ids, uuids)
}

#[test]
fn profile_to_a_file_has_stable_identifiers_and_fresh_uuids() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = d.join("ward.mobileconfig");
    let args = [
        "device",
        "profile",
        "--org-prefix",
        "org.example.hospital",
        "--bundle-id",
        "org.example.ward",
        "--organisation",
        "Example Hospital",
        "--out",
        out.to_str().unwrap(),
    ];
    let said = ok(ward(d, &args));
    assert!(said.contains("org.example.hospital.ward.baseline") && said.contains("ward.mobileconfig"), "{said}");
    let first = read(&std::fs::read(&out).unwrap());
    ok(ward(d, &args));
    let second = read(&std::fs::read(&out).unwrap());

    let (ids, uuids) = ids_and_uuids(&first);
    let (ids_again, uuids_again) = ids_and_uuids(&second);
    assert_eq!(
        ids,
        [
            "org.example.hospital.ward.baseline",
            "org.example.hospital.ward.baseline.passcode",
            "org.example.hospital.ward.baseline.restrictions",
            "org.example.hospital.ward.baseline.notifications"
        ]
    );
    assert_eq!(ids_again, ids);
    assert!(uuids.iter().all(|u| !uuids_again.contains(u)), "fresh UUIDs each time");

    assert_eq!(first["PayloadType"].as_string(), Some("Configuration"));
    assert_eq!(first["PayloadOrganization"].as_string(), Some("Example Hospital"));
    let payloads = first["PayloadContent"].as_array().unwrap();
    let passcode = payloads[0].as_dictionary().unwrap();
    assert_eq!(passcode["minLength"].as_signed_integer(), Some(6));
    let notifications = payloads[2].as_dictionary().unwrap();
    let app = notifications["NotificationSettings"].as_array().unwrap()[0].as_dictionary().unwrap();
    assert_eq!(app["BundleIdentifier"].as_string(), Some("org.example.ward"));
    assert_eq!(app["PreviewType"].as_signed_integer(), Some(1));
}

#[test]
fn profile_to_stdout_with_defaults_warns_of_the_placeholder_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = ward(d, &["device", "profile", "--no-previews"]);
    assert!(stderr(&o).contains("placeholder prefix com.example"), "{}", stderr(&o));
    let xml = ok(o);
    assert!(xml.starts_with("<?xml"), "{xml}");
    let profile = read(xml.as_bytes());
    assert_eq!(profile["PayloadIdentifier"].as_string(), Some("com.example.ward.baseline"));
    assert!(!profile.contains_key("PayloadOrganization"));
    let notifications = profile["PayloadContent"].as_array().unwrap()[2].as_dictionary().unwrap();
    let app = notifications["NotificationSettings"].as_array().unwrap()[0].as_dictionary().unwrap();
    assert_eq!(app["BundleIdentifier"].as_string(), Some(ward_device::profile::DEFAULT_BUNDLE_ID));
    assert_eq!(app["PreviewType"].as_signed_integer(), Some(2));
}

#[test]
fn bad_options_fail_cleanly_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = d.join("p.mobileconfig");
    let out_arg = out.to_str().unwrap();
    fails(ward(d, &["device", "profile", "--org-prefix", "hospital", "--out", out_arg]), "org_prefix must be reverse-DNS");
    fails(ward(d, &["device", "profile", "--org-prefix", "org.example", "--bundle-id", "ward app", "--out", out_arg]), "bundle_id");
    fails(ward(d, &["device", "profile", "--org-prefix", "org.example", "--organisation", "", "--out", out_arg]), "organisation");
    assert!(!out.exists());
    let missing = d.join("no-such-dir").join("p.mobileconfig");
    fails(ward(d, &["device", "profile", "--org-prefix", "org.example", "--out", missing.to_str().unwrap()]), "cannot write");
}
