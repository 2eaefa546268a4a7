//! The PKCS#11 key provider against a real SoftHSM 2 token, one token per test (each test's
//! HSM work runs in a child process of its own: see `ward_crypto::testing::SoftHsm`).

use std::sync::Arc;

use uuid::Uuid;
use ward_crypto::aead::new_key_bytes;
use ward_crypto::pkcs11::{Pkcs11KeyProvider, Pkcs11Options};
use ward_crypto::provider::self_test;
use ward_crypto::testing::SoftHsm;
use ward_crypto::{CryptoError, KeyProvider, WrapContext};

fn options(hsm: &SoftHsm) -> Pkcs11Options {
    Pkcs11Options {
        module: hsm.module.clone(),
        token_label: hsm.token_label.clone(),
        pin: Some(hsm.pin.clone()),
        key_label: "ward-kek".into(),
    }
}

fn ctx() -> WrapContext {
    WrapContext { org: Uuid::new_v4(), scope: Uuid::new_v4(), version: 1 }
}

#[tokio::test]
async fn wraps_and_unwraps_inside_the_token() {
    let Some(hsm) = SoftHsm::token("wraps_and_unwraps_inside_the_token") else { return };
    let p = Pkcs11KeyProvider::connect(&options(&hsm)).expect("connect");
    assert_eq!(p.current_kek().await.unwrap(), "pkcs11:ward-kek-v1");
    let key = new_key_bytes();
    let c = ctx();
    let w = p.wrap(&c, &key).await.unwrap();
    assert_eq!(w.kek_id, "pkcs11:ward-kek-v1");
    assert_eq!(w.blob.len(), 12 + 32 + 16, "iv ‖ ct ‖ tag");
    assert!(!w.blob.windows(32).any(|win| win == key.as_ref()), "the key is not in the blob in the clear");
    assert_eq!(p.unwrap(&c, &w).await.unwrap().as_ref(), key.as_ref());
    // A fresh IV each time.
    let w2 = p.wrap(&c, &key).await.unwrap();
    assert_ne!(w.blob, w2.blob);
    self_test(&p).await.expect("self-test");
}

#[tokio::test]
async fn wrapping_is_bound_to_its_context_and_detects_tampering() {
    let Some(hsm) = SoftHsm::token("wrapping_is_bound_to_its_context_and_detects_tampering") else { return };
    let p = Pkcs11KeyProvider::connect(&options(&hsm)).expect("connect");
    let key = new_key_bytes();
    let c = ctx();
    let w = p.wrap(&c, &key).await.unwrap();
    for other in [WrapContext { version: 2, ..c }, WrapContext { scope: Uuid::new_v4(), ..c }, WrapContext { org: Uuid::new_v4(), ..c }] {
        let r = p.unwrap(&other, &w).await;
        assert!(matches!(r, Err(CryptoError::Decrypt)), "{other:?}: {:?}", r.err());
    }
    let mut bad = w.clone();
    bad.blob[20] ^= 1;
    assert!(matches!(p.unwrap(&c, &bad).await, Err(CryptoError::Decrypt)));
    let mut short = w.clone();
    short.blob.pop();
    assert!(p.unwrap(&c, &short).await.is_err());
    let unknown = ward_crypto::WrappedKey { kek_id: "pkcs11:ward-kek-v9".into(), blob: w.blob.clone() };
    assert!(matches!(p.unwrap(&c, &unknown).await, Err(CryptoError::UnknownKek(_))));
}

