//! Inclusion bundles: one audit event, a signed checkpoint and the inclusion proof tying them
//! together, in one self-contained JSON document that a third party can check offline with
//! nothing but the log's verifier key.
//!
//! ```json
//! {
//!   "format": "ward-audit-inclusion/v1",
//!   "entry": {"type": "event", "event": {…AuditLeaf…}, "leaf_hash": "base64" | null},
//!   "checkpoint": "<origin>\n<size>\n<root>\n\n— <origin> <signature>\n",
//!   "proof": {"leaf_index": 7, "tree_size": 20, "hashes": ["base64", …]}
//! }
//! ```
//!
//! `entry` is exactly one line of an export ([`ExportLine::Event`]), `checkpoint` the signed
//! note verbatim, and `proof` the inclusion proof JSON the API serves. [`verify_bundle`]
//! recomputes the leaf hash from the event's canonical encoding, checks the checkpoint's
//! signature and origin, and verifies the proof against the signed root. A verifier that
//! already holds the checkpoint or the export line (from a publication or an earlier export)
//! passes them as [`Held`]: they then replace the bundle's, which must agree with them.

use serde::{Deserialize, Serialize};

use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::event::AuditLeaf;
use crate::hash::Hash;
use crate::note::Verifier;
use crate::proof::{InclusionProof, ProofError};
use crate::verify::ExportLine;

/// The `format` of the bundles this version writes and reads.
pub const BUNDLE_FORMAT: &str = "ward-audit-inclusion/v1";

/// A self-contained inclusion proof of one event (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionBundle {
    /// Always [`BUNDLE_FORMAT`].
    pub format: String,
    /// The event, as one export line.
    pub entry: ExportLine,
    /// The signed checkpoint note the proof leads to, verbatim.
    pub checkpoint: String,
    /// The inclusion proof of the event in the checkpoint's tree.
    pub proof: InclusionProof,
}

impl InclusionBundle {
    /// A bundle of the given parts in the current format.
    pub fn new(event: AuditLeaf, leaf_hash: Option<Hash>, checkpoint: String, proof: InclusionProof) -> Self {
        InclusionBundle {
            format: BUNDLE_FORMAT.to_owned(),
            entry: ExportLine::Event { event: Box::new(event), leaf_hash },
            checkpoint,
            proof,
        }
    }
}

/// What the verifier already holds and trusts more than the bundle: a checkpoint (note text)
/// and the event's export line.
#[derive(Debug, Clone, Copy, Default)]
pub struct Held<'a> {
    /// A signed checkpoint note obtained independently (a publication, `checkpoints.log`).
    pub checkpoint: Option<&'a str>,
    /// The event's export line obtained independently (an earlier export).
    pub entry: Option<&'a ExportLine>,
}

/// What a bundle proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Included {
    /// The event's index.
    pub index: u64,
    /// The size of the checkpointed tree.
    pub tree_size: u64,
    /// The signed root.
    pub root: Hash,
    /// The event's leaf hash, recomputed from its canonical encoding.
    pub leaf_hash: Hash,
    /// The log's origin.
    pub origin: String,
}

/// Why a bundle does not prove its event's inclusion.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// The bundle is of another format or version.
    #[error("unsupported bundle format {0:?} (expected {BUNDLE_FORMAT:?})")]
    Format(String),
    /// The bundle's entry (or the held one) is not an event line.
    #[error("the entry is not an event export line")]
    NotAnEvent,
    /// The checkpoint is not signed by the given key for its origin, or is malformed.
    #[error("the checkpoint does not verify with this key: {0}")]
    Checkpoint(#[from] CheckpointError),
    /// The held checkpoint is not signed by the given key for its origin, or is malformed.
    #[error("the held checkpoint does not verify with this key: {0}")]
    HeldCheckpoint(CheckpointError),
    /// The held checkpoint and the bundle's commit to different trees.
    #[error("the bundle's checkpoint (tree size {bundle}) is not the held checkpoint (tree size {held})")]
    CheckpointMismatch {
        /// The bundle checkpoint's size.
        bundle: u64,
        /// The held checkpoint's size.
        held: u64,
    },
    /// The held event and the bundle's differ.
    #[error("the bundle's event is not the held event")]
    EntryMismatch,
    /// The proof is for another tree size than the checkpoint's.
    #[error("the proof is for tree size {proof}, but the checkpoint is for tree size {checkpoint}")]
    SizeMismatch {
        /// The proof's tree size.
        proof: u64,
        /// The checkpoint's tree size.
        checkpoint: u64,
    },
    /// The proof is for another index than the event's.
    #[error("the proof is for index {proof}, but the event has index {event}")]
    IndexMismatch {
        /// The proof's leaf index.
        proof: u64,
        /// The event's `idx`.
        event: u64,
    },
    /// The event does not hash to the leaf hash recorded with it: the event was changed.
    #[error("event {index} does not match its recorded leaf hash")]
    LeafMismatch {
        /// The event's index.
        index: u64,
    },
    /// The proof does not lead from the event's leaf hash to the signed root.
    #[error("event {index} is not proven included in the tree of size {size}: {source}")]
    NotIncluded {
        /// The event's index.
        index: u64,
        /// The checkpoint's size.
        size: u64,
        /// What the proof verification said.
        source: ProofError,
    },
}

