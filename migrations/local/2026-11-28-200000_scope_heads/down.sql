ALTER TABLE sync_metadata DROP COLUMN head;
