-- Token rotation and the device cache of MQTT ingest.
--
-- previous_tokens holds a device's tokens replaced by `device rotate`,
-- each valid until expires_at (the grace), unless the device is revoked.
-- device_generation is one counter that every change of a device's
-- registration (add, revoke, rotate, delete) increases in the same
-- transaction, by trigger, so a replica's cache of which devices may
-- send knows when to forget what it knows, whoever made the change.
CREATE TABLE previous_tokens (
	token_hash bytea PRIMARY KEY,
	device_id  text NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
	expires_at timestamptz NOT NULL
);
CREATE INDEX previous_tokens_device ON previous_tokens (device_id);

CREATE TABLE device_generation (
	id         int PRIMARY KEY CHECK (id = 1),
	generation bigint NOT NULL
);
INSERT INTO device_generation VALUES (1, 1);

CREATE FUNCTION outpost_bump_device_generation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	UPDATE device_generation SET generation = generation + 1;
	RETURN NULL;
END
$$;

CREATE TRIGGER devices_generation AFTER INSERT OR DELETE OR UPDATE OF token_hash, revoked_at ON devices
	FOR EACH STATEMENT EXECUTE FUNCTION outpost_bump_device_generation();
