//! `PATCH /v1/me`: which fields a user may change here, and which belong
//! to the auth service (with the endpoint to use instead).

use serde_json::{Map, Value};

use service_kit::invalid::Invalid;

const EMAIL_CHANGE: &str = "POST /v1/email/change on the auth service";
const PASSWORD_CHANGE: &str = "POST /v1/password/change on the auth service";
const MFA: &str = "POST /v1/mfa/totp/enable or /disable on the auth service";
const SIGN_IN_STATE: &str = "nothing: the auth service keeps it (a password reset lifts lockouts)";

/// Auth-owned fields and where to change them: the contract's names, and
/// the names other schemas (the seed's included) use for the same data, so
/// a client ported from one of them is told instead of getting
/// `validation_failed`. Matched ignoring case, `_` and `-`.
pub const AUTH_OWNED: &[(&str, &str)] = &[
    ("email", EMAIL_CHANGE),
    (
        "email_verified",
        "POST /v1/email/verify on the auth service",
    ),
    ("password", PASSWORD_CHANGE),
    ("current_password", PASSWORD_CHANGE),
    ("new_password", PASSWORD_CHANGE),
    ("hashed_password", PASSWORD_CHANGE),
    ("password_hash", PASSWORD_CHANGE),
    ("password_changed_at", PASSWORD_CHANGE),
    ("mfa_enabled", MFA),
    ("mfa_secret", MFA),
    ("totp_secret", MFA),
    ("recovery_codes", MFA),
    ("last_login", SIGN_IN_STATE),
    ("failed_login_count", SIGN_IN_STATE),
    ("failed_login_attempts", SIGN_IN_STATE),
    ("locked_until", SIGN_IN_STATE),
    (
        "account_locked",
        "POST /admin/v1/users/{id}/lock or /unlock on the auth service",
    ),
    (
        "refresh_token",
        "POST /v1/token/refresh on the auth service",
    ),
];

/// `hashedPassword`, `Hashed-Password` and `hashed_password` are one name.
fn normalized(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

/// The auth-owned field (its canonical name) and its endpoint, if `key` is one.
fn auth_owned(key: &str) -> Option<(&'static str, &'static str)> {
    let key = normalized(key);
    AUTH_OWNED
        .iter()
        .find(|(field, _)| normalized(field) == key)
        .copied()
}

/// Fields only an administrator sets (`PATCH /admin/v1/users/{id}`).
const ADMIN_OWNED: &[&str] = &[
    "role",
    "plan_tier",
    "permissions",
    "feature_flags",
    "tool_permissions",
];

/// What `PATCH /v1/me` takes, for the OpenAPI document: the handler reads
/// the body as a JSON object so it can name an auth-owned field's endpoint
/// (422 `auth_owned_field`) or an admin-owned field (403).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ProfilePatchBody {
    /// `null` clears it.
    full_name: Option<String>,
    /// An https URL; `null` clears it.
    picture: Option<String>,
}

/// A validated profile change; `Some(None)` clears a field.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ProfilePatch {
    pub full_name: Option<Option<String>>,
    pub picture: Option<Option<String>>,
}

