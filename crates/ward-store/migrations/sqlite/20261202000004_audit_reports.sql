-- Audit reports (issue 4): the accounting of disclosures scans one patient's events (index
-- audit_events_by_patient_idx, from 20261202000002), the access report one user's, both in
-- index order; disclosures also look up audit exports.
CREATE INDEX audit_by_actor ON audit_events (actor_user_id, idx);
CREATE INDEX audit_exports ON audit_events (idx) WHERE action = 'audit.export';
