//! Offline verification and proof generation throughput (docs/benchmarks.md, "Audit log").
//!
//! `cargo bench -p ward-audit --bench audit`

#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ward_audit::tree::{MemoryTree, root};
use ward_audit::verify::verify_export;
use ward_audit::{AuditLeaf, Checkpoint, ExportLine, Frontier, Hash, LogVerifier, Signer, leaf_hash};

const ORIGIN: &str = "audit.example/log";

/// A realistic event: ids, a target, an address and a small details object (~450 bytes).
fn event(idx: u64) -> AuditLeaf {
    AuditLeaf {
        action: "message.read".into(),
        actor_device_id: Some(uuid::Uuid::from_u128(0x0192_f0a4_6c1e_7d2a_9b3c_0000_0000_0000 | u128::from(idx % 97))),
        actor_user_id: Some(uuid::Uuid::from_u128(0x0192_f0a4_6c1e_7d2a_9b3c_1000_0000_0000 | u128::from(idx % 1013))),
        detail: format!(r#"{{"count":{},"reason":"consult"}}"#, idx % 7),
        idx,
        occurred_at: 1_767_225_600_000 + idx as i64,
        org_id: Some(uuid::Uuid::from_u128(0x0192_f0a4_6c1e_7d2a_9b3c_2000_0000_0001)),
        outcome: "success".into(),
        patient_id: Some(uuid::Uuid::from_u128(0x0192_f0a4_6c1e_7d2a_9b3c_3000_0000_0000 | u128::from(idx % 5003))),
        request_id: Some(format!("0192f0a4-6c1e-7d2a-9b3c-{idx:012x}")),
        source_ip: Some("10.20.30.40".into()),
        target_id: Some(format!("0192f0a4-6c1e-7d2a-9b3c-{:012x}", idx % 211)),
        target_type: Some("conversation".into()),
    }
}

/// An export of `n` events with a checkpoint every 4,096 entries and at the end.
fn export(n: u64, signer: &Signer) -> Vec<u8> {
    let events: Vec<AuditLeaf> = (0..n).map(event).collect();
    let mut frontier = Frontier::new();
    let mut cps = Vec::new();
    let mut body = Vec::new();
    for e in &events {
        let h = e.leaf_hash();
        frontier.push(h);
        ExportLine::Event { event: Box::new(e.clone()), leaf_hash: Some(h) }.write_line(&mut body);
        body.push(b'\n');
        if frontier.size().is_multiple_of(4096) || frontier.size() == n {
            let cp = Checkpoint::sign(ORIGIN, frontier.size(), frontier.root(), signer).unwrap();
            cps.push(ExportLine::Checkpoint { tree_size: frontier.size(), note: cp.note().to_owned() });
        }
    }
    let mut text = Vec::new();
    for cp in &cps {
        cp.write_line(&mut text);
        text.push(b'\n');
    }
    text.extend(body);
    text
}

fn verify(c: &mut Criterion) {
    let signer = Signer::from_seed(ORIGIN, &[1; 32]).unwrap();
    let n = 100_000u64;
    let text = export(n, &signer);
    let mut g = c.benchmark_group("verify");
    g.sample_size(10);
    g.throughput(Throughput::Elements(n));
    // The whole offline check of an export already in memory: parse, canonical form, leaf
    // hash, recorded hash, frontier, checkpoint signatures and roots.
    g.bench_function("export_lines", |b| b.iter(|| verify_export(black_box(&text), signer.verifier()).unwrap()));
    // The same line by line on one core (LogVerifier::push_line).
    g.bench_function("export_lines_one_core", |b| {
        b.iter(|| {
            let mut v = LogVerifier::new(signer.verifier());
            // Split once, as verify_export does (memchr), so only the verifier is measured.
            let body = text.strip_suffix(b"\n").unwrap_or(&text);
            let mut start = 0;
            let mut all: Vec<&[u8]> = memchr::memchr_iter(b'\n', body)
                .map(|end| {
                    let line = &body[start..end];
                    start = end + 1;
                    line
                })
                .collect();
            all.push(&body[start..]);
            let lines = || all.iter().copied();
            for (n, l) in (1..).zip(lines()) {
                v.add_checkpoint_line(l, n).unwrap();
            }
            for (n, l) in (1..).zip(lines()) {
                v.push_line(l, n).unwrap();
            }
            v.finish().unwrap()
        })
    });
    // The parts: leaf hashing of canonical encodings, and the tree alone.
    let encodings: Vec<Vec<u8>> = (0..n).map(|i| event(i).canonical_bytes()).collect();
    g.bench_function("leaf_hash", |b| b.iter(|| encodings.iter().map(|e| leaf_hash(e)).fold(0u8, |acc, h| acc ^ h.0[0])));
    let leaves: Vec<Hash> = encodings.iter().map(|e| leaf_hash(e)).collect();
    g.bench_function("frontier_push", |b| {
        b.iter(|| {
            let mut f = Frontier::new();
            leaves.iter().for_each(|l| f.push(*l));
            f.root()
        })
    });
    g.bench_function("log_verifier_push_hashed", |b| {
        b.iter_batched(
            || LogVerifier::new(signer.verifier()),
            |mut v| {
                for (i, l) in (0u64..).zip(&leaves) {
                    v.push_hashed(i, *l, Some(*l)).unwrap();
                }
                v.finish().unwrap()
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn proofs(c: &mut Criterion) {
    let n = 1u64 << 20;
    let leaves: Vec<Hash> = (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    let tree = MemoryTree::from_leaf_hashes(leaves.iter().copied());
    assert_eq!(tree.root(), root(&leaves));
    let size = n - 12_345;
    let mut g = c.benchmark_group("proofs");
    let mut i = 0u64;
    g.bench_function("inclusion_1m", |b| {
        b.iter(|| {
            i = (i + 7_919) % size;
            tree.inclusion_proof(black_box(i), size).unwrap()
        })
    });
    let mut old = 1u64;
    g.bench_function("consistency_1m", |b| {
        b.iter(|| {
            old = (old + 7_919) % size + 1;
            tree.consistency_proof(black_box(old), size).unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, verify, proofs);
criterion_main!(benches);
