//! Liveness, readiness and sync health.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde_json::json;
use shared_types::{LastReconcile, StreamHealth, SyncHealth, WebhookBacklog};

use crate::db::{event_stream, mirror, sync_runs, webhooks};
use crate::error::ApiError;
use crate::AppState;

#[utoipa::path(get, path = "/health/live", tag = "health", responses((status = 200, description = "The process is up", body = Object)), security(()))]
pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Ready when the database answers and the auth service is reachable.
#[utoipa::path(get, path = "/health/ready", tag = "health", responses((status = 200, description = "Database and auth service answer", body = Object), (status = 503, description = "Not ready", body = Object)), security(()))]
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let database = match state.db.get().await {
        Ok(mut c) => c.conn().ping().await.is_ok(),
        Err(_) => false,
    };
    let auth_service = state.auth.user_count().await.is_ok();
    let status = if database && auth_service {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    HttpResponse::build(status).json(json!({
        "status": if status == StatusCode::OK { "ok" } else { "unavailable" },
        "database": database,
        "auth_service": auth_service,
    }))
}

/// Sync health for operators: counts only, never ids. 200 when `ok`,
/// 503 when `degraded` (drift past the threshold, or failed webhooks) or
/// `failing` (the auth service cannot be reached). Computed at most once a
/// second per replica: anyone may call it.
/// Prometheus text format; see `crate::metrics` for what is counted.
#[utoipa::path(get, path = "/metrics", tag = "health", responses((status = 200, description = "Prometheus text format 0.0.4", body = String, content_type = "text/plain")), security(()))]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    state.metrics.base.render(&state.db)
}

#[utoipa::path(get, path = "/health/sync", tag = "health", responses((status = 200, description = "The mirror's drift and backlog", body = shared_types::SyncHealth)), security(()))]
pub async fn sync(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let cached = {
        let guard = state.sync_health.lock().unwrap_or_else(|e| e.into_inner());
        guard
            .as_ref()
            .filter(|(at, _)| at.elapsed() < std::time::Duration::from_secs(1))
            .map(|(_, h)| h.clone())
    };
    let health = match cached {
        Some(h) => h,
        None => {
            let h = compute(&state).await?;
            *state.sync_health.lock().unwrap_or_else(|e| e.into_inner()) =
                Some((std::time::Instant::now(), h.clone()));
            h
        }
    };
    let status = if health.status == "ok" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok(HttpResponse::build(status).json(health))
}

async fn compute(state: &AppState) -> Result<SyncHealth, ApiError> {
    let (auth_count, stats) = futures::join!(state.auth.user_count(), state.auth.webhook_stats());
    let mut pooled = state.db.get().await?;
    let conn = &mut pooled.conn();
    let local = mirror::count(conn).await?;
    let last_webhook_at = webhooks::last_received(conn).await?;
    let last = sync_runs::latest(conn).await?;
    let stream = if state.settings.sync_transport.follows_stream() {
        let s = event_stream::get(conn).await?;
        let now = crate::db::now();
        let lag = match (s.behind, s.last_event_at) {
            (true, Some(at)) => (now - at.0).num_milliseconds().max(0) as f64 / 1000.0,
            _ => 0.0,
        };
        Some(StreamHealth {
            cursor: s.cursor,
            last_poll_at: s.polled_at.map(|t| t.0),
            lag_seconds: lag,
        })
    } else {
        None
    };
    let stream_stale = stream.as_ref().is_some_and(|s| {
        s.last_poll_at
            .is_none_or(|at| crate::db::now() - at > chrono::Duration::seconds(60))
    });
    let auth_reachable = auth_count.is_ok() && stats.is_ok();
    let auth_count = auth_count.ok();
    let stats = stats.ok();
    let difference = auth_count.map(|n| (n - local).abs());
    let threshold = state.settings.sync_alert_threshold;
    let failed = stats.as_ref().map_or(0, |s| s.failed);
    // A refused mass removal waits for an operator: failing until a run
    // succeeds (the answer changed, or someone confirmed it).
    let refused = last
        .as_ref()
        .is_some_and(|r| r.error.as_deref() == Some("mass_delete_refused"));
    let status = if !auth_reachable || refused {
        "failing"
    } else if difference.is_some_and(|d| d > threshold) || failed > 0 || stream_stale {
        "degraded"
    } else {
        "ok"
    };
    Ok(SyncHealth {
        status: status.into(),
        auth_user_count: auth_count,
        local_user_count: local,
        difference,
        threshold,
        auth_reachable,
        last_webhook_at,
        last_reconcile_at: last.as_ref().and_then(|r| r.finished_at).map(|t| t.0),
        last_reconcile: last.map(|r| LastReconcile {
            status: r.status,
            trigger: r.trigger,
            started_at: r.started_at.0,
            created: r.created,
            updated: r.updated,
            deleted: r.deleted,
            unchanged: r.unchanged,
            duration_ms: r.duration_ms,
            // Stable codes only: a row written before codes were stored
            // (free text) shows as `reconcile_failed`.
            error: r.error.map(|e| {
                if crate::sync::reconcile::ERROR_CODES.contains(&e.as_str()) {
                    e
                } else {
                    "reconcile_failed".to_owned()
                }
            }),
        }),
        webhooks: WebhookBacklog {
            pending: stats.as_ref().map(|s| s.pending),
            failed: stats.as_ref().map(|s| s.failed),
        },
        stream,
    })
}
