//! Ward's tree against an independent RFC 6962 implementation, the `ct-merkle` crate (an
//! array-based tree, built and proven in a different way from Ward's perfect-subtree plans).
//! For random leaves and every size up to a bound: the roots are equal, every inclusion and
//! consistency proof is byte-identical, and each side's proofs verify with the other's verifier.

use ct_merkle::mem_backed_tree::MemoryBackedTree;
use ct_merkle::{ConsistencyProof as CtConsistency, InclusionProof as CtInclusion, RootHash};
use proptest::prelude::*;
use sha2::Sha256;
use ward_audit::proof::{verify_consistency, verify_inclusion};
use ward_audit::tree::MemoryTree;
use ward_audit::{EMPTY_ROOT, Hash, leaf_hash};

fn ours_from_ct(root: &RootHash<Sha256>) -> Hash {
    Hash::try_from(root.as_bytes().as_slice()).expect("SHA-256 root")
}

fn ct_root(root: &Hash, size: u64) -> RootHash<Sha256> {
    RootHash::new(root.0.into(), size)
}

fn concat(hashes: &[Hash]) -> Vec<u8> {
    hashes.iter().flat_map(|h| h.0).collect()
}

fn split(bytes: &[u8]) -> Vec<Hash> {
    bytes.chunks(32).map(|c| Hash::try_from(c).expect("32-byte chunks")).collect()
}

/// Grows both trees leaf by leaf; at each size checks the root, every inclusion proof and every
/// consistency proof from each older size.
fn cross_check(data: &[Vec<u8>]) -> Result<(), TestCaseError> {
    let mut theirs = MemoryBackedTree::<Sha256, Vec<u8>>::new();
    let mut ours = MemoryTree::new();
    prop_assert_eq!(ours_from_ct(&theirs.root()), EMPTY_ROOT);
    let mut roots = vec![EMPTY_ROOT];
    for (n, item) in (1u64..).zip(data) {
        theirs.push(item.clone());
        ours.push(leaf_hash(item));
        let root = ours.root();
        prop_assert_eq!(ours_from_ct(&theirs.root()), root, "root at size {}", n);
        roots.push(root);
        let their_root = theirs.root();

        for index in 0..n {
            let mine = ours.inclusion_proof(index, n).unwrap();
            let other = theirs.prove_inclusion(index as usize);
            prop_assert_eq!(other.as_bytes(), &concat(&mine)[..], "inclusion proof of {} in {}", index, n);
            let leaf = &data[index as usize];
            prop_assert!(their_root.verify_inclusion(leaf, index, &CtInclusion::from_bytes(concat(&mine))).is_ok());
            prop_assert_eq!(verify_inclusion(index, n, &leaf_hash(leaf), &split(other.as_bytes()), &root), Ok(()));
        }

        // ct-merkle proves consistency from a non-empty older tree to its current size.
        for old in 1..n {
            let mine = ours.consistency_proof(old, n).unwrap();
            let other = theirs.prove_consistency((n - old) as usize);
            prop_assert_eq!(other.as_bytes(), &concat(&mine)[..], "consistency proof {} -> {}", old, n);
            let old_root = roots[old as usize];
            let theirs_ok = their_root.verify_consistency(&ct_root(&old_root, old), &CtConsistency::try_from_bytes(concat(&mine)).unwrap());
            prop_assert!(theirs_ok.is_ok(), "ct-merkle refused Ward's consistency proof {} -> {}", old, n);
            prop_assert_eq!(verify_consistency(old, n, &old_root, &root, &split(other.as_bytes())), Ok(()));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// Random leaf data (including empty leaves) for trees of up to 70 leaves: every size,
    /// index and pair of sizes up to that bound.
    #[test]
    fn ward_and_ct_merkle_agree(data in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..48), 1..=70)) {
        cross_check(&data)?;
    }
}

/// One exhaustive run over a fixed larger tree, to cover sizes past 128 (four levels of
/// right-edge folding).
#[test]
fn ward_and_ct_merkle_agree_up_to_160_leaves() {
    let data: Vec<Vec<u8>> = (0u32..160).map(|i| i.to_le_bytes().repeat((i % 5) as usize)).collect();
    cross_check(&data).unwrap();
}

/// A proof tampered on one side fails on the other, so the agreement above is not vacuous.
#[test]
fn ct_merkle_refuses_what_ward_refuses() {
    let data: Vec<Vec<u8>> = (0u8..11).map(|i| vec![i]).collect();
    let tree = MemoryTree::from_leaf_hashes(data.iter().map(|d| leaf_hash(d)));
    let theirs_root = ct_root(&tree.root(), 11);
    let mut proof = tree.inclusion_proof(6, 11).unwrap();
    assert!(theirs_root.verify_inclusion(&data[6], 6, &CtInclusion::from_bytes(concat(&proof))).is_ok());
    proof[1].0[7] ^= 0x20;
    assert!(theirs_root.verify_inclusion(&data[6], 6, &CtInclusion::from_bytes(concat(&proof))).is_err());
    assert!(verify_inclusion(6, 11, &leaf_hash(&data[6]), &proof, &tree.root()).is_err());
    let mut proof = tree.consistency_proof(5, 11).unwrap();
    let old = ct_root(&tree.root_at(5).unwrap(), 5);
    proof[0].0[0] ^= 1;
    assert!(theirs_root.verify_consistency(&old, &CtConsistency::try_from_bytes(concat(&proof)).unwrap()).is_err());
}
