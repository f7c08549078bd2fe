//! Configuration helpers both services use, so "a missing or weak secret
//! stops the service with a message naming the variable" means the same
//! thing everywhere.

/// A configuration problem, always naming the variable at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub var: String,
    pub problem: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.var, self.problem)
    }
}

impl std::error::Error for ConfigError {}

pub fn err(var: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        var: var.into(),
        problem: problem.into(),
    }
}

/// Minimum length of shared secrets: 32 bytes is 256 bits when random.
pub const MIN_SECRET_BYTES: usize = 32;

/// Refuses short secrets and the placeholders of `.env.example`.
pub fn check_secret(var: &str, value: &str) -> Result<(), ConfigError> {
    if value.len() < MIN_SECRET_BYTES {
        return Err(err(
            var,
            format!("too short: at least {MIN_SECRET_BYTES} bytes of random data are required"),
        ));
    }
    if value.contains("change-me") || value.contains("CHANGE_ME") || value.starts_with('<') {
        return Err(err(
            var,
            "still the placeholder from .env.example; generate a random value",
        ));
    }
    Ok(())
}

/// Reads variables through a lookup (the environment; a map in tests).
/// Each method reads one variable, applies its default and checks it, and
/// every error names the variable: adding a setting is one line in the
/// service's `Settings::from_lookup` and one in its table of variables.
pub struct Env<F>(pub F);

impl<F: Fn(&str) -> Option<String>> Env<F> {
    /// The value as given (a secret's bytes are its own); blank counts as
    /// unset.
    pub fn get(&self, var: &str) -> Option<String> {
        (self.0)(var).filter(|v| !v.trim().is_empty())
    }

    pub fn text(&self, var: &str, default: &str) -> String {
        self.get(var).unwrap_or_else(|| default.to_owned())
    }

    /// Unset is an error that says `why` it is needed.
    pub fn required(&self, var: &str, why: &str) -> Result<String, ConfigError> {
        self.get(var)
            .ok_or_else(|| err(var, format!("required: {why}")))
    }

    /// A required shared secret, refused when short or a placeholder.
    pub fn secret(&self, var: &str, why: &str) -> Result<String, ConfigError> {
        let value = self.required(var, why)?;
        check_secret(var, &value)?;
        Ok(value)
    }

    /// A number in `range`, or `None` when unset.
    pub fn opt_number<T>(
        &self,
        var: &str,
        range: std::ops::RangeInclusive<T>,
    ) -> Result<Option<T>, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display,
    {
        let Some(raw) = self.get(var) else {
            return Ok(None);
        };
        let raw = raw.trim();
        match raw.parse::<T>() {
            Ok(v) if range.contains(&v) => Ok(Some(v)),
            _ => Err(err(
                var,
                format!(
                    "`{raw}` is not a number from {} to {}",
                    range.start(),
                    range.end()
                ),
            )),
        }
    }

    /// A number in `range`, `default` when unset.
    pub fn number<T>(
        &self,
        var: &str,
        range: std::ops::RangeInclusive<T>,
        default: T,
    ) -> Result<T, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display,
    {
        Ok(self.opt_number(var, range)?.unwrap_or(default))
    }

    /// Whole seconds in `range`, `default` when unset.
    pub fn seconds(
        &self,
        var: &str,
        range: std::ops::RangeInclusive<u64>,
        default: u64,
    ) -> Result<std::time::Duration, ConfigError> {
        self.number(var, range, default)
            .map(std::time::Duration::from_secs)
    }

    /// Milliseconds in `range`, `default` when unset.
    pub fn millis(
        &self,
        var: &str,
        range: std::ops::RangeInclusive<u64>,
        default: u64,
    ) -> Result<std::time::Duration, ConfigError> {
        self.number(var, range, default)
            .map(std::time::Duration::from_millis)
    }

    /// `true`/`1` or `false`/`0`; `None` when unset.
    pub fn flag(&self, var: &str) -> Result<Option<bool>, ConfigError> {
        self.choice(
            var,
            &[("true", true), ("1", true), ("false", false), ("0", false)],
        )
    }

