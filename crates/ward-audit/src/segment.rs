//! Archive segments: a run of entries `[start, end)` taken out of the live log, together with
//! everything needed to prove, from the file alone, that they are exactly the entries a signed
//! checkpoint committed to.
//!
//! A segment is NDJSON; every line ends in `\n`:
//!
//! 1. the header `{"type":"segment","origin":…,"start":a,"end":b,"tree_size":n,"checkpoint":"…",
//!    "left":[…],"right":[…]}`: the checkpoint is the log's signed note at size `n ≥ b`;
//!    `left` are the roots of the perfect subtrees covering leaves `[0, a)` and `right` those
//!    covering `[b, n)` (each list is the compact range of its span, [`compact_range`], left
//!    to right, base64);
//! 2. exactly `b - a` event lines in index order, in the format of `ward audit export`
//!    ([`ExportLine::Event`]), each with its integrated `leaf_hash`.
//!
//! The verifier restores the tree of `a` leaves from `left`, appends the leaf hash it
//! recomputes from each event, appends the `right` subtrees, and compares the root of the
//! resulting tree of `n` leaves with the signed one. Finding other events (or other `left`
//! or `right` hashes) that give the same root means finding a SHA-256 collision.
//!
//! Every line must also be byte for byte the canonical serialisation of what it parses to
//! (the form the writer produces), so no byte of the file can change without failing, even
//! where JSON would allow an equivalent spelling.

use std::io::BufRead;

use serde::{Deserialize, Serialize};

use crate::checkpoint::Checkpoint;
use crate::event::AuditLeaf;
use crate::hash::Hash;
use crate::note::Verifier;
use crate::tree::{Frontier, NodeId, compact_range};
use crate::verify::ExportLine;

/// The first line of a segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentHeader {
    /// The log's origin (and the key name of its checkpoints).
    pub origin: String,
    /// The first index in the segment.
    pub start: u64,
    /// One past the last index in the segment.
    pub end: u64,
    /// The size of the checkpoint the segment is proven against (`>= end`).
    pub tree_size: u64,
    /// The signed checkpoint note at `tree_size`, verbatim.
    pub checkpoint: String,
    /// The compact range of leaves `[0, start)`.
    pub left: Vec<Hash>,
    /// The compact range of leaves `[end, tree_size)`.
    pub right: Vec<Hash>,
}

/// The header as a tagged line (`"type":"segment"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum HeaderLine {
    Segment(SegmentHeader),
}

/// The tree nodes a segment of `[start, end)` proven at `tree_size` carries: those of `left`
/// and those of `right`, in order.
pub fn proof_nodes(start: u64, end: u64, tree_size: u64) -> Result<(Vec<NodeId>, Vec<NodeId>), SegmentError> {
    if !(start < end && end <= tree_size) {
        return Err(SegmentError::BadHeader(format!("range {start}..{end} is empty or beyond tree size {tree_size}")));
    }
    Ok((compact_range(0, start), compact_range(end, tree_size)))
}

/// The header line, newline included.
pub fn header_line(header: &SegmentHeader) -> String {
    let mut s = serde_json::to_string(&HeaderLine::Segment(header.clone())).expect("a header always serialises");
    s.push('\n');
    s
}

/// One event line, newline included.
pub fn event_line(event: &AuditLeaf, leaf_hash: Hash) -> String {
    let mut s =
        serde_json::to_string(&ExportLine::Event { event: Box::new(event.clone()), leaf_hash: Some(leaf_hash) }).expect("events serialise");
    s.push('\n');
    s
}

/// Why a segment does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SegmentError {
    /// A line is not valid, or not in its canonical form.
    #[error("line {line}: {reason}")]
    Malformed {
        /// The 1-based line number.
        line: u64,
        /// What was wrong.
        reason: String,
    },
    /// The header's sizes or proof lengths do not fit together.
    #[error("segment header: {0}")]
    BadHeader(String),
    /// The checkpoint is not a valid checkpoint of this log (signature, origin or size).
    #[error("segment checkpoint does not verify: {0}")]
    BadCheckpoint(String),
    /// An event is missing, duplicated, inserted or out of order.
    #[error("entry {index}: expected index {index}, found index {found}")]
    Sequence {
        /// The index expected.
        index: u64,
        /// The index found.
        found: u64,
    },
    /// An event does not hash to its recorded leaf hash.
    #[error("entry {index}: the event does not match its recorded leaf hash")]
    LeafMismatch {
        /// The index.
        index: u64,
    },
    /// The segment ends before its last entry.
    #[error("entry {index}: the segment ends before entry {index}, but claims entries up to {end}")]
    Incomplete {
        /// The first missing index.
        index: u64,
        /// The claimed end.
        end: u64,
    },
    /// The events, with the proof hashes, do not give the checkpoint's root.
    #[error("entries {start}..{end}: the recomputed root at tree size {tree_size} differs from the signed checkpoint")]
    RootMismatch {
        /// First index in the segment.
        start: u64,
        /// End of the segment.
        end: u64,
        /// The checkpoint size.
        tree_size: u64,
    },
}

