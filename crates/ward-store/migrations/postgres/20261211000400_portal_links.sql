-- Patient portal one-time sign-in links (postgres). Its twin in ../sqlite must stay equivalent.
-- See docs/identity.md.
--
-- Only the SHA-256 of the link's token is kept. A link signs in the patient account it was
-- minted for, once (`used_at`), before `expires_at`; expired links are purged with the other
-- expired tokens.
CREATE TABLE portal_links (
    token_hash BYTEA PRIMARY KEY NOT NULL,
    org_id UUID NOT NULL REFERENCES organizations(id),
    user_id UUID NOT NULL REFERENCES users(id),
    patient_id UUID NOT NULL REFERENCES patients(id),
    created_by UUID NOT NULL REFERENCES users(id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX portal_links_by_expiry ON portal_links (expires_at);
