//! The admin API; every handler takes `AdminCaller` (a service token with
//! scope `admin`), and the changes are `crate::services::admin`'s (each
//! writes an `admin_action` audit row in the same transaction).

use actix_web::{web, HttpResponse};
use secrecy::ExposeSecret;
use serde::Deserialize;
use shared_types::{
    AuditEvent, CreateServiceToken, CreatedServiceToken, RevokedCount, ServiceTokenInfo,
};
use uuid::Uuid;

use crate::db::events::{self, kind};
use crate::db::service_tokens::{self as rows, ServiceTokenRow};
use crate::domain::TokenSpec;
use crate::error::ApiError;
use crate::extractors::AdminCaller;
use crate::services::admin;
use crate::services::service_tokens;
use crate::AppState;

fn info(row: &ServiceTokenRow) -> ServiceTokenInfo {
    ServiceTokenInfo {
        id: row.id.0,
        name: row.name.clone(),
        scopes: row.scope_list(),
        created_at: row.created_at.0,
        expires_at: row.expires_at.map(|t| t.0),
        last_used_at: row.last_used_at.map(|t| t.0),
        use_count: row.use_count,
        revoked_at: row.revoked_at.map(|t| t.0),
        metadata: row
            .metadata_object()
            .unwrap_or_else(|| serde_json::Value::Object(Default::default())),
    }
}

#[utoipa::path(post, path = "/admin/v1/service-tokens", tag = "admin", request_body = CreateServiceToken, responses((status = 201, description = "The token, shown once", body = CreatedServiceToken)), security(("service" = [])))]
pub async fn create_token(
    AdminCaller(caller): AdminCaller,
    state: web::Data<AppState>,
    body: service_kit::http::Json<CreateServiceToken>,
) -> Result<HttpResponse, ApiError> {
    let spec = TokenSpec::parse(
        &body.name,
        &body.scopes,
        body.expires_in_days,
        body.metadata.clone(),
    )?;
    let mut pooled = state.db.get().await?;
    let created = service_tokens::create(
        &mut pooled.conn(),
        &spec,
        &service_tokens::created_by_token(caller.token_id),
        admin::token_created(&caller),
    )
    .await?;
    Ok(HttpResponse::Created().json(CreatedServiceToken {
        id: created.row.id.0,
        name: created.row.name.clone(),
        scopes: created.row.scope_list(),
        token: created.token.expose_secret().to_owned(),
        expires_at: created.row.expires_at.map(|t| t.0),
    }))
}

#[utoipa::path(get, path = "/admin/v1/service-tokens", tag = "admin", responses((status = 200, description = "Every token, never the secret", body = Vec<ServiceTokenInfo>)), security(("service" = [])))]
pub async fn list_tokens(
    _caller: AdminCaller,
    state: web::Data<AppState>,
) -> Result<web::Json<Vec<ServiceTokenInfo>>, ApiError> {
    let mut pooled = state.db.get().await?;
    let rows = rows::list(&mut pooled.conn()).await?;
    Ok(web::Json(rows.iter().map(info).collect()))
}

#[utoipa::path(delete, path = "/admin/v1/service-tokens/{id}", tag = "admin", params(("id" = Uuid, Path, description = "Token id")), responses((status = 204, description = "Revoked")), security(("service" = [])))]
pub async fn revoke_token(
    AdminCaller(caller): AdminCaller,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    admin::revoke_token(&state, &caller, path.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The emergency switch. Every token stops working at the commit, on every
/// replica, since each check reads the row.
#[utoipa::path(post, path = "/admin/v1/service-tokens/revoke-all", tag = "admin", responses((status = 200, description = "How many were revoked", body = RevokedCount)), security(("service" = [])))]
pub async fn revoke_all_tokens(
    AdminCaller(caller): AdminCaller,
    state: web::Data<AppState>,
) -> Result<web::Json<RevokedCount>, ApiError> {
    let revoked = admin::revoke_all_tokens(&state, &caller).await?;
    Ok(web::Json(RevokedCount {
        revoked: revoked as u64,
    }))
}

/// Locks an account: its sessions are revoked and its tokens stop
/// introspecting as active at once; login answers 403 `account_locked`.
#[utoipa::path(post, path = "/admin/v1/users/{id}/lock", tag = "admin", params(("id" = Uuid, Path, description = "User id")), responses((status = 204, description = "Locked; sessions revoked")), security(("service" = [])))]
pub async fn lock_user(
    AdminCaller(caller): AdminCaller,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    admin::set_locked(&state, &caller, path.into_inner(), true).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(post, path = "/admin/v1/users/{id}/unlock", tag = "admin", params(("id" = Uuid, Path, description = "User id")), responses((status = 204, description = "Unlocked")), security(("service" = [])))]
pub async fn unlock_user(
    AdminCaller(caller): AdminCaller,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    admin::set_locked(&state, &caller, path.into_inner(), false).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Removes a user's second factor (TOTP and recovery codes) and ends
/// every session: for an owner who lost the device. The owner signs in
/// with the password alone and enrolls again.
#[utoipa::path(post, path = "/admin/v1/users/{id}/mfa/reset", tag = "admin", params(("id" = Uuid, Path, description = "User id")), responses((status = 204, description = "Second factor removed; sessions revoked")), security(("service" = [])))]
pub async fn reset_mfa(
    AdminCaller(caller): AdminCaller,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    admin::reset_mfa(&state, &caller, path.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(delete, path = "/admin/v1/users/{id}", tag = "admin", params(("id" = Uuid, Path, description = "User id")), responses((status = 204, description = "Deleted")), security(("service" = [])))]
pub async fn delete_user(
    AdminCaller(caller): AdminCaller,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    admin::delete_user(&state, &caller, path.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    user_id: Option<Uuid>,
    kind: Option<String>,
    limit: Option<i64>,
}

#[utoipa::path(get, path = "/admin/v1/audit", tag = "admin", params(AuditQuery), responses((status = 200, description = "Audit events, newest first", body = Vec<AuditEvent>)), security(("service" = [])))]
pub async fn audit(
    _caller: AdminCaller,
    state: web::Data<AppState>,
    query: web::Query<AuditQuery>,
) -> Result<web::Json<Vec<AuditEvent>>, ApiError> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::validation(
            "validation_failed",
            "limit must be from 1 to 1000",
        ));
    }
    let kind = query.kind.as_deref().filter(|k| !k.is_empty());
    if let Some(k) = kind {
        if !kind::ALL.contains(&k) {
            return Err(ApiError::validation(
                "validation_failed",
                format!("kind: `{k}` is not one of {}", kind::ALL.join(", ")),
            ));
        }
    }
    let mut pooled = state.db.get().await?;
    let rows = events::list(&mut pooled.conn(), query.user_id, kind, limit).await?;
    Ok(web::Json(
        rows.into_iter()
            .map(|e| AuditEvent {
                id: e.id.0,
                kind: e.kind,
                user_id: e.user_id.map(|u| u.0),
                service_token_id: e.service_token_id.map(|u| u.0),
                ip: e.ip,
                user_agent: e.user_agent,
                endpoint: e.endpoint,
                request_id: e.request_id,
                cf_ray: e.cf_ray,
                success: e.success,
                detail: e.detail,
                created_at: e.created_at.0,
            })
            .collect(),
    ))
}
