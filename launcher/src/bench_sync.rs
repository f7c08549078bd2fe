//! Benchmarks of the sync loop across both services (separate processes,
//! real HTTP on loopback): propagation of a user change to the mirror,
//! logout to the main backend's first 401, a cached authenticated request
//! against an unauthenticated one, and full reconciliations of 10,000 and
//! 100,000 users.

use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel_async::RunQueryDsl;
use serde_json::json;

use crate::bench::{cpu_seconds, ok, replay, service_tokens, Run, Sample};

/// The `p` quantile of sorted durations, in milliseconds.
pub fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// Inserts users `from..to` straight into the auth database, bypassing the
/// outbox, so the reconciliation has work without the webhooks doing it
/// first. Batched on PostgreSQL; row by row in one transaction on SQLite.
async fn seed_users(url: &str, from: usize, to: usize) -> anyhow::Result<()> {
    let now = service_kit::db::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    let rows = (from..to)
        .map(|i| {
            format!(
                "('{}', 'seed-{i}@example.com', 'not-a-password-hash', NULL, false, false, false, NULL, '{now}', 1, '{now}', '{now}')",
                uuid::Uuid::now_v7()
            )
        })
        .collect();
    let batch = if url.starts_with("postgres") { 500 } else { 1 };
    crate::bench::insert_rows(
        url,
        "INSERT INTO users (id, email, password_hash, full_name, email_verified, mfa_enabled, account_locked, last_login_at, password_changed_at, version, created_at, updated_at) VALUES",
        rows,
        batch,
    )
    .await
}

/// Empties the mirror of seeded users, so the next reconciliation creates
/// them all again (the business tables hold nothing of theirs).
async fn forget_seeded(url: &str) -> anyhow::Result<()> {
    let pool = service_kit::db::DbPool::connect(url, 1).await?;
    let mut pooled = pool.get().await?;
    let sql = "DELETE FROM userbase WHERE email LIKE 'seed-%'";
    service_kit::run!(&mut pooled.conn(), |c| diesel::sql_query(sql)
        .execute(c)
        .await)?;
    Ok(())
}

