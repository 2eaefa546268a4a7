//! The evidence bundle over real HTTPS: compliance officers and admins with a fresh step-up
//! get a signed zip that verifies offline against the deployment's audit key; a changed byte,
//! an added or removed file, or another key fail verification; other roles are refused and
//! audited; no patient name or MRN is in the bundle.

mod common;

use std::io::{Read as _, Write as _};

use common::Harness;
use serde_json::json;
use ward_domain::role::Role;
use ward_server::evidence::{self, EvidenceError};
use ward_store::{Backend, on_both_backends};

on_both_backends!(evidence_bundle_over_http);

async fn export(h: &Harness, token: &str) -> (reqwest::StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let r = h.http.post(format!("{}/api/v1/evidence/export", h.url)).bearer_auth(token).send().await.unwrap();
    let status = r.status();
    let headers = r.headers().clone();
    (status, headers, r.bytes().await.unwrap().to_vec())
}

fn rebuild(archive: &[u8], keep: impl Fn(&str, Vec<u8>) -> Option<Vec<u8>>, add: Option<(&str, &[u8])>) -> Vec<u8> {
    let mut zin = zip::ZipArchive::new(std::io::Cursor::new(archive)).unwrap();
    let mut zout = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for i in 0..zin.len() {
        let mut f = zin.by_index(i).unwrap();
        let name = f.name().to_owned();
        let mut data = Vec::new();
        f.read_to_end(&mut data).unwrap();
        if let Some(data) = keep(&name, data) {
            zout.start_file(name, opts).unwrap();
            zout.write_all(&data).unwrap();
        }
    }
    if let Some((name, data)) = add {
        zout.start_file(name, opts).unwrap();
        zout.write_all(data).unwrap();
    }
    zout.finish().unwrap().into_inner()
}

