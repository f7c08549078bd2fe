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

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(webapp::index))
        .route("/account/{page}", web::get().to(webapp::account))
        .route("/app.js", web::get().to(webapp::script))
        .route("/app.css", web::get().to(webapp::style))
        .route("/app/config.json", web::get().to(webapp::config))
        .route("/health/live", web::get().to(health::live))
        .route("/health/ready", web::get().to(health::ready))
        .route("/health/sync", web::get().to(health::sync))
        .route("/webhooks/auth", web::post().to(webhooks::receive))
        .route("/v1/me", web::get().to(me::get))
        .route("/v1/me", web::patch().to(me::patch))
        .route("/v1/me/settings", web::get().to(data::get_settings))
        .route("/v1/me/settings", web::put().to(data::put_settings))
        .route("/v1/me/secrets", web::get().to(data::list_secrets))
        .route("/v1/me/secrets/{name}", web::put().to(data::put_secret))
        .route(
            "/v1/me/secrets/{name}",
            web::delete().to(data::delete_secret),
        )
        .route("/v1/users/{user_id}/tasks", web::get().to(tasks::list))
        .route("/v1/users/{user_id}/tasks", web::post().to(tasks::create))
        .route(
            "/v1/users/{user_id}/tasks/{task_id}",
            web::get().to(tasks::get),
        )
        .route(
            "/v1/users/{user_id}/tasks/{task_id}",
            web::patch().to(tasks::patch),
        )
        .route(
            "/v1/users/{user_id}/tasks/{task_id}",
            web::delete().to(tasks::delete),
        )
        .route(
            "/v1/agent-sessions",
            web::get().to(data::list_agent_sessions),
        )
        .route(
            "/v1/agent-sessions",
            web::post().to(data::create_agent_session),
        )
        .route("/v1/tool-usage", web::get().to(data::list_tool_usage))
        .route("/v1/tool-usage", web::post().to(data::create_tool_usage))
        .route("/v1/corpus", web::get().to(data::list_corpus))
        .route("/v1/corpus", web::post().to(data::create_corpus))
        .route("/admin/v1/sync", web::post().to(admin::sync))
        .route("/admin/v1/users/{id}", web::patch().to(admin::patch_user));
}
