-- A wipe of a device that never registered (so holds no wipe secret and can never fetch or
-- acknowledge a command) is closed at once: its sessions are revoked and the record says
-- why it will never be acknowledged, so it is not flagged overdue forever.
ALTER TABLE device_wipes ADD COLUMN closed_reason TEXT;
