//! Offline verification of a whole audit log: the export format and the verifier.
//!
//! An export is NDJSON, one object per line, each with a `type`:
//!
//! - `{"type":"event","event":{…AuditLeaf…},"leaf_hash":"base64"|null}`: one per event, in
//!   index order. `leaf_hash` is the hash the server put into its tree when it integrated the
//!   event (`null` if it had not yet), so a row changed after integration shows as a mismatch
//!   at its exact index even where the row's own encoding is self-consistent.
//! - `{"type":"checkpoint","tree_size":N,"note":"…signed note…"}`: every stored checkpoint.
//! - `{"type":"base","tree_size":A,"hashes":["base64",…]}`: only in the export of a log whose
//!   oldest entries were archived (`crate::segment`), as its first line. The entries below `A`
//!   are gone; `hashes` are the roots of the perfect subtrees covering them (their compact
//!   range, [`crate::tree::root_plan`]`(A)`), so the tree can be continued from `A`. The base
//!   is not trusted on its own word: [`LogVerifier::finish`] fails unless the events after it
//!   reproduce the root of a signed checkpoint at a size of `A` or more.
//!
//! [`LogVerifier`] takes every checkpoint first (checking its signature), then the events in
//! order. It recomputes each leaf hash from the event, compares it with the recorded one,
//! checks that indexes run 0, 1, 2, … without gaps, and at each checkpoint's size compares the
//! recomputed root with the signed one. This also establishes consistency between successive
//! checkpoints, more strongly than an RFC 9162 consistency proof would: both roots are
//! recomputed from one and the same sequence of leaves, so the older tree is a prefix of the
//! newer. (Consistency proofs are for a verifier holding only two checkpoints; the API serves
//! them.) A checkpoint larger than the log means the log was truncated.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::checkpoint::Checkpoint;
use crate::event::AuditLeaf;
use crate::hash::Hash;
use crate::note::Verifier;
use crate::tree::Frontier;

/// One line of an export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ExportLine {
    /// An audit event with the leaf hash the server's tree holds for it.
    Event {
        /// The event.
        event: Box<AuditLeaf>,
        /// The integrated leaf hash, if the event was integrated.
        leaf_hash: Option<Hash>,
    },
    /// Where a pruned log starts: its first index and the compact range of the entries before.
    Base {
        /// The number of archived entries: the index of the first event that follows.
        tree_size: u64,
        /// The roots of the perfect subtrees covering the archived entries, largest first.
        hashes: Vec<Hash>,
    },
    /// A signed checkpoint.
    Checkpoint {
        /// The tree size it commits to.
        tree_size: u64,
        /// The signed note, verbatim.
        note: String,
    },
}

/// Why verification failed: the first problem found, with the index it concerns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A checkpoint's signature or format was refused: forged or damaged.
    #[error("checkpoint at tree size {size} does not verify: {reason}")]
    BadCheckpoint {
        /// The size it claims.
        size: u64,
        /// What was wrong.
        reason: String,
    },
    /// Two checkpoints claim the same size with different roots.
    #[error("two different checkpoints for tree size {size}")]
    ForkedCheckpoints {
        /// The size.
        size: u64,
    },
    /// Events are missing, duplicated, inserted or out of order.
    #[error("entry {index}: expected index {index}, found index {found}")]
    Sequence {
        /// The first index that is wrong.
        index: u64,
        /// The index found there.
        found: u64,
    },
    /// The event does not hash to the leaf the log integrated.
    #[error("entry {index}: the event does not match the leaf hash recorded in the tree")]
    LeafMismatch {
        /// The index.
        index: u64,
    },
    /// The recomputed root differs from a signed checkpoint's: an entry in the range was
    /// changed, inserted or removed (with its recorded leaf hash forged to match).
    #[error("entries {from}..{to}: the recomputed root at tree size {to} differs from the signed checkpoint")]
    RootMismatch {
        /// The size of the last checkpoint that matched (the first suspect index).
        from: u64,
        /// The checkpoint size that did not match.
        to: u64,
    },
    /// The base of a pruned log is malformed, or came after events.
    #[error("the log's base at tree size {size} is unusable: {reason}")]
    BadBase {
        /// The size it claims.
        size: u64,
        /// What was wrong.
        reason: String,
    },
    /// No signed checkpoint at or after the base of a pruned log matched, so nothing vouches
    /// for the base's hashes.
    #[error("entry {size}: no signed checkpoint at or after the archived base of {size} entries confirms it")]
    UnconfirmedBase {
        /// The base size.
        size: u64,
    },
    /// A checkpoint covers more entries than the log holds: the log was truncated.
    #[error("entry {index}: the log ends at {index} entries but a checkpoint covers {size}")]
    Truncated {
        /// The number of entries present (the first missing index).
        index: u64,
        /// The checkpoint's size.
        size: u64,
    },
}

