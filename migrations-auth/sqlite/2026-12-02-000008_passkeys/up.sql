-- Passkeys (WebAuthn). passkey is webauthn-rs's record of the credential
-- (its public key and signature counter), as JSON: nothing secret.
-- credential_id (base64url) is unique across every user: a credential
-- belongs to one account. The ceremonies' challenges live in oauth_flows
-- (kinds 'passkey_registration', 'passkey_authentication'): single use,
-- five minutes, the same for every replica.
CREATE TABLE passkeys (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    credential_id TEXT NOT NULL,
    name          TEXT NOT NULL,
    passkey       TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    last_used_at  TEXT
);
CREATE UNIQUE INDEX passkeys_credential_id_key ON passkeys (credential_id);
CREATE INDEX passkeys_user_id_idx ON passkeys (user_id);
