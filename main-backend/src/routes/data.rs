//! The caller's own data under `/v1/me/...` and `/v1/agent-sessions`,
//! `/v1/tool-usage`, `/v1/corpus`: the caller is the only owner any query
//! names, so no route can reach another user's rows.

use actix_web::{web, HttpResponse};
use secrecy::ExposeSecret;
use serde_json::{Map, Value};
use shared_types::{AgentSession, CorpusItem, Page, SecretInfo, ToolUsage};

use crate::db::{activity, secrets, settings};
use crate::domain::business::{
    json_object, page, secret_hint, secret_name, NewAgentSession, NewAgentSessionBody,
    NewCorpusBody, NewCorpusItem, NewToolUsage, NewToolUsageBody, PageQuery, SecretBody,
};
use crate::error::ApiError;
use crate::extractors::AuthenticatedUser;
use crate::AppState;
use service_kit::http::Json;

#[utoipa::path(get, path = "/v1/me/settings", tag = "data", responses((status = 200, description = "The caller's settings object", body = Object)), security(("bearer" = [])))]
pub async fn get_settings(
    auth: AuthenticatedUser,
    state: web::Data<AppState>,
) -> Result<web::Json<Value>, ApiError> {
    let mut pooled = state.db.get().await?;
    let stored = settings::get(&mut pooled.conn(), auth.user.id.0).await?;
    let value = stored
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_else(|| Value::Object(Map::new()));
    Ok(web::Json(value))
}

/// Replaces the preferences with the body: a JSON object of at most 16 KiB.
#[utoipa::path(put, path = "/v1/me/settings", tag = "data", request_body = Object, responses((status = 200, description = "The stored settings", body = Object)), security(("bearer" = [])))]
pub async fn put_settings(
    auth: AuthenticatedUser,
    state: web::Data<AppState>,
    body: Json<Value>,
) -> Result<web::Json<Value>, ApiError> {
    let body = body.into_inner();
    let json = json_object("preferences", Some(body.clone()))?;
    let mut pooled = state.db.get().await?;
    settings::put(&mut pooled.conn(), auth.user.id.0, &json).await?;
    Ok(web::Json(body))
}

#[utoipa::path(get, path = "/v1/me/secrets", tag = "data", responses((status = 200, description = "Names and hints, never values", body = Vec<SecretInfo>)), security(("bearer" = [])))]
pub async fn list_secrets(
    auth: AuthenticatedUser,
    state: web::Data<AppState>,
) -> Result<web::Json<Vec<SecretInfo>>, ApiError> {
    let mut pooled = state.db.get().await?;
    let rows = secrets::list(&mut pooled.conn(), auth.user.id.0).await?;
    Ok(web::Json(
        rows.into_iter()
            .map(|r| SecretInfo {
                name: r.name,
                hint: r.hint,
                updated_at: r.updated_at.0,
            })
            .collect(),
    ))
}

/// Stores a secret sealed for this user and name; the value is never
/// returned or logged.
#[utoipa::path(put, path = "/v1/me/secrets/{name}", tag = "data", request_body = crate::domain::business::SecretBody, params(("name" = String, Path, description = "Secret name: 1 to 64 of a-z, 0-9, `-`, `_`, `.`")), responses((status = 204, description = "Stored, sealed")), security(("bearer" = [])))]
pub async fn put_secret(
    auth: AuthenticatedUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: Json<SecretBody>,
) -> Result<HttpResponse, ApiError> {
    let name = secret_name(&path.into_inner())?;
    let hint = secret_hint(body.value.expose_secret())?;
    let user_id = auth.user.id.0;
    let sealed = state.settings.secrets_key.seal(user_id, &name, &body.value);
    let mut pooled = state.db.get().await?;
    secrets::put(&mut pooled.conn(), user_id, &name, sealed, hint.as_deref()).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(delete, path = "/v1/me/secrets/{name}", tag = "data", params(("name" = String, Path, description = "Secret name: 1 to 64 of a-z, 0-9, `-`, `_`, `.`")), responses((status = 204, description = "Deleted")), security(("bearer" = [])))]
