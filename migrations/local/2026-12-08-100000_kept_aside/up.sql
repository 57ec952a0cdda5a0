-- What pulled rows carry that this build's types do not declare (a newer server's schema): the
-- rows of an unknown type whole (`whole` = 1), and the undeclared fields of known ones, each
-- with its clock reading, as an EntityState naming its type. Kept untouched until an upgrade
-- declares them; then they are let into the entity tables (docs/sync-protocol.md, "Schema
-- evolution"). `against` names the declarations the row was last held against, so a store
-- opening with other declarations looks at it again, and only then.
CREATE TABLE sync_kept (
    entity_type TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    whole BOOLEAN NOT NULL,
    state TEXT NOT NULL,
    against TEXT NOT NULL,
    PRIMARY KEY (entity_type, entity_id)
) WITHOUT ROWID;
CREATE INDEX sync_kept_against ON sync_kept (against);
