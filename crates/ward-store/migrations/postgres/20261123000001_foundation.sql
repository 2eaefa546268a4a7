-- Ward foundation schema (PostgreSQL). Its twin in ../sqlite must stay equivalent.
-- Ids are UUIDs (uuid here, 16-byte UUIDs in SQLite); times are Unix milliseconds.

CREATE TABLE organizations (
    id UUID PRIMARY KEY NOT NULL,
    slug TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    mfa_required_roles TEXT NOT NULL,
    idle_timeout_secs BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE patients (
    id UUID PRIMARY KEY NOT NULL,
    org_id UUID NOT NULL REFERENCES organizations(id),
    mrn TEXT NOT NULL,
    display_name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (org_id, mrn)
);

CREATE TABLE users (
    id UUID PRIMARY KEY NOT NULL,
    org_id UUID NOT NULL REFERENCES organizations(id),
    login TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    password_must_change BOOLEAN NOT NULL,
    patient_id UUID REFERENCES patients(id),
    totp_secret BYTEA,
    totp_pending_secret BYTEA,
    totp_last_step BIGINT,
    disabled_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX users_by_org ON users (org_id, login);

CREATE TABLE care_team_members (
    patient_id UUID NOT NULL REFERENCES patients(id),
    user_id UUID NOT NULL REFERENCES users(id),
    added_at BIGINT NOT NULL,
    PRIMARY KEY (patient_id, user_id)
);

CREATE TABLE recovery_codes (
    user_id UUID NOT NULL REFERENCES users(id),
    code_hash BYTEA NOT NULL,
    used_at BIGINT,
    PRIMARY KEY (user_id, code_hash)
);

CREATE TABLE login_throttle (
    login TEXT PRIMARY KEY NOT NULL,
    failures BIGINT NOT NULL,
    locked_until BIGINT NOT NULL
);

CREATE TABLE login_challenges (
    token_hash BYTEA PRIMARY KEY NOT NULL,
    user_id UUID NOT NULL REFERENCES users(id),
    device_id UUID,
    device_name TEXT NOT NULL,
    device_platform TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    failures BIGINT NOT NULL
);

CREATE TABLE devices (
    id UUID PRIMARY KEY NOT NULL,
    user_id UUID NOT NULL REFERENCES users(id),
    name TEXT NOT NULL,
    platform TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX devices_by_user ON devices (user_id);

CREATE TABLE sessions (
    id UUID PRIMARY KEY NOT NULL,
    user_id UUID NOT NULL REFERENCES users(id),
    org_id UUID NOT NULL REFERENCES organizations(id),
    device_id UUID NOT NULL REFERENCES devices(id),
    created_at BIGINT NOT NULL,
    last_active_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    restriction TEXT,
    mfa_verified_at BIGINT,
    source_ip TEXT,
    revoked_at BIGINT,
    revoke_reason TEXT
);
CREATE INDEX sessions_by_user ON sessions (user_id);

CREATE TABLE access_tokens (
    token_hash BYTEA PRIMARY KEY NOT NULL,
    session_id UUID NOT NULL REFERENCES sessions(id),
    expires_at BIGINT NOT NULL
);
CREATE INDEX access_tokens_by_session ON access_tokens (session_id);

CREATE TABLE refresh_tokens (
    token_hash BYTEA PRIMARY KEY NOT NULL,
    session_id UUID NOT NULL REFERENCES sessions(id),
    issued_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX refresh_tokens_by_session ON refresh_tokens (session_id);

CREATE TABLE conversations (
    id UUID PRIMARY KEY NOT NULL,
    org_id UUID NOT NULL REFERENCES organizations(id),
    kind TEXT NOT NULL,
    title TEXT,
    patient_id UUID REFERENCES patients(id),
    direct_key TEXT UNIQUE,
    created_by UUID NOT NULL REFERENCES users(id),
    created_at BIGINT NOT NULL,
    last_message_seq BIGINT NOT NULL,
    last_event_seq BIGINT NOT NULL
);

CREATE TABLE conversation_members (
    conversation_id UUID NOT NULL REFERENCES conversations(id),
    user_id UUID NOT NULL REFERENCES users(id),
    role TEXT NOT NULL,
    joined_at BIGINT NOT NULL,
    joined_event_seq BIGINT NOT NULL,
    delivered_seq BIGINT NOT NULL,
    read_seq BIGINT NOT NULL,
    added_by UUID,
    reason_code TEXT,
    reason_note TEXT,
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX members_by_user ON conversation_members (user_id, conversation_id);

CREATE TABLE messages (
    id UUID PRIMARY KEY NOT NULL,
    conversation_id UUID NOT NULL REFERENCES conversations(id),
    seq BIGINT NOT NULL,
    sender_id UUID NOT NULL REFERENCES users(id),
    sender_device_id UUID,
    client_txn_id TEXT NOT NULL,
    priority TEXT NOT NULL,
    body TEXT NOT NULL,
    corrects_id UUID REFERENCES messages(id),
    created_at BIGINT NOT NULL,
    recalled_at BIGINT,
    recalled_by UUID,
    UNIQUE (conversation_id, seq),
    UNIQUE (conversation_id, sender_id, client_txn_id)
);

CREATE TABLE conversation_events (
    conversation_id UUID NOT NULL REFERENCES conversations(id),
    seq BIGINT NOT NULL,
    kind TEXT NOT NULL,
    subject_id UUID,
    actor_id UUID,
    data TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, seq)
);

CREATE TABLE stream_cursors (
    session_id UUID NOT NULL REFERENCES sessions(id),
    conversation_id UUID NOT NULL REFERENCES conversations(id),
    acked_seq BIGINT NOT NULL,
    PRIMARY KEY (session_id, conversation_id)
);

-- The audit trail. idx is assigned densely (0, 1, 2, ...) by the single writer in the same
-- transaction as the change it records, so a rolled-back change leaves no event and no gap.
CREATE TABLE audit_events (
    idx BIGINT PRIMARY KEY NOT NULL,
    occurred_at BIGINT NOT NULL,
    org_id UUID,
    actor_user_id UUID,
    actor_device_id UUID,
    action TEXT NOT NULL,
    outcome TEXT NOT NULL,
    target_type TEXT,
    target_id TEXT,
    patient_id UUID,
    source_ip TEXT,
    request_id TEXT,
    detail TEXT NOT NULL
);
CREATE INDEX audit_by_org_time ON audit_events (org_id, occurred_at);

CREATE FUNCTION ward_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only';
END;
$$;
CREATE TRIGGER audit_events_no_change BEFORE UPDATE OR DELETE ON audit_events
FOR EACH ROW EXECUTE FUNCTION ward_audit_append_only();
