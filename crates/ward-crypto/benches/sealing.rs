//! What encryption at rest adds to one message (docs/benchmarks.md, "Encryption at rest"):
//! sealing a body as the store does on send, opening it as each read does, finding the data
//! key in the keyring's cache, and the one-off cost of creating a data key (a new
//! conversation) and unwrapping one (a cold cache).
//!
//! `cargo bench -p ward-crypto --bench sealing`

#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use uuid::Uuid;
use ward_crypto::{DataKey, FileKeyProvider, KeyProvider, Keyring, SealContext, WrapContext};

fn context(record: Uuid) -> SealContext<'static> {
    SealContext { purpose: "message.body", org: Uuid::from_u128(1), scope: Uuid::from_u128(2), record }
}

fn sealing(c: &mut Criterion) {
    let key = DataKey::from_bytes(1, &[7u8; 32]).unwrap();
    let mut g = c.benchmark_group("message body");
    for size in [100usize, 1_000, 4_000] {
        let body = vec![b'x'; size];
        let record = Uuid::now_v7();
        let sealed = key.seal(&context(record), &body);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(format!("seal {size} B"), |b| b.iter(|| key.seal(black_box(&context(record)), black_box(&body))));
        g.bench_function(format!("open {size} B"), |b| b.iter(|| key.open(black_box(&context(record)), black_box(&sealed)).unwrap()));
    }
    g.finish();
}

fn keys(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let provider: Arc<dyn KeyProvider> = Arc::new(FileKeyProvider::open_or_create(&dir.path().join("kek.json")).unwrap());
    let ring = Keyring::new(provider.clone(), 65_536);
    let ctx = WrapContext { org: Uuid::from_u128(1), scope: Uuid::from_u128(2), version: 1 };
    let (_, wrapped) = rt.block_on(ring.create(ctx)).unwrap();
    let mut g = c.benchmark_group("data key");
    g.bench_function("cached lookup", |b| b.iter(|| ring.cached(black_box(ctx)).unwrap()));
    g.bench_function("create and wrap (file provider)", |b| {
        b.iter(|| rt.block_on(ring.create(WrapContext { scope: Uuid::now_v7(), ..ctx })).unwrap())
    });
    g.bench_function("unwrap (file provider)", |b| b.iter(|| rt.block_on(provider.unwrap(black_box(&ctx), black_box(&wrapped))).unwrap()));
    g.bench_function("rewrap (file provider)", |b| b.iter(|| rt.block_on(ring.rewrap(black_box(ctx), black_box(&wrapped))).unwrap()));
    g.finish();
}

criterion_group!(benches, sealing, keys);
criterion_main!(benches);
