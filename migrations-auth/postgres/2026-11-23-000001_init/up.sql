-- Auth service schema (PostgreSQL). The SQLite twin lives in ../../sqlite and
-- must keep the same tables, columns and meaning: queries are written once.

CREATE TABLE users (
    id                  UUID PRIMARY KEY,
    -- Normalised (trimmed, lower-case) at the edge, so this index is the
    -- case-insensitive uniqueness rule.
    email               TEXT NOT NULL,
    password_hash       TEXT NOT NULL,
    full_name           TEXT,
    email_verified      BOOLEAN NOT NULL DEFAULT FALSE,
    mfa_enabled         BOOLEAN NOT NULL DEFAULT FALSE,
    account_locked      BOOLEAN NOT NULL DEFAULT FALSE,
    last_login_at       TIMESTAMPTZ,
    password_changed_at TIMESTAMPTZ NOT NULL,
    version             BIGINT NOT NULL DEFAULT 1,
    created_at          TIMESTAMPTZ NOT NULL,
    updated_at          TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX users_email_key ON users (email);

CREATE TABLE sessions (
    id             UUID PRIMARY KEY,
    user_id        UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at     TIMESTAMPTZ NOT NULL,
    last_used_at   TIMESTAMPTZ NOT NULL,
    expires_at     TIMESTAMPTZ NOT NULL,
    ip             TEXT,
    user_agent     TEXT,
    revoked_at     TIMESTAMPTZ,
    revoked_reason TEXT
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);

-- One row per refresh token ever issued; a session's rows form its family.
-- Only the SHA-256 of the token is stored.
CREATE TABLE refresh_tokens (
    id          UUID PRIMARY KEY,
    session_id  UUID NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    token_hash  TEXT NOT NULL,
    -- The token this one replaced; lets a racing duplicate refresh find the
    -- pair the winner got.
    parent_id   UUID REFERENCES refresh_tokens (id) ON DELETE CASCADE,
    -- jti and iat of the access token issued with this refresh token, so the
    -- same pair can be rebuilt byte for byte inside the grace window.
    access_jti  UUID NOT NULL,
    issued_at   TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    used_at     TIMESTAMPTZ
);
CREATE UNIQUE INDEX refresh_tokens_token_hash_key ON refresh_tokens (token_hash);
CREATE INDEX refresh_tokens_session_id_idx ON refresh_tokens (session_id);
CREATE UNIQUE INDEX refresh_tokens_parent_id_key ON refresh_tokens (parent_id);

CREATE TABLE password_resets (
    id         UUID PRIMARY KEY,
    user_id    UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    used_at    TIMESTAMPTZ
);
CREATE UNIQUE INDEX password_resets_token_hash_key ON password_resets (token_hash);
CREATE INDEX password_resets_user_id_idx ON password_resets (user_id);

-- Verification of the current address and confirmation of a new one.
CREATE TABLE email_verifications (
    id         UUID PRIMARY KEY,
    user_id    UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash TEXT NOT NULL,
    purpose    TEXT NOT NULL,
    email      TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    used_at    TIMESTAMPTZ
);
CREATE UNIQUE INDEX email_verifications_token_hash_key ON email_verifications (token_hash);
CREATE INDEX email_verifications_user_id_idx ON email_verifications (user_id);

-- Failed and successful logins, kept in the database so lockout holds across
-- replicas and restarts. Keyed by email (not user id): unknown emails count too.
CREATE TABLE login_attempts (
    id         UUID PRIMARY KEY,
    email      TEXT NOT NULL,
    ip         TEXT NOT NULL,
    success    BOOLEAN NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX login_attempts_email_created_idx ON login_attempts (email, created_at);
CREATE INDEX login_attempts_email_ip_created_idx ON login_attempts (email, ip, created_at);

-- Tokens from external identity providers, encrypted by the auth service.
CREATE TABLE oauth_tokens (
    id                UUID PRIMARY KEY,
    user_id           UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider          TEXT NOT NULL,
    provider_subject  TEXT NOT NULL,
    token_ciphertext  TEXT,
    expires_at        TIMESTAMPTZ,
    created_at        TIMESTAMPTZ NOT NULL,
    updated_at        TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX oauth_tokens_provider_subject_key ON oauth_tokens (provider, provider_subject);
CREATE INDEX oauth_tokens_user_id_idx ON oauth_tokens (user_id);

-- Audit trail. Never holds a password or token.
CREATE TABLE authentication_events (
    id               UUID PRIMARY KEY,
    kind             TEXT NOT NULL,
    user_id          UUID,
    service_token_id UUID,
    ip               TEXT,
    user_agent       TEXT,
    endpoint         TEXT,
    request_id       TEXT,
    success          BOOLEAN NOT NULL,
    detail           TEXT,
    created_at       TIMESTAMPTZ NOT NULL
);
CREATE INDEX authentication_events_user_created_idx ON authentication_events (user_id, created_at);
CREATE INDEX authentication_events_kind_created_idx ON authentication_events (kind, created_at);
CREATE INDEX authentication_events_created_idx ON authentication_events (created_at);

-- Transactional outbox: written in the same transaction as the change it
-- reports, delivered by the webhook worker.
CREATE TABLE webhook_events (
    id              UUID PRIMARY KEY,
    event_type      TEXT NOT NULL,
    payload         TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL,
    locked_until    TIMESTAMPTZ,
    last_error      TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    delivered_at    TIMESTAMPTZ
);
CREATE INDEX webhook_events_status_next_idx ON webhook_events (status, next_attempt_at);
