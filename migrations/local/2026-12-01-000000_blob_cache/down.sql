-- Uploads go with the kind that allows them.
DELETE FROM pending_operations WHERE kind = 'upload';
CREATE TABLE pending_operations_old (
    seq             INTEGER PRIMARY KEY,
    id              TEXT NOT NULL,
    entity_type     TEXT NOT NULL,
    entity_id       TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('create', 'update', 'delete')),
    changed_fields  TEXT NOT NULL,
    field_hlc       TEXT NOT NULL DEFAULT '{}',
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
INSERT INTO pending_operations_old SELECT * FROM pending_operations;
DROP TABLE pending_operations;
ALTER TABLE pending_operations_old RENAME TO pending_operations;

DROP INDEX blobs_by_last_use;
ALTER TABLE blobs DROP COLUMN upload_op;
ALTER TABLE blobs DROP COLUMN uploaded;
ALTER TABLE blobs DROP COLUMN pinned;
ALTER TABLE blobs DROP COLUMN last_used_at;
