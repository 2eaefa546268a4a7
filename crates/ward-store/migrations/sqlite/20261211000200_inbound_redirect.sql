-- Inbound redirect (sqlite). Its twin in ../postgres must stay equivalent. See
-- docs/notifications.md ("Patients who write in").
--
-- A patient who writes in by SMS or email gets one fixed, PHI-free reply pointing at the
-- portal. That reply is an outbox entry of a third kind, 'redirect': it goes to the verified
-- contact the message came from, under the patient's current consent for the channel, and
-- nobody in the workforce sent it (created_by is NULL). A fourth kind, 'escalation', is the
-- PHI-free SMS to an on-call user's verified phone when an urgent or STAT message stays
-- unread (its text is fixed in the program, so the sealed body is empty). SQLite cannot change a CHECK
-- constraint or a NOT NULL in place, so the table is rebuilt with the same rows.
CREATE TABLE notice_outbox_v4 (
    id BLOB PRIMARY KEY NOT NULL,
    org_id BLOB NOT NULL REFERENCES organizations(id),
    kind TEXT NOT NULL DEFAULT 'notice' CHECK (kind IN ('notice', 'verification', 'redirect', 'escalation')),
    patient_id BLOB REFERENCES patients(id),
    contact_id BLOB,
    channel TEXT NOT NULL CHECK (channel IN ('sms', 'email', 'push')),
    destination TEXT NOT NULL,
    template_id BLOB,
    consent_id BLOB REFERENCES consents(id),
    body_sealed BLOB NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'sending', 'sent', 'failed', 'cancelled')),
    created_at INTEGER NOT NULL,
    created_by BLOB REFERENCES users(id),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until INTEGER,
    last_code TEXT,
    finished_at INTEGER,
    CHECK (kind <> 'notice' OR (patient_id IS NOT NULL AND template_id IS NOT NULL AND consent_id IS NOT NULL)),
    CHECK (kind <> 'verification' OR contact_id IS NOT NULL),
    CHECK (kind <> 'redirect' OR (patient_id IS NOT NULL AND contact_id IS NOT NULL AND consent_id IS NOT NULL)),
    CHECK (kind <> 'escalation' OR contact_id IS NOT NULL),
    CHECK (kind IN ('redirect', 'escalation') OR created_by IS NOT NULL)
);
INSERT INTO notice_outbox_v4 (id, org_id, kind, patient_id, contact_id, channel, destination, template_id, consent_id, body_sealed, status,
    created_at, created_by, attempts, next_attempt_at, lease_owner, lease_until, last_code, finished_at)
    SELECT id, org_id, kind, patient_id, contact_id, channel, destination, template_id, consent_id, body_sealed, status,
    created_at, created_by, attempts, next_attempt_at, lease_owner, lease_until, last_code, finished_at
    FROM notice_outbox;
DROP TABLE notice_outbox;
ALTER TABLE notice_outbox_v4 RENAME TO notice_outbox;
CREATE INDEX notice_outbox_queued ON notice_outbox (status, created_at);
CREATE INDEX notice_outbox_by_patient ON notice_outbox (patient_id, created_at);
CREATE INDEX notice_outbox_by_contact ON notice_outbox (contact_id, created_at);
CREATE INDEX notice_outbox_due ON notice_outbox (status, next_attempt_at);

-- The per-sender limit on redirects: when a sender (a keyed hash of the number or address,
-- never the value) was last sent one on a channel. A redirect is queued only if the last one
-- is older than inbound.redirect_every_minutes.
CREATE TABLE inbound_senders (
    org_id BLOB NOT NULL REFERENCES organizations(id),
    channel TEXT NOT NULL CHECK (channel IN ('sms', 'email')),
    sender_hash TEXT NOT NULL,
    last_redirect_at INTEGER NOT NULL,
    PRIMARY KEY (org_id, channel, sender_hash)
);
