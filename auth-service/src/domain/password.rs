use secrecy::SecretString;

use service_kit::invalid::Invalid;

/// A password that meets the policy: 8 to 128 characters (NIST SP 800-63B:
/// length, not composition rules) and not one of the most common passwords.
pub struct NewPassword(SecretString);

/// Passwords every cracking list tries first. Short on purpose: the length
/// rule already excludes most of them.
const COMMON: &[&str] = &[
    "password",
    "password1",
    "password123",
    "12345678",
    "123456789",
    "1234567890",
    "qwertyuiop",
    "qwerty123",
    "iloveyou",
    "11111111",
    "00000000",
    "abc12345",
    "letmein1",
    "welcome1",
    "sunshine",
    "princess",
    "football",
    "baseball",
    "superman",
    "trustno1",
    "passw0rd",
    "p@ssw0rd",
    "changeme",
    "admin123",
];

impl NewPassword {
    pub fn parse(raw: String) -> Result<Self, Invalid> {
        let len = raw.chars().count();
        if len < 8 {
            return Err(Invalid::new(
                "weak_password",
                "password must be at least 8 characters long",
            ));
        }
        if len > 128 {
            return Err(Invalid::new(
                "weak_password",
                "password must be at most 128 characters long",
            ));
        }
        let lowered = raw.to_lowercase();
        if COMMON.contains(&lowered.as_str()) || raw.chars().all(|c| raw.starts_with(c)) {
            return Err(Invalid::new(
                "weak_password",
                "this password is too easy to guess",
            ));
        }
        Ok(Self(raw.into()))
    }

    pub fn into_secret(self) -> SecretString {
        self.0
    }
}

/// A display name: trimmed, 1 to 200 characters, no control characters.
pub struct FullName(String);

impl FullName {
    pub fn parse(raw: &str) -> Result<Option<Self>, Invalid> {
        let name = raw.trim();
        if name.is_empty() {
            return Ok(None);
        }
        if name.chars().count() > 200 || name.chars().any(char::is_control) {
            return Err(Invalid::new(
                "validation_failed",
                "full_name must be at most 200 characters without control characters",
            ));
        }
        Ok(Some(Self(name.to_owned())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_policy() {
        assert!(NewPassword::parse("correct horse battery".into()).is_ok());
        for weak in ["short", "password", "PASSWORD1", "aaaaaaaaaaaa"] {
            assert_eq!(
                NewPassword::parse(weak.into()).err().expect(weak).code,
                "weak_password"
            );
        }
        assert!(NewPassword::parse("x".repeat(129)).is_err());
        assert!(
            NewPassword::parse("é".repeat(8)).is_err(),
            "one repeated character"
        );
        assert!(
            NewPassword::parse("éèéèéèéè".into()).is_ok(),
            "counts characters, not bytes"
        );
    }

    #[test]
    fn full_name_rules() {
        assert!(FullName::parse("   ").expect("ok").is_none());
        assert_eq!(
            FullName::parse(" Ada Lovelace ")
                .expect("ok")
                .expect("some")
                .as_str(),
            "Ada Lovelace"
        );
        assert!(FullName::parse("bad\u{0007}").is_err());
        assert!(FullName::parse(&"x".repeat(201)).is_err());
    }
}
