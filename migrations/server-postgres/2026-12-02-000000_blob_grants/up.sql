-- Who may name each audio blob in a track: the users who proved they hold its bytes, by
-- uploading them (the server checked their hash). Knowing a hash alone grants nothing.
CREATE TABLE blob_grants (
    sha256 TEXT NOT NULL,
    user_id TEXT NOT NULL,
    granted_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, sha256)
);
