//! Endpoints for our other services; every handler takes `InternalCaller`.

use actix_web::web;
use actix_web::{HttpRequest, HttpResponse};
use serde::Deserialize;
use shared_types::{
    DigestRequest, DigestResponse, IdRange, IntrospectRequest, Introspection, RedeliverRequest,
    Requeued, UserCount, UserPage, UserRecord, WebhookStats,
};
use uuid::Uuid;

use crate::db::jobs::{self, JobKind};
use crate::db::{sessions, users};
use crate::error::ApiError;
use crate::extractors::{ClientInfo, InternalCaller};
use crate::services::service_tokens::{self, Checked};
use crate::AppState;

/// RFC 7662. Any token that is not a live access token of an unlocked user
/// or a live service token is `{active: false}`, whatever the reason: the
/// caller learns nothing more.
#[utoipa::path(post, path = "/internal/v1/introspect", tag = "internal", request_body = IntrospectRequest, responses((status = 200, description = "RFC 7662: `active` and, when active, the claims", body = Introspection)), security(("service" = [])))]
pub async fn introspect(
    _caller: InternalCaller,
    state: web::Data<AppState>,
    req: HttpRequest,
    body: service_kit::http::Json<IntrospectRequest>,
) -> Result<web::Json<Introspection>, ApiError> {
    if service_tokens::looks_like(&body.token) {
        let client = ClientInfo::of(&req);
        let answer = introspect_service_token(&state, &client, &body.token).await?;
        state.metrics.introspection("service", answer.active);
        return Ok(answer);
    }
    let Some(claims) = state.keys.verify_access(&body.token) else {
        state.metrics.introspection("user", false);
        return Ok(web::Json(Introspection::inactive()));
    };
    let mut pooled = state.db.get().await?;
    let found =
        sessions::find_introspected(&mut pooled.conn(), claims.sid, claims.sub, crate::db::now())
            .await?;
    let answer = match found {
        Some((id, email, email_verified)) => Introspection {
            active: true,
            token_type: Some("access".into()),
            sub: Some(id.0),
            sid: Some(claims.sid),
            email: Some(email),
            email_verified: Some(email_verified),
            scope: None,
            exp: Some(claims.exp),
            iat: Some(claims.iat),
            client_id: None,
            metadata: None,
        },
        None => Introspection::inactive(),
    };
    state.metrics.introspection("user", answer.active);
    Ok(web::Json(answer))
}

