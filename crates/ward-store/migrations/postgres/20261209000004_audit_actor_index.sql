-- Finding one user's events (the access report) no longer uses an index on audit_events.
--
-- Why: an index on (actor_user_id, idx) puts each user's newest entry on a page of its own,
-- so a commit of a few hundred events from as many users dirtied a few hundred index pages,
-- and SQLite's write-ahead log writes every dirty page whole: that index was most of the
-- bytes written per append and halved the append rate. The same pairs now live in
-- audit_actor_index, filled by the tree integrator in the transaction that stores the leaves'
-- tree nodes, about once a second and thousands of events at a time, so each page is written
-- once per batch. Events newer than the integrated tree are found by scanning audit_events
-- from the tree size up, which is at most a few seconds of events.
CREATE TABLE audit_actor_index (
    actor_user_id UUID NOT NULL,
    idx BIGINT NOT NULL,
    PRIMARY KEY (actor_user_id, idx)
);
-- Every existing event, integrated or not: the integrator's inserts skip rows already here.
INSERT INTO audit_actor_index (actor_user_id, idx)
SELECT actor_user_id, idx FROM audit_events WHERE actor_user_id IS NOT NULL;
DROP INDEX audit_by_actor;

-- Most events name no patient (sign-ins, refusals, administration). Indexing their NULLs cost
-- an insert per append and served no query: every lookup by patient compares with `=`, which
-- never matches NULL, so the planner uses the partial index for the same queries.
DROP INDEX audit_events_by_patient_idx;
CREATE INDEX audit_events_by_patient_idx ON audit_events (patient_id, idx) WHERE patient_id IS NOT NULL;
