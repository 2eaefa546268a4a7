-- Notification delivery (sqlite). Its twin in ../postgres must stay equivalent. See
-- docs/notifications.md.
--
-- The outbox gains the delivery state: 'sending' while a node holds the entry's lease
-- (lease_owner, lease_until: a node that dies mid-send leaves it to be taken again once
-- the lease runs out), 'cancelled' when consent or the contact went away first. attempts
-- counts the provider calls; next_attempt_at holds back a retry; last_code is the last
-- provider error code (never a destination or text).
CREATE TABLE notice_outbox_v3 (
    id BLOB PRIMARY KEY NOT NULL,
    org_id BLOB NOT NULL REFERENCES organizations(id),
    kind TEXT NOT NULL DEFAULT 'notice' CHECK (kind IN ('notice', 'verification')),
    patient_id BLOB REFERENCES patients(id),
    contact_id BLOB,
    channel TEXT NOT NULL CHECK (channel IN ('sms', 'email', 'push')),
    destination TEXT NOT NULL,
    template_id BLOB,
    consent_id BLOB REFERENCES consents(id),
    body_sealed BLOB NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'sending', 'sent', 'failed', 'cancelled')),
    created_at INTEGER NOT NULL,
    created_by BLOB NOT NULL REFERENCES users(id),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until INTEGER,
    last_code TEXT,
    finished_at INTEGER,
    CHECK (kind <> 'notice' OR (patient_id IS NOT NULL AND template_id IS NOT NULL AND consent_id IS NOT NULL)),
    CHECK (kind <> 'verification' OR contact_id IS NOT NULL)
);
INSERT INTO notice_outbox_v3 (id, org_id, kind, patient_id, contact_id, channel, destination, template_id, consent_id, body_sealed, status,
    created_at, created_by)
    SELECT id, org_id, kind, patient_id, contact_id, channel, destination, template_id, consent_id, body_sealed, status, created_at, created_by
    FROM notice_outbox;
DROP TABLE notice_outbox;
ALTER TABLE notice_outbox_v3 RENAME TO notice_outbox;
CREATE INDEX notice_outbox_queued ON notice_outbox (status, created_at);
CREATE INDEX notice_outbox_by_patient ON notice_outbox (patient_id, created_at);
CREATE INDEX notice_outbox_by_contact ON notice_outbox (contact_id, created_at);
CREATE INDEX notice_outbox_due ON notice_outbox (status, next_attempt_at);

-- One push token per device (APNs or FCM), sealed under the organisation's key (purpose
-- push.token): a token addresses one phone. Deleted with the device's revocation, a wipe, the
-- user's disabling, or the provider's "unregistered".
CREATE TABLE device_push_tokens (
    device_id BLOB PRIMARY KEY NOT NULL REFERENCES devices(id),
    org_id BLOB NOT NULL REFERENCES organizations(id),
    user_id BLOB NOT NULL REFERENCES users(id),
    platform TEXT NOT NULL CHECK (platform IN ('apns', 'fcm')),
    token_sealed BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX device_push_tokens_by_user ON device_push_tokens (user_id);

-- New-message pushes waiting for a provider: one row per recipient device, ids only.
CREATE TABLE push_outbox (
    id BLOB PRIMARY KEY NOT NULL,
    org_id BLOB NOT NULL REFERENCES organizations(id),
    user_id BLOB NOT NULL REFERENCES users(id),
    device_id BLOB NOT NULL,
    conversation_id BLOB NOT NULL,
    message_id BLOB,
    high_priority BOOLEAN NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'sending', 'sent', 'failed', 'cancelled')),
    created_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until INTEGER,
    last_code TEXT,
    finished_at INTEGER
);
CREATE INDEX push_outbox_due ON push_outbox (status, next_attempt_at);