impl VerifyError {
    /// The first index this failure implicates, if it is about entries.
    pub fn first_bad_index(&self) -> Option<u64> {
        match self {
            VerifyError::Sequence { index, .. } | VerifyError::LeafMismatch { index } | VerifyError::Truncated { index, .. } => {
                Some(*index)
            }
            VerifyError::RootMismatch { from, .. } => Some(*from),
            VerifyError::UnconfirmedBase { size } => Some(*size),
            _ => None,
        }
    }
}

/// What a successful verification covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Entries verified.
    pub entries: u64,
    /// Checkpoints verified.
    pub checkpoints: u64,
    /// The root over every entry.
    pub root: Hash,
    /// Entries not yet covered by any checkpoint (verified for sequence and leaf hash only).
    pub uncovered: u64,
    /// Entries archived before the log's base (counted in `entries`; their events are not in
    /// the log, their hashes are proven through the base).
    pub archived: u64,
}

/// Streams a log through verification; see the module documentation.
#[derive(Debug)]
pub struct LogVerifier {
    verifier: Verifier,
    checkpoints: BTreeMap<u64, Checkpoint>,
    frontier: Frontier,
    /// The size of the last checkpoint that matched.
    last_good: u64,
    /// The size the log starts at (0 unless pruned).
    base: u64,
    /// Whether events were pushed (or a base checked): after that, no base can be set.
    started: bool,
    /// Whether a checkpoint at or after the base matched.
    base_confirmed: bool,
}

impl LogVerifier {
    /// A verifier for the log whose checkpoints `verifier` signs (its name is the origin).
    pub fn new(verifier: Verifier) -> Self {
        LogVerifier {
            verifier,
            checkpoints: BTreeMap::new(),
            frontier: Frontier::new(),
            last_good: 0,
            base: 0,
            started: false,
            base_confirmed: false,
        }
    }

    /// Starts a pruned log at `size` entries, from the compact range of the archived ones
    /// ([`ExportLine::Base`]). Must come before the first event; checkpoints may come before or
    /// after. The base only counts once a signed checkpoint at or after it matches.
    pub fn start_at(&mut self, size: u64, hashes: Vec<Hash>) -> Result<(), VerifyError> {
        if self.started || self.frontier.size() != 0 {
            return Err(VerifyError::BadBase { size, reason: "it must come before every event, once".into() });
        }
        self.frontier = Frontier::restore(size, hashes).map_err(|e| VerifyError::BadBase { size, reason: e.to_string() })?;
        self.base = size;
        self.last_good = size;
        Ok(())
    }

    /// Adds a checkpoint after checking its signature, origin and claimed size.
    pub fn add_checkpoint(&mut self, tree_size: u64, note: &str) -> Result<(), VerifyError> {
        let origin = self.verifier.name().to_owned();
        let cp = Checkpoint::parse(note.as_bytes(), &origin, &self.verifier)
            .map_err(|e| VerifyError::BadCheckpoint { size: tree_size, reason: e.to_string() })?;
        if cp.size() != tree_size {
            return Err(VerifyError::BadCheckpoint { size: tree_size, reason: format!("the note says size {}", cp.size()) });
        }
        if let Some(existing) = self.checkpoints.get(&tree_size)
            && existing.root() != cp.root()
        {
            return Err(VerifyError::ForkedCheckpoints { size: tree_size });
        }
        self.checkpoints.insert(tree_size, cp);
        Ok(())
    }

    /// Checks the next event (its index, its leaf hash, and any checkpoint it completes).
    pub fn push(&mut self, event: &AuditLeaf, recorded: Option<Hash>) -> Result<(), VerifyError> {
        let index = self.frontier.size();
        if !self.started {
            // A checkpoint of the empty tree, or at exactly the base.
            self.started = true;
            self.at_size()?;
        }
        if event.idx != index {
            return Err(VerifyError::Sequence { index, found: event.idx });
        }
        let leaf = event.leaf_hash();
        if recorded.is_some_and(|r| r != leaf) {
            return Err(VerifyError::LeafMismatch { index });
        }
        self.frontier.push(leaf);
        self.at_size()
    }

    /// Checks a checkpoint at the current size, if there is one (also the empty tree's).
    fn at_size(&mut self) -> Result<(), VerifyError> {
        let size = self.frontier.size();
        let Some(cp) = self.checkpoints.get(&size) else { return Ok(()) };
        if *cp.root() != self.frontier.root() {
            return Err(VerifyError::RootMismatch { from: self.last_good, to: size });
        }
        self.last_good = size;
        self.base_confirmed = true;
        Ok(())
    }

