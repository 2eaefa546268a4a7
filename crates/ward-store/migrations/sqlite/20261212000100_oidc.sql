-- Single sign-on with OpenID Connect (sqlite). Its twin in ../postgres must stay equivalent.
-- See docs/identity.md, "Single sign-on (OpenID Connect)".

-- One provider per organisation. The client secret is sealed under the organisation's data
-- key (purpose oidc.client_secret); the role mapping is JSON [{"value": ..., "role": ...}].
CREATE TABLE oidc_providers (
    org_id BLOB PRIMARY KEY NOT NULL REFERENCES organizations(id),
    issuer TEXT NOT NULL,
    client_id TEXT NOT NULL,
    client_secret_sealed BLOB,
    scopes TEXT NOT NULL,
    role_claim TEXT NOT NULL,
    role_map TEXT NOT NULL,
    jit_enabled BOOLEAN NOT NULL,
    jit_default_role TEXT,
    updated_by BLOB NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Sign-ins in flight: the SHA-256 of the state parameter, the nonce and PKCE verifier to
-- check the answer with, and the redirect URI the code must be exchanged for. Single use
-- (used_at), short-lived; purged with the other expired tokens.
CREATE TABLE oidc_states (
    state_hash BLOB PRIMARY KEY NOT NULL,
    org_id BLOB NOT NULL REFERENCES organizations(id),
    nonce TEXT NOT NULL,
    pkce_verifier TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER
);
CREATE INDEX oidc_states_by_expiry ON oidc_states (expires_at);

-- Which Ward account a provider subject is, per organisation.
CREATE TABLE oidc_links (
    org_id BLOB NOT NULL REFERENCES organizations(id),
    subject TEXT NOT NULL,
    user_id BLOB NOT NULL REFERENCES users(id),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (org_id, subject)
);
CREATE INDEX oidc_links_by_user ON oidc_links (user_id);

-- The one-time hand-over from the callback to the web app (only the token's SHA-256), so no
-- session token ever travels in a URL. sid is the provider's session, for back-channel logout.
CREATE TABLE oidc_handoffs (
    token_hash BLOB PRIMARY KEY NOT NULL,
    org_id BLOB NOT NULL REFERENCES organizations(id),
    user_id BLOB NOT NULL REFERENCES users(id),
    sid TEXT,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER
);
CREATE INDEX oidc_handoffs_by_expiry ON oidc_handoffs (expires_at);

-- Ward sessions opened by single sign-on, with the provider's session id when it sent one.
CREATE TABLE oidc_sessions (
    session_id BLOB PRIMARY KEY NOT NULL REFERENCES sessions(id),
    org_id BLOB NOT NULL REFERENCES organizations(id),
    user_id BLOB NOT NULL REFERENCES users(id),
    sid TEXT,
    created_at INTEGER NOT NULL
);
CREATE INDEX oidc_sessions_by_sid ON oidc_sessions (org_id, sid);

-- Logout tokens already accepted (jti), refused when presented again.
CREATE TABLE oidc_logout_jtis (
    org_id BLOB NOT NULL REFERENCES organizations(id),
    jti TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (org_id, jti)
);
