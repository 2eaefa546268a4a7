-- Audit retention (issue 4): entries past retention leave the live database only after they
-- were written to a verifiable archive segment (ward_audit::segment, docs/audit-log.md).
-- Tree nodes and checkpoints (hashes only) stay, so proofs for later entries keep working.

-- One row per archive segment. Segments are contiguous from index 0: each starts where the
-- previous one ended, and each is proven against a stored checkpoint at tree_size >= end_idx.
CREATE TABLE audit_archives (
    start_idx BIGINT PRIMARY KEY NOT NULL,
    end_idx BIGINT NOT NULL,
    tree_size BIGINT NOT NULL,
    file_name TEXT NOT NULL,
    file_sha256 TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE FUNCTION ward_audit_archive_contiguous() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.start_idx <> (SELECT COALESCE(MAX(end_idx), 0) FROM audit_archives)
        OR NEW.end_idx <= NEW.start_idx
        OR NEW.end_idx > NEW.tree_size
        OR NOT EXISTS (SELECT 1 FROM audit_checkpoints WHERE tree_size = NEW.tree_size) THEN
        RAISE EXCEPTION 'audit_archives: a segment must continue the last one and be covered by a checkpoint';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER audit_archives_contiguous BEFORE INSERT ON audit_archives
FOR EACH ROW EXECUTE FUNCTION ward_audit_archive_contiguous();
CREATE TRIGGER audit_archives_no_change BEFORE UPDATE OR DELETE ON audit_archives
FOR EACH ROW EXECUTE FUNCTION ward_audit_tree_append_only();

-- audit_events stays append-only for UPDATE (same function as before), but a row inside a
-- recorded archive segment may be deleted.
DROP TRIGGER audit_events_no_change ON audit_events;
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
FOR EACH ROW EXECUTE FUNCTION ward_audit_append_only();
CREATE FUNCTION ward_audit_delete_only_archived() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM audit_archives WHERE OLD.idx >= start_idx AND OLD.idx < end_idx) THEN
        RAISE EXCEPTION 'audit_events is append-only: only archived entries may be deleted';
    END IF;
    RETURN OLD;
END;
$$;
CREATE TRIGGER audit_events_delete_only_archived BEFORE DELETE ON audit_events
FOR EACH ROW EXECUTE FUNCTION ward_audit_delete_only_archived();
-- TRUNCATE skips row triggers; refuse it outright.
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
FOR EACH STATEMENT EXECUTE FUNCTION ward_audit_append_only();
