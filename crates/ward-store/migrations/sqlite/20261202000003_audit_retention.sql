-- Audit retention (issue 4): entries past retention leave the live database only after they
-- were written to a verifiable archive segment (ward_audit::segment, docs/audit-log.md).
-- Tree nodes and checkpoints (hashes only) stay, so proofs for later entries keep working.

-- One row per archive segment. Segments are contiguous from index 0: each starts where the
-- previous one ended, and each is proven against a stored checkpoint at tree_size >= end_idx.
CREATE TABLE audit_archives (
    start_idx INTEGER PRIMARY KEY NOT NULL,
    end_idx INTEGER NOT NULL,
    tree_size INTEGER NOT NULL,
    file_name TEXT NOT NULL,
    file_sha256 TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TRIGGER audit_archives_contiguous BEFORE INSERT ON audit_archives
WHEN NEW.start_idx <> (SELECT COALESCE(MAX(end_idx), 0) FROM audit_archives)
    OR NEW.end_idx <= NEW.start_idx
    OR NEW.end_idx > NEW.tree_size
    OR NOT EXISTS (SELECT 1 FROM audit_checkpoints WHERE tree_size = NEW.tree_size)
BEGIN SELECT RAISE(ABORT, 'audit_archives: a segment must continue the last one and be covered by a checkpoint'); END;
CREATE TRIGGER audit_archives_no_update BEFORE UPDATE ON audit_archives
BEGIN SELECT RAISE(ABORT, 'audit_archives is append-only'); END;
CREATE TRIGGER audit_archives_no_delete BEFORE DELETE ON audit_archives
BEGIN SELECT RAISE(ABORT, 'audit_archives is append-only'); END;

-- audit_events stays append-only (the UPDATE trigger of the foundation migration remains),
-- except that a row inside a recorded archive segment may be deleted.
DROP TRIGGER audit_events_no_delete;
CREATE TRIGGER audit_events_delete_only_archived BEFORE DELETE ON audit_events
WHEN NOT EXISTS (SELECT 1 FROM audit_archives WHERE OLD.idx >= start_idx AND OLD.idx < end_idx)
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only: only archived entries may be deleted'); END;
