-- The outbox's CHECK constraints name each allowed value with `=` instead of an `IN` list: SQLite
-- checks an `IN` list of more than two values by building a temporary table on every INSERT and
-- UPDATE, which cost about a fifth of each outbox insert, and every local write makes one.
-- The constraints allow the same values as before. SQLite cannot change a CHECK constraint in
-- place, so the table is rebuilt with every row and column as it was.
CREATE TABLE pending_operations_new (
    seq             INTEGER PRIMARY KEY,
    id              TEXT NOT NULL,
    entity_type     TEXT NOT NULL,
    entity_id       TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind = 'create' OR kind = 'update' OR kind = 'delete' OR kind = 'upload'),
    changed_fields  TEXT NOT NULL,  -- JSON object: field -> new value
    field_hlc       TEXT NOT NULL DEFAULT '{}',  -- field -> reading, only where it differs from hlc
    hlc             TEXT NOT NULL,
    base_version    BIGINT NOT NULL,
    priority        INTEGER NOT NULL CHECK (priority BETWEEN 0 AND 3),
    depends_on      TEXT NOT NULL DEFAULT '[]',
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT,
    status          TEXT NOT NULL DEFAULT 'pending' CHECK (status = 'pending' OR status = 'in_flight' OR status = 'failed'),
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    sent            BOOLEAN NOT NULL DEFAULT 0
);
INSERT INTO pending_operations_new SELECT * FROM pending_operations;
DROP TABLE pending_operations;
ALTER TABLE pending_operations_new RENAME TO pending_operations;
