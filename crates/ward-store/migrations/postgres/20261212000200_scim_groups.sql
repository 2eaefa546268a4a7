-- SCIM Groups, token expiry and account modification times (postgres). Its twin in ../sqlite
-- must stay equivalent. See docs/identity.md, "SCIM groups".
--
-- A group an identity provider manages. `role` is its Ward binding: NULL for a plain
-- directory group (membership changes no access), or the clinical role its membership grants
-- (never admin or compliance_officer: those are granted in Ward only).
CREATE TABLE scim_groups (
    id UUID PRIMARY KEY NOT NULL,
    org_id UUID NOT NULL REFERENCES organizations(id),
    display_name TEXT NOT NULL,
    external_id TEXT,
    role TEXT CHECK (role IS NULL OR role IN ('clinician', 'nurse', 'staff')),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX scim_groups_display_name ON scim_groups (org_id, display_name);
CREATE UNIQUE INDEX scim_groups_external_id ON scim_groups (org_id, external_id);

CREATE TABLE scim_group_members (
    group_id UUID NOT NULL REFERENCES scim_groups(id) ON DELETE CASCADE,
    user_id UUID NOT NULL REFERENCES users(id),
    added_at BIGINT NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX scim_group_members_by_user ON scim_group_members (user_id);

-- When an attribute SCIM shows last changed, whichever path changed it (NULL: never since
-- creation). SCIM's meta.lastModified.
ALTER TABLE users ADD COLUMN updated_at BIGINT;

-- An optional expiry chosen at issue time; expired tokens are refused like revoked ones.
ALTER TABLE scim_tokens ADD COLUMN expires_at BIGINT;
