//! The audit seeds of the fuzz corpus (`fuzz/corpus/`) are real, valid records signed with the
//! fuzz targets' key: this test rebuilds them and fails when a committed seed no longer matches
//! what Ward writes, so the fuzzer always starts from the current format. Regenerate with
//! `WARD_WRITE_FUZZ_SEEDS=1 cargo nextest run -p ward-audit --test fuzz_seeds`.

use std::path::{Path, PathBuf};

use ward_audit::tree::root;
use ward_audit::verify::verify_export;
use ward_audit::{AuditLeaf, Checkpoint, ExportLine, Hash, Signer};

/// The origin and key seed the fuzz targets verify with (fuzz/fuzz_targets/signed_note.rs).
const ORIGIN: &str = "ward.fuzz/audit";
const SEED: [u8; 32] = [7; 32];

fn leaf(idx: u64) -> AuditLeaf {
    AuditLeaf {
        idx,
        occurred_at: 1_767_225_600_000 + idx as i64,
        org_id: Some(uuid::Uuid::from_u128(1)),
        actor_user_id: Some(uuid::Uuid::from_u128(100 + u128::from(idx % 3))),
        actor_device_id: None,
        action: if idx.is_multiple_of(2) { "message.read".into() } else { "message.send".into() },
        outcome: "success".into(),
        target_type: Some("conversation".into()),
        target_id: Some(format!("c{}", idx % 4)),
        patient_id: (idx == 3).then(|| uuid::Uuid::from_u128(7)),
        source_ip: Some("127.0.0.1".into()),
        request_id: None,
        detail: if idx == 2 { r#"{"reason":"consult"}"#.into() } else { "{}".into() },
    }
}

fn line(record: &ExportLine) -> Vec<u8> {
    let mut out = record.to_line();
    out.push(b'\n');
    out
}

/// Seed name → bytes.
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let signer = Signer::from_seed(ORIGIN, &SEED).unwrap();
    let events: Vec<AuditLeaf> = (0..6).map(leaf).collect();
    let hashes: Vec<Hash> = events.iter().map(AuditLeaf::leaf_hash).collect();
    let checkpoint = |n: usize| Checkpoint::sign(ORIGIN, n as u64, root(&hashes[..n]), &signer).unwrap().note().to_owned();

    let mut export = Vec::new();
    for n in [0, 4, 6] {
        export.extend(line(&ExportLine::Checkpoint { tree_size: n as u64, note: checkpoint(n) }));
    }
    for (i, e) in events.iter().enumerate() {
        // Leaf hashes recorded for some events only, as exports of archived segments do.
        let leaf_hash = i.is_multiple_of(2).then(|| e.leaf_hash());
        export.extend(line(&ExportLine::Event { event: Box::new(e.clone()), leaf_hash }));
    }
    let event_line = ExportLine::Event { event: Box::new(leaf(3)), leaf_hash: Some(leaf(3).leaf_hash()) }.to_line();
    let base_line = ExportLine::Base { tree_size: 4, hashes: vec![root(&hashes[..4])] }.to_line();
    vec![
        ("audit_export/export.ndjson", export),
        ("audit_export_line/event.json", event_line),
        ("audit_export_line/base.json", base_line),
        ("signed_note/checkpoint.txt", checkpoint(6).into_bytes()),
    ]
}

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus")
}

#[test]
fn committed_audit_seeds_match_what_ward_writes() {
    let seeds = seeds();
    // The export seed itself verifies, so the fuzzer starts inside the accepted language.
    let summary = verify_export(&seeds[0].1, Signer::from_seed(ORIGIN, &SEED).unwrap().verifier()).unwrap();
    assert_eq!((summary.entries, summary.checkpoints), (6, 3));
    let write = std::env::var_os("WARD_WRITE_FUZZ_SEEDS").is_some();
    for (name, bytes) in seeds {
        let path = corpus().join(name);
        if write {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        }
        let committed = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(committed == bytes, "{} is stale: regenerate it with WARD_WRITE_FUZZ_SEEDS=1 (see this file)", path.display());
    }
}
