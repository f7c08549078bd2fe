//! HTTP handlers only: parsing, calling `db`/`sync`, shaping answers.
//! `configure` is the one place that lists every route.

mod admin;
mod data;
mod health;
mod me;
mod tasks;
mod webapp;
mod webhooks;

use actix_web::web;
use service_kit::docs::{ProblemResponses, SecuritySchemes};
use service_kit::http::Routes;
use utoipa::OpenApi;

/// The OpenAPI document: every handler's `#[utoipa::path]`, listed here.
/// A test holds it against the table `configure` returns.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "main-backend",
        description = "Business data beside a read-only mirror of the auth service's users. \
                       Every bearer token is confirmed by the auth service. Errors are RFC 9457 \
                       problem details with a stable `code`."
    ),
    paths(
        webapp::index, webapp::account, webapp::script, webapp::style, webapp::config,
        health::live, health::ready, health::sync, health::metrics,
        webhooks::receive,
        me::get, me::patch,
        data::get_settings, data::put_settings, data::list_secrets, data::put_secret,
        data::delete_secret, data::list_agent_sessions, data::create_agent_session,
        data::list_tool_usage, data::create_tool_usage, data::list_corpus, data::create_corpus,
        tasks::list, tasks::create, tasks::get, tasks::patch, tasks::delete,
        admin::sync, admin::patch_user,
    ),
    modifiers(&SecuritySchemes, &ProblemResponses),
    tags(
        (name = "profile", description = "The caller's profile"),
        (name = "tasks", description = "The caller's tasks"),
        (name = "data", description = "The caller's settings, secrets and activity"),
        (name = "admin", description = "For administrators and operators"),
        (name = "webhooks", description = "Events from the auth service (Standard Webhooks)"),
        (name = "health", description = "Probes, sync health, metrics"),
        (name = "web app", description = "The browser app served here"),
    )
)]
pub struct ApiDoc;

pub fn configure(cfg: &mut web::ServiceConfig) -> Vec<(&'static str, &'static str)> {
    let mut r = Routes::new(cfg);
    r.get("/", webapp::index);
    r.get("/account/{page}", webapp::account);
    r.get("/app.js", webapp::script);
    r.get("/app.css", webapp::style);
    r.get("/app/config.json", webapp::config);
    r.get("/health/live", health::live);
    r.get("/health/ready", health::ready);
    r.get("/health/sync", health::sync);
    r.get("/metrics", health::metrics);
    r.post("/webhooks/auth", webhooks::receive);
    r.get("/v1/me", me::get);
    r.patch("/v1/me", me::patch);
    r.get("/v1/me/settings", data::get_settings);
    r.put("/v1/me/settings", data::put_settings);
    r.get("/v1/me/secrets", data::list_secrets);
    r.put("/v1/me/secrets/{name}", data::put_secret);
    r.delete("/v1/me/secrets/{name}", data::delete_secret);
    r.get("/v1/users/{user_id}/tasks", tasks::list);
    r.post("/v1/users/{user_id}/tasks", tasks::create);
    r.get("/v1/users/{user_id}/tasks/{task_id}", tasks::get);
    r.patch("/v1/users/{user_id}/tasks/{task_id}", tasks::patch);
    r.delete("/v1/users/{user_id}/tasks/{task_id}", tasks::delete);
    r.get("/v1/agent-sessions", data::list_agent_sessions);
    r.post("/v1/agent-sessions", data::create_agent_session);
    r.get("/v1/tool-usage", data::list_tool_usage);
    r.post("/v1/tool-usage", data::create_tool_usage);
    r.get("/v1/corpus", data::list_corpus);
    r.post("/v1/corpus", data::create_corpus);
    r.post("/admin/v1/sync", admin::sync);
    r.patch("/admin/v1/users/{id}", admin::patch_user);
    static DOC: std::sync::LazyLock<utoipa::openapi::OpenApi> =
        std::sync::LazyLock::new(ApiDoc::openapi);
    r.docs(DOC.clone());
    r.table()
}
