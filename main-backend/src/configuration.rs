//! Settings, read from the environment (and `.env` when present) and checked
//! once at start. Every variable this service reads:
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `MAIN_BIND` | `127.0.0.1:8000` | listen address |
//! | `DATABASE_URL` | `sqlite://data/main.db` | `sqlite://PATH` or `postgres://...` |
//! | `DB_HOST`, `DB_PORT` (5432), `DB_NAME`, `DB_USER`, `DB_PASSWORD`, `DB_SSLMODE`, `DB_SSLROOTCERT` | unset | the URL's parts, as seed configurations give them; used when `DATABASE_URL` is unset |
//! | `MAIN_DATABASE_POOL_SIZE` | 16 (PostgreSQL), 8 (SQLite) | connections per process |
//! | `MAIN_DATABASE_MAX_LIFETIME_SECONDS` | 1800 | a connection older than this is closed instead of reused |
//! | `DATABASE_POOLER` | `none` | `transaction` behind PgBouncer/Supavisor in transaction mode |
//! | `DATABASE_DIRECT_URL` | the URL | straight to PostgreSQL, for migrations; required with a pooler |
//! | `AUTH_SERVICE_URL` | `http://127.0.0.1:8001` | the auth service |
//! | `AUTH_PUBLIC_URL` | `AUTH_SERVICE_URL` | where browsers reach the auth service (the web app calls it) |
//! | `CORS_ALLOWED_ORIGINS` | none | origins of browser apps on other origins allowed to call this service |
//! | `CORS_ALLOW_CREDENTIALS` | false | whether those calls may carry cookies |
//! | `AUTH_SERVICE_API_KEY` | required | bearer for the auth service's internal API |
//! | `AUTH_WEBHOOK_SECRET` | required | `whsec_<base64>`, shared with the auth service |
//! | `MAIN_SECRETS_KEY` | required | base64 of 32 random bytes; encrypts users' secrets |
//! | `VALIDATION_CACHE_TTL_SECONDS` | 300 | longest a token check is reused |
//! | `SYNC_INTERVAL_SECONDS` | 300 | periodic reconciliation; 0 turns it off |
//! | `SYNC_ALERT_THRESHOLD` | 10 | user-count drift that makes `/health/sync` degraded |
//! | `SYNC_MAX_DELETES` | the larger of 10 and 1 % of the mirror | most mirror rows one reconciliation may remove; a run that would remove more removes none (`mass_delete_refused`) |
//! | `AUTH_TIMEOUT_MS` | 2000 | longest wait for the auth service |
//! | `REVOCATION_POLL_MS` | 250 | how often each replica reads new revocations |
//! | `MAIN_MAX_BODY_BYTES` | 65536 | request body limit |
//! | `MAIN_WORKERS` | CPU count | HTTP worker threads |

use std::time::Duration;

use secrecy::SecretString;
use service_kit::config::{err, ConfigError, DatabaseSettings, DatabaseVars, Env};
use shared_types::webhook::WebhookKey;

#[derive(Clone)]
pub struct Settings {
    pub bind: String,
    pub database: DatabaseSettings,
    pub auth_service_url: String,
    /// The auth service as browsers reach it (`AUTH_PUBLIC_URL`).
    pub auth_public_url: String,
    pub cors: service_kit::config::CorsSettings,
    pub auth_api_key: SecretString,
    pub webhook_key: WebhookKey,
    pub secrets_key: std::sync::Arc<crate::crypto::SecretsKey>,
    pub validation_ttl: Duration,
    /// `None`: no periodic reconciliation (manual `POST /admin/v1/sync` only).
    pub sync_interval: Option<Duration>,
    pub sync_alert_threshold: i64,
    /// `None`: the larger of 10 and 1 % of the mirror, judged per run.
    pub sync_max_deletes: Option<i64>,
    pub auth_timeout: Duration,
    pub revocation_poll: Duration,
    /// `SYNC_TRANSPORT`: how user changes reach the mirror.
    pub sync_transport: SyncTransport,
    pub max_body_bytes: usize,
    pub workers: Option<usize>,
}

/// How user changes reach the mirror; reconciliation runs in every mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncTransport {
    /// The auth service posts signed webhooks to `/webhooks/auth`.
    Webhook,
    /// The main backend follows `/internal/v1/events` itself (the auth
    /// service needs no route to it).
    Stream,
    /// Both: whichever brings an event first applies it, the other finds
    /// it applied.
    Both,
}

impl SyncTransport {
    pub fn follows_stream(self) -> bool {
        matches!(self, Self::Stream | Self::Both)
    }
}

