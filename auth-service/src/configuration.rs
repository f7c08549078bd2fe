//! Settings, read from the environment (and `.env` when present) and checked
//! once at start. Every variable of the contract that this service reads:
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `AUTH_BIND` | `127.0.0.1:8001` | listen address |
//! | `AUTH_DATABASE_URL` | `sqlite://data/auth.db` | `sqlite://PATH` or `postgres://...` |
//! | `AUTH_DB_HOST`, `AUTH_DB_PORT` (5432), `AUTH_DB_NAME`, `AUTH_DB_USER`, `AUTH_DB_PASSWORD`, `AUTH_DB_SSLMODE`, `AUTH_DB_SSLROOTCERT` | unset | the URL's parts, as seed configurations give them; used when `AUTH_DATABASE_URL` is unset |
//! | `AUTH_DATABASE_POOL_SIZE` | 16 (PostgreSQL), 8 (SQLite) | connections per process |
//! | `AUTH_DATABASE_MAX_LIFETIME_SECONDS` | 1800 | a connection older than this is closed instead of reused |
//! | `AUTH_DATABASE_POOLER` | `none` | `transaction` behind PgBouncer/Supavisor in transaction mode |
//! | `AUTH_DATABASE_DIRECT_URL` | the URL | straight to PostgreSQL, for migrations; required with a pooler |
//! | `AUTH_JWT_ALGORITHM` | `EdDSA` | or `HS256` |
//! | `AUTH_JWT_PRIVATE_KEY_FILE` | required for EdDSA | Ed25519 PKCS#8 PEM |
//! | `AUTH_JWT_PREVIOUS_KEY_FILES` | none | comma-separated PEMs of retired EdDSA keys: their tokens still verify |
//! | `AUTH_JWT_SECRET` | required for HS256 | at least 32 bytes |
//! | `JWT_ACCESS_TOKEN_EXPIRE_MINUTES` | 30 | |
//! | `JWT_REFRESH_TOKEN_EXPIRE_DAYS` | 7 | |
//! | `AUTH_ISSUER` | `AUTH_PUBLIC_URL` | `iss` claim |
//! | `AUTH_AUDIENCE` | `main-backend` | `aud` claim |
//! | `AUTH_SERVICE_API_KEY` | required | internal callers' bearer, at least 32 bytes |
//! | `AUTH_WEBHOOK_URL` | `http://127.0.0.1:8000/webhooks/auth` | `off` keeps events pending, undelivered |
//! | `AUTH_WEBHOOK_SECRET` | required unless delivery is off | `whsec_<base64>` |
//! | `AUTH_WEBHOOK_GIVE_UP_SECONDS` | 86400 | retry an event this long, then mark it failed |
//! | `AUTH_WEBHOOK_BACKOFF_MS` | 1000 | first retry delay (doubles, capped at 1 h, jittered) |
//! | `AUTH_PUBLIC_URL` | `http://127.0.0.1:8001` | where browsers reach this service |
//! | `AUTH_APP_URL` | `AUTH_PUBLIC_URL` | base of the links in mail: the web app serving `/account/...` pages (the main backend) |
//! | `AUTH_COOKIE_SECURE` | true when `AUTH_PUBLIC_URL` is https | the refresh cookie's `Secure` flag |
//! | `CORS_ALLOWED_ORIGINS` | none | origins of browser apps allowed to call this service |
//! | `CORS_ALLOW_CREDENTIALS` | false | let those origins send and receive the refresh cookie |
//! | `SMTP_URL` | unset | mail over SMTP when set |
//! | `AUTH_MAIL_OUTBOX` | `data/mail.jsonl` | mail as JSON lines otherwise |
//! | `AUTH_LOCKOUT_THRESHOLD` | 5 | |
//! | `AUTH_LOCKOUT_MINUTES` | 15 | |
//! | `AUTH_REFRESH_REUSE_GRACE_SECONDS` | 10 | |
//! | `AUTH_TRUSTED_PROXIES` | none | comma-separated CIDRs |
//! | `AUTH_ALLOWED_EMAIL_DOMAINS` | any | comma-separated domains; registration and email change to any other get 422 `email_not_allowed` (exact domains: list subdomains too) |
//! | `AUTH_OAUTH_PROVIDERS` | none | comma-separated provider names (`google,github`); each reads `AUTH_OAUTH_<NAME>_CLIENT_ID`, `_CLIENT_SECRET`, and `_ISSUER` (OpenID Connect) or `_AUTHORIZATION_URL`, `_TOKEN_URL`, `_USERINFO_URL` (OAuth 2.0; `_EMAILS_URL`, `_SUBJECT_FIELD`), and optionally `_SCOPES`, `_DISPLAY_NAME` (`crate::providers`) |
//! | `AUTH_OAUTH_TIMEOUT_SECONDS` | 10 | deadline of each request to a provider |
//! | `AUTH_WEBAUTHN_RP_ID` | the host of `AUTH_APP_URL` | passkeys' relying party id: a registrable domain suffix of the origins (`example.com` for `app.example.com`) |
//! | `AUTH_WEBAUTHN_ORIGINS` | the origin of `AUTH_APP_URL` | comma-separated origins passkey ceremonies may come from |
//! | `AUTH_SECRETS_KEY` | required (development: derived from `AUTH_SERVICE_API_KEY`) | base64 of 32 bytes; seals TOTP secrets and queued mail, and keys refresh-token successors |
//! | `AUTH_ENVIRONMENT` | `production` | `development` (the launcher sets it) lets `AUTH_SECRETS_KEY` be derived |
//! | `AUTH_MAIL_FROM` | `no-reply@` + host of `AUTH_PUBLIC_URL` | sender of every mail |
//! | `AUTH_RATE_LIMIT_PER_MINUTE` | 60 | requests per client address per minute on register, login, forgot, reset, verify, and the password-checking account changes (password and email change, TOTP enable and disable; burst of the same size); 0 turns it off |
//! | `AUTH_MAX_BODY_BYTES` | 65536 | request body limit |
//! | `AUTH_WORKERS` | CPU count | HTTP worker threads |

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use service_kit::crypto::SealingKey;

