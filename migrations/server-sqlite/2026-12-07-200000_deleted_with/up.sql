-- A tombstone made by the delete of the entity it lived inside carries why (JSON
-- {"parent": {"entity_type": ..., "id": ...}, "by": user id}): a child is deleted with its
-- parent, and its author is told. NULL for every other row.
ALTER TABLE entities ADD COLUMN deleted_with TEXT;
