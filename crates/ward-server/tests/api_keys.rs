//! The key inventory over real HTTPS: compliance officers and admins read the key provider and
//! its KEK versions, never key material and never the deployment-wide data-key counts; other
//! roles are refused; every read and refusal is audited as `keys.inventory`. Also the audit
//! log's verifier key, which checks the signed checkpoint the API returns.

mod common;

use base64::Engine as _;
use common::Harness;
use ward_domain::role::Role;
use ward_store::{Backend, on_both_backends};

on_both_backends!(key_inventory_for_officers_only_and_audited, verifier_key_checks_the_checkpoint);

async fn key_inventory_for_officers_only_and_audited(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let org = h.org("keys", vec![]).await;
    let co = h.login(&h.account(&org, "co@keys", Role::ComplianceOfficer).await).await;
    let admin = h.login(&h.account(&org, "admin@keys", Role::Admin).await).await;
    let nurse = h.login(&h.account(&org, "nurse@keys", Role::Nurse).await).await;
    // A conversation gives the deployment a data key to (not) count.
    let alice = h.account(&org, "alice@keys", Role::Clinician).await;
    let a = h.login(&alice).await;
    let conv = h.conversation(&a, "group", &[&nurse.account]).await;
    h.send(&a, &conv, "k-1", "keys canary text").await.expect(201);

    h.get("/api/v1/keys", &nurse.access).await.expect_problem(403, "forbidden");
    for s in [&co, &admin] {
        let body = h.get("/api/v1/keys", &s.access).await.expect(200).body;
        // The harness's keyring is in memory; deployments say `file`, `pkcs11` or `kms`.
        assert_eq!(body["provider"], "memory", "{body}");
        let keks = body["keks"].as_array().unwrap();
        assert!(!keks.is_empty(), "{body}");
        assert_eq!(keks.iter().filter(|k| k["current"] == true).count(), 1, "one current KEK: {body}");
        for k in keks {
            let fields: Vec<&String> = k.as_object().unwrap().keys().collect();
            assert_eq!(fields, ["created_at", "current", "kek_id"], "ids and dates only: {k}");
            // An opaque label, never the provider's id (a KMS ARN names the cloud account).
            let label = k["kek_id"].as_str().unwrap();
            let hex = label.strip_prefix("kek-").unwrap_or_else(|| panic!("an opaque label: {label}"));
            assert!(hex.len() == 12 && hex.bytes().all(|b| b.is_ascii_hexdigit()), "{label}");
        }
        assert!(body.get("data_keys").is_none() && body.get("keys").is_none(), "no deployment-wide counts: {body}");
    }

    let events = h.store.audit_events(0, 100_000).await.unwrap();
    let count = |outcome: &str| events.iter().filter(|e| e.action == "keys.inventory" && e.outcome == outcome).count();
    assert_eq!((count("success"), count("denied")), (2, 1));
}

async fn verifier_key_checks_the_checkpoint(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let org = h.org("vkey", vec![]).await;
    let co = h.login(&h.account(&org, "co@vkey", Role::ComplianceOfficer).await).await;
    let nurse = h.login(&h.account(&org, "nurse@vkey", Role::Nurse).await).await;
    h.get("/api/v1/audit/verifier-key", &nurse.access).await.expect_problem(403, "forbidden");
    let vk = h.get("/api/v1/audit/verifier-key", &co.access).await.expect(200).body;
    let cp = h.get("/api/v1/audit/checkpoint", &co.access).await.expect(200).body;
    assert_eq!(vk["origin"], cp["origin"]);
    // The key parses as a note verifier and checks the checkpoint's signature line.
    let verifier: ward_audit::note::Verifier = vk["vkey"].as_str().unwrap().parse().expect("a C2SP verifier key");
    let note = cp["note"].as_str().unwrap();
    let (text, sigs) = note.split_once("\n\n").unwrap();
    let body = format!("{text}\n");
    let line = sigs.lines().find(|l| l.starts_with(&format!("\u{2014} {} ", verifier.name()))).expect("a signature by the key");
    let raw = base64::engine::general_purpose::STANDARD.decode(line.rsplit(' ').next().unwrap()).unwrap();
    assert_eq!(u32::from_be_bytes(raw[..4].try_into().unwrap()), verifier.key_id());
    assert!(verifier.verify(body.as_bytes(), &raw[4..]), "the signature verifies");
    assert!(!verifier.verify(b"tampered\n", &raw[4..]));
    let events = h.store.audit_events(0, 100_000).await.unwrap();
    assert!(events.iter().any(|e| e.action == "audit.read" && e.outcome == "denied"));
}
