//! The KMS key provider against moto's server (a local KMS on 127.0.0.1), one server per test.

use uuid::Uuid;
use ward_crypto::aead::new_key_bytes;
use ward_crypto::kms::{KmsKeyProvider, KmsOptions};
use ward_crypto::provider::self_test;
use ward_crypto::testing::MotoServer;
use ward_crypto::{CryptoError, KeyProvider, WrapContext};

fn options(moto: &MotoServer) -> KmsOptions {
    KmsOptions {
        region: "us-east-1".into(),
        endpoint: Some(moto.endpoint().to_owned()),
        key_id: "alias/ward-kek".into(),
        access_key_id: Some("testing".into()),
        secret_access_key: Some("testing-secret".into()),
    }
}

fn ctx() -> WrapContext {
    WrapContext { org: Uuid::new_v4(), scope: Uuid::new_v4(), version: 1 }
}

#[tokio::test]
async fn wraps_and_unwraps_with_the_alias_key() {
    let Some(moto) = MotoServer::start() else { return };
    let p = KmsKeyProvider::connect(&options(&moto)).await.expect("connect creates the key and alias");
    let current = p.current_kek().await.unwrap();
    assert!(current.starts_with("kms:arn:aws:kms:us-east-1:"), "{current}");
    let key = new_key_bytes();
    let c = ctx();
    let w = p.wrap(&c, &key).await.unwrap();
    assert_eq!(w.kek_id, current);
    assert_eq!(p.unwrap(&c, &w).await.unwrap().as_ref(), key.as_ref());
    self_test(&p).await.expect("self-test");
    // Connecting again finds the same key.
    let again = KmsKeyProvider::connect(&options(&moto)).await.unwrap();
    assert_eq!(again.current_kek().await.unwrap(), current);
    assert_eq!(again.unwrap(&c, &w).await.unwrap().as_ref(), key.as_ref());
}

#[tokio::test]
async fn wrapping_is_bound_to_its_context() {
    let Some(moto) = MotoServer::start() else { return };
    let p = KmsKeyProvider::connect(&options(&moto)).await.unwrap();
    let key = new_key_bytes();
    let c = ctx();
    let w = p.wrap(&c, &key).await.unwrap();
    for other in [WrapContext { version: 2, ..c }, WrapContext { scope: Uuid::new_v4(), ..c }, WrapContext { org: Uuid::new_v4(), ..c }] {
        assert!(matches!(p.unwrap(&other, &w).await, Err(CryptoError::Decrypt)), "{other:?}");
    }
    let mut bad = w.clone();
    let n = bad.blob.len();
    bad.blob[n - 5] ^= 1;
    assert!(p.unwrap(&c, &bad).await.is_err());
}

#[tokio::test]
async fn rotation_moves_the_alias_and_keeps_old_keys() {
    let Some(moto) = MotoServer::start() else { return };
    let p = KmsKeyProvider::connect(&options(&moto)).await.unwrap();
    let first = p.current_kek().await.unwrap();
    let key = new_key_bytes();
    let c = ctx();
    let old = p.wrap(&c, &key).await.unwrap();
    let second = p.rotate().await.unwrap();
    assert_ne!(second, first);
    assert_eq!(p.current_kek().await.unwrap(), second);
    let new = p.wrap(&c, &key).await.unwrap();
    assert_eq!(new.kek_id, second);
    assert_eq!(p.unwrap(&c, &old).await.unwrap().as_ref(), key.as_ref(), "the old key still decrypts");

    let keks = p.keks().await.unwrap();
    let ids: Vec<_> = keks.iter().map(|k| (k.kek_id.clone(), k.current)).collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids.contains(&(first.clone(), false)) && ids.contains(&(second.clone(), true)), "{ids:?}");
    assert!(keks.iter().all(|k| k.created_at.is_some()));

    // Retirement: the current key is refused; an old one is scheduled for deletion and leaves
    // the inventory. (KMS refuses Decrypt with a key pending deletion; moto does not model
    // that, so it is not checked here.)
    assert!(p.destroy(&second).await.unwrap_err().to_string().contains("current KEK"));
    p.destroy(&first).await.unwrap();
    let after: Vec<_> = p.keks().await.unwrap().into_iter().map(|k| k.kek_id).collect();
    assert_eq!(after, std::slice::from_ref(&second));
    assert!(matches!(p.destroy(&first).await, Err(CryptoError::UnknownKek(_))));
    assert_eq!(p.unwrap(&c, &new).await.unwrap().as_ref(), key.as_ref());
}

#[tokio::test]
async fn a_second_instance_sees_rotation_done_elsewhere() {
    let Some(moto) = MotoServer::start() else { return };
    let server = KmsKeyProvider::connect(&options(&moto)).await.unwrap();
    let cli = KmsKeyProvider::connect(&options(&moto)).await.unwrap();
    let key = new_key_bytes();
    let c = ctx();
    let before = server.wrap(&c, &key).await.unwrap();
    let rotated = cli.rotate().await.unwrap();
    assert_ne!(before.kek_id, rotated);
    let after = server.wrap(&c, &key).await.unwrap();
    assert_eq!(after.kek_id, rotated, "the server wraps under the new key at once");
    assert_eq!(cli.unwrap(&c, &after).await.unwrap().as_ref(), key.as_ref());
}

#[tokio::test]
async fn configuration_mistakes_are_explained() {
    let Some(moto) = MotoServer::start() else { return };
    let half = KmsOptions { secret_access_key: None, ..options(&moto) };
    assert!(KmsKeyProvider::connect(&half).await.err().unwrap().to_string().contains("set both or neither"));
    let no_region = KmsOptions { region: String::new(), ..options(&moto) };
    assert!(KmsKeyProvider::connect(&no_region).await.err().unwrap().to_string().contains("region"));
    // A key id that is not an alias: usable, but rotation needs an alias.
    let p = KmsKeyProvider::connect(&options(&moto)).await.unwrap();
    let arn = p.current_kek().await.unwrap().trim_start_matches("kms:").to_owned();
    let direct = KmsKeyProvider::connect(&KmsOptions { key_id: arn, ..options(&moto) }).await.unwrap();
    self_test(&direct).await.unwrap();
    assert!(direct.rotate().await.unwrap_err().to_string().contains("not an alias"));
    let shown = format!("{:?}", options(&moto));
    assert!(!shown.contains("testing-secret"), "{shown}");
}
