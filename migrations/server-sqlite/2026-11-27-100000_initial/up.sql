-- The sync server's schema on SQLite. Keep in step with ../../server-postgres.

-- One row: the database's identity (cursors from another database are refused), the last
-- version handed out, and the version through which tombstones have been purged.
CREATE TABLE server_meta (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    epoch TEXT NOT NULL,
    last_version BIGINT NOT NULL,
    purged_through BIGINT NOT NULL
);
INSERT INTO server_meta (id, epoch, last_version, purged_through)
VALUES (1, lower(hex(randomblob(16))), 0, 0);

CREATE TABLE accounts (
    user_id TEXT PRIMARY KEY NOT NULL,
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL
) WITHOUT ROWID;

-- Bearer tokens, by SHA-256 only.
CREATE TABLE auth_tokens (
    token_hash TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES accounts (user_id) ON DELETE CASCADE,
    expires_at BIGINT NOT NULL
) WITHOUT ROWID;

-- Every replicated entity, whatever its type: fields and field clocks as JSON text.
CREATE TABLE entities (
    entity_id TEXT PRIMARY KEY NOT NULL,
    entity_type TEXT NOT NULL,
    scope TEXT NOT NULL,
    version BIGINT NOT NULL,
    deleted BOOLEAN NOT NULL,
    fields TEXT NOT NULL,
    field_hlc TEXT NOT NULL
) WITHOUT ROWID;
-- Pulls read one scope's changes in version order.
CREATE UNIQUE INDEX entities_by_scope_version ON entities (scope, version);
-- Purging tombstones walks them by version.
CREATE INDEX entities_tombstones ON entities (version) WHERE deleted;

-- Who may read which project, since which version (a new member's first pull backfills).
CREATE TABLE memberships (
    project_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    role TEXT NOT NULL,
    granted_version BIGINT NOT NULL,
    PRIMARY KEY (project_id, user_id)
) WITHOUT ROWID;
CREATE INDEX memberships_by_user ON memberships (user_id);

-- The dedupe record of every applied mutation, written in the same transaction. Keyed by the
-- mutation id first: a push looks up its batch's ids with one `mutation_id IN (...)` range scan.
CREATE TABLE applied_mutations (
    user_id TEXT NOT NULL,
    mutation_id TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    version BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    PRIMARY KEY (mutation_id, user_id)
) WITHOUT ROWID;
