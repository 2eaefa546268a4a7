-- Encrypted attachments (sqlite). Its twin in ../postgres must stay equivalent.
--
-- The content lives in the attachment store (object_store: a directory or an S3 bucket),
-- sealed in 64 KiB chunks under a key of its own. That key is stored here only sealed under
-- the conversation's data key (key_sealed), so destroying the conversation's key shreds its
-- attachments too. The file name is sealed the same way; the content type and size are not
-- PHI and stay readable for quotas and reports.
CREATE TABLE attachments (
    id BLOB PRIMARY KEY,
    org_id BLOB NOT NULL REFERENCES organizations(id),
    conversation_id BLOB NOT NULL REFERENCES conversations(id),
    uploader_id BLOB NOT NULL REFERENCES users(id),
    content_type TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    key_sealed BLOB NOT NULL,
    name_sealed BLOB,
    object_key TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX attachments_by_conversation ON attachments (conversation_id, created_at);

-- The attachments a message refers to, in order: space-separated attachment ids ('' for none).
ALTER TABLE messages ADD COLUMN attachment_ids TEXT NOT NULL DEFAULT '';
