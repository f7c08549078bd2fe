-- Sign-in with other providers. A row of oauth_tokens (the seed's table,
-- unused until now) is one provider identity of a user: (provider,
-- provider_subject) belongs to one user; token_ciphertext holds the
-- provider's tokens sealed under AUTH_SECRETS_KEY; the row goes with the
-- user (cascade) or on unlink. email is what the provider said, shown in
-- the user's list of identities.
ALTER TABLE oauth_tokens ADD COLUMN email TEXT;

-- The short-lived, single-use secrets of a provider sign-in, kept here so
-- that every replica agrees and a secret works once (taken by DELETE ...
-- RETURNING):
--   kind 'state'  the authorize redirect's state; data: the PKCE verifier,
--                 the nonce, return_to, the browser binding's hash, and the
--                 user being linked (user_id), if any;
--   kind 'code'   the one-time code of the callback's fragment; data: the
--                 identity the provider asserted and its tokens;
--   kind 'link'   a signed-in user's ticket to start linking (user_id).
-- id is the SHA-256 of the secret handed out, never the secret; data is
-- sealed (it holds a PKCE verifier or the provider's tokens).
CREATE TABLE oauth_flows (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    provider    TEXT NOT NULL,
    user_id     TEXT REFERENCES users (id) ON DELETE CASCADE,
    data        TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX oauth_flows_expires_idx ON oauth_flows (expires_at);
