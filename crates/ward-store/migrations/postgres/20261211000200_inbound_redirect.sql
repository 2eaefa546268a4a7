-- Inbound redirect (postgres). Its twin in ../sqlite must stay equivalent. See
-- docs/notifications.md ("Patients who write in").
--
-- A patient who writes in by SMS or email gets one fixed, PHI-free reply pointing at the
-- portal. That reply is an outbox entry of a third kind, 'redirect': it goes to the verified
-- contact the message came from, under the patient's current consent for the channel, and
-- nobody in the workforce sent it (created_by is NULL). A fourth kind, 'escalation', is the
-- PHI-free SMS to an on-call user's verified phone when an urgent or STAT message stays
-- unread (its text is fixed in the program, so the sealed body is empty).
ALTER TABLE notice_outbox DROP CONSTRAINT notice_outbox_kind_check;
ALTER TABLE notice_outbox ADD CONSTRAINT notice_outbox_kind_check CHECK (kind IN ('notice', 'verification', 'redirect', 'escalation'));
ALTER TABLE notice_outbox ALTER COLUMN created_by DROP NOT NULL;
ALTER TABLE notice_outbox ADD CONSTRAINT notice_outbox_redirect_complete
    CHECK (kind <> 'redirect' OR (patient_id IS NOT NULL AND contact_id IS NOT NULL AND consent_id IS NOT NULL));
ALTER TABLE notice_outbox ADD CONSTRAINT notice_outbox_escalation_contact CHECK (kind <> 'escalation' OR contact_id IS NOT NULL);
ALTER TABLE notice_outbox ADD CONSTRAINT notice_outbox_sender CHECK (kind IN ('redirect', 'escalation') OR created_by IS NOT NULL);

-- The per-sender limit on redirects: when a sender (a keyed hash of the number or address,
-- never the value) was last sent one on a channel. A redirect is queued only if the last one
-- is older than inbound.redirect_every_minutes.
CREATE TABLE inbound_senders (
    org_id UUID NOT NULL REFERENCES organizations(id),
    channel TEXT NOT NULL CHECK (channel IN ('sms', 'email')),
    sender_hash TEXT NOT NULL,
    last_redirect_at BIGINT NOT NULL,
    PRIMARY KEY (org_id, channel, sender_hash)
);
