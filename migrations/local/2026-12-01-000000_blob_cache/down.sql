DROP INDEX blobs_by_last_use;
ALTER TABLE blobs DROP COLUMN upload_op;
ALTER TABLE blobs DROP COLUMN uploaded;
ALTER TABLE blobs DROP COLUMN pinned;
ALTER TABLE blobs DROP COLUMN last_used_at;
