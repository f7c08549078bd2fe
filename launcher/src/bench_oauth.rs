//! The provider sign-in's figures: the callback (state and browser check,
//! the provider's token and user endpoints, a one-time code) and the
//! exchange of that code for a session. The provider is the GitHub-shaped
//! one of `service_kit::testing::hub`, on loopback in this process, so the
//! figures are the auth service's own work plus two loopback round trips.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use service_kit::testing::hub::{Hub, HubUser};

use crate::bench::{cores, Run, Sample};

pub const CLIENT_ID: &str = "bench-client";
pub const CLIENT_SECRET: &str = "the benchmark's client secret";
/// Where the provider sign-in lands; never contacted.
const APP: &str = "http://app.bench";

/// The provider, started before the auth service (which is configured with
/// it: the variables `env` returns).
pub async fn provider() -> Hub {
    let hub = Hub::start(CLIENT_ID, CLIENT_SECRET).await;
    let email = "oauth-bench@example.com".to_owned();
    hub.sign_in_as(HubUser {
        id: 1,
        login: "bench".into(),
        public_email: Some(email.clone()),
        emails: vec![(email, true, true)],
    });
    hub
}

/// The auth service's variables for `hub` (`auth_url`: where it listens).
pub fn env(hub: &Hub, auth_url: &str) -> Vec<(String, String)> {
    let mut env = hub.env("hub", true);
    env.push(("AUTH_OAUTH_PROVIDERS".into(), "hub".into()));
    env.push(("AUTH_PUBLIC_URL".into(), auth_url.into()));
    env.push(("AUTH_APP_URL".into(), APP.into()));
    env
}

/// One browser's walk: authorize, the provider, the callback. Answers the
/// one-time code and how long the callback took.
async fn sign_in(client: &reqwest::Client, auth: &str) -> anyhow::Result<(String, Duration)> {
    let start = client
        .get(format!("{auth}/v1/oauth/hub/authorize"))
        .send()
        .await?;
    anyhow::ensure!(start.status() == 302, "authorize: {}", start.status());
    let cookie = start
        .headers()
        .get("set-cookie")
        .and_then(|c| c.to_str().ok())
        .and_then(|c| c.split(';').next())
        .unwrap_or_default()
        .to_owned();
    let to_provider = location(&start)?;
    let back = client.get(to_provider).send().await?;
    let callback = location(&back)?;
    let sent = Instant::now();
    let landed = client.get(callback).header("cookie", cookie).send().await?;
    let took = sent.elapsed();
    let landed = location(&landed)?;
    let code = landed
        .split_once("#code=")
        .map(|(_, c)| c.to_owned())
        .ok_or_else(|| anyhow::anyhow!("no code: {landed}"))?;
    Ok((code, took))
}

fn location(res: &reqwest::Response) -> anyhow::Result<String> {
    res.headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("no redirect: {}", res.status()))
}

/// The section: `login_p50` (ms, password login in this run) is the
/// reference the exchange is compared with.
pub async fn section(run: &Run, login_p50: f64) -> anyhow::Result<String> {
    eprintln!("bench: provider sign-in");
    let auth = run.auth.url();
    // No redirects followed: each step is the browser's.
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let n = usize::try_from(run.secs.as_secs() * 200)
        .unwrap_or(2000)
        .clamp(50, 2000);
    let mut codes = Vec::with_capacity(n);
    let mut callbacks = Vec::with_capacity(n);
    let started = Instant::now();
    for _ in 0..n {
        let (code, took) = sign_in(&browser, &auth).await?;
        codes.push(code);
        callbacks.push(took.as_micros() as u64);
    }
    let callback = Sample::of(callbacks, 0, started.elapsed());
    // The first exchange makes the account; the rest sign the same user in
    // again, the common case.
    let first = codes.remove(0);
    let res = run
        .client
        .post(format!("{auth}/v1/oauth/exchange"))
        .json(&json!({"code": first}))
        .send()
        .await?;
    anyhow::ensure!(res.status() == 200, "exchange: {}", res.status());
    let codes = Arc::new(Mutex::new(codes));
    let clients = 4 * cores();
    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..clients {
        let (client, auth, codes) = (run.client.clone(), auth.clone(), codes.clone());
        handles.push(tokio::spawn(async move {
            let (mut lat, mut errors) = (Vec::new(), 0usize);
            loop {
                let Some(code) = codes.lock().unwrap_or_else(|e| e.into_inner()).pop() else {
                    break;
                };
                let sent = Instant::now();
                match client
                    .post(format!("{auth}/v1/oauth/exchange"))
                    .json(&json!({ "code": code }))
                    .send()
                    .await
                {
                    Ok(res) if res.status() == 200 => {
                        let _ = res.bytes().await;
                        lat.push(sent.elapsed().as_micros() as u64);
                    }
                    _ => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let (mut lat, mut errors) = (Vec::new(), 0);
    for h in handles {
        let (l, e) = h.await?;
        lat.extend(l);
        errors += e;
    }
    let exchange = Sample::of(lat, errors, started.elapsed());
    Ok(format!(
        "## Sign-in with a provider\n\n\
         Against a GitHub-shaped OAuth 2.0 provider on loopback in the benchmark process \
         (`service_kit::testing::hub`; PKCE and client authentication checked), {n} sign-ins of one user.\n\n\
         | figure | value |\n|---|---|\n\
         | callback (state and browser binding, token and user endpoints at the provider, a one-time code), one browser at a time: p50 / p99 | {cp50:.2} / {cp99:.2} ms |\n\
         | `POST /v1/oauth/exchange`, returning user (identity found, provider tokens sealed again, session, audit), {clients} clients | **{erps:.0} exchanges/s** ({eerr} errors) |\n\
         | exchange p50 / p99 | {ep50:.2} / **{ep99:.2}** ms |\n\
         | exchange p50 ÷ password login p50 (same run; no password hash) | {ratio:.3} |\n\n",
        cp50 = callback.pct(0.5),
        cp99 = callback.pct(0.99),
        erps = exchange.rps(),
        eerr = exchange.errors,
        ep50 = exchange.pct(0.5),
        ep99 = exchange.pct(0.99),
        ratio = exchange.pct(0.5) / login_p50,
    ))
}
