-- What a conflict is about: 'fields' (both sides wrote them) or 'parent_deleted' (the entity
-- was deleted with the entity it lived inside; local_fields keeps what this user wrote).
ALTER TABLE sync_conflicts ADD COLUMN kind TEXT NOT NULL DEFAULT 'fields'
    CHECK (kind = 'fields' OR kind = 'parent_deleted');
