//! `ward evidence export` and `ward evidence verify` as an operator and an auditor run them:
//! the bundle verifies offline, and a changed byte, an added or removed file, or another key
//! makes verification fail with one line and a non-zero exit.

mod support;

use std::io::{Read as _, Write as _};
use std::path::Path;

use ward_domain::audit::AuditAction;
use ward_domain::role::Role;
use ward_store::testing::{meta, org, user};

use support::{fails, ok, open_store, ward};

/// The entries of a zip archive, in order.
fn entries(archive: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(archive)).unwrap();
    (0..z.len())
        .map(|i| {
            let mut f = z.by_index(i).unwrap();
            let mut d = Vec::new();
            f.read_to_end(&mut d).unwrap();
            (f.name().to_owned(), d)
        })
        .collect()
}

fn write_zip(path: &Path, entries: &[(String, Vec<u8>)]) {
    let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, data) in entries {
        z.start_file(name.as_str(), opts).unwrap();
        z.write_all(data).unwrap();
    }
    z.finish().unwrap();
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_verifies_offline_and_any_change_fails() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = d.join("data");
    {
        let store = open_store(&data).await;
        let acme = org(&store, "acme").await;
        let doc = user(&store, &acme, "doc@acme", Role::Clinician).await;
        user(&store, &acme, "co@acme", Role::ComplianceOfficer).await;
        store.create_patient(acme.id, doc.user_id, "MRN-4417".into(), "Jamie Quincy-Patient".into(), vec![], meta()).await.unwrap();
    }
    let bundle = d.join("evidence.zip");
    // Without the deployment's signing key (a wrong data_dir) nothing is signed or created.
    fails(ward(d, &["evidence", "export", "--org", "acme", "--out", bundle.to_str().unwrap()]), "no audit signing key");
    assert!(!data.join("audit").join("signing.key").exists() && !bundle.exists());
    ward_server::audit_log::load_or_create_key(&data.join("audit"), &ward_server::Config::default().audit.origin).unwrap();
    let out = ok(ward(d, &["evidence", "export", "--org", "acme", "--out", bundle.to_str().unwrap()]));
    assert!(out.contains("signing key fingerprint"), "{out}");
    // The same file again is refused, nothing overwritten.
    fails(ward(d, &["evidence", "export", "--org", "acme", "--out", bundle.to_str().unwrap()]), "must not exist");
    fails(ward(d, &["evidence", "export", "--org", "nope", "--out", d.join("x.zip").to_str().unwrap()]), "no organisation");

    // The organisation's key, obtained out of band: the audit log's verifier key.
    let vkey: ward_audit::Verifier = std::fs::read_to_string(data.join("audit").join("verifier.vkey")).unwrap().trim().parse().unwrap();
    let key_hex = hex(vkey.public_key());
    let v = ok(ward(d, &["evidence", "verify", bundle.to_str().unwrap(), "--public-key", &key_hex]));
    assert!(v.contains("verified the evidence bundle of acme"), "{v}");
    let pem_path = d.join("org.pem");
    std::fs::write(&pem_path, ward_server::evidence::public_key_pem(vkey.public_key())).unwrap();
    ok(ward(d, &["evidence", "verify", bundle.to_str().unwrap(), "--public-key", pem_path.to_str().unwrap()]));
    ok(ward(d, &["evidence", "verify", bundle.to_str().unwrap()]));
    // No configuration is read: an unreadable one does not stop an auditor.
    let bad = d.join("broken.toml");
    std::fs::write(&bad, "this is = = not toml").unwrap();
    ok(ward(d, &["--config", bad.to_str().unwrap(), "evidence", "verify", bundle.to_str().unwrap(), "--public-key", &key_hex]));

    let archive = std::fs::read(&bundle).unwrap();
    let files = entries(&archive);
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    for want in [
        "manifest.json",
        "manifest.sig",
        "public-key.pem",
        "control-map.json",
        "audit/checkpoint.txt",
        "audit/verifier.vkey",
        "evidence/key-inventory.json",
        "evidence/mfa-coverage.json",
        "evidence/incidents.json",
        "evidence/vendor-register.json",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    // Patient names and MRNs never leave in the bundle.
    let all: Vec<u8> = files.iter().flat_map(|(_, d)| d.clone()).collect();
    let text = String::from_utf8_lossy(&all);
    assert!(!text.contains("Jamie") && !text.contains("Quincy") && !text.contains("MRN-4417"));
    // Missing evidence is listed with its reason, never silently left out.
    let map: serde_json::Value = serde_json::from_slice(&files.iter().find(|(n, _)| n == "control-map.json").unwrap().1).unwrap();
    let review =
        map["controls"].as_array().unwrap().iter().find(|c| c["control"] == "164.308(a)(4)").expect("164.308(a)(4) in the control map");
    assert_eq!(review["evidence"][0]["status"], "included");
    assert_eq!(review["evidence"][0]["files"][0], "evidence/access-reviews.json");
    let results: serde_json::Value =
        serde_json::from_slice(&files.iter().find(|(n, _)| n == "evidence/access-reviews.json").unwrap().1).unwrap();
    assert_eq!(results["cadence_days"], 90);
    assert!(results["campaigns"].is_array(), "{results}");
    // Evidence Ward does not produce is still listed with its reason.
    let activity =
        map["controls"].as_array().unwrap().iter().find(|c| c["control"] == "164.308(a)(1)(ii)(D)").expect("activity review in the map");
    assert_eq!(activity["evidence"][1]["status"], "not_available");
    // The bundled checkpoint verifies with the bundled verifier key.
    let cp = &files.iter().find(|(n, _)| n == "audit/checkpoint.txt").unwrap().1;
    ward_audit::note::open(cp, std::slice::from_ref(&vkey)).expect("checkpoint signed by the log key");

    // A changed byte in one file.
    let mut tampered = archive.clone();
    let at = tampered.windows(10).position(|w| w == b"\"controls\"").expect("control map bytes");
    tampered[at + 2] ^= 0x01;
    let t = d.join("tampered.zip");
    std::fs::write(&t, &tampered).unwrap();
    fails(ward(d, &["evidence", "verify", t.to_str().unwrap(), "--public-key", &key_hex]), "control-map.json");
    // The same change with a recomputed entry (a well-formed zip): the hash catches it.
    let mut changed = files.clone();
    for (n, data) in &mut changed {
        if n == "evidence/users.json" {
            data[3] ^= 0x20;
        }
    }
    let c = d.join("changed.zip");
    write_zip(&c, &changed);
    fails(ward(d, &["evidence", "verify", c.to_str().unwrap()]), "does not match the manifest: evidence/users.json");
    // An added file.
    let mut added = files.clone();
    added.push(("evidence/extra.json".into(), b"{}".to_vec()));
    let a = d.join("added.zip");
    write_zip(&a, &added);
    fails(ward(d, &["evidence", "verify", a.to_str().unwrap()]), "not in the manifest: evidence/extra.json");
    // A removed file.
    let removed: Vec<_> = files.iter().filter(|(n, _)| n != "evidence/devices.json").cloned().collect();
    let r = d.join("removed.zip");
    write_zip(&r, &removed);
    fails(ward(d, &["evidence", "verify", r.to_str().unwrap()]), "missing file: evidence/devices.json");
    // Another key given by the auditor.
    let other = ward_audit::Signer::from_seed("other.example/log", &[9; 32]).unwrap();
    fails(
        ward(d, &["evidence", "verify", bundle.to_str().unwrap(), "--public-key", &hex(other.verifier().public_key())]),
        "not the expected key",
    );
    // The key in the bundle swapped for another (and the manifest re-signed by it): refused
    // against the organisation's key.
    let mut swapped = files.clone();
    let manifest = swapped.iter().find(|(n, _)| n == "manifest.json").unwrap().1.clone();
    let sig = other.sign_detached(&[ward_server::evidence::SIGNATURE_CONTEXT, &manifest].concat());
    for (n, data) in &mut swapped {
        match n.as_str() {
            "manifest.sig" => *data = sig.to_vec(),
            "public-key.pem" => *data = ward_server::evidence::public_key_pem(other.verifier().public_key()).into_bytes(),
            _ => {}
        }
    }
    let s = d.join("swapped.zip");
    write_zip(&s, &swapped);
    fails(ward(d, &["evidence", "verify", s.to_str().unwrap(), "--public-key", &key_hex]), "not the expected key");
    // Without a pinned key the fingerprint in the manifest no longer matches the key.
    fails(ward(d, &["evidence", "verify", s.to_str().unwrap()]), "public-key.pem");
    // Only the key swapped: the signature fails.
    let mut key_only = files.clone();
    for (n, data) in &mut key_only {
        if n == "public-key.pem" {
            *data = ward_server::evidence::public_key_pem(other.verifier().public_key()).into_bytes();
        }
    }
    let k = d.join("key-only.zip");
    write_zip(&k, &key_only);
    fails(ward(d, &["evidence", "verify", k.to_str().unwrap()]), "signature does not verify");
    fails(ward(d, &["evidence", "verify", d.join("nothing.zip").to_str().unwrap()]), "cannot read");
    fails(ward(d, &["evidence", "verify", bundle.to_str().unwrap(), "--public-key", "zz"]), "Ed25519 public key");

    // The export is audited with codes and counts, and the bundled checkpoint covers it.
    let store = open_store(&data).await;
    let events = store.audit_events(0, 10_000).await.unwrap();
    let ev = events.iter().rev().find(|e| e.action == AuditAction::EvidenceExport.as_str()).expect("evidence.export audited");
    let cp_size: u64 = String::from_utf8_lossy(cp).lines().nth(1).unwrap().parse().unwrap();
    assert!((ev.idx as u64) < cp_size, "the checkpoint covers the export event");
}
