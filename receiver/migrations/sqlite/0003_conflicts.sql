-- A conflict row names both versions: what arrived (the existing columns)
-- and what was stored under the key and kept (stored_*, NULL in rows
-- from before this migration). Per stream, how many readings conflicted
-- and how many corrected an unsynced timestamp.
ALTER TABLE conflicts ADD COLUMN stored_sensor TEXT;
ALTER TABLE conflicts ADD COLUMN stored_ts INTEGER;
ALTER TABLE conflicts ADD COLUMN stored_value REAL;
ALTER TABLE conflicts ADD COLUMN stored_unit TEXT;
ALTER TABLE conflicts ADD COLUMN stored_unsynced INTEGER;

ALTER TABLE streams ADD COLUMN conflicts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE streams ADD COLUMN corrected INTEGER NOT NULL DEFAULT 0;
