-- Stored notification plans (postgres). Its twin in ../sqlite must stay equivalent. See docs/incidents.md.
--
-- The plan is computed when the incident is opened (an impermissible use or disclosure is
-- presumed a breach, 164.402: basis 'presumed') and again when the four-factor assessment is
-- signed (basis 'assessed'; empty when it found a low probability of compromise), and kept as
-- computed: later changes to the state rules never move a recorded deadline. plan_rules_as_of
-- is the review date of the rules that applied. Incidents from before this migration have no
-- stored plan until their next assessment; they are shown computed from the current rules.
ALTER TABLE incidents ADD COLUMN plan_json TEXT;
ALTER TABLE incidents ADD COLUMN plan_basis TEXT CHECK (plan_basis IN ('presumed', 'assessed'));
ALTER TABLE incidents ADD COLUMN plan_rules_as_of TEXT;
ALTER TABLE incidents ADD COLUMN plan_computed_at BIGINT;
