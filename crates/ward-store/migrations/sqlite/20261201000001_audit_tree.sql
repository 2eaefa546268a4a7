-- The audit log's Merkle tree (issue 4). Leaf hashes are not stored in audit_events: a leaf
-- hash is a pure function of the row (ward_audit::AuditLeaf, docs/audit-log.md), computed on
-- read, so no row ever needs a second, possibly disagreeing copy and rows written before this
-- migration need no backfill. The integrator copies each leaf hash into audit_tree_nodes
-- (level 0) when it sequences the event into the tree; a row altered later no longer matches.

-- Every completed perfect subtree: level 0 holds leaf hashes, a node at level l+1 hashes
-- nodes 2i and 2i+1 of level l. Written once, never changed.
CREATE TABLE audit_tree_nodes (
    level INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    hash BLOB NOT NULL,
    PRIMARY KEY (level, idx)
);

-- Signed checkpoints (C2SP signed notes), one per tree size.
CREATE TABLE audit_checkpoints (
    tree_size INTEGER PRIMARY KEY NOT NULL,
    root_hash BLOB NOT NULL,
    note TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TRIGGER audit_tree_nodes_no_update BEFORE UPDATE ON audit_tree_nodes
BEGIN SELECT RAISE(ABORT, 'audit_tree_nodes is append-only'); END;
CREATE TRIGGER audit_tree_nodes_no_delete BEFORE DELETE ON audit_tree_nodes
BEGIN SELECT RAISE(ABORT, 'audit_tree_nodes is append-only'); END;
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END;