    /// One of `choices` (by name, case-insensitive); `None` when unset.
    pub fn choice<T: Copy>(
        &self,
        var: &str,
        choices: &[(&str, T)],
    ) -> Result<Option<T>, ConfigError> {
        let Some(raw) = self.get(var) else {
            return Ok(None);
        };
        let raw = raw.trim();
        match choices
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(raw))
        {
            Some((_, value)) => Ok(Some(*value)),
            None => {
                let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
                Err(err(
                    var,
                    format!("`{raw}` is not one of {}", names.join(", ")),
                ))
            }
        }
    }

    /// A comma-separated list, items trimmed and empty ones dropped; `None`
    /// when unset.
    pub fn list(&self, var: &str) -> Option<Vec<String>> {
        self.get(var).map(|raw| {
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
    }

    /// An http(s) URL, `default` when unset.
    pub fn http_url(&self, var: &str, default: &str) -> Result<String, ConfigError> {
        let url = self.text(var, default).trim().to_owned();
        if origin_of(&url).is_none() {
            return Err(err(var, format!("`{url}` is not an http(s) URL")));
        }
        Ok(url)
    }

    /// An http(s) URL that paths are appended to: without its trailing
    /// slash.
    pub fn base_url(&self, var: &str, default: &str) -> Result<String, ConfigError> {
        Ok(self
            .http_url(var, default)?
            .trim_end_matches('/')
            .to_owned())
    }
}

/// How a service reaches PostgreSQL (`*_DATABASE_POOLER`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Pooler {
    /// Straight to the server, or through a session-mode pooler: the
    /// connection is the application's for as long as it holds it.
    #[default]
    None,
    /// Through a transaction-mode pooler (PgBouncer `pool_mode=transaction`,
    /// Supavisor port 6543): each transaction may run on another server
    /// connection, so nothing may outlive one.
    Transaction,
}

/// The names of one service's database variables.
pub struct DatabaseVars {
    pub url: &'static str,
    pub direct_url: &'static str,
    pub pooler: &'static str,
    pub pool_size: &'static str,
    /// The URL's parts, as seed configurations name them; used when the
    /// URL variable is unset.
    pub parts: DbPartVars,
    pub max_lifetime: &'static str,
}

/// Variable names of a database URL's parts (`<SERVICE>_DB_HOST`, ...).
pub struct DbPartVars {
    pub host: &'static str,
    pub port: &'static str,
    pub name: &'static str,
    pub user: &'static str,
    pub password: &'static str,
    pub sslmode: &'static str,
    /// The CA file for `verify-ca`/`verify-full` (libpq's `sslrootcert`).
    pub sslrootcert: &'static str,
}

/// Where a service's database is and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseSettings {
    /// What the pool connects to (the pooler's address when there is one).
    pub url: String,
    /// A connection straight to the server, for what a transaction-mode
    /// pooler cannot carry: migrations, which hold a session advisory lock.
    pub direct_url: Option<String>,
    pub pooler: Pooler,
    pub pool_size: Option<u32>,
    /// A connection older than this is closed instead of reused: managed
    /// servers and poolers drop long-lived connections, and a new one
    /// picks up DNS or certificate changes.
    pub max_lifetime: std::time::Duration,
}

/// The `sslmode` values libpq knows.
pub const SSLMODES: [&str; 6] = [
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
];

