DROP TABLE blob_grants;
