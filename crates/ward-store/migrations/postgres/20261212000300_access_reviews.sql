-- Access review campaigns (postgres). Its twin in ../sqlite must stay equivalent. See
-- docs/access-reviews.md.
--
-- One row per organisation that changed the default cadence (90 days, 14 to decide).
CREATE TABLE access_review_settings (
    org_id UUID PRIMARY KEY NOT NULL REFERENCES organizations(id),
    cadence_days BIGINT NOT NULL CHECK (cadence_days BETWEEN 7 AND 366),
    window_days BIGINT NOT NULL CHECK (window_days BETWEEN 1 AND 90),
    updated_at BIGINT NOT NULL,
    updated_by UUID REFERENCES users(id)
);
-- A campaign opens with its snapshot and closes once; opened_by is NULL when the schedule
-- opened it.
CREATE TABLE access_review_campaigns (
    id UUID PRIMARY KEY NOT NULL,
    org_id UUID NOT NULL REFERENCES organizations(id),
    status TEXT NOT NULL CHECK (status IN ('open', 'closed')),
    origin TEXT NOT NULL CHECK (origin IN ('schedule', 'manual')),
    opened_at BIGINT NOT NULL,
    opened_by UUID REFERENCES users(id),
    due_at BIGINT NOT NULL,
    closed_at BIGINT,
    closed_by UUID REFERENCES users(id),
    CHECK ((status = 'open') = (closed_at IS NULL))
);
CREATE INDEX access_review_campaigns_by_org ON access_review_campaigns (org_id, opened_at);
-- At most one open campaign per organisation: two nodes whose schedules fire together open one.
CREATE UNIQUE INDEX access_review_campaigns_one_open ON access_review_campaigns (org_id) WHERE status = 'open';
-- One item per enabled workforce account at the opening: what the reviewer judged (role,
-- memberships as a JSON array of {conversation_id, kind}, last sign-in and last message) and
-- the decision. The note is the reviewer's words; audit events carry only the reason code.
CREATE TABLE access_review_items (
    campaign_id UUID NOT NULL REFERENCES access_review_campaigns(id),
    user_id UUID NOT NULL REFERENCES users(id),
    login TEXT NOT NULL,
    display_name TEXT NOT NULL,
    role TEXT NOT NULL,
    mfa_enabled BOOLEAN NOT NULL,
    memberships TEXT NOT NULL,
    membership_count BIGINT NOT NULL,
    last_sign_in_at BIGINT,
    last_message_at BIGINT,
    decision TEXT CHECK (decision IN ('certify', 'revoke', 'not_reviewed')),
    reason TEXT,
    note TEXT,
    decided_by UUID REFERENCES users(id),
    decided_at BIGINT,
    PRIMARY KEY (campaign_id, user_id),
    CHECK ((decision = 'revoke') = (reason IS NOT NULL))
);
