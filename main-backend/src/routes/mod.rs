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
use service_kit::docs::SecuritySchemes;
use service_kit::http::Routes;
use service_kit::route;
use utoipa::{Modify, OpenApi};

/// What the OpenAPI document says beside the operations, which `routes`
/// adds from each handler's `#[utoipa::path]`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "main-backend",
        description = "Business data beside a read-only mirror of the auth service's users. \
                       Every bearer token is confirmed by the auth service. Errors are RFC 9457 \
                       problem details with a stable `code`."
    ),
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
struct ApiDoc;

/// Every route, where its handler's `#[utoipa::path]` puts it.
fn routes(r: &mut Routes<'_>) {
    route!(r, webapp::index);
    route!(r, webapp::account);
    route!(r, webapp::script);
    route!(r, webapp::style);
    route!(r, webapp::config);
    route!(r, health::live);
    route!(r, health::ready);
    route!(r, health::sync);
    route!(r, health::metrics);
    route!(r, webhooks::receive);
    route!(r, me::get);
    route!(r, me::patch);
    route!(r, data::get_settings);
    route!(r, data::put_settings);
    route!(r, data::list_secrets);
    route!(r, data::put_secret);
    route!(r, data::delete_secret);
    route!(r, tasks::list);
    route!(r, tasks::create);
    route!(r, tasks::get);
    route!(r, tasks::patch);
    route!(r, tasks::delete);
    route!(r, data::list_agent_sessions);
    route!(r, data::create_agent_session);
    route!(r, data::list_tool_usage);
    route!(r, data::create_tool_usage);
    route!(r, data::list_corpus);
    route!(r, data::create_corpus);
    route!(r, admin::sync);
    route!(r, admin::patch_user);
}

/// The OpenAPI document, built once from `routes`.
pub fn openapi() -> &'static utoipa::openapi::OpenApi {
    static DOC: std::sync::LazyLock<utoipa::openapi::OpenApi> = std::sync::LazyLock::new(|| {
        let mut r = Routes::document_only();
        routes(&mut r);
        let mut doc = r.openapi(ApiDoc::openapi());
        SecuritySchemes { service: "" }.modify(&mut doc);
        doc
    });
    &DOC
}

/// Registers every route and the documents; returns the router's
/// `(METHOD, path)` table.
pub fn configure(cfg: &mut web::ServiceConfig) -> Vec<(&'static str, String)> {
    let mut r = Routes::new(cfg);
    routes(&mut r);
    r.docs(openapi().clone());
    r.table()
}