use secrecy::SecretString;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtAlgorithm {
    EdDSA,
    HS256,
}

#[derive(Clone)]
pub enum JwtKeySource {
    /// Path of an Ed25519 PKCS#8 PEM file.
    Ed25519PemFile(PathBuf),
    /// HS256 shared secret; its UTF-8 bytes are the key.
    HmacSecret(SecretString),
}

#[derive(Clone)]
pub struct Settings {
    pub bind: String,
    pub database: DatabaseSettings,
    pub jwt_key: JwtKeySource,
    /// Retired EdDSA signing keys (PEM files): tokens they signed verify
    /// until they expire, and the JWKS lists them; nothing new is signed.
    pub previous_jwt_keys: Vec<PathBuf>,
    pub access_token_minutes: i64,
    pub refresh_token_days: i64,
    pub issuer: String,
    pub audience: String,
    pub service_api_key: SecretString,
    /// Where and how events are delivered; `None` when `AUTH_WEBHOOK_URL=off`.
    pub webhook: Option<WebhookTarget>,
    pub public_url: String,
    /// `scheme://host[:port]` of `public_url`: pages of this service may use
    /// cookie mode without being listed in `CORS_ALLOWED_ORIGINS`.
    pub public_origin: Option<String>,
    /// Base of the links in mail (`AUTH_APP_URL`).
    pub app_url: String,
    /// The refresh cookie's `Secure` attribute.
    pub cookie_secure: bool,
    pub cors: service_kit::config::CorsSettings,
    pub smtp_url: Option<SecretString>,
    pub mail_outbox: PathBuf,
    pub lockout_threshold: u32,
    pub lockout_minutes: i64,
    /// How long the event feed keeps events (`AUTH_EVENTS_RETENTION_DAYS`).
    pub events_retention_days: i64,
    /// Where events are also published (`AUTH_EVENTS_NATS_*`); `None`
    /// when `AUTH_EVENTS_NATS_URL` is unset.
    pub nats: Option<NatsSettings>,
    pub refresh_reuse_grace_seconds: i64,
    pub trusted_proxies: Vec<Cidr>,
    /// `None`: any domain; otherwise the only ones an account's email may
    /// have (lower case, exact match).
    pub allowed_email_domains: Option<Vec<String>>,
    /// Sign-in with other providers (`AUTH_OAUTH_*`), in the listed order.
    pub oauth_providers: Vec<crate::providers::ProviderSettings>,
    /// Deadline of every request to a provider.
    pub oauth_timeout: std::time::Duration,
    /// Passkeys: the relying party id (a host name; browsers refuse an IP).
    /// `None` when unset and the app is served at an IP address: passkeys
    /// are then off (the launcher's 127.0.0.1; open the app at localhost
    /// with `AUTH_WEBAUTHN_RP_ID=localhost` to use them).
    pub webauthn_rp_id: Option<String>,
    /// Passkeys: the origins a ceremony may come from.
    pub webauthn_origins: Vec<String>,
    /// Seals TOTP secrets and mail waiting in the queue.
    pub secrets_key: Arc<SealingKey>,
    pub mail_from: lettre::message::Mailbox,
    /// Per client address on the public endpoints; 0 is off.
    pub rate_limit_per_minute: u32,
    pub max_body_bytes: usize,
    pub workers: Option<usize>,
}

