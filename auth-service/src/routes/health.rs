use actix_web::{web, HttpResponse};

use crate::error::ApiError;
use crate::AppState;

/// The process is up. Touches nothing else, so it stays fast under load.
#[utoipa::path(get, path = "/health/live", tag = "health", responses((status = 200, description = "The process is up", body = Object)), security(()))]
pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// Ready to serve: the database answers.
#[utoipa::path(get, path = "/health/ready", tag = "health", responses((status = 200, description = "The database answers", body = Object)), security(()))]
pub async fn ready(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let mut pooled = state.db.get().await?;
    pooled.conn().ping().await.map_err(|e| ApiError {
        source: Some(e.into()),
        ..ApiError::unavailable("the database does not answer")
    })?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"status": "ok", "database": "ok"})))
}

/// Prometheus text format; see `crate::metrics` for what is counted.
#[utoipa::path(get, path = "/metrics", tag = "health", responses((status = 200, description = "Prometheus text format 0.0.4", body = String, content_type = "text/plain")), security(()))]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    state.metrics.render(&state.db).await
}

#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "health", responses((status = 200, description = "Public keys of the access tokens (empty for HS256)", body = Object)), security(()))]
pub async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("cache-control", "public, max-age=300"))
        .json(state.keys.jwks())
}
