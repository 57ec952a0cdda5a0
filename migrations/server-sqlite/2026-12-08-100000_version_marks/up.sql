-- What each purge found: the newest version at its time. A purge that keeps what changed in
-- the last N days forgets up to the newest mark at least N days old. Marks below the purge
-- horizon are dropped, so the table holds about one row per purge run within the retention.
CREATE TABLE version_marks (
    at_ms BIGINT PRIMARY KEY NOT NULL,
    version BIGINT NOT NULL
);