pub use service_kit::config::{check_secret, ConfigError, MIN_SECRET_BYTES};
use service_kit::config::{err, DatabaseSettings, DatabaseVars, Env};
use shared_types::webhook::WebhookKey;

/// The webhook receiver and the retry policy.
#[derive(Clone)]
pub struct WebhookTarget {
    pub url: String,
    pub key: WebhookKey,
    /// After a failed attempt on an event older than this, it is marked `failed`.
    pub give_up_after: std::time::Duration,
    /// First retry delay; each further retry doubles it (capped at an hour), with jitter.
    pub backoff_base: std::time::Duration,
}

impl std::fmt::Debug for WebhookTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookTarget")
            .field("url", &self.url)
            .field("give_up_after", &self.give_up_after)
            .field("backoff_base", &self.backoff_base)
            .finish_non_exhaustive()
    }
}

/// The database variables, alone: what the command line needs, so that
/// `service-token create` works without the server's secrets.
pub fn database(get: impl Fn(&str) -> Option<String>) -> Result<DatabaseSettings, ConfigError> {
    DatabaseSettings::from_env(
        &Env(get),
        &DatabaseVars {
            url: "AUTH_DATABASE_URL",
            direct_url: "AUTH_DATABASE_DIRECT_URL",
            pooler: "AUTH_DATABASE_POOLER",
            pool_size: "AUTH_DATABASE_POOL_SIZE",
            parts: service_kit::config::DbPartVars {
                host: "AUTH_DB_HOST",
                port: "AUTH_DB_PORT",
                name: "AUTH_DB_NAME",
                user: "AUTH_DB_USER",
                password: "AUTH_DB_PASSWORD",
                sslmode: "AUTH_DB_SSLMODE",
                sslrootcert: "AUTH_DB_SSLROOTCERT",
            },
            max_lifetime: "AUTH_DATABASE_MAX_LIFETIME_SECONDS",
        },
        "sqlite://data/auth.db",
    )
}

