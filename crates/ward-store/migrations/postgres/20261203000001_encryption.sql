-- Encryption at rest (PostgreSQL). Its twin in ../sqlite must stay equivalent.
--
-- data_keys holds every data key, wrapped by a KEK of the key provider; nothing else in the
-- database can decrypt content. A scope (conversation, patient, organisation) has versions;
-- new content uses the newest version that is not destroyed. Destroying a version
-- (crypto-shredding) clears its wrapped key and keeps the row as the record of it.
CREATE TABLE data_keys (
    scope_id UUID NOT NULL,
    version INTEGER NOT NULL,
    org_id UUID NOT NULL REFERENCES organizations(id),
    scope_kind TEXT NOT NULL,
    kek_id TEXT,
    wrapped BYTEA,
    created_at BIGINT NOT NULL,
    wrapped_at BIGINT NOT NULL,
    destroyed_at BIGINT,
    PRIMARY KEY (scope_id, version)
);
CREATE INDEX data_keys_by_kek ON data_keys (kek_id);
CREATE INDEX data_keys_by_org ON data_keys (org_id, scope_kind);

-- Sealed twins of the columns that can carry PHI. The plaintext columns stay for rows
-- written before this migration until the store seals them (then they hold '' or NULL);
-- patients.mrn then holds a keyed blind index ("bi1:<hex>") so lookups and the uniqueness
-- rule still work without the MRN itself.
ALTER TABLE messages ADD COLUMN body_sealed BYTEA;
ALTER TABLE conversations ADD COLUMN title_sealed BYTEA;
ALTER TABLE patients ADD COLUMN mrn_sealed BYTEA;
ALTER TABLE patients ADD COLUMN name_sealed BYTEA;
ALTER TABLE conversation_members ADD COLUMN reason_note_sealed BYTEA;
