//! Attachment sealing throughput: `stream::Encryptor` and `stream::Decryptor` over 16 MiB fed in
//! the 256 KiB pieces the upload path uses. Target: at least 1 GB/s per core each way.
//!
//! `cargo bench -p ward-crypto --bench stream`

#![allow(missing_docs)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use ward_crypto::stream::{Decryptor, Encryptor, seal_all};

const LEN: usize = 16 * 1024 * 1024;
const PIECE: usize = 256 * 1024;

fn bench(c: &mut Criterion) {
    let key = [7u8; 32];
    let ctx = [1u8; 48];
    let plain: Vec<u8> = (0..LEN).map(|i| (i * 31) as u8).collect();
    let sealed = seal_all(&key, &ctx, &plain).unwrap();
    let mut g = c.benchmark_group("attachment_stream");
    g.throughput(Throughput::Bytes(LEN as u64));
    g.sample_size(20);
    g.bench_function(BenchmarkId::new("encrypt", "16MiB"), |b| {
        b.iter(|| {
            let mut e = Encryptor::new(&key, &ctx).unwrap();
            let mut n = 0;
            for piece in plain.chunks(PIECE) {
                n += black_box(e.update(piece)).len();
            }
            n += e.finish().len();
            n
        })
    });
    g.bench_function(BenchmarkId::new("decrypt", "16MiB"), |b| {
        b.iter(|| {
            let mut d = Decryptor::new(&key, &ctx).unwrap();
            let mut n = 0;
            for piece in sealed.chunks(PIECE) {
                n += black_box(d.update(piece).unwrap()).len();
            }
            n += d.finish().unwrap().len();
            n
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
