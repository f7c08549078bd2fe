-- Service tokens: credentials for other programs (operators' scripts, CI,
-- the main backend's admin calls). Only the SHA-256 of a token is stored;
-- the token itself is shown once, when it is created.
CREATE TABLE service_tokens (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    -- JSON array of scope strings, e.g. ["admin","ops"].
    scopes       TEXT NOT NULL,
    token_hash   TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    expires_at   TEXT,
    -- Usage is flushed in batches every few seconds (see
    -- auth-service/src/service_tokens.rs), not written per request.
    last_used_at TEXT,
    use_count    BIGINT NOT NULL DEFAULT 0,
    revoked_at   TEXT,
    -- "command line", or "service_token:<id>" of the admin who created it.
    created_by   TEXT NOT NULL
);
CREATE UNIQUE INDEX service_tokens_token_hash_key ON service_tokens (token_hash);
CREATE INDEX authentication_events_token_created_idx ON authentication_events (service_token_id, created_at);
