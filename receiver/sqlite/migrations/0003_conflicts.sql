-- A conflict row names both versions: what arrived (the existing columns)
-- and what was stored under the key and kept (stored_*, NULL in rows
-- from before this migration). Per stream, how many readings conflicted
-- and how many corrected an unsynced timestamp. Per device, the seq
-- ranges its last heartbeat that said so listed as dead-lettered (kept
-- when a later status, such as the MQTT last will, does not say).
ALTER TABLE conflicts ADD COLUMN stored_sensor TEXT;
ALTER TABLE conflicts ADD COLUMN stored_ts INTEGER;
ALTER TABLE conflicts ADD COLUMN stored_value REAL;
ALTER TABLE conflicts ADD COLUMN stored_unit TEXT;
ALTER TABLE conflicts ADD COLUMN stored_unsynced INTEGER;

ALTER TABLE streams ADD COLUMN conflicts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE streams ADD COLUMN corrected INTEGER NOT NULL DEFAULT 0;

ALTER TABLE devices ADD COLUMN dead_letter_ranges TEXT;
