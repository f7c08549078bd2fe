//! Table definitions, one set for both backends (see `sql_types`).
//! Keep in step with `migrations-auth/{postgres,sqlite}`.

diesel::table! {
    use diesel::sql_types::*;
    use service_kit::db::sql_types::{SqlUuid, SqlTimestamp};

    users (id) {
        id -> SqlUuid,
        email -> Text,
        password_hash -> Text,
        full_name -> Nullable<Text>,
        email_verified -> Bool,
        mfa_enabled -> Bool,
        account_locked -> Bool,
        last_login_at -> Nullable<SqlTimestamp>,
        password_changed_at -> SqlTimestamp,
        version -> BigInt,
        created_at -> SqlTimestamp,
        updated_at -> SqlTimestamp,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use service_kit::db::sql_types::{SqlUuid, SqlTimestamp};

    sessions (id) {
        id -> SqlUuid,
        user_id -> SqlUuid,
        created_at -> SqlTimestamp,
        last_used_at -> SqlTimestamp,
        expires_at -> SqlTimestamp,
        ip -> Nullable<Text>,
        user_agent -> Nullable<Text>,
        revoked_at -> Nullable<SqlTimestamp>,
        revoked_reason -> Nullable<Text>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use service_kit::db::sql_types::{SqlUuid, SqlTimestamp};

    refresh_tokens (id) {
        id -> SqlUuid,
        session_id -> SqlUuid,
        token_hash -> Text,
        parent_id -> Nullable<SqlUuid>,
        access_jti -> SqlUuid,
        issued_at -> SqlTimestamp,
        expires_at -> SqlTimestamp,
        used_at -> Nullable<SqlTimestamp>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use service_kit::db::sql_types::{SqlUuid, SqlTimestamp};

    login_attempts (id) {
        id -> SqlUuid,
        email -> Text,
        ip -> Text,
        success -> Bool,
        created_at -> SqlTimestamp,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use service_kit::db::sql_types::{SqlUuid, SqlTimestamp};

    authentication_events (id) {
        id -> SqlUuid,
        kind -> Text,
        user_id -> Nullable<SqlUuid>,
        service_token_id -> Nullable<SqlUuid>,
        ip -> Nullable<Text>,
        user_agent -> Nullable<Text>,
        endpoint -> Nullable<Text>,
        request_id -> Nullable<Text>,
        cf_ray -> Nullable<Text>,
        success -> Bool,
        detail -> Nullable<Text>,
        created_at -> SqlTimestamp,
    }
}

diesel::joinable!(sessions -> users (user_id));
diesel::joinable!(refresh_tokens -> sessions (session_id));
diesel::allow_tables_to_appear_in_same_query!(users, sessions, refresh_tokens);

diesel::table! {
    use diesel::sql_types::*;
    use service_kit::db::sql_types::{SqlUuid, SqlTimestamp};

    webhook_events (id) {
        id -> SqlUuid,
        event_type -> Text,
        payload -> Text,
        created_at -> SqlTimestamp,
        seq -> Nullable<BigInt>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use service_kit::db::sql_types::SqlTimestamp;

    event_feed (id) {
        id -> Integer,
        pruned_through -> BigInt,
        nats_cursor -> Nullable<BigInt>,
        nats_holder -> Nullable<Text>,
        nats_lease_until -> Nullable<SqlTimestamp>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use service_kit::db::sql_types::{SqlJson, SqlUuid, SqlTimestamp};

    service_tokens (id) {
        id -> SqlUuid,
        name -> Text,
        scopes -> Text,
        token_hash -> Text,
        created_at -> SqlTimestamp,
        expires_at -> Nullable<SqlTimestamp>,
        last_used_at -> Nullable<SqlTimestamp>,
        use_count -> BigInt,
        revoked_at -> Nullable<SqlTimestamp>,
        created_by -> Text,
        metadata -> Nullable<SqlJson>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use service_kit::db::sql_types::{SqlUuid, SqlTimestamp};

    password_resets (id) {
        id -> SqlUuid,
        user_id -> SqlUuid,
        token_hash -> Text,
        created_at -> SqlTimestamp,
        expires_at -> SqlTimestamp,
        used_at -> Nullable<SqlTimestamp>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use service_kit::db::sql_types::{SqlUuid, SqlTimestamp};

    email_verifications (id) {
        id -> SqlUuid,
        user_id -> SqlUuid,
        token_hash -> Text,
        purpose -> Text,
        email -> Text,
        created_at -> SqlTimestamp,
        expires_at -> SqlTimestamp,
        used_at -> Nullable<SqlTimestamp>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use service_kit::db::sql_types::{SqlUuid, SqlTimestamp};

    login_lockouts (id) {
        id -> SqlUuid,
        email -> Text,
        ip -> Nullable<Text>,
        created_at -> SqlTimestamp,
        locked_until -> SqlTimestamp,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use service_kit::db::sql_types::{SqlUuid, SqlTimestamp};

    mfa_totp (user_id) {
        user_id -> SqlUuid,
        secret_sealed -> Text,
        enabled_at -> Nullable<SqlTimestamp>,
        last_step -> Nullable<BigInt>,
        created_at -> SqlTimestamp,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use service_kit::db::sql_types::{SqlUuid, SqlTimestamp};

    mfa_recovery_codes (id) {
        id -> SqlUuid,
        user_id -> SqlUuid,
        code_hash -> Text,
        created_at -> SqlTimestamp,
        used_at -> Nullable<SqlTimestamp>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use service_kit::db::sql_types::{SqlUuid, SqlTimestamp};

    jobs (kind, id) {
        kind -> Text,
        id -> SqlUuid,
        subject -> Text,
        data -> Nullable<Text>,
        status -> Text,
        attempts -> Integer,
        next_attempt_at -> SqlTimestamp,
        locked_until -> Nullable<SqlTimestamp>,
        last_error -> Nullable<Text>,
        created_at -> SqlTimestamp,
        finished_at -> Nullable<SqlTimestamp>,
    }
}
diesel::allow_tables_to_appear_in_same_query!(webhook_events, jobs);

diesel::table! {
    use diesel::sql_types::*;
    use service_kit::db::sql_types::{SqlUuid, SqlTimestamp};

    /// One provider identity of a user (the seed's name for the table).
    oauth_tokens (id) {
        id -> SqlUuid,
        user_id -> SqlUuid,
        provider -> Text,
        provider_subject -> Text,
        token_ciphertext -> Nullable<Text>,
        expires_at -> Nullable<SqlTimestamp>,
        created_at -> SqlTimestamp,
        updated_at -> SqlTimestamp,
        email -> Nullable<Text>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use service_kit::db::sql_types::{SqlUuid, SqlTimestamp};

    oauth_flows (id) {
        id -> Text,
        kind -> Text,
        provider -> Text,
        user_id -> Nullable<SqlUuid>,
        data -> Text,
        expires_at -> SqlTimestamp,
        created_at -> SqlTimestamp,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use service_kit::db::sql_types::{SqlUuid, SqlTimestamp};

    passkeys (id) {
        id -> SqlUuid,
        user_id -> SqlUuid,
        credential_id -> Text,
        name -> Text,
        passkey -> Text,
        created_at -> SqlTimestamp,
        last_used_at -> Nullable<SqlTimestamp>,
    }
}
