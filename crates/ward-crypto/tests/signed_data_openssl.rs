//! CMS SignedData checked by an independent implementation: OpenSSL's `cms -verify` accepts
//! Ward's signature (ECDSA P-256 and RSA), trusting the signer's self-signed certificate, and
//! extracts exactly the content that was signed; a flipped byte fails verification.
//!
//! Needs `openssl` on PATH (Debian's package); without it the test prints SKIPPED, except with
//! CI=true, where it fails.

use std::process::Command;
use std::time::SystemTime;

use ward_crypto::signed_data::CmsSigner;

fn openssl() -> bool {
    if Command::new("openssl").arg("version").output().is_ok_and(|o| o.status.success()) {
        return true;
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(!ci, "openssl is required in CI (CI=true)");
    eprintln!("SKIPPED: openssl is not on PATH");
    false
}

/// Runs `openssl cms -verify` on `signed` with `ca` as the only trust anchor; the extracted
/// content, or None if verification failed.
fn verify(dir: &std::path::Path, signed: &[u8], ca_pem: &str) -> Option<Vec<u8>> {
    let (input, ca, out) = (dir.join("signed.der"), dir.join("ca.pem"), dir.join("content"));
    std::fs::write(&input, signed).unwrap();
    std::fs::write(&ca, ca_pem).unwrap();
    let _ = std::fs::remove_file(&out);
    let o = Command::new("openssl")
        .args(["cms", "-verify", "-binary", "-inform", "DER", "-purpose", "any", "-in"])
        .arg(&input)
        .arg("-CAfile")
        .arg(&ca)
        .arg("-out")
        .arg(&out)
        .output()
        .unwrap();
    if !o.status.success() {
        eprintln!("openssl: {}", String::from_utf8_lossy(&o.stderr));
        return None;
    }
    Some(std::fs::read(&out).unwrap())
}

#[test]
fn openssl_verifies_ecdsa_and_rsa_signatures_and_extracts_the_content() {
    if !openssl() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let content = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<plist version=\"1.0\"><dict><key>PayloadType</key><string>Configuration</string></dict></plist>\n";
    for alg in [&rcgen::PKCS_ECDSA_P256_SHA256, &rcgen::PKCS_RSA_SHA256] {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["profiles.example.org".into()]).unwrap().self_signed(&key).unwrap();
        let signer = CmsSigner::from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes()).unwrap();
        let signed = signer.sign_attached(content, SystemTime::now()).unwrap();
        let extracted = verify(dir.path(), &signed, &cert.pem()).unwrap_or_else(|| panic!("openssl refused the {alg:?} signature"));
        assert_eq!(extracted, content);
        // Any changed byte of the content breaks the signature.
        let at = signed.windows(11).position(|w| w == b"PayloadType").unwrap();
        let mut tampered = signed.clone();
        tampered[at] ^= 0x20;
        assert!(verify(dir.path(), &tampered, &cert.pem()).is_none(), "a tampered profile verified");
    }
}