/// `postgres://USER:PASSWORD@HOST:PORT/NAME?sslmode=MODE` from the parts
/// (`None` when none of host, name or user is set). User, password and
/// name are percent-encoded, so any character works in a password.
fn url_from_parts(
    env: &Env<impl Fn(&str) -> Option<String>>,
    vars: &DbPartVars,
) -> Result<Option<String>, ConfigError> {
    use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
    // Parts are trimmed (a stray space in a host or name is a typo); the
    // password is taken as given, since its bytes are its own.
    let part = |var: &str| env.get(var).map(|v| v.trim().to_owned());
    let (host, name, user) = (part(vars.host), part(vars.name), part(vars.user));
    if host.is_none() && name.is_none() && user.is_none() {
        return Ok(None);
    }
    let required = |value: Option<String>, var: &'static str| {
        value.ok_or_else(|| {
            err(
                var,
                format!(
                    "is required with {}, {} and {} (or give the URL instead)",
                    vars.host, vars.name, vars.user
                ),
            )
        })
    };
    let (host, name, user) = (
        required(host, vars.host)?,
        required(name, vars.name)?,
        required(user, vars.user)?,
    );
    let port: u16 = env.number(vars.port, 1..=65535, 5432)?;
    let encode = |s: &str| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
    let password = env
        .get(vars.password)
        .map_or_else(String::new, |p| format!(":{}", encode(&p)));
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    let mut url = format!(
        "postgres://{}{password}@{host}:{port}/{}",
        encode(&user),
        encode(&name)
    );
    let mut params = Vec::new();
    if let Some(mode) = part(vars.sslmode) {
        let mode = mode.to_lowercase();
        if !SSLMODES.contains(&mode.as_str()) {
            return Err(err(
                vars.sslmode,
                format!("`{mode}` is not one of {}", SSLMODES.join(", ")),
            ));
        }
        params.push(format!("sslmode={mode}"));
    }
    if let Some(path) = part(vars.sslrootcert) {
        params.push(format!("sslrootcert={}", encode(&path)));
    }
    if !params.is_empty() {
        url.push_str(&format!("?{}", params.join("&")));
    }
    Ok(Some(url))
}

impl DatabaseSettings {
    pub fn from_env(
        env: &Env<impl Fn(&str) -> Option<String>>,
        vars: &DatabaseVars,
        default_url: &str,
    ) -> Result<Self, ConfigError> {
        // The URL wins; then the seed configuration's parts; then the default.
        let url = match env.get(vars.url) {
            Some(url) => url,
            None => url_from_parts(env, &vars.parts)?.unwrap_or_else(|| default_url.to_owned()),
        };
        let postgres = url.starts_with("postgres://") || url.starts_with("postgresql://");
        let pooler = env
            .choice(
                vars.pooler,
                &[
                    ("none", Pooler::None),
                    ("session", Pooler::None),
                    ("transaction", Pooler::Transaction),
                ],
            )?
            .unwrap_or_default();
        let direct_url = env.get(vars.direct_url);
        if let Some(direct) = &direct_url {
            if !(direct.starts_with("postgres://") || direct.starts_with("postgresql://")) {
                return Err(err(vars.direct_url, "must be a postgres:// URL"));
            }
        }
        if pooler == Pooler::Transaction {
            if !postgres {
                return Err(err(vars.pooler, "a pooler needs a postgres:// URL"));
            }
            if direct_url.is_none() {
                return Err(err(
                    vars.direct_url,
                    "required with a transaction-mode pooler: migrations hold a session \
                     lock, which only a direct connection keeps",
                ));
            }
        }
        Ok(Self {
            url,
            direct_url,
            pooler,
            pool_size: env.opt_number(vars.pool_size, 1..=1000)?,
            max_lifetime: env.seconds(vars.max_lifetime, 10..=7 * 24 * 3600, 30 * 60)?,
        })
    }

    /// The URL for migrations and other session-bound work.
    pub fn direct_url(&self) -> &str {
        self.direct_url.as_deref().unwrap_or(&self.url)
    }
}

/// Browser origins allowed to call a service from another origin
/// (`CORS_ALLOWED_ORIGINS`, comma-separated, e.g. `https://app.example.com`)
/// and whether such calls may carry cookies (`CORS_ALLOW_CREDENTIALS`, off
/// by default; the web app's refresh cookie needs it on the auth service).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CorsSettings {
    pub origins: Vec<String>,
    pub credentials: bool,
}

