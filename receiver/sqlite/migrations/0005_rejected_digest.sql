-- A rejected message keeps at most 1 KiB of its payload (store.MaxRejectedPayload):
-- its whole size and SHA-256 tell it apart (rows from before this migration
-- kept the whole payload and have neither).
ALTER TABLE rejected_messages ADD COLUMN payload_size INTEGER;
ALTER TABLE rejected_messages ADD COLUMN payload_sha256 BLOB;
