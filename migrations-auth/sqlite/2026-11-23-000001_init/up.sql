-- Auth service schema (SQLite). The PostgreSQL twin lives in ../../postgres and
-- must keep the same tables, columns and meaning: queries are written once.

-- Ids are UUID text; timestamps are UTC text "YYYY-MM-DDTHH:MM:SS.ffffffZ", fixed
-- width so that text order is time order.
CREATE TABLE users (
    id                  TEXT PRIMARY KEY,
    -- Normalised (trimmed, lower-case) at the edge, so this index is the
    -- case-insensitive uniqueness rule.
    email               TEXT NOT NULL,
    password_hash       TEXT NOT NULL,
    full_name           TEXT,
    email_verified      BOOLEAN NOT NULL DEFAULT 0,
    mfa_enabled         BOOLEAN NOT NULL DEFAULT 0,
    account_locked      BOOLEAN NOT NULL DEFAULT 0,
    last_login_at       TEXT,
    password_changed_at TEXT NOT NULL,
    version             BIGINT NOT NULL DEFAULT 1,
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL
);
CREATE UNIQUE INDEX users_email_key ON users (email);

CREATE TABLE sessions (
    id             TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at     TEXT NOT NULL,
    last_used_at   TEXT NOT NULL,
    expires_at     TEXT NOT NULL,
    ip             TEXT,
    user_agent     TEXT,
    revoked_at     TEXT,
    revoked_reason TEXT
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);

-- One row per refresh token ever issued; a session's rows form its family.
-- Only the SHA-256 of the token is stored.
CREATE TABLE refresh_tokens (
    id          TEXT PRIMARY KEY,
    session_id  TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    token_hash  TEXT NOT NULL,
    -- The token this one replaced; lets a racing duplicate refresh find the
    -- pair the winner got.
    parent_id   TEXT REFERENCES refresh_tokens (id) ON DELETE CASCADE,
    -- jti and iat of the access token issued with this refresh token, so the
    -- same pair can be rebuilt byte for byte inside the grace window.
    access_jti  TEXT NOT NULL,
    issued_at   TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    used_at     TEXT
);
CREATE UNIQUE INDEX refresh_tokens_token_hash_key ON refresh_tokens (token_hash);
CREATE INDEX refresh_tokens_session_id_idx ON refresh_tokens (session_id);
CREATE UNIQUE INDEX refresh_tokens_parent_id_key ON refresh_tokens (parent_id);

CREATE TABLE password_resets (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at    TEXT
);
CREATE UNIQUE INDEX password_resets_token_hash_key ON password_resets (token_hash);
CREATE INDEX password_resets_user_id_idx ON password_resets (user_id);

-- Verification of the current address and confirmation of a new one.
CREATE TABLE email_verifications (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash TEXT NOT NULL,
    purpose    TEXT NOT NULL,
    email      TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at    TEXT
);
CREATE UNIQUE INDEX email_verifications_token_hash_key ON email_verifications (token_hash);
CREATE INDEX email_verifications_user_id_idx ON email_verifications (user_id);

-- Failed and successful logins, kept in the database so lockout holds across
-- replicas and restarts. Keyed by email (not user id): unknown emails count too.
CREATE TABLE login_attempts (
    id         TEXT PRIMARY KEY,
    email      TEXT NOT NULL,
    ip         TEXT NOT NULL,
    success    BOOLEAN NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX login_attempts_email_created_idx ON login_attempts (email, created_at);
CREATE INDEX login_attempts_email_ip_created_idx ON login_attempts (email, ip, created_at);

-- Tokens from external identity providers, encrypted by the auth service.
CREATE TABLE oauth_tokens (
    id                TEXT PRIMARY KEY,
    user_id           TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider          TEXT NOT NULL,
    provider_subject  TEXT NOT NULL,
    token_ciphertext  TEXT,
    expires_at        TEXT,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL
);
CREATE UNIQUE INDEX oauth_tokens_provider_subject_key ON oauth_tokens (provider, provider_subject);
CREATE INDEX oauth_tokens_user_id_idx ON oauth_tokens (user_id);

-- Audit trail. Never holds a password or token.
CREATE TABLE authentication_events (
    id               TEXT PRIMARY KEY,
    kind             TEXT NOT NULL,
    user_id          TEXT,
    service_token_id TEXT,
    ip               TEXT,
    user_agent       TEXT,
    endpoint         TEXT,
    request_id       TEXT,
    success          BOOLEAN NOT NULL,
    detail           TEXT,
    created_at       TEXT NOT NULL
);
CREATE INDEX authentication_events_user_created_idx ON authentication_events (user_id, created_at);
CREATE INDEX authentication_events_kind_created_idx ON authentication_events (kind, created_at);
CREATE INDEX authentication_events_created_idx ON authentication_events (created_at);

-- Transactional outbox: written in the same transaction as the change it
-- reports, delivered by the webhook worker.
CREATE TABLE webhook_events (
    id              TEXT PRIMARY KEY,
    event_type      TEXT NOT NULL,
    payload         TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    locked_until    TEXT,
    last_error      TEXT,
    created_at      TEXT NOT NULL,
    delivered_at    TEXT
);
CREATE INDEX webhook_events_status_next_idx ON webhook_events (status, next_attempt_at);
