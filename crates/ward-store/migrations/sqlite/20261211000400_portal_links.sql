-- Patient portal one-time sign-in links (sqlite). Its twin in ../postgres must stay equivalent.
-- See docs/identity.md.
--
-- Only the SHA-256 of the link's token is kept. A link signs in the patient account it was
-- minted for, once (`used_at`), before `expires_at`; expired links are purged with the other
-- expired tokens.
CREATE TABLE portal_links (
    token_hash BLOB PRIMARY KEY NOT NULL,
    org_id BLOB NOT NULL REFERENCES organizations(id),
    user_id BLOB NOT NULL REFERENCES users(id),
    patient_id BLOB NOT NULL REFERENCES patients(id),
    created_by BLOB NOT NULL REFERENCES users(id),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER
);
CREATE INDEX portal_links_by_expiry ON portal_links (expires_at);
