-- Data lifecycle (SQLite): retention policies, legal holds, shred records and the guards that
-- keep a held scope's data keys alive. Its twin in ../postgres must stay equivalent.

-- How many days content of each conversation kind is kept, per organisation. A kind without a
-- row uses the built-in default (patient 2192 days, others 365).
CREATE TABLE retention_policies (
    org_id BLOB NOT NULL REFERENCES organizations(id),
    kind TEXT NOT NULL,
    days INTEGER NOT NULL CHECK (days >= 1 AND days <= 36500),
    updated_by BLOB,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (org_id, kind)
);

-- A legal hold on a user, a conversation or a patient. Released holds stay as the record.
CREATE TABLE legal_holds (
    id BLOB PRIMARY KEY NOT NULL,
    org_id BLOB NOT NULL REFERENCES organizations(id),
    subject_kind TEXT NOT NULL CHECK (subject_kind IN ('user', 'conversation', 'patient')),
    subject_id BLOB NOT NULL,
    reason TEXT NOT NULL,
    placed_by BLOB NOT NULL,
    placed_at INTEGER NOT NULL,
    released_by BLOB,
    released_at INTEGER
);
CREATE INDEX legal_holds_active ON legal_holds (subject_id) WHERE released_at IS NULL;
CREATE INDEX legal_holds_by_org ON legal_holds (org_id, placed_at);

-- What was crypto-shredded, when and under which policy: the auditor's record once the
-- content itself is gone. `versions` is a comma-separated list of destroyed key versions.
CREATE TABLE shred_records (
    id BLOB PRIMARY KEY NOT NULL,
    org_id BLOB NOT NULL REFERENCES organizations(id),
    scope_kind TEXT NOT NULL,
    scope_id BLOB NOT NULL,
    versions TEXT NOT NULL,
    message_count INTEGER NOT NULL,
    whole_scope INTEGER NOT NULL,
    policy_kind TEXT NOT NULL,
    policy_days INTEGER NOT NULL,
    horizon_at INTEGER NOT NULL,
    shredded_at INTEGER NOT NULL
);
CREATE INDEX shred_records_by_org ON shred_records (org_id, shredded_at);

-- Tombstones: a shredded message keeps id, sender, times and seq; its body is gone.
ALTER TABLE messages ADD COLUMN shredded_at INTEGER;
-- A conversation whose every key version was destroyed has lost its title too.
ALTER TABLE conversations ADD COLUMN shredded_at INTEGER;
CREATE INDEX messages_by_sender ON messages (sender_id);

-- Conversations under an active hold: on the conversation itself, on its patient, or on a user
-- who is, was (a member_added event) or sent as a member of it.
CREATE VIEW held_conversations AS
    SELECT c.id AS conversation_id FROM conversations c JOIN legal_holds h
        ON h.released_at IS NULL AND h.org_id = c.org_id
       AND ((h.subject_kind = 'conversation' AND h.subject_id = c.id)
         OR (h.subject_kind = 'patient' AND h.subject_id = c.patient_id))
    UNION
    SELECT m.conversation_id FROM conversation_members m JOIN legal_holds h
        ON h.released_at IS NULL AND h.subject_kind = 'user' AND h.subject_id = m.user_id
    UNION
    SELECT e.conversation_id FROM conversation_events e JOIN legal_holds h
        ON h.released_at IS NULL AND h.subject_kind = 'user' AND e.kind = 'member_added' AND h.subject_id = e.subject_id
    UNION
    SELECT msg.conversation_id FROM messages msg JOIN legal_holds h
        ON h.released_at IS NULL AND h.subject_kind = 'user' AND h.subject_id = msg.sender_id;

-- Defence in depth: whatever the application does, a held scope's data key cannot be
-- destroyed or deleted, and a held message's sealed body cannot be cleared.
CREATE TRIGGER data_keys_hold_destroy BEFORE UPDATE OF wrapped ON data_keys
WHEN OLD.wrapped IS NOT NULL AND NEW.wrapped IS NULL AND (
    (OLD.scope_kind = 'conversation' AND EXISTS (SELECT 1 FROM held_conversations WHERE conversation_id = OLD.scope_id))
    OR (OLD.scope_kind = 'patient' AND EXISTS (SELECT 1 FROM legal_holds h WHERE h.released_at IS NULL AND h.subject_kind = 'patient' AND h.subject_id = OLD.scope_id)))
BEGIN
    SELECT RAISE(ABORT, 'ward_legal_hold: the data key belongs to a scope under legal hold');
END;
CREATE TRIGGER data_keys_hold_delete BEFORE DELETE ON data_keys
WHEN (OLD.scope_kind = 'conversation' AND EXISTS (SELECT 1 FROM held_conversations WHERE conversation_id = OLD.scope_id))
    OR (OLD.scope_kind = 'patient' AND EXISTS (SELECT 1 FROM legal_holds h WHERE h.released_at IS NULL AND h.subject_kind = 'patient' AND h.subject_id = OLD.scope_id))
BEGIN
    SELECT RAISE(ABORT, 'ward_legal_hold: the data key belongs to a scope under legal hold');
END;
CREATE TRIGGER messages_hold_shred BEFORE UPDATE OF body_sealed ON messages
WHEN OLD.body_sealed IS NOT NULL AND NEW.body_sealed IS NULL
    AND EXISTS (SELECT 1 FROM held_conversations WHERE conversation_id = OLD.conversation_id)
BEGIN
    SELECT RAISE(ABORT, 'ward_legal_hold: the message belongs to a conversation under legal hold');
END;
