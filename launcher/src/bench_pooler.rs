//! `launcher bench-pooler --postgres DIRECT_URL --pooler POOLER_URL`:
//! authenticated-request throughput through a transaction-mode PgBouncer,
//! as a ratio to direct connections, measured in one run.
//!
//! Two auth services and two main backends share one pair of databases:
//! one of each connects straight to PostgreSQL, the other through the
//! pooler (`*_DATABASE_POOLER=transaction`). Every workload runs against
//! both, alternating A/B/A/B so that drift (caches warming, the machine's
//! other load) falls on both sides alike. The result replaces the pooler
//! section of BENCHMARKS.md (`./scripts/bench` keeps it when it rewrites
//! the rest).

use std::time::Duration;

use launcher::system::{free_port, Service, System};
use serde_json::json;

use crate::bench::{cores, load, ok, Databases, Sample};

pub const SECTION_START: &str = "<!-- pooler benchmark: ./scripts/bench-pooler -->";
pub const SECTION_END: &str = "<!-- end of pooler benchmark -->";

struct Args {
    postgres: String,
    pooler: String,
    seconds: u64,
    out: String,
}

fn parse(args: &[String]) -> anyhow::Result<Args> {
    let (mut postgres, mut pooler) = (None, None);
    let (mut seconds, mut out) = (5, "BENCHMARKS.md".to_owned());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("{a} needs a value"))
        };
        match a.as_str() {
            "--postgres" => postgres = Some(value()?),
            "--pooler" => pooler = Some(value()?),
            "--seconds" => seconds = value()?.parse()?,
            "--out" => out = value()?,
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    Ok(Args {
        postgres: postgres.ok_or_else(|| anyhow::anyhow!("--postgres URL is required"))?,
        pooler: pooler.ok_or_else(|| anyhow::anyhow!("--pooler URL is required"))?,
        seconds,
        out,
    })
}

/// Extra variables for one service.
type Env = Vec<(&'static str, String)>;

/// One side of the comparison: an auth service and a main backend.
struct Side {
    auth: Service,
    main: Service,
}

pub async fn run(raw: &[String]) -> anyhow::Result<()> {
    let args = parse(raw)?;
    let dir = std::env::temp_dir().join(format!("pooler-bench-{}", uuid::Uuid::new_v4().simple()));
    let system = System::new(&dir)?;
    let dbs = Databases::create(&dir, Some(&args.postgres)).await?;
    let outcome = measure(&system, &dbs, &args).await;
    dbs.drop_all().await;
    let _ = std::fs::remove_dir_all(&dir);
    let section = outcome?;
    let old = std::fs::read_to_string(&args.out).unwrap_or_default();
    std::fs::write(&args.out, replace_section(&old, &section))?;
    println!("{section}");
    Ok(())
}

/// `old` with its pooler section replaced by `section` (appended if none).
pub fn replace_section(old: &str, section: &str) -> String {
    let kept = match (old.find(SECTION_START), old.find(SECTION_END)) {
        (Some(a), Some(b)) if a < b => {
            format!("{}{}", &old[..a], &old[b + SECTION_END.len()..])
        }
        _ => old.to_owned(),
    };
    format!("{}\n\n{section}\n", kept.trim_end())
}

/// The pooler section of `text`, if it has one.
pub fn section_of(text: &str) -> Option<&str> {
    let a = text.find(SECTION_START)?;
    let b = text.find(SECTION_END)?;
    (a < b).then(|| &text[a..b + SECTION_END.len()])
}

async fn start_side(
    system: &System,
    tag: &str,
    dbs: &Databases,
    pooled: Option<(&str, &str)>,
) -> anyhow::Result<Side> {
    let (auth_port, main_port) = (free_port()?, free_port()?);
    let (auth_db, main_db, auth_env, main_env): (_, _, Env, Env) = match pooled {
        None => (dbs.auth.clone(), dbs.main.clone(), Vec::new(), Vec::new()),
        Some((auth_pooled, main_pooled)) => (
            auth_pooled.to_owned(),
            main_pooled.to_owned(),
            vec![
                ("AUTH_DATABASE_POOLER", "transaction".to_owned()),
                ("AUTH_DATABASE_DIRECT_URL", dbs.auth.clone()),
            ],
            vec![
                ("DATABASE_POOLER", "transaction".to_owned()),
                ("DATABASE_DIRECT_URL", dbs.main.clone()),
            ],
        ),
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

fn with_database(url: &str, of: &str) -> anyhow::Result<String> {
    let name = of
        .rsplit_once('/')
        .map(|(_, n)| n)
        .ok_or_else(|| anyhow::anyhow!("a database URL ends in /DBNAME"))?;
    let base = url
        .rsplit_once('/')
        .map(|(b, _)| b)
        .ok_or_else(|| anyhow::anyhow!("--pooler URL must end in /DBNAME"))?;
    Ok(format!("{base}/{name}"))
}

async fn measure(system: &System, dbs: &Databases, args: &Args) -> anyhow::Result<String> {
    let direct = start_side(system, "direct", dbs, None).await?;
    let (auth_pooled, main_pooled) = (
        with_database(&args.pooler, &dbs.auth)?,
        with_database(&args.pooler, &dbs.main)?,
    );
    let pooled = start_side(
        system,
        "pooled",
        dbs,
        Some((auth_pooled.as_str(), main_pooled.as_str())),
    )
    .await?;
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
        eprintln!("bench-pooler: {what}");
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
    let version = std::process::Command::new("pgbouncer")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_owned))
        .unwrap_or_else(|| "PgBouncer".into());
    Ok(format!(
        "{SECTION_START}\n\
         ## PostgreSQL through PgBouncer (transaction mode)\n\n\
         Reproduce: `./scripts/bench-pooler` (starts a throwaway PostgreSQL and PgBouncer, then runs\n\
         `launcher bench-pooler --postgres URL --pooler URL --seconds {secs}`; this section is rewritten).\n\n\
         - Date: {date}\n- Commit: {commit}\n- Machine: {machine}\n- Pooler: {version}, `pool_mode = transaction`\n\
         - Both sides run at once on one pair of databases: an auth service and a main backend straight to\n  \
           PostgreSQL, and another pair with `*_DATABASE_POOLER=transaction` through PgBouncer. Each workload\n  \
           alternates direct/pooled twice ({half:.1} s each), {tasks} clients, keep-alive; figures are the means.\n\n\
         | workload | direct | through PgBouncer | ratio |\n|---|---|---|---|\n{rows}\n\
         Authenticated requests that touch the database (the first row) through the pooler run at\n\
         **{headline:.2}×** of direct (goal ≥ 0.80 {verdict}). Through the pooler each statement is sent\n\
         unnamed, parse to execute in one round trip (`vendor/diesel-async`, see README, Production).\n\
         {SECTION_END}",
        secs = args.seconds,
        date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        commit = crate::bench::commit(),
        machine = crate::bench::machine(),
        half = half.as_secs_f64(),
        verdict = ok(headline >= 0.8),
    ))
}
