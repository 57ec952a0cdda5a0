-- The scope whose page a row was kept from, so forgetting a scope (access lost) forgets what was
-- kept of it too: otherwise an upgrade would let rows of a scope the user no longer sees into
-- the entity tables. Rows kept before this column are NULL and stay until let in.
ALTER TABLE sync_kept ADD COLUMN scope TEXT;
CREATE INDEX sync_kept_scope ON sync_kept (scope);
