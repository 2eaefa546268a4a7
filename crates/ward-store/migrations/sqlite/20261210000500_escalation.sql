-- Escalation of unread urgent and STAT messages (sqlite). Its twin in ../postgres must stay
-- equivalent. See docs/notifications.md.
--
-- One row per message and step, inserted in the same transaction as the pushes it queues
-- and its audit event: the primary key is the claim, so of two nodes racing for a step only
-- one inserts it. outcome is a code: 'notified'; 'no_one' when the step found nobody to tell;
-- 'no_device' when those it found have no registered device. Ids and counts only.
CREATE TABLE escalations (
    message_id BLOB NOT NULL,
    step INTEGER NOT NULL CHECK (step IN (1, 2)),
    org_id BLOB NOT NULL REFERENCES organizations(id),
    conversation_id BLOB NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('notified', 'no_one', 'no_device')),
    people INTEGER NOT NULL,
    devices INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (message_id, step)
);
CREATE INDEX escalations_by_org ON escalations (org_id, created_at);

-- Which generic text a push carries: 'new_message' or 'escalation' ("Urgent message needs
-- attention").
ALTER TABLE push_outbox ADD COLUMN alert TEXT NOT NULL DEFAULT 'new_message' CHECK (alert IN ('new_message', 'escalation'));

-- On call: a care-team member who is told when an urgent or STAT message about the patient
-- stays unread past the second escalation step.
ALTER TABLE care_team_members ADD COLUMN on_call BOOLEAN NOT NULL DEFAULT FALSE;
