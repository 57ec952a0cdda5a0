-- Downstream sync. Every entity table has `pulled_version`: the server version of the last
-- state a pull merged into the row. A pulled row at or below it is skipped. It is kept apart
-- from `version`, which an acknowledgement raises too: an acknowledged row lacks what other
-- replicas wrote before it, so the pull that brings their fields must not be skipped. (The
-- entity tables are a program's own, in its registry's migrations; the music model's once got
-- the column here.)

-- Pulled rows that arrived before what they live inside (a comment whose track comes in a
-- later page): kept here, in the page's transaction, and applied once their parent is stored.
CREATE TABLE sync_deferred (
    entity_type TEXT NOT NULL,
    entity_id   TEXT NOT NULL,
    parent_type TEXT NOT NULL,
    parent_id   TEXT NOT NULL,
    state       TEXT NOT NULL,
    PRIMARY KEY (entity_type, entity_id)
);
CREATE INDEX sync_deferred_parent ON sync_deferred (parent_id);

-- Per scope and entity type: what the pulls did, for `trackflow status`.
CREATE TABLE sync_statistics (
    scope        TEXT NOT NULL,
    entity_type  TEXT NOT NULL,
    last_sync_at BIGINT NOT NULL,
    duration_ms  BIGINT NOT NULL,
    applied      BIGINT NOT NULL,
    skipped      BIGINT NOT NULL,
    conflicts    BIGINT NOT NULL,
    errors       BIGINT NOT NULL,
    PRIMARY KEY (scope, entity_type)
);
