//! Endpoints for our other services; every handler takes `InternalCaller`.

use actix_web::web;
use serde::Deserialize;
use shared_types::{IntrospectRequest, Introspection, UserCount, UserPage, UserRecord};
use uuid::Uuid;

use crate::db::{sessions, users};
use crate::error::ApiError;
use crate::extractors::InternalCaller;
use crate::AppState;

/// RFC 7662. Any token that is not a live access token of an unlocked user
/// is `{active: false}`, whatever the reason: the caller learns nothing more.
pub async fn introspect(
    _caller: InternalCaller,
    state: web::Data<AppState>,
    body: web::Json<IntrospectRequest>,
) -> Result<web::Json<Introspection>, ApiError> {
    let Some(claims) = state.keys.verify_access(&body.token) else {
        return Ok(web::Json(Introspection::inactive()));
    };
    let mut pooled = state.db.get().await?;
    let found =
        sessions::find_active_with_user(&mut pooled.conn(), claims.sid, crate::db::now()).await?;
    let answer = match found {
        Some((session, user)) if session.user_id.0 == claims.sub && !user.account_locked => {
            Introspection {
                active: true,
                token_type: Some("access".into()),
                sub: Some(user.id.0),
                sid: Some(session.id.0),
                email: Some(user.email),
                email_verified: Some(user.email_verified),
                scope: None,
                exp: Some(claims.exp),
                iat: Some(claims.iat),
            }
        }
        _ => Introspection::inactive(),
    };
    Ok(web::Json(answer))
}

#[derive(Deserialize)]
pub struct PageQuery {
    after: Option<Uuid>,
    limit: Option<i64>,
}

pub async fn list_users(
    _caller: InternalCaller,
    state: web::Data<AppState>,
    query: web::Query<PageQuery>,
) -> Result<web::Json<UserPage>, ApiError> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::validation(
            "validation_failed",
            "limit must be from 1 to 1000",
        ));
    }
    let mut pooled = state.db.get().await?;
    let rows = users::page(&mut pooled.conn(), query.after, limit).await?;
    // A full page may be followed by more; a short one is the end.
    let next_after = if rows.len() as i64 == limit {
        rows.last().map(|u| u.id.0)
    } else {
        None
    };
    Ok(web::Json(UserPage {
        users: rows.iter().map(users::User::record).collect(),
        next_after,
    }))
}

pub async fn get_user(
    _caller: InternalCaller,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
) -> Result<web::Json<UserRecord>, ApiError> {
    let mut pooled = state.db.get().await?;
    let user = users::find(&mut pooled.conn(), path.into_inner())
        .await?
        .ok_or_else(|| ApiError::not_found("no such user"))?;
    Ok(web::Json(user.record()))
}

pub async fn count_users(
    _caller: InternalCaller,
    state: web::Data<AppState>,
) -> Result<web::Json<UserCount>, ApiError> {
    let mut pooled = state.db.get().await?;
    let count = users::count(&mut pooled.conn()).await?;
    Ok(web::Json(UserCount { count }))
}
