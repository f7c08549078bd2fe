//! Real providers for the sign-in tests: an OpenID Connect provider
//! (`tests/oidc-provider`, the certified `oidc-provider` package on Node.js,
//! one process for the whole test binary) and a plain OAuth 2.0 provider in
//! GitHub's shape (`service_kit::testing::hub`, one per test). `browse`
//! follows a browser's redirects through them.

use std::sync::{Mutex, OnceLock};

use reqwest::StatusCode;

pub use service_kit::testing::hub::{Hub, HubUser};

pub const CLIENT_ID: &str = "auth-service-tests";
pub const CLIENT_SECRET: &str = "a client secret the test provider knows";
/// Where return_to lands: the web app, never contacted by the tests.
pub const APP_URL: &str = "http://app.test";

/// The OpenID Connect provider's issuer, started once; `None` (the test is
/// skipped, loudly) when Node.js is not installed and REQUIRE_OIDC_PROVIDER
/// is not 1 (CI sets it).
pub fn oidc_issuer() -> Option<String> {
    static ISSUER: OnceLock<Option<String>> = OnceLock::new();
    ISSUER.get_or_init(start_oidc_provider).clone()
}

fn start_oidc_provider() -> Option<String> {
    let (issuer, child) =
        service_kit::testing::start_oidc_provider(CLIENT_ID, CLIENT_SECRET, None)?;
    // Kept for the life of the test binary: when it exits, the provider's
    // stdin closes and it exits too.
    static CHILD: OnceLock<Mutex<std::process::Child>> = OnceLock::new();
    let _ = CHILD.set(Mutex::new(child));
    Some(issuer)
}

/// The auth service's variables for the OpenID Connect provider `name`.
pub fn oidc_env(name: &str, issuer: &str) -> Vec<(String, String)> {
    let up = name.to_uppercase();
    vec![
        (format!("AUTH_OAUTH_{up}_CLIENT_ID"), CLIENT_ID.into()),
        (
            format!("AUTH_OAUTH_{up}_CLIENT_SECRET"),
            CLIENT_SECRET.into(),
        ),
        (format!("AUTH_OAUTH_{up}_ISSUER"), issuer.into()),
        (format!("AUTH_OAUTH_{up}_DISPLAY_NAME"), "Test OIDC".into()),
    ]
}

/// A browser: its own cookies, redirects followed by hand.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// Follows redirects from `start` until one leads to the web app
/// (`APP_URL`); answers that address. A page that is not a redirect ends
/// the walk: its status and body are the error.
pub async fn browse(
    browser: &reqwest::Client,
    start: &str,
) -> Result<String, (StatusCode, String)> {
    let mut url = reqwest::Url::parse(start).expect("start URL");
    for _ in 0..20 {
        let res = browser.get(url.clone()).send().await.expect("request");
        let status = res.status();
        if !status.is_redirection() {
            return Err((status, res.text().await.unwrap_or_default()));
        }
        let location = res
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .expect("a redirect has a Location");
        let next = url.join(location).expect("Location resolves");
        if next.as_str().starts_with(APP_URL) {
            return Ok(next.to_string());
        }
        url = next;
    }
    panic!("more than 20 redirects from {start}");
}

/// What the app's address says in its fragment (`#code=...`).
pub fn fragment(landed: &str, key: &str) -> Option<String> {
    let (_, fragment) = landed.split_once('#')?;
    fragment
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.to_owned())
}
