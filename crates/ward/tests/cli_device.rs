//! `ward device profile` as an administrator runs it: the unsigned `.mobileconfig` written to a
//! file or standard output, the CMS-signed one (verified by OpenSSL when it is on PATH: without
//! it that part prints SKIPPED, except with CI=true, where it fails), and refused options. (Every key and value is checked against the
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

/// A self-signed ECDSA P-256 signing certificate and its key, as PEM files in `d`.
fn signing_files(d: &std::path::Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["profiles.example.org".into()]).unwrap().self_signed(&key).unwrap();
    let (c, k) = (d.join(format!("{name}.crt")), d.join(format!("{name}.key")));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

#[test]
fn signed_profile_verifies_with_openssl_and_carries_the_profile() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (cert, key) = signing_files(d, "signer");
    let out = d.join("signed.mobileconfig");
    let args = [
        "device",
        "profile",
        "--org-prefix",
        "org.example.hospital",
        "--sign-cert",
        cert.to_str().unwrap(),
        "--sign-key",
        key.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    let said = ok(ward(d, &args));
    assert!(said.contains("signed profile org.example.hospital.ward.baseline"), "{said}");
    let signed = std::fs::read(&out).unwrap();
    assert_eq!(signed[0], 0x30, "DER: a SEQUENCE (ContentInfo)");

    let have_openssl = std::process::Command::new("openssl").arg("version").output().is_ok_and(|o| o.status.success());
    if !have_openssl {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        assert!(!ci, "openssl is required in CI (CI=true)");
        eprintln!("SKIPPED: openssl is not on PATH; the signed profile was not verified independently");
        return;
    }
    let content = d.join("content.plist");
    let o = std::process::Command::new("openssl")
        .args(["cms", "-verify", "-binary", "-inform", "DER", "-purpose", "any", "-in"])
        .arg(&out)
        .arg("-CAfile")
        .arg(&cert)
        .arg("-out")
        .arg(&content)
        .output()
        .unwrap();
    assert!(o.status.success(), "openssl refused the signature: {}", String::from_utf8_lossy(&o.stderr));
    let xml = std::fs::read(&content).unwrap();
    // The signed content is the unsigned profile, byte for byte inside the envelope.
    assert!(signed.windows(xml.len()).any(|w| w == xml.as_slice()));
    let profile = read(&xml);
    let (ids, _) = ids_and_uuids(&profile);
    assert_eq!(ids[0], "org.example.hospital.ward.baseline");
    assert_eq!(profile["PayloadContent"].as_array().unwrap()[0].as_dictionary().unwrap()["minLength"].as_signed_integer(), Some(6));
}

#[test]
fn signing_needs_both_files_and_a_matching_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (cert, _) = signing_files(d, "one");
    let (_, other_key) = signing_files(d, "two");
    let out = d.join("p.mobileconfig");
    let base = ["device", "profile", "--org-prefix", "org.example", "--out", out.to_str().unwrap()];
    fn with<'a>(base: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
        base.iter().chain(extra).copied().collect()
    }
    // A usage error from the argument parser (several lines, as for every usage error).
    let o = ward(d, &with(&base, &["--sign-cert", cert.to_str().unwrap()]));
    assert!(!o.status.success() && stderr(&o).contains("--sign-key"), "{}", stderr(&o));
    fails(ward(d, &with(&base, &["--sign-cert", cert.to_str().unwrap(), "--sign-key", other_key.to_str().unwrap()])), "does not belong");
    fails(
        ward(d, &with(&base, &["--sign-cert", other_key.to_str().unwrap(), "--sign-key", other_key.to_str().unwrap()])),
        "not a CERTIFICATE",
    );
    let missing = d.join("missing.pem");
    fails(ward(d, &with(&base, &["--sign-cert", missing.to_str().unwrap(), "--sign-key", other_key.to_str().unwrap()])), "cannot read");
    assert!(!out.exists(), "nothing written");
}
