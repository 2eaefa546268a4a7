//! One rewrap (unwrap under the old KEK, wrap under the current one) with each key provider:
//! the local key file, SoftHSM 2 over PKCS#11 and moto's KMS (for the lead's docs/benchmarks.md).
//!
//! `WARD_TEST_MOTO=target/test-venv/bin/moto_server WARD_TEST_SOFTHSM_MODULE=/usr/lib/softhsm/libsofthsm2.so \
//!  WARD_TEST_SOFTHSM_UTIL=softhsm2-util cargo bench -p ward-crypto --bench providers`
//!
//! A provider whose peer is not configured is left out (with a note). SoftHSM reads
//! `SOFTHSM2_CONF` when it loads, so the bench makes a token in a temporary directory and runs
//! itself again with `SOFTHSM2_CONF` pointing at it.

#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::Criterion;
use uuid::Uuid;
use ward_crypto::aead::new_key_bytes;
use ward_crypto::kms::KmsOptions;
use ward_crypto::pkcs11::Pkcs11Options;
use ward_crypto::testing::{MotoServer, SoftHsm};
use ward_crypto::{FileKeyProvider, KeyProvider, WrapContext};

fn rewrap(c: &mut Criterion, rt: &tokio::runtime::Runtime, name: &str, p: Arc<dyn KeyProvider>) {
    let ctx = WrapContext { org: Uuid::new_v4(), scope: Uuid::new_v4(), version: 1 };
    let wrapped = rt.block_on(p.wrap(&ctx, &new_key_bytes())).expect("wrap");
    rt.block_on(p.rotate()).expect("rotate");
    c.bench_function(&format!("rewrap/{name}"), |b| {
        b.iter(|| {
            rt.block_on(async {
                let key = p.unwrap(&ctx, &wrapped).await.expect("unwrap");
                black_box(p.wrap(&ctx, &key).await.expect("wrap"))
            })
        })
    });
}

fn main() {
    // Re-run with a SoftHSM token of our own when one can be made.
    if std::env::var_os("SOFTHSM2_CONF").is_none()
        && let Ok(util) = std::env::var("WARD_TEST_SOFTHSM_UTIL")
        && std::env::var_os("WARD_TEST_SOFTHSM_MODULE").is_some()
    {
        let dir = tempfile::tempdir().expect("temporary directory");
        let conf = SoftHsm::create_token(&util, dir.path());
        let status = std::process::Command::new(std::env::current_exe().expect("own path"))
            .args(std::env::args_os().skip(1))
            .env("SOFTHSM2_CONF", conf)
            .status()
            .expect("run the bench again");
        std::process::exit(status.code().unwrap_or(1));
    }

    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let mut c = Criterion::default().configure_from_args();

    let dir = tempfile::tempdir().expect("temporary directory");
    let file = FileKeyProvider::open_or_create(&dir.path().join("kek.json")).expect("key file");
    rewrap(&mut c, &rt, "file", Arc::new(file));

    match (std::env::var("WARD_TEST_SOFTHSM_MODULE"), std::env::var_os("SOFTHSM2_CONF")) {
        (Ok(module), Some(_)) => {
            let opts = Pkcs11Options {
                module: module.into(),
                token_label: SoftHsm::TOKEN_LABEL.into(),
                pin: Some(SoftHsm::PIN.into()),
                key_label: "bench-kek".into(),
            };
            rewrap(&mut c, &rt, "pkcs11-softhsm", ward_crypto::pkcs11::connect(&opts).expect("SoftHSM"));
        }
        _ => eprintln!("note: WARD_TEST_SOFTHSM_MODULE/WARD_TEST_SOFTHSM_UTIL unset: no SoftHSM figures"),
    }

    if std::env::var_os("WARD_TEST_MOTO").is_some() {
        let moto = MotoServer::start().expect("moto");
        let opts = KmsOptions {
            region: "us-east-1".into(),
            endpoint: Some(moto.endpoint().to_owned()),
            key_id: "alias/bench-kek".into(),
            access_key_id: Some("testing".into()),
            secret_access_key: Some("testing-secret".into()),
        };
        let p = rt.block_on(ward_crypto::kms::connect(&opts)).expect("moto KMS");
        rewrap(&mut c, &rt, "kms-moto", p);
    } else {
        eprintln!("note: WARD_TEST_MOTO unset: no KMS figures");
    }
    c.final_summary();
}
