-- Access review campaigns (sqlite). Its twin in ../postgres must stay equivalent. See
-- docs/access-reviews.md.
--
-- One row per organisation that changed the default cadence (90 days, 14 to decide).
CREATE TABLE access_review_settings (
    org_id BLOB PRIMARY KEY NOT NULL REFERENCES organizations(id),
    cadence_days INTEGER NOT NULL CHECK (cadence_days BETWEEN 7 AND 366),
    window_days INTEGER NOT NULL CHECK (window_days BETWEEN 1 AND 90),
    updated_at INTEGER NOT NULL,
    updated_by BLOB REFERENCES users(id)
);
-- A campaign opens with its snapshot and closes once; opened_by is NULL when the schedule
-- opened it.
CREATE TABLE access_review_campaigns (
    id BLOB PRIMARY KEY NOT NULL,
    org_id BLOB NOT NULL REFERENCES organizations(id),
    status TEXT NOT NULL CHECK (status IN ('open', 'closed')),
    origin TEXT NOT NULL CHECK (origin IN ('schedule', 'manual')),
    opened_at INTEGER NOT NULL,
    opened_by BLOB REFERENCES users(id),
    due_at INTEGER NOT NULL,
    closed_at INTEGER,
    closed_by BLOB REFERENCES users(id),
    CHECK ((status = 'open') = (closed_at IS NULL))
);
CREATE INDEX access_review_campaigns_by_org ON access_review_campaigns (org_id, opened_at);
-- At most one open campaign per organisation: two nodes whose schedules fire together open one.
CREATE UNIQUE INDEX access_review_campaigns_one_open ON access_review_campaigns (org_id) WHERE status = 'open';
-- One item per enabled workforce account at the opening: what the reviewer judged (role,
-- memberships as a JSON array of {conversation_id, kind}, last sign-in and last message) and
-- the decision. The note is the reviewer's words; audit events carry only the reason code.
CREATE TABLE access_review_items (
    campaign_id BLOB NOT NULL REFERENCES access_review_campaigns(id),
    user_id BLOB NOT NULL REFERENCES users(id),
    login TEXT NOT NULL,
    display_name TEXT NOT NULL,
    role TEXT NOT NULL,
    mfa_enabled BOOLEAN NOT NULL,
    memberships TEXT NOT NULL,
    membership_count INTEGER NOT NULL,
    last_sign_in_at INTEGER,
    last_message_at INTEGER,
    decision TEXT CHECK (decision IN ('certify', 'revoke', 'not_reviewed')),
    reason TEXT,
    note TEXT,
    decided_by BLOB REFERENCES users(id),
    decided_at INTEGER,
    PRIMARY KEY (campaign_id, user_id),
    CHECK ((decision = 'revoke') = (reason IS NOT NULL))
);
