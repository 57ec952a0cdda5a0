-- What pulled rows carry that this build's types do not declare (a newer server's schema): the
-- rows of an unknown type whole, and the undeclared fields of known ones, each with its clock
-- reading, as an EntityState naming its type. Kept untouched until an upgrade declares them;
-- then they are let into the entity tables (docs/sync-protocol.md, "Schema evolution").
CREATE TABLE sync_kept (
    entity_type TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    state TEXT NOT NULL,
    PRIMARY KEY (entity_type, entity_id)
) WITHOUT ROWID;