/// Why a patch was refused; `AuthOwned` is counted (by `field`, one of
/// `AUTH_OWNED`'s names, never the caller's spelling) and logged by the caller.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// A field the auth service owns, and the endpoint that changes it.
    #[error("`{field}` belongs to the auth service; to change it: {endpoint}")]
    AuthOwned {
        field: &'static str,
        endpoint: &'static str,
    },
    /// A field only an administrator sets.
    #[error("`{0}` is set by an administrator")]
    AdminOwned(&'static str),
    #[error(transparent)]
    Invalid(#[from] Invalid),
}

impl ProfilePatch {
    pub fn parse(body: &Map<String, Value>) -> Result<Self, PatchError> {
        if let Some((field, endpoint)) = body.keys().find_map(|k| auth_owned(k)) {
            return Err(PatchError::AuthOwned { field, endpoint });
        }
        if let Some(field) = ADMIN_OWNED.iter().find(|f| body.contains_key(**f)) {
            return Err(PatchError::AdminOwned(field));
        }
        let mut patch = Self::default();
        for (key, value) in body {
            match key.as_str() {
                "full_name" => patch.full_name = Some(full_name(value)?),
                "picture" => patch.picture = Some(picture(value)?),
                other => {
                    return Err(invalid(&format!(
                        "unknown field `{other}`; only full_name and picture can be changed"
                    )))
                }
            }
        }
        if patch == Self::default() {
            return Err(invalid("nothing to change: send full_name and/or picture"));
        }
        Ok(patch)
    }
}

fn invalid(detail: &str) -> PatchError {
    PatchError::Invalid(Invalid::failed(detail))
}

fn full_name(value: &Value) -> Result<Option<String>, PatchError> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => {
            let s = s.trim();
            if s.is_empty() {
                return Ok(None);
            }
            if s.chars().count() > 200 || s.chars().any(char::is_control) {
                return Err(invalid(
                    "full_name: at most 200 characters, no control characters",
                ));
            }
            Ok(Some(s.to_owned()))
        }
        _ => Err(invalid("full_name must be a string or null")),
    }
}

fn picture(value: &Value) -> Result<Option<String>, PatchError> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => {
            let s = s.trim();
            let ok = s.len() <= 2048
                && s.starts_with("https://")
                && s.len() > "https://".len()
                && !s.chars().any(|c| c.is_whitespace() || c.is_control());
            if !ok {
                return Err(invalid(
                    "picture must be an https:// URL of at most 2048 bytes",
                ));
            }
            Ok(Some(s.to_owned()))
        }
        _ => Err(invalid("picture must be a string or null")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<ProfilePatch, PatchError> {
        ProfilePatch::parse(v.as_object().expect("object"))
    }

    #[test]
    fn accepts_own_fields() {
        let p = parse(json!({"full_name": " Ada ", "picture": "https://x.example/a.png"}))
            .expect("valid");
        assert_eq!(p.full_name, Some(Some("Ada".into())));
        assert_eq!(p.picture, Some(Some("https://x.example/a.png".into())));
        let p = parse(json!({"picture": null})).expect("valid");
        assert_eq!(p.picture, Some(None));
        assert_eq!(p.full_name, None);
    }

    #[test]
    fn auth_owned_fields_name_the_endpoint() {
        // The contract's list, and other spellings of the same names.
        for (sent, canonical) in [
            ("email", "email"),
            ("password", "password"),
            ("hashed_password", "hashed_password"),
            ("email_verified", "email_verified"),
            ("mfa_enabled", "mfa_enabled"),
            ("mfa_secret", "mfa_secret"),
            ("last_login", "last_login"),
            ("password_changed_at", "password_changed_at"),
            ("failed_login_count", "failed_login_count"),
            ("account_locked", "account_locked"),
            ("hashedPassword", "hashed_password"),
            ("MFA-Secret", "mfa_secret"),
            ("lastLogin", "last_login"),
        ] {
            match parse(json!({ sent: "x", "full_name": "A" })) {
                Err(e @ PatchError::AuthOwned { field, .. }) => {
                    assert_eq!(field, canonical);
                    let detail = e.to_string();
                    assert!(
                        detail.contains(canonical) && detail.contains("auth service"),
                        "{detail}"
                    );
                }
                other => panic!("{sent}: {other:?}"),
            }
        }
    }

    #[test]
    fn refuses_the_rest() {
        for body in [
            json!({"role": "admin"}),
            json!({"plan_tier": "pro"}),
            json!({"nickname": "x"}),
            json!({}),
            json!({"full_name": 3}),
            json!({"picture": "javascript:alert(1)"}),
            json!({"picture": "http://plain.example/a.png"}),
            json!({"full_name": "a\u{0}b"}),
        ] {
            assert!(
                matches!(
                    parse(body.clone()),
                    Err(PatchError::AdminOwned(_) | PatchError::Invalid(_))
                ),
                "{body}"
            );
        }
    }
}
