-- TrackFlow Sync client store: the transactional outbox, per-scope sync metadata, conflicts and
-- the blob cache. The entity tables (the local cache of every entity, with sync metadata) are
-- the program's own, created by its registry's migrations (the music model's in
-- app/music/migrations); they once came with this migration.
-- Ids are UUID text; instants are Unix milliseconds; field_hlc is a JSON object of
-- field name -> hybrid logical clock reading, with the row's most common reading stored once
-- under "*" (see data/src/local/field_clock.rs). Entity tables are WITHOUT ROWID: the UUID key is
-- the table's own b-tree, so a write touches one b-tree fewer (see docs/PERFORMANCE.md).
-- Sync metadata columns on every entity table: version (server-assigned, 0 until acknowledged),
-- field_hlc, deleted (tombstone), dirty (unacknowledged local changes) and pending_create (the
-- outbox id of this row's create until the server acknowledges it; children depend on it).

-- Replica identity (replica_id) and a floor for the hybrid logical clock (hlc_high_water):
-- writes start from the newest outbox reading and this floor, which is raised when the store
-- opens and before outbox operations are removed.
CREATE TABLE local_settings (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE session (
    id           INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    user_id      TEXT NOT NULL,
    server_url   TEXT,
    access_token TEXT
);

-- The transactional outbox. `seq` gives first-in first-out order; `id` (a client-generated
-- UUID v7) is the idempotency key the server deduplicates on. priority: 0 critical, 1 high,
-- 2 medium, 3 low.
-- Every b-tree touched costs WAL frames on each local write, so this table is deliberately one
-- b-tree: `seq` is the rowid (no AUTOINCREMENT, which writes sqlite_sequence each time; SQLite
-- assigns max(seq) + 1, so a new operation sorts after every queued one, which is all FIFO
-- needs), and there are no secondary indexes. The queue is read whole in `seq` order; a child's
-- dependency comes from its parent row's pending_create, not from a lookup here.
CREATE TABLE pending_operations (
    seq             INTEGER PRIMARY KEY,
    id              TEXT NOT NULL,
    entity_type     TEXT NOT NULL,
    entity_id       TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('create', 'update', 'delete')),
    changed_fields  TEXT NOT NULL,  -- JSON object: field -> new value
    field_hlc       TEXT NOT NULL DEFAULT '{}',  -- field -> reading, only where it differs from hlc
    hlc             TEXT NOT NULL,
    base_version    BIGINT NOT NULL,
    priority        INTEGER NOT NULL CHECK (priority BETWEEN 0 AND 3),
    depends_on      TEXT NOT NULL DEFAULT '[]',
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT,
    status          TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'in_flight', 'failed')),
    last_error      TEXT,
    created_at      BIGINT NOT NULL
);

-- Per-scope downstream state: `user` for the profile and project list, `project:<id>` per project.
CREATE TABLE sync_metadata (
    scope           TEXT PRIMARY KEY NOT NULL,
    cursor          TEXT,
    last_sync_at    BIGINT,
    min_interval_ms BIGINT NOT NULL DEFAULT 900000
);

CREATE TABLE sync_conflicts (
    id            TEXT PRIMARY KEY NOT NULL,
    entity_type   TEXT NOT NULL,
    entity_id     TEXT NOT NULL,
    local_fields  TEXT NOT NULL,
    remote_fields TEXT NOT NULL,
    fields        TEXT NOT NULL,
    detected_at   BIGINT NOT NULL,
    resolution    TEXT,
    resolved_at   BIGINT
);
CREATE INDEX sync_conflicts_open ON sync_conflicts (detected_at) WHERE resolved_at IS NULL;

-- Content-addressed local audio cache.
CREATE TABLE blobs (
    sha256     TEXT PRIMARY KEY NOT NULL,
    size_bytes BIGINT NOT NULL,
    path       TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
