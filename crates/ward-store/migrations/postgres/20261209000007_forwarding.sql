-- Forwarding as a disclosure (postgres). Its twin in ../sqlite must stay equivalent. See
-- docs/forwarding.md and docs/audit-log.md (accounting of disclosures).
--
-- A patient's written authorization to disclose their information (HIPAA 164.508): who may
-- receive it and for what, as free text that may carry PHI, sealed under the patient's data
-- key; the audit log records only the authorization's id.
CREATE TABLE patient_authorizations (
    id UUID PRIMARY KEY NOT NULL,
    org_id UUID NOT NULL REFERENCES organizations(id),
    patient_id UUID NOT NULL REFERENCES patients(id),
    recipient_sealed BYTEA NOT NULL,
    purpose_sealed BYTEA NOT NULL,
    expires_at BIGINT NOT NULL,
    recorded_by UUID NOT NULL REFERENCES users(id),
    recorded_at BIGINT NOT NULL
);
CREATE INDEX patient_authorizations_by_patient ON patient_authorizations (patient_id, expires_at);

-- A forwarded message links to the message it copies, with the purpose or authorization the
-- forward was made under (NULL for both inside the care team).
CREATE TABLE message_forwards (
    message_id UUID PRIMARY KEY NOT NULL REFERENCES messages(id),
    source_message_id UUID NOT NULL REFERENCES messages(id),
    source_conversation_id UUID NOT NULL REFERENCES conversations(id),
    purpose TEXT CHECK (purpose IN ('treatment', 'payment', 'operations')),
    authorization_id UUID REFERENCES patient_authorizations(id),
    created_at BIGINT NOT NULL
);
CREATE INDEX message_forwards_by_source ON message_forwards (source_message_id);
