-- Account security (SQLite twin of ../../postgres): lockouts, TOTP, recovery codes, the mail queue.

-- A lock on an email from one address (`ip` set) or from every address
-- (`ip` NULL), created when failures in `login_attempts` cross the
-- threshold. Rows, not counters in memory: every replica sees them.
CREATE TABLE login_lockouts (
    id           TEXT PRIMARY KEY,
    email        TEXT NOT NULL,
    ip           TEXT,
    created_at   TEXT NOT NULL,
    locked_until TEXT NOT NULL
);
CREATE INDEX login_lockouts_email_created_idx ON login_lockouts (email, created_at);

-- One TOTP secret per user, sealed (XChaCha20-Poly1305 under the auth
-- service's secrets key). `enabled_at` NULL: set up, not yet confirmed.
-- `last_step` is the newest time step accepted, so a code is never
-- accepted twice.
CREATE TABLE mfa_totp (
    user_id       TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    secret_sealed TEXT NOT NULL,
    enabled_at    TEXT,
    last_step     BIGINT,
    created_at    TEXT NOT NULL
);

-- Single-use recovery codes; only their SHA-256 is stored.
CREATE TABLE mfa_recovery_codes (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash  TEXT NOT NULL,
    created_at TEXT NOT NULL,
    used_at    TEXT
);
CREATE UNIQUE INDEX mfa_recovery_codes_user_hash_key ON mfa_recovery_codes (user_id, code_hash);

-- Mail waiting to go out, written in the same transaction as the token it
-- carries. The payload (subject, token, link) is sealed and erased once
-- sent, so a token is in clear nowhere in the database.
CREATE TABLE mail_queue (
    id              TEXT PRIMARY KEY,
    kind            TEXT NOT NULL,
    to_addr         TEXT NOT NULL,
    payload_sealed  TEXT,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    locked_until    TEXT,
    last_error      TEXT,
    created_at      TEXT NOT NULL,
    sent_at         TEXT
);
CREATE INDEX mail_queue_status_next_idx ON mail_queue (status, next_attempt_at);
