-- The scope's head (from GET /v1/sync/scopes) when a pull of it last completed: while the
-- server reports the same head, the scope has nothing new and is not pulled.
ALTER TABLE sync_metadata ADD COLUMN head BIGINT;
