-- A conflict row names both versions: what arrived (the existing columns)
-- and what was stored under the key and kept (stored_*, NULL in rows
-- from before this migration). Per stream, how many readings conflicted
-- and how many corrected an unsynced timestamp. Per device, the seq
-- ranges its last heartbeat that said so listed as dead-lettered (kept
-- when a later status, such as the MQTT last will, does not say).
ALTER TABLE conflicts
	ADD COLUMN stored_sensor   text,
	ADD COLUMN stored_ts       timestamptz,
	ADD COLUMN stored_value    double precision,
	ADD COLUMN stored_unit     text,
	ADD COLUMN stored_unsynced boolean;

ALTER TABLE streams
	ADD COLUMN conflicts bigint NOT NULL DEFAULT 0,
	ADD COLUMN corrected bigint NOT NULL DEFAULT 0;

ALTER TABLE devices ADD COLUMN dead_letter_ranges jsonb;
