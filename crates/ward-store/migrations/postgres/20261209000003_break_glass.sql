-- Break-glass (emergency access) grants (postgres). Its twin in ../sqlite must stay
-- equivalent. See docs/identity.md.
--
-- A grant lets a clinician or nurse outside a patient's conversations read them for a short
-- window. The free-text reason may carry PHI: it is sealed under the patient's data key
-- (reason_sealed) and never copied into the audit log, which records only reason_category.
-- A compliance officer reviews every grant once (pending -> justified | unjustified); the
-- review note is sealed the same way.
CREATE TABLE break_glass_grants (
    id UUID PRIMARY KEY NOT NULL,
    org_id UUID NOT NULL REFERENCES organizations(id),
    patient_id UUID NOT NULL REFERENCES patients(id),
    requester_id UUID NOT NULL REFERENCES users(id),
    reason_category TEXT NOT NULL,
    reason_sealed BYTEA NOT NULL,
    granted_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT,
    revoked_by UUID REFERENCES users(id),
    review_status TEXT NOT NULL DEFAULT 'pending' CHECK (review_status IN ('pending', 'justified', 'unjustified')),
    reviewed_by UUID REFERENCES users(id),
    reviewed_at BIGINT,
    review_note_sealed BYTEA,
    CHECK ((review_status = 'pending') = (reviewed_at IS NULL))
);
CREATE INDEX break_glass_by_requester ON break_glass_grants (requester_id, expires_at);
CREATE INDEX break_glass_by_org_review ON break_glass_grants (org_id, review_status, granted_at);
