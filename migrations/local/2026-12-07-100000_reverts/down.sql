DROP TABLE sync_reverts;
