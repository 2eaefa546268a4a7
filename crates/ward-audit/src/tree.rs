//! Tree shape (RFC 9162 §2.1): roots, the incremental frontier, and proof generation.
//!
//! Everything here is pure. A proof is first *named* as a [`ProofPlan`] of perfect subtrees
//! ([`NodeId`]s), the caller fetches those hashes from wherever it keeps them (a table of
//! nodes, tlog tiles, an exported file), and the plan folds them into the proof hashes. Only
//! perfect subtrees are ever fetched: their hashes never change once the tree grows past
//! them, which is what makes them storable (and what tlog tiles store).

use crate::hash::{EMPTY_ROOT, Hash, node_hash};

/// A perfect subtree: the `2^level` leaves starting at leaf `index << level`.
///
/// Level 0 holds leaf hashes; a node at level `l + 1` hashes nodes `2i` and `2i + 1` at level `l`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    /// Height above the leaves.
    pub level: u8,
    /// Position among the nodes of that level, from the left.
    pub index: u64,
}

impl NodeId {
    /// The node at `level` and `index`.
    pub const fn new(level: u8, index: u64) -> Self {
        NodeId { level, index }
    }
}

/// Why a tree operation could not be carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    /// An inclusion proof was asked for a leaf at or beyond the tree size.
    #[error("leaf index {index} is outside a tree of size {size}")]
    IndexOutOfRange {
        /// The leaf index asked for.
        index: u64,
        /// The tree size asked for.
        size: u64,
    },
    /// A consistency proof was asked from a larger tree to a smaller one.
    #[error("old size {old} is larger than new size {new}")]
    SizesReversed {
        /// The old (first) size.
        old: u64,
        /// The new (second) size.
        new: u64,
    },
    /// The node fetcher returned another number of hashes than nodes asked for.
    #[error("fetched {got} hashes for {expected} nodes")]
    WrongHashCount {
        /// How many nodes the plan named.
        expected: usize,
        /// How many hashes came back.
        got: usize,
    },
    /// The tree does not (yet) hold this node.
    #[error("node at level {} index {} is not in the tree", .0.level, .0.index)]
    MissingNode(NodeId),
    /// A perfect subtree was appended at a size it is not aligned to.
    #[error("a subtree of level {level} cannot be appended to a tree of size {size}")]
    Misaligned {
        /// The tree size.
        size: u64,
        /// The subtree's level.
        level: u8,
    },
    /// A frontier was restored with another number of subtree roots than its size implies.
    #[error("a tree of size {size} has {expected} perfect subtree roots, got {got}")]
    WrongFrontier {
        /// The tree size.
        size: u64,
        /// The number of set bits in the size.
        expected: usize,
        /// How many roots were given.
        got: usize,
    },
}

/// The perfect subtrees to fetch for a proof (or a root), and how to fold them.
///
/// Each proof hash is the root of a range of leaves. Inside the tree that range is one perfect
/// subtree; on the tree's right edge it is several, largest first, folded right to left
/// exactly as RFC 9162's MTH splits them. At most one proof hash needs folding.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProofPlan {
    nodes: Vec<NodeId>,
    /// `nodes[ends[j-1]..ends[j]]` make proof hash `j`.
    ends: Vec<usize>,
}

impl ProofPlan {
    /// Every node to fetch, in order; hand their hashes in that order to [`ProofPlan::assemble`].
    pub fn nodes(&self) -> &[NodeId] {
        &self.nodes
    }

