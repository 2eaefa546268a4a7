-- The verified contact directory (postgres). Its twin in ../sqlite must stay equivalent. See
-- docs/devices.md (verified contact directory).
--
-- A contact is a phone number (E.164) or email address of one user or one patient record.
-- The value is sealed under the owner's data key (a patient's own key, so that shredding the
-- patient reaches it; the organisation's key for users) and found by a blind index: HMAC of
-- the normal form under the organisation's index key, so that a value claimed by two people
-- (person_id differs) can be found without storing it in the clear.
--
-- The verification challenge lives on the row: only a keyed hash of the code, its expiry and
-- the wrong attempts; codes_in_window counts the codes sent since codes_window_start.
CREATE TABLE contacts (
    id UUID PRIMARY KEY NOT NULL,
    org_id UUID NOT NULL REFERENCES organizations(id),
    user_id UUID REFERENCES users(id),
    patient_id UUID REFERENCES patients(id),
    person_id UUID NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('phone', 'email')),
    value_sealed BYTEA NOT NULL,
    value_index TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by UUID NOT NULL REFERENCES users(id),
    verified_at BIGINT,
    suppressed_at BIGINT,
    suppressed_reason TEXT CHECK (suppressed_reason IN ('bounce', 'disconnected', 'complaint')),
    code_hash BYTEA,
    code_expires_at BIGINT,
    code_attempts BIGINT NOT NULL DEFAULT 0,
    codes_window_start BIGINT,
    codes_in_window BIGINT NOT NULL DEFAULT 0,
    CHECK ((user_id IS NULL) <> (patient_id IS NULL)),
    CHECK ((suppressed_at IS NULL) = (suppressed_reason IS NULL)),
    CHECK ((code_hash IS NULL) = (code_expires_at IS NULL))
);
CREATE UNIQUE INDEX contacts_user_value ON contacts (user_id, kind, value_index) WHERE user_id IS NOT NULL;
CREATE UNIQUE INDEX contacts_patient_value ON contacts (patient_id, kind, value_index) WHERE patient_id IS NOT NULL;
CREATE INDEX contacts_by_value ON contacts (org_id, kind, value_index);

-- Per organisation: days after verification before a contact must be verified again (no row:
-- the default, 90).
CREATE TABLE contact_policies (
    org_id UUID PRIMARY KEY NOT NULL REFERENCES organizations(id),
    reverify_days BIGINT NOT NULL CHECK (reverify_days BETWEEN 1 AND 730),
    updated_at BIGINT NOT NULL,
    updated_by UUID NOT NULL REFERENCES users(id)
);

-- The outbox also carries verification codes now: kind 'verification' rows name the contact
-- and have no template or consent (a code is PHI-free and asked for by its recipient); a
-- notice names the contact it goes to (destination contact:<id>) when its channel has one.
ALTER TABLE notice_outbox ADD COLUMN kind TEXT NOT NULL DEFAULT 'notice' CHECK (kind IN ('notice', 'verification'));
ALTER TABLE notice_outbox ADD COLUMN contact_id UUID;
ALTER TABLE notice_outbox ALTER COLUMN patient_id DROP NOT NULL;
ALTER TABLE notice_outbox ALTER COLUMN template_id DROP NOT NULL;
ALTER TABLE notice_outbox ALTER COLUMN consent_id DROP NOT NULL;
ALTER TABLE notice_outbox ADD CONSTRAINT notice_outbox_notice_complete
    CHECK (kind <> 'notice' OR (patient_id IS NOT NULL AND template_id IS NOT NULL AND consent_id IS NOT NULL));
ALTER TABLE notice_outbox ADD CONSTRAINT notice_outbox_verification_contact CHECK (kind <> 'verification' OR contact_id IS NOT NULL);
CREATE INDEX notice_outbox_by_contact ON notice_outbox (contact_id, created_at);
