-- Main backend schema (PostgreSQL). The SQLite twin lives in ../../sqlite and
-- must keep the same tables, columns and meaning: queries are written once.
--
-- No column here holds a password, hash, MFA secret or refresh token: the
-- auth service owns those and never sends them.

-- The mirror of the auth service's users plus the fields this service owns.
CREATE TABLE userbase (
    id               UUID PRIMARY KEY,
    -- Auth-owned: written only by the sync path (webhooks, lazy sync,
    -- reconciliation), always from a UserRecord with a newer version.
    email            TEXT NOT NULL,
    email_verified   BOOLEAN NOT NULL,
    mfa_enabled      BOOLEAN NOT NULL,
    account_locked   BOOLEAN NOT NULL,
    auth_version     BIGINT NOT NULL,
    auth_created_at  TIMESTAMPTZ NOT NULL,
    auth_updated_at  TIMESTAMPTZ NOT NULL,
    -- Owned here. full_name starts as the value given at registration.
    full_name        TEXT,
    picture          TEXT,
    role             TEXT NOT NULL DEFAULT 'standard_user',
    plan_tier        TEXT NOT NULL DEFAULT 'free',
    -- JSON text on both backends (arrays / objects).
    permissions      TEXT NOT NULL DEFAULT '[]',
    feature_flags    TEXT NOT NULL DEFAULT '{}',
    tool_permissions TEXT NOT NULL DEFAULT '{}',
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    synced_at        TIMESTAMPTZ NOT NULL
);
-- Not unique: an email can move between accounts, and the mirror may for a
-- moment hold the old owner's row before its change arrives.
CREATE INDEX userbase_email_idx ON userbase (email);

-- Deleted users, so that a late or replayed older event cannot bring a row
-- back. A user event applies only above the tombstone's version.
CREATE TABLE user_tombstones (
    id          UUID PRIMARY KEY,
    version     BIGINT NOT NULL,
    deleted_at  TIMESTAMPTZ NOT NULL
);

-- Webhook ids already applied (delivery is at least once).
CREATE TABLE processed_webhooks (
    id          TEXT PRIMARY KEY,
    event_type  TEXT NOT NULL,
    received_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX processed_webhooks_received_idx ON processed_webhooks (received_at);

-- One row per reconciliation.
CREATE TABLE sync_runs (
    id           UUID PRIMARY KEY,
    trigger      TEXT NOT NULL,
    status       TEXT NOT NULL,
    started_at   TIMESTAMPTZ NOT NULL,
    finished_at  TIMESTAMPTZ,
    created      BIGINT NOT NULL DEFAULT 0,
    updated      BIGINT NOT NULL DEFAULT 0,
    deleted      BIGINT NOT NULL DEFAULT 0,
    unchanged    BIGINT NOT NULL DEFAULT 0,
    duration_ms  BIGINT,
    error        TEXT
);
CREATE INDEX sync_runs_started_idx ON sync_runs (started_at);

-- Session revocations seen by any replica; every replica polls this to evict
-- its validation cache (LISTEN/NOTIFY does not survive transaction poolers).
-- session_id NULL means every session of the user.
CREATE TABLE revocations (
    id          UUID PRIMARY KEY,
    user_id     UUID NOT NULL,
    session_id  UUID,
    created_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX revocations_created_idx ON revocations (created_at);

-- Named leases: one replica at a time does the job (e.g. reconciliation).
CREATE TABLE leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL
);
INSERT INTO leases (name, holder, expires_at) VALUES ('reconcile', '', '1970-01-01T00:00:00Z');