impl CorsSettings {
    pub fn from_env(env: &Env<impl Fn(&str) -> Option<String>>) -> Result<Self, ConfigError> {
        let origins = env
            .list("CORS_ALLOWED_ORIGINS")
            .unwrap_or_default()
            .into_iter()
            .map(|raw| {
                origin_of(&raw)
                    .filter(|o| o.eq_ignore_ascii_case(raw.trim_end_matches('/')))
                    .ok_or_else(|| {
                        err(
                            "CORS_ALLOWED_ORIGINS",
                            format!("`{raw}` is not an origin like https://app.example.com (scheme and host, optional port, no path; `*` is not accepted)"),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let credentials = env.flag("CORS_ALLOW_CREDENTIALS")?.unwrap_or(false);
        Ok(Self {
            origins,
            credentials,
        })
    }

    pub fn allows(&self, origin: &str) -> bool {
        self.origins.iter().any(|o| o == origin)
    }
}

/// `scheme://host[:port]` of an http(s) URL, lower-cased, as browsers send
/// it in `Origin`; None for anything else.
pub fn origin_of(url: &str) -> Option<String> {
    let url = url.trim();
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next()?;
    let valid = !authority.is_empty()
        && !authority.contains('@')
        && authority
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
    valid.then(|| format!("{scheme}://{}", authority.to_ascii_lowercase()))
}

#[cfg(test)]
mod cors_tests {
    use super::*;

    fn parse(
        origins: Option<&str>,
        credentials: Option<&str>,
    ) -> Result<CorsSettings, ConfigError> {
        let get = |k: &str| match k {
            "CORS_ALLOWED_ORIGINS" => origins.map(str::to_owned),
            "CORS_ALLOW_CREDENTIALS" => credentials.map(str::to_owned),
            _ => None,
        };
        CorsSettings::from_env(&Env(get))
    }

    #[test]
    fn origins_are_exact_and_credentials_off_by_default() {
        assert_eq!(parse(None, None), Ok(CorsSettings::default()));
        let s = parse(
            Some(" https://app.example.com, http://127.0.0.1:8000/ "),
            Some("true"),
        )
        .expect("valid");
        assert_eq!(
            s.origins,
            ["https://app.example.com", "http://127.0.0.1:8000"]
        );
        assert!(s.credentials);
        assert!(s.allows("http://127.0.0.1:8000"));
        assert!(!s.allows("http://127.0.0.1:8001"));
        assert!(!s.allows("https://app.example.com.evil.test"));
    }

    #[test]
    fn wildcards_paths_and_junk_are_refused() {
        for bad in [
            "*",
            "https://app.example.com/path",
            "app.example.com",
            "ftp://x",
            "https://u@x",
        ] {
            let e = parse(Some(bad), None).expect_err(bad);
            assert_eq!(e.var, "CORS_ALLOWED_ORIGINS");
        }
        assert_eq!(
            parse(None, Some("yes")).expect_err("bad bool").var,
            "CORS_ALLOW_CREDENTIALS"
        );
    }

    #[test]
    fn origin_of_keeps_scheme_host_and_port() {
        assert_eq!(
            origin_of("HTTP://Example.COM:8080/a?b").as_deref(),
            Some("http://example.com:8080")
        );
        assert_eq!(origin_of("javascript:alert(1)"), None);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const VARS: DatabaseVars = DatabaseVars {
        url: "DATABASE_URL",
        direct_url: "DATABASE_DIRECT_URL",
        pooler: "DATABASE_POOLER",
        pool_size: "DATABASE_POOL_SIZE",
        parts: DbPartVars {
            host: "DB_HOST",
            port: "DB_PORT",
            name: "DB_NAME",
            user: "DB_USER",
            password: "DB_PASSWORD",
            sslmode: "DB_SSLMODE",
            sslrootcert: "DB_SSLROOTCERT",
        },
        max_lifetime: "DATABASE_MAX_LIFETIME_SECONDS",
    };

    fn database(pairs: &[(&str, &str)]) -> Result<DatabaseSettings, ConfigError> {
        let env: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        DatabaseSettings::from_env(
            &Env(|k: &str| env.get(k).cloned()),
            &VARS,
            "sqlite://data/x.db",
        )
    }

    #[test]
    fn database_defaults_and_pooler() {
        let plain = database(&[]).unwrap();
        assert_eq!(plain.url, "sqlite://data/x.db");
        assert_eq!(plain.pooler, Pooler::None);
        assert_eq!(plain.direct_url(), "sqlite://data/x.db");

        let pooled = database(&[
            ("DATABASE_URL", "postgres://app@pgbouncer:6432/app"),
            ("DATABASE_DIRECT_URL", "postgres://app@db:5432/app"),
            ("DATABASE_POOLER", "transaction"),
        ])
        .unwrap();
        assert_eq!(pooled.pooler, Pooler::Transaction);
        assert_eq!(pooled.direct_url(), "postgres://app@db:5432/app");
        let session = database(&[("DATABASE_POOLER", "session")]).unwrap();
        assert_eq!(session.pooler, Pooler::None);
    }

    #[test]
    fn database_misconfiguration_names_the_variable() {
        let cases: [(&[(&str, &str)], &str); 4] = [
            (&[("DATABASE_POOLER", "statement")], "DATABASE_POOLER"),
            (&[("DATABASE_POOLER", "transaction")], "DATABASE_POOLER"),
            (
                &[
                    ("DATABASE_URL", "postgres://app@pgbouncer:6432/app"),
                    ("DATABASE_POOLER", "transaction"),
                ],
                "DATABASE_DIRECT_URL",
            ),
            (
                &[("DATABASE_DIRECT_URL", "mysql://x")],
                "DATABASE_DIRECT_URL",
            ),
        ];
        for (env, var) in cases {
            let e = database(env).expect_err("refused");
            assert_eq!(e.var, var, "{env:?}: {e}");
        }
    }

    /// Seed 001 configures the database by parts; a password may hold any
    /// character, and the URL wins when both are given.
    #[test]
    fn database_parts_are_trimmed_but_the_password_is_not() {
        let parts = database(&[
            ("DB_HOST", " db.example.com "),
            ("DB_NAME", "app\n"),
            ("DB_USER", " u"),
            ("DB_PASSWORD", " pw "),
            ("DB_SSLMODE", " require "),
        ])
        .unwrap();
        assert_eq!(
            parts.url,
            "postgres://u:%20pw%20@db.example.com:5432/app?sslmode=require"
        );
    }

    #[test]
    fn database_from_seed_parts() {
        let parts = database(&[
            ("DB_HOST", "db.example.com"),
            ("DB_PORT", "6543"),
            ("DB_NAME", "main app"),
            ("DB_USER", "app@tenant"),
            ("DB_PASSWORD", "p@ss:w/rd?#%"),
            ("DB_SSLMODE", "Verify-Full"),
            ("DB_SSLROOTCERT", "/etc/ssl/rds bundle.pem"),
        ])
        .unwrap();
        assert_eq!(
            parts.url,
            "postgres://app%40tenant:p%40ss%3Aw%2Frd%3F%23%25@db.example.com:6543/main%20app\
             ?sslmode=verify-full&sslrootcert=%2Fetc%2Fssl%2Frds%20bundle%2Epem"
        );
        let minimal = database(&[("DB_HOST", "::1"), ("DB_NAME", "m"), ("DB_USER", "u")]).unwrap();
        assert_eq!(minimal.url, "postgres://u@[::1]:5432/m");
        let both = database(&[
            ("DATABASE_URL", "postgres://x@h/y"),
            ("DB_HOST", "ignored"),
            ("DB_NAME", "ignored"),
            ("DB_USER", "ignored"),
        ])
        .unwrap();
        assert_eq!(both.url, "postgres://x@h/y");
        let cases: [(&[(&str, &str)], &str); 4] = [
            (&[("DB_HOST", "h"), ("DB_NAME", "n")], "DB_USER"),
            (&[("DB_USER", "u"), ("DB_NAME", "n")], "DB_HOST"),
            (
                &[
                    ("DB_HOST", "h"),
                    ("DB_NAME", "n"),
                    ("DB_USER", "u"),
                    ("DB_PORT", "x"),
                ],
                "DB_PORT",
            ),
            (
                &[
                    ("DB_HOST", "h"),
                    ("DB_NAME", "n"),
                    ("DB_USER", "u"),
                    ("DB_SSLMODE", "on"),
                ],
                "DB_SSLMODE",
            ),
        ];
        for (env, var) in cases {
            let e = database(env).expect_err("refused");
            assert_eq!(e.var, var, "{env:?}: {e}");
        }
        assert_eq!(parts.max_lifetime, std::time::Duration::from_secs(1800));
        let short = database(&[("DATABASE_MAX_LIFETIME_SECONDS", "60")]).unwrap();
        assert_eq!(short.max_lifetime, std::time::Duration::from_secs(60));
        assert_eq!(
            database(&[("DATABASE_MAX_LIFETIME_SECONDS", "1")])
                .expect_err("refused")
                .var,
            "DATABASE_MAX_LIFETIME_SECONDS"
        );
    }
}

#[cfg(test)]
mod env_tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> Env<impl Fn(&str) -> Option<String>> {
        Env(move |k: &str| {
            pairs
                .iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn blank_is_unset_and_values_keep_their_bytes() {
        let e = env(&[("BLANK", "  "), ("SECRET", " s3cret\n")]);
        assert_eq!(e.get("BLANK"), None);
        assert_eq!(e.text("BLANK", "default"), "default");
        // A secret is used as given: trimming would change the key.
        assert_eq!(e.get("SECRET").as_deref(), Some(" s3cret\n"));
        assert_eq!(
            e.required("MISSING", "for X")
                .expect_err("refused")
                .to_string(),
            "MISSING: required: for X"
        );
    }

    #[test]
    fn numbers_are_checked_against_their_range() {
        let e = env(&[("N", " 42 "), ("BIG", "1001"), ("WORD", "ten")]);
        assert_eq!(e.number("N", 1..=100, 7), Ok(42));
        assert_eq!(e.number("UNSET", 1..=100, 7), Ok(7));
        assert_eq!(e.opt_number::<u32>("UNSET", 1..=100), Ok(None));
        for var in ["BIG", "WORD"] {
            let error = e.number(var, 1..=1000, 7).expect_err("refused");
            assert_eq!(error.var, var);
            assert!(error.problem.contains("from 1 to 1000"), "{error}");
        }
        assert_eq!(
            e.millis("N", 1..=100, 7),
            Ok(std::time::Duration::from_millis(42))
        );
    }

    #[test]
    fn choices_flags_lists_and_urls() {
        let e = env(&[
            ("MODE", "Transaction"),
            ("BAD", "sometimes"),
            ("YES", "1"),
            ("LIST", " a, ,b ,"),
            ("BASE", "https://app.example.com/"),
            ("HOOK", "http://x.test/hook/"),
            ("NOT_URL", "ftp://x.test"),
        ]);
        let modes = [("none", 0), ("transaction", 1)];
        assert_eq!(e.choice("MODE", &modes), Ok(Some(1)));
        let error = e.choice("BAD", &modes).expect_err("refused");
        assert_eq!(
            error.to_string(),
            "BAD: `sometimes` is not one of none, transaction"
        );
        assert_eq!(e.flag("YES"), Ok(Some(true)));
        assert_eq!(e.flag("UNSET"), Ok(None));
        assert_eq!(e.list("LIST"), Some(vec!["a".to_owned(), "b".to_owned()]));
        assert_eq!(
            e.base_url("BASE", "http://d"),
            Ok("https://app.example.com".into())
        );
        // A URL that is posted to keeps its path exactly.
        assert_eq!(
            e.http_url("HOOK", "http://d"),
            Ok("http://x.test/hook/".into())
        );
        assert_eq!(
            e.http_url("NOT_URL", "http://d").expect_err("refused").var,
            "NOT_URL"
        );
    }
}
