//! Diesel table definitions of the client store; they mirror migrations/local.
#![allow(missing_docs)]

diesel::table! {
    local_settings (key) {
        key -> Text,
        value -> Text,
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
    user_profiles (id) {
        id -> Text,
        name -> Text,
        email -> Text,
        avatar_url -> Nullable<Text>,
        creative_role -> Nullable<Text>,
        created_at -> BigInt,
        version -> BigInt,
        field_hlc -> Text,
        deleted -> Bool,
        dirty -> Bool,
        pending_create -> Nullable<Text>,
        pulled_version -> BigInt,
    }
}

diesel::table! {
    projects (id) {
        id -> Text,
        owner_id -> Text,
        name -> Text,
        description -> Nullable<Text>,
        created_at -> BigInt,
        version -> BigInt,
        field_hlc -> Text,
        deleted -> Bool,
        dirty -> Bool,
        pending_create -> Nullable<Text>,
        pulled_version -> BigInt,
    }
}

diesel::table! {
    project_collaborators (id) {
        id -> Text,
        project_id -> Text,
        user_id -> Text,
        role -> Text,
        created_at -> BigInt,
        version -> BigInt,
        field_hlc -> Text,
        deleted -> Bool,
        dirty -> Bool,
        pending_create -> Nullable<Text>,
        pulled_version -> BigInt,
    }
}

diesel::table! {
    audio_tracks (id) {
        id -> Text,
        project_id -> Text,
        name -> Text,
        duration_ms -> BigInt,
        audio_sha256 -> Nullable<Text>,
        uploaded_by -> Text,
        created_at -> BigInt,
        version -> BigInt,
        field_hlc -> Text,
        deleted -> Bool,
        dirty -> Bool,
        pending_create -> Nullable<Text>,
        pulled_version -> BigInt,
    }
}

diesel::table! {
    audio_comments (id) {
        id -> Text,
        project_id -> Text,
        track_id -> Text,
        author_id -> Text,
        content -> Text,
        timestamp_ms -> BigInt,
        created_at -> BigInt,
        version -> BigInt,
        field_hlc -> Text,
        deleted -> Bool,
        dirty -> Bool,
        pending_create -> Nullable<Text>,
        pulled_version -> BigInt,
    }
}

diesel::table! {
    playlists (id) {
        id -> Text,
        project_id -> Text,
        name -> Text,
        track_ids -> Text,
        created_at -> BigInt,
        version -> BigInt,
        field_hlc -> Text,
        deleted -> Bool,
        dirty -> Bool,
        pending_create -> Nullable<Text>,
        pulled_version -> BigInt,
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

diesel::joinable!(audio_tracks -> projects (project_id));
diesel::joinable!(audio_comments -> audio_tracks (track_id));
diesel::joinable!(playlists -> projects (project_id));
diesel::joinable!(project_collaborators -> projects (project_id));

diesel::allow_tables_to_appear_in_same_query!(
    local_settings,
    session,
    user_profiles,
    projects,
    project_collaborators,
    audio_tracks,
    audio_comments,
    playlists,
    pending_operations,
    sync_metadata,
    sync_conflicts,
    sync_deferred,
    sync_statistics,
    blobs,
);
