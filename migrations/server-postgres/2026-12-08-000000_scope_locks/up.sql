-- Pushes stop taking the one server_meta row. Each locks the rows here of the lock domains it
-- writes, in name order: a project (`project:<uuid>`, everything in it), or `people` (every
-- user scope and every membership). Pushes to different projects commit concurrently; inside
-- one domain they still commit one after another, in version order. `issued` counts the
-- versions the domain's pushes assigned (the row '' holds those issued before this change).
-- SQLite has one writer at a time and keeps counting in server_meta: no such table there.
CREATE TABLE scope_locks (
    scope TEXT PRIMARY KEY NOT NULL,
    issued BIGINT NOT NULL
);
INSERT INTO scope_locks (scope, issued) SELECT '', last_version FROM server_meta;

-- Versions still come from one counter, so they compare across domains (a grant's version
-- places a project's backfill in a member's stream), but a sequence hands them out without
-- a lock held to commit. It continues from the counter it replaces.
CREATE SEQUENCE entity_versions;
SELECT setval('entity_versions', GREATEST(last_version, 1), last_version > 0) FROM server_meta;
