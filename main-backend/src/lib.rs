//! The main backend: business data beside a read-only mirror of the auth
//! service's users. It never sees a password or any other credential, and
//! trusts no token the auth service has not confirmed.
//!
//! Map of the crate: `configuration` (every environment variable),
//! `routes` (HTTP handlers, and the list of routes), `extractors` (who is
//! calling), `validation` (token checks and their cache), `auth_client`
//! (the auth service's internal API), `sync` (webhooks, lazy sync,
//! reconciliation, revocation feed), `db` (schema and queries; `db::mirror`
//! is the only writer of auth-owned fields), `domain` (validated input),
//! `problems` (every operation's and domain error as problem details, in
//! one place: operations and domain types know no HTTP).

#![recursion_limit = "256"]

pub mod auth_client;
pub mod configuration;
pub mod crypto;
pub mod db;
pub mod domain;
pub mod extractors;
pub mod metrics;
pub mod problems;
pub mod routes;
pub mod sync;
pub mod validation;

pub use service_kit::{error, telemetry};

use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use actix_web::web;
use diesel_migrations::{embed_migrations, EmbeddedMigrations};
use shared_types::SyncHealth;

use crate::auth_client::AuthClient;
use crate::configuration::Settings;
use crate::db::DbPool;
use crate::validation::Validator;

pub const POSTGRES_MIGRATIONS: EmbeddedMigrations =
    embed_migrations!("../migrations-main/postgres");
pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations-main/sqlite");

/// Shared by every request handler.
pub struct AppState {
    pub db: DbPool,
    pub settings: Arc<Settings>,
    pub auth: AuthClient,
    pub validator: Arc<Validator>,
    /// This process's id, for leases.
    pub instance: String,
    /// The last `/health/sync` answer and when it was computed.
    pub sync_health: Mutex<Option<(std::time::Instant, SyncHealth)>>,
    /// `PATCH /v1/me` calls refused for touching an auth-owned field.
    pub metrics: Arc<metrics::MainMetrics>,
}

pub struct Application {
    server: service_kit::server::Server,
    pub state: web::Data<AppState>,
}

/// Applies pending migrations (what `main-backend migrate` does).
pub async fn migrate(settings: &Settings) -> anyhow::Result<usize> {
    db::run_migrations(
        settings.database.direct_url(),
        POSTGRES_MIGRATIONS,
        SQLITE_MIGRATIONS,
    )
    .await
}

impl Application {
    /// Migrates, listens on `settings.bind` (port 0 picks a free port), starts the
    /// background work (revocation feed, periodic reconciliation) and
    /// builds the server; `run_until_stopped` serves until SIGTERM or Ctrl-C.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let listener = service_kit::server::bind("MAIN_BIND", &settings.bind)?;
        Self::build_on(settings, listener).await
    }

    /// As `build`, on a socket bound before: one handed over at start
    /// (`LISTEN_FDS`), or a test's that must know both services' ports
    /// before either starts.
    pub async fn build_on(settings: Settings, listener: TcpListener) -> anyhow::Result<Self> {
        let applied = migrate(&settings).await?;
        if applied > 0 {
            tracing::info!(applied, "database migrations applied");
        }
        let db = DbPool::for_settings(&settings.database).await?;
        let auth = AuthClient::new(
            &settings.auth_service_url,
            settings.auth_api_key.clone(),
            settings.auth_timeout,
        )?;
        let metrics = Arc::new(metrics::MainMetrics::new());
        let validator = Arc::new(Validator::new(
            auth.clone(),
            settings.validation_ttl,
            metrics.clone(),
        ));
        let instance = uuid::Uuid::now_v7().to_string();
        let mut background = service_kit::server::Background::default();
        background.spawn(sync::revocation_poller(
            db.clone(),
            validator.clone(),
            metrics.clone(),
            settings.revocation_poll,
            background.stopped(),
        ));
        if settings.sync_transport.follows_stream() {
            let follower = sync::stream::Follower {
                db: db.clone(),
                auth: auth.clone(),
                validator: validator.clone(),
                metrics: metrics.clone(),
                instance: instance.clone(),
                max_deletes: settings.sync_max_deletes,
            };
            background.spawn(follower.run(background.stopped()));
        }
        if let Some(interval) = settings.sync_interval {
            background.spawn(sync::reconcile::periodic(
                db.clone(),
                auth.clone(),
                validator.clone(),
                metrics.clone(),
                instance.clone(),
                interval,
                settings.sync_max_deletes,
                background.stopped(),
            ));
        }

        let state = web::Data::new(AppState {
            db,
            settings: Arc::new(settings),
            auth,
            validator,
            instance,
            sync_health: Mutex::new(None),
            metrics,
        });
        let options = service_kit::server::Options {
            workers: state.settings.workers,
            max_body: state.settings.max_body_bytes,
            cors: state.settings.cors.clone(),
            cors_headers: &[],
            metrics: state.metrics.base.clone(),
        };
        let app_state = state.clone();
        let server = service_kit::server::serve(listener, options, background, move |cfg| {
            cfg.app_data(app_state.clone());
            routes::configure(cfg);
        })?;
        Ok(Self { server, state })
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// Stops the server from outside (tests, the launcher).
    pub fn handle(&self) -> service_kit::server::Handle {
        self.server.handle()
    }

    /// Serves until stopped, then stops the background work.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.run_until_stopped().await
    }
}
