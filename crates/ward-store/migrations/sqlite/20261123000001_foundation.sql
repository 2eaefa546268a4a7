-- Ward foundation schema (SQLite). Its twin in ../postgres must stay equivalent.
-- Ids are UUIDs (16-byte BLOBs here, uuid in PostgreSQL); times are Unix milliseconds.

CREATE TABLE organizations (
    id BLOB PRIMARY KEY NOT NULL,
    slug TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    mfa_required_roles TEXT NOT NULL,
    idle_timeout_secs INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE patients (
    id BLOB PRIMARY KEY NOT NULL,
    org_id BLOB NOT NULL REFERENCES organizations(id),
    mrn TEXT NOT NULL,
    display_name TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (org_id, mrn)
);

CREATE TABLE users (
    id BLOB PRIMARY KEY NOT NULL,
    org_id BLOB NOT NULL REFERENCES organizations(id),
    login TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    password_must_change BOOLEAN NOT NULL,
    patient_id BLOB REFERENCES patients(id),
    totp_secret BLOB,
    totp_pending_secret BLOB,
    totp_last_step INTEGER,
    disabled_at INTEGER,
    created_at INTEGER NOT NULL
);
CREATE INDEX users_by_org ON users (org_id, login);

CREATE TABLE care_team_members (
    patient_id BLOB NOT NULL REFERENCES patients(id),
    user_id BLOB NOT NULL REFERENCES users(id),
    added_at INTEGER NOT NULL,
    PRIMARY KEY (patient_id, user_id)
);

CREATE TABLE recovery_codes (
    user_id BLOB NOT NULL REFERENCES users(id),
    code_hash BLOB NOT NULL,
    used_at INTEGER,
    PRIMARY KEY (user_id, code_hash)
);

CREATE TABLE login_throttle (
    login TEXT PRIMARY KEY NOT NULL,
    failures INTEGER NOT NULL,
    locked_until INTEGER NOT NULL
);

CREATE TABLE login_challenges (
    token_hash BLOB PRIMARY KEY NOT NULL,
    user_id BLOB NOT NULL REFERENCES users(id),
    device_id BLOB,
    device_name TEXT NOT NULL,
    device_platform TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    failures INTEGER NOT NULL
);

CREATE TABLE devices (
    id BLOB PRIMARY KEY NOT NULL,
    user_id BLOB NOT NULL REFERENCES users(id),
    name TEXT NOT NULL,
    platform TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX devices_by_user ON devices (user_id);

CREATE TABLE sessions (
    id BLOB PRIMARY KEY NOT NULL,
    user_id BLOB NOT NULL REFERENCES users(id),
    org_id BLOB NOT NULL REFERENCES organizations(id),
    device_id BLOB NOT NULL REFERENCES devices(id),
    created_at INTEGER NOT NULL,
    last_active_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    restriction TEXT,
    mfa_verified_at INTEGER,
    source_ip TEXT,
    revoked_at INTEGER,
    revoke_reason TEXT
);
CREATE INDEX sessions_by_user ON sessions (user_id);

CREATE TABLE access_tokens (
    token_hash BLOB PRIMARY KEY NOT NULL,
    session_id BLOB NOT NULL REFERENCES sessions(id),
    expires_at INTEGER NOT NULL
);
CREATE INDEX access_tokens_by_session ON access_tokens (session_id);

CREATE TABLE refresh_tokens (
    token_hash BLOB PRIMARY KEY NOT NULL,
    session_id BLOB NOT NULL REFERENCES sessions(id),
    issued_at INTEGER NOT NULL,
    used_at INTEGER
);
CREATE INDEX refresh_tokens_by_session ON refresh_tokens (session_id);

CREATE TABLE conversations (
    id BLOB PRIMARY KEY NOT NULL,
    org_id BLOB NOT NULL REFERENCES organizations(id),
    kind TEXT NOT NULL,
    title TEXT,
    patient_id BLOB REFERENCES patients(id),
    direct_key TEXT UNIQUE,
    created_by BLOB NOT NULL REFERENCES users(id),
    created_at INTEGER NOT NULL,
    last_message_seq INTEGER NOT NULL,
    last_event_seq INTEGER NOT NULL
);

CREATE TABLE conversation_members (
    conversation_id BLOB NOT NULL REFERENCES conversations(id),
    user_id BLOB NOT NULL REFERENCES users(id),
    role TEXT NOT NULL,
    joined_at INTEGER NOT NULL,
    joined_event_seq INTEGER NOT NULL,
    delivered_seq INTEGER NOT NULL,
    read_seq INTEGER NOT NULL,
    added_by BLOB,
    reason_code TEXT,
    reason_note TEXT,
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX members_by_user ON conversation_members (user_id, conversation_id);

CREATE TABLE messages (
    id BLOB PRIMARY KEY NOT NULL,
    conversation_id BLOB NOT NULL REFERENCES conversations(id),
    seq INTEGER NOT NULL,
    sender_id BLOB NOT NULL REFERENCES users(id),
    sender_device_id BLOB,
    client_txn_id TEXT NOT NULL,
    priority TEXT NOT NULL,
    body TEXT NOT NULL,
    corrects_id BLOB REFERENCES messages(id),
    created_at INTEGER NOT NULL,
    recalled_at INTEGER,
    recalled_by BLOB,
    UNIQUE (conversation_id, seq),
    UNIQUE (conversation_id, sender_id, client_txn_id)
);

CREATE TABLE conversation_events (
    conversation_id BLOB NOT NULL REFERENCES conversations(id),
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    subject_id BLOB,
    actor_id BLOB,
    data TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, seq)
);

CREATE TABLE stream_cursors (
    session_id BLOB NOT NULL REFERENCES sessions(id),
    conversation_id BLOB NOT NULL REFERENCES conversations(id),
    acked_seq INTEGER NOT NULL,
    PRIMARY KEY (session_id, conversation_id)
);

-- The audit trail. idx is assigned densely (0, 1, 2, ...) by the single writer in the same
-- transaction as the change it records, so a rolled-back change leaves no event and no gap.
CREATE TABLE audit_events (
    idx INTEGER PRIMARY KEY NOT NULL,
    occurred_at INTEGER NOT NULL,
    org_id BLOB,
    actor_user_id BLOB,
    actor_device_id BLOB,
    action TEXT NOT NULL,
    outcome TEXT NOT NULL,
    target_type TEXT,
    target_id TEXT,
    patient_id BLOB,
    source_ip TEXT,
    request_id TEXT,
    detail TEXT NOT NULL
);
CREATE INDEX audit_by_org_time ON audit_events (org_id, occurred_at);

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
