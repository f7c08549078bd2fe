//! Two routes to one PostgreSQL compared in one run, as a ratio of
//! authenticated-request throughput:
//! - `launcher bench-pooler --postgres DIRECT_URL --pooler POOLER_URL`:
//!   through a transaction-mode PgBouncer against direct connections;
//! - `launcher bench-tls --postgres PLAIN_URL --tls TLS_URL`: over TLS
//!   (the URL's sslmode, e.g. verify-full) against plain connections.
//!
//! Two auth services and two main backends share one pair of databases:
//! one of each connects the plain, direct way, the other by the route under
//! test. Every workload runs against both, alternating A/B/A/B so that
//! drift (caches warming, the machine's other load) falls on both sides
//! alike. The result replaces its own section of BENCHMARKS.md
//! (`./scripts/bench` keeps both when it rewrites the rest).

use std::time::Duration;

use launcher::system::{Port, Service, System};
use serde_json::json;

use crate::bench::{cores, load, ok, Databases, Sample};

/// What a run compares the direct, plain route with.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `--pooler URL`: a transaction-mode pooler.
    Pooler,
    /// `--tls URL`: TLS as the URL's sslmode asks.
    Tls,
}

impl Route {
    /// The markers around this route's section of BENCHMARKS.md.
    pub fn markers(self) -> (&'static str, &'static str) {
        match self {
            Route::Pooler => (
                "<!-- pooler benchmark: ./scripts/bench-pooler -->",
                "<!-- end of pooler benchmark -->",
            ),
            Route::Tls => (
                "<!-- tls benchmark: ./scripts/bench-tls -->",
                "<!-- end of tls benchmark -->",
            ),
        }
    }
}

/// `launcher bench-pooler` / `bench-tls`: two routes to one server.
#[derive(clap::Args)]
pub struct Args {
    /// PostgreSQL straight and plain (an admin URL: databases are made).
    #[arg(long, value_name = "URL")]
    postgres: String,
    /// The route under test (`--pooler` / `--tls` as the scripts spell it):
    /// the pooler's URL (`bench-pooler`) or the same
    /// server's URL with its sslmode (`bench-tls`).
    #[arg(long = "via", alias = "pooler", alias = "tls", value_name = "URL")]
    other: String,
    /// Seconds per workload (split over its phases).
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// The report whose section is rewritten.
    #[arg(long, default_value = "BENCHMARKS.md")]
    out: String,
}

/// Extra variables for one service.
type Env = Vec<(&'static str, String)>;

/// One side of the comparison: an auth service and a main backend.
struct Side {
    auth: Service,
    main: Service,
}

pub async fn run(route: Route, args: Args) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("route-bench-{}", uuid::Uuid::new_v4().simple()));
    let system = System::new(&dir)?;
    let dbs = Databases::create(&dir, Some(&args.postgres)).await?;
    let outcome = measure(&system, &dbs, route, &args).await;
    dbs.drop_all().await;
    let _ = std::fs::remove_dir_all(&dir);
    let section = outcome?;
    let old = std::fs::read_to_string(&args.out).unwrap_or_default();
    std::fs::write(&args.out, replace_section(route.markers(), &old, &section))?;
    println!("{section}");
    Ok(())
}

/// `old` with `route`'s section replaced by `section` (appended if none).
pub fn replace_section(markers: (&str, &str), old: &str, section: &str) -> String {
    let (start, end) = markers;
    let kept = match (old.find(start), old.find(end)) {
        (Some(a), Some(b)) if a < b => format!("{}{}", &old[..a], &old[b + end.len()..]),
        _ => old.to_owned(),
    };
    format!("{}\n\n{section}\n", kept.trim_end())
}

/// `route`'s section of `text`, if it has one.
pub fn section_of<'a>(markers: (&str, &str), text: &'a str) -> Option<&'a str> {
    let (start, end) = markers;
    let a = text.find(start)?;
    let b = text.find(end)?;
    (a < b).then(|| &text[a..b + end.len()])
}

