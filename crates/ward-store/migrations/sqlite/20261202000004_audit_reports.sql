-- Audit reports (issue 4): the accounting of disclosures scans one patient's events, the
-- access report one user's, both in index order; disclosures also look up audit exports.
CREATE INDEX audit_by_patient ON audit_events (patient_id, idx);
CREATE INDEX audit_by_actor ON audit_events (actor_user_id, idx);
CREATE INDEX audit_exports ON audit_events (idx) WHERE action = 'audit.export';
