-- Delegated access reviewers (sqlite). Its twin in ../postgres must stay equivalent. See
-- docs/access-reviews.md, "Who reviews whom".
--
-- The person an admin or compliance officer asked to decide on this item (a manager for their
-- people); NULL: the organisation's reviewers decide. Carried over to the same account's item
-- in the next campaign while the reviewer is still an enabled workforce account.
ALTER TABLE access_review_items ADD COLUMN reviewer_id BLOB REFERENCES users(id);
CREATE INDEX access_review_items_by_reviewer ON access_review_items (reviewer_id, campaign_id);
