-- SCIM 2.0 provisioning (postgres). Its twin in ../sqlite must stay equivalent. See
-- docs/identity.md, "SCIM provisioning".
--
-- Bearer tokens an identity provider uses on /scim/v2 only: the SHA-256 of the token, never
-- the token; revoked tokens stay for the audit trail.
CREATE TABLE scim_tokens (
    id UUID PRIMARY KEY NOT NULL,
    org_id UUID NOT NULL REFERENCES organizations(id),
    token_hash BYTEA NOT NULL UNIQUE,
    label TEXT NOT NULL,
    created_by UUID NOT NULL REFERENCES users(id),
    created_at BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at BIGINT
);
CREATE INDEX scim_tokens_by_org ON scim_tokens (org_id, created_at);

-- The identity provider's id for the account (caseExact, unique in the organisation), and
-- when a SCIM DELETE removed the account from the SCIM view (the row stays: the audit log and
-- retention refer to it).
ALTER TABLE users ADD COLUMN scim_external_id TEXT;
ALTER TABLE users ADD COLUMN scim_deleted_at BIGINT;
CREATE UNIQUE INDEX users_scim_external_id ON users (org_id, scim_external_id);

-- One row per SCIM deprovisioning: the request's arrival, the end of the transaction that
-- disabled the account, revoked its sessions and queued its wipes, and the moment the signal
-- closing its connections was sent. Wipe acknowledgements are read from device_wipes.
-- Ids, times and counts only.
CREATE TABLE scim_deprovisions (
    id UUID PRIMARY KEY NOT NULL,
    org_id UUID NOT NULL REFERENCES organizations(id),
    user_id UUID NOT NULL REFERENCES users(id),
    token_id UUID NOT NULL REFERENCES scim_tokens(id),
    cause TEXT NOT NULL CHECK (cause IN ('active_false', 'delete')),
    received_at BIGINT NOT NULL,
    sessions_revoked_at BIGINT NOT NULL,
    sessions_revoked BIGINT NOT NULL,
    wipes_queued_at BIGINT NOT NULL,
    wipes_queued BIGINT NOT NULL,
    connections_closed_at BIGINT
);
CREATE INDEX scim_deprovisions_by_org ON scim_deprovisions (org_id, received_at);
