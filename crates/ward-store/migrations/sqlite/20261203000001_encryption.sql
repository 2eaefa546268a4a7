-- Encryption at rest (SQLite). Its twin in ../postgres must stay equivalent.
--
-- data_keys holds every data key, wrapped by a KEK of the key provider; nothing else in the
-- database can decrypt content. A scope (conversation, patient, organisation) has versions;
-- new content uses the newest version that is not destroyed. Destroying a version
-- (crypto-shredding) clears its wrapped key and keeps the row as the record of it.
CREATE TABLE data_keys (
    scope_id BLOB NOT NULL,
    version INTEGER NOT NULL,
    org_id BLOB NOT NULL REFERENCES organizations(id),
    scope_kind TEXT NOT NULL,
    kek_id TEXT,
    wrapped BLOB,
    created_at INTEGER NOT NULL,
    wrapped_at INTEGER NOT NULL,
    destroyed_at INTEGER,
    PRIMARY KEY (scope_id, version)
);
CREATE INDEX data_keys_by_kek ON data_keys (kek_id);
CREATE INDEX data_keys_by_org ON data_keys (org_id, scope_kind);

-- Sealed twins of the columns that can carry PHI. The plaintext columns stay for rows
-- written before this migration until the store seals them (then they hold '' or NULL);
-- patients.mrn then holds a keyed blind index ("bi1:<hex>") so lookups and the uniqueness
-- rule still work without the MRN itself.
ALTER TABLE messages ADD COLUMN body_sealed BLOB;
ALTER TABLE conversations ADD COLUMN title_sealed BLOB;
ALTER TABLE patients ADD COLUMN mrn_sealed BLOB;
ALTER TABLE patients ADD COLUMN name_sealed BLOB;
ALTER TABLE conversation_members ADD COLUMN reason_note_sealed BLOB;
