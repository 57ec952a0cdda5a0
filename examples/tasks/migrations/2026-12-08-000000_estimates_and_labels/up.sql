-- Version 2 of the example's schema: a task's estimate, and labels on a board.
ALTER TABLE tasks ADD COLUMN estimate BIGINT;

CREATE TABLE labels (
    id             TEXT PRIMARY KEY NOT NULL,
    board_id       TEXT NOT NULL REFERENCES boards (id),
    name           TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    version        BIGINT NOT NULL DEFAULT 0,
    field_hlc      TEXT NOT NULL DEFAULT '{}',
    deleted        BOOLEAN NOT NULL DEFAULT 0,
    dirty          BOOLEAN NOT NULL DEFAULT 0,
    pending_create TEXT,
    pulled_version BIGINT NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX labels_board ON labels (board_id, created_at);
