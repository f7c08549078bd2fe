use actix_web::{web, HttpResponse};

use crate::error::ApiError;
use crate::AppState;

/// The process is up. Touches nothing else, so it stays fast under load.
pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// Ready to serve: the database answers.
pub async fn ready(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let mut pooled = state.db.get().await?;
    pooled.conn().ping().await.map_err(|e| ApiError {
        source: Some(e.into()),
        ..ApiError::unavailable("the database does not answer")
    })?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"status": "ok", "database": "ok"})))
}

/// Prometheus text format; see `crate::metrics` for what is counted.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    state.metrics.render(&state.db).await
}

pub async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("cache-control", "public, max-age=300"))
        .json(state.keys.jwks())
}
