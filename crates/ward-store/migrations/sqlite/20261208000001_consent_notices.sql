-- Consent registry, organisation notice templates and the notice outbox (sqlite). Its twin
-- in ../postgres must stay equivalent. See docs/consent.md.
--
-- consents is append-only evidence: a row is one grant. Revoking it, or recording a new grant
-- for the same channel, fills revoked_at, revoked_by and end_reason of the current row once;
-- nothing else is ever updated and no row is deleted. At most one grant per patient and
-- channel is current (revoked_at IS NULL).
CREATE TABLE consents (
    id BLOB PRIMARY KEY NOT NULL,
    org_id BLOB NOT NULL REFERENCES organizations(id),
    patient_id BLOB NOT NULL REFERENCES patients(id),
    channel TEXT NOT NULL CHECK (channel IN ('portal', 'sms_notices', 'email_notices', 'unsecured_phi')),
    warning_version TEXT,
    patient_insists INTEGER NOT NULL DEFAULT 0,
    recorded_at INTEGER NOT NULL,
    recorded_by BLOB NOT NULL REFERENCES users(id),
    revoked_at INTEGER,
    revoked_by BLOB REFERENCES users(id),
    end_reason TEXT CHECK (end_reason IN ('revoked', 'superseded')),
    CHECK (channel <> 'unsecured_phi' OR (warning_version IS NOT NULL AND patient_insists = 1)),
    CHECK ((revoked_at IS NULL) = (end_reason IS NULL))
);
CREATE UNIQUE INDEX consents_current ON consents (patient_id, channel) WHERE revoked_at IS NULL;
CREATE INDEX consents_by_patient ON consents (patient_id, recorded_at);

-- Notice templates: literal text with {field} placeholders, checked by the outbound content
-- policy when saved. Organisation text, not PHI.
CREATE TABLE notice_templates (
    id BLOB PRIMARY KEY NOT NULL,
    org_id BLOB NOT NULL REFERENCES organizations(id),
    name TEXT NOT NULL,
    channel TEXT NOT NULL CHECK (channel IN ('sms', 'email', 'push')),
    body TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    created_by BLOB NOT NULL,
    updated_at INTEGER NOT NULL,
    updated_by BLOB NOT NULL,
    UNIQUE (org_id, name)
);

-- Rendered notices waiting for a delivery provider. The text passed the content policy and is
-- still sealed under the patient's data key (purpose outbox.body): it holds a first name and an
-- appointment time, and shredding the patient's key must reach it. destination is a reference
-- the provider resolves (patient:<id>), never a phone number or address.
CREATE TABLE notice_outbox (
    id BLOB PRIMARY KEY NOT NULL,
    org_id BLOB NOT NULL REFERENCES organizations(id),
    patient_id BLOB NOT NULL REFERENCES patients(id),
    channel TEXT NOT NULL CHECK (channel IN ('sms', 'email', 'push')),
    destination TEXT NOT NULL,
    template_id BLOB NOT NULL,
    consent_id BLOB NOT NULL REFERENCES consents(id),
    body_sealed BLOB NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'sent', 'failed')),
    created_at INTEGER NOT NULL,
    created_by BLOB NOT NULL REFERENCES users(id)
);
CREATE INDEX notice_outbox_queued ON notice_outbox (status, created_at);
CREATE INDEX notice_outbox_by_patient ON notice_outbox (patient_id, created_at);
