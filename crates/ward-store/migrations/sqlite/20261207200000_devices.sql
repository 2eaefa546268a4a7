-- Device trust: registration facts, posture reports with their evaluations, the posture
-- policy per organisation, spot-check samples and selective remote wipes.

-- What the device stated at registration (PUT /api/v1/me/device); null until it registers.
ALTER TABLE devices ADD COLUMN registration TEXT;
ALTER TABLE devices ADD COLUMN model TEXT;
ALTER TABLE devices ADD COLUMN os_version TEXT;
ALTER TABLE devices ADD COLUMN app_version TEXT;
ALTER TABLE devices ADD COLUMN ownership TEXT;
ALTER TABLE devices ADD COLUMN supervised BOOLEAN;
ALTER TABLE devices ADD COLUMN mdm_enrolled BOOLEAN;
ALTER TABLE devices ADD COLUMN registered_at INTEGER;
-- SHA-256 of the secret with which a revoked device fetches and acknowledges its wipe; it
-- opens nothing else.
ALTER TABLE devices ADD COLUMN wipe_secret_hash BLOB;
ALTER TABLE devices ADD COLUMN revoke_reason TEXT;
-- The latest evaluation (JSON as ward_device writes it), its state, and when the device is
-- blocked from PHI without a further report (grace ending or the report going stale).
ALTER TABLE devices ADD COLUMN posture_evaluation TEXT;
ALTER TABLE devices ADD COLUMN posture_state TEXT;
ALTER TABLE devices ADD COLUMN posture_block_at INTEGER;

CREATE TABLE posture_reports (
    id BLOB PRIMARY KEY NOT NULL,
    org_id BLOB NOT NULL REFERENCES organizations(id),
    device_id BLOB NOT NULL REFERENCES devices(id),
    received_at INTEGER NOT NULL,
    report TEXT NOT NULL,
    evaluation TEXT NOT NULL,
    state TEXT NOT NULL
);
CREATE INDEX posture_reports_by_device ON posture_reports (device_id, received_at);

CREATE TABLE posture_policies (
    org_id BLOB PRIMARY KEY NOT NULL REFERENCES organizations(id),
    policy TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    updated_by BLOB NOT NULL
);

CREATE TABLE device_spot_checks (
    id BLOB PRIMARY KEY NOT NULL,
    org_id BLOB NOT NULL REFERENCES organizations(id),
    created_at INTEGER NOT NULL,
    created_by BLOB NOT NULL,
    seed TEXT NOT NULL,
    percent INTEGER NOT NULL,
    population TEXT NOT NULL,
    sample TEXT NOT NULL
);
CREATE INDEX device_spot_checks_by_org ON device_spot_checks (org_id, created_at);

CREATE TABLE device_wipes (
    id BLOB PRIMARY KEY NOT NULL,
    org_id BLOB NOT NULL REFERENCES organizations(id),
    device_id BLOB NOT NULL REFERENCES devices(id),
    user_id BLOB NOT NULL REFERENCES users(id),
    requested_by BLOB NOT NULL,
    requested_at INTEGER NOT NULL,
    reason TEXT NOT NULL,
    source TEXT NOT NULL,
    delivered_at INTEGER,
    acknowledged_at INTEGER
);
CREATE UNIQUE INDEX device_wipes_one_per_device ON device_wipes (device_id);
CREATE INDEX device_wipes_by_org ON device_wipes (org_id, requested_at);
