ALTER TABLE sync_conflicts DROP COLUMN kind;
