//! Users' secrets at rest: XChaCha20-Poly1305 under `MAIN_SECRETS_KEY`.
//!
//! - A fresh random 192-bit nonce on every write (safe to draw at random,
//!   unlike AES-GCM's 96 bits, however many writes one key sees).
//! - The associated data is the owner's id and the secret's name, so a
//!   ciphertext copied to another user's row, or to another name, fails to
//!   open instead of yielding the plaintext to the wrong caller.
//! - Plaintexts live in `SecretString` and are never logged or returned.

use secrecy::{ExposeSecret, SecretString};
use service_kit::crypto::SealingKey;
pub use service_kit::crypto::Undecryptable;
use uuid::Uuid;

const AAD_LABEL: &[u8] = b"main-backend user secret v1\0";

/// The key; built once from `MAIN_SECRETS_KEY`.
pub struct SecretsKey(SealingKey);

impl SecretsKey {
    /// `MAIN_SECRETS_KEY`: base64 of exactly 32 random bytes.
    pub fn from_base64(raw: &str) -> Result<Self, String> {
        SealingKey::from_base64(raw).map(Self)
    }

    fn aad(user_id: Uuid, name: &str) -> Vec<u8> {
        let mut aad = AAD_LABEL.to_vec();
        aad.extend_from_slice(user_id.as_bytes());
        aad.extend_from_slice(name.as_bytes());
        aad
    }

    /// Encrypts `value` for this user and name: `(ciphertext, nonce)`.
    pub fn seal(&self, user_id: Uuid, name: &str, value: &SecretString) -> (Vec<u8>, Vec<u8>) {
        self.0
            .seal(&Self::aad(user_id, name), value.expose_secret().as_bytes())
    }

    /// Decrypts a stored secret for server-side use (e.g. a tool calling an
    /// API with the user's key); fails unless user, name and key all match.
    pub fn open(
        &self,
        user_id: Uuid,
        name: &str,
        ciphertext: &[u8],
        nonce: &[u8],
    ) -> Result<SecretString, Undecryptable> {
        let plain = self.0.open(&Self::aad(user_id, name), ciphertext, nonce)?;
        String::from_utf8(plain)
            .map(SecretString::from)
            .map_err(|_| Undecryptable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;

    fn key() -> SecretsKey {
        SecretsKey::from_base64(&STANDARD.encode([7u8; 32])).expect("key")
    }

    #[test]
    fn round_trip_and_binding() {
        let k = key();
        let (alice, bob) = (Uuid::now_v7(), Uuid::now_v7());
        let value = SecretString::from("sk-live-abcdef");
        let (ct, nonce) = k.seal(alice, "openai", &value);
        assert_eq!(
            k.open(alice, "openai", &ct, &nonce)
                .expect("opens")
                .expose_secret(),
            "sk-live-abcdef"
        );
        assert!(k.open(bob, "openai", &ct, &nonce).is_err(), "another user");
        assert!(
            k.open(alice, "github", &ct, &nonce).is_err(),
            "another name"
        );
        let mut tampered = ct.clone();
        tampered[0] ^= 1;
        assert!(k.open(alice, "openai", &tampered, &nonce).is_err());
        let other = SecretsKey::from_base64(&STANDARD.encode([8u8; 32])).expect("key");
        assert!(
            other.open(alice, "openai", &ct, &nonce).is_err(),
            "another key"
        );
        // A fresh nonce each time: equal plaintexts never look alike.
        let (ct2, nonce2) = k.seal(alice, "openai", &value);
        assert_ne!(nonce, nonce2);
        assert_ne!(ct, ct2);
    }
}