/// Starts one side: `route` `None` connects straight and plain, otherwise
/// by the route under test at `other` (the pooler's or the TLS URL).
async fn start_side(
    system: &System,
    tag: &str,
    dbs: &Databases,
    route: Option<(Route, &str)>,
) -> anyhow::Result<Side> {
    let (auth_port, main_port) = (Port::new()?, Port::new()?);
    let (auth_db, main_db, auth_env, main_env): (_, _, Env, Env) = match route {
        None => (dbs.auth.clone(), dbs.main.clone(), Vec::new(), Vec::new()),
        Some((route, other)) => {
            let (auth_url, main_url) = (
                with_database(other, &dbs.auth)?,
                with_database(other, &dbs.main)?,
            );
            match route {
                Route::Pooler => (
                    auth_url,
                    main_url,
                    vec![
                        ("AUTH_DATABASE_POOLER", "transaction".to_owned()),
                        ("AUTH_DATABASE_DIRECT_URL", dbs.auth.clone()),
                    ],
                    vec![
                        ("DATABASE_POOLER", "transaction".to_owned()),
                        ("DATABASE_DIRECT_URL", dbs.main.clone()),
                    ],
                ),
                Route::Tls => (auth_url, main_url, Vec::new(), Vec::new()),
            }
        }
    };
    let auth_pairs: Vec<(&str, &str)> = auth_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut auth = system.auth(
        &format!("auth-{tag}"),
        auth_port,
        &auth_db,
        &format!("http://127.0.0.1:{main_port}/webhooks/auth"),
        &auth_pairs,
    )?;
    auth.ready(Duration::from_secs(60)).await?;
    let mut main_pairs: Vec<(&str, &str)> =
        main_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    main_pairs.push(("SYNC_INTERVAL_SECONDS", "0"));
    let mut main = system.main(
        &format!("main-{tag}"),
        main_port,
        &main_db,
        &auth.url(),
        &main_pairs,
    )?;
    main.ready(Duration::from_secs(60)).await?;
    Ok(Side { auth, main })
}

/// `url` naming the database that `of` (a URL) names.
fn with_database(url: &str, of: &str) -> anyhow::Result<String> {
    let path = of.split_once('?').map_or(of, |(p, _)| p);
    let name = path
        .rsplit_once('/')
        .map(|(_, n)| n)
        .ok_or_else(|| anyhow::anyhow!("a database URL ends in /DBNAME"))?;
    service_kit::db::url_with_database(url, name)
}