/// Checks `bundle` with the log's `verifier` (whose key name is the log's origin), using the
/// `held` checkpoint and entry in place of the bundle's where given.
pub fn verify_bundle(bundle: &InclusionBundle, verifier: &Verifier, held: Held<'_>) -> Result<Included, BundleError> {
    if bundle.format != BUNDLE_FORMAT {
        return Err(BundleError::Format(bundle.format.clone()));
    }
    let origin = verifier.name();
    let bundled = Checkpoint::parse(bundle.checkpoint.as_bytes(), origin, verifier)?;
    let checkpoint = match held.checkpoint {
        None => bundled,
        Some(note) => {
            let trusted = Checkpoint::parse(note.as_bytes(), origin, verifier).map_err(BundleError::HeldCheckpoint)?;
            // Notes may differ in cosignatures; what must agree is the tree they commit to.
            if (trusted.size(), trusted.root()) != (bundled.size(), bundled.root()) {
                return Err(BundleError::CheckpointMismatch { bundle: bundled.size(), held: trusted.size() });
            }
            trusted
        }
    };
    let (event, recorded) = event_of(&bundle.entry)?;
    let (event, recorded) = match held.entry {
        None => (event, recorded),
        Some(line) => {
            let (held_event, held_recorded) = event_of(line)?;
            if held_event != event || (held_recorded.is_some() && recorded.is_some() && held_recorded != recorded) {
                return Err(BundleError::EntryMismatch);
            }
            (held_event, held_recorded.or(recorded))
        }
    };
    let proof = &bundle.proof;
    if proof.tree_size != checkpoint.size() {
        return Err(BundleError::SizeMismatch { proof: proof.tree_size, checkpoint: checkpoint.size() });
    }
    if proof.leaf_index != event.idx {
        return Err(BundleError::IndexMismatch { proof: proof.leaf_index, event: event.idx });
    }
    let leaf_hash = event.leaf_hash();
    if recorded.is_some_and(|r| r != leaf_hash) {
        return Err(BundleError::LeafMismatch { index: event.idx });
    }
    proof.verify(&leaf_hash, checkpoint.root()).map_err(|source| BundleError::NotIncluded {
        index: event.idx,
        size: checkpoint.size(),
        source,
    })?;
    Ok(Included {
        index: event.idx,
        tree_size: checkpoint.size(),
        root: *checkpoint.root(),
        leaf_hash,
        origin: checkpoint.origin().to_owned(),
    })
}

