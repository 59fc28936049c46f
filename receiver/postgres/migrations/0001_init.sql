-- Outpost receiver schema v1 (PostgreSQL).
--
-- readings is keyed (device_id, stream, seq): every reading is stored once,
-- whatever the transport retried. It is deliberately not partitioned by
-- time: PostgreSQL needs the partition key inside every unique key, so a
-- time-partitioned table could no longer enforce (device_id, stream, seq)
-- across partitions. Retention is done with batched deletes.

CREATE TABLE devices (
	id             text PRIMARY KEY,
	token_hash     bytea NOT NULL UNIQUE,
	created_at     timestamptz NOT NULL DEFAULT now(),
	revoked_at     timestamptz,
	last_seen      timestamptz,
	last_status    jsonb,
	last_status_at timestamptz
);

CREATE TABLE readings (
	device_id   text NOT NULL,
	stream      bigint NOT NULL,           -- the wire's 16 hex digits, as a signed 64-bit integer
	seq         bigint NOT NULL,
	sensor      text NOT NULL,
	ts          timestamptz NOT NULL,      -- the device's clock
	value       double precision NOT NULL,
	unit        text NOT NULL DEFAULT '',
	labels      jsonb,
	unsynced    boolean NOT NULL DEFAULT false,
	received_at timestamptz NOT NULL,      -- the receiver's clock
	PRIMARY KEY (device_id, stream, seq)
);

CREATE INDEX readings_device_sensor_ts ON readings (device_id, sensor, ts);

-- Per device and stream: the highest seq and how many readings are stored,
-- so that the count of missing seqs needs no scan.
CREATE TABLE streams (
	device_id        text NOT NULL,
	stream           bigint NOT NULL,
	highest_seq      bigint NOT NULL,
	received         bigint NOT NULL,
	first_received_at timestamptz NOT NULL,
	last_received_at timestamptz NOT NULL,
	PRIMARY KEY (device_id, stream)
);

-- Seq ranges the device reported dropped (cap policy, dead-letter, purge).
CREATE TABLE dropped_ranges (
	device_id   text NOT NULL,
	stream      bigint NOT NULL,
	seq_from    bigint NOT NULL,
	seq_to      bigint NOT NULL,
	received_at timestamptz NOT NULL,
	PRIMARY KEY (device_id, stream, seq_from, seq_to)
);

-- A reading whose key was already stored with other contents: the stored
-- reading stays; what arrived is kept here for an operator to see.
CREATE TABLE conflicts (
	id          bigserial PRIMARY KEY,
	device_id   text NOT NULL,
	stream      bigint NOT NULL,
	seq         bigint NOT NULL,
	sensor      text NOT NULL,
	ts          timestamptz NOT NULL,
	value       double precision NOT NULL,
	unit        text NOT NULL DEFAULT '',
	labels      jsonb,
	unsynced    boolean NOT NULL DEFAULT false,
	received_at timestamptz NOT NULL
);

CREATE INDEX conflicts_device ON conflicts (device_id, stream, seq);
