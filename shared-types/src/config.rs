//! Configuration helpers both services use, so "a missing or weak secret
//! stops the service with a message naming the variable" means the same
//! thing everywhere.

/// A configuration problem, always naming the variable at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub var: &'static str,
    pub problem: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.var, self.problem)
    }
}

impl std::error::Error for ConfigError {}

pub fn err(var: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        problem: problem.into(),
    }
}

/// Minimum length of shared secrets: 32 bytes is 256 bits when random.
pub const MIN_SECRET_BYTES: usize = 32;

/// Refuses short secrets and the placeholders of `.env.example`.
pub fn check_secret(var: &'static str, value: &str) -> Result<(), ConfigError> {
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

/// Parses an optional number and checks it lies in `min..=max`.
pub fn parse_opt<T>(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    min: T,
    max: T,
) -> Result<Option<T>, ConfigError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    match get(var) {
        None => Ok(None),
        Some(raw) => match raw.trim().parse::<T>() {
            Ok(v) if v >= min && v <= max => Ok(Some(v)),
            _ => Err(err(
                var,
                format!("`{raw}` is not a number from {min} to {max}"),
            )),
        },
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
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let origins = get("CORS_ALLOWED_ORIGINS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|raw| {
                origin_of(raw)
                    .filter(|o| o.eq_ignore_ascii_case(raw.trim_end_matches('/')))
                    .ok_or_else(|| {
                        err(
                            "CORS_ALLOWED_ORIGINS",
                            format!("`{raw}` is not an origin like https://app.example.com (scheme and host, optional port, no path; `*` is not accepted)"),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let credentials = match get("CORS_ALLOW_CREDENTIALS").as_deref().map(str::trim) {
            None | Some("" | "false" | "0") => false,
            Some("true" | "1") => true,
            Some(other) => {
                return Err(err(
                    "CORS_ALLOW_CREDENTIALS",
                    format!("`{other}` is not true or false"),
                ))
            }
        };
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
        CorsSettings::from_lookup(&get)
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
