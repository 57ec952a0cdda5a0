-- The music model's local tables: one per synced type, its columns `id`, each field, then the
-- engine's sync metadata columns (version, field_hlc, deleted, dirty, pending_create,
-- pulled_version; see docs/adding-an-entity.md). Ids are UUID text, instants Unix milliseconds.
-- Entity tables are WITHOUT ROWID: the UUID key is the table's own b-tree, so a write touches
-- one b-tree fewer (see docs/PERFORMANCE.md).
--
-- Until the music model had a crate of its own these tables came with the engine's first
-- migrations (2026-11-27-000000_initial, and pulled_version from 2026-11-28-100000_downstream);
-- this migration creates them in the shape those left, and is a no-op on a database they
-- already built.

CREATE TABLE IF NOT EXISTS user_profiles (
    id            TEXT PRIMARY KEY NOT NULL,
    name          TEXT NOT NULL,
    email         TEXT NOT NULL,
    avatar_url    TEXT,
    creative_role TEXT,
    created_at    BIGINT NOT NULL,
    version       BIGINT NOT NULL DEFAULT 0,
    field_hlc     TEXT NOT NULL DEFAULT '{}',
    deleted       BOOLEAN NOT NULL DEFAULT 0,
    dirty         BOOLEAN NOT NULL DEFAULT 0,
    pending_create TEXT,
    pulled_version BIGINT NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS projects (
    id          TEXT PRIMARY KEY NOT NULL,
    owner_id    TEXT NOT NULL,
    name        TEXT NOT NULL,
    description TEXT,
    created_at  BIGINT NOT NULL,
    version     BIGINT NOT NULL DEFAULT 0,
    field_hlc   TEXT NOT NULL DEFAULT '{}',
    deleted     BOOLEAN NOT NULL DEFAULT 0,
    dirty       BOOLEAN NOT NULL DEFAULT 0,
    pending_create TEXT,
    pulled_version BIGINT NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS project_collaborators (
    id         TEXT PRIMARY KEY NOT NULL,
    project_id TEXT NOT NULL REFERENCES projects (id),
    user_id    TEXT NOT NULL,
    role       TEXT NOT NULL CHECK (role IN ('editor', 'viewer')),
    created_at BIGINT NOT NULL,
    version    BIGINT NOT NULL DEFAULT 0,
    field_hlc  TEXT NOT NULL DEFAULT '{}',
    deleted    BOOLEAN NOT NULL DEFAULT 0,
    dirty      BOOLEAN NOT NULL DEFAULT 0,
    pending_create TEXT,
    pulled_version BIGINT NOT NULL DEFAULT 0
) WITHOUT ROWID;
-- A user holds at most one live membership per project.
CREATE UNIQUE INDEX IF NOT EXISTS project_collaborators_member
    ON project_collaborators (project_id, user_id) WHERE deleted = 0;
CREATE INDEX IF NOT EXISTS project_collaborators_user ON project_collaborators (user_id) WHERE deleted = 0;

CREATE TABLE IF NOT EXISTS audio_tracks (
    id           TEXT PRIMARY KEY NOT NULL,
    project_id   TEXT NOT NULL REFERENCES projects (id),
    name         TEXT NOT NULL,
    duration_ms  BIGINT NOT NULL CHECK (duration_ms > 0),
    audio_sha256 TEXT,
    uploaded_by  TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    version      BIGINT NOT NULL DEFAULT 0,
    field_hlc    TEXT NOT NULL DEFAULT '{}',
    deleted      BOOLEAN NOT NULL DEFAULT 0,
    dirty        BOOLEAN NOT NULL DEFAULT 0,
    pending_create TEXT,
    pulled_version BIGINT NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS audio_tracks_project ON audio_tracks (project_id, created_at);

CREATE TABLE IF NOT EXISTS audio_comments (
    id           TEXT PRIMARY KEY NOT NULL,
    project_id   TEXT NOT NULL REFERENCES projects (id),
    track_id     TEXT NOT NULL REFERENCES audio_tracks (id),
    author_id    TEXT NOT NULL,
    content      TEXT NOT NULL,
    timestamp_ms BIGINT NOT NULL CHECK (timestamp_ms >= 0),
    created_at   BIGINT NOT NULL,
    version      BIGINT NOT NULL DEFAULT 0,
    field_hlc    TEXT NOT NULL DEFAULT '{}',
    deleted      BOOLEAN NOT NULL DEFAULT 0,
    dirty        BOOLEAN NOT NULL DEFAULT 0,
    pending_create TEXT,
    pulled_version BIGINT NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS audio_comments_track ON audio_comments (track_id, timestamp_ms);

CREATE TABLE IF NOT EXISTS playlists (
    id         TEXT PRIMARY KEY NOT NULL,
    project_id TEXT NOT NULL REFERENCES projects (id),
    name       TEXT NOT NULL,
    track_ids  TEXT NOT NULL DEFAULT '[]',
    created_at BIGINT NOT NULL,
    version    BIGINT NOT NULL DEFAULT 0,
    field_hlc  TEXT NOT NULL DEFAULT '{}',
    deleted    BOOLEAN NOT NULL DEFAULT 0,
    dirty      BOOLEAN NOT NULL DEFAULT 0,
    pending_create TEXT,
    pulled_version BIGINT NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS playlists_project ON playlists (project_id, created_at);
