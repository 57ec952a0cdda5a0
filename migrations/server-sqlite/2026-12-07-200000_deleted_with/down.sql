ALTER TABLE entities DROP COLUMN deleted_with;
