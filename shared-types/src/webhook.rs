//! Standard Webhooks signatures (<https://www.standardwebhooks.com/>), used by
//! the auth service to sign and by the main backend to verify.
//!
//! `webhook-signature` is `v1,` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}"))
//! where the key is the base64 part of a `whsec_...` secret. A header may hold
//! several space-separated signatures (during key rotation); any match passes.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Signatures older or newer than this are refused (replay protection).
pub const TOLERANCE_SECONDS: i64 = 5 * 60;

/// The decoded key of a `whsec_<base64>` secret. Not `Debug`: never logged.
#[derive(Clone)]
pub struct WebhookKey(Vec<u8>);

/// Why a webhook secret is not one: what is wrong with it, in words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyError(pub &'static str);

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for KeyError {}

impl WebhookKey {
    /// Parses `whsec_<base64>`.
    pub fn parse(value: &str) -> Result<Self, KeyError> {
        let b64 = value
            .strip_prefix("whsec_")
            .ok_or(KeyError("must look like whsec_<base64>"))?;
        let key = B64
            .decode(b64)
            .map_err(|_| KeyError("the part after whsec_ is not valid base64"))?;
        if key.len() < 24 {
            return Err(KeyError("the key must be at least 24 random bytes"));
        }
        Ok(Self(key))
    }

    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
        // HMAC accepts keys of any length; this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// The `webhook-signature` header value for one delivery.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        format!(
            "v1,{}",
            B64.encode(self.mac(id, timestamp, body).finalize().into_bytes())
        )
    }

    /// Checks the headers of a delivery received at `now` (Unix seconds).
    pub fn verify(
        &self,
        id: &str,
        timestamp: &str,
        signature_header: &str,
        body: &[u8],
        now: i64,
    ) -> Result<(), VerifyError> {
        let ts: i64 = timestamp
            .trim()
            .parse()
            .map_err(|_| VerifyError::Timestamp)?;
        // `abs_diff`: a timestamp near i64::MIN or MAX must not overflow
        // (a panic in debug builds, a wrapped difference that passes in release).
        if now.abs_diff(ts) > TOLERANCE_SECONDS.unsigned_abs() {
            return Err(VerifyError::Timestamp);
        }
        let expected = self.mac(id, ts, body).finalize().into_bytes();
        let matches = signature_header
            .split_whitespace()
            .filter_map(|s| s.strip_prefix("v1,"))
            .filter_map(|s| B64.decode(s).ok())
            .any(|sig| bool::from(sig.as_slice().ct_eq(&expected[..])));
        if matches {
            Ok(())
        } else {
            Err(VerifyError::Signature)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyError {
    /// Missing, unparsable or more than five minutes off.
    Timestamp,
    /// No `v1` signature matches.
    Signature,
}

#[cfg(test)]
mod tests {
    use super::*;

    // The public test vector published with the Standard Webhooks
    // specification (not a secret of ours: it is in every implementation's tests).
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: i64 = 1614265330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn signs_the_specification_test_vector() {
        let key = WebhookKey::parse(SECRET).expect("valid secret");
        assert_eq!(key.sign(ID, TS, BODY), SIGNATURE);
    }

    #[test]
    fn verifies_and_refuses() {
        let key = WebhookKey::parse(SECRET).expect("valid secret");
        let ts = TS.to_string();
        assert_eq!(key.verify(ID, &ts, SIGNATURE, BODY, TS + 10), Ok(()));
        // Rotation: the right signature anywhere in the list passes.
        let several = format!("v1,AAAA {SIGNATURE}");
        assert_eq!(key.verify(ID, &ts, &several, BODY, TS), Ok(()));
        assert_eq!(
            key.verify(ID, &ts, SIGNATURE, br#"{"test": 1}"#, TS),
            Err(VerifyError::Signature)
        );
        assert_eq!(
            key.verify("msg_other", &ts, SIGNATURE, BODY, TS),
            Err(VerifyError::Signature)
        );
        assert_eq!(
            key.verify(ID, &ts, "v2,whatever", BODY, TS),
            Err(VerifyError::Signature)
        );
        assert_eq!(
            key.verify(ID, &ts, SIGNATURE, BODY, TS + TOLERANCE_SECONDS + 1),
            Err(VerifyError::Timestamp)
        );
        assert_eq!(
            key.verify(ID, &ts, SIGNATURE, BODY, TS - TOLERANCE_SECONDS - 1),
            Err(VerifyError::Timestamp)
        );
        assert_eq!(
            key.verify(ID, "soon", SIGNATURE, BODY, TS),
            Err(VerifyError::Timestamp)
        );
        // Found by schemathesis: extreme timestamps are refused, not overflowed.
        for extreme in [i64::MIN, i64::MAX] {
            assert_eq!(
                key.verify(ID, &extreme.to_string(), SIGNATURE, BODY, TS),
                Err(VerifyError::Timestamp)
            );
        }
    }

    #[test]
    fn refuses_bad_secrets() {
        assert!(WebhookKey::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(WebhookKey::parse("whsec_!!!").is_err());
        assert!(WebhookKey::parse("whsec_c2hvcnQ=").is_err());
    }
}
