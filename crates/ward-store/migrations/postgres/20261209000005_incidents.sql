-- Breach incidents (postgres). Its twin in ../sqlite must stay equivalent. See docs/incidents.md.
--
-- An incident's title and description may carry PHI: they are sealed under the organisation's
-- data key and never copied into the audit log (which records codes and counts only). Dates
-- that start legal clocks are calendar days (YYYY-MM-DD). The four-factor assessment of
-- 45 CFR 164.402 is one signed set of columns; notifications are recorded per obligation key
-- of the computed plan (see ward_domain::breach).
CREATE TABLE incidents (
    id UUID PRIMARY KEY NOT NULL,
    org_id UUID NOT NULL REFERENCES organizations(id),
    source TEXT NOT NULL CHECK (source IN ('manual', 'misdirected_message')),
    conversation_id UUID REFERENCES conversations(id),
    message_id UUID,
    reported_by UUID NOT NULL REFERENCES users(id),
    reported_at BIGINT NOT NULL,
    title_sealed BYTEA NOT NULL,
    description_sealed BYTEA NOT NULL,
    discovered_on TEXT NOT NULL,
    occurred_on TEXT,
    affected_count BIGINT NOT NULL CHECK (affected_count > 0),
    status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'assessed', 'notified', 'closed')),
    nature_and_extent TEXT,
    unauthorized_recipient TEXT,
    acquired_or_viewed TEXT,
    mitigation TEXT,
    outcome TEXT CHECK (outcome IN ('low_probability_of_compromise', 'breach')),
    assessed_by UUID REFERENCES users(id),
    assessed_at BIGINT,
    closed_by UUID REFERENCES users(id),
    closed_at BIGINT,
    CHECK ((outcome IS NULL) = (assessed_at IS NULL))
);
CREATE INDEX incidents_by_org ON incidents (org_id, status, reported_at);

CREATE TABLE incident_patients (
    incident_id UUID NOT NULL REFERENCES incidents(id),
    patient_id UUID NOT NULL REFERENCES patients(id),
    PRIMARY KEY (incident_id, patient_id)
);

-- Affected residents per state (USPS code), which drive media and state clocks.
CREATE TABLE incident_residents (
    incident_id UUID NOT NULL REFERENCES incidents(id),
    state TEXT NOT NULL,
    residents BIGINT NOT NULL CHECK (residents > 0),
    PRIMARY KEY (incident_id, state)
);

CREATE TABLE incident_notifications (
    incident_id UUID NOT NULL REFERENCES incidents(id),
    obligation_key TEXT NOT NULL,
    done_on TEXT NOT NULL,
    recorded_by UUID NOT NULL REFERENCES users(id),
    recorded_at BIGINT NOT NULL,
    PRIMARY KEY (incident_id, obligation_key)
);

-- Reminders sent as a deadline approaches: one per obligation and stage
-- (due_within_week, due_within_day, overdue), so each is raised once.
CREATE TABLE incident_reminders (
    incident_id UUID NOT NULL REFERENCES incidents(id),
    obligation_key TEXT NOT NULL,
    stage TEXT NOT NULL CHECK (stage IN ('due_within_week', 'due_within_day', 'overdue')),
    sent_at BIGINT NOT NULL,
    PRIMARY KEY (incident_id, obligation_key, stage)
);
