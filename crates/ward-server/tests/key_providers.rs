//! The server with each key provider: the local key file, a SoftHSM 2 token over PKCS#11 and
//! moto's KMS. Each starts the server the way `ward serve` does, sends a message and reads it
//! back, and checks that the data keys are wrapped by the configured provider.

mod common;

use common::Harness;
use ward_crypto::testing::{MotoServer, SoftHsm};
use ward_domain::role::Role;
use ward_server::config::KeyProviderKind;

/// Sends a message and reads it back; returns the KEK ids the data keys are wrapped under.
async fn message_round_trip(h: &Harness) -> Vec<String> {
    let org = h.org("keys", vec![]).await;
    let a = h.account(&org, "alice", Role::Clinician).await;
    let b = h.account(&org, "bob", Role::Clinician).await;
    let sa = h.login(&a).await;
    let sb = h.login(&b).await;
    let conv = h.conversation(&sa, "group", &[&b]).await;
    let body = "canary-provider-body: potassium 6.1, recheck";
    let sent = h.send(&sa, &conv, "t1", body).await.expect(201);
    let id = sent.body["id"].as_str().unwrap().to_owned();
    let got = h.get(&format!("/api/v1/conversations/{conv}/messages/{id}"), &sb.access).await.expect(200);
    assert_eq!(got.body["body"], body);
    let keys = h.store.data_key_inventory(None, 100).await.unwrap();
    assert!(!keys.is_empty(), "sealing made data keys");
    keys.into_iter().filter_map(|k| k.kek_id).collect()
}

#[tokio::test]
async fn file_provider() {
    let h = Harness::start_with_config(|c| c.keys.provider = KeyProviderKind::File).await;
    let keks = message_round_trip(&h).await;
    assert!(keks.iter().all(|k| k.starts_with("file:v")), "{keks:?}");
    assert!(h.db.dir.path().join("keys").join("kek.json").exists());
}

#[tokio::test]
async fn pkcs11_provider_on_softhsm() {
    let Some(hsm) = SoftHsm::token("pkcs11_provider_on_softhsm") else { return };
    let h = Harness::start_with_config(|c| {
        c.keys.provider = KeyProviderKind::Pkcs11;
        c.keys.pkcs11.module = hsm.module.clone();
        c.keys.pkcs11.token_label = hsm.token_label.clone();
        c.keys.pkcs11.pin = Some(hsm.pin.clone());
    })
    .await;
    let keks = message_round_trip(&h).await;
    assert!(keks.iter().all(|k| k == "pkcs11:ward-kek-v1"), "{keks:?}");
}

#[tokio::test]
async fn kms_provider_on_moto() {
    let Some(moto) = MotoServer::start() else { return };
    let h = Harness::start_with_config(|c| {
        c.keys.provider = KeyProviderKind::Kms;
        c.keys.kms.region = "us-east-1".into();
        c.keys.kms.endpoint = Some(moto.endpoint().to_owned());
        c.keys.kms.key_id = "alias/ward-kek".into();
        c.keys.kms.access_key_id = Some("testing".into());
        c.keys.kms.secret_access_key = Some("testing-secret".into());
    })
    .await;
    let keks = message_round_trip(&h).await;
    assert!(keks.iter().all(|k| k.starts_with("kms:arn:aws:kms:us-east-1:")), "{keks:?}");
}
