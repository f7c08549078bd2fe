//! HTTP handlers only: parsing, calling `db`/`tokens`, shaping answers.
//! `configure` is the one place that lists every route.

mod account;
mod admin;
mod auth;
mod events;
mod health;
mod internal;
mod me;
mod mfa;
mod oauth;
mod passkeys;

use actix_governor::{Governor, GovernorConfig};
use actix_web::middleware::Condition;
use actix_web::web;
use service_kit::docs::SecuritySchemes;
use service_kit::http::Routes;
use service_kit::route;
use utoipa::{Modify, OpenApi};

use crate::extractors::ClientAddress;

/// The per-address limiter on the public endpoints (`AUTH_RATE_LIMIT_PER_MINUTE`).
pub type RateLimit =
    GovernorConfig<ClientAddress, actix_governor::governor::middleware::NoOpMiddleware>;

/// What the OpenAPI document says beside the operations, which `routes`
/// adds from each handler's `#[utoipa::path]`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "auth-service",
        description = "Owns users, passwords, sessions, refresh tokens and every credential. \
                       Errors are RFC 9457 problem details with a stable `code`."
    ),
    tags(
        (name = "auth", description = "Sign-up, sign-in, tokens, sign-out"),
        (name = "account", description = "The signed-in user's account"),
        (name = "mfa", description = "Two-factor sign-in (TOTP)"),
        (name = "passkeys", description = "Passkeys (WebAuthn): sign-in without a password, or as the second factor"),
        (name = "oauth", description = "Sign-in with other providers (OpenID Connect, OAuth 2.0) and linked identities"),
        (name = "health", description = "Probes, metrics, public keys"),
        (name = "internal", description = "For our other services"),
        (name = "admin", description = "For administrators' programs"),
    )
)]
struct ApiDoc;

/// What `Condition` needs to hold when the limiter is off
/// (`AUTH_RATE_LIMIT_PER_MINUTE=0`); never applied.
static UNLIMITED: std::sync::LazyLock<RateLimit> = std::sync::LazyLock::new(|| {
    actix_governor::GovernorConfigBuilder::default()
        .key_extractor(ClientAddress {
            trusted: Default::default(),
        })
        .finish()
        .expect("the default quota is valid")
});

/// Every route, where its handler's `#[utoipa::path]` puts it.
fn routes(r: &mut Routes<'_>, limit: Option<&RateLimit>) {
    // Endpoints anyone can call without a credential, and those that check
    // a password again (a stolen session could guess through them): each
    // call costs a password hash or probes tokens, so they share one limit
    // per address.
    let limited = |resource: actix_web::Resource| {
        resource.wrap(Condition::new(
            limit.is_some(),
            Governor::new(limit.unwrap_or(&UNLIMITED)),
        ))
    };
    route!(r, auth::register, limited);
    route!(r, auth::login, limited);
    route!(r, account::forgot_password, limited);
    route!(r, account::reset_password, limited);
    route!(r, account::verify_email, limited);
    route!(r, account::confirm_email_change, limited);
    route!(r, account::change_password, limited);
    route!(r, account::change_email, limited);
    route!(r, mfa::enable, limited);
    route!(r, mfa::disable, limited);
    // A provider sign-in writes a state and calls out to the provider; the
    // exchange starts a session; linking asks for the password again.
    route!(r, oauth::authorize, limited);
    route!(r, oauth::callback, limited);
    route!(r, oauth::exchange, limited);
    route!(r, oauth::link, limited);
    route!(r, passkeys::login_start, limited);
    route!(r, passkeys::login_finish, limited);
    route!(r, health::live);
    route!(r, health::ready);
    route!(r, health::metrics);
    route!(r, health::jwks);
    route!(r, auth::refresh);
    route!(r, account::request_verification);
    route!(r, mfa::setup);
    route!(r, auth::logout);
    route!(r, auth::logout_all);
    route!(r, me::list_sessions);
    route!(r, me::delete_session);
    route!(r, me::me);
    route!(r, oauth::providers);
    route!(r, oauth::identities);
    route!(r, oauth::unlink);
    route!(r, passkeys::register_start);
    route!(r, passkeys::register_finish);
    route!(r, passkeys::list);
    route!(r, passkeys::remove);
    route!(r, internal::introspect);
    route!(r, events::events);
    // `count` before `{id}`, or "count" would be parsed as an id.
    route!(r, internal::count_users);
    route!(r, internal::user_digests);
    route!(r, internal::list_users);
    route!(r, internal::get_user);
    route!(r, internal::webhook_stats);
    route!(r, internal::redeliver);
    route!(r, admin::create_token);
    route!(r, admin::list_tokens);
    route!(r, admin::revoke_all_tokens);
    route!(r, admin::revoke_token);
    route!(r, admin::lock_user);
    route!(r, admin::unlock_user);
    route!(r, admin::reset_mfa);
    route!(r, admin::delete_user);
    route!(r, admin::audit);
}

/// The OpenAPI document, built once from `routes`.
pub fn openapi() -> &'static utoipa::openapi::OpenApi {
    static DOC: std::sync::LazyLock<utoipa::openapi::OpenApi> = std::sync::LazyLock::new(|| {
        let mut r = Routes::document_only();
        routes(&mut r, None);
        let mut doc = r.openapi(ApiDoc::openapi());
        SecuritySchemes {
            service: "; the internal routes also take AUTH_SERVICE_API_KEY",
        }
        .modify(&mut doc);
        doc
    });
    &DOC
}

/// Registers every route and the documents; returns the router's
/// `(METHOD, path)` table.
pub fn configure(
    cfg: &mut web::ServiceConfig,
    limit: Option<&RateLimit>,
) -> Vec<(&'static str, String)> {
    let mut r = Routes::new(cfg);
    routes(&mut r, limit);
    r.docs(openapi().clone());
    r.table()
}
