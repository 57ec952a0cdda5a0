-- The audio cache gains what eviction and uploads need: when each blob was last used, whether
-- the user pinned it, and whether the server holds it yet (a blob only this client holds is
-- never evicted). `upload_op` names the queued upload that tracks using the blob depend on.
ALTER TABLE blobs ADD COLUMN last_used_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE blobs ADD COLUMN pinned BOOLEAN NOT NULL DEFAULT 0;
ALTER TABLE blobs ADD COLUMN uploaded BOOLEAN NOT NULL DEFAULT 1;
ALTER TABLE blobs ADD COLUMN upload_op TEXT;
CREATE INDEX blobs_by_last_use ON blobs (last_used_at);
