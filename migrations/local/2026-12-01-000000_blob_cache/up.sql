-- The audio cache gains what eviction and uploads need: when each blob was last used, whether
-- the user pinned it, and whether the server holds it yet (a blob only this client holds is
-- never evicted). `upload_op` names the queued upload that tracks using the blob depend on.
ALTER TABLE blobs ADD COLUMN last_used_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE blobs ADD COLUMN pinned BOOLEAN NOT NULL DEFAULT 0;
ALTER TABLE blobs ADD COLUMN uploaded BOOLEAN NOT NULL DEFAULT 1;
ALTER TABLE blobs ADD COLUMN upload_op TEXT;
CREATE INDEX blobs_by_last_use ON blobs (last_used_at);

-- The outbox learns a fourth kind of operation, `upload`: a track's audio file going to the
-- server before the track. SQLite cannot change a CHECK constraint in place, so the table is
-- rebuilt with every row and column as it was.
CREATE TABLE pending_operations_new (
    seq             INTEGER PRIMARY KEY,
    id              TEXT NOT NULL,
    entity_type     TEXT NOT NULL,
    entity_id       TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('create', 'update', 'delete', 'upload')),
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
    created_at      BIGINT NOT NULL,
    sent            BOOLEAN NOT NULL DEFAULT 0
);
INSERT INTO pending_operations_new
    SELECT seq, id, entity_type, entity_id, kind, changed_fields, field_hlc, hlc, base_version, priority,
           depends_on, attempts, next_attempt_at, status, last_error, created_at, sent
    FROM pending_operations;
DROP TABLE pending_operations;
ALTER TABLE pending_operations_new RENAME TO pending_operations;
