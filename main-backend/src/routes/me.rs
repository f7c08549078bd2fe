//! `GET /v1/me`, `PATCH /v1/me`: the caller's profile.

use actix_web::http::header::ContentType;
use actix_web::{web, HttpResponse};
use serde_json::{Map, Value};
use shared_types::Profile;

use crate::db::mirror::{self, MirrorUser};
use crate::domain::profile::{PatchError, ProfilePatch};
use crate::error::ApiError;
use crate::extractors::AuthenticatedUser;
use crate::AppState;

fn json_or(raw: &str, fallback: Value) -> Value {
    serde_json::from_str(raw).unwrap_or(fallback)
}

pub fn profile(u: &MirrorUser) -> Profile {
    Profile {
        id: u.id.0,
        email: u.email.clone(),
        email_verified: u.email_verified,
        full_name: u.full_name.clone(),
        picture: u.picture.clone(),
        role: u.role.clone(),
        plan_tier: u.plan_tier.clone(),
        permissions: json_or(&u.permissions, Value::Array(Vec::new())),
        feature_flags: json_or(&u.feature_flags, Value::Object(Map::new())),
        tool_permissions: json_or(&u.tool_permissions, Value::Object(Map::new())),
        created_at: u.created_at.0,
        updated_at: u.updated_at.0,
    }
}

#[utoipa::path(get, path = "/v1/me", tag = "profile", responses((status = 200, description = "Mirror fields and business fields", body = Profile)), security(("bearer" = [])))]
pub async fn get(auth: AuthenticatedUser) -> Result<HttpResponse, ApiError> {
    // Rendered once per cached mirror row, not per request: this is the
    // hottest authenticated path, and the three JSON columns cost more to
    // parse and print than the rest of the request.
    let body = auth
        .user
        .body(|u| serde_json::to_vec(&profile(u)))
        .map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(body))
}

/// Changes `full_name` and/or `picture`. An auth-owned field is refused
/// with 422 `auth_owned_field` naming the auth-service endpoint, counted
/// and logged: a client doing that has a bug worth finding.
#[utoipa::path(patch, path = "/v1/me", tag = "profile", request_body = crate::domain::profile::ProfilePatchBody, responses((status = 200, description = "The updated profile", body = Profile)), security(("bearer" = [])))]
pub async fn patch(
    state: web::Data<AppState>,
    auth: AuthenticatedUser,
    body: web::Json<Map<String, Value>>,
) -> Result<web::Json<Profile>, ApiError> {
    let patch = match ProfilePatch::parse(&body) {
        Ok(p) => p,
        Err(e) => {
            if let PatchError::AuthOwned { field, .. } = e {
                state.metrics.auth_owned_attempt(field);
                tracing::warn!(user_id = %auth.user.id.0, field, "attempt to change an auth-owned field through the main backend");
            }
            return Err(e.into());
        }
    };
    let mut pooled = state.db.get().await?;
    let user = mirror::update_profile(
        &mut pooled.conn(),
        auth.user.id.0,
        patch.full_name.as_ref().map(Option::as_deref),
        patch.picture.as_ref().map(Option::as_deref),
    )
    .await?
    .ok_or_else(|| ApiError::not_found("no such user"))?;
    state.validator.forget_user(auth.user.id.0);
    Ok(web::Json(profile(&user)))
}
