//! Sealing small secrets at rest: XChaCha20-Poly1305 under a 32-byte key.
//!
//! - A fresh random 192-bit nonce on every seal (safe to draw at random,
//!   unlike AES-GCM's 96 bits, however many seals one key sees).
//! - The caller's associated data binds a ciphertext to its place (owner,
//!   name, purpose): copied elsewhere, it fails to open instead of yielding
//!   the plaintext to the wrong reader.
//!
//! Used by the main backend for users' secrets and by the auth service for
//! TOTP secrets and queued mail.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use secrecy::{ExposeSecret, SecretBox};

const NONCE_LEN: usize = 24;

pub struct SealingKey(SecretBox<[u8; 32]>);

/// Why a sealed value could not be opened: wrong key, wrong place, tampering.
#[derive(Debug, thiserror::Error)]
#[error("the value does not decrypt under this key for this place")]
pub struct Undecryptable;

impl SealingKey {
    /// Base64 of exactly 32 random bytes (`openssl rand -base64 32`).
    pub fn from_base64(raw: &str) -> Result<Self, String> {
        let bytes = STANDARD
            .decode(raw.trim())
            .map_err(|_| "must be base64 (e.g. openssl rand -base64 32)".to_owned())?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "must decode to exactly 32 bytes (openssl rand -base64 32)".to_owned())?;
        Ok(Self::from_bytes(key))
    }

    pub fn from_bytes(key: [u8; 32]) -> Self {
        Self(SecretBox::new(Box::new(key)))
    }

    /// A separate 32-byte key for another purpose, named by `label`
    /// (SHA-256 over the label and this key): the purposes' keys are
    /// independent, and none reveals this one.
    pub fn derive(&self, label: &[u8]) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        hasher.update(b"service-kit derived key\0");
        hasher.update(label);
        hasher.update(b"\0");
        hasher.update(self.0.expose_secret());
        hasher.finalize().into()
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(self.0.expose_secret().into())
    }

    /// Encrypts `msg` bound to `aad`: `(ciphertext, nonce)`.
    pub fn seal(&self, aad: &[u8], msg: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let ciphertext = self
            .cipher()
            .encrypt(&nonce, Payload { msg, aad })
            // Only fails for messages beyond 256 GiB.
            .unwrap_or_default();
        (ciphertext, nonce.to_vec())
    }

    pub fn open(
        &self,
        aad: &[u8],
        ciphertext: &[u8],
        nonce: &[u8],
    ) -> Result<Vec<u8>, Undecryptable> {
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| Undecryptable)?;
        self.cipher()
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .map_err(|_| Undecryptable)
    }

    /// `seal` as one text column: base64 of nonce then ciphertext.
    pub fn seal_text(&self, aad: &[u8], msg: &[u8]) -> String {
        let (ciphertext, mut joined) = self.seal(aad, msg);
        joined.extend_from_slice(&ciphertext);
        STANDARD.encode(joined)
    }

    pub fn open_text(&self, aad: &[u8], sealed: &str) -> Result<Vec<u8>, Undecryptable> {
        let joined = STANDARD.decode(sealed).map_err(|_| Undecryptable)?;
        if joined.len() < NONCE_LEN {
            return Err(Undecryptable);
        }
        let (nonce, ciphertext) = joined.split_at(NONCE_LEN);
        self.open(aad, ciphertext, nonce)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_binding() {
        let k = SealingKey::from_bytes([7; 32]);
        let sealed = k.seal_text(b"alice/openai", b"sk-live-abcdef");
        assert_eq!(
            k.open_text(b"alice/openai", &sealed).expect("opens"),
            b"sk-live-abcdef"
        );
        assert!(
            k.open_text(b"bob/openai", &sealed).is_err(),
            "another place"
        );
        assert!(
            SealingKey::from_bytes([8; 32])
                .open_text(b"alice/openai", &sealed)
                .is_err(),
            "another key"
        );
        let mut tampered = STANDARD.decode(&sealed).expect("base64");
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(k
            .open_text(b"alice/openai", &STANDARD.encode(tampered))
            .is_err());
        assert!(k.open_text(b"alice/openai", "short").is_err());
        // A fresh nonce each time: equal plaintexts never look alike.
        assert_ne!(sealed, k.seal_text(b"alice/openai", b"sk-live-abcdef"));
    }

    #[test]
    fn key_must_be_32_bytes_of_base64() {
        assert!(SealingKey::from_base64("not base64!").is_err());
        assert!(SealingKey::from_base64(&STANDARD.encode([1u8; 16])).is_err());
        assert!(SealingKey::from_base64(&STANDARD.encode([1u8; 32])).is_ok());
    }
}
