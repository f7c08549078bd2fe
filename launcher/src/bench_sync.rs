//! Benchmarks of the sync loop across both services (SQLite, in-process,
//! real HTTP on loopback): propagation of a user change to the mirror,
//! logout to the main backend's first 401, a cached authenticated request
//! against an unauthenticated one, and a full reconciliation of 100,000 users.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use diesel_async::RunQueryDsl;
use serde_json::json;

use crate::bench::load;

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// Inserts `n` users straight into the auth database, bypassing the outbox,
/// so the reconciliation has work without the webhooks doing it first.
async fn seed_users(url: &str, n: usize) -> anyhow::Result<()> {
    let pool = service_kit::db::DbPool::connect(url, 1).await?;
    let mut pooled = pool.get().await?;
    let conn = &mut pooled.conn();
    let now = service_kit::db::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    service_kit::transaction!(conn, |tx| -> anyhow::Error {
        for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
            let values: Vec<String> = chunk
                .iter()
                .map(|i| {
                    format!(
                        "('{}', 'seed-{i}@example.com', 'not-a-password-hash', NULL, false, false, false, NULL, '{now}', 1, '{now}', '{now}')",
                        uuid::Uuid::now_v7()
                    )
                })
                .collect();
            let sql = format!(
                "INSERT INTO users (id, email, password_hash, full_name, email_verified, mfa_enabled, account_locked, last_login_at, password_changed_at, version, created_at, updated_at) VALUES {}",
                values.join(", ")
            );
            service_kit::run!(tx, |c| diesel::sql_query(&sql).execute(c).await)?;
        }
        Ok(())
    })
}

