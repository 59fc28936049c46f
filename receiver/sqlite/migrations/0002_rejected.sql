CREATE TABLE rejected_messages (
	id          INTEGER PRIMARY KEY,
	topic       TEXT NOT NULL,
	device_id   TEXT NOT NULL,
	error       TEXT NOT NULL,
	line        INTEGER NOT NULL,
	payload     BLOB NOT NULL,
	received_at INTEGER NOT NULL
) STRICT;
CREATE INDEX rejected_messages_device ON rejected_messages (device_id, received_at);
