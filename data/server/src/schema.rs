//! Diesel schema of the server store, shared by both backends (the migrations in
//! migrations/server-sqlite and migrations/server-postgres create the same tables, but for
//! `scope_locks`, which only PostgreSQL needs).

#![allow(missing_docs)]

diesel::table! {
    server_meta (id) {
        id -> Integer,
        epoch -> Text,
        last_version -> BigInt,
        purged_through -> BigInt,
    }
}

diesel::table! {
    /// PostgreSQL only: the lock domains of pushes (see `locks`).
    scope_locks (scope) {
        scope -> Text,
        issued -> BigInt,
    }
}

diesel::table! {
    version_marks (at_ms) {
        at_ms -> BigInt,
        version -> BigInt,
    }
}

diesel::table! {
    accounts (user_id) {
        user_id -> Text,
        email -> Text,
        password_hash -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    auth_tokens (token_hash) {
        token_hash -> Text,
        user_id -> Text,
        expires_at -> BigInt,
    }
}

diesel::table! {
    entities (entity_id) {
        entity_id -> Text,
        entity_type -> Text,
        scope -> Text,
        version -> BigInt,
        deleted -> Bool,
        fields -> Text,
        field_hlc -> Text,
        deleted_with -> Nullable<Text>,
    }
}

diesel::table! {
    memberships (project_id, user_id) {
        project_id -> Text,
        user_id -> Text,
        role -> Text,
        granted_version -> BigInt,
    }
}

diesel::table! {
    applied_mutations (mutation_id, user_id) {
        user_id -> Text,
        mutation_id -> Text,
        content_hash -> Text,
        version -> BigInt,
        outcome -> Text,
    }
}

diesel::table! {
    blob_grants (user_id, sha256) {
        sha256 -> Text,
        user_id -> Text,
        granted_at -> BigInt,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    blob_grants,
    server_meta,
    scope_locks,
    version_marks,
    accounts,
    auth_tokens,
    entities,
    memberships,
    applied_mutations
);