    /// The nodes behind each proof hash, one slice per proof hash, in proof order.
    pub fn parts(&self) -> impl Iterator<Item = &[NodeId]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(&self.ends).map(|(start, &end)| &self.nodes[start..end])
    }

    /// Folds the fetched hashes (one per [`ProofPlan::nodes`] entry) into the proof hashes.
    pub fn assemble(&self, hashes: &[Hash]) -> Result<Vec<Hash>, TreeError> {
        if hashes.len() != self.nodes.len() {
            return Err(TreeError::WrongHashCount { expected: self.nodes.len(), got: hashes.len() });
        }
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        Ok(starts.zip(&self.ends).map(|(start, &end)| fold_right(&hashes[start..end])).collect())
    }

    /// Adds one proof hash: the root of leaves `begin..end`.
    fn push_range(&mut self, begin: u64, end: u64) {
        decompose(begin, end, &mut self.nodes);
        self.ends.push(self.nodes.len());
    }
}

/// Names the nodes of the inclusion proof of leaf `index` in the tree of `size` leaves
/// (RFC 9162 §2.1.3.1), in proof order: the leaf's sibling first, the root's child last.
pub fn inclusion_plan(index: u64, size: u64) -> Result<ProofPlan, TreeError> {
    if index >= size {
        return Err(TreeError::IndexOutOfRange { index, size });
    }
    let mut plan = ProofPlan::default();
    inclusion_ranges(index, 0, size, &mut plan);
    Ok(plan)
}

/// Names the nodes of the consistency proof from tree size `old` to `new` (RFC 9162 §2.1.4.1).
/// The proof is empty when `old` is 0 or equal to `new`.
pub fn consistency_plan(old: u64, new: u64) -> Result<ProofPlan, TreeError> {
    if old > new {
        return Err(TreeError::SizesReversed { old, new });
    }
    let mut plan = ProofPlan::default();
    if old > 0 && old < new {
        consistency_ranges(old, 0, new, true, &mut plan);
    }
    Ok(plan)
}

/// Names the nodes whose fold is the root of the tree of `size` leaves: the perfect subtrees
/// along its right edge, which are also the [`Frontier`] of that size. Empty for size 0.
pub fn root_plan(size: u64) -> ProofPlan {
    let mut plan = ProofPlan::default();
    if size > 0 {
        plan.push_range(0, size);
    }
    plan
}

/// The inclusion proof of leaf `index` in the tree of `size` leaves; `fetch` returns the
/// hashes of the nodes it is given, in order (one batch, so storage can answer in one query).
pub fn inclusion_proof<E>(index: u64, size: u64, fetch: impl FnOnce(&[NodeId]) -> Result<Vec<Hash>, E>) -> Result<Vec<Hash>, E>
where
    E: From<TreeError>,
{
    let plan = inclusion_plan(index, size)?;
    Ok(plan.assemble(&fetch(plan.nodes())?)?)
}

/// The consistency proof from tree size `old` to `new`; `fetch` as for [`inclusion_proof`].
pub fn consistency_proof<E>(old: u64, new: u64, fetch: impl FnOnce(&[NodeId]) -> Result<Vec<Hash>, E>) -> Result<Vec<Hash>, E>
where
    E: From<TreeError>,
{
    let plan = consistency_plan(old, new)?;
    Ok(plan.assemble(&fetch(plan.nodes())?)?)
}

/// The root of the tree of `size` leaves from stored perfect subtrees; `fetch` as for
/// [`inclusion_proof`].
pub fn root_of<E>(size: u64, fetch: impl FnOnce(&[NodeId]) -> Result<Vec<Hash>, E>) -> Result<Hash, E>
where
    E: From<TreeError>,
{
    let plan = root_plan(size);
    let hashes = plan.assemble(&fetch(plan.nodes())?)?;
    Ok(hashes.first().copied().unwrap_or(EMPTY_ROOT))
}

/// The aligned perfect subtrees that exactly cover leaves `begin..end`, left to right: the
/// compact range of that span. `compact_range(0, n)` names the same nodes as [`root_plan`]`(n)`.
pub fn compact_range(begin: u64, end: u64) -> Vec<NodeId> {
    let mut out = Vec::new();
    decompose(begin, end, &mut out);
    out
}

