DROP TABLE sync_statistics;
DROP TABLE sync_deferred;
