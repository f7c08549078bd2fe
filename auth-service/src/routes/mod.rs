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
use service_kit::docs::{ProblemResponses, SecuritySchemes};
use service_kit::http::Routes;
use utoipa::OpenApi;

use crate::extractors::ClientAddress;

/// The per-address limiter on the public endpoints (`AUTH_RATE_LIMIT_PER_MINUTE`).
pub type RateLimit =
    GovernorConfig<ClientAddress, actix_governor::governor::middleware::NoOpMiddleware>;

/// The OpenAPI document: every handler's `#[utoipa::path]`, listed here.
/// A test holds it against the table `configure` returns.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "auth-service",
        description = "Owns users, passwords, sessions, refresh tokens and every credential. \
                       Errors are RFC 9457 problem details with a stable `code`."
    ),
    paths(
        auth::register, auth::login, auth::refresh, auth::logout, auth::logout_all,
        account::change_password, account::forgot_password, account::reset_password,
        account::request_verification, account::verify_email, account::change_email,
        account::confirm_email_change,
        mfa::setup, mfa::enable, mfa::disable,
        me::me, me::list_sessions, me::delete_session,
        health::live, health::ready, health::metrics, health::jwks,
        internal::introspect, internal::count_users, internal::list_users, internal::get_user,
        internal::webhook_stats, internal::redeliver,
        admin::create_token, admin::list_tokens, admin::revoke_all_tokens, admin::revoke_token,
        admin::lock_user, admin::unlock_user, admin::reset_mfa, admin::delete_user, admin::audit,
    ),
    modifiers(&SecuritySchemes, &ProblemResponses),
    tags(
        (name = "auth", description = "Sign-up, sign-in, tokens, sign-out"),
        (name = "account", description = "The signed-in user's account"),
        (name = "mfa", description = "Two-factor sign-in (TOTP)"),
        (name = "health", description = "Probes, metrics, public keys"),
        (name = "internal", description = "For our other services"),
        (name = "admin", description = "For administrators' programs"),
    )
)]
pub struct ApiDoc;

pub fn configure(
    cfg: &mut web::ServiceConfig,
    limit: Option<&RateLimit>,
) -> Vec<(&'static str, &'static str)> {
    let mut r = Routes::new(cfg);
    // Endpoints anyone can call without a credential, and those that check
    // a password again (a stolen session could guess through them): each
    // call costs a password hash or probes tokens, so they share one limit
    // per address.
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
        (
            "/v1/password/change",
            web::post().to(account::change_password),
        ),
        ("/v1/email/change", web::post().to(account::change_email)),
        ("/v1/mfa/totp/enable", web::post().to(mfa::enable)),
        ("/v1/mfa/totp/disable", web::post().to(mfa::disable)),
    ];
    for (path, route) in limited {
        let resource = web::resource(path)
            .route(route)
            .default_service(service_kit::http::method_not_allowed("POST"));
        match limit {
            Some(limit) => r.resource("POST", path, resource.wrap(Governor::new(limit))),
            None => r.resource("POST", path, resource),
        };
    }
    r.get("/health/live", health::live);
    r.get("/health/ready", health::ready);
    r.get("/metrics", health::metrics);
    r.get("/.well-known/jwks.json", health::jwks);
    r.post("/v1/token/refresh", auth::refresh);
    r.post("/v1/email/verify/request", account::request_verification);
    r.post("/v1/mfa/totp/setup", mfa::setup);
    r.post("/v1/logout", auth::logout);
    r.post("/v1/logout/all", auth::logout_all);
    r.get("/v1/sessions", me::list_sessions);
    r.delete("/v1/sessions/{id}", me::delete_session);
    r.get("/v1/me", me::me);
    r.post("/internal/v1/introspect", internal::introspect);
    // `count` before `{id}`, or "count" would be parsed as an id.
    r.get("/internal/v1/users/count", internal::count_users);
    r.get("/internal/v1/users", internal::list_users);
    r.get("/internal/v1/users/{id}", internal::get_user);
    r.get("/internal/v1/webhooks/stats", internal::webhook_stats);
    r.post("/internal/v1/webhooks/redeliver", internal::redeliver);
    r.post("/admin/v1/service-tokens", admin::create_token);
    r.get("/admin/v1/service-tokens", admin::list_tokens);
    r.post(
        "/admin/v1/service-tokens/revoke-all",
        admin::revoke_all_tokens,
    );
    r.delete("/admin/v1/service-tokens/{id}", admin::revoke_token);
    r.post("/admin/v1/users/{id}/lock", admin::lock_user);
    r.post("/admin/v1/users/{id}/unlock", admin::unlock_user);
    r.post("/admin/v1/users/{id}/mfa/reset", admin::reset_mfa);
    r.delete("/admin/v1/users/{id}", admin::delete_user);
    r.get("/admin/v1/audit", admin::audit);
    static DOC: std::sync::LazyLock<utoipa::openapi::OpenApi> =
        std::sync::LazyLock::new(ApiDoc::openapi);
    r.docs(DOC.clone());
    r.table()
}
