-- Main backend schema (SQLite). The PostgreSQL twin lives in ../../postgres and
-- must keep the same tables, columns and meaning: queries are written once.
--
-- Ids are UUID text; timestamps are UTC text "YYYY-MM-DDTHH:MM:SS.ffffffZ", fixed
-- width so that text order is time order.
-- No column here holds a password, hash, MFA secret or refresh token: the
-- auth service owns those and never sends them.

-- The mirror of the auth service's users plus the fields this service owns.
CREATE TABLE userbase (
    id               TEXT PRIMARY KEY,
    -- Auth-owned: written only by the sync path (webhooks, lazy sync,
    -- reconciliation), always from a UserRecord with a newer version.
    email            TEXT NOT NULL,
    email_verified   BOOLEAN NOT NULL,
    mfa_enabled      BOOLEAN NOT NULL,
    account_locked   BOOLEAN NOT NULL,
    auth_version     BIGINT NOT NULL,
    auth_created_at  TEXT NOT NULL,
    auth_updated_at  TEXT NOT NULL,
    -- Owned here. full_name starts as the value given at registration.
    full_name        TEXT,
    picture          TEXT,
    role             TEXT NOT NULL DEFAULT 'standard_user',
    plan_tier        TEXT NOT NULL DEFAULT 'free',
    -- JSON text on both backends (arrays / objects).
    permissions      TEXT NOT NULL DEFAULT '[]',
    feature_flags    TEXT NOT NULL DEFAULT '{}',
    tool_permissions TEXT NOT NULL DEFAULT '{}',
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    synced_at        TEXT NOT NULL
);
-- Not unique: an email can move between accounts, and the mirror may for a
-- moment hold the old owner's row before its change arrives.
CREATE INDEX userbase_email_idx ON userbase (email);

-- Deleted users, so that a late or replayed older event cannot bring a row
-- back. A user event applies only above the tombstone's version.
CREATE TABLE user_tombstones (
    id          TEXT PRIMARY KEY,
    version     BIGINT NOT NULL,
    deleted_at  TEXT NOT NULL
);

-- Webhook ids already applied (delivery is at least once).
CREATE TABLE processed_webhooks (
    id          TEXT PRIMARY KEY,
    event_type  TEXT NOT NULL,
    received_at TEXT NOT NULL
);
CREATE INDEX processed_webhooks_received_idx ON processed_webhooks (received_at);

-- One row per reconciliation.
CREATE TABLE sync_runs (
    id           TEXT PRIMARY KEY,
    trigger      TEXT NOT NULL,
    status       TEXT NOT NULL,
    started_at   TEXT NOT NULL,
    finished_at  TEXT,
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
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL,
    session_id  TEXT,
    created_at  TEXT NOT NULL
);
CREATE INDEX revocations_created_idx ON revocations (created_at);

-- Named leases: one replica at a time does the job (e.g. reconciliation).
CREATE TABLE leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);
INSERT INTO leases (name, holder, expires_at) VALUES ('reconcile', '', '1970-01-01T00:00:00.000000Z');