/// Reads one variable from the process environment; empty counts as unset.
pub fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Settings {
    /// Reads and validates the settings from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(env_var)
    }

    /// Reads settings through `get` (the environment in production; a map in tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(get);
        let public_url = env.http_url("AUTH_PUBLIC_URL", "http://127.0.0.1:8001")?;
        let algorithm = env
            .choice(
                "AUTH_JWT_ALGORITHM",
                &[
                    ("EdDSA", JwtAlgorithm::EdDSA),
                    ("HS256", JwtAlgorithm::HS256),
                ],
            )?
            .unwrap_or(JwtAlgorithm::EdDSA);
        let jwt_key = match algorithm {
            JwtAlgorithm::EdDSA => JwtKeySource::Ed25519PemFile(
                env.required(
                    "AUTH_JWT_PRIVATE_KEY_FILE",
                    "for EdDSA (an Ed25519 PKCS#8 PEM file)",
                )?
                .into(),
            ),
            JwtAlgorithm::HS256 => {
                JwtKeySource::HmacSecret(env.secret("AUTH_JWT_SECRET", "for HS256")?.into())
            }
        };
        let previous_jwt_keys: Vec<PathBuf> = env
            .list("AUTH_JWT_PREVIOUS_KEY_FILES")
            .unwrap_or_default()
            .into_iter()
            .map(PathBuf::from)
            .collect();
        if !previous_jwt_keys.is_empty() && algorithm != JwtAlgorithm::EdDSA {
            return Err(err(
                "AUTH_JWT_PREVIOUS_KEY_FILES",
                "only for EdDSA keys (an HS256 secret is rotated by changing it)",
            ));
        }
        let service_api_key = env.secret(
            "AUTH_SERVICE_API_KEY",
            "the bearer our other services call the internal API with",
        )?;
        // Delivery is on unless AUTH_WEBHOOK_URL is `off`; then events
        // stay pending in the outbox (reconciliation still syncs the mirror).
        let webhook = match env.get("AUTH_WEBHOOK_URL").as_deref() {
            Some("off") => None,
            _ => {
                let secret = env.required(
                    "AUTH_WEBHOOK_SECRET",
                    "to sign webhooks (whsec_<base64>); or set AUTH_WEBHOOK_URL=off",
                )?;
                Some(WebhookTarget {
                    url: env.http_url("AUTH_WEBHOOK_URL", "http://127.0.0.1:8000/webhooks/auth")?,
                    key: WebhookKey::parse(&secret).map_err(|e| err("AUTH_WEBHOOK_SECRET", e.0))?,
                    give_up_after: env.seconds(
                        "AUTH_WEBHOOK_GIVE_UP_SECONDS",
                        1..=30 * 24 * 3600,
                        24 * 3600,
                    )?,
                    backoff_base: env.millis("AUTH_WEBHOOK_BACKOFF_MS", 1..=3_600_000, 1000)?,
                })
            }
        };
        let allowed_email_domains = match env.list("AUTH_ALLOWED_EMAIL_DOMAINS") {
            None => None,
            Some(domains) => {
                let domains: Vec<String> = domains
                    .iter()
                    .map(|d| d.trim_start_matches('@').to_lowercase())
                    .collect();
                // A domain that could not be an email's (checked the way
                // `Email::parse` checks one) is a typo, not a policy.
                if let Some(bad) = domains
                    .iter()
                    .find(|d| crate::domain::Email::parse(&format!("x@{d}")).is_err())
                {
                    return Err(err(
                        "AUTH_ALLOWED_EMAIL_DOMAINS",
                        format!("`{bad}` is not a domain (comma-separated, e.g. example.com,example.org)"),
                    ));
                }
                if domains.is_empty() {
                    return Err(err(
                        "AUTH_ALLOWED_EMAIL_DOMAINS",
                        "lists no domain; leave it unset to allow every domain",
                    ));
                }
                Some(domains)
            }
        };
        let trusted_proxies = env
            .list("AUTH_TRUSTED_PROXIES")
            .unwrap_or_default()
            .iter()
            .map(|s| {
                Cidr::parse(s)
                    .ok_or_else(|| err("AUTH_TRUSTED_PROXIES", format!("`{s}` is not a CIDR")))
            })
            .collect::<Result<_, _>>()?;
        let development = env
            .choice(
                "AUTH_ENVIRONMENT",
                &[("production", false), ("development", true)],
            )?
            .unwrap_or(false);
        // A key of its own, not one derived from the API key: the main
        // backend holds that key, and must not be able to open TOTP secrets
        // or mail. Derivation is a convenience for development only.
        let secrets_key = match env.get("AUTH_SECRETS_KEY") {
            Some(raw) => SealingKey::from_base64(&raw).map_err(|e| err("AUTH_SECRETS_KEY", e))?,
            None if development => derived_secrets_key(&service_api_key),
            None => {
                return Err(err(
                    "AUTH_SECRETS_KEY",
                    "is required (base64 of 32 random bytes: openssl rand -base64 32); \
                     only AUTH_ENVIRONMENT=development derives one from AUTH_SERVICE_API_KEY",
                ))
            }
        };
        let mail_from = env
            .text(
                "AUTH_MAIL_FROM",
                &format!("no-reply@{}", public_host(&public_url)),
            )
            .parse()
            .map_err(|_| err("AUTH_MAIL_FROM", "is not a mail address"))?;
        let app_url = env.base_url("AUTH_APP_URL", &public_url)?;
        let webauthn_rp_id = match env.get("AUTH_WEBAUTHN_RP_ID") {
            Some(id) => Some(id.trim().to_owned()),
            None if public_host(&app_url)
                .trim_matches(['[', ']'])
                .parse::<IpAddr>()
                .is_ok() =>
            {
                None
            }
            None => Some(public_host(&app_url).to_owned()),
        };
        let webauthn_origins = match env.list("AUTH_WEBAUTHN_ORIGINS") {
            Some(list) => list,
            None => vec![service_kit::config::origin_of(&app_url).unwrap_or_default()],
        };
        for origin in &webauthn_origins {
            if service_kit::config::origin_of(origin).as_deref()
                != Some(origin.trim_end_matches('/'))
            {
                return Err(err(
                    "AUTH_WEBAUTHN_ORIGINS",
                    format!("`{origin}` is not an origin (scheme://host[:port])"),
                ));
            }
        }
        Ok(Self {
            bind: env.text("AUTH_BIND", "127.0.0.1:8001"),
            database: database(&env.0)?,
            jwt_key,
            previous_jwt_keys,
            access_token_minutes: env.number("JWT_ACCESS_TOKEN_EXPIRE_MINUTES", 1..=24 * 60, 30)?,
            refresh_token_days: env.number("JWT_REFRESH_TOKEN_EXPIRE_DAYS", 1..=365, 7)?,
            issuer: env.text("AUTH_ISSUER", &public_url),
            audience: env.text("AUTH_AUDIENCE", "main-backend"),
            service_api_key: service_api_key.into(),
            webhook,
            app_url,
            webauthn_rp_id,
            webauthn_origins,
            cookie_secure: env
                .flag("AUTH_COOKIE_SECURE")?
                .unwrap_or(public_url.starts_with("https://")),
            cors: service_kit::config::CorsSettings::from_env(&env)?,
            public_origin: service_kit::config::origin_of(&public_url),
            public_url,
            smtp_url: env.get("SMTP_URL").map(SecretString::from),
            mail_outbox: env.text("AUTH_MAIL_OUTBOX", "data/mail.jsonl").into(),
            lockout_threshold: env.number("AUTH_LOCKOUT_THRESHOLD", 1..=1000, 5)?,
            lockout_minutes: env.number("AUTH_LOCKOUT_MINUTES", 1..=7 * 24 * 60, 15)?,
            events_retention_days: env.number("AUTH_EVENTS_RETENTION_DAYS", 1..=3650, 7)?,
            nats: NatsSettings::from_env(&env)?,
            refresh_reuse_grace_seconds: env.number(
                "AUTH_REFRESH_REUSE_GRACE_SECONDS",
                0..=300,
                10,
            )?,
            trusted_proxies,
            allowed_email_domains,
            oauth_providers: crate::providers::from_env(&env)?,
            oauth_timeout: env.seconds("AUTH_OAUTH_TIMEOUT_SECONDS", 1..=60, 10)?,
            secrets_key: Arc::new(secrets_key),
            mail_from,
            rate_limit_per_minute: env.number("AUTH_RATE_LIMIT_PER_MINUTE", 0..=1_000_000, 60)?,
            max_body_bytes: env.number(
                "AUTH_MAX_BODY_BYTES",
                1024..=16 * 1024 * 1024,
                64 * 1024,
            )?,
            workers: env.opt_number("AUTH_WORKERS", 1..=512)?,
        })
    }

    pub fn algorithm(&self) -> JwtAlgorithm {
        match self.jwt_key {
            JwtKeySource::Ed25519PemFile(_) => JwtAlgorithm::EdDSA,
            JwtKeySource::HmacSecret(_) => JwtAlgorithm::HS256,
        }
    }
}

