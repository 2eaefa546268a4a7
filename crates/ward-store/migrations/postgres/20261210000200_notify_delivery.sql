-- Notification delivery (postgres). Its twin in ../sqlite must stay equivalent. See
-- docs/notifications.md.
--
-- The outbox gains the delivery state: 'sending' while a node holds the entry's lease
-- (lease_owner, lease_until: a node that dies mid-send leaves it to be taken again once
-- the lease runs out), 'cancelled' when consent or the contact went away first. attempts
-- counts the provider calls; next_attempt_at holds back a retry; last_code is the last
-- provider error code (never a destination or text).
ALTER TABLE notice_outbox DROP CONSTRAINT notice_outbox_status_check;
ALTER TABLE notice_outbox ADD CONSTRAINT notice_outbox_status_check CHECK (status IN ('queued', 'sending', 'sent', 'failed', 'cancelled'));
ALTER TABLE notice_outbox ADD COLUMN attempts BIGINT NOT NULL DEFAULT 0;
ALTER TABLE notice_outbox ADD COLUMN next_attempt_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE notice_outbox ADD COLUMN lease_owner TEXT;
ALTER TABLE notice_outbox ADD COLUMN lease_until BIGINT;
ALTER TABLE notice_outbox ADD COLUMN last_code TEXT;
ALTER TABLE notice_outbox ADD COLUMN finished_at BIGINT;
CREATE INDEX notice_outbox_due ON notice_outbox (status, next_attempt_at);

-- One push token per device (APNs or FCM), sealed under the organisation's key (purpose
-- push.token): a token addresses one phone. Deleted with the device's revocation, a wipe, the
-- user's disabling, or the provider's "unregistered".
CREATE TABLE device_push_tokens (
    device_id UUID PRIMARY KEY NOT NULL REFERENCES devices(id),
    org_id UUID NOT NULL REFERENCES organizations(id),
    user_id UUID NOT NULL REFERENCES users(id),
    platform TEXT NOT NULL CHECK (platform IN ('apns', 'fcm')),
    token_sealed BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX device_push_tokens_by_user ON device_push_tokens (user_id);

-- New-message pushes waiting for a provider: one row per recipient device, ids only.
CREATE TABLE push_outbox (
    id UUID PRIMARY KEY NOT NULL,
    org_id UUID NOT NULL REFERENCES organizations(id),
    user_id UUID NOT NULL REFERENCES users(id),
    device_id UUID NOT NULL,
    conversation_id UUID NOT NULL,
    message_id UUID,
    high_priority BOOLEAN NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'sending', 'sent', 'failed', 'cancelled')),
    created_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until BIGINT,
    last_code TEXT,
    finished_at BIGINT
);
CREATE INDEX push_outbox_due ON push_outbox (status, next_attempt_at);