/// What a verified segment holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentSummary {
    /// The log's origin.
    pub origin: String,
    /// The first index.
    pub start: u64,
    /// One past the last index.
    pub end: u64,
    /// The checkpoint size it was proven against.
    pub tree_size: u64,
    /// The checkpoint's root.
    pub root: Hash,
}

/// Checks a segment line by line; [`verify_segment`] drives it over a reader.
#[derive(Debug)]
pub struct SegmentVerifier {
    checkpoint: Checkpoint,
    start: u64,
    end: u64,
    right: Vec<Hash>,
    frontier: Frontier,
    line: u64,
}

impl SegmentVerifier {
    /// Opens a segment from its header line (without the newline), checking the checkpoint's
    /// signature with `verifier` (whose name is the log's origin).
    pub fn new(header_line: &[u8], verifier: &Verifier) -> Result<Self, SegmentError> {
        let HeaderLine::Segment(h) = canonical::<HeaderLine>(header_line, 1)?;
        if h.origin != verifier.name() {
            return Err(SegmentError::BadCheckpoint(format!("origin {:?} is not the key's {:?}", h.origin, verifier.name())));
        }
        let checkpoint =
            Checkpoint::parse(h.checkpoint.as_bytes(), &h.origin, verifier).map_err(|e| SegmentError::BadCheckpoint(e.to_string()))?;
        if checkpoint.size() != h.tree_size {
            return Err(SegmentError::BadCheckpoint(format!(
                "the note is for size {}, the header says {}",
                checkpoint.size(),
                h.tree_size
            )));
        }
        let (left, right) = proof_nodes(h.start, h.end, h.tree_size)?;
        if left.len() != h.left.len() || right.len() != h.right.len() {
            return Err(SegmentError::BadHeader(format!(
                "expected {} left and {} right hashes, found {} and {}",
                left.len(),
                right.len(),
                h.left.len(),
                h.right.len()
            )));
        }
        let frontier = Frontier::restore(h.start, h.left).map_err(|e| SegmentError::BadHeader(e.to_string()))?;
        Ok(SegmentVerifier { checkpoint, start: h.start, end: h.end, right: h.right, frontier, line: 1 })
    }

    /// The first index of the segment.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// One past the last index of the segment.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Checks the next event line (without the newline).
    pub fn push_line(&mut self, line: &[u8]) -> Result<(), SegmentError> {
        self.line += 1;
        let index = self.frontier.size();
        let parsed = canonical::<ExportLine>(line, self.line)?;
        let ExportLine::Event { event, leaf_hash: Some(recorded) } = parsed else {
            return Err(SegmentError::Malformed { line: self.line, reason: "expected an event with its leaf hash".into() });
        };
        if index >= self.end || event.idx != index {
            return Err(SegmentError::Sequence { index, found: event.idx });
        }
        let leaf = event.leaf_hash();
        if leaf != recorded {
            return Err(SegmentError::LeafMismatch { index });
        }
        self.frontier.push(leaf);
        Ok(())
    }

    /// Checks that every entry was present and that they, with the proof, give the signed root.
    pub fn finish(mut self) -> Result<SegmentSummary, SegmentError> {
        if self.frontier.size() != self.end {
            return Err(SegmentError::Incomplete { index: self.frontier.size(), end: self.end });
        }
        let tree_size = self.checkpoint.size();
        for (id, hash) in compact_range(self.end, tree_size).into_iter().zip(self.right) {
            self.frontier.append_subtree(id.level, hash).map_err(|e| SegmentError::BadHeader(e.to_string()))?;
        }
        let root = *self.checkpoint.root();
        if self.frontier.size() != tree_size || self.frontier.root() != root {
            return Err(SegmentError::RootMismatch { start: self.start, end: self.end, tree_size });
        }
        Ok(SegmentSummary { origin: self.checkpoint.origin().to_owned(), start: self.start, end: self.end, tree_size, root })
    }
}