/// The host name in `AUTH_PUBLIC_URL` (the default sender's domain, the
/// issuer shown in authenticator apps); `localhost` if it has none.
pub fn public_host(public_url: &str) -> &str {
    public_url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split(['/', ':']).next())
        .filter(|h| !h.is_empty())
        .unwrap_or("localhost")
}

/// In development without `AUTH_SECRETS_KEY`, the sealing key is derived
/// from the API key (HMAC-SHA256 with a fixed label). Never in production:
/// the main backend holds the API key, and rotating it would make TOTP
/// secrets unreadable.
fn derived_secrets_key(api_key: &str) -> SealingKey {
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(api_key.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(b"auth-service secrets key v1");
    SealingKey::from_bytes(mac.finalize().into_bytes().into())
}

/// An IP network such as `10.0.0.0/8` or `::1/128`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Option<Self> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, p.parse::<u8>().ok()?),
            None => {
                let a = s.parse::<IpAddr>().ok()?;
                (a, if a.is_ipv4() { 32 } else { 128 })
            }
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Self { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// The given variables, plus a valid webhook secret and secrets key
    /// unless one is given; an empty value is unset, as in the environment.
    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let mut map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        map.entry("AUTH_WEBHOOK_SECRET".into())
            .or_insert_with(service_kit::testing::webhook_secret);
        map.entry("AUTH_SECRETS_KEY".into())
            .or_insert_with(service_kit::testing::secrets_key);
        move |k| map.get(k).cloned().filter(|v| !v.is_empty())
    }

    #[test]
    fn allowed_email_domains_are_normalised_and_checked() {
        let base = [
            ("AUTH_JWT_PRIVATE_KEY_FILE", "k.pem"),
            ("AUTH_SERVICE_API_KEY", KEY),
        ];
        let with = |value: &'static str| {
            let mut v = base.to_vec();
            v.push(("AUTH_ALLOWED_EMAIL_DOMAINS", value));
            Settings::from_lookup(lookup(&v))
        };
        let s = with(" Example.COM,@corp.example.org ,").expect("valid");
        assert_eq!(
            s.allowed_email_domains,
            Some(vec!["example.com".into(), "corp.example.org".into()])
        );
        for bad in ["not a domain", "example", ",", "a@b.com"] {
            let e = with(bad).err().expect("refused");
            assert_eq!(e.var, "AUTH_ALLOWED_EMAIL_DOMAINS", "{bad}");
        }
        let any = Settings::from_lookup(lookup(&base)).expect("valid");
        assert_eq!(any.allowed_email_domains, None);
    }

    /// The review's finding: without AUTH_SECRETS_KEY the sealing key was
    /// derived from the API key, which the main backend also holds.
    #[test]
    fn secrets_key_is_required_outside_development() {
        let base = [
            ("AUTH_JWT_PRIVATE_KEY_FILE", "k.pem"),
            ("AUTH_SERVICE_API_KEY", KEY),
            ("AUTH_SECRETS_KEY", ""),
        ];
        let e = Settings::from_lookup(lookup(&base)).err().expect("fails");
        assert_eq!(e.var, "AUTH_SECRETS_KEY");
        let mut v = base.to_vec();
        v.push(("AUTH_ENVIRONMENT", "production"));
        let e = Settings::from_lookup(lookup(&v)).err().expect("fails");
        assert_eq!(e.var, "AUTH_SECRETS_KEY");
        let mut v = base.to_vec();
        v.push(("AUTH_ENVIRONMENT", "staging"));
        let e = Settings::from_lookup(lookup(&v)).err().expect("fails");
        assert_eq!(e.var, "AUTH_ENVIRONMENT");
        let mut v = base.to_vec();
        v.push(("AUTH_ENVIRONMENT", "development"));
        assert!(Settings::from_lookup(lookup(&v)).is_ok());
    }

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn missing_api_key_names_the_variable() {
        let e = Settings::from_lookup(lookup(&[("AUTH_JWT_PRIVATE_KEY_FILE", "k.pem")]))
            .err()
            .expect("fails");
        assert_eq!(e.var, "AUTH_SERVICE_API_KEY");
    }

    #[test]
    fn short_hs256_secret_is_refused() {
        let e = Settings::from_lookup(lookup(&[
            ("AUTH_JWT_ALGORITHM", "HS256"),
            ("AUTH_JWT_SECRET", "too-short"),
            ("AUTH_SERVICE_API_KEY", KEY),
        ]))
        .err()
        .expect("fails");
        assert_eq!(e.var, "AUTH_JWT_SECRET");
    }

    #[test]
    fn placeholder_secret_is_refused() {
        let e = Settings::from_lookup(lookup(&[
            ("AUTH_JWT_PRIVATE_KEY_FILE", "k.pem"),
            (
                "AUTH_SERVICE_API_KEY",
                "<change-me: 32+ random bytes, e.g. openssl rand -hex 32>",
            ),
        ]))
        .err()
        .expect("fails");
        assert_eq!(e.var, "AUTH_SERVICE_API_KEY");
    }

    #[test]
    fn eddsa_without_key_file_is_refused() {
        let e = Settings::from_lookup(lookup(&[("AUTH_SERVICE_API_KEY", KEY)]))
            .err()
            .expect("fails");
        assert_eq!(e.var, "AUTH_JWT_PRIVATE_KEY_FILE");
    }

    #[test]
    fn bad_numbers_and_webhook_secret_are_refused() {
        let base = [
            ("AUTH_JWT_PRIVATE_KEY_FILE", "k.pem"),
            ("AUTH_SERVICE_API_KEY", KEY),
        ];
        let with = |extra: (&'static str, &'static str)| {
            let mut v = base.to_vec();
            v.push(extra);
            Settings::from_lookup(lookup(&v)).err().expect("fails").var
        };
        assert_eq!(
            with(("AUTH_LOCKOUT_THRESHOLD", "zero")),
            "AUTH_LOCKOUT_THRESHOLD"
        );
        assert_eq!(
            with(("JWT_ACCESS_TOKEN_EXPIRE_MINUTES", "0")),
            "JWT_ACCESS_TOKEN_EXPIRE_MINUTES"
        );
        assert_eq!(
            with(("AUTH_WEBHOOK_SECRET", "plain")),
            "AUTH_WEBHOOK_SECRET"
        );
        assert_eq!(
            with(("AUTH_TRUSTED_PROXIES", "10.0.0.0/40")),
            "AUTH_TRUSTED_PROXIES"
        );
    }

    #[test]
    fn defaults_follow_the_contract() {
        let s = Settings::from_lookup(lookup(&[
            ("AUTH_JWT_PRIVATE_KEY_FILE", "k.pem"),
            ("AUTH_SERVICE_API_KEY", KEY),
        ]))
        .expect("valid");
        assert_eq!(s.bind, "127.0.0.1:8001");
        assert_eq!(s.database.url, "sqlite://data/auth.db");
        assert_eq!(s.access_token_minutes, 30);
        assert_eq!(s.refresh_token_days, 7);
        assert_eq!(s.lockout_threshold, 5);
        assert_eq!(s.lockout_minutes, 15);
        assert_eq!(s.refresh_reuse_grace_seconds, 10);
        assert_eq!(s.algorithm(), JwtAlgorithm::EdDSA);
        let webhook = s.webhook.expect("delivery on by default");
        assert_eq!(webhook.url, "http://127.0.0.1:8000/webhooks/auth");
        assert_eq!(webhook.give_up_after.as_secs(), 24 * 3600);
    }

    #[test]
    fn webhook_secret_is_required_unless_delivery_is_off() {
        let base = [
            ("AUTH_JWT_PRIVATE_KEY_FILE", "k.pem"),
            ("AUTH_SERVICE_API_KEY", KEY),
            ("AUTH_ENVIRONMENT", "development"),
        ];
        let map: HashMap<&str, &str> = base.into_iter().collect();
        let e = Settings::from_lookup(|k| map.get(k).map(|v| v.to_string()))
            .err()
            .expect("fails");
        assert_eq!(e.var, "AUTH_WEBHOOK_SECRET");
        let mut off = map.clone();
        off.insert("AUTH_WEBHOOK_URL", "off");
        let s = Settings::from_lookup(|k| off.get(k).map(|v| v.to_string())).expect("valid");
        assert!(s.webhook.is_none());
    }

    #[test]
    fn cidr_matching() {
        let net = Cidr::parse("10.1.0.0/16").expect("valid");
        assert!(net.contains("10.1.200.3".parse().expect("ip")));
        assert!(!net.contains("10.2.0.1".parse().expect("ip")));
        assert!(Cidr::parse("::1")
            .expect("valid")
            .contains("::1".parse().expect("ip")));
        assert!(Cidr::parse("0.0.0.0/0")
            .expect("valid")
            .contains("8.8.8.8".parse().expect("ip")));
        assert!(Cidr::parse("nonsense").is_none());
    }
}

