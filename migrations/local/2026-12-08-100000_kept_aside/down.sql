DROP TABLE sync_kept;