/// Verifies a whole segment read from `reader`; `progress` gets the number of entries checked
/// so far (every 65,536 entries, and at the end) and the segment's entry count.
pub fn verify_segment(
    mut reader: impl BufRead,
    verifier: &Verifier,
    mut progress: impl FnMut(u64, u64),
) -> Result<SegmentSummary, SegmentError> {
    let mut buf = Vec::with_capacity(1024);
    let mut line_no = 0u64;
    let mut next_line = |buf: &mut Vec<u8>| -> Result<bool, SegmentError> {
        buf.clear();
        line_no += 1;
        let n = reader.read_until(b'\n', buf).map_err(|e| SegmentError::Malformed { line: line_no, reason: e.to_string() })?;
        if n == 0 {
            return Ok(false);
        }
        if buf.pop() != Some(b'\n') {
            return Err(SegmentError::Malformed { line: line_no, reason: "the line does not end in a newline".into() });
        }
        Ok(true)
    };
    if !next_line(&mut buf)? {
        return Err(SegmentError::Malformed { line: 1, reason: "the segment is empty".into() });
    }
    let mut v = SegmentVerifier::new(&buf, verifier)?;
    let total = v.end() - v.start();
    let mut done = 0u64;
    while next_line(&mut buf)? {
        v.push_line(&buf)?;
        done += 1;
        if done.is_multiple_of(65_536) {
            progress(done, total);
        }
    }
    progress(done, total);
    v.finish()
}

