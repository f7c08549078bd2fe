//! HTTP handlers only: parsing, calling `db`/`sync`, shaping answers.
//! `configure` is the one place that lists every route.

mod admin;
mod health;
mod me;
mod webhooks;

use actix_web::web;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/health/live", web::get().to(health::live))
        .route("/health/ready", web::get().to(health::ready))
        .route("/health/sync", web::get().to(health::sync))
        .route("/webhooks/auth", web::post().to(webhooks::receive))
        .route("/v1/me", web::get().to(me::get))
        .route("/v1/me", web::patch().to(me::patch))
        .route("/admin/v1/sync", web::post().to(admin::sync))
        .route("/admin/v1/users/{id}", web::patch().to(admin::patch_user));
}