async fn measure(
    system: &System,
    dbs: &Databases,
    route: Route,
    args: &Args,
) -> anyhow::Result<String> {
    let direct = start_side(system, "direct", dbs, None).await?;
    let pooled = start_side(system, "other", dbs, Some((route, &args.other))).await?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;

    // Users, registered through the direct side; each gets a few tasks
    // through the main backend (which also puts them in its mirror).
    let mut users: Vec<(String, String)> = Vec::new();
    for i in 0..16 {
        let res = client
            .post(format!("{}/v1/register", direct.auth.url()))
            .json(&json!({
                "email": format!("pooler-{i}-{}@example.com", uuid::Uuid::new_v4().simple()),
                "password": "benchmark password 123",
            }))
            .send()
            .await?;
        anyhow::ensure!(res.status().is_success(), "register: {}", res.status());
        let body: serde_json::Value = res.json().await?;
        let id = body["user"]["id"].as_str().unwrap_or_default().to_owned();
        let token = body["tokens"]["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        for t in 0..5 {
            for side in [&direct, &pooled] {
                let res = client
                    .post(format!("{}/v1/users/{id}/tasks", side.main.url()))
                    .bearer_auth(&token)
                    .json(&json!({"title": format!("task {t}")}))
                    .send()
                    .await?;
                anyhow::ensure!(res.status().is_success(), "task: {}", res.status());
            }
        }
        users.push((id, token));
    }
    let users = std::sync::Arc::new(users);
    let tasks = 4 * cores();
    let half = Duration::from_secs(args.seconds.max(2)) / 2;

    type Workload = (&'static str, fn(&Side) -> String, bool);
    // (what, base URL of the side, whether it writes)
    let workloads: [Workload; 4] = [
        (
            "main backend: list own tasks (`GET /v1/users/{id}/tasks`, one SELECT)",
            |s| s.main.url(),
            false,
        ),
        (
            "main backend: create a task (`POST /v1/users/{id}/tasks`, one INSERT)",
            |s| s.main.url(),
            true,
        ),
        (
            "auth service: `GET /v1/me` (session and user read)",
            |s| s.auth.url(),
            false,
        ),
        (
            "main backend: cached `GET /v1/me` (no database work)",
            |s| s.main.url(),
            false,
        ),
    ];
    let mut rows = String::new();
    let mut headline = None;
    for (n, (what, base_of, writes)) in workloads.iter().enumerate() {
        eprintln!("bench: {what}");
        let mut samples: [Vec<Sample>; 2] = [Vec::new(), Vec::new()];
        for _round in 0..2 {
            for (k, side) in [&direct, &pooled].into_iter().enumerate() {
                let base = base_of(side);
                let (client, users) = (client.clone(), users.clone());
                let (n, writes) = (n, *writes);
                let sample = load(tasks, half, move |i| {
                    let (id, token) = users[i % users.len()].clone();
                    let client = client.clone();
                    let url = match n {
                        0 | 1 => format!("{base}/v1/users/{id}/tasks"),
                        _ => format!("{base}/v1/me"),
                    };
                    async move {
                        let req = if writes {
                            client.post(url).json(&json!({"title": "bench"}))
                        } else {
                            client.get(url)
                        };
                        req.bearer_auth(token).send().await
                    }
                })
                .await;
                samples[k].push(sample);
            }
        }
        let rps = |s: &[Sample]| s.iter().map(Sample::rps).sum::<f64>() / s.len() as f64;
        let errors = |s: &[Sample]| s.iter().map(|x| x.errors).sum::<usize>();
        let (d, p) = (rps(&samples[0]), rps(&samples[1]));
        let ratio = p / d;
        if n == 0 {
            headline = Some(ratio);
        }
        rows.push_str(&format!(
            "| {what} | {d:.0} req/s, p99 {dp:.2} ms ({de} errors) | {p:.0} req/s, p99 {pp:.2} ms ({pe} errors) | **{ratio:.2}** |\n",
            dp = samples[0][1].pct(0.99),
            pp = samples[1][1].pct(0.99),
            de = errors(&samples[0]),
            pe = errors(&samples[1]),
        ));
    }
    let headline = headline.unwrap_or(f64::NAN);
    let (start, end) = route.markers();
    let common = format!(
        "- Date: {date}\n- Commit: {commit}\n- Machine: {machine}\n",
        date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        commit = crate::bench::commit(),
        machine = crate::bench::machine(),
    );
    let table = format!(
        "alternates the two sides twice ({half:.1} s each), {tasks} clients, keep-alive; figures are the means.",
        half = half.as_secs_f64(),
    );
    Ok(match route {
        Route::Pooler => {
            let version = std::process::Command::new("pgbouncer")
                .arg("--version")
                .output()
                .ok()
                .and_then(|o| String::from_utf8(o.stdout).ok())
                .and_then(|s| s.lines().next().map(str::to_owned))
                .unwrap_or_else(|| "PgBouncer".into());
            format!(
                "{start}\n\
                 ## PostgreSQL through PgBouncer (transaction mode)\n\n\
                 Reproduce: `./scripts/bench-pooler` (starts a throwaway PostgreSQL and PgBouncer, then runs\n\
                 `launcher bench-pooler --postgres URL --pooler URL --seconds {secs}`; this section is rewritten).\n\n\
                 {common}- Pooler: {version}, `pool_mode = transaction`\n\
                 - Both sides run at once on one pair of databases: an auth service and a main backend straight to\n  \
                   PostgreSQL, and another pair with `*_DATABASE_POOLER=transaction` through PgBouncer. Each workload\n  \
                   {table}\n\n\
                 | workload | direct | through PgBouncer | ratio |\n|---|---|---|---|\n{rows}\n\
                 Authenticated requests that touch the database (the first row) through the pooler run at\n\
                 **{headline:.2}×** of direct (goal ≥ 0.80 {verdict}). Through the pooler each statement is sent\n\
                 unnamed, parse to execute in one round trip (`vendor/diesel-async`, see README, Production).\n\
                 {end}",
                secs = args.seconds,
                verdict = ok(headline >= 0.8),
            )
        }
        Route::Tls => format!(
            "{start}\n\
             ## PostgreSQL over TLS\n\n\
             Reproduce: `./scripts/bench-tls` (starts a throwaway PostgreSQL with `ssl=on` and a CA made for the\n\
             run, then runs `launcher bench-tls --postgres URL --tls URL --seconds {secs}`; this section is rewritten).\n\n\
             {common}- TLS side: `sslmode=verify-full` (rustls, TLS 1.3, ECDSA P-256 certificate); plain side: `sslmode=disable`\n\
             - Both sides run at once on one pair of databases on one server; each workload\n  \
               {table} Connections are pooled and kept, so the\n  \
               handshake is paid once per connection, and what is measured is encryption per query.\n\n\
             | workload | plain | over TLS | ratio |\n|---|---|---|---|\n{rows}\n\
             Authenticated requests that touch the database (the first row) over TLS run at **{headline:.2}×**\n\
             of plain connections (goal ≥ 0.90 {verdict}). On loopback with two cores shared by the services, the\n\
             server and the load generator, encrypting on both ends (rustls here, OpenSSL in PostgreSQL) costs\n\
             CPU the services would otherwise use; across a real network the round trip dominates and the\n\
             share is smaller. Phases shorter than 10 s varied by ±0.1 between runs here.\n\
             {end}",
            secs = args.seconds,
            verdict = ok(headline >= 0.9),
        ),
    })
}
