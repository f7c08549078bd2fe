//! TOTP (RFC 6238: SHA-1, 6 digits, 30 s steps, one step of skew either
//! way) and recovery codes. The table side is `db::mfa`.
//!
//! A code is accepted once: the newest accepted step is stored and a code
//! for that step or an older one is refused (`db::mfa::accept_step`), so a
//! code seen over someone's shoulder is useless once its owner has used it.

use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use service_kit::crypto::SealingKey;
use totp_rs::{Builder, Secret, Totp};
use uuid::Uuid;

pub const RECOVERY_CODES: usize = 10;

fn aad(user_id: Uuid) -> Vec<u8> {
    let mut aad = b"auth-service totp secret v1\0".to_vec();
    aad.extend_from_slice(user_id.as_bytes());
    aad
}

/// A new secret (160 random bits, RFC 4226's recommendation) as base32.
pub fn new_secret() -> SecretString {
    SecretString::from(Secret::generate().to_base32())
}

pub fn seal(key: &SealingKey, user_id: Uuid, secret: &SecretString) -> String {
    key.seal_text(&aad(user_id), secret.expose_secret().as_bytes())
}

pub fn open(key: &SealingKey, user_id: Uuid, sealed: &str) -> Option<SecretString> {
    let plain = key.open_text(&aad(user_id), sealed).ok()?;
    String::from_utf8(plain).ok().map(SecretString::from)
}

fn totp(secret: &SecretString, account: &str, issuer: &str) -> Option<Totp> {
    let secret = Secret::try_from_base32(secret.expose_secret()).ok()?;
    Builder::new()
        .with_secret(secret)
        .with_account_name(account.replace(':', ""))
        .with_issuer(Some(issuer.replace(':', "")))
        .build()
        .ok()
}

/// The `otpauth://totp/...` URI an authenticator app scans.
pub fn otpauth_uri(secret: &SecretString, account: &str, issuer: &str) -> Option<String> {
    totp(secret, account, issuer)?.to_url().ok()
}

/// The time step `code` belongs to, if it is valid at `unix_time` (± one step).
pub fn matching_step(secret: &SecretString, code: &str, unix_time: u64) -> Option<i64> {
    if !looks_like_totp(code) {
        return None;
    }
    let step = totp(secret, "user", "auth")?.check(code, unix_time)?;
    i64::try_from(step).ok()
}

/// The code for `unix_time`; what an authenticator app shows (tests use it).
pub fn code_at(secret: &str, unix_time: u64) -> Option<String> {
    let t = totp(&SecretString::from(secret.to_owned()), "user", "auth")?;
    Some(t.generate(unix_time).to_string())
}

/// Now, as TOTP counts time.
pub fn unix_now() -> u64 {
    u64::try_from(crate::db::now().timestamp()).unwrap_or(0)
}

pub fn looks_like_totp(code: &str) -> bool {
    code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit())
}

/// Ten codes of 80 random bits each, shown as `xxxx-xxxx-xxxx-xxxx` in a
/// base32 alphabet without look-alike characters.
pub fn new_recovery_codes() -> Vec<String> {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let mut rng = rand::thread_rng();
    (0..RECOVERY_CODES)
        .map(|_| {
            let chars: String = (0..16)
                .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
                .collect();
            format!(
                "{}-{}-{}-{}",
                &chars[..4],
                &chars[4..8],
                &chars[8..12],
                &chars[12..]
            )
        })
        .collect()
}

/// What is hashed and compared: case and separators do not matter.
pub fn normalize_recovery_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6238_vector_and_window() {
        // RFC 6238 appendix B, SHA-1 key "12345678901234567890", T = 59 s:
        // 94287082 (8 digits); its last six digits are the 6-digit code.
        let secret =
            SecretString::from(totp_rs::Secret::from(b"12345678901234567890".to_vec()).to_base32());
        assert_eq!(
            code_at(secret.expose_secret(), 59).as_deref(),
            Some("287082")
        );
        assert_eq!(matching_step(&secret, "287082", 59), Some(1));
        // One step of skew either way, not two.
        assert_eq!(matching_step(&secret, "287082", 59 + 30), Some(1));
        assert_eq!(matching_step(&secret, "287082", 59 + 60), None);
        assert_eq!(matching_step(&secret, "28708", 59), None);
        assert_eq!(matching_step(&secret, "abcdef", 59), None);
    }

    #[test]
    fn secrets_seal_per_user() {
        let key = SealingKey::from_bytes([3; 32]);
        let (alice, bob) = (Uuid::now_v7(), Uuid::now_v7());
        let secret = new_secret();
        let sealed = seal(&key, alice, &secret);
        assert_eq!(
            open(&key, alice, &sealed).expect("opens").expose_secret(),
            secret.expose_secret()
        );
        assert!(open(&key, bob, &sealed).is_none());
    }

    #[test]
    fn recovery_codes_are_distinct_and_normalise() {
        let codes = new_recovery_codes();
        assert_eq!(codes.len(), 10);
        let unique: std::collections::HashSet<_> = codes.iter().collect();
        assert_eq!(unique.len(), 10);
        assert!(codes.iter().all(|c| c.len() == 19));
        assert_eq!(normalize_recovery_code(" AbCd-efgh "), "abcdefgh");
    }
}