/// The Merkle Tree Hash of a list of leaf hashes, straight from the RFC 9162 §2.1.1
/// definition. O(n); use a [`Frontier`] to follow a growing log.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves {
        [] => EMPTY_ROOT,
        [leaf] => *leaf,
        _ => {
            // `split` is below the length, which fits in usize.
            let k = split(leaves.len() as u64) as usize;
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// The roots of the perfect subtrees that make up a tree, largest (leftmost) first: enough
/// to append leaves and compute the root in O(log n) without keeping the leaves.
///
/// Also known as a compact range over `[0, size)`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Frontier {
    size: u64,
    /// One hash per set bit of `size`, from the highest bit down.
    roots: Vec<Hash>,
}

impl Frontier {
    /// The frontier of the empty tree.
    pub fn new() -> Self {
        Frontier::default()
    }

    /// Rebuilds the frontier of a tree of `size` leaves from the hashes of the nodes
    /// [`root_plan`]`(size)` names, in that order.
    pub fn restore(size: u64, roots: Vec<Hash>) -> Result<Self, TreeError> {
        let expected = size.count_ones() as usize;
        if roots.len() != expected {
            return Err(TreeError::WrongFrontier { size, expected, got: roots.len() });
        }
        Ok(Frontier { size, roots })
    }

    /// The number of leaves appended so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The perfect subtree roots, largest first.
    pub fn roots(&self) -> &[Hash] {
        &self.roots
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        self.append(leaf, |_, _| {});
    }

    /// Appends a leaf hash and reports every perfect subtree it completes, bottom up, starting
    /// with the leaf itself at level 0: exactly the nodes storage must keep to serve proofs.
    pub fn append(&mut self, leaf: Hash, completed: impl FnMut(NodeId, &Hash)) {
        self.append_node(0, leaf, completed);
    }

    /// Appends a whole perfect subtree of `2^level` leaves, given only its root: how a
    /// verifier skips over leaves it does not hold (see [`compact_range`]). The size must be a
    /// multiple of `2^level`.
    pub fn append_subtree(&mut self, level: u8, hash: Hash) -> Result<(), TreeError> {
        if level >= 64 || self.size.trailing_zeros() < u32::from(level) || self.size.checked_add(1 << level).is_none() {
            return Err(TreeError::Misaligned { size: self.size, level });
        }
        self.append_node(level, hash, |_, _| {});
        Ok(())
    }

    /// Appends the root of an aligned perfect subtree of `2^level` leaves.
    fn append_node(&mut self, level: u8, hash: Hash, mut completed: impl FnMut(NodeId, &Hash)) {
        let (mut hash, mut index, mut level) = (hash, self.size >> level, level);
        let added = 1u64 << level;
        completed(NodeId::new(level, index), &hash);
        // Each trailing one bit of the old size is a perfect subtree of the same height as the
        // one just completed, sitting to its left: merge them.
        while index & 1 == 1 {
            // One root per set bit of the size, so a trailing one bit has a root to pop.
            let left = self.roots.pop().expect("a root for every set bit of the size");
            hash = node_hash(&left, &hash);
            index >>= 1;
            level += 1;
            completed(NodeId::new(level, index), &hash);
        }
        self.roots.push(hash);
        self.size += added;
    }

    /// The root at the current size.
    pub fn root(&self) -> Hash {
        fold_right(&self.roots)
    }
}

/// A whole tree in memory, every perfect subtree kept: for tests, offline verification of an
/// exported log, and as the reference a storage backend must agree with.
#[derive(Debug, Clone, Default)]
pub struct MemoryTree {
    /// `levels[l][i]` is the hash of `NodeId { level: l, index: i }`.
    levels: Vec<Vec<Hash>>,
    frontier: Frontier,
}

impl MemoryTree {
    /// The empty tree.
    pub fn new() -> Self {
        MemoryTree::default()
    }

