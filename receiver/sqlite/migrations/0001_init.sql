-- Outpost receiver schema v1 (SQLite). Times are integer microseconds since
-- the Unix epoch (UTC), the precision PostgreSQL keeps.

CREATE TABLE devices (
	id             TEXT PRIMARY KEY,
	token_hash     BLOB NOT NULL UNIQUE,
	created_at     INTEGER NOT NULL,
	revoked_at     INTEGER,
	last_seen      INTEGER,
	last_status    TEXT,
	last_status_at INTEGER
) STRICT;

CREATE TABLE readings (
	device_id   TEXT NOT NULL,
	stream      INTEGER NOT NULL,
	seq         INTEGER NOT NULL,
	sensor      TEXT NOT NULL,
	ts          INTEGER NOT NULL,
	value       REAL NOT NULL,
	unit        TEXT NOT NULL DEFAULT '',
	labels      TEXT,
	unsynced    INTEGER NOT NULL DEFAULT 0,
	received_at INTEGER NOT NULL,
	PRIMARY KEY (device_id, stream, seq)
) STRICT, WITHOUT ROWID;

CREATE INDEX readings_device_sensor_ts ON readings (device_id, sensor, ts);

CREATE TABLE streams (
	device_id         TEXT NOT NULL,
	stream            INTEGER NOT NULL,
	highest_seq       INTEGER NOT NULL,
	received          INTEGER NOT NULL,
	first_received_at INTEGER NOT NULL,
	last_received_at  INTEGER NOT NULL,
	PRIMARY KEY (device_id, stream)
) STRICT;

CREATE TABLE dropped_ranges (
	device_id   TEXT NOT NULL,
	stream      INTEGER NOT NULL,
	seq_from    INTEGER NOT NULL,
	seq_to      INTEGER NOT NULL,
	received_at INTEGER NOT NULL,
	PRIMARY KEY (device_id, stream, seq_from, seq_to)
) STRICT;

CREATE TABLE conflicts (
	id          INTEGER PRIMARY KEY,
	device_id   TEXT NOT NULL,
	stream      INTEGER NOT NULL,
	seq         INTEGER NOT NULL,
	sensor      TEXT NOT NULL,
	ts          INTEGER NOT NULL,
	value       REAL NOT NULL,
	unit        TEXT NOT NULL DEFAULT '',
	labels      TEXT,
	unsynced    INTEGER NOT NULL DEFAULT 0,
	received_at INTEGER NOT NULL
) STRICT;

CREATE INDEX conflicts_device ON conflicts (device_id, stream, seq);
