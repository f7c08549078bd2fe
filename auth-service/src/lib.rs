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
pub mod feed;
pub mod jobs;
pub mod mail;
pub mod metrics;
pub mod mfa;
pub mod nats;
pub mod passwords;
pub mod problems;
pub mod providers;
pub mod routes;
pub mod services;
pub use service_kit::telemetry;
pub mod tokens;
pub mod webhooks;

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::web;
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
    pub feed: Arc<feed::Feed>,
    /// Service-token uses waiting for the next batched write.
    pub usage: services::service_tokens::Usage,
    /// Wake-up for the mail sender; call after committing queued mail.
    pub mail: jobs::Wakeup,
    pub metrics: Arc<metrics::AuthMetrics>,
    /// The sign-in providers (`AUTH_OAUTH_*`) and their cached discovery.
    pub providers: providers::Providers,
    /// Passkeys' relying party (`AUTH_WEBAUTHN_*`); `None`: passkeys off.
    pub webauthn: Option<webauthn_rs::Webauthn>,
}

pub struct Application {
    server: service_kit::server::Server,
    pub db: DbPool,
}

/// Applies pending migrations (what `auth-service migrate` does).
pub async fn migrate(database_url: &str) -> anyhow::Result<usize> {
    db::run_migrations(database_url, POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS).await
}

/// The passkeys' relying party: `AUTH_WEBAUTHN_RP_ID` and the origins
/// ceremonies may come from. `None` (passkeys off, said at start) when no
/// relying party id is set and the app is served at an IP address; a set
/// one that does not fit the origins stops the start.
fn relying_party(settings: &Settings) -> anyhow::Result<Option<webauthn_rs::Webauthn>> {
    use anyhow::Context;
    let Some(rp_id) = settings.webauthn_rp_id.as_deref() else {
        tracing::warn!(
            "passkeys are off: AUTH_APP_URL is an IP address, which browsers refuse as a relying party id; \
             set AUTH_WEBAUTHN_RP_ID (and AUTH_WEBAUTHN_ORIGINS) to turn them on"
        );
        return Ok(None);
    };
    let parse = |origin: &str| {
        webauthn_rs::prelude::Url::parse(origin)
            .with_context(|| format!("AUTH_WEBAUTHN_ORIGINS: `{origin}` is not a URL"))
    };
    let origins = settings
        .webauthn_origins
        .iter()
        .map(|o| parse(o))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let first = origins
        .first()
        .context("AUTH_WEBAUTHN_ORIGINS: no origin")?;
    let mut builder = webauthn_rs::WebauthnBuilder::new(rp_id, first)
        .with_context(|| {
            format!(
                "AUTH_WEBAUTHN_RP_ID `{rp_id}` does not fit the origin {first} (it must be its host or a parent domain of it)"
            )
        })?
        .rp_name(configuration::public_host(&settings.app_url));
    for origin in &origins[1..] {
        builder = builder.append_allowed_origin(origin);
    }
    builder
        .build()
        .map(Some)
        .context("AUTH_WEBAUTHN_RP_ID / AUTH_WEBAUTHN_ORIGINS do not make a relying party")
}

impl Application {
    /// Migrates, listens on `settings.bind` (port 0 picks a free port) and builds the
    /// server; `run_until_stopped` serves until SIGTERM or Ctrl-C.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let listener = service_kit::server::bind("AUTH_BIND", &settings.bind)?;
        Self::build_on(settings, listener).await
    }

    /// As `build`, on a socket bound before: one handed over at start
    /// (`LISTEN_FDS`), or a test's that must know both services' ports
    /// before either starts.
    pub async fn build_on(settings: Settings, listener: TcpListener) -> anyhow::Result<Self> {
        let applied = migrate(settings.database.direct_url()).await?;
        if applied > 0 {
            tracing::info!(applied, "database migrations applied");
        }
        let keys = Arc::new(TokenKeys::load(&settings)?);
        let db = DbPool::for_settings(&settings.database).await?;
        let hasher = tokio::task::spawn_blocking(|| PasswordHasher::new(0)).await??;
        let metrics = Arc::new(metrics::AuthMetrics::new());
        // Stopped after the last request: the webhook runner and the mail
        // sender finish their round (what they had claimed but not sent
        // goes out after the lease), the usage buffer is written.
        let mut background = service_kit::server::Background::default();
        // One wake-up after a commit that wrote an event reaches both of
        // its followers: the webhook runner and the feed's sequencer.
        let feed = Arc::new(feed::Feed::new(
            db.clone(),
            settings.events_retention_days,
            background.draining(),
        ));
        background.spawn(feed.clone().run(background.stopped()));
        let outbox = jobs::Wakeup::all(vec![feed.wakeup()]);
        if let Some(nats) = settings.nats.clone() {
            let publisher = nats::Publisher {
                db: db.clone(),
                feed: feed.clone(),
                settings: nats,
                metrics: metrics.clone(),
                holder: uuid::Uuid::now_v7().to_string(),
            };
            background.spawn(publisher.run(background.stopped()));
        }
        match settings.webhook.clone() {
            Some(target) => {
                let delivery = webhooks::Delivery::new(db.clone(), target, metrics.clone())?;
                let runner = jobs::Runner::new(db.clone(), delivery, outbox.clone());
                background.spawn(runner.run(background.stopped()));
            }
            None => tracing::warn!("AUTH_WEBHOOK_URL=off: webhook events stay pending"),
        }
        let usage = services::service_tokens::Usage::default();
        background.spawn(usage.clone().run(db.clone(), background.stopped()));
        let mail = jobs::Wakeup::default();
        let sender = jobs::Runner::new(db.clone(), mail::Sender::new(&settings)?, mail.clone());
        background.spawn(sender.run(background.stopped()));
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
        let providers =
            providers::Providers::new(&settings.oauth_providers, settings.oauth_timeout)?;
        let webauthn = relying_party(&settings)?;
        let state = web::Data::new(AppState {
            webauthn,
            providers,
            db: db.clone(),
            settings: Arc::new(settings),
            keys,
            hasher,
            outbox,
            feed,
            usage,
            mail,
            metrics,
        });
        let options = service_kit::server::Options {
            workers: state.settings.workers,
            max_body: state.settings.max_body_bytes,
            cors: state.settings.cors.clone(),
            cors_headers: &[extractors::TOKEN_TRANSPORT_HEADER],
            metrics: state.metrics.base.clone(),
        };
        let server = service_kit::server::serve(listener, options, background, move |cfg| {
            cfg.app_data(state.clone());
            routes::configure(cfg, rate_limit.as_ref());
        })?;
        Ok(Self { server, db })
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
