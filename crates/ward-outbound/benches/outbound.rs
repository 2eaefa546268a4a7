//! Checks per second for a typical 160-character SMS, and the policy's build time.
//!
//! `cargo bench -p ward-outbound --bench outbound`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use ward_outbound::ContentPolicy;

/// 160 characters, the length of one SMS segment.
const BENIGN_SMS: &str = "Hi Jamie, this is a reminder of your appointment at Riverside Family Clinic on Tue 3/14 at 10:30 AM. Reply C to confirm, or call us. Portal: ward.example/p/abcd";
const CLINICAL_SMS: &str = "Hi Jamie, reminder: your colonoscopy at Riverside Family Clinic is on Tue 3/14 at 10:30 AM. Stop taking metformin the night before. Portal: ward.example/p/abc12";

fn bench(c: &mut Criterion) {
    assert_eq!((BENIGN_SMS.len(), CLINICAL_SMS.len()), (160, 160));
    let policy = ContentPolicy::standard();
    let exempt = ["Jamie", "Dr Rose Grant"];
    assert!(policy.check(BENIGN_SMS, &exempt).is_allowed());
    assert!(!policy.check(CLINICAL_SMS, &exempt).is_allowed());

    let mut group = c.benchmark_group("outbound");
    group.throughput(criterion::Throughput::Elements(1));
    group.bench_function("check_160_char_sms_allowed", |b| b.iter(|| policy.check(black_box(BENIGN_SMS), black_box(&exempt))));
    group.bench_function("check_160_char_sms_blocked", |b| b.iter(|| policy.check(black_box(CLINICAL_SMS), black_box(&exempt))));
    group.finish();

    let mut build = c.benchmark_group("outbound_build");
    build.sample_size(10);
    build.bench_function("build_standard_policy", |b| b.iter(|| ContentPolicy::builder().build().map(|p| p.is_icd10cm_code("F32.1"))));
    build.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
