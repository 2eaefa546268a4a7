-- Break-glass (emergency access) grants (sqlite). Its twin in ../postgres must stay
-- equivalent. See docs/identity.md.
--
-- A grant lets a clinician or nurse outside a patient's conversations read them for a short
-- window. The free-text reason may carry PHI: it is sealed under the patient's data key
-- (reason_sealed) and never copied into the audit log, which records only reason_category.
-- A compliance officer reviews every grant once (pending -> justified | unjustified); the
-- review note is sealed the same way.
CREATE TABLE break_glass_grants (
    id BLOB PRIMARY KEY NOT NULL,
    org_id BLOB NOT NULL REFERENCES organizations(id),
    patient_id BLOB NOT NULL REFERENCES patients(id),
    requester_id BLOB NOT NULL REFERENCES users(id),
    reason_category TEXT NOT NULL,
    reason_sealed BLOB NOT NULL,
    granted_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER,
    revoked_by BLOB REFERENCES users(id),
    review_status TEXT NOT NULL DEFAULT 'pending' CHECK (review_status IN ('pending', 'justified', 'unjustified')),
    reviewed_by BLOB REFERENCES users(id),
    reviewed_at INTEGER,
    review_note_sealed BLOB,
    CHECK ((review_status = 'pending') = (reviewed_at IS NULL))
);
CREATE INDEX break_glass_by_requester ON break_glass_grants (requester_id, expires_at);
CREATE INDEX break_glass_by_org_review ON break_glass_grants (org_id, review_status, granted_at);