pub async fn run(secs: Duration, cores: usize) -> anyhow::Result<String> {
    let dir = std::env::temp_dir().join(format!("sync-bench-{}", uuid::Uuid::new_v4().simple()));
    let secrets = launcher::dev::ensure_dev_secrets(&dir)?;
    let (auth_port, main_port) = (free_port()?, free_port()?);
    let auth_db = format!("sqlite://{}", dir.join("auth.db").display());
    let main_db = format!("sqlite://{}", dir.join("main.db").display());
    let mut env: HashMap<String, String> = secrets.clone();
    for (k, v) in [
        ("AUTH_BIND", format!("127.0.0.1:{auth_port}")),
        ("AUTH_DATABASE_URL", auth_db.clone()),
        (
            "AUTH_WEBHOOK_URL",
            format!("http://127.0.0.1:{main_port}/webhooks/auth"),
        ),
        ("MAIN_BIND", format!("127.0.0.1:{main_port}")),
        ("DATABASE_URL", main_db.clone()),
        ("AUTH_SERVICE_URL", format!("http://127.0.0.1:{auth_port}")),
        ("SYNC_INTERVAL_SECONDS", "0".into()),
        ("AUTH_RATE_LIMIT_PER_MINUTE", "0".into()),
    ] {
        env.insert(k.into(), v);
    }
    let main = main_backend::Application::build(
        main_backend::configuration::Settings::from_lookup(|k| env.get(k).cloned())?,
    )
    .await?;
    let auth = auth_service::Application::build(
        auth_service::configuration::Settings::from_lookup(|k| env.get(k).cloned())?,
    )
    .await?;
    let (main_handle, auth_handle) = (main.handle(), auth.handle());
    tokio::spawn(main.run_until_stopped());
    tokio::spawn(auth.run_until_stopped());
    let auth_url = format!("http://127.0.0.1:{auth_port}");
    let main_url = format!("http://127.0.0.1:{main_port}");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let mirror = service_kit::db::DbPool::connect(&main_db, 2).await?;
    let password = "benchmark password 123";

    // 1. A user change reaching the mirror: register, then watch the mirror.
    let mut propagation = Vec::new();
    let mut tokens = Vec::new();
    for i in 0..200 {
        let email = format!("sync-{i}-{}@example.com", uuid::Uuid::new_v4().simple());
        let res = client
            .post(format!("{auth_url}/v1/register"))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await?;
        anyhow::ensure!(res.status().is_success(), "register: {}", res.status());
        let done = Instant::now();
        let body: serde_json::Value = res.json().await?;
        let id: uuid::Uuid = serde_json::from_value(body["user"]["id"].clone())?;
        if let Some(t) = body["tokens"]["access_token"].as_str() {
            tokens.push((email, t.to_owned()));
        }
        loop {
            let mut c = mirror.get().await?;
            if main_backend::db::mirror::find(&mut c.conn(), id)
                .await?
                .is_some()
            {
                propagation.push(done.elapsed());
                break;
            }
            anyhow::ensure!(
                done.elapsed() < Duration::from_secs(10),
                "user never reached the mirror"
            );
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
    }
    propagation.sort();

    // 2. Logout to the main backend's first 401, cache warm beforehand.
    let mut to_401 = Vec::new();
    for (email, _) in tokens.iter().take(20) {
        let pair: serde_json::Value = client
            .post(format!("{auth_url}/v1/login"))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await?
            .json()
            .await?;
        let token = pair["access_token"].as_str().unwrap_or_default().to_owned();
        let me = client
            .get(format!("{main_url}/v1/me"))
            .bearer_auth(&token)
            .send()
            .await?;
        anyhow::ensure!(me.status().is_success(), "warm-up /v1/me: {}", me.status());
        let res = client
            .post(format!("{auth_url}/v1/logout"))
            .bearer_auth(&token)
            .send()
            .await?;
        anyhow::ensure!(res.status().as_u16() == 204, "logout: {}", res.status());
        let done = Instant::now();
        loop {
            let res = client
                .get(format!("{main_url}/v1/me"))
                .bearer_auth(&token)
                .send()
                .await?;
            if res.status().as_u16() == 401 {
                to_401.push(done.elapsed());
                break;
            }
            anyhow::ensure!(
                done.elapsed() < Duration::from_secs(10),
                "token never refused"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    to_401.sort();

    // 3. Cached authenticated GET /v1/me against GET /health/live, same clients.
    let clients = 8 * cores;
    let live = {
        let (client, base) = (client.clone(), main_url.clone());
        load(clients, secs, move |_| {
            let (client, base) = (client.clone(), base.clone());
            async move { client.get(format!("{base}/health/live")).send().await }
        })
        .await
    };
    let live_tokens: std::sync::Arc<Vec<String>> =
        std::sync::Arc::new(tokens.iter().skip(20).map(|(_, t)| t.clone()).collect());
    let me = {
        let (client, base, tokens) = (client.clone(), main_url.clone(), live_tokens.clone());
        load(clients, secs, move |i| {
            let (client, base, token) = (
                client.clone(),
                base.clone(),
                tokens[i % tokens.len()].clone(),
            );
            async move {
                client
                    .get(format!("{base}/v1/me"))
                    .bearer_auth(token)
                    .send()
                    .await
            }
        })
        .await
    };
    let ratio = me.rps() / live.rps();

    // 4. Full reconciliation of 100,000 users (the mirror has the 200 above).
    let n = 100_000;
    seed_users(&auth_db, n).await?;
    let mut out = Vec::new();
    auth_service::cli::service_token(
        &auth_db,
        auth_service::cli::TokenCommand::Create {
            name: "bench-ops".into(),
            scopes: vec!["ops".into()],
            expires_in_days: Some(1),
        },
        &mut out,
    )
    .await?;
    let ops_token = String::from_utf8(out)?.trim().to_owned();
    let sync = |label: &'static str| {
        let (client, base, key) = (client.clone(), main_url.clone(), ops_token.clone());
        async move {
            let started = Instant::now();
            let res = client
                .post(format!("{base}/admin/v1/sync"))
                .bearer_auth(key)
                .send()
                .await?;
            anyhow::ensure!(res.status().is_success(), "{label} sync: {}", res.status());
            let report: serde_json::Value = res.json().await?;
            Ok::<_, anyhow::Error>((started.elapsed(), report))
        }
    };
    let (first, first_report) = sync("first").await?;
    let (second, second_report) = sync("second").await?;

    drop(main_handle.stop(true));
    drop(auth_handle.stop(true));
    let _ = std::fs::remove_dir_all(Path::new(&dir));

    let ok = |b: bool| if b { "✅" } else { "❌" };
    let (p50, p99) = (pct(&propagation, 0.5), pct(&propagation, 0.99));
    let (l50, lmax) = (pct(&to_401, 0.5), pct(&to_401, 1.0));
    Ok(format!(
        "## Sync loop (both services, SQLite, in one process)\n\n\
         | figure | value | goal |\n|---|---|---|\n\
         | user change (register) to the row in the mirror, {pn} users: p50 / p99 | **{p50:.1} / {p99:.1} ms** | p50 < 50, p99 < 500 ms {pok} |\n\
         | logout (204) to the main backend's first 401, {ln} logouts: p50 / max | **{l50:.1} / {lmax:.1} ms** | < 1 s {lok} |\n\
         | `GET /health/live` on the main backend, {clients} clients | {lrps:.0} req/s, p50 / p99 {lp50:.2} / {lp99:.2} ms ({lerr} errors) | reference |\n\
         | `GET /v1/me` with a cached validation, {clients} clients | {mrps:.0} req/s, p50 / p99 {mp50:.2} / {mp99:.2} ms ({merr} errors) | |\n\
         | cached `/v1/me` ÷ `/health/live` | **{ratio:.2}** | ≥ 0.80 {rok} |\n\
         | full reconciliation, {n} users, empty mirror → {fc} created | **{first_s:.2} s** (server: {fms} ms) | < 10 s {fok} |\n\
         | the same again, nothing to change ({su} unchanged) | {second_s:.2} s (server: {sms} ms) | |\n\n\
         Propagation is measured from the register response to the row being readable in the main\n\
         backend's database (polled every 0.5 ms): outbox write, worker wake-up, signed POST, verify, apply.\n\
         Logout to 401 includes the webhook, the eviction and one request. A cached `/v1/me` is two\n\
         in-memory hits (token check, and the caller's mirror row, kept for at most 1 s).\n",
        pn = propagation.len(),
        pok = ok(p50 < 50.0 && p99 < 500.0),
        ln = to_401.len(),
        lok = ok(lmax < 1000.0),
        lrps = live.rps(),
        lp50 = live.pct(0.5),
        lp99 = live.pct(0.99),
        lerr = live.errors,
        mrps = me.rps(),
        mp50 = me.pct(0.5),
        mp99 = me.pct(0.99),
        merr = me.errors,
        rok = ok(ratio >= 0.8),
        fc = first_report["created"],
        first_s = first.as_secs_f64(),
        fms = first_report["duration_ms"],
        fok = ok(first.as_secs_f64() < 10.0),
        second_s = second.as_secs_f64(),
        sms = second_report["duration_ms"],
        su = second_report["unchanged"],
    ))
}
