DROP TABLE scope_locks;
