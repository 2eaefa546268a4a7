-- Progress of each outside publication of the audit log (issue 4): one row per sink, today
-- only `syslog`. The stream itself is rebuilt from audit_events and audit_checkpoints, so
-- this is all a sink needs to resume after a restart.
--
-- next_idx: the oldest audit index not yet known to have reached the receiver (everything
--   below it was confirmed); a restarted sink sends again from here.
-- checkpoint_size: the tree size of the largest checkpoint confirmed, NULL if none yet.
-- Updating a cursor is bookkeeping, not an audited change (an audit event per update would
-- itself need sending, for ever).
CREATE TABLE audit_sinks (
    name TEXT PRIMARY KEY NOT NULL,
    next_idx INTEGER NOT NULL,
    checkpoint_size INTEGER,
    updated_at INTEGER NOT NULL
);
