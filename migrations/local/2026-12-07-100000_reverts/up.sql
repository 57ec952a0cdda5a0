-- Rows to bring back to the server's state. When the server refuses a local write for good, the
-- device must end up showing what the server holds: the row is listed here, and the next pull
-- of its scope starts from the beginning (`requested` once that pull was asked for), so the
-- server's state of the row comes down and replaces the local one, whatever its clock readings.
-- A row the server does not hold (a refused create) stays hidden meanwhile.
CREATE TABLE sync_reverts (
    entity_type TEXT NOT NULL,
    entity_id   TEXT NOT NULL,
    scope       TEXT NOT NULL,
    reason      TEXT NOT NULL,
    requested   BOOLEAN NOT NULL DEFAULT 0,
    PRIMARY KEY (entity_type, entity_id)
) WITHOUT ROWID;
CREATE INDEX sync_reverts_by_scope ON sync_reverts (scope, requested);
