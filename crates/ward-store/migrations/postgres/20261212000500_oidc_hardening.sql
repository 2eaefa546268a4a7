-- Single sign-on hardening (postgres). Its twin in ../sqlite must stay equivalent.
-- See docs/identity.md, "Single sign-on (OpenID Connect)".

-- The hand-over is redeemable only by the browser that came back from the provider: the
-- SHA-256 of the random cookie the callback set in that browser.
ALTER TABLE oidc_handoffs ADD COLUMN browser_hash BYTEA;

-- A single sign-on that stopped at Ward's own second factor: the provider's session id to
-- bind the session to once the login challenge is answered (back-channel logout).
CREATE TABLE oidc_challenges (
    challenge_hash BYTEA PRIMARY KEY NOT NULL,
    org_id UUID NOT NULL REFERENCES organizations(id),
    user_id UUID NOT NULL REFERENCES users(id),
    sid TEXT,
    expires_at BIGINT NOT NULL
);
CREATE INDEX oidc_challenges_by_expiry ON oidc_challenges (expires_at);
