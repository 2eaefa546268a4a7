-- Care teams from SCIM groups (sqlite). Its twin in ../postgres must stay equivalent. See
-- docs/identity.md, "Care teams from groups".
--
-- care_team_members stays the effective care team (every query that asks "is this person on
-- the care team" reads it). `direct`: named in Ward (create_patient, set_care_team); a row
-- with direct = FALSE exists only because the user is an active workforce member of a SCIM
-- group attached to the patient's care team, and goes when that stops being so.
ALTER TABLE care_team_members ADD COLUMN direct BOOLEAN NOT NULL DEFAULT TRUE;

-- The SCIM groups attached to a patient's care team: a care-team decision made in Ward. The
-- identity provider never sees it (the SCIM Group resource shows nothing of it).
CREATE TABLE care_team_groups (
    patient_id BLOB NOT NULL REFERENCES patients(id),
    group_id BLOB NOT NULL REFERENCES scim_groups(id) ON DELETE CASCADE,
    attached_at INTEGER NOT NULL,
    attached_by BLOB REFERENCES users(id),
    PRIMARY KEY (patient_id, group_id)
);
CREATE INDEX care_team_groups_by_group ON care_team_groups (group_id);
