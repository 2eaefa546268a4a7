//! Property tests over random trees: every generated proof verifies, and every single-byte
//! change to a proof, a root or a leaf, and every off-by-one index, is detected.

use proptest::prelude::*;
use ward_audit::proof::{verify_consistency, verify_inclusion};
use ward_audit::tree::{MemoryTree, consistency_plan, inclusion_plan, root};
use ward_audit::{Hash, leaf_hash};

/// Distinct leaf data: a per-tree salt and the index.
fn leaf_data(salt: u64, n: u64) -> Vec<Vec<u8>> {
    (0..n).map(|i| [salt.to_be_bytes(), i.to_be_bytes()].concat()).collect()
}

fn build(salt: u64, n: u64) -> (Vec<Vec<u8>>, Vec<Hash>, MemoryTree) {
    let data = leaf_data(salt, n);
    let hashes: Vec<Hash> = data.iter().map(|d| leaf_hash(d)).collect();
    let tree = MemoryTree::from_leaf_hashes(hashes.iter().copied());
    (data, hashes, tree)
}

/// Which side of the path each inclusion proof hash sits on (true: left of the leaf), taken
/// from the generator's plan. The verifier's computation depends only on this sequence.
fn inclusion_shape(index: u64, size: u64) -> Vec<bool> {
    let plan = inclusion_plan(index, size).unwrap();
    plan.parts().map(|part| part[0].index << part[0].level < index).collect()
}

/// The same for consistency proofs: whether the old root is a node of the new tree (then the
/// proof omits it), and for each further hash whether it lies inside the old tree (it then
/// feeds both recomputed roots) or beyond it (only the new root).
fn consistency_shape(old: u64, new: u64) -> (bool, Vec<bool>) {
    let plan = consistency_plan(old, new).unwrap();
    let perfect = old.is_power_of_two();
    let ends = plan.parts().map(|part| {
        let last = part[part.len() - 1];
        (last.index + 1) << last.level
    });
    (perfect, ends.skip(usize::from(!perfect)).map(|end| end <= old).collect())
}

