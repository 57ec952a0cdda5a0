DROP TABLE labels;
ALTER TABLE tasks DROP COLUMN estimate;
