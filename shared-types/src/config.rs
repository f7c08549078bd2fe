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