/// Parses a line and insists that it is exactly what serialising the result gives back.
fn canonical<T: Serialize + serde::de::DeserializeOwned>(line: &[u8], line_no: u64) -> Result<T, SegmentError> {
    let value: T = serde_json::from_slice(line).map_err(|e| SegmentError::Malformed { line: line_no, reason: e.to_string() })?;
    let again = serde_json::to_vec(&value).map_err(|e| SegmentError::Malformed { line: line_no, reason: e.to_string() })?;
    if again != line {
        return Err(SegmentError::Malformed { line: line_no, reason: "not in canonical form".into() });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::note::Signer;
    use crate::tree::MemoryTree;

    fn event(idx: u64) -> AuditLeaf {
        AuditLeaf {
            idx,
            occurred_at: 1_600_000_000_000 + idx as i64 * 1000,
            org_id: Some(uuid::Uuid::from_u128(7)),
            actor_user_id: idx.is_multiple_of(2).then(|| uuid::Uuid::from_u128(u128::from(idx))),
            actor_device_id: None,
            action: "message.read".into(),
            outcome: if idx.is_multiple_of(3) { "denied" } else { "success" }.into(),
            target_type: Some("conversation".into()),
            target_id: Some(format!("c{}", idx % 4)),
            patient_id: None,
            source_ip: Some("10.0.0.1".into()),
            request_id: None,
            detail: format!("{{\"count\":{idx}}}"),
        }
    }

    fn signer() -> Signer {
        Signer::from_seed("audit.example/log", &[9; 32]).unwrap()
    }

    /// A log of `n` events with a checkpoint at `n`, and the segment `[a, b)` of it.
    fn segment(a: u64, b: u64, n: u64) -> Vec<u8> {
        let signer = signer();
        let events: Vec<AuditLeaf> = (0..n).map(event).collect();
        let tree = MemoryTree::from_leaf_hashes(events.iter().map(AuditLeaf::leaf_hash));
        let cp = Checkpoint::sign(signer.name(), n, tree.root(), &signer).unwrap();
        let (left, right) = proof_nodes(a, b, n).unwrap();
        let header = SegmentHeader {
            origin: signer.name().into(),
            start: a,
            end: b,
            tree_size: n,
            checkpoint: cp.note().into(),
            left: tree.nodes(&left).unwrap(),
            right: tree.nodes(&right).unwrap(),
        };
        let mut out = header_line(&header);
        for e in &events[a as usize..b as usize] {
            out.push_str(&event_line(e, e.leaf_hash()));
        }
        out.into_bytes()
    }

    fn verify(bytes: &[u8]) -> Result<SegmentSummary, SegmentError> {
        verify_segment(bytes, &signer().verifier(), |_, _| {})
    }

    fn lines(bytes: &[u8]) -> Vec<String> {
        String::from_utf8(bytes.to_vec()).unwrap().lines().map(|l| format!("{l}\n")).collect()
    }

    #[test]
    fn a_segment_verifies_and_names_what_it_covers() {
        let s = verify(&segment(3, 9, 13)).unwrap();
        assert_eq!((s.start, s.end, s.tree_size), (3, 9, 13));
        assert!(verify(&segment(0, 1, 1)).is_ok());
        assert!(verify(&segment(0, 8, 8)).is_ok());
    }

    #[test]
    fn dropped_reordered_extra_lines_and_wrong_checkpoints_fail() {
        let good = lines(&segment(3, 9, 13));
        let join = |l: &[String]| l.concat().into_bytes();
        let mut l = good.clone();
        l.remove(4);
        assert_eq!(verify(&join(&l)), Err(SegmentError::Sequence { index: 6, found: 7 }));
        let mut l = good.clone();
        l.pop();
        assert_eq!(verify(&join(&l)), Err(SegmentError::Incomplete { index: 8, end: 9 }));
        let mut l = good.clone();
        l.swap(2, 3);
        assert_eq!(verify(&join(&l)), Err(SegmentError::Sequence { index: 4, found: 5 }));
        let mut l = good.clone();
        l.push(l[1].clone());
        assert_eq!(verify(&join(&l)), Err(SegmentError::Sequence { index: 9, found: 3 }));
        // The last newline is part of the format.
        let mut bytes = join(&good);
        bytes.pop();
        assert!(matches!(verify(&bytes), Err(SegmentError::Malformed { line: 7, .. })));
        assert!(matches!(verify(b""), Err(SegmentError::Malformed { line: 1, .. })));
        // Proof hashes that are not the tree's.
        let header = |edit: &dyn Fn(&mut SegmentHeader)| {
            let HeaderLine::Segment(mut h) = serde_json::from_str(&good[0]).unwrap();
            edit(&mut h);
            let mut l = good.clone();
            l[0] = header_line(&h);
            join(&l)
        };
        let bytes = header(&|h| h.left[0] = crate::hash::EMPTY_ROOT);
        assert_eq!(verify(&bytes), Err(SegmentError::RootMismatch { start: 3, end: 9, tree_size: 13 }));
        assert!(matches!(
            verify(&header(&|h| {
                h.right.pop();
            })),
            Err(SegmentError::BadHeader(_))
        ));
        assert!(matches!(verify(&header(&|h| h.end = 14)), Err(SegmentError::BadHeader(_))));
        assert!(matches!(verify(&header(&|h| h.start = 4)), Err(SegmentError::BadHeader(_))));
        // The genuine checkpoint of another size, under this one.
        let HeaderLine::Segment(other) = serde_json::from_str(&lines(&segment(3, 9, 14))[0]).unwrap();
        let bytes = header(&|h| h.checkpoint = other.checkpoint.clone());
        assert!(matches!(verify(&bytes), Err(SegmentError::BadCheckpoint(_))), "{:?}", verify(&bytes));
        // A header spelled differently (keys sorted) is refused too.
        let mut l = good.clone();
        l[0] = format!("{}\n", serde_json::from_str::<serde_json::Value>(&good[0]).unwrap());
        assert!(matches!(verify(&join(&l)), Err(SegmentError::Malformed { line: 1, .. })));
        // A checkpoint signed by another key.
        let forger = Signer::from_seed("audit.example/log", &[1; 32]).unwrap();
        let forged = Checkpoint::sign(forger.name(), 13, crate::hash::EMPTY_ROOT, &forger).unwrap();
        assert!(matches!(verify(&header(&|h| h.checkpoint = forged.note().into())), Err(SegmentError::BadCheckpoint(_))));
    }

    #[test]
    fn bad_ranges_are_refused() {
        assert!(proof_nodes(3, 3, 5).is_err());
        assert!(proof_nodes(3, 6, 5).is_err());
        assert!(proof_nodes(4, 3, 5).is_err());
    }

    /// Random `(a, b, n)` with `a < b <= n`.
    fn ranges() -> impl Strategy<Value = (u64, u64, u64)> {
        (1u64..200).prop_flat_map(|n| (0..n, Just(n))).prop_flat_map(|(a, n)| (Just(a), a + 1..=n, Just(n)))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn every_segment_verifies((a, b, n) in ranges()) {
            let s = verify(&segment(a, b, n)).unwrap();
            prop_assert_eq!((s.start, s.end, s.tree_size), (a, b, n));
        }

        #[test]
        fn any_changed_byte_fails((a, b, n) in ranges(), at in any::<prop::sample::Index>(), flip in 1u8..=255) {
            let mut bytes = segment(a, b, n);
            let i = at.index(bytes.len());
            bytes[i] ^= flip;
            prop_assert!(verify(&bytes).is_err(), "changing byte {} of {} went unnoticed", i, bytes.len());
        }
    }
}
