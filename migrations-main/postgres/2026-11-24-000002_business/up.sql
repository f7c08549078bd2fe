-- Business data. Every row belongs to one mirror user and goes when the user
-- goes (ON DELETE CASCADE from userbase, which the sync path deletes). Every
-- query filters by the caller's id; (user_id, id) indexes serve the keyset
-- pages, newest first (ids are UUIDv7, so id order is creation order).

CREATE TABLE tasks (
    id          UUID PRIMARY KEY,
    user_id     UUID NOT NULL REFERENCES userbase (id) ON DELETE CASCADE,
    title       TEXT NOT NULL,
    description TEXT,
    completed   BOOLEAN NOT NULL DEFAULT FALSE,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX tasks_user_id_idx ON tasks (user_id, id);

-- One JSON object of preferences per user (size-limited by the API).
CREATE TABLE user_settings (
    user_id     UUID PRIMARY KEY REFERENCES userbase (id) ON DELETE CASCADE,
    preferences TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);

-- Users' own secrets (API keys for their tools), sealed with
-- XChaCha20-Poly1305 under MAIN_SECRETS_KEY; the associated data binds each
-- ciphertext to its user and name. `hint` is at most the last 4 characters.
CREATE TABLE secrets (
    id          UUID PRIMARY KEY,
    user_id     UUID NOT NULL REFERENCES userbase (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    ciphertext  BYTEA NOT NULL,
    nonce       BYTEA NOT NULL,
    hint        TEXT,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX secrets_user_name_key ON secrets (user_id, name);

CREATE TABLE agent_sessions (
    id          UUID PRIMARY KEY,
    user_id     UUID NOT NULL REFERENCES userbase (id) ON DELETE CASCADE,
    title       TEXT NOT NULL,
    status      TEXT NOT NULL,
    metadata    TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX agent_sessions_user_id_idx ON agent_sessions (user_id, id);

CREATE TABLE tool_usage_logs (
    id               UUID PRIMARY KEY,
    user_id          UUID NOT NULL REFERENCES userbase (id) ON DELETE CASCADE,
    agent_session_id UUID REFERENCES agent_sessions (id) ON DELETE SET NULL,
    tool_name        TEXT NOT NULL,
    success          BOOLEAN NOT NULL,
    duration_ms      BIGINT,
    metadata         TEXT NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL
);
CREATE INDEX tool_usage_logs_user_id_idx ON tool_usage_logs (user_id, id);
CREATE INDEX tool_usage_logs_session_idx ON tool_usage_logs (agent_session_id);

CREATE TABLE corpus_data (
    id           UUID PRIMARY KEY,
    user_id      UUID NOT NULL REFERENCES userbase (id) ON DELETE CASCADE,
    title        TEXT NOT NULL,
    content      TEXT NOT NULL,
    content_type TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX corpus_data_user_id_idx ON corpus_data (user_id, id);
