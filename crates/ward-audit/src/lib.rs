//! The audit log's verifiable structure: RFC 9162 Merkle tree hashing, inclusion and consistency proofs, C2SP signed notes and checkpoints.

#![forbid(unsafe_code)]

pub mod bundle;
pub mod checkpoint;
pub mod event;
pub mod hash;
pub mod note;
pub mod proof;
pub mod segment;
pub mod tree;
pub mod verify;

pub use bundle::{BUNDLE_FORMAT, BundleError, Held, Included, InclusionBundle, verify_bundle};
pub use checkpoint::{Checkpoint, CheckpointError};
pub use event::AuditLeaf;
pub use hash::{EMPTY_ROOT, Hash, HashError, leaf_hash, node_hash};
pub use note::{Note, NoteError, Signer, Verifier};
pub use proof::{ConsistencyProof, InclusionProof, ProofError};
pub use segment::{SegmentError, SegmentHeader, SegmentSummary, SegmentVerifier};
pub use tree::{Frontier, MemoryTree, NodeId, ProofPlan, TreeError};
pub use verify::{ExportLine, LogVerifier, Summary, VerifyError};

/// Any error of this crate, for callers that want one type; functions return the precise one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A hash did not parse.
    #[error(transparent)]
    Hash(#[from] HashError),
    /// A tree operation got impossible arguments or missing nodes.
    #[error(transparent)]
    Tree(#[from] TreeError),
    /// A proof did not verify.
    #[error(transparent)]
    Proof(#[from] ProofError),
    /// A key or signed note was refused.
    #[error(transparent)]
    Note(#[from] NoteError),
    /// A checkpoint was refused.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// An inclusion bundle was refused.
    #[error(transparent)]
    Bundle(#[from] BundleError),
}
