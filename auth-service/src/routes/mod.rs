//! HTTP handlers only: parsing, calling `db`/`tokens`, shaping answers.
//! `configure` is the one place that lists every route.

mod admin;
mod auth;
mod health;
mod internal;
mod me;

use actix_web::web;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/health/live", web::get().to(health::live))
        .route("/health/ready", web::get().to(health::ready))
        .route("/.well-known/jwks.json", web::get().to(health::jwks))
        .route("/v1/register", web::post().to(auth::register))
        .route("/v1/login", web::post().to(auth::login))
        .route("/v1/token/refresh", web::post().to(auth::refresh))
        .route("/v1/logout", web::post().to(auth::logout))
        .route("/v1/logout/all", web::post().to(auth::logout_all))
        .route("/v1/sessions", web::get().to(me::list_sessions))
        .route("/v1/sessions/{id}", web::delete().to(me::delete_session))
        .route("/v1/me", web::get().to(me::me))
        .route(
            "/internal/v1/introspect",
            web::post().to(internal::introspect),
        )
        // `count` before `{id}`, or "count" would be parsed as an id.
        .route(
            "/internal/v1/users/count",
            web::get().to(internal::count_users),
        )
        .route("/internal/v1/users", web::get().to(internal::list_users))
        .route("/internal/v1/users/{id}", web::get().to(internal::get_user))
        .route(
            "/internal/v1/webhooks/stats",
            web::get().to(internal::webhook_stats),
        )
        .route(
            "/internal/v1/webhooks/redeliver",
            web::post().to(internal::redeliver),
        )
        .route(
            "/admin/v1/service-tokens",
            web::post().to(admin::create_token),
        )
        .route(
            "/admin/v1/service-tokens",
            web::get().to(admin::list_tokens),
        )
        .route(
            "/admin/v1/service-tokens/revoke-all",
            web::post().to(admin::revoke_all_tokens),
        )
        .route(
            "/admin/v1/service-tokens/{id}",
            web::delete().to(admin::revoke_token),
        )
        .route(
            "/admin/v1/users/{id}/lock",
            web::post().to(admin::lock_user),
        )
        .route(
            "/admin/v1/users/{id}/unlock",
            web::post().to(admin::unlock_user),
        )
        .route("/admin/v1/users/{id}", web::delete().to(admin::delete_user))
        .route("/admin/v1/audit", web::get().to(admin::audit));
}
