-- Forwarding as a disclosure (sqlite). Its twin in ../postgres must stay equivalent. See
-- docs/forwarding.md and docs/audit-log.md (accounting of disclosures).
--
-- A patient's written authorization to disclose their information (HIPAA 164.508): who may
-- receive it and for what, as free text that may carry PHI, sealed under the patient's data
-- key; the audit log records only the authorization's id.
CREATE TABLE patient_authorizations (
    id BLOB PRIMARY KEY NOT NULL,
    org_id BLOB NOT NULL REFERENCES organizations(id),
    patient_id BLOB NOT NULL REFERENCES patients(id),
    recipient_sealed BLOB NOT NULL,
    purpose_sealed BLOB NOT NULL,
    expires_at INTEGER NOT NULL,
    recorded_by BLOB NOT NULL REFERENCES users(id),
    recorded_at INTEGER NOT NULL
);
CREATE INDEX patient_authorizations_by_patient ON patient_authorizations (patient_id, expires_at);

-- A forwarded message links to the message it copies, with the purpose or authorization the
-- forward was made under (NULL for both inside the care team).
CREATE TABLE message_forwards (
    message_id BLOB PRIMARY KEY NOT NULL REFERENCES messages(id),
    source_message_id BLOB NOT NULL REFERENCES messages(id),
    source_conversation_id BLOB NOT NULL REFERENCES conversations(id),
    purpose TEXT CHECK (purpose IN ('treatment', 'payment', 'operations')),
    authorization_id BLOB REFERENCES patient_authorizations(id),
    created_at INTEGER NOT NULL
);
CREATE INDEX message_forwards_by_source ON message_forwards (source_message_id);