    /// A tree over the given leaf hashes.
    pub fn from_leaf_hashes(leaves: impl IntoIterator<Item = Hash>) -> Self {
        let mut tree = MemoryTree::new();
        leaves.into_iter().for_each(|leaf| tree.push(leaf));
        tree
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let levels = &mut self.levels;
        self.frontier.append(leaf, |id, hash| {
            let level = usize::from(id.level);
            if levels.len() == level {
                levels.push(Vec::new());
            }
            // Perfect subtrees complete left to right, so each is the next at its level.
            debug_assert_eq!(levels[level].len() as u64, id.index);
            levels[level].push(*hash);
        });
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// The root at the current size.
    pub fn root(&self) -> Hash {
        self.frontier.root()
    }

    /// The hashes of the given perfect subtrees: the fetcher for the proof functions.
    pub fn nodes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, TreeError> {
        ids.iter()
            .map(|&id| {
                let hash = self.levels.get(usize::from(id.level)).and_then(|l| usize::try_from(id.index).ok().and_then(|i| l.get(i)));
                hash.copied().ok_or(TreeError::MissingNode(id))
            })
            .collect()
    }

    /// The root the tree had at `size` leaves.
    pub fn root_at(&self, size: u64) -> Result<Hash, TreeError> {
        root_of(size, |ids| self.nodes(ids))
    }

    /// The inclusion proof of leaf `index` in the tree as it was at `size` leaves.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, TreeError> {
        inclusion_proof(index, size, |ids| self.nodes(ids))
    }

    /// The consistency proof between the tree at `old` and at `new` leaves.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, TreeError> {
        consistency_proof(old, new, |ids| self.nodes(ids))
    }
}

/// RFC 9162's `k`: the largest power of two strictly below `n` (for `n >= 2`).
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// PATH(m, D[begin:end]) of RFC 9162 §2.1.3.1, as leaf ranges, deepest first.
fn inclusion_ranges(index: u64, begin: u64, end: u64, plan: &mut ProofPlan) {
    if end - begin <= 1 {
        return;
    }
    let mid = begin + split(end - begin);
    if index < mid {
        inclusion_ranges(index, begin, mid, plan);
        plan.push_range(mid, end);
    } else {
        inclusion_ranges(index, mid, end, plan);
        plan.push_range(begin, mid);
    }
}

/// SUBPROOF(old, D[begin:end], known) of RFC 9162 §2.1.4.1, as leaf ranges, deepest first.
/// `known` says the verifier already holds this subtree's root (it is the old tree's root).
fn consistency_ranges(old: u64, begin: u64, end: u64, known: bool, plan: &mut ProofPlan) {
    if old == end {
        if !known {
            plan.push_range(begin, end);
        }
        return;
    }
    let mid = begin + split(end - begin);
    if old <= mid {
        consistency_ranges(old, begin, mid, known, plan);
        plan.push_range(mid, end);
    } else {
        consistency_ranges(old, mid, end, false, plan);
        plan.push_range(begin, mid);
    }
}

/// Splits leaves `begin..end` into aligned perfect subtrees, left to right. For the ranges
/// proofs use (a perfect subtree, or a right edge starting at a boundary at least as large
/// as the range) the sizes strictly decrease, so their right fold is the range's MTH.
fn decompose(mut begin: u64, end: u64, out: &mut Vec<NodeId>) {
    while begin < end {
        // The largest power of two that both divides `begin` and fits in what is left.
        let fits = 63 - (end - begin).leading_zeros();
        let level = begin.trailing_zeros().min(fits);
        out.push(NodeId::new(level as u8, begin >> level));
        begin += 1 << level;
    }
}

