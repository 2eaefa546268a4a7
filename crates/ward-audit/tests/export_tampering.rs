//! Property tests over whole exports (NDJSON as `ward audit export` writes it and
//! `LogVerifier` reads it): an intact export verifies; every single-byte change anywhere, in
//! any event or checkpoint line, is detected; so are a deleted, inserted, reordered or
//! truncated entry and a forged checkpoint; and where the failure names a first bad index,
//! it is the right one.

use std::ops::Range;

use proptest::prelude::*;
use ward_audit::tree::root;
use ward_audit::verify::verify_export;
use ward_audit::{AuditLeaf, Checkpoint, ExportLine, Hash, Signer, VerifyError};

const ORIGIN: &str = "audit.example/log";

fn signer() -> Signer {
    Signer::from_seed(ORIGIN, &[9; 32]).unwrap()
}

/// Which leaf hashes an export records. Every event is protected either way: by its recorded
/// hash, or by the checkpoint at the full size every generated log has.
#[derive(Debug, Clone, Copy)]
enum Recorded {
    All,
    None,
    Some(u32),
}

fn uuid() -> impl Strategy<Value = Option<uuid::Uuid>> {
    prop::option::of(any::<u128>().prop_map(uuid::Uuid::from_u128))
}

prop_compose! {
    /// An event with every kind of value an audit row holds: nulls, uuids, escapes, non-ASCII.
    fn arb_event()(
        occurred_at in 1_600_000_000_000i64..1_900_000_000_000,
        ids in (uuid(), uuid(), uuid(), uuid()),
        action in "[a-z]{1,8}\\.[a-z]{1,8}",
        outcome in prop::sample::select(vec!["success", "failure", "denied"]),
        target in (prop::option::of("[a-z_]{1,12}"), prop::option::of("[0-9a-f-]{1,36}")),
        meta in (prop::option::of("[0-9.:]{7,15}"), prop::option::of("[ -~]{0,12}")),
        detail in prop::sample::select(vec![r#"{}"#, r#"{"count":3,"reason":"consult"}"#, "{\"note\":\"tab\\there \u{e9}\"}"]),
    ) -> AuditLeaf {
        AuditLeaf {
            action,
            actor_device_id: ids.0,
            actor_user_id: ids.1,
            detail: detail.to_owned(),
            idx: 0,
            occurred_at,
            org_id: ids.2,
            outcome: outcome.to_owned(),
            patient_id: ids.3,
            request_id: meta.1,
            source_ip: meta.0,
            target_id: target.1,
            target_type: target.0,
        }
    }
}

/// A log: its events, the checkpoint sizes (always including the full size), and which leaf
/// hashes the export records.
fn arb_log(max: usize) -> impl Strategy<Value = (Vec<AuditLeaf>, Vec<u64>, Recorded)> {
    prop::collection::vec(arb_event(), 1..=max).prop_flat_map(|mut events| {
        for (i, e) in events.iter_mut().enumerate() {
            e.idx = i as u64;
        }
        let n = events.len() as u64;
        let sizes = prop::collection::btree_set(0..=n, 0..4).prop_map(move |mut s| {
            s.insert(n);
            s.into_iter().collect::<Vec<_>>()
        });
        let recorded = prop_oneof![Just(Recorded::All), Just(Recorded::None), any::<u32>().prop_map(Recorded::Some)];
        (Just(events), sizes, recorded)
    })
}

/// An export's text and the byte range of each line (newline included).
struct Export {
    text: Vec<u8>,
    /// Checkpoint lines first, then one line per event.
    lines: Vec<Range<usize>>,
    checkpoints: usize,
}

fn lines_of(events: &[AuditLeaf], sizes: &[u64], recorded: Recorded, signer: &Signer) -> Vec<ExportLine> {
    let hashes: Vec<Hash> = events.iter().map(AuditLeaf::leaf_hash).collect();
    let mut lines: Vec<ExportLine> = sizes
        .iter()
        .map(|&n| {
            let cp = Checkpoint::sign(ORIGIN, n, root(&hashes[..n as usize]), signer).unwrap();
            ExportLine::Checkpoint { tree_size: n, note: cp.note().to_owned() }
        })
        .collect();
    for (i, e) in events.iter().enumerate() {
        let keep = match recorded {
            Recorded::All => true,
            Recorded::None => false,
            Recorded::Some(bits) => bits >> (i % 32) & 1 == 1,
        };
        lines.push(ExportLine::Event { event: Box::new(e.clone()), leaf_hash: keep.then_some(hashes[i]) });
    }
    lines
}

fn render(lines: &[ExportLine]) -> Export {
    let mut text = Vec::new();
    let mut ranges = Vec::new();
    for l in lines {
        let start = text.len();
        text.extend(l.to_line());
        text.push(b'\n');
        ranges.push(start..text.len());
    }
    let checkpoints = lines.iter().take_while(|l| matches!(l, ExportLine::Checkpoint { .. })).count();
    Export { text, lines: ranges, checkpoints }
}

fn verify(text: &[u8]) -> Result<ward_audit::Summary, VerifyError> {
    verify_export(text, signer().verifier())
}

/// Checks that a failure caused at entry `index` names it: exactly, or (for a root mismatch)
/// as a range of entries that contains it.
fn names_entry(err: &VerifyError, index: u64) -> Result<(), TestCaseError> {
    match err {
        VerifyError::RootMismatch { from, to } => prop_assert!(*from <= index && index < *to, "{err} does not cover entry {index}"),
        _ => prop_assert_eq!(err.first_bad_index(), Some(index), "{}", err),
    }
    Ok(())
}

proptest! {
    // Each case re-verifies the export once per byte and mask: a few cases cover a lot.
    #![proptest_config(ProptestConfig::with_cases(6))]

    /// Every byte of every line, each changed to another value (a random one, and one with
    /// only the lowest bit flipped): always refused. A change in an event line names that
    /// entry (or a checkpoint range containing it); a change in a checkpoint line names none.
    #[test]
    fn every_single_byte_change_is_detected((events, sizes, recorded) in arb_log(6), mask in 2u8..) {
        let signer = signer();
        let export = render(&lines_of(&events, &sizes, recorded, &signer));
        let summary = verify(&export.text).unwrap();
        prop_assert_eq!(summary.entries, events.len() as u64);
        prop_assert_eq!(summary.uncovered, 0);
        let mut text = export.text.clone();
        for (line, range) in export.lines.iter().enumerate() {
            for pos in range.clone() {
                for m in [mask, 1] {
                    let original = text[pos];
                    text[pos] ^= m;
                    let result = verify(&text);
                    text[pos] = original;
                    let Err(err) = result else {
                        return Err(TestCaseError::fail(format!("byte {pos} (line {}) ^ {m:#04x} went unnoticed", line + 1)));
                    };
                    if line < export.checkpoints {
                        prop_assert_eq!(err.first_bad_index(), None, "checkpoint damage blamed on an entry: {}", err);
                    } else {
                        names_entry(&err, (line - export.checkpoints) as u64)?;
                    }
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Structural tampering with the entries, each found at the first bad index.
    #[test]
    fn deleted_inserted_reordered_and_truncated_entries_are_found((events, sizes, recorded) in arb_log(12), pick in any::<prop::sample::Index>(), other in any::<prop::sample::Index>()) {
        let signer = signer();
        let lines = lines_of(&events, &sizes, recorded, &signer);
        let c = sizes.len();
        let n = events.len();
        let i = pick.index(n);

        // Deleted: the next entry stands at its index, or (the last) the log is short.
        let mut l = lines.clone();
        l.remove(c + i);
        let err = verify(&render(&l).text).unwrap_err();
        prop_assert_eq!(err.first_bad_index(), Some(i as u64), "{}", err);
        if i + 1 == n {
            prop_assert!(matches!(err, VerifyError::Truncated { .. }), "{}", err);
        }

        // Inserted as a copy of an entry.
        let mut l = lines.clone();
        l.insert(c + i + 1, lines[c + i].clone());
        let err = verify(&render(&l).text).unwrap_err();
        prop_assert_eq!(err, VerifyError::Sequence { index: i as u64 + 1, found: i as u64 });

        // Inserted as a new entry with every later index (and every recorded hash) rewritten
        // to match: only the signed roots can tell, from the checkpoint before it.
        let mut forged = events.clone();
        let mut extra = events[i].clone();
        extra.outcome = "forged".into();
        forged.insert(i, extra);
        for (k, e) in forged.iter_mut().enumerate() {
            e.idx = k as u64;
        }
        let mut l: Vec<ExportLine> = lines[..c].to_vec();
        l.extend(lines_of(&forged, &[], recorded, &signer));
        let err = verify(&render(&l).text).unwrap_err();
        names_entry(&err, i as u64)?;

        // Reordered: two different entries swapped.
        let j = other.index(n);
        if i != j {
            let (a, b) = (i.min(j), i.max(j));
            let mut l = lines.clone();
            l.swap(c + a, c + b);
            let err = verify(&render(&l).text).unwrap_err();
            prop_assert_eq!(err, VerifyError::Sequence { index: a as u64, found: b as u64 });
        }

        // Truncated: the events from `i` on are gone (the checkpoints, first in the file, stay).
        let l = &lines[..c + i];
        let err = verify(&render(l).text).unwrap_err();
        prop_assert!(matches!(err, VerifyError::Truncated { index, size } if index == i as u64 && size > index), "{}", err);
        // Also when the file is cut anywhere inside the events.
        let export = render(&lines);
        let cut = export.lines[c + i].start + (export.lines[c + i].len() - 1) * pick.index(1000) / 1000;
        let err = verify(&export.text[..cut]).unwrap_err();
        names_entry(&err, i as u64)?;
    }

    /// Checkpoints not signed by the log's key, or edited, are refused; a genuine signature on
    /// another log's or another size's checkpoint too.
    #[test]
    fn forged_checkpoints_are_refused((events, sizes, recorded) in arb_log(8), pick in any::<prop::sample::Index>()) {
        let signer = signer();
        let lines = lines_of(&events, &sizes, recorded, &signer);
        let k = pick.index(sizes.len());
        let size = sizes[k];
        let hashes: Vec<Hash> = events.iter().map(AuditLeaf::leaf_hash).collect();
        let real_root = root(&hashes[..size as usize]);
        let forgers = [
            // Another key under the log's name.
            Checkpoint::sign(ORIGIN, size, real_root, &Signer::from_seed(ORIGIN, &[10; 32]).unwrap()).unwrap().note().to_owned(),
            // Another log's checkpoint (a different origin), validly signed by its own key.
            Checkpoint::sign("other.example/log", size, real_root, &Signer::from_seed("other.example/log", &[9; 32]).unwrap()).unwrap().note().to_owned(),
        ];
        for note in forgers {
            let mut l = lines.clone();
            l[k] = ExportLine::Checkpoint { tree_size: size, note };
            let err = verify(&render(&l).text).unwrap_err();
            prop_assert!(matches!(err, VerifyError::BadCheckpoint { .. }), "{}", err);
        }
        // A genuine note for another size than the line claims.
        let mut l = lines.clone();
        l[k] = ExportLine::Checkpoint { tree_size: size + 1, note: match &lines[k] { ExportLine::Checkpoint { note, .. } => note.clone(), _ => unreachable!() } };
        let err = verify(&render(&l).text).unwrap_err();
        prop_assert!(matches!(err, VerifyError::BadCheckpoint { .. }), "{}", err);
        // A checkpoint of the right size signed by the log's key over another root (a key
        // compromise, or a log that forked): the roots disagree.
        if size > 0 {
            let mut other = hashes.clone();
            other[0].0[0] ^= 1;
            let note = Checkpoint::sign(ORIGIN, size, root(&other[..size as usize]), &signer).unwrap().note().to_owned();
            let mut l = lines.clone();
            l[k] = ExportLine::Checkpoint { tree_size: size, note };
            let err = verify(&render(&l).text).unwrap_err();
            prop_assert!(matches!(err, VerifyError::RootMismatch { to, .. } if to == size), "{}", err);
        }
    }
}
