DROP TABLE blobs;
DROP TABLE sync_conflicts;
DROP TABLE sync_metadata;
DROP TABLE pending_operations;
DROP TABLE session;
DROP TABLE local_settings;
