//! Diesel table definitions of the client store's own tables; they mirror migrations/local. The
//! entity tables are reached through each type's declaration (`tables.rs`), not through a schema
//! here.
#![allow(missing_docs)]

diesel::table! {
    local_settings (key) {
        key -> Text,
        value -> Text,
    }
}

diesel::table! {
    app_migrations (version) {
        version -> Text,
        applied_at -> BigInt,
    }
}

diesel::table! {
    session (id) {
        id -> Integer,
        user_id -> Text,
        server_url -> Nullable<Text>,
        access_token -> Nullable<Text>,
    }
}

diesel::table! {
    pending_operations (seq) {
        seq -> Integer,
        id -> Text,
        entity_type -> Text,
        entity_id -> Text,
        kind -> Text,
        changed_fields -> Text,
        field_hlc -> Text,
        hlc -> Text,
        base_version -> BigInt,
        priority -> Integer,
        depends_on -> Text,
        attempts -> Integer,
        sent -> Bool,
        next_attempt_at -> Nullable<BigInt>,
        status -> Text,
        last_error -> Nullable<Text>,
        created_at -> BigInt,
    }
}

diesel::table! {
    sync_reverts (entity_type, entity_id) {
        entity_type -> Text,
        entity_id -> Text,
        scope -> Text,
        reason -> Text,
        requested -> Bool,
    }
}

diesel::table! {
    sync_metadata (scope) {
        scope -> Text,
        cursor -> Nullable<Text>,
        last_sync_at -> Nullable<BigInt>,
        min_interval_ms -> BigInt,
        head -> Nullable<BigInt>,
    }
}

diesel::table! {
    sync_conflicts (id) {
        id -> Text,
        entity_type -> Text,
        entity_id -> Text,
        local_fields -> Text,
        remote_fields -> Text,
        fields -> Text,
        detected_at -> BigInt,
        resolution -> Nullable<Text>,
        resolved_at -> Nullable<BigInt>,
        kind -> Text,
    }
}

diesel::table! {
    sync_deferred (entity_type, entity_id) {
        entity_type -> Text,
        entity_id -> Text,
        parent_type -> Text,
        parent_id -> Text,
        state -> Text,
    }
}

diesel::table! {
    sync_kept (entity_type, entity_id) {
        entity_type -> Text,
        entity_id -> Text,
        whole -> Bool,
        state -> Text,
        against -> Text,
        scope -> Nullable<Text>,
    }
}

diesel::table! {
    sync_statistics (scope, entity_type) {
        scope -> Text,
        entity_type -> Text,
        last_sync_at -> BigInt,
        duration_ms -> BigInt,
        applied -> BigInt,
        skipped -> BigInt,
        conflicts -> BigInt,
        errors -> BigInt,
    }
}

diesel::table! {
    blobs (sha256) {
        sha256 -> Text,
        size_bytes -> BigInt,
        path -> Text,
        created_at -> BigInt,
        last_used_at -> BigInt,
        pinned -> Bool,
        uploaded -> Bool,
        upload_op -> Nullable<Text>,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    local_settings,
    app_migrations,
    session,
    pending_operations,
    sync_metadata,
    sync_reverts,
    sync_conflicts,
    sync_deferred,
    sync_kept,
    sync_statistics,
    blobs,
);
