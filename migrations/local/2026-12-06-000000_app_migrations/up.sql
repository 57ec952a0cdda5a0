-- The migrations of the program's own types (their tables), applied by the store after its own.
CREATE TABLE app_migrations (
    version    TEXT PRIMARY KEY NOT NULL,
    applied_at BIGINT NOT NULL
) WITHOUT ROWID;
