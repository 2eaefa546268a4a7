//! Proof verification, exactly as RFC 9162 §2.1.3.2 and §2.1.4.2 write it, and the proof
//! JSON Ward serves.
//!
//! Verification needs only the proof, the sizes and the trusted roots: no tree, no storage.
//! It is what a third-party auditor runs, so it follows the RFC's text step by step rather
//! than mirroring the generator in `tree`.

use serde::{Deserialize, Serialize};

use crate::hash::{Hash, node_hash};

/// Why a proof does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The leaf index is at or beyond the tree size.
    #[error("leaf index {index} is outside a tree of size {size}")]
    IndexOutOfRange {
        /// The claimed leaf index.
        index: u64,
        /// The claimed tree size.
        size: u64,
    },
    /// The old size of a consistency proof exceeds the new size.
    #[error("old size {old} is larger than new size {new}")]
    SizesReversed {
        /// The claimed old size.
        old: u64,
        /// The claimed new size.
        new: u64,
    },
    /// The proof has more hashes than the path from the leaf (or old root) to the root.
    #[error("proof has too many hashes")]
    TooLong,
    /// The proof ran out of hashes before reaching the root.
    #[error("proof has too few hashes")]
    TooShort,
    /// The proof recomputes another root than the trusted (new) root.
    #[error("proof does not lead to the expected root")]
    RootMismatch,
    /// The consistency proof recomputes another old root than the trusted old root.
    #[error("proof does not lead to the expected old root")]
    OldRootMismatch,
}

/// Recomputes the root from a leaf hash and its inclusion proof (RFC 9162 §2.1.3.2).
pub fn root_from_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash]) -> Result<Hash, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let (mut fn_, mut sn, mut r) = (index, size - 1, *leaf);
    for p in proof {
        if sn == 0 {
            return Err(ProofError::TooLong);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            // A last node with no right sibling moves up without hashing.
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::TooShort);
    }
    Ok(r)
}

/// Checks that `leaf` is leaf `index` of the tree of `size` leaves whose root is `root`.
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> Result<(), ProofError> {
    if root_from_inclusion(index, size, leaf, proof)? != *root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Checks that the tree of `old` leaves with root `old_root` is a prefix of the tree of `new`
/// leaves with root `new_root` (RFC 9162 §2.1.4.2).
pub fn verify_consistency(old: u64, new: u64, old_root: &Hash, new_root: &Hash, proof: &[Hash]) -> Result<(), ProofError> {
    if old > new {
        return Err(ProofError::SizesReversed { old, new });
    }
    if old == new {
        // Same tree: nothing to prove but that the roots agree.
        if !proof.is_empty() {
            return Err(ProofError::TooLong);
        }
        return if old_root == new_root { Ok(()) } else { Err(ProofError::RootMismatch) };
    }
    if old == 0 {
        // The empty tree is a prefix of every tree.
        return if proof.is_empty() { Ok(()) } else { Err(ProofError::TooLong) };
    }
    // When the old tree is perfect, its root is a node of the new tree and the proof leaves
    // it out: the verifier starts from the root it already trusts.
    let (first, rest) = match (old.is_power_of_two(), proof.split_first()) {
        (true, _) => (old_root, proof),
        (false, Some((first, rest))) => (first, rest),
        (false, None) => return Err(ProofError::TooShort),
    };
    let (mut fn_, mut sn) = (old - 1, new - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if sn == 0 {
            return Err(ProofError::TooLong);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::TooShort);
    }
    if fr != *old_root {
        return Err(ProofError::OldRootMismatch);
    }
    if sr != *new_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// An inclusion proof as Ward serves it: `{"leaf_index", "tree_size", "hashes": [base64…]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    /// The 0-based index of the leaf.
    pub leaf_index: u64,
    /// The size of the tree the proof is against.
    pub tree_size: u64,
    /// The audit path, the leaf's sibling first.
    pub hashes: Vec<Hash>,
}

impl InclusionProof {
    /// Checks the proof for `leaf` against the trusted `root` of a tree of `tree_size` leaves.
    pub fn verify(&self, leaf: &Hash, root: &Hash) -> Result<(), ProofError> {
        verify_inclusion(self.leaf_index, self.tree_size, leaf, &self.hashes, root)
    }
}

/// A consistency proof as Ward serves it: `{"old_size", "tree_size", "hashes": [base64…]}`.
/// On input, `leaf_index` is accepted in place of `old_size`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencyProof {
    /// The size of the older tree.
    #[serde(alias = "leaf_index")]
    pub old_size: u64,
    /// The size of the newer tree.
    pub tree_size: u64,
    /// The proof hashes.
    pub hashes: Vec<Hash>,
}

