//! Access tokens (JWT), refresh tokens and the hashing of opaque tokens.
//!
//! Access tokens carry `sub, sid, iat, exp, iss, aud, jti` and a `kid` header;
//! EdDSA (Ed25519) by default, HS256 when configured. Refresh tokens are 256
//! random bits, stored only as SHA-256 hashes.
//!
//! The refresh grace window needs two racing refreshes to get the *same* new
//! pair, but only hashes are stored. So the successor of a refresh token is
//! derived, not drawn: `HMAC(key from AUTH_SECRETS_KEY, spent token)`; and the access token
//! that comes with it is rebuilt from the `jti`/`iat` stored beside the
//! successor's hash. Ed25519 and HMAC signatures are deterministic, so the
//! rebuilt pair is byte for byte the one the winner got. Without the server
//! key nobody can compute a successor from a stolen token.
//!
//! Checking an Ed25519 signature is two thirds of an introspection's work,
//! and the same token comes back again and again (each main-backend
//! replica, each call a client makes here). So the claims of a token whose
//! signature checked out are remembered, keyed by the token's SHA-256, until
//! it expires. That is safe because it remembers only what cannot change:
//! the signature of these exact bytes under this process's keys (which are
//! fixed for its life). Expiry is checked again on every use, and
//! revocation was never decided here: callers read the session every time.
//! Only tokens this service signed are remembered, so nobody can fill the
//! memo with junk.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use ed25519_dalek::pkcs8::DecodePrivateKey;
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretBox};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::configuration::{JwtKeySource, Settings};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    pub sub: Uuid,
    pub sid: Uuid,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
    pub aud: String,
    pub jti: Uuid,
}

pub struct TokenKeys {
    algorithm: Algorithm,
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// Retired keys by `kid`: verify only.
    previous: Vec<(String, DecodingKey)>,
    validation: Validation,
    jwks: serde_json::Value,
    successor_key: SecretBox<[u8; 32]>,
    issuer: String,
    audience: String,
    access_ttl: Duration,
    /// Claims of tokens whose signature checked out, by SHA-256 of the
    /// token (see the module header).
    verified: moka::sync::Cache<[u8; 32], Arc<AccessClaims>>,
}

/// Seconds of clock difference tolerated on `exp`, as jsonwebtoken applies it.
const LEEWAY: i64 = 5;
/// At most this many verified tokens are remembered (about 200 bytes each).
const VERIFIED_ENTRIES: u64 = 50_000;

const SUCCESSOR_LABEL: &[u8] = b"auth-service refresh-token successor v1";

/// An Ed25519 PKCS#8 PEM file, read: the PEM, the key, its `kid` (a
/// truncated hash of the public key) and its public key in base64url.
struct Ed25519File {
    pem: String,
    kid: String,
    x: String,
}

impl Ed25519File {
    /// `var` names the variable that pointed here, for the error.
    fn read(path: &std::path::Path, var: &str) -> anyhow::Result<Self> {
        let pem = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("{var}: cannot read {}: {e}", path.display()))?;
        let signing = ed25519_dalek::SigningKey::from_pkcs8_pem(&pem)
            .map_err(|e| anyhow::anyhow!("{var}: not an Ed25519 PKCS#8 PEM key: {e}"))?;
        let public = signing.verifying_key().to_bytes();
        Ok(Self {
            kid: URL_SAFE_NO_PAD.encode(&Sha256::digest(public)[..12]),
            x: URL_SAFE_NO_PAD.encode(public),
            pem,
        })
    }

    fn jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "OKP", "crv": "Ed25519", "x": self.x, "kid": self.kid, "alg": "EdDSA", "use": "sig"
        })
    }
}

