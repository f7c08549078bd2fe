//! Users' secrets at rest: XChaCha20-Poly1305 under `MAIN_SECRETS_KEY`.
//!
//! - A fresh random 192-bit nonce on every write (safe to draw at random,
//!   unlike AES-GCM's 96 bits, however many writes one key sees).
//! - The associated data is the owner's id and the secret's name, so a
//!   ciphertext copied to another user's row, or to another name, fails to
//!   open instead of yielding the plaintext to the wrong caller.
//! - Plaintexts live in `SecretString` and are never logged or returned.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use secrecy::{ExposeSecret, SecretBox, SecretString};
use uuid::Uuid;

const AAD_LABEL: &[u8] = b"main-backend user secret v1\0";

/// The key; built once from `MAIN_SECRETS_KEY`.
pub struct SecretsKey(SecretBox<[u8; 32]>);

/// Why a stored secret could not be opened: wrong key, wrong row, tampering.
#[derive(Debug, thiserror::Error)]
#[error("the secret does not decrypt under this key for this user and name")]
pub struct Undecryptable;

impl SecretsKey {
    /// `MAIN_SECRETS_KEY`: base64 of exactly 32 random bytes.
    pub fn from_base64(raw: &str) -> Result<Self, String> {
        let bytes = STANDARD
            .decode(raw.trim())
            .map_err(|_| "must be base64 (e.g. openssl rand -base64 32)".to_owned())?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "must decode to exactly 32 bytes (openssl rand -base64 32)".to_owned())?;
        Ok(Self(SecretBox::new(Box::new(key))))
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(self.0.expose_secret().into())
    }

    fn aad(user_id: Uuid, name: &str) -> Vec<u8> {
        let mut aad = AAD_LABEL.to_vec();
        aad.extend_from_slice(user_id.as_bytes());
        aad.extend_from_slice(name.as_bytes());
        aad
    }

    /// Encrypts `value` for this user and name: `(ciphertext, nonce)`.
    pub fn seal(&self, user_id: Uuid, name: &str, value: &SecretString) -> (Vec<u8>, Vec<u8>) {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let aad = Self::aad(user_id, name);
        let ciphertext = self
            .cipher()
            .encrypt(
                &nonce,
                Payload {
                    msg: value.expose_secret().as_bytes(),
                    aad: &aad,
                },
            )
            // Only fails for messages beyond 256 GiB; ours are capped at 8 KiB.
            .unwrap_or_default();
        (ciphertext, nonce.to_vec())
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
        let nonce: [u8; 24] = nonce.try_into().map_err(|_| Undecryptable)?;
        let aad = Self::aad(user_id, name);
        let plain = self
            .cipher()
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| Undecryptable)?;
        String::from_utf8(plain)
            .map(SecretString::from)
            .map_err(|_| Undecryptable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn key_must_be_32_bytes_of_base64() {
        assert!(SecretsKey::from_base64("not base64!").is_err());
        assert!(SecretsKey::from_base64(&STANDARD.encode([1u8; 16])).is_err());
        assert!(SecretsKey::from_base64(&STANDARD.encode([1u8; 32])).is_ok());
    }
}