fn flip_each_byte(h: &Hash, mask: u8) -> impl Iterator<Item = Hash> + '_ {
    (0..32).map(move |i| {
        let mut bad = *h;
        bad.0[i] ^= mask;
        bad
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn every_proof_of_every_size_verifies(salt: u64, n in 1u64..=300) {
        let (_, leaves, tree) = build(salt, n);
        let roots: Vec<Hash> = (0..=n).map(|size| tree.root_at(size).unwrap()).collect();
        prop_assert_eq!(roots[n as usize], root(&leaves));
        for size in 1..=n {
            for index in 0..size {
                let proof = tree.inclusion_proof(index, size).unwrap();
                prop_assert_eq!(verify_inclusion(index, size, &leaves[index as usize], &proof, &roots[size as usize]), Ok(()));
            }
        }
        for new in 0..=n {
            for old in 0..=new {
                let proof = tree.consistency_proof(old, new).unwrap();
                prop_assert_eq!(verify_consistency(old, new, &roots[old as usize], &roots[new as usize], &proof), Ok(()), "{} -> {}", old, new);
            }
        }
    }
}

/// A tree of up to 300 leaves and a leaf index below a size within it.
fn tree_index_size() -> impl Strategy<Value = (u64, u64, u64, u64)> {
    (any::<u64>(), 1u64..=300)
        .prop_flat_map(|(salt, n)| (Just(salt), Just(n), 1..=n))
        .prop_flat_map(|(salt, n, size)| (Just(salt), Just(n), Just(size), 0..size))
}

/// A tree and two sizes within it, the old strictly between 0 and the new (the only case
/// with a non-empty proof).
fn tree_old_new() -> impl Strategy<Value = (u64, u64, u64, u64)> {
    (any::<u64>(), 2u64..=300)
        .prop_flat_map(|(salt, n)| (Just(salt), Just(n), 2..=n))
        .prop_flat_map(|(salt, n, new)| (Just(salt), Just(n), 1..new, Just(new)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_changed_byte_breaks_inclusion((salt, n, size, index) in tree_index_size(), mask in 1u8..) {
        let (data, leaves, tree) = build(salt, n);
        let root = tree.root_at(size).unwrap();
        let leaf = leaves[index as usize];
        let proof = tree.inclusion_proof(index, size).unwrap();
        prop_assert_eq!(verify_inclusion(index, size, &leaf, &proof, &root), Ok(()));
        for i in 0..proof.len() {
            for bad in flip_each_byte(&proof[i], mask) {
                let mut changed = proof.clone();
                changed[i] = bad;
                prop_assert!(verify_inclusion(index, size, &leaf, &changed, &root).is_err());
            }
        }
        for bad in flip_each_byte(&root, mask) {
            prop_assert!(verify_inclusion(index, size, &leaf, &proof, &bad).is_err());
        }
        for bad in flip_each_byte(&leaf, mask) {
            prop_assert!(verify_inclusion(index, size, &bad, &proof, &root).is_err());
        }
        let entry = &data[index as usize];
        for i in 0..entry.len() {
            let mut changed = entry.clone();
            changed[i] ^= mask;
            prop_assert!(verify_inclusion(index, size, &leaf_hash(&changed), &proof, &root).is_err());
        }
    }

    #[test]
    fn any_changed_byte_breaks_consistency((salt, n, old, new) in tree_old_new(), mask in 1u8..) {
        let (_, _, tree) = build(salt, n);
        let (old_root, new_root) = (tree.root_at(old).unwrap(), tree.root_at(new).unwrap());
        let proof = tree.consistency_proof(old, new).unwrap();
        prop_assert_eq!(verify_consistency(old, new, &old_root, &new_root, &proof), Ok(()));
        for i in 0..proof.len() {
            for bad in flip_each_byte(&proof[i], mask) {
                let mut changed = proof.clone();
                changed[i] = bad;
                prop_assert!(verify_consistency(old, new, &old_root, &new_root, &changed).is_err());
            }
        }
        for bad in flip_each_byte(&old_root, mask) {
            prop_assert!(verify_consistency(old, new, &bad, &new_root, &proof).is_err());
        }
        for bad in flip_each_byte(&new_root, mask) {
            prop_assert!(verify_consistency(old, new, &old_root, &bad, &proof).is_err());
        }
        // A dropped, duplicated or extra hash.
        prop_assert!(verify_consistency(old, new, &old_root, &new_root, &proof[1..]).is_err());
        prop_assert!(verify_consistency(old, new, &old_root, &new_root, &[&proof[..], &[new_root]].concat()).is_err());
        prop_assert!(verify_consistency(old, new, &old_root, &new_root, &[&proof[..1], &proof[..]].concat()).is_err());
    }

    #[test]
    fn off_by_one_index_always_fails((salt, n, size, index) in tree_index_size()) {
        let (_, leaves, tree) = build(salt, n);
        let root = tree.root_at(size).unwrap();
        let proof = tree.inclusion_proof(index, size).unwrap();
        let leaf = leaves[index as usize];
        prop_assert!(verify_inclusion(index + 1, size, &leaf, &proof, &root).is_err());
        if index > 0 {
            prop_assert!(verify_inclusion(index - 1, size, &leaf, &proof, &root).is_err());
        }
    }

    /// An inclusion proof binds the leaf index and the root, not the size: the size comes
    /// with the root in a signed checkpoint. A wrong size must fail unless its path has the
    /// very same shape (e.g. leaf 0 in trees of 3 and 4), in which case nothing is proven
    /// differently.
    #[test]
    fn off_by_one_size_fails_unless_the_path_is_the_same((salt, n, size, index) in tree_index_size()) {
        let (_, leaves, tree) = build(salt, n);
        let root = tree.root_at(size).unwrap();
        let proof = tree.inclusion_proof(index, size).unwrap();
        let leaf = leaves[index as usize];
        for wrong in [size - 1, size + 1] {
            let ok = verify_inclusion(index, wrong, &leaf, &proof, &root).is_ok();
            let same_shape = wrong > index && inclusion_shape(index, wrong) == inclusion_shape(index, size);
            prop_assert_eq!(ok, same_shape, "index {} size {} verified at {}", index, size, wrong);
        }
    }

    /// Likewise for consistency proofs: a wrong old or new size fails unless the verifier's
    /// computation is identical.
    #[test]
    fn off_by_one_sizes_fail_unless_the_proof_is_the_same((salt, n, old, new) in tree_old_new()) {
        let (_, _, tree) = build(salt, n);
        let (old_root, new_root) = (tree.root_at(old).unwrap(), tree.root_at(new).unwrap());
        let proof = tree.consistency_proof(old, new).unwrap();
        for (o, m) in [(old - 1, new), (old + 1, new), (old, new - 1), (old, new + 1)] {
            let ok = verify_consistency(o, m, &old_root, &new_root, &proof).is_ok();
            let same_shape = 0 < o && o < m && consistency_shape(o, m) == consistency_shape(old, new);
            prop_assert_eq!(ok, same_shape, "{} -> {} verified as {} -> {}", old, new, o, m);
        }
    }
}
