DROP TABLE tasks;
DROP TABLE boards;
