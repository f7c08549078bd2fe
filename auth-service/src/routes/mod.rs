//! HTTP handlers only: parsing, calling `db`/`tokens`, shaping answers.
//! `configure` is the one place that lists every route.

mod account;
mod admin;
mod auth;
mod health;
mod internal;
mod me;
mod mfa;

use actix_governor::{Governor, GovernorConfig};
use actix_web::web;

use crate::extractors::ClientAddress;

/// The per-address limiter on the public endpoints (`AUTH_RATE_LIMIT_PER_MINUTE`).
pub type RateLimit =
    GovernorConfig<ClientAddress, actix_governor::governor::middleware::NoOpMiddleware>;

pub fn configure(cfg: &mut web::ServiceConfig, limit: Option<&RateLimit>) {
    // Endpoints anyone can call without a credential: each call costs a
    // password hash or probes tokens, so they share one limit per address.
    let limited = [
        ("/v1/register", web::post().to(auth::register)),
        ("/v1/login", web::post().to(auth::login)),
        (
            "/v1/password/forgot",
            web::post().to(account::forgot_password),
        ),
        (
            "/v1/password/reset",
            web::post().to(account::reset_password),
        ),
        ("/v1/email/verify", web::post().to(account::verify_email)),
        (
            "/v1/email/change/confirm",
            web::post().to(account::confirm_email_change),
        ),
    ];
    for (path, route) in limited {
        let resource = web::resource(path).route(route);
        match limit {
            Some(limit) => cfg.service(resource.wrap(Governor::new(limit))),
            None => cfg.service(resource),
        };
    }
    cfg.route("/health/live", web::get().to(health::live))
        .route("/health/ready", web::get().to(health::ready))
        .route("/.well-known/jwks.json", web::get().to(health::jwks))
        .route("/v1/token/refresh", web::post().to(auth::refresh))
        .route(
            "/v1/password/change",
            web::post().to(account::change_password),
        )
        .route(
            "/v1/email/verify/request",
            web::post().to(account::request_verification),
        )
        .route("/v1/email/change", web::post().to(account::change_email))
        .route("/v1/mfa/totp/setup", web::post().to(mfa::setup))
        .route("/v1/mfa/totp/enable", web::post().to(mfa::enable))
        .route("/v1/mfa/totp/disable", web::post().to(mfa::disable))
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
