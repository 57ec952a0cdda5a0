ALTER TABLE pending_operations DROP COLUMN sent;
