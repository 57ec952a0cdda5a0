CREATE TABLE boards (
    id             TEXT PRIMARY KEY NOT NULL,
    owner_id       TEXT NOT NULL,
    title          TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    version        BIGINT NOT NULL DEFAULT 0,
    field_hlc      TEXT NOT NULL DEFAULT '{}',
    deleted        BOOLEAN NOT NULL DEFAULT 0,
    dirty          BOOLEAN NOT NULL DEFAULT 0,
    pending_create TEXT,
    pulled_version BIGINT NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE TABLE tasks (
    id             TEXT PRIMARY KEY NOT NULL,
    board_id       TEXT NOT NULL REFERENCES boards (id),
    title          TEXT NOT NULL,
    done           TEXT NOT NULL DEFAULT 'false',
    created_at     BIGINT NOT NULL,
    version        BIGINT NOT NULL DEFAULT 0,
    field_hlc      TEXT NOT NULL DEFAULT '{}',
    deleted        BOOLEAN NOT NULL DEFAULT 0,
    dirty          BOOLEAN NOT NULL DEFAULT 0,
    pending_create TEXT,
    pulled_version BIGINT NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX tasks_board ON tasks (board_id, created_at);
