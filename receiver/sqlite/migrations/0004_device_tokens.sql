-- Token rotation and the device cache of MQTT ingest.
--
-- previous_tokens holds a device's tokens replaced by `device rotate`,
-- each valid until expires_at (the grace), unless the device is revoked.
-- device_generation is one counter that every change of a device's
-- registration (add, revoke, rotate, delete) increases in the same
-- transaction, by trigger, so a cache of which devices may send knows
-- when to forget what it knows, whoever made the change.
CREATE TABLE previous_tokens (
	token_hash BLOB PRIMARY KEY,
	device_id  TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
	expires_at INTEGER NOT NULL
) STRICT;
CREATE INDEX previous_tokens_device ON previous_tokens (device_id);

CREATE TABLE device_generation (
	id         INTEGER PRIMARY KEY CHECK (id = 1),
	generation INTEGER NOT NULL
) STRICT;
INSERT INTO device_generation VALUES (1, 1);

CREATE TRIGGER devices_generation_insert AFTER INSERT ON devices
BEGIN UPDATE device_generation SET generation = generation + 1; END;
CREATE TRIGGER devices_generation_delete AFTER DELETE ON devices
BEGIN UPDATE device_generation SET generation = generation + 1; END;
CREATE TRIGGER devices_generation_update AFTER UPDATE OF token_hash, revoked_at ON devices
BEGIN UPDATE device_generation SET generation = generation + 1; END;
