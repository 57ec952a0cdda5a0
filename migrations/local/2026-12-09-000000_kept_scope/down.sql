DROP INDEX sync_kept_scope;
ALTER TABLE sync_kept DROP COLUMN scope;