/// Folds perfect subtree roots, largest first, into the root of their union.
fn fold_right(hashes: &[Hash]) -> Hash {
    match hashes.split_last() {
        None => EMPTY_ROOT,
        Some((last, rest)) => rest.iter().rev().fold(*last, |acc, left| node_hash(left, &acc)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::leaf_hash;

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    #[test]
    fn split_is_largest_power_of_two_below() {
        for (n, k) in [(2, 1), (3, 2), (4, 2), (5, 4), (8, 4), (9, 8), (1 << 40, 1 << 39), (u64::MAX, 1 << 63)] {
            assert_eq!(split(n), k, "n = {n}");
        }
    }

    #[test]
    fn decompose_right_edges_are_binary_expansions() {
        let mut out = Vec::new();
        decompose(0, 13, &mut out);
        assert_eq!(out, [NodeId::new(3, 0), NodeId::new(2, 2), NodeId::new(0, 12)]);
        out.clear();
        decompose(8, 13, &mut out);
        assert_eq!(out, [NodeId::new(2, 2), NodeId::new(0, 12)]);
    }

    #[test]
    fn frontier_memory_tree_and_definition_agree() {
        let all = leaves(300);
        let tree = MemoryTree::from_leaf_hashes(all.iter().copied());
        let mut frontier = Frontier::new();
        for n in 0..=all.len() {
            let expected = root(&all[..n]);
            assert_eq!(frontier.root(), expected, "frontier at {n}");
            assert_eq!(tree.root_at(n as u64), Ok(expected), "memory tree at {n}");
            let restored = Frontier::restore(n as u64, tree.nodes(root_plan(n as u64).nodes()).unwrap()).unwrap();
            assert_eq!(restored, frontier);
            if let Some(&leaf) = all.get(n) {
                frontier.push(leaf);
            }
        }
    }

    #[test]
    fn append_reports_completed_subtrees() {
        let mut frontier = Frontier::new();
        leaves(3).into_iter().for_each(|leaf| frontier.push(leaf));
        let mut seen = Vec::new();
        frontier.append(leaf_hash(b"x"), |id, _| seen.push(id));
        assert_eq!(seen, [NodeId::new(0, 3), NodeId::new(1, 1), NodeId::new(2, 0)]);
    }

    #[test]
    fn bad_arguments_are_refused() {
        let tree = MemoryTree::from_leaf_hashes(leaves(5));
        assert_eq!(tree.inclusion_proof(5, 5), Err(TreeError::IndexOutOfRange { index: 5, size: 5 }));
        assert_eq!(tree.consistency_proof(4, 3), Err(TreeError::SizesReversed { old: 4, new: 3 }));
        assert_eq!(tree.root_at(6), Err(TreeError::MissingNode(NodeId::new(1, 2))));
        assert_eq!(tree.consistency_proof(0, 5), Ok(vec![]));
        assert_eq!(tree.consistency_proof(5, 5), Ok(vec![]));
        assert_eq!(Frontier::restore(5, vec![]), Err(TreeError::WrongFrontier { size: 5, expected: 2, got: 0 }));
        let plan = inclusion_plan(0, 5).unwrap();
        assert_eq!(plan.assemble(&[]), Err(TreeError::WrongHashCount { expected: plan.nodes().len(), got: 0 }));
    }

    #[test]
    fn compact_ranges_skip_leaves_exactly() {
        let all = leaves(70);
        let tree = MemoryTree::from_leaf_hashes(all.iter().copied());
        for n in 0..=70u64 {
            assert_eq!(compact_range(0, n), root_plan(n).nodes());
            for b in 0..=n {
                let mut f = Frontier::new();
                all[..b as usize].iter().for_each(|l| f.push(*l));
                for id in compact_range(b, n) {
                    f.append_subtree(id.level, tree.nodes(&[id]).unwrap()[0]).unwrap();
                }
                assert_eq!((f.size(), f.root()), (n, root(&all[..n as usize])), "b = {b}, n = {n}");
            }
        }
        let mut f = Frontier::new();
        f.push(all[0]);
        assert_eq!(f.append_subtree(1, all[1]), Err(TreeError::Misaligned { size: 1, level: 1 }));
    }
}
