-- Version 3 of the example's schema: a task's title is called its name. The engine moves what
-- it keeps by field name (queued operations, readings) itself; see the type's `RENAMED`.
ALTER TABLE tasks RENAME COLUMN title TO name;