pub async fn run(run: &Run) -> anyhow::Result<String> {
    let (client, auth_url, main_url) = (&run.client, run.auth.url(), run.main.url());
    let mirror = service_kit::db::DbPool::connect(&run.main_db, 2).await?;
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
            tokens.push((email, t.to_owned(), id));
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
    for (email, _, _) in tokens.iter().take(50) {
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

    // 3. An unauthenticated GET, a cached authenticated GET (/v1/me) and
    //    an authenticated GET that reads the database (a user's tasks), on
    //    the same 32 connections, taking turns in short slices so that the
    //    machine's drift over the run touches all three alike.
    let clients = 32;
    let users: std::sync::Arc<Vec<(String, uuid::Uuid)>> = std::sync::Arc::new(
        tokens
            .iter()
            .skip(50)
            .map(|(_, t, id)| (t.clone(), *id))
            .collect(),
    );
    for (token, id) in users.iter() {
        for t in 0..5 {
            let res = client
                .post(format!("{main_url}/v1/users/{id}/tasks"))
                .bearer_auth(token)
                .json(&json!({"title": format!("task {t}")}))
                .send()
                .await?;
            anyhow::ensure!(res.status().is_success(), "task: {}", res.status());
        }
    }
    let slice = run.secs / 4;
    let get = |path: String, token: Option<&str>| {
        let request = client.get(format!("{main_url}{path}"));
        match token {
            Some(t) => request.bearer_auth(t),
            None => request,
        }
        .build()
        .expect("a GET request")
    };
    let kinds: [Arc<Vec<reqwest::Request>>; 3] = [
        Arc::new(vec![get("/health/live".into(), None)]),
        Arc::new(
            users
                .iter()
                .map(|(token, _)| get("/v1/me".into(), Some(token)))
                .collect(),
        ),
        Arc::new(
            users
                .iter()
                .map(|(token, id)| get(format!("/v1/users/{id}/tasks"), Some(token)))
                .collect(),
        ),
    ];
    // Beside each kind's sample, the CPU seconds it cost the main backend
    // and this process (the load generator): which side a difference in
    // throughput is on.
    let mut samples = [Sample::empty(), Sample::empty(), Sample::empty()];
    let mut cpu = [(0.0, 0.0); 3];
    let main_pid = run.main.pid();
    let usage = || (cpu_seconds(main_pid), cpu_seconds(None));
    for _ in 0..4 {
        for (k, requests) in kinds.iter().enumerate() {
            let before = usage();
            samples[k].merge(replay(client, clients, slice, requests.clone()).await);
            let after = usage();
            cpu[k].0 += after.0 - before.0;
            cpu[k].1 += after.1 - before.1;
        }
    }
    let per_request = |k: usize| {
        let n = samples[k].len().max(1) as f64;
        format!("{:.1} / {:.1} µs", cpu[k].0 * 1e6 / n, cpu[k].1 * 1e6 / n)
    };
    let cpu_rows = format!(
        "| CPU per request, main backend / load generator: `/health/live` | {} | |\n\
         | same, cached `/v1/me` | {} | |\n\
         | same, tasks list | {} | |\n",
        per_request(0),
        per_request(1),
        per_request(2),
    );
    let [live, me, listed] = samples;
    let ratio = me.rps() / live.rps();
    let tasks_ratio = listed.rps() / live.rps();
    let under_load = (
        crate::bench::mib(&run.auth, "VmRSS"),
        crate::bench::mib(&run.main, "VmRSS"),
    );

    // 4. Full reconciliations: 10,000 users to create, then (the mirror
    //    emptied of them) 100,000 to create, then 100,000 unchanged.
    let ops_token = service_tokens(run, "ops", 1).await?.remove(0);
    let sync = |label: &'static str| {
        let (client, base, key) = (client.clone(), main_url.clone(), ops_token.clone());
        async move {
            let started = Instant::now();
            let res = client
                .post(format!("{base}/admin/v1/sync"))
                .bearer_auth(key)
                .send()
                .await?;
            if !res.status().is_success() {
                // The problem's code and detail say which side gave up.
                let status = res.status();
                let problem = res.text().await.unwrap_or_default();
                anyhow::bail!("{label} sync: {status}: {problem}");
            }
            let report: serde_json::Value = res.json().await?;
            Ok::<_, anyhow::Error>((started.elapsed(), report))
        }
    };
    eprintln!("bench: reconciliation of 10k and 100k users");
    seed_users(&run.auth_db, 0, 10_000).await?;
    let (small, small_report) = sync("10k").await?;
    forget_seeded(&run.main_db).await?;
    seed_users(&run.auth_db, 10_000, 100_000).await?;
    let (large, large_report) = sync("100k").await?;
    let (again, again_report) = sync("100k again").await?;
    let linear = large.as_secs_f64() / small.as_secs_f64();

    let (p50, p99) = (pct(&propagation, 0.5), pct(&propagation, 0.99));
    let (l50, l99) = (pct(&to_401, 0.5), pct(&to_401, 0.99));
    Ok(format!(
        "## Sync loop (both services)\n\n\
         | figure | value | goal |\n|---|---|---|\n\
         | user change (register) to the row in the mirror, {pn} users: p50 / p99 | **{p50:.1} / {p99:.1} ms** | p99 < 500 ms {pok} |\n\
         | logout (204) to the main backend's first 401, {ln} logouts: p50 / p99 | **{l50:.1} / {l99:.1} ms** | < 1 s {lok} |\n\n\
         Propagation is measured from the register response to the row being readable in the main\n\
         backend's database (polled every 0.5 ms): outbox write, worker wake-up, signed POST, verify, apply.\n\
         Logout to 401 includes the webhook, the eviction and one request.\n\n\
         ## Authenticated requests on the main backend\n\n\
         | figure | value | goal |\n|---|---|---|\n\
         | unauthenticated `GET /health/live`, {clients} connections | {live} | reference |\n\
         | `GET /v1/me` with a cached validation, {clients} connections | {mes} | |\n\
         | `GET /v1/users/{{id}}/tasks` (cached validation, one SELECT of 5 rows), {clients} connections | {lists} | |\n\
         | cached `/v1/me` ÷ unauthenticated | **{ratio:.2}** | ≥ 0.90 {rok} |\n\
         | tasks list ÷ unauthenticated | **{tasks_ratio:.2}** | ≥ 0.25 {tok} |\n\
         {cpu_rows}\
         | RSS right after this load: auth service / main backend | {ra:.1} / {rm:.1} MiB | |\n\n\
         The three take turns, four slices of a quarter of the phase each. A cached `/v1/me` is a\n\
         SHA-256 of the token and two in-memory hits (its validation, kept for its TTL and evicted by\n\
         revocations, and the caller's mirror row, kept for at most 1 s, with its JSON body rendered\n\
         once), taken in the extractor without awaiting anything; the tasks list adds one query. Each\n\
         request is built once and sent as clones, and the CPU rows divide the CPU time each side used\n\
         during a kind's slices by the requests it served.\n\n\
         ## Reconciliation (`POST /admin/v1/sync`, pages of 1,000 from the auth service)\n\n\
         | figure | value | goal |\n|---|---|---|\n\
         | 10,000 users, all to create ({sc} created) | {small_s:.2} s (server: {sms} ms) | reference |\n\
         | 100,000 users, all to create ({lc} created) | **{large_s:.2} s** (server: {lms} ms) | < 10 s {lok2} |\n\
         | 100k ÷ 10k | {linear:.1} | ≈ 10 when linear {linok} |\n\
         | 100,000 users again, nothing to change ({au} unchanged) | {again_s:.2} s (server: {ams} ms) | |\n\n",
        pn = propagation.len(),
        pok = ok(p99 < 500.0),
        ln = to_401.len(),
        lok = ok(l99 < 1000.0),
        live = live.summary(),
        mes = me.summary(),
        rok = ok(ratio >= 0.9),
        lists = listed.summary(),
        tok = ok(tasks_ratio >= 0.25),
        ra = under_load.0,
        rm = under_load.1,
        sc = small_report["created"],
        small_s = small.as_secs_f64(),
        sms = small_report["duration_ms"],
        lc = large_report["created"],
        large_s = large.as_secs_f64(),
        lms = large_report["duration_ms"],
        lok2 = ok(large.as_secs_f64() < 10.0),
        linok = ok(linear < 12.5),
        again_s = again.as_secs_f64(),
        ams = again_report["duration_ms"],
        au = again_report["unchanged"],
    ))
}
