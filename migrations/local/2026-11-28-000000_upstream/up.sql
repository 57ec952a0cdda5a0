-- Upstream sync. `sent`: the operation has gone out in a request at least once, so the server
-- may hold it; its content is frozen from then on (coalescing leaves it alone). Operations
-- queued before this migration were never sent: the processor did not exist.
ALTER TABLE pending_operations ADD COLUMN sent BOOLEAN NOT NULL DEFAULT 0;