impl TokenKeys {
    pub fn load(settings: &Settings) -> anyhow::Result<Self> {
        let (algorithm, kid, encoding, decoding, jwks) = match &settings.jwt_key {
            JwtKeySource::Ed25519PemFile(path) => {
                let key = Ed25519File::read(path, "AUTH_JWT_PRIVATE_KEY_FILE")?;
                let encoding = EncodingKey::from_ed_pem(key.pem.as_bytes())
                    .map_err(|e| anyhow::anyhow!("AUTH_JWT_PRIVATE_KEY_FILE: {e}"))?;
                let decoding = DecodingKey::from_ed_components(&key.x)?;
                let jwks = serde_json::json!({"keys": [key.jwk()]});
                (Algorithm::EdDSA, key.kid, encoding, decoding, jwks)
            }
            JwtKeySource::HmacSecret(secret) => {
                let bytes = secret.expose_secret().as_bytes();
                // The kid must not help anyone guess the secret: a truncated
                // hash of a 256-bit secret reveals nothing usable.
                let kid = format!("hs-{}", URL_SAFE_NO_PAD.encode(&Sha256::digest(bytes)[..6]));
                let jwks = serde_json::json!({"keys": []});
                (
                    Algorithm::HS256,
                    kid,
                    EncodingKey::from_secret(bytes),
                    DecodingKey::from_secret(bytes),
                    jwks,
                )
            }
        };
        let mut previous = Vec::new();
        let mut jwks = jwks;
        for path in &settings.previous_jwt_keys {
            let key = Ed25519File::read(path, "AUTH_JWT_PREVIOUS_KEY_FILES")?;
            if let Some(keys) = jwks["keys"].as_array_mut() {
                keys.push(key.jwk());
            }
            previous.push((key.kid.clone(), DecodingKey::from_ed_components(&key.x)?));
        }
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&[&settings.issuer]);
        validation.set_audience(&[&settings.audience]);
        validation.set_required_spec_claims(&["exp", "iat", "sub", "iss", "aud"]);
        validation.leeway = LEEWAY as u64;
        // Keyed by AUTH_SECRETS_KEY, not the signing key: a signing-key
        // rotation must not change the successor of a token spent just
        // before it (the grace window would hand out a token never stored).
        let successor_key = SecretBox::new(Box::new(settings.secrets_key.derive(SUCCESSOR_LABEL)));
        let access_ttl = Duration::minutes(settings.access_token_minutes);
        Ok(Self {
            algorithm,
            kid,
            encoding,
            decoding,
            previous,
            validation,
            jwks,
            successor_key,
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            verified: moka::sync::Cache::builder()
                .max_capacity(VERIFIED_ENTRIES)
                // Only a bound on memory: `exp` is checked on every use.
                .time_to_live(
                    (access_ttl + Duration::seconds(LEEWAY))
                        .to_std()
                        .unwrap_or_default(),
                )
                .build(),
            access_ttl,
        })
    }

    pub fn access_ttl_seconds(&self) -> i64 {
        self.access_ttl.num_seconds()
    }

    /// Signs an access token. The same arguments give the same token.
    pub fn issue_access(
        &self,
        user_id: Uuid,
        session_id: Uuid,
        jti: Uuid,
        iat: DateTime<Utc>,
    ) -> anyhow::Result<String> {
        let iat = iat.timestamp();
        let claims = AccessClaims {
            sub: user_id,
            sid: session_id,
            iat,
            exp: iat + self.access_ttl.num_seconds(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            jti,
        };
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.kid.clone());
        Ok(jsonwebtoken::encode(&header, &claims, &self.encoding)?)
    }

    /// Checks signature, algorithm, `kid`, expiry, issuer and audience. Says
    /// nothing of revocation: callers check the session in the database.
    pub fn verify_access(&self, token: &str) -> Option<AccessClaims> {
        self.verify_access_at(token, Utc::now().timestamp())
    }

    /// `verify_access` as of `now` (seconds since the epoch) for expiry; a
    /// token seen before skips the signature check (module header).
    pub fn verify_access_at(&self, token: &str, now: i64) -> Option<AccessClaims> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let claims = match self.verified.get(&key) {
            Some(claims) => claims,
            None => {
                let claims = Arc::new(self.check_signature(token)?);
                self.verified.insert(key, claims.clone());
                claims
            }
        };
        (claims.exp + LEEWAY >= now).then(|| AccessClaims::clone(&claims))
    }

    fn check_signature(&self, token: &str) -> Option<AccessClaims> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        if header.alg != self.algorithm {
            return None;
        }
        let kid = header.kid?;
        let key = if kid == self.kid {
            &self.decoding
        } else {
            &self.previous.iter().find(|(k, _)| *k == kid)?.1
        };
        jsonwebtoken::decode::<AccessClaims>(token, key, &self.validation)
            .ok()
            .map(|d| d.claims)
    }

    pub fn jwks(&self) -> &serde_json::Value {
        &self.jwks
    }

    /// The refresh token that replaces `spent` (see the module header).
    pub fn successor_refresh_token(&self, spent: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.successor_key.expose_secret())
            .expect("HMAC takes any key length");
        mac.update(spent.as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }
}

/// A fresh 256-bit random token, base64url without padding.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What the database stores instead of an opaque token: hex SHA-256. A plain
/// hash suffices because the tokens carry 256 random bits.
pub fn hash_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_tokens_are_256_bits_and_distinct() {
        let a = random_token();
        assert_eq!(URL_SAFE_NO_PAD.decode(&a).expect("base64url").len(), 32);
        assert_ne!(a, random_token());
    }

    #[test]
    fn hash_token_is_sha256_hex() {
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