async fn evidence_bundle_over_http(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let org = h.org("acme", vec![]).await;
    let co = h.account(&org, "co@acme", Role::ComplianceOfficer).await;
    let admin = h.account(&org, "admin@acme", Role::Admin).await;
    let doc = h.account(&org, "doc@acme", Role::Clinician).await;
    let s_doc = h.login(&doc).await;
    let p = h
        .post(
            "/api/v1/patients",
            &s_doc.access,
            json!({"mrn": "MRN-90210", "display_name": "Quentin Zebulon-Patient", "care_team": [doc.id]}),
        )
        .await;
    assert!(p.status.is_success(), "{:?}", p.body);

    // Free text that may carry PHI: a device's name, a legal hold's matter.
    h.call(
        reqwest::Method::POST,
        "/api/v1/auth/login",
        None,
        Some(json!({"login": doc.login, "password": common::PASSWORD, "device": {"name": "CanaryDevice-Xyloph", "platform": "ios"}})),
    )
    .await
    .expect(200);
    let s_officer = h.login(&co).await;
    h.post(
        "/api/v1/legal-holds",
        &s_officer.access,
        json!({"subject_kind": "user", "subject_id": doc.id, "reason": "CanaryHold-Quixotic"}),
    )
    .await
    .expect(201);
    // An access review with a revocation whose note is free text: the decision and its reason
    // code are evidence, the note stays out.
    let temp = h.account(&org, "temp@acme", Role::Staff).await;
    let reviewer = ward_domain::policy::Actor { user_id: admin.id, org_id: org.id, role: Role::Admin };
    let campaign = h.store.open_access_review(org.id, admin.id, Harness::meta()).await.unwrap();
    let revoke = ward_domain::access_review::ItemDecision::Revoke {
        reason: ward_domain::access_review::RevokeReason::Other,
        note: Some("CanaryReview-Quixotic".into()),
    };
    h.store.decide_access_review(reviewer, campaign.id, temp.id, revoke, Harness::meta()).await.unwrap();

    // A clinician is refused, and the refusal audited.
    let (status, _, _) = export(&h, &s_doc.access).await;
    assert_eq!(status, 403);
    // A compliance officer without a second-factor verification is refused.
    let s_co = h.login(&co).await;
    let (status, _, body) = export(&h, &s_co.access).await;
    assert_eq!(status, 403);
    assert!(String::from_utf8_lossy(&body).contains("mfa_enrollment_required"));
    h.step_up(&s_co).await;
    let (status, headers, archive) = export(&h, &s_co.access).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/zip");
    let fp = headers["x-ward-evidence-key"].to_str().unwrap().to_owned();
    // The deployment's key, obtained out of band: the audit log's verifier.
    let key = *h.running.as_ref().unwrap().state.audit.verifier().public_key();
    let v = evidence::verify(&archive, Some(&key)).expect("bundle verifies");
    assert_eq!(v.fingerprint, fp);
    assert_eq!(v.manifest.org.slug, "acme");
    let text = String::from_utf8_lossy(&archive);
    assert!(!text.contains("Quentin") && !text.contains("Zebulon") && !text.contains("MRN-90210"));
    // Stored entries: every file's bytes are in the archive as they are.
    for canary in ["CanaryDevice", "Xyloph", "CanaryHold", "Quixotic"] {
        assert!(!text.contains(canary), "{canary} in the bundle");
    }
    assert!(text.contains("not_available"));
    // Deployment-wide figures (other tenants' data-key counts, the audit archive segments)
    // stay out of an organisation's bundle.
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(archive.clone())).unwrap();
    let mut keys = String::new();
    std::io::Read::read_to_string(&mut zip.by_name("evidence/key-inventory.json").unwrap(), &mut keys).unwrap();
    let keys: serde_json::Value = serde_json::from_str(&keys).unwrap();
    assert!(keys["data_keys"].as_str().is_some_and(|t| t.contains("operator")), "{keys}");
    assert!(keys["keks"].is_array(), "{keys}");
    let mut reviews = String::new();
    std::io::Read::read_to_string(&mut zip.by_name("evidence/access-reviews.json").unwrap(), &mut reviews).unwrap();
    let reviews: serde_json::Value = serde_json::from_str(&reviews).unwrap();
    let items = reviews["campaigns"][0]["items"].as_array().unwrap();
    let temp_item = items.iter().find(|i| i["user_id"] == temp.id.to_string()).expect("the revoked account's item");
    assert_eq!((temp_item["decision"].as_str(), temp_item["reason"].as_str()), (Some("revoke"), Some("other")));
    assert!(temp_item.get("note").is_none(), "{temp_item}");

    // Tampering of every kind is caught.
    let flipped = rebuild(
        &archive,
        |n, mut d| {
            if n == "evidence/mfa-coverage.json" {
                d[2] ^= 1;
            }
            Some(d)
        },
        None,
    );
    assert_eq!(evidence::verify(&flipped, Some(&key)).unwrap_err(), EvidenceError::Mismatch("evidence/mfa-coverage.json".into()));
    let added = rebuild(&archive, |_, d| Some(d), Some(("evidence/more.json", b"[]")));
    assert_eq!(evidence::verify(&added, Some(&key)).unwrap_err(), EvidenceError::Extra("evidence/more.json".into()));
    let removed = rebuild(&archive, |n, d| (n != "audit/checkpoint.txt").then_some(d), None);
    assert_eq!(evidence::verify(&removed, Some(&key)).unwrap_err(), EvidenceError::Missing("audit/checkpoint.txt".into()));
    let other = *ward_audit::Signer::from_seed("other/log", &[3; 32]).unwrap().verifier().public_key();
    assert!(matches!(evidence::verify(&archive, Some(&other)), Err(EvidenceError::WrongKey { .. })));

    // Admins may export too; the exports and the refusal are audited with codes only.
    let s_admin = h.login_stepped_up(&admin).await;
    assert_eq!(export(&h, &s_admin.access).await.0, 200);
    let events = h.store.audit_events(0, 100_000).await.unwrap();
    let exports: Vec<_> = events.iter().filter(|e| e.action == "evidence.export").collect();
    assert_eq!(exports.iter().filter(|e| e.outcome == "success").count(), 2);
    assert_eq!(exports.iter().filter(|e| e.outcome == "denied").count(), 1);
    for e in exports {
        let d = &e.detail;
        assert!(!d.contains("Quentin") && !d.contains("MRN"), "{d}");
    }
}