fn event_of(line: &ExportLine) -> Result<(&AuditLeaf, Option<Hash>), BundleError> {
    match line {
        ExportLine::Event { event, leaf_hash } => Ok((event, *leaf_hash)),
        ExportLine::Checkpoint { .. } | ExportLine::Base { .. } => Err(BundleError::NotAnEvent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::note::Signer;
    use crate::tree::MemoryTree;

    fn leaf(idx: u64) -> AuditLeaf {
        AuditLeaf {
            idx,
            occurred_at: 1_767_225_600_000 + idx as i64,
            org_id: Some(uuid::Uuid::from_u128(1)),
            actor_user_id: Some(uuid::Uuid::from_u128(2)),
            actor_device_id: None,
            action: "message.read".into(),
            outcome: "success".into(),
            target_type: Some("conversation".into()),
            target_id: Some(format!("c{idx}")),
            patient_id: None,
            source_ip: None,
            request_id: None,
            detail: "{}".into(),
        }
    }

    struct Log {
        signer: Signer,
        events: Vec<AuditLeaf>,
        tree: MemoryTree,
    }

    impl Log {
        fn new(n: u64) -> Self {
            let signer = Signer::from_seed("audit.example/log", &[3; 32]).unwrap();
            let events: Vec<_> = (0..n).map(leaf).collect();
            let tree = MemoryTree::from_leaf_hashes(events.iter().map(AuditLeaf::leaf_hash));
            Log { signer, events, tree }
        }

        fn checkpoint(&self, size: u64) -> String {
            let root = self.tree.root_at(size).unwrap();
            Checkpoint::sign(self.signer.name(), size, root, &self.signer).unwrap().note().to_owned()
        }

        fn bundle(&self, index: u64, size: u64) -> InclusionBundle {
            let hashes = self.tree.inclusion_proof(index, size).unwrap();
            let event = self.events[index as usize].clone();
            let h = event.leaf_hash();
            InclusionBundle::new(event, Some(h), self.checkpoint(size), InclusionProof { leaf_index: index, tree_size: size, hashes })
        }
    }

    fn entry(b: &mut InclusionBundle) -> (&mut AuditLeaf, &mut Option<Hash>) {
        match &mut b.entry {
            ExportLine::Event { event, leaf_hash } => (event, leaf_hash),
            ExportLine::Checkpoint { .. } | ExportLine::Base { .. } => panic!("not an event"),
        }
    }

    #[test]
    fn every_event_proves_against_every_later_checkpoint() {
        let log = Log::new(13);
        let v = log.signer.verifier();
        for size in 1..=13 {
            for index in 0..size {
                let b = log.bundle(index, size);
                let ok = verify_bundle(&b, &v, Held::default()).unwrap();
                assert_eq!((ok.index, ok.tree_size, ok.root), (index, size, log.tree.root_at(size).unwrap()));
                assert_eq!(ok.origin, "audit.example/log");
                // Through JSON and back, as a third party receives it.
                let json = serde_json::to_string(&b).unwrap();
                let back: InclusionBundle = serde_json::from_str(&json).unwrap();
                assert_eq!(verify_bundle(&back, &v, Held::default()), Ok(ok));
            }
        }
    }

    #[test]
    fn json_shape() {
        let log = Log::new(3);
        let b = log.bundle(1, 3);
        let json = serde_json::to_value(&b).unwrap();
        assert_eq!(json["format"], "ward-audit-inclusion/v1");
        assert_eq!(json["entry"]["type"], "event");
        assert_eq!(json["entry"]["event"]["idx"], 1);
        assert_eq!(json["entry"]["leaf_hash"], log.events[1].leaf_hash().to_string());
        assert_eq!(json["proof"]["leaf_index"], 1);
        assert_eq!(json["proof"]["tree_size"], 3);
        assert_eq!(json["proof"]["hashes"].as_array().unwrap().len(), 2);
        assert!(json["checkpoint"].as_str().unwrap().starts_with("audit.example/log\n3\n"));
    }

    #[test]
    fn tampering_is_refused_with_the_reason() {
        let log = Log::new(9);
        let v = log.signer.verifier();
        let good = log.bundle(4, 9);
        let none = Held::default();

        // A changed event whose recorded leaf hash was kept.
        let mut b = good.clone();
        entry(&mut b).0.outcome = "denied".into();
        assert_eq!(verify_bundle(&b, &v, none), Err(BundleError::LeafMismatch { index: 4 }));
        // The same with the leaf hash recomputed (or dropped): the proof no longer leads to the root.
        let (event, leaf_hash) = entry(&mut b);
        *leaf_hash = Some(event.leaf_hash());
        assert!(matches!(verify_bundle(&b, &v, none), Err(BundleError::NotIncluded { index: 4, size: 9, .. })));
        *entry(&mut b).1 = None;
        assert!(matches!(verify_bundle(&b, &v, none), Err(BundleError::NotIncluded { .. })));

        // Another index claimed: in the proof, or in the event with the proof to match.
        let mut b = good.clone();
        b.proof.leaf_index = 5;
        assert_eq!(verify_bundle(&b, &v, none), Err(BundleError::IndexMismatch { proof: 5, event: 4 }));
        let mut b = log.bundle(5, 9);
        let (event, leaf_hash) = entry(&mut b);
        *event = log.events[4].clone();
        event.idx = 5;
        *leaf_hash = Some(event.leaf_hash());
        assert!(matches!(verify_bundle(&b, &v, none), Err(BundleError::NotIncluded { index: 5, .. })));

        // A proof hash changed, dropped or added.
        let mut b = good.clone();
        b.proof.hashes[0].0[0] ^= 1;
        assert!(matches!(verify_bundle(&b, &v, none), Err(BundleError::NotIncluded { .. })));
        let mut b = good.clone();
        b.proof.hashes.pop();
        assert!(matches!(verify_bundle(&b, &v, none), Err(BundleError::NotIncluded { source: ProofError::TooShort, .. })));

        // A checkpoint for another size than the proof.
        let mut b = good.clone();
        b.checkpoint = log.checkpoint(8);
        assert_eq!(verify_bundle(&b, &v, none), Err(BundleError::SizeMismatch { proof: 9, checkpoint: 8 }));

        // A forged checkpoint: another key under the log's name, or the root edited.
        let forger = Signer::from_seed("audit.example/log", &[4; 32]).unwrap();
        let mut b = good.clone();
        b.checkpoint = Checkpoint::sign("audit.example/log", 9, log.tree.root(), &forger).unwrap().note().to_owned();
        assert!(matches!(verify_bundle(&b, &v, none), Err(BundleError::Checkpoint(_))));
        let mut b = good.clone();
        let mut lines: Vec<String> = b.checkpoint.split('\n').map(str::to_owned).collect();
        lines[2] = Hash([0; 32]).to_string();
        b.checkpoint = lines.join("\n");
        assert!(matches!(verify_bundle(&b, &v, none), Err(BundleError::Checkpoint(_))));

        // The wrong key, or a key for another origin.
        assert!(matches!(verify_bundle(&good, &forger.verifier(), none), Err(BundleError::Checkpoint(_))));
        let elsewhere = Signer::from_seed("other.example/log", &[3; 32]).unwrap().verifier();
        assert!(matches!(verify_bundle(&good, &elsewhere, none), Err(BundleError::Checkpoint(_))));

        // Another format.
        let mut b = good.clone();
        b.format = "ward-audit-inclusion/v2".into();
        assert!(matches!(verify_bundle(&b, &v, none), Err(BundleError::Format(_))));
        let mut b = good;
        b.entry = ExportLine::Checkpoint { tree_size: 9, note: log.checkpoint(9) };
        assert_eq!(verify_bundle(&b, &v, none), Err(BundleError::NotAnEvent));
    }

    #[test]
    fn held_checkpoint_and_entry_replace_the_bundles() {
        let log = Log::new(9);
        let v = log.signer.verifier();
        let good = log.bundle(4, 9);
        let held_cp = log.checkpoint(9);
        let held_entry = good.entry.clone();
        let held = Held { checkpoint: Some(&held_cp), entry: Some(&held_entry) };
        assert!(verify_bundle(&good, &v, held).is_ok());

        // A held checkpoint of another tree than the bundle's.
        let older = log.checkpoint(8);
        let mismatch = Held { checkpoint: Some(&older), entry: None };
        assert_eq!(verify_bundle(&good, &v, mismatch), Err(BundleError::CheckpointMismatch { bundle: 9, held: 8 }));
        // A held checkpoint that is itself forged.
        let forger = Signer::from_seed("audit.example/log", &[4; 32]).unwrap();
        let forged = Checkpoint::sign("audit.example/log", 9, log.tree.root(), &forger).unwrap().note().to_owned();
        assert!(matches!(verify_bundle(&good, &v, Held { checkpoint: Some(&forged), entry: None }), Err(BundleError::HeldCheckpoint(_))));

        // The bundle's event differs from the held one: refused even though the bundle is
        // self-consistent (it proves another event).
        let other = log.bundle(5, 9);
        assert!(verify_bundle(&other, &v, Held::default()).is_ok());
        assert_eq!(verify_bundle(&other, &v, Held { checkpoint: None, entry: Some(&held_entry) }), Err(BundleError::EntryMismatch));
        // A held entry whose recorded leaf hash differs.
        let ExportLine::Event { event, .. } = &held_entry else { unreachable!() };
        let wrong_hash = ExportLine::Event { event: event.clone(), leaf_hash: Some(Hash([1; 32])) };
        assert_eq!(verify_bundle(&good, &v, Held { checkpoint: None, entry: Some(&wrong_hash) }), Err(BundleError::EntryMismatch));
        // A held checkpoint line in place of an event.
        let not_event = ExportLine::Checkpoint { tree_size: 9, note: held_cp.clone() };
        assert_eq!(verify_bundle(&good, &v, Held { checkpoint: None, entry: Some(&not_event) }), Err(BundleError::NotAnEvent));
    }
}
