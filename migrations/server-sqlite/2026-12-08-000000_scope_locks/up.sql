-- The lock domains of pushes (see ../../server-postgres). SQLite has one writer at a time, so
-- here the table only counts the versions each domain issued, and versions still come from
-- server_meta.last_version, taken under the database's write lock.
CREATE TABLE scope_locks (
    scope TEXT PRIMARY KEY NOT NULL,
    issued BIGINT NOT NULL
);
INSERT INTO scope_locks (scope, issued) SELECT '', last_version FROM server_meta;