impl ConsistencyProof {
    /// Checks the proof against the trusted roots of both trees.
    pub fn verify(&self, old_root: &Hash, new_root: &Hash) -> Result<(), ProofError> {
        verify_consistency(self.old_size, self.tree_size, old_root, new_root, &self.hashes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{EMPTY_ROOT, leaf_hash};

    #[test]
    fn trivial_consistency_cases() {
        // After transparency-dev/merkle's TestVerifyConsistency table.
        let (a, b) = (leaf_hash(b"a"), leaf_hash(b"b"));
        assert_eq!(verify_consistency(0, 0, &a, &b, &[]), Err(ProofError::RootMismatch));
        assert_eq!(verify_consistency(1, 1, &a, &b, &[]), Err(ProofError::RootMismatch));
        assert_eq!(verify_consistency(0, 0, &a, &a, &[]), Ok(()));
        assert_eq!(verify_consistency(0, 1, &a, &b, &[]), Ok(()));
        assert_eq!(verify_consistency(1, 1, &b, &b, &[]), Ok(()));
        assert_eq!(verify_consistency(1, 0, &a, &b, &[]), Err(ProofError::SizesReversed { old: 1, new: 0 }));
        assert_eq!(verify_consistency(2, 1, &a, &b, &[]), Err(ProofError::SizesReversed { old: 2, new: 1 }));
        assert!(verify_consistency(1, 2, &a, &b, &[]).is_err());
        assert_eq!(verify_consistency(0, 0, &EMPTY_ROOT, &EMPTY_ROOT, &[EMPTY_ROOT]), Err(ProofError::TooLong));
        assert_eq!(verify_consistency(0, 1, &EMPTY_ROOT, &EMPTY_ROOT, &[EMPTY_ROOT]), Err(ProofError::TooLong));
        assert_eq!(verify_consistency(1, 1, &EMPTY_ROOT, &EMPTY_ROOT, &[EMPTY_ROOT]), Err(ProofError::TooLong));
    }

    #[test]
    fn single_leaf_inclusion() {
        let h = leaf_hash(b"data");
        assert_eq!(verify_inclusion(0, 1, &h, &[], &h), Ok(()));
        assert_eq!(verify_inclusion(0, 1, &h, &[], &EMPTY_ROOT), Err(ProofError::RootMismatch));
        assert_eq!(verify_inclusion(0, 1, &h, &[h], &h), Err(ProofError::TooLong));
        for (index, size) in [(0, 0), (1, 0), (2, 1)] {
            assert_eq!(verify_inclusion(index, size, &h, &[], &h), Err(ProofError::IndexOutOfRange { index, size }));
        }
    }

    #[test]
    fn json_shape() {
        let h = leaf_hash(b"a");
        let proof = InclusionProof { leaf_index: 3, tree_size: 7, hashes: vec![h] };
        let json = serde_json::to_value(&proof).unwrap();
        assert_eq!(json, serde_json::json!({"leaf_index": 3, "tree_size": 7, "hashes": [h.to_string()]}));
        let consistency = ConsistencyProof { old_size: 3, tree_size: 7, hashes: vec![h] };
        let json = serde_json::to_value(&consistency).unwrap();
        assert_eq!(json, serde_json::json!({"old_size": 3, "tree_size": 7, "hashes": [h.to_string()]}));
        let fallback = serde_json::json!({"leaf_index": 3, "tree_size": 7, "hashes": [h.to_string()]});
        assert_eq!(serde_json::from_value::<ConsistencyProof>(fallback).unwrap(), consistency);
        let bad = serde_json::json!({"leaf_index": 3, "tree_size": 7, "hashes": ["AAAA"]});
        assert!(serde_json::from_value::<InclusionProof>(bad).is_err());
    }
}