/// A service token presented to another service (the main backend's admin
/// routes): `sub` is the token's id, `scope` its scopes space-separated
/// (RFC 7662), `exp` absent when it never expires. Counts as a use.
async fn introspect_service_token(
    state: &AppState,
    client: &ClientInfo,
    token: &str,
) -> Result<web::Json<Introspection>, ApiError> {
    let mut pooled = state.db.get().await?;
    let checked = service_tokens::check(&mut pooled.conn(), token, crate::db::now()).await?;
    let detail = Some("introspected");
    let row = match checked {
        Checked::Valid(row) => row,
        Checked::Inactive(id) => {
            state.usage.record(Some(id), client, false, detail);
            return Ok(web::Json(Introspection::inactive()));
        }
        Checked::Unknown => return Ok(web::Json(Introspection::inactive())),
    };
    state.usage.record(Some(row.id.0), client, true, detail);
    Ok(web::Json(Introspection {
        active: true,
        token_type: Some("service".into()),
        sub: Some(row.id.0),
        scope: Some(row.scope_list().join(" ")),
        exp: row.expires_at.map(|t| t.0.timestamp()),
        iat: Some(row.created_at.0.timestamp()),
        metadata: row.metadata_object(),
        client_id: Some(row.name),
        ..Introspection::inactive()
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    after: Option<Uuid>,
    /// Only ids up to this one (inclusive): a range of a digest.
    upto: Option<Uuid>,
    limit: Option<i64>,
}

#[utoipa::path(get, path = "/internal/v1/users", tag = "internal", params(PageQuery), responses((status = 200, description = "One page of users by id", body = UserPage)), security(("service" = [])))]
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
    let range = IdRange {
        after: query.after,
        upto: query.upto,
    };
    let rows = users::page(&mut pooled.conn(), range, limit).await?;
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

/// Digests of id ranges: each range's user count and the sum of
/// `id_hash(id) + version * 1000003` over its users (`id_hash`: the id's
/// low 31 bits), from the id index alone. A reconciler compares them with
/// its own and fetches only the ranges that differ.
#[utoipa::path(post, path = "/internal/v1/users/digests", tag = "internal", request_body = DigestRequest, responses((status = 200, description = "One digest per range, in order", body = DigestResponse)), security(("service" = [])))]
pub async fn user_digests(
    _caller: InternalCaller,
    state: web::Data<AppState>,
    body: service_kit::http::Json<DigestRequest>,
) -> Result<web::Json<DigestResponse>, ApiError> {
    if body.ranges.len() > 256 {
        return Err(ApiError::validation(
            "validation_failed",
            "at most 256 ranges per request",
        ));
    }
    // A range whose start is not below its end holds nothing; asking for
    // one is a reconciler's bug, better said than answered with zeros.
    if let Some(i) = body
        .ranges
        .iter()
        .position(|r| matches!((r.after, r.upto), (Some(a), Some(u)) if a >= u))
    {
        return Err(ApiError::validation(
            "validation_failed",
            format!("ranges[{i}]: after must be below upto"),
        ));
    }
    let mut pooled = state.db.get().await?;
    let digests = users::digests(&mut pooled.conn(), &body.ranges).await?;
    Ok(web::Json(DigestResponse { digests }))
}

#[utoipa::path(get, path = "/internal/v1/users/{id}", tag = "internal", params(("id" = Uuid, Path, description = "User id")), responses((status = 200, description = "One user", body = UserRecord)), security(("service" = [])))]
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

#[utoipa::path(get, path = "/internal/v1/users/count", tag = "internal", responses((status = 200, description = "How many users exist", body = UserCount)), security(("service" = [])))]
pub async fn count_users(
    _caller: InternalCaller,
    state: web::Data<AppState>,
) -> Result<web::Json<UserCount>, ApiError> {
    let mut pooled = state.db.get().await?;
    let count = users::count(&mut pooled.conn()).await?;
    Ok(web::Json(UserCount { count }))
}

#[utoipa::path(get, path = "/internal/v1/webhooks/stats", tag = "internal", responses((status = 200, description = "The outbox", body = WebhookStats)), security(("service" = [])))]
pub async fn webhook_stats(
    _caller: InternalCaller,
    state: web::Data<AppState>,
) -> Result<web::Json<WebhookStats>, ApiError> {
    let mut pooled = state.db.get().await?;
    let stats = jobs::stats(&mut pooled.conn(), JobKind::Webhook).await?;
    let now = crate::db::now();
    Ok(web::Json(WebhookStats {
        pending: stats.pending,
        failed: stats.failed,
        delivered: stats.done,
        oldest_pending_seconds: stats.oldest_pending.map(|t| (now - t).num_seconds().max(0)),
        last_delivered_at: stats.last_done,
    }))
}

/// Requeues failed events (the given ids, or all) and wakes the worker.
/// The body is optional: an empty POST requeues every failed event. It is
/// parsed by hand because `Option<Json<_>>` would turn a malformed body into
/// "no body", and so into "requeue everything".
#[utoipa::path(post, path = "/internal/v1/webhooks/redeliver", tag = "internal", request_body = Option<RedeliverRequest>, responses((status = 202, description = "Failed events requeued", body = Requeued)), security(("service" = [])))]
pub async fn redeliver(
    _caller: InternalCaller,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let request: RedeliverRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RedeliverRequest::default()
    } else {
        service_kit::http::parse_json_object(&body)?
    };
    let ids = request.event_ids;
    if ids.as_ref().is_some_and(|ids| ids.len() > 10_000) {
        return Err(ApiError::validation(
            "validation_failed",
            "at most 10000 event ids per request",
        ));
    }
    let mut pooled = state.db.get().await?;
    let requeued = jobs::retry_failed(&mut pooled.conn(), JobKind::Webhook, ids.as_deref()).await?;
    if requeued > 0 {
        state.outbox.wake();
    }
    Ok(HttpResponse::Accepted().json(Requeued { requeued }))
}
