-- The verified contact directory (sqlite). Its twin in ../postgres must stay equivalent. See
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
    id BLOB PRIMARY KEY NOT NULL,
    org_id BLOB NOT NULL REFERENCES organizations(id),
    user_id BLOB REFERENCES users(id),
    patient_id BLOB REFERENCES patients(id),
    person_id BLOB NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('phone', 'email')),
    value_sealed BLOB NOT NULL,
    value_index TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    created_by BLOB NOT NULL REFERENCES users(id),
    verified_at INTEGER,
    suppressed_at INTEGER,
    suppressed_reason TEXT CHECK (suppressed_reason IN ('bounce', 'disconnected', 'complaint')),
    code_hash BLOB,
    code_expires_at INTEGER,
    code_attempts INTEGER NOT NULL DEFAULT 0,
    codes_window_start INTEGER,
    codes_in_window INTEGER NOT NULL DEFAULT 0,
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
    org_id BLOB PRIMARY KEY NOT NULL REFERENCES organizations(id),
    reverify_days INTEGER NOT NULL CHECK (reverify_days BETWEEN 1 AND 730),
    updated_at INTEGER NOT NULL,
    updated_by BLOB NOT NULL REFERENCES users(id)
);

-- The outbox also carries verification codes now: kind 'verification' rows name the contact
-- and have no template or consent (a code is PHI-free and asked for by its recipient); a
-- notice names the contact it goes to (destination contact:<id>) when its channel has one.
-- SQLite cannot relax NOT NULL in place: the table is rebuilt with its rows.
CREATE TABLE notice_outbox_v2 (
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
    status TEXT NOT NULL CHECK (status IN ('queued', 'sent', 'failed')),
    created_at INTEGER NOT NULL,
    created_by BLOB NOT NULL REFERENCES users(id),
    CHECK (kind <> 'notice' OR (patient_id IS NOT NULL AND template_id IS NOT NULL AND consent_id IS NOT NULL)),
    CHECK (kind <> 'verification' OR contact_id IS NOT NULL)
);
INSERT INTO notice_outbox_v2 (id, org_id, kind, patient_id, contact_id, channel, destination, template_id, consent_id, body_sealed, status,
    created_at, created_by)
    SELECT id, org_id, 'notice', patient_id, NULL, channel, destination, template_id, consent_id, body_sealed, status, created_at, created_by
    FROM notice_outbox;
DROP TABLE notice_outbox;
ALTER TABLE notice_outbox_v2 RENAME TO notice_outbox;
CREATE INDEX notice_outbox_queued ON notice_outbox (status, created_at);
CREATE INDEX notice_outbox_by_patient ON notice_outbox (patient_id, created_at);
CREATE INDEX notice_outbox_by_contact ON notice_outbox (contact_id, created_at);
