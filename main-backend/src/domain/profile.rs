//! `PATCH /v1/me`: which fields a user may change here, and which belong
//! to the auth service (with the endpoint to use instead).

use serde_json::{Map, Value};

use crate::error::ApiError;

/// Auth-owned fields and where to change them.
const AUTH_OWNED: &[(&str, &str)] = &[
    ("email", "POST /v1/email/change on the auth service"),
    (
        "email_verified",
        "POST /v1/email/verify on the auth service",
    ),
    ("password", "POST /v1/password/change on the auth service"),
    (
        "current_password",
        "POST /v1/password/change on the auth service",
    ),
    (
        "new_password",
        "POST /v1/password/change on the auth service",
    ),
    (
        "mfa_enabled",
        "POST /v1/mfa/totp/enable or /disable on the auth service",
    ),
    (
        "account_locked",
        "POST /admin/v1/users/{id}/lock or /unlock on the auth service",
    ),
];

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

/// Why a patch was refused; `AuthOwned` is counted and logged by the caller.
#[derive(Debug)]
pub enum PatchError {
    AuthOwned(ApiError),
    Other(ApiError),
}

impl ProfilePatch {
    pub fn parse(body: &Map<String, Value>) -> Result<Self, PatchError> {
        if let Some((field, endpoint)) = AUTH_OWNED.iter().find(|(f, _)| body.contains_key(*f)) {
            return Err(PatchError::AuthOwned(ApiError::validation(
                "auth_owned_field",
                format!("`{field}` belongs to the auth service; use {endpoint}"),
            )));
        }
        if let Some(field) = ADMIN_OWNED.iter().find(|f| body.contains_key(**f)) {
            return Err(PatchError::Other(ApiError::forbidden(
                "forbidden",
                format!("`{field}` is set by an administrator"),
            )));
        }
        let mut patch = Self::default();
        for (key, value) in body {
            match key.as_str() {
                "full_name" => patch.full_name = Some(full_name(value)?),
                "picture" => patch.picture = Some(picture(value)?),
                other => {
                    return Err(PatchError::Other(ApiError::validation(
                        "validation_failed",
                        format!(
                            "unknown field `{other}`; only full_name and picture can be changed"
                        ),
                    )))
                }
            }
        }
        if patch == Self::default() {
            return Err(PatchError::Other(ApiError::validation(
                "validation_failed",
                "nothing to change: send full_name and/or picture",
            )));
        }
        Ok(patch)
    }
}

fn invalid(detail: &str) -> PatchError {
    PatchError::Other(ApiError::validation("validation_failed", detail))
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
        for field in [
            "email",
            "password",
            "email_verified",
            "mfa_enabled",
            "account_locked",
        ] {
            match parse(json!({ field: "x", "full_name": "A" })) {
                Err(PatchError::AuthOwned(e)) => {
                    assert_eq!(e.code, "auth_owned_field");
                    assert!(e.detail.contains(field) && e.detail.contains("auth service"));
                }
                other => panic!("{field}: {other:?}"),
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
                matches!(parse(body.clone()), Err(PatchError::Other(_))),
                "{body}"
            );
        }
    }
}
