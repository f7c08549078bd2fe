//! Table definitions, one set for both backends (see `service_kit::db::sql_types`).
//! Keep in step with `migrations-main/{postgres,sqlite}`.

diesel::table! {
    use diesel::sql_types::*;
    use service_kit::db::sql_types::{SqlUuid, SqlTimestamp};

    userbase (id) {
        id -> SqlUuid,
        email -> Text,
        email_verified -> Bool,
        mfa_enabled -> Bool,
        account_locked -> Bool,
        auth_version -> BigInt,
        auth_created_at -> SqlTimestamp,
        auth_updated_at -> SqlTimestamp,
        full_name -> Nullable<Text>,
        picture -> Nullable<Text>,
        role -> Text,
        plan_tier -> Text,
        permissions -> Text,
        feature_flags -> Text,
        tool_permissions -> Text,
        created_at -> SqlTimestamp,
        updated_at -> SqlTimestamp,
        synced_at -> SqlTimestamp,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use service_kit::db::sql_types::{SqlUuid, SqlTimestamp};

    user_tombstones (id) {
        id -> SqlUuid,
        version -> BigInt,
        deleted_at -> SqlTimestamp,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use service_kit::db::sql_types::SqlTimestamp;

    processed_webhooks (id) {
        id -> Text,
        event_type -> Text,
        received_at -> SqlTimestamp,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use service_kit::db::sql_types::{SqlUuid, SqlTimestamp};

    sync_runs (id) {
        id -> SqlUuid,
        trigger -> Text,
        status -> Text,
        started_at -> SqlTimestamp,
        finished_at -> Nullable<SqlTimestamp>,
        created -> BigInt,
        updated -> BigInt,
        deleted -> BigInt,
        unchanged -> BigInt,
        duration_ms -> Nullable<BigInt>,
        error -> Nullable<Text>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use service_kit::db::sql_types::{SqlUuid, SqlTimestamp};

    revocations (id) {
        id -> SqlUuid,
        user_id -> SqlUuid,
        session_id -> Nullable<SqlUuid>,
        created_at -> SqlTimestamp,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use service_kit::db::sql_types::SqlTimestamp;

    event_stream (id) {
        id -> Integer,
        cursor -> Nullable<Text>,
        polled_at -> Nullable<SqlTimestamp>,
        last_event_at -> Nullable<SqlTimestamp>,
        behind -> Bool,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use service_kit::db::sql_types::SqlTimestamp;

    leases (name) {
        name -> Text,
        holder -> Text,
        expires_at -> SqlTimestamp,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use service_kit::db::sql_types::{SqlUuid, SqlTimestamp};

    tasks (id) {
        id -> SqlUuid,
        user_id -> SqlUuid,
        title -> Text,
        description -> Nullable<Text>,
        completed -> Bool,
        created_at -> SqlTimestamp,
        updated_at -> SqlTimestamp,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use service_kit::db::sql_types::{SqlUuid, SqlTimestamp};

    user_settings (user_id) {
        user_id -> SqlUuid,
        preferences -> Text,
        created_at -> SqlTimestamp,
        updated_at -> SqlTimestamp,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use service_kit::db::sql_types::{SqlUuid, SqlTimestamp};

    secrets (id) {
        id -> SqlUuid,
        user_id -> SqlUuid,
        name -> Text,
        ciphertext -> Binary,
        nonce -> Binary,
        hint -> Nullable<Text>,
        created_at -> SqlTimestamp,
        updated_at -> SqlTimestamp,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use service_kit::db::sql_types::{SqlUuid, SqlTimestamp};

    agent_sessions (id) {
        id -> SqlUuid,
        user_id -> SqlUuid,
        title -> Text,
        status -> Text,
        metadata -> Text,
        created_at -> SqlTimestamp,
        updated_at -> SqlTimestamp,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use service_kit::db::sql_types::{SqlUuid, SqlTimestamp};

    tool_usage_logs (id) {
        id -> SqlUuid,
        user_id -> SqlUuid,
        agent_session_id -> Nullable<SqlUuid>,
        tool_name -> Text,
        success -> Bool,
        duration_ms -> Nullable<BigInt>,
        metadata -> Text,
        created_at -> SqlTimestamp,
        updated_at -> SqlTimestamp,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use service_kit::db::sql_types::{SqlUuid, SqlTimestamp};

    corpus_data (id) {
        id -> SqlUuid,
        user_id -> SqlUuid,
        title -> Text,
        content -> Text,
        content_type -> Text,
        created_at -> SqlTimestamp,
        updated_at -> SqlTimestamp,
    }
}
