-- Compliance registers (postgres). Its twin in ../sqlite must stay equivalent. See
-- docs/compliance-registers.md.
--
-- Policies users must acknowledge: each publish adds a version; users acknowledge a version,
-- and only an acknowledgment of the current version counts. Policy texts, vendor names and
-- risk descriptions are not PHI, but the audit log still records only codes and ids.
CREATE TABLE policies (
    id UUID PRIMARY KEY NOT NULL,
    org_id UUID NOT NULL REFERENCES organizations(id),
    kind TEXT NOT NULL CHECK (kind IN ('device_checklist', 'byod_wipe_authority', 'acceptable_use', 'other')),
    current_version BIGINT NOT NULL CHECK (current_version >= 1),
    created_at BIGINT NOT NULL
);
CREATE INDEX policies_by_org ON policies (org_id, created_at);
CREATE TABLE policy_versions (
    policy_id UUID NOT NULL REFERENCES policies(id),
    version BIGINT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    published_at BIGINT NOT NULL,
    published_by UUID REFERENCES users(id),
    PRIMARY KEY (policy_id, version)
);
CREATE TABLE policy_acknowledgments (
    policy_id UUID NOT NULL REFERENCES policies(id),
    version BIGINT NOT NULL,
    user_id UUID NOT NULL REFERENCES users(id),
    acknowledged_at BIGINT NOT NULL,
    PRIMARY KEY (policy_id, version, user_id)
);
CREATE INDEX policy_acknowledgments_by_user ON policy_acknowledgments (user_id);
-- One row per organisation that changed the default (no requirement).
CREATE TABLE policy_settings (
    org_id UUID PRIMARY KEY NOT NULL REFERENCES organizations(id),
    require_before_phi BOOLEAN NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by UUID REFERENCES users(id)
);
-- The business associate (BAA) vendor register. Dates are calendar dates (YYYY-MM-DD).
-- alerted_stage records the last expiry alert raised ("<renewal_on>:<stage>"), so the
-- periodic check raises each stage once per renewal date.
CREATE TABLE baa_vendors (
    id UUID PRIMARY KEY NOT NULL,
    org_id UUID NOT NULL REFERENCES organizations(id),
    name TEXT NOT NULL,
    services TEXT NOT NULL,
    data_shared TEXT NOT NULL,
    baa_status TEXT NOT NULL CHECK (baa_status IN ('none', 'requested', 'signed', 'terminated')),
    signed_on TEXT,
    renewal_on TEXT,
    owner_id UUID REFERENCES users(id),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    alerted_stage TEXT,
    CHECK (baa_status <> 'signed' OR signed_on IS NOT NULL)
);
CREATE INDEX baa_vendors_by_org ON baa_vendors (org_id, name);
CREATE INDEX baa_vendors_by_renewal ON baa_vendors (baa_status, renewal_on);
-- The risk register of the HIPAA risk analysis: likelihood and impact on 1-5 scales (the
-- score, likelihood x impact, is computed, not stored).
CREATE TABLE risks (
    id UUID PRIMARY KEY NOT NULL,
    org_id UUID NOT NULL REFERENCES organizations(id),
    description TEXT NOT NULL,
    likelihood BIGINT NOT NULL CHECK (likelihood BETWEEN 1 AND 5),
    impact BIGINT NOT NULL CHECK (impact BETWEEN 1 AND 5),
    owner_id UUID REFERENCES users(id),
    status TEXT NOT NULL CHECK (status IN ('open', 'mitigating', 'accepted', 'closed')),
    review_on TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX risks_by_org ON risks (org_id, review_on);
-- Training records (security awareness): who completed which course when.
CREATE TABLE training_records (
    id UUID PRIMARY KEY NOT NULL,
    org_id UUID NOT NULL REFERENCES organizations(id),
    user_id UUID NOT NULL REFERENCES users(id),
    course TEXT NOT NULL,
    completed_on TEXT NOT NULL,
    recorded_by UUID REFERENCES users(id),
    recorded_at BIGINT NOT NULL
);
CREATE INDEX training_records_by_user ON training_records (org_id, user_id, completed_on);
