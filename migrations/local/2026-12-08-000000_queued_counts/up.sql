-- From now on an entity row's `dirty` counts its queued writes (it was a flag), so settling
-- operations lowers it instead of searching the outbox for what else waits. The entity tables
-- are the program's own (its registry's migrations), so the store recounts them in code the
-- next time it opens the file; this row asks it to. A build from before this migration refuses
-- to open the file afterwards (it is newer); one that had it open already should be closed
-- first, or it writes the column as a flag again.
INSERT OR REPLACE INTO local_settings (key, value) VALUES ('recount_queued', '1');
