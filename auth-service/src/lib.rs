//! The auth service: the only owner of users, passwords, sessions, refresh
//! tokens and every other credential.
//!
//! Map of the crate:
//! - `routes`: HTTP handlers (parse, call one operation, shape the answer)
//!   and the list of routes; `extractors`: who is calling;
//! - `services`: the operations (sign-up, sign-in, sessions, account
//!   changes, MFA, admin actions, service tokens), with no HTTP in them;
//!   `problems`: every operation's error as problem details, in one place;
//! - `attempts`: the exact brute-force accounting around every check of a
//!   secret (its counters and locks are `db::lockouts`);
//! - `domain`: validated input; `db`: schema and queries for both
//!   PostgreSQL and SQLite;
//! - `tokens` (JWTs and opaque tokens), `passwords` (argon2id off the
//!   async workers), `mfa` (TOTP and recovery codes);
//! - `jobs`: one leased job queue for everything sent in the background
//!   (its table is `db::jobs`); the kinds of job are `webhooks` (delivering
//!   the outbox, `db::outbox`) and `mail` (queued by `db::mail`);
//! - `configuration` (every environment variable), `cli` (the
//!   `service-token` commands), `error` (problem details), `telemetry`
//!   (logs and request ids).

#![recursion_limit = "256"]

pub mod attempts;
pub mod cli;
pub mod configuration;
pub mod db;
pub mod domain;
pub use service_kit::error;
pub mod extractors;
pub mod jobs;
pub mod mail;
pub mod metrics;
pub mod mfa;
pub mod passwords;
pub mod problems;
pub mod routes;
pub mod services;
pub use service_kit::telemetry;
pub mod tokens;
pub mod webhooks;

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{middleware, web, App, HttpServer};
use diesel_migrations::{embed_migrations, EmbeddedMigrations};

use crate::configuration::Settings;
use crate::db::DbPool;
use crate::passwords::PasswordHasher;
use crate::tokens::TokenKeys;

pub const POSTGRES_MIGRATIONS: EmbeddedMigrations =
    embed_migrations!("../migrations-auth/postgres");
pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations-auth/sqlite");

/// Shared by every request handler.
pub struct AppState {
    pub db: DbPool,
    pub settings: Arc<Settings>,
    pub keys: Arc<TokenKeys>,
    pub hasher: PasswordHasher,
    /// Wake-up for the webhook deliveries; call after committing events.
    pub outbox: jobs::Wakeup,
    /// Service-token uses waiting for the next batched write.
    pub usage: services::service_tokens::Usage,
    /// Wake-up for the mail sender; call after committing queued mail.
    pub mail: jobs::Wakeup,
    pub metrics: Arc<metrics::AuthMetrics>,
}

pub struct Application {
    port: u16,
    server: Server,
    pub db: DbPool,
    worker: Option<tokio::task::JoinHandle<()>>,
    usage_flusher: tokio::task::JoinHandle<()>,
    mail_sender: tokio::task::JoinHandle<()>,
    stop_worker: tokio::sync::watch::Sender<bool>,
}

/// Applies pending migrations (what `auth-service migrate` does).
pub async fn migrate(database_url: &str) -> anyhow::Result<usize> {
    db::run_migrations(database_url, POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS).await
}

impl Application {
    /// Migrates, binds `settings.bind` (port 0 picks a free port) and builds
    /// the server; `run_until_stopped` serves until SIGTERM or Ctrl-C.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let applied = migrate(settings.database.direct_url()).await?;
        if applied > 0 {
            tracing::info!(applied, "database migrations applied");
        }
        let keys = Arc::new(TokenKeys::load(&settings)?);
        let db = DbPool::for_settings(&settings.database).await?;
        let hasher = tokio::task::spawn_blocking(|| PasswordHasher::new(0)).await??;
        let listener = TcpListener::bind(&settings.bind)
            .map_err(|e| anyhow::anyhow!("AUTH_BIND: cannot listen on {}: {e}", settings.bind))?;
        let port = listener.local_addr()?.port();
        let outbox = jobs::Wakeup::default();
        let metrics = Arc::new(metrics::AuthMetrics::new());
        let (stop_worker, stopped) = tokio::sync::watch::channel(false);
        let worker = match settings.webhook.clone() {
            Some(target) => {
                let delivery = webhooks::Delivery::new(db.clone(), target, metrics.clone())?;
                let runner = jobs::Runner::new(db.clone(), delivery, outbox.clone());
                Some(tokio::spawn(runner.run(stopped)))
            }
            None => {
                tracing::warn!("AUTH_WEBHOOK_URL=off: webhook events stay pending");
                None
            }
        };
        let usage = services::service_tokens::Usage::default();
        let usage_flusher = tokio::spawn(usage.clone().run(db.clone(), stop_worker.subscribe()));
        let mail = jobs::Wakeup::default();
        let mail_sender = tokio::spawn(
            jobs::Runner::new(db.clone(), mail::Sender::new(&settings)?, mail.clone())
                .run(stop_worker.subscribe()),
        );
        // One limiter for every worker thread, keyed by client address.
        let rate_limit = match settings.rate_limit_per_minute {
            0 => None,
            n => actix_governor::GovernorConfigBuilder::default()
                .key_extractor(extractors::ClientAddress {
                    trusted: Arc::new(settings.trusted_proxies.clone()),
                })
                .period(std::time::Duration::from_secs(60) / n)
                .burst_size(n)
                .finish(),
        };
        let state = web::Data::new(AppState {
            db: db.clone(),
            settings: Arc::new(settings),
            keys,
            hasher,
            outbox,
            usage,
            mail,
            metrics,
        });
        let base_metrics = web::Data::new(state.metrics.base.clone());
        let max_body = state.settings.max_body_bytes;
        let workers = state.settings.workers;
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(base_metrics.clone())
                .wrap(middleware::from_fn(service_kit::metrics::observe_requests))
                .wrap(service_kit::http::cors(&state.settings.cors))
                .wrap(middleware::from_fn(telemetry::request_span))
                .configure(|cfg| service_kit::http::configure_errors(cfg, max_body))
                .configure(|cfg| {
                    routes::configure(cfg, rate_limit.as_ref());
                })
        });
        let server = match workers {
            Some(n) => server.workers(n),
            None => server,
        };
        let server = server.listen(listener)?.shutdown_timeout(30).run();
        Ok(Self {
            port,
            server,
            db,
            worker,
            usage_flusher,
            mail_sender,
            stop_worker,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server from outside (tests, the launcher).
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serves until the server is stopped (SIGTERM/Ctrl-C: in-flight
    /// requests finish), then stops the webhook worker after its current
    /// round (anything it had claimed but not sent goes out after the
    /// lease), writes the service-token usage still buffered and lets the
    /// mail sender finish its round.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self.server.await;
        let _ = self.stop_worker.send(true);
        if let Some(worker) = self.worker {
            let _ = worker.await;
        }
        let _ = self.usage_flusher.await;
        let _ = self.mail_sender.await;
        served
    }
}
