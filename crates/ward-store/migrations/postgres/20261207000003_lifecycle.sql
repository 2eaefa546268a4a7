-- Data lifecycle (PostgreSQL): retention policies, legal holds, shred records and the guards
-- that keep a held scope's data keys alive. Its twin in ../sqlite must stay equivalent.

CREATE TABLE retention_policies (
    org_id UUID NOT NULL REFERENCES organizations(id),
    kind TEXT NOT NULL,
    days INTEGER NOT NULL CHECK (days >= 1 AND days <= 36500),
    updated_by UUID,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (org_id, kind)
);

CREATE TABLE legal_holds (
    id UUID PRIMARY KEY NOT NULL,
    org_id UUID NOT NULL REFERENCES organizations(id),
    subject_kind TEXT NOT NULL CHECK (subject_kind IN ('user', 'conversation', 'patient')),
    subject_id UUID NOT NULL,
    reason TEXT NOT NULL,
    placed_by UUID NOT NULL,
    placed_at BIGINT NOT NULL,
    released_by UUID,
    released_at BIGINT
);
CREATE INDEX legal_holds_active ON legal_holds (subject_id) WHERE released_at IS NULL;
CREATE INDEX legal_holds_by_org ON legal_holds (org_id, placed_at);

CREATE TABLE shred_records (
    id UUID PRIMARY KEY NOT NULL,
    org_id UUID NOT NULL REFERENCES organizations(id),
    scope_kind TEXT NOT NULL,
    scope_id UUID NOT NULL,
    versions TEXT NOT NULL,
    message_count BIGINT NOT NULL,
    whole_scope BOOLEAN NOT NULL,
    policy_kind TEXT NOT NULL,
    policy_days INTEGER NOT NULL,
    horizon_at BIGINT NOT NULL,
    shredded_at BIGINT NOT NULL
);
CREATE INDEX shred_records_by_org ON shred_records (org_id, shredded_at);

ALTER TABLE messages ADD COLUMN shredded_at BIGINT;
ALTER TABLE conversations ADD COLUMN shredded_at BIGINT;
CREATE INDEX messages_by_sender ON messages (sender_id);

CREATE VIEW held_conversations AS
    SELECT c.id AS conversation_id FROM conversations c JOIN legal_holds h
        ON h.released_at IS NULL AND h.org_id = c.org_id
       AND ((h.subject_kind = 'conversation' AND h.subject_id = c.id)
         OR (h.subject_kind = 'patient' AND h.subject_id = c.patient_id))
    UNION
    SELECT m.conversation_id FROM conversation_members m JOIN legal_holds h
        ON h.released_at IS NULL AND h.subject_kind = 'user' AND h.subject_id = m.user_id
    UNION
    SELECT e.conversation_id FROM conversation_events e JOIN legal_holds h
        ON h.released_at IS NULL AND h.subject_kind = 'user' AND e.kind = 'member_added' AND h.subject_id = e.subject_id
    UNION
    SELECT msg.conversation_id FROM messages msg JOIN legal_holds h
        ON h.released_at IS NULL AND h.subject_kind = 'user' AND h.subject_id = msg.sender_id;

CREATE FUNCTION ward_scope_held(kind TEXT, scope UUID) RETURNS BOOLEAN LANGUAGE sql STABLE AS $$
    SELECT (kind = 'conversation' AND EXISTS (SELECT 1 FROM held_conversations WHERE conversation_id = scope))
        OR (kind = 'patient' AND EXISTS (SELECT 1 FROM legal_holds h WHERE h.released_at IS NULL AND h.subject_kind = 'patient' AND h.subject_id = scope));
$$;

CREATE FUNCTION ward_data_keys_hold_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF ward_scope_held(OLD.scope_kind, OLD.scope_id) THEN
            RAISE EXCEPTION 'ward_legal_hold: the data key belongs to a scope under legal hold';
        END IF;
        RETURN OLD;
    END IF;
    IF OLD.wrapped IS NOT NULL AND NEW.wrapped IS NULL THEN
        IF ward_scope_held(OLD.scope_kind, OLD.scope_id) THEN
            RAISE EXCEPTION 'ward_legal_hold: the data key belongs to a scope under legal hold';
        END IF;
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER data_keys_hold_guard BEFORE UPDATE OR DELETE ON data_keys
FOR EACH ROW EXECUTE FUNCTION ward_data_keys_hold_guard();

CREATE FUNCTION ward_messages_hold_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.body_sealed IS NOT NULL AND NEW.body_sealed IS NULL THEN
        IF ward_scope_held('conversation', OLD.conversation_id) THEN
            RAISE EXCEPTION 'ward_legal_hold: the message belongs to a conversation under legal hold';
        END IF;
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER messages_hold_guard BEFORE UPDATE ON messages
FOR EACH ROW EXECUTE FUNCTION ward_messages_hold_guard();