pub async fn delete_secret(
    auth: AuthenticatedUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let name = secret_name(&path.into_inner())?;
    let mut pooled = state.db.get().await?;
    if !secrets::delete(&mut pooled.conn(), auth.user.id.0, &name).await? {
        return Err(ApiError::not_found("no secret of that name"));
    }
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(get, path = "/v1/agent-sessions", tag = "data", params(crate::domain::business::PageQuery), responses((status = 200, description = "Newest first", body = Page<AgentSession>)), security(("bearer" = [])))]
pub async fn list_agent_sessions(
    auth: AuthenticatedUser,
    state: web::Data<AppState>,
    query: web::Query<PageQuery>,
) -> Result<web::Json<Page<AgentSession>>, ApiError> {
    let req = query.parse()?;
    let mut pooled = state.db.get().await?;
    let rows = activity::agent_sessions(&mut pooled.conn(), auth.user.id.0, req).await?;
    Ok(web::Json(page(
        rows,
        req.limit,
        |r| r.id.0,
        activity::AgentSessionRow::wire,
    )))
}

#[utoipa::path(post, path = "/v1/agent-sessions", tag = "data", request_body = crate::domain::business::NewAgentSessionBody, responses((status = 201, description = "Created", body = AgentSession)), security(("bearer" = [])))]
pub async fn create_agent_session(
    auth: AuthenticatedUser,
    state: web::Data<AppState>,
    body: Json<NewAgentSessionBody>,
) -> Result<HttpResponse, ApiError> {
    let new = NewAgentSession::parse(body.into_inner())?;
    let mut pooled = state.db.get().await?;
    let row = activity::insert_agent_session(&mut pooled.conn(), auth.user.id.0, &new).await?;
    Ok(HttpResponse::Created().json(row.wire()))
}

#[utoipa::path(get, path = "/v1/tool-usage", tag = "data", params(crate::domain::business::PageQuery), responses((status = 200, description = "Newest first", body = Page<ToolUsage>)), security(("bearer" = [])))]
pub async fn list_tool_usage(
    auth: AuthenticatedUser,
    state: web::Data<AppState>,
    query: web::Query<PageQuery>,
) -> Result<web::Json<Page<ToolUsage>>, ApiError> {
    let req = query.parse()?;
    let mut pooled = state.db.get().await?;
    let rows = activity::tool_usage(&mut pooled.conn(), auth.user.id.0, req).await?;
    Ok(web::Json(page(
        rows,
        req.limit,
        |r| r.id.0,
        activity::ToolUsageRow::wire,
    )))
}

/// Records a tool call; `agent_session_id`, when given, must be one of the
/// caller's sessions (404 otherwise, as for any row that is not theirs).
#[utoipa::path(post, path = "/v1/tool-usage", tag = "data", request_body = crate::domain::business::NewToolUsageBody, responses((status = 201, description = "Recorded", body = ToolUsage)), security(("bearer" = [])))]
pub async fn create_tool_usage(
    auth: AuthenticatedUser,
    state: web::Data<AppState>,
    body: Json<NewToolUsageBody>,
) -> Result<HttpResponse, ApiError> {
    let new = NewToolUsage::parse(body.into_inner())?;
    let user_id = auth.user.id.0;
    let mut pooled = state.db.get().await?;
    let conn = &mut pooled.conn();
    if let Some(session) = new.agent_session_id {
        if !activity::owns_agent_session(conn, user_id, session).await? {
            return Err(ApiError::not_found("no such agent session"));
        }
    }
    let row = activity::insert_tool_usage(conn, user_id, &new).await?;
    Ok(HttpResponse::Created().json(row.wire()))
}

#[utoipa::path(get, path = "/v1/corpus", tag = "data", params(crate::domain::business::PageQuery), responses((status = 200, description = "Newest first", body = Page<CorpusItem>)), security(("bearer" = [])))]
pub async fn list_corpus(
    auth: AuthenticatedUser,
    state: web::Data<AppState>,
    query: web::Query<PageQuery>,
) -> Result<web::Json<Page<CorpusItem>>, ApiError> {
    let req = query.parse()?;
    let mut pooled = state.db.get().await?;
    let rows = activity::corpus(&mut pooled.conn(), auth.user.id.0, req).await?;
    Ok(web::Json(page(
        rows,
        req.limit,
        |r| r.id.0,
        activity::CorpusRow::wire,
    )))
}

#[utoipa::path(post, path = "/v1/corpus", tag = "data", request_body = crate::domain::business::NewCorpusBody, responses((status = 201, description = "Created", body = CorpusItem)), security(("bearer" = [])))]
pub async fn create_corpus(
    auth: AuthenticatedUser,
    state: web::Data<AppState>,
    body: Json<NewCorpusBody>,
) -> Result<HttpResponse, ApiError> {
    let new = NewCorpusItem::parse(body.into_inner())?;
    let mut pooled = state.db.get().await?;
    let row = activity::insert_corpus(&mut pooled.conn(), auth.user.id.0, &new).await?;
    Ok(HttpResponse::Created().json(row.wire()))
}
