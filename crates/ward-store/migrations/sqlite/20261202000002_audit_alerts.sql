-- Anomaly alerts (issue 4): per-organisation rules, the alerts raised, the evaluator's cursor
-- in the audit log, and the restricted flag on patients (staff members, VIPs).

ALTER TABLE patients ADD COLUMN restricted INTEGER NOT NULL DEFAULT 0;

-- The evaluator asks, for a patient, the latest `patient.restrict` event before a given index
-- (whether the patient was restricted when an access happened, not merely now).
CREATE INDEX audit_events_by_patient_idx ON audit_events (patient_id, idx);

-- One row per organisation that configured its rules (ward_domain::alerts::AlertRules as
-- JSON); an organisation without a row uses the defaults.
CREATE TABLE alert_rules (
    org_id BLOB PRIMARY KEY NOT NULL REFERENCES organizations(id),
    rules TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Every alert raised. Ids and numbers only: no names, no content. audit_idx is the index of
-- the alert's own `alert.raised` event; trigger_idx the event that tripped the rule.
CREATE TABLE audit_alerts (
    id BLOB PRIMARY KEY NOT NULL,
    org_id BLOB NOT NULL REFERENCES organizations(id),
    rule TEXT NOT NULL,
    raised_at INTEGER NOT NULL,
    subject_user_id BLOB,
    subject_patient_id BLOB,
    observed INTEGER,
    threshold INTEGER,
    window_minutes INTEGER,
    trigger_idx INTEGER NOT NULL,
    audit_idx INTEGER NOT NULL UNIQUE,
    acknowledged_at INTEGER,
    acknowledged_by BLOB
);
CREATE INDEX audit_alerts_by_org ON audit_alerts (org_id, audit_idx);

-- The next audit index the evaluator will read; advanced in the transaction that records the
-- alerts it raised, so a restart neither repeats nor skips an event. It starts at the end of
-- the log as it is now: history from before this migration is not evaluated.
CREATE TABLE alert_cursor (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    next_idx INTEGER NOT NULL
);
INSERT INTO alert_cursor (id, next_idx) SELECT 1, COALESCE(MAX(idx) + 1, 0) FROM audit_events;
