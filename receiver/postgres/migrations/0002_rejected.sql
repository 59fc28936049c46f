-- MQTT messages that can never be stored (malformed, or naming another
-- device than their topic): kept with the reason, then acknowledged, so
-- that they cannot wedge the subscription.
CREATE TABLE rejected_messages (
	id          bigserial PRIMARY KEY,
	topic       text NOT NULL,
	device_id   text NOT NULL,
	error       text NOT NULL,
	line        int NOT NULL,
	payload     bytea NOT NULL,
	received_at timestamptz NOT NULL
);
CREATE INDEX rejected_messages_device ON rejected_messages (device_id, received_at);
