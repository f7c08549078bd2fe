//! What a new service token may be called and carry.

use service_kit::invalid::Invalid;

/// Scopes with a meaning here; any other well-formed string is accepted and
/// passed through introspection for callers' own use.
pub mod scope {
    /// The admin API (`/admin/v1/...`) and the main backend's admin routes.
    pub const ADMIN: &str = "admin";
    /// The internal API (`/internal/v1/...`), beside `AUTH_SERVICE_API_KEY`.
    pub const INTERNAL: &str = "internal";
    /// Operator actions on the main backend, such as `POST /admin/v1/sync`.
    pub const OPS: &str = "ops";
}

const MAX_SCOPES: usize = 16;
const MAX_DAYS: i64 = 3650;
/// The most a token's metadata may take, as compact JSON.
pub const MAX_METADATA_BYTES: usize = 4096;

/// A validated request for a token: name, scopes (deduplicated, in the
/// order given), an optional lifetime in days and optional metadata (a JSON
/// object the checking service gets through introspection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSpec {
    pub name: String,
    pub scopes: Vec<String>,
    pub expires_in_days: Option<i64>,
    pub metadata: Option<serde_json::Value>,
}

fn invalid(detail: impl Into<String>) -> Invalid {
    Invalid::failed(detail)
}

impl TokenSpec {
    pub fn parse(
        name: &str,
        scopes: &[String],
        expires_in_days: Option<i64>,
        metadata: Option<serde_json::Value>,
    ) -> Result<Self, Invalid> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(invalid("name: 1 to 100 characters, no control characters"));
        }
        if scopes.is_empty() || scopes.len() > MAX_SCOPES {
            return Err(invalid(format!(
                "scopes: 1 to {MAX_SCOPES} of them, e.g. [\"admin\"]"
            )));
        }
        let mut unique: Vec<String> = Vec::with_capacity(scopes.len());
        for s in scopes {
            let ok = !s.is_empty()
                && s.len() <= 64
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.:-".contains(&b));
            if !ok {
                return Err(invalid(format!(
                    "scopes: `{s}` is not a scope (1 to 64 of a-z, 0-9, _ . : -)"
                )));
            }
            if !unique.contains(s) {
                unique.push(s.clone());
            }
        }
        if let Some(days) = expires_in_days {
            if !(1..=MAX_DAYS).contains(&days) {
                return Err(invalid(format!(
                    "expires_in_days: from 1 to {MAX_DAYS}, or leave it out for no expiry"
                )));
            }
        }
        let metadata = match metadata {
            None | Some(serde_json::Value::Null) => None,
            Some(object @ serde_json::Value::Object(_)) => {
                if object.to_string().len() > MAX_METADATA_BYTES {
                    return Err(invalid(format!(
                        "metadata: at most {MAX_METADATA_BYTES} bytes of JSON"
                    )));
                }
                Some(object)
            }
            Some(_) => {
                return Err(invalid(
                    "metadata: a JSON object, e.g. {\"team\": \"billing\"}",
                ))
            }
        };
        Ok(Self {
            name: name.to_owned(),
            scopes: unique,
            expires_in_days,
            metadata,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scopes(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn accepts_and_dedupes() {
        let spec = TokenSpec::parse(
            " ci ",
            &scopes(&["admin", "ops", "admin", "billing:read"]),
            Some(30),
            Some(serde_json::json!({"team": "billing"})),
        )
        .expect("valid");
        assert_eq!(spec.name, "ci");
        assert_eq!(spec.scopes, scopes(&["admin", "ops", "billing:read"]));
    }

    #[test]
    fn refuses_bad_input() {
        assert!(TokenSpec::parse("", &scopes(&["admin"]), None, None).is_err());
        assert!(TokenSpec::parse("x", &[], None, None).is_err());
        assert!(TokenSpec::parse("x", &scopes(&["Admin"]), None, None).is_err());
        assert!(TokenSpec::parse("x", &scopes(&["a b"]), None, None).is_err());
        assert!(TokenSpec::parse("x", &scopes(&[""]), None, None).is_err());
        assert!(TokenSpec::parse("x", &scopes(&["admin"]), Some(0), None).is_err());
        assert!(TokenSpec::parse("x", &scopes(&["admin"]), Some(-3), None).is_err());
        assert!(TokenSpec::parse("a\nb", &scopes(&["admin"]), None, None).is_err());
        let many: Vec<String> = (0..17).map(|i| format!("s{i}")).collect();
        assert!(TokenSpec::parse("x", &many, None, None).is_err());
        let admin = scopes(&["admin"]);
        for bad in [
            serde_json::json!(["not", "an", "object"]),
            serde_json::json!("text"),
            serde_json::json!({"blob": "x".repeat(MAX_METADATA_BYTES)}),
        ] {
            assert!(TokenSpec::parse("x", &admin, None, Some(bad)).is_err());
        }
        let null = TokenSpec::parse("x", &admin, None, Some(serde_json::Value::Null));
        assert_eq!(null.expect("null is none").metadata, None);
    }
}
