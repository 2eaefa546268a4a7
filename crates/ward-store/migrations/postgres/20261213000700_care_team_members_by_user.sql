-- Care teams from SCIM groups (postgres). Its twin in ../sqlite must stay equivalent.
-- An account's group-derived care-team rows are re-synced by user (disable, enable, SCIM
-- membership changes): without this index each such sync scans every care team. The lookups
-- of care_team_groups by group_id have their index (care_team_groups_by_group) already.
CREATE INDEX care_team_members_by_user ON care_team_members (user_id);