#[tokio::test]
async fn rotation_keeps_old_versions_and_retirement_destroys_them() {
    let Some(hsm) = SoftHsm::token("rotation_keeps_old_versions_and_retirement_destroys_them") else { return };
    let p = Pkcs11KeyProvider::connect(&options(&hsm)).expect("connect");
    let key = new_key_bytes();
    let c = ctx();
    let old = p.wrap(&c, &key).await.unwrap();
    assert_eq!(p.rotate().await.unwrap(), "pkcs11:ward-kek-v2");
    assert_eq!(p.current_kek().await.unwrap(), "pkcs11:ward-kek-v2");
    let new = p.wrap(&c, &key).await.unwrap();
    assert_eq!(new.kek_id, "pkcs11:ward-kek-v2");
    assert_eq!(p.unwrap(&c, &old).await.unwrap().as_ref(), key.as_ref(), "v1 still unwraps");
    assert_eq!(p.unwrap(&c, &new).await.unwrap().as_ref(), key.as_ref());

    let keks = p.keks().await.unwrap();
    let ids: Vec<_> = keks.iter().map(|k| (k.kek_id.as_str(), k.current)).collect();
    assert_eq!(ids, [("pkcs11:ward-kek-v1", false), ("pkcs11:ward-kek-v2", true)]);

    let refused = p.destroy("pkcs11:ward-kek-v2").await.unwrap_err();
    assert!(refused.to_string().contains("current KEK"), "{refused}");
    p.destroy("pkcs11:ward-kek-v1").await.unwrap();
    assert!(matches!(p.unwrap(&c, &old).await, Err(CryptoError::UnknownKek(_))));
    assert!(matches!(p.destroy("pkcs11:ward-kek-v1").await, Err(CryptoError::UnknownKek(_))));
    assert_eq!(p.keks().await.unwrap().len(), 1);
    assert_eq!(p.unwrap(&c, &new).await.unwrap().as_ref(), key.as_ref());
}

#[tokio::test]
async fn a_second_instance_sees_rotation_done_elsewhere() {
    let Some(hsm) = SoftHsm::token("a_second_instance_sees_rotation_done_elsewhere") else { return };
    // Two providers on one token: the server and `ward keys rotate` (another process in real
    // life; SoftHSM keeps objects in files, so another session sees them the same way).
    let server = Pkcs11KeyProvider::connect(&options(&hsm)).expect("connect");
    let cli = Pkcs11KeyProvider::connect(&options(&hsm)).expect("connect again");
    let key = new_key_bytes();
    let c = ctx();
    assert_eq!(server.wrap(&c, &key).await.unwrap().kek_id, "pkcs11:ward-kek-v1");
    assert_eq!(cli.rotate().await.unwrap(), "pkcs11:ward-kek-v2");
    let w = server.wrap(&c, &key).await.unwrap();
    assert_eq!(w.kek_id, "pkcs11:ward-kek-v2", "the server wraps under the new version at once");
    assert_eq!(cli.unwrap(&c, &w).await.unwrap().as_ref(), key.as_ref());
    assert_eq!(server.current_kek().await.unwrap(), "pkcs11:ward-kek-v2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_tasks_share_the_provider() {
    let Some(hsm) = SoftHsm::token("many_tasks_share_the_provider") else { return };
    let p: Arc<dyn KeyProvider> = ward_crypto::pkcs11::connect(&options(&hsm)).expect("connect");
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            let key = new_key_bytes();
            let c = ctx();
            let w = p.wrap(&c, &key).await.unwrap();
            assert_eq!(p.unwrap(&c, &w).await.unwrap().as_ref(), key.as_ref());
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn a_wrong_pin_or_token_gives_a_clear_error() {
    let Some(hsm) = SoftHsm::token("a_wrong_pin_or_token_gives_a_clear_error") else { return };
    let wrong = Pkcs11Options { pin: Some("not-the-pin".into()), ..options(&hsm) };
    let e = Pkcs11KeyProvider::connect(&wrong).err().expect("a wrong PIN fails");
    assert!(e.to_string().contains("refused the PIN"), "{e}");
    assert!(!e.to_string().contains("not-the-pin"), "the PIN is not echoed");
    let none = Pkcs11Options { pin: None, ..options(&hsm) };
    assert!(Pkcs11KeyProvider::connect(&none).err().expect("no PIN fails").to_string().contains("WARD_KEYS__PKCS11__PIN"));
    let other = Pkcs11Options { token_label: "no-such-token".into(), ..options(&hsm) };
    assert!(Pkcs11KeyProvider::connect(&other).err().expect("unknown token fails").to_string().contains("no-such-token"));
    let module = Pkcs11Options { module: hsm.dir.join("missing.so"), ..options(&hsm) };
    assert!(Pkcs11KeyProvider::connect(&module).err().expect("missing module fails").to_string().contains("cannot load"));
}
