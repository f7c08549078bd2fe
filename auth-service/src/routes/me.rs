use actix_web::{web, HttpResponse};
use shared_types::{AuthMe, SessionInfo};
use uuid::Uuid;

use crate::db::sessions;
use crate::error::ApiError;
use crate::extractors::AuthenticatedUser;
use crate::AppState;

#[utoipa::path(get, path = "/v1/me", tag = "account", responses((status = 200, description = "The caller", body = AuthMe)), security(("bearer" = [])))]
pub async fn me(auth: AuthenticatedUser) -> web::Json<AuthMe> {
    let u = auth.user;
    web::Json(AuthMe {
        id: u.id.0,
        email: u.email,
        email_verified: u.email_verified,
        mfa_enabled: u.mfa_enabled,
        created_at: u.created_at.0,
        last_login: u.last_login_at.map(|t| t.0),
    })
}

#[utoipa::path(get, path = "/v1/sessions", tag = "account", responses((status = 200, description = "The caller's live sessions", body = Vec<SessionInfo>)), security(("bearer" = [])))]
pub async fn list_sessions(
    state: web::Data<AppState>,
    auth: AuthenticatedUser,
) -> Result<web::Json<Vec<SessionInfo>>, ApiError> {
    let mut pooled = state.db.get().await?;
    let rows = sessions::list_active(&mut pooled.conn(), auth.user.id.0, crate::db::now()).await?;
    Ok(web::Json(
        rows.into_iter()
            .map(|s| SessionInfo {
                current: s.id.0 == auth.session_id,
                id: s.id.0,
                created_at: s.created_at.0,
                last_used_at: s.last_used_at.0,
                ip: s.ip,
                user_agent: s.user_agent,
            })
            .collect(),
    ))
}

/// Revokes one of the caller's sessions. Someone else's session id answers
/// 404, exactly like an unknown one, so ids can't be probed.
#[utoipa::path(delete, path = "/v1/sessions/{id}", tag = "account", params(("id" = Uuid, Path, description = "Session id")), responses((status = 204, description = "Ended")), security(("bearer" = [])))]
pub async fn delete_session(
    state: web::Data<AppState>,
    auth: AuthenticatedUser,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    if !crate::services::sessions::end_own(&state, auth.user.id.0, path.into_inner()).await? {
        return Err(ApiError::not_found("no such session"));
    }
    Ok(HttpResponse::NoContent().finish())
}
