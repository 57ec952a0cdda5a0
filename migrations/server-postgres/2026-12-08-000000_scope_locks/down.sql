UPDATE server_meta SET last_version = (
    SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM entity_versions
);
DROP SEQUENCE entity_versions;
DROP TABLE scope_locks;