impl Settings {
    /// Reads and validates the settings from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    /// Reads settings through `get` (the environment in production; a map in tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(get);
        let api_key = env.secret(
            "AUTH_SERVICE_API_KEY",
            "the bearer for the auth service's internal API",
        )?;
        let webhook_secret = env.required(
            "AUTH_WEBHOOK_SECRET",
            "the whsec_<base64> secret the auth service signs with",
        )?;
        let secrets_key = env
            .required(
                "MAIN_SECRETS_KEY",
                "base64 of 32 random bytes (openssl rand -base64 32)",
            )
            .and_then(|raw| {
                crate::crypto::SecretsKey::from_base64(&raw).map_err(|e| err("MAIN_SECRETS_KEY", e))
            })?;
        let auth_service_url = env.base_url("AUTH_SERVICE_URL", "http://127.0.0.1:8001")?;
        let sync_interval = env.number("SYNC_INTERVAL_SECONDS", 0..=7 * 24 * 3600, 300)?;
        Ok(Self {
            bind: env.text("MAIN_BIND", "127.0.0.1:8000"),
            database: DatabaseSettings::from_env(
                &env,
                &DatabaseVars {
                    url: "DATABASE_URL",
                    direct_url: "DATABASE_DIRECT_URL",
                    pooler: "DATABASE_POOLER",
                    pool_size: "MAIN_DATABASE_POOL_SIZE",
                    parts: service_kit::config::DbPartVars {
                        host: "DB_HOST",
                        port: "DB_PORT",
                        name: "DB_NAME",
                        user: "DB_USER",
                        password: "DB_PASSWORD",
                        sslmode: "DB_SSLMODE",
                        sslrootcert: "DB_SSLROOTCERT",
                    },
                    max_lifetime: "MAIN_DATABASE_MAX_LIFETIME_SECONDS",
                },
                "sqlite://data/main.db",
            )?,
            auth_public_url: env.base_url("AUTH_PUBLIC_URL", &auth_service_url)?,
            auth_service_url,
            cors: service_kit::config::CorsSettings::from_env(&env)?,
            auth_api_key: api_key.into(),
            webhook_key: WebhookKey::parse(&webhook_secret)
                .map_err(|e| err("AUTH_WEBHOOK_SECRET", e.0))?,
            secrets_key: std::sync::Arc::new(secrets_key),
            validation_ttl: env.seconds("VALIDATION_CACHE_TTL_SECONDS", 1..=24 * 3600, 300)?,
            sync_interval: (sync_interval > 0).then(|| Duration::from_secs(sync_interval)),
            sync_alert_threshold: env.number("SYNC_ALERT_THRESHOLD", 0..=i64::MAX, 10)?,
            sync_max_deletes: env.opt_number("SYNC_MAX_DELETES", 0..=i64::MAX)?,
            auth_timeout: env.millis("AUTH_TIMEOUT_MS", 10..=60_000, 2000)?,
            revocation_poll: env.millis("REVOCATION_POLL_MS", 10..=10_000, 250)?,
            sync_transport: env
                .choice(
                    "SYNC_TRANSPORT",
                    &[
                        ("webhook", SyncTransport::Webhook),
                        ("stream", SyncTransport::Stream),
                        ("both", SyncTransport::Both),
                    ],
                )?
                .unwrap_or(SyncTransport::Webhook),
            max_body_bytes: env.number(
                "MAIN_MAX_BODY_BYTES",
                1024..=16 * 1024 * 1024,
                64 * 1024,
            )?,
            workers: env.opt_number("MAIN_WORKERS", 1..=512)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const KEY: &str = "0123456789abcdef0123456789abcdef";
    /// Stands for a freshly generated webhook secret (see `settings`).
    const WH: &str = "generated";

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let wh = service_kit::testing::webhook_secret();
        let pairs: Vec<(&str, &str)> = pairs
            .iter()
            .map(|&(k, v)| (k, if v == WH { wh.as_str() } else { v }))
            .collect();
        let mut map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        map.entry("MAIN_SECRETS_KEY".into())
            .or_insert_with(service_kit::testing::secrets_key);
        map.retain(|_, v| !v.is_empty());
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_follow_the_contract() {
        let s =
            settings(&[("AUTH_SERVICE_API_KEY", KEY), ("AUTH_WEBHOOK_SECRET", WH)]).expect("valid");
        assert_eq!(s.bind, "127.0.0.1:8000");
        assert_eq!(s.database.url, "sqlite://data/main.db");
        assert_eq!(s.auth_service_url, "http://127.0.0.1:8001");
        assert_eq!(s.validation_ttl, Duration::from_secs(300));
        assert_eq!(s.sync_interval, Some(Duration::from_secs(300)));
        assert_eq!(s.sync_alert_threshold, 10);
        assert_eq!(s.auth_timeout, Duration::from_millis(2000));
    }

    #[test]
    fn missing_or_weak_secrets_name_the_variable() {
        let e = settings(&[("AUTH_WEBHOOK_SECRET", WH)])
            .err()
            .expect("fails");
        assert_eq!(e.var, "AUTH_SERVICE_API_KEY");
        let e = settings(&[
            ("AUTH_SERVICE_API_KEY", "short"),
            ("AUTH_WEBHOOK_SECRET", WH),
        ])
        .err()
        .expect("fails");
        assert_eq!(e.var, "AUTH_SERVICE_API_KEY");
        let e = settings(&[("AUTH_SERVICE_API_KEY", KEY)])
            .err()
            .expect("fails");
        assert_eq!(e.var, "AUTH_WEBHOOK_SECRET");
        let e = settings(&[
            ("AUTH_SERVICE_API_KEY", KEY),
            ("AUTH_WEBHOOK_SECRET", "plain"),
        ])
        .err()
        .expect("fails");
        assert_eq!(e.var, "AUTH_WEBHOOK_SECRET");
        let e = settings(&[
            ("AUTH_SERVICE_API_KEY", KEY),
            ("AUTH_WEBHOOK_SECRET", WH),
            ("AUTH_TIMEOUT_MS", "0"),
        ])
        .err()
        .expect("fails");
        assert_eq!(e.var, "AUTH_TIMEOUT_MS");
        for bad in ["", "not base64!", "c2hvcnQ="] {
            let e = settings(&[
                ("AUTH_SERVICE_API_KEY", KEY),
                ("AUTH_WEBHOOK_SECRET", WH),
                ("MAIN_SECRETS_KEY", bad),
            ])
            .err()
            .expect("fails");
            assert_eq!(e.var, "MAIN_SECRETS_KEY", "{bad:?}");
        }
    }
}