    /// Ends verification: every checkpoint must have been reached.
    pub fn finish(mut self) -> Result<Summary, VerifyError> {
        if !self.started {
            self.at_size()?;
        }
        let entries = self.frontier.size();
        if let Some((&size, _)) = self.checkpoints.range(entries + 1..).next() {
            return Err(VerifyError::Truncated { index: entries, size });
        }
        if self.base > 0 && !self.base_confirmed {
            return Err(VerifyError::UnconfirmedBase { size: self.base });
        }
        let covered = self.checkpoints.keys().next_back().copied().unwrap_or(0).min(entries);
        Ok(Summary {
            entries,
            checkpoints: self.checkpoints.len() as u64,
            root: self.frontier.root(),
            uncovered: entries - covered,
            archived: self.base,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::note::Signer;
    use crate::tree::root;

    fn leaf(idx: u64) -> AuditLeaf {
        AuditLeaf {
            idx,
            occurred_at: 1_767_225_600_000 + idx as i64,
            org_id: Some(uuid::Uuid::from_u128(1)),
            actor_user_id: Some(uuid::Uuid::from_u128(100 + u128::from(idx % 3))),
            actor_device_id: None,
            action: "message.read".into(),
            outcome: "success".into(),
            target_type: Some("conversation".into()),
            target_id: Some(format!("c{}", idx % 5)),
            patient_id: None,
            source_ip: Some("10.0.0.1".into()),
            request_id: None,
            detail: "{}".into(),
        }
    }

    /// A log of 20 events with checkpoints at 0, 5, 13 and 20.
    type Events = Vec<(AuditLeaf, Option<Hash>)>;

    fn log(signer: &Signer) -> (Events, Vec<(u64, String)>) {
        let events: Vec<_> = (0..20).map(|i| (leaf(i), Some(leaf(i).leaf_hash()))).collect();
        let hashes: Vec<Hash> = events.iter().map(|(e, _)| e.leaf_hash()).collect();
        let cps = [0u64, 5, 13, 20]
            .iter()
            .map(|&n| (n, Checkpoint::sign(signer.name(), n, root(&hashes[..n as usize]), signer).unwrap().note().to_owned()))
            .collect();
        (events, cps)
    }

    fn run(v: &Verifier, events: &[(AuditLeaf, Option<Hash>)], cps: &[(u64, String)]) -> Result<Summary, VerifyError> {
        let mut lv = LogVerifier::new(v.clone());
        for (n, note) in cps {
            lv.add_checkpoint(*n, note)?;
        }
        for (e, h) in events {
            lv.push(e, *h)?;
        }
        lv.finish()
    }

    #[test]
    fn an_intact_log_verifies_and_every_tampering_is_found_at_its_index() {
        let signer = Signer::from_seed("audit.example/log", &[7; 32]).unwrap();
        let v = signer.verifier();
        let (events, cps) = log(&signer);
        let ok = run(&v, &events, &cps).unwrap();
        assert_eq!((ok.entries, ok.checkpoints, ok.uncovered), (20, 4, 0));

        // Modified, leaf hash left as integrated: exact index.
        let mut e = events.clone();
        e[7].0.outcome = "denied".into();
        assert_eq!(run(&v, &e, &cps), Err(VerifyError::LeafMismatch { index: 7 }));
        // Modified with its leaf hash forged (or not recorded): the checkpoint range.
        e[7].1 = Some(e[7].0.leaf_hash());
        assert_eq!(run(&v, &e, &cps), Err(VerifyError::RootMismatch { from: 5, to: 13 }));
        e[7].1 = None;
        assert_eq!(run(&v, &e, &cps).unwrap_err().first_bad_index(), Some(5));
        // Deleted.
        let mut e = events.clone();
        e.remove(9);
        assert_eq!(run(&v, &e, &cps), Err(VerifyError::Sequence { index: 9, found: 10 }));
        // Inserted (a copy with the next index: the indexes no longer run).
        let mut e = events.clone();
        e.insert(4, events[3].clone());
        assert_eq!(run(&v, &e, &cps), Err(VerifyError::Sequence { index: 4, found: 3 }));
        // Inserted and renumbered, leaf hashes recomputed: the root no longer matches.
        let mut e: Vec<_> = events.clone();
        let mut extra = leaf(4);
        extra.outcome = "failure".into();
        e.insert(4, (extra, None));
        for (i, (ev, h)) in e.iter_mut().enumerate() {
            ev.idx = i as u64;
            *h = Some(ev.leaf_hash());
        }
        assert_eq!(run(&v, &e, &cps), Err(VerifyError::RootMismatch { from: 0, to: 5 }));
        // Reordered.
        let mut e = events.clone();
        e.swap(15, 16);
        assert_eq!(run(&v, &e, &cps), Err(VerifyError::Sequence { index: 15, found: 16 }));
        // Truncated.
        let e = &events[..17];
        assert_eq!(run(&v, e, &cps), Err(VerifyError::Truncated { index: 17, size: 20 }));
        // Entries beyond the last checkpoint are reported as uncovered, not as errors.
        assert_eq!(run(&v, &events, &cps[..3]).unwrap().uncovered, 7);
    }

    #[test]
    fn forged_checkpoints_are_refused() {
        let signer = Signer::from_seed("audit.example/log", &[7; 32]).unwrap();
        let v = signer.verifier();
        let (events, mut cps) = log(&signer);
        // Another key under the same name.
        let forger = Signer::from_seed("audit.example/log", &[8; 32]).unwrap();
        let hashes: Vec<Hash> = events.iter().map(|(e, _)| e.leaf_hash()).collect();
        let forged = Checkpoint::sign("audit.example/log", 13, root(&hashes[..13]), &forger).unwrap().note().to_owned();
        let mut c = cps.clone();
        c[2].1 = forged;
        assert!(matches!(run(&v, &events, &c), Err(VerifyError::BadCheckpoint { size: 13, .. })));
        // An edited root in a genuine note.
        let mut c = cps.clone();
        c[2].1 = c[2].1.replacen("\n", "\nX", 2).replacen("\nX", "\n", 1);
        assert!(matches!(run(&v, &events, &c), Err(VerifyError::BadCheckpoint { .. })));
        // A genuine note filed under another size.
        cps[2].0 = 14;
        assert!(matches!(run(&v, &events, &cps), Err(VerifyError::BadCheckpoint { size: 14, .. })));
    }

    #[test]
    fn a_pruned_log_verifies_from_its_base_only_when_a_checkpoint_confirms_it() {
        let signer = Signer::from_seed("audit.example/log", &[7; 32]).unwrap();
        let v = signer.verifier();
        let (events, cps) = log(&signer);
        let hashes: Vec<Hash> = events.iter().map(|(e, _)| e.leaf_hash()).collect();
        let tree = crate::tree::MemoryTree::from_leaf_hashes(hashes.iter().copied());
        let base = |a: u64| tree.nodes(crate::tree::root_plan(a).nodes()).unwrap();
        let run_from = |a: u64, base: Vec<Hash>, cps: &[(u64, String)]| {
            let mut lv = LogVerifier::new(v.clone());
            for (n, note) in cps {
                lv.add_checkpoint(*n, note)?;
            }
            lv.start_at(a, base)?;
            for (e, h) in &events[a as usize..] {
                lv.push(e, *h)?;
            }
            lv.finish()
        };
        for a in [1, 5, 9, 13, 19] {
            let ok = run_from(a, base(a), &cps).unwrap();
            assert_eq!((ok.entries, ok.archived, ok.uncovered), (20, a, 0));
        }
        // A forged base (another hash) no longer reproduces the signed roots.
        let mut forged = base(9);
        forged[0] = hashes[0];
        assert_eq!(run_from(9, forged, &cps), Err(VerifyError::RootMismatch { from: 9, to: 13 }));
        // A base with the wrong number of hashes is refused outright.
        assert!(matches!(run_from(9, vec![], &cps), Err(VerifyError::BadBase { size: 9, .. })));
        // Without a checkpoint at or after the base, nothing vouches for it.
        assert_eq!(run_from(14, base(14), &cps[..3]), Err(VerifyError::UnconfirmedBase { size: 14 }));
        // A base after events is refused.
        let mut lv = LogVerifier::new(v.clone());
        lv.push(&events[0].0, None).unwrap();
        assert!(matches!(lv.start_at(1, base(1)), Err(VerifyError::BadBase { .. })));
    }

    #[test]
    fn export_lines_round_trip() {
        let line = ExportLine::Event { event: Box::new(leaf(3)), leaf_hash: Some(leaf(3).leaf_hash()) };
        let text = serde_json::to_string(&line).unwrap();
        assert!(text.starts_with(r#"{"type":"event","event":{"idx":3,"#), "{text}");
        assert_eq!(serde_json::from_str::<ExportLine>(&text).unwrap(), line);
        let base = ExportLine::Base { tree_size: 3, hashes: vec![leaf(0).leaf_hash(), leaf(1).leaf_hash()] };
        let text = serde_json::to_string(&base).unwrap();
        assert!(text.starts_with(r#"{"type":"base","tree_size":3,"hashes":[""#), "{text}");
        assert_eq!(serde_json::from_str::<ExportLine>(&text).unwrap(), base);
        let cp = ExportLine::Checkpoint { tree_size: 5, note: "n\n".into() };
        assert_eq!(serde_json::from_str::<ExportLine>(&serde_json::to_string(&cp).unwrap()).unwrap(), cp);
    }
}
