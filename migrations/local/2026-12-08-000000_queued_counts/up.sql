-- From now on an entity row's `dirty` counts its queued writes (it was a flag), so settling
-- operations lowers it instead of searching the outbox for what else waits. The entity tables
-- are the program's own (its registry's migrations), so the store recounts them in code the
-- next time it opens the file; this row asks it to. A build from before this migration refuses
-- the file (it is newer), so no build keeps the column as a flag once it counts.
INSERT OR REPLACE INTO local_settings (key, value) VALUES ('recount_queued', '1');
