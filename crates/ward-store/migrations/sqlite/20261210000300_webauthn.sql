-- WebAuthn credentials and ceremonies (sqlite). Its twin in ../postgres must stay equivalent.
-- See docs/identity.md.
--
-- A registered WebAuthn credential (security key or passkey). `passkey` is the verified
-- credential as webauthn-rs keeps it (credential id, COSE public key, flags), as JSON;
-- `sign_count` is the authoritative signature counter. A credential whose counter went
-- backwards (a possible clone) is flagged in `clone_suspected_at` and refused from then on.
CREATE TABLE webauthn_credentials (
    id BLOB PRIMARY KEY NOT NULL,
    org_id BLOB NOT NULL REFERENCES organizations(id),
    user_id BLOB NOT NULL REFERENCES users(id),
    credential_id BLOB NOT NULL UNIQUE,
    label TEXT NOT NULL,
    passkey TEXT NOT NULL,
    sign_count INTEGER NOT NULL,
    transports TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_used_at INTEGER,
    clone_suspected_at INTEGER
);
CREATE INDEX webauthn_credentials_by_user ON webauthn_credentials (user_id);

-- A ceremony in progress: the challenge and the state webauthn-rs needs to finish it, bound to
-- what it was issued for (a user and session, or a sign-in's second step, or nobody for a
-- passkey sign-in). Each is used once: finishing deletes it, whatever the outcome.
CREATE TABLE webauthn_ceremonies (
    id BLOB PRIMARY KEY NOT NULL,
    purpose TEXT NOT NULL CHECK (purpose IN ('register', 'mfa', 'step_up', 'passkey')),
    user_id BLOB REFERENCES users(id),
    session_id BLOB REFERENCES sessions(id),
    login_challenge BLOB,
    state TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX webauthn_ceremonies_by_expiry ON webauthn_ceremonies (expires_at);