/// NATS JetStream, where every event is also published (`crate::nats`).
#[derive(Clone, Debug)]
pub struct NatsSettings {
    /// `nats://[user:password@]host:port` (`tls://` for TLS); it may hold
    /// a password, so it is a secret.
    pub url: SecretString,
    /// The subject, `<type>` standing for the event type
    /// (`auth.events.<type>` gives `auth.events.user.created`).
    pub subject: String,
    /// The JetStream stream, made when missing, over the subjects above.
    pub stream: String,
}

impl NatsSettings {
    fn from_env<F: Fn(&str) -> Option<String>>(
        env: &service_kit::config::Env<F>,
    ) -> Result<Option<Self>, ConfigError> {
        let Some(url) = env.get("AUTH_EVENTS_NATS_URL") else {
            return Ok(None);
        };
        let subject = env.text("AUTH_EVENTS_NATS_SUBJECT", "auth.events.<type>");
        let token_ok = |t: &str| !t.is_empty() && !t.contains(['*', '>', ' ', '\t', '\r', '\n']);
        if !subject.split('.').all(|t| t == "<type>" || token_ok(t)) {
            return Err(ConfigError {
                var: "AUTH_EVENTS_NATS_SUBJECT".into(),
                problem: format!("{subject:?} is not a NATS subject (dot-separated tokens, no wildcards; <type> for the event type)"),
            });
        }
        let stream = env.text("AUTH_EVENTS_NATS_STREAM", "AUTH_EVENTS");
        if !stream
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(ConfigError {
                var: "AUTH_EVENTS_NATS_STREAM".into(),
                problem: "letters, digits, _ and - only".into(),
            });
        }
        Ok(Some(Self {
            url: SecretString::from(url),
            subject,
            stream,
        }))
    }

    /// The subject an event of `event_type` goes to.
    pub fn subject_for(&self, event_type: &str) -> String {
        self.subject.replace("<type>", event_type)
    }

    /// The stream's subjects: every event type is two tokens (`user.created`).
    pub fn stream_subjects(&self) -> String {
        self.subject.replace("<type>", "*.*")
    }
}
