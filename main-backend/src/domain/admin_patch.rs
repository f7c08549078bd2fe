//! `PATCH /admin/v1/users/{id}`: the business fields only an administrator sets.

use serde::Deserialize;
use serde_json::Value;

use service_kit::invalid::Invalid;

pub const ROLES: &[&str] = &["standard_user", "admin"];
pub const PLAN_TIERS: &[&str] = &["free", "pro", "team", "enterprise"];
/// Serialized size limit of each JSON field.
const MAX_JSON_BYTES: usize = 16 * 1024;
const MAX_PERMISSIONS: usize = 256;

/// The raw body; unknown fields (including every auth-owned one) are 422.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminPatchBody {
    role: Option<String>,
    plan_tier: Option<String>,
    permissions: Option<Value>,
    feature_flags: Option<Value>,
    tool_permissions: Option<Value>,
}

/// A validated change; JSON fields are already serialized for storage.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct AdminPatch {
    pub role: Option<String>,
    pub plan_tier: Option<String>,
    pub permissions: Option<String>,
    pub feature_flags: Option<String>,
    pub tool_permissions: Option<String>,
}

fn invalid(detail: impl Into<String>) -> Invalid {
    Invalid::failed(detail)
}

fn one_of(field: &str, value: Option<String>, allowed: &[&str]) -> Result<Option<String>, Invalid> {
    match value {
        Some(v) if !allowed.contains(&v.as_str()) => Err(invalid(format!(
            "{field}: `{v}` is not one of {}",
            allowed.join(", ")
        ))),
        other => Ok(other),
    }
}

fn sized(field: &str, value: &Value) -> Result<String, Invalid> {
    let json = value.to_string();
    if json.len() > MAX_JSON_BYTES {
        return Err(invalid(format!(
            "{field}: at most {MAX_JSON_BYTES} bytes of JSON"
        )));
    }
    Ok(json)
}

/// `feature_flags` and `tool_permissions`: a JSON object.
fn object(field: &str, value: Option<Value>) -> Result<Option<String>, Invalid> {
    value
        .map(|v| {
            if !v.is_object() {
                return Err(invalid(format!("{field} must be a JSON object")));
            }
            sized(field, &v)
        })
        .transpose()
}

impl AdminPatch {
    pub fn parse(body: AdminPatchBody) -> Result<Self, Invalid> {
        let permissions = body
            .permissions
            .map(|v| {
                let list = v
                    .as_array()
                    .ok_or_else(|| invalid("permissions must be an array of strings"))?;
                let ok = list.len() <= MAX_PERMISSIONS
                    && list.iter().all(|p| {
                        p.as_str().is_some_and(|s| {
                            !s.is_empty() && s.len() <= 100 && !s.chars().any(char::is_control)
                        })
                    });
                if !ok {
                    return Err(invalid(format!(
                        "permissions: at most {MAX_PERMISSIONS} strings of 1 to 100 bytes"
                    )));
                }
                sized("permissions", &v)
            })
            .transpose()?;
        let patch = Self {
            role: one_of("role", body.role, ROLES)?,
            plan_tier: one_of("plan_tier", body.plan_tier, PLAN_TIERS)?,
            permissions,
            feature_flags: object("feature_flags", body.feature_flags)?,
            tool_permissions: object("tool_permissions", body.tool_permissions)?,
        };
        if patch == Self::default() {
            return Err(invalid(
                "nothing to change: send role, plan_tier, permissions, feature_flags or tool_permissions",
            ));
        }
        Ok(patch)
    }

    /// Field names being changed, for the log line that audits the change.
    pub fn fields(&self) -> Vec<&'static str> {
        [
            ("role", self.role.is_some()),
            ("plan_tier", self.plan_tier.is_some()),
            ("permissions", self.permissions.is_some()),
            ("feature_flags", self.feature_flags.is_some()),
            ("tool_permissions", self.tool_permissions.is_some()),
        ]
        .into_iter()
        .filter_map(|(f, set)| set.then_some(f))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<AdminPatch, Invalid> {
        let body: AdminPatchBody = serde_json::from_value(v).map_err(|e| invalid(e.to_string()))?;
        AdminPatch::parse(body)
    }

    #[test]
    fn accepts_admin_fields() {
        let p = parse(
            json!({"role": "admin", "plan_tier": "team", "permissions": ["a", "b"],
            "feature_flags": {"beta": true}, "tool_permissions": {"search": ["read"]}}),
        )
        .expect("valid");
        assert_eq!(p.role.as_deref(), Some("admin"));
        assert_eq!(p.permissions.as_deref(), Some(r#"["a","b"]"#));
        assert_eq!(p.fields().len(), 5);
    }

    #[test]
    fn refuses_bad_values_and_auth_owned_fields() {
        for body in [
            json!({}),
            json!({"role": "root"}),
            json!({"plan_tier": "gold"}),
            json!({"permissions": "all"}),
            json!({"permissions": [1]}),
            json!({"permissions": [""]}),
            json!({"feature_flags": [true]}),
            json!({"tool_permissions": "x"}),
            json!({"email": "x@example.com"}),
            json!({"account_locked": true}),
            json!({"feature_flags": {"x": "y".repeat(MAX_JSON_BYTES)}}),
        ] {
            assert!(parse(body.clone()).is_err(), "{body}");
        }
    }
}
