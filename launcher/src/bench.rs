//! The benchmark harness: `./scripts/bench [--postgres URL] [--seconds N]`
//! (release build, then `launcher bench`), which rewrites BENCHMARKS.md.
//!
//! Starts the release binaries of both services as separate processes on
//! loopback with fresh databases (SQLite files by default; with
//! `--postgres`, two new databases on that server, dropped afterwards),
//! drives bounded load from this process (a fixed number of client tasks
//! for a fixed time), and records each figure beside its reference from the
//! same run, so ratios hold even on a noisy machine. The auth-service
//! figures are here; the ones across both services are in `bench_sync`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use launcher::system::{Port, Service, System};
use serde_json::json;

/// `launcher bench`: the whole benchmark, written to `--out`.
#[derive(clap::Args)]
pub struct Args {
    /// A PostgreSQL admin URL to run on (two databases are made and dropped);
    /// SQLite when absent.
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,
    /// Seconds per measured phase.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// The report to rewrite.
    #[arg(long, default_value = "BENCHMARKS.md")]
    out: String,
}

/// Latencies in microseconds, sorted.
pub struct Sample {
    latencies: Vec<u64>,
    pub errors: usize,
    elapsed: Duration,
}

impl Sample {
    /// From latencies in microseconds (any order).
    pub fn of(mut latencies: Vec<u64>, errors: usize, elapsed: Duration) -> Self {
        latencies.sort_unstable();
        Self {
            latencies,
            errors,
            elapsed,
        }
    }

    /// Nothing yet: slices of one workload are merged into it.
    pub fn empty() -> Self {
        Self::of(Vec::new(), 0, Duration::ZERO)
    }

    /// Adds another slice of the same workload.
    pub fn merge(&mut self, other: Sample) {
        self.latencies.extend(other.latencies);
        self.latencies.sort_unstable();
        self.errors += other.errors;
        self.elapsed += other.elapsed;
    }

    /// How many latencies it holds.
    pub fn len(&self) -> usize {
        self.latencies.len()
    }

    pub fn rps(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }
    pub fn pct(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[i] as f64 / 1000.0
    }
    /// `N req/s, p50 / p99 a / b ms (E errors)`.
    pub fn summary(&self) -> String {
        format!(
            "{:.0} req/s, p50 / p99 {:.2} / {:.2} ms ({} errors)",
            self.rps(),
            self.pct(0.5),
            self.pct(0.99),
            self.errors
        )
    }
}

/// `tasks` clients send `requests` in turn for `duration`, each request
/// built once beforehand. The generator shares the cores with the services,
/// so a send is only a clone of a finished request (no URL to parse, no
/// JSON or header to format): what it costs is small and the same for the
/// phases whose figures are compared.
pub async fn replay(
    client: &reqwest::Client,
    tasks: usize,
    duration: Duration,
    requests: Arc<Vec<reqwest::Request>>,
) -> Sample {
    let client = client.clone();
    load(tasks, duration, move |i| {
        let request = requests[i % requests.len()]
            .try_clone()
            .expect("a request with a buffered body");
        client.execute(request)
    })
    .await
}

/// One `POST /internal/v1/introspect` per token, with the service API key,
/// ready for [`replay`].
pub fn introspect_requests<'a>(
    run: &Run,
    tokens: impl IntoIterator<Item = &'a str>,
) -> anyhow::Result<Arc<Vec<reqwest::Request>>> {
    let url = format!("{}/internal/v1/introspect", run.auth.url());
    let requests = tokens
        .into_iter()
        .map(|token| {
            run.client
                .post(&url)
                .bearer_auth(&run.api_key)
                .json(&json!({ "token": token }))
                .build()
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Arc::new(requests))
}

/// `tasks` clients each send `make(i)` in a loop for `duration`; only 2xx
/// answers count as served.
pub async fn load<F, Fut>(tasks: usize, duration: Duration, make: F) -> Sample
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = reqwest::Result<reqwest::Response>> + Send,
{
    let start = Instant::now();
    let deadline = start + duration;
    let mut handles = Vec::new();
    for t in 0..tasks {
        let make = make.clone();
        handles.push(tokio::spawn(async move {
            let (mut lat, mut errors, mut i) = (Vec::new(), 0usize, t);
            while Instant::now() < deadline {
                let sent = Instant::now();
                match make(i).await {
                    Ok(res) if res.status().is_success() => {
                        let _ = res.bytes().await;
                        lat.push(sent.elapsed().as_micros() as u64);
                    }
                    _ => errors += 1,
                }
                i += tasks;
            }
            (lat, errors)
        }));
    }
    let mut sample = Sample {
        latencies: Vec::new(),
        errors: 0,
        elapsed: Duration::ZERO,
    };
    for h in handles {
        if let Ok((lat, errors)) = h.await {
            sample.latencies.extend(lat);
            sample.errors += errors;
        }
    }
    sample.elapsed = start.elapsed();
    sample.latencies.sort_unstable();
    sample
}

/// `git describe` of the tree being measured.
pub fn commit() -> String {
    std::process::Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines().next().map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse::<u64>()
                    .unwrap_or(0)
                    / 1024
                    / 1024
            })
        })
        .unwrap_or(0);
    format!("{} cores, {cpu}, {mem} GiB RAM", cores())
}

/// CPU seconds (user and system) a process has used so far, from
/// `/proc/PID/stat`; `None` for this process. 0 when unreadable.
pub fn cpu_seconds(pid: Option<u32>) -> f64 {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".into(),
    };
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15, i.e. 11 and 12 after the name;
    // Linux reports them in USER_HZ, 100 on every architecture it runs on.
    (ticks(11) + ticks(12)) / 100.0
}

pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

pub fn ok(b: bool) -> &'static str {
    if b {
        "✅"
    } else {
        "❌"
    }
}

/// Resident memory of a service in MiB: `VmRSS` now, or `VmHWM` (peak).
pub fn mib(service: &Service, field: &str) -> f64 {
    service.memory_kib(field).unwrap_or(0) as f64 / 1024.0
}

/// Fresh databases for one run (the auth service's, the main backend's,
/// and a second main backend's that follows the event feed), and how to
/// drop them afterwards.
pub struct Databases {
    pub auth: String,
    pub main: String,
    pub stream_main: String,
    postgres: Option<(String, Vec<String>)>,
}

impl Databases {
    pub async fn create(dir: &std::path::Path, postgres: Option<&str>) -> anyhow::Result<Self> {
        use diesel_async::RunQueryDsl;
        let Some(admin) = postgres else {
            return Ok(Self {
                auth: format!("sqlite://{}", dir.join("auth.db").display()),
                main: format!("sqlite://{}", dir.join("main.db").display()),
                stream_main: format!("sqlite://{}", dir.join("stream-main.db").display()),
                postgres: None,
            });
        };
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let names = vec![
            format!("bench_auth_{suffix}"),
            format!("bench_main_{suffix}"),
            format!("bench_stream_{suffix}"),
        ];
        let mut conn = service_kit::db::establish_pg(admin).await?;
        for name in &names {
            diesel::sql_query(format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await?;
        }
        Ok(Self {
            auth: service_kit::db::url_with_database(admin, &names[0])?,
            main: service_kit::db::url_with_database(admin, &names[1])?,
            stream_main: service_kit::db::url_with_database(admin, &names[2])?,
            postgres: Some((admin.to_owned(), names)),
        })
    }

    pub async fn drop_all(&self) {
        use diesel_async::RunQueryDsl;
        if let Some((admin, names)) = &self.postgres {
            if let Ok(mut conn) = service_kit::db::establish_pg(admin).await {
                for name in names {
                    let _ =
                        diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                            .execute(&mut conn)
                            .await;
                }
            }
        }
    }
}

/// What the phases share: both services running, their databases, and
/// the run's parameters.
pub struct Run {
    pub client: reqwest::Client,
    pub auth: Service,
    pub main: Service,
    pub auth_db: String,
    pub main_db: String,
    pub api_key: String,
    pub secs: Duration,
    /// Starts more services (the event-feed section's second main backend).
    pub system: System,
    pub stream_main_db: String,
}

impl Run {
    /// A run of two started services on `dbs`, with a keep-alive client.
    pub fn new(
        system: System,
        dbs: &Databases,
        (auth, main): (Service, Service),
        secs: Duration,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(256)
                .build()?,
            auth,
            main,
            auth_db: dbs.auth.clone(),
            main_db: dbs.main.clone(),
            api_key: system.api_key().to_owned(),
            secs,
            stream_main_db: dbs.stream_main.clone(),
            system,
        })
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("auth-bench-{}", uuid::Uuid::new_v4().simple()));
    let system = System::new(&dir)?;
    let dbs = Databases::create(&dir, args.postgres.as_deref()).await?;
    let (auth_port, main_port) = (Port::new()?, Port::new()?);
    // A sign-in provider for the provider figures (`bench_oauth`).
    let hub = crate::bench_oauth::provider().await;
    let oauth_env = crate::bench_oauth::env(&hub, &format!("http://127.0.0.1:{auth_port}"));
    let oauth_env: Vec<(&str, &str)> = oauth_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut auth = system.auth(
        "auth",
        auth_port,
        &dbs.auth,
        &format!("http://127.0.0.1:{main_port}/webhooks/auth"),
        &oauth_env,
    )?;
    auth.ready(Duration::from_secs(60)).await?;
    let mut main = system.main(
        "main",
        main_port,
        &dbs.main,
        &auth.url(),
        // Reconciliation only when the benchmark asks for it.
        &[("SYNC_INTERVAL_SECONDS", "0")],
    )?;
    main.ready(Duration::from_secs(60)).await?;
    let run = Run::new(
        system,
        &dbs,
        (auth, main),
        Duration::from_secs(args.seconds),
    )?;
    let outcome = phases(&run).await;
    drop(run);
    drop(hub);
    dbs.drop_all().await;
    let _ = std::fs::remove_dir_all(&dir);
    let body = outcome?;

    let report = format!(
        "# Benchmarks\n\n\
         Reproduce: `./scripts/bench` (builds the release binaries, then runs `target/release/launcher bench`;\n\
         add `--postgres postgres://USER@HOST/DB` to run on PostgreSQL, where two fresh databases are created\n\
         and dropped, and `--seconds N` per load phase, default 10). The command rewrites this file.\n\n\
         - Date: {date}\n- Commit: {commit}\n- Machine: {machine}\n\
         - Backend: {backend}; both services as separate release processes on loopback; the load generator shares the machine\n\
         - Load: bounded, {secs}s per phase, from one process (reqwest, keep-alive)\n\n{body}",
        date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        commit = commit(),
        machine = machine(),
        backend = if args.postgres.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        },
        secs = args.seconds,
    );
    // The pooler and TLS sections come from `./scripts/bench-pooler` and
    // `./scripts/bench-tls`; keep them.
    let old = std::fs::read_to_string(&args.out).unwrap_or_default();
    let mut report = report;
    for markers in [
        crate::bench_routes::Route::Pooler.markers(),
        crate::bench_routes::Route::Tls.markers(),
        crate::bench_scale::MARKERS,
    ] {
        if let Some(section) = crate::bench_routes::section_of(markers, &old) {
            report = crate::bench_routes::replace_section(markers, &report, section);
        }
    }
    std::fs::write(&args.out, &report)?;
    println!("{report}");
    Ok(())
}

/// Every phase in order; returns the report's body.
async fn phases(run: &Run) -> anyhow::Result<String> {
    // Idle: started, migrated, nothing served yet but the readiness probe.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = (mib(&run.auth, "VmRSS"), mib(&run.main, "VmRSS"));
    let auth_section = auth_phases(run).await?;
    eprintln!("bench: sync loop (both services)");
    let sync_section = crate::bench_sync::run(run).await?;
    eprintln!("bench: event feed");
    let events_section = crate::bench_events::run(run).await?;
    // Peak resident memory over the whole run, the 100k reconciliation included.
    let peak = (mib(&run.auth, "VmHWM"), mib(&run.main, "VmHWM"));
    let body = format!(
        "## Memory (resident set, from /proc)\n\n\
         | figure | auth service | main backend | goal |\n|---|---|---|---|\n\
         | idle RSS after start | **{ia:.1} MiB** | **{im:.1} MiB** | < 30 MB each {iok} |\n\
         | peak RSS over the run (every load phase below) | {pa:.1} MiB | {pm:.1} MiB | |\n\n\
         {auth_section}{sync_section}{events_section}",
        ia = idle.0,
        im = idle.1,
        iok = ok(idle.0 * 1.048_576 < 30.0 && idle.1 * 1.048_576 < 30.0),
        pa = peak.0,
        pm = peak.1,
    );
    Ok(format!("{body}{}", misses(&body)))
}

/// Names every goal this run missed (a ❌ row) with what limits it.
fn misses(body: &str) -> String {
    const LIMITS: &[(&str, &str)] = &[
        (
            "during the login storm",
            "Login is driven at the argon2 limit on purpose, so both cores are busy hashing and the \
             probe waits for a core; hashing runs on its own threads, never on the request threads, so \
             it is CPU time, not a stalled event loop. The load generator shares the same two cores.",
        ),
        (
            "login ÷ limit",
            "Besides the hash, each login signs a JWT and writes a session, a refresh token and an audit \
             row, and the load generator runs on the same cores.",
        ),
        (
            "user access tokens, 32 clients",
            "Each call checks the token (its Ed25519 signature once per token, then remembered until it \
             expires) and reads the session and the user from the database, so a logout or lock holds \
             at the very next call; with the load generator on the same 2 cores the figure moves with \
             the machine.",
        ),
        (
            "32 clients: p50 / p99",
            "Queueing: 32 requests always in flight on 2 cores shared with the load generator mean \
             several milliseconds each on average (Little's law: in flight ÷ throughput), and the tail \
             grows with it; the 16-client and one-caller rows show the cost without the queue. Each \
             check reads the database so that a revocation holds at the next request on every replica.",
        ),
        (
            "idle RSS",
            "Mostly the allocator's arenas for the actix worker threads and the database pool.",
        ),
        (
            "cached `/v1/me` ÷ unauthenticated",
            "The authenticated path adds the token's SHA-256 (the cache key), two cache lookups and a \
             bigger request and answer; the body is rendered once per cached mirror row. The CPU rows \
             above say which side the difference is on. Callgrind, per request: 83.4k instructions \
             against 50.5k for the unauthenticated GET, 27.5k of them the SHA-256 in software (valgrind \
             hides SHA-NI, which the service uses natively). The ratio has moved by several hundredths \
             between runs of one build.",
        ),
        (
            "tasks list ÷ unauthenticated",
            "Besides the cached validation, one query through the pool (a hand-off to a blocking thread \
             on SQLite, a round trip on PostgreSQL) and five rows to JSON.",
        ),
        (
            "100,000 users, all to create",
            "Each page of 1,000 is one transaction of inserts; on SQLite one writer at a time.",
        ),
    ];
    let missed: Vec<&str> = body
        .lines()
        .filter(|l| l.starts_with('|') && l.contains('❌'))
        .filter_map(|l| l.split('|').nth(1).map(str::trim))
        .collect();
    if missed.is_empty() {
        return "## Goals missed\n\nNone in this run.\n".into();
    }
    let mut out = String::from("## Goals missed, and what limits them\n\n");
    for row in missed {
        let why = LIMITS
            .iter()
            .find(|(key, _)| row.contains(key))
            .map_or("Not analysed yet.", |(_, why)| why);
        out.push_str(&format!("- **{row}**: {why}\n"));
    }
    out
}

/// Creates `n` service tokens with `scope` the way an operator does.
pub async fn service_tokens(run: &Run, scope: &str, n: usize) -> anyhow::Result<Vec<String>> {
    let mut tokens = Vec::new();
    for i in 0..n {
        let mut out = Vec::new();
        auth_service::cli::service_token(
            &run.auth_db,
            auth_service::cli::TokenCommand::Create {
                name: format!("bench-{scope}-{i}"),
                scopes: vec![scope.into()],
                expires_in_days: Some(1),
            },
            &mut out,
        )
        .await?;
        tokens.push(String::from_utf8(out)?.trim().to_owned());
    }
    Ok(tokens)
}

async fn auth_phases(run: &Run) -> anyhow::Result<String> {
    let (client, base) = (&run.client, run.auth.url());
    // Reference: one argon2id hash at the service's parameters, on one
    // thread, after warm-up (the first hashes pay for page faults). Taken
    // in this process, on the same cores, in the same run: 15 before the
    // registration and login phases and 15 after them, and the limit uses
    // the median of all 30, because this machine's speed drifts within a
    // run (one set of 15 alone moved from 16 to 25 ms between runs).
    let time_hashes =
        || tokio::task::spawn_blocking(|| auth_service::passwords::time_hashes(3, 15));
    let before = time_hashes().await?;
    let password = "benchmark password 123";

    // Registration throughput: one hash and one transaction (user, session,
    // refresh token, outbox event, verification mail) per request.
    let register = {
        let (client, base) = (client.clone(), base.clone());
        let tag = uuid::Uuid::new_v4().simple().to_string();
        load(4 * cores(), run.secs, move |i| {
            let (client, base, email) = (
                client.clone(),
                base.clone(),
                format!("reg-{i}-{tag}@example.com"),
            );
            async move {
                client
                    .post(format!("{base}/v1/register"))
                    .json(&json!({"email": email, "password": password}))
                    .send()
                    .await
            }
        })
        .await
    };

    // Users to log in as.
    let users: Vec<String> = (0..32)
        .map(|i| format!("bench-{i}-{}@example.com", uuid::Uuid::new_v4().simple()))
        .collect();
    let mut tokens: Vec<String> = Vec::new();
    for email in &users {
        let res = client
            .post(format!("{base}/v1/register"))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await?;
        anyhow::ensure!(res.status().is_success(), "register: {}", res.status());
        let body: serde_json::Value = res.json().await?;
        tokens.push(
            body["tokens"]["access_token"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }

    // Login storm, with a prober on /health/live at 100 Hz beside it.
    let users = Arc::new(users);
    let storm_running = Arc::new(AtomicBool::new(true));
    let prober = {
        let (client, base, running) = (client.clone(), base.clone(), storm_running.clone());
        tokio::spawn(async move {
            let mut lat = Vec::new();
            while running.load(Ordering::Relaxed) {
                let sent = Instant::now();
                if let Ok(res) = client.get(format!("{base}/health/live")).send().await {
                    if res.status().is_success() {
                        let _ = res.bytes().await;
                        lat.push(sent.elapsed().as_micros() as u64);
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            lat.sort_unstable();
            Sample {
                latencies: lat,
                errors: 0,
                elapsed: Duration::from_secs(1),
            }
        })
    };
    let login = {
        let (client, base, users) = (client.clone(), base.clone(), users.clone());
        load(4 * cores(), run.secs, move |i| {
            let (client, base, email) =
                (client.clone(), base.clone(), users[i % users.len()].clone());
            async move {
                client
                    .post(format!("{base}/v1/login"))
                    .json(&json!({"email": email, "password": password}))
                    .send()
                    .await
            }
        })
        .await
    };
    storm_running.store(false, Ordering::Relaxed);
    let live = prober.await?;
    let after = time_hashes().await?;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (before_ms, after_ms) = (ms(before[7]), ms(after[7]));
    let mut hashes = [before, after].concat();
    hashes.sort_unstable();
    let hash = (hashes[14] + hashes[15]) / 2;
    let hash_ms = ms(hash);
    let limit = cores() as f64 / hash.as_secs_f64();
    eprintln!(
        "bench: argon2id hash {hash_ms:.1} ms (before {before_ms:.1}, after {after_ms:.1}); limit {limit:.1} hashes/s"
    );

    // Introspection of user access tokens, at two concurrencies, then of
    // service tokens (made as an operator would, with the command line).
    let tokens = Arc::new(tokens);
    let service_tokens = Arc::new(service_tokens(run, "admin", 4).await?);
    let introspect_at = |clients: usize, tokens: Arc<Vec<String>>| async move {
        let requests = introspect_requests(run, tokens.iter().map(String::as_str))?;
        anyhow::Ok(replay(client, clients, run.secs, requests).await)
    };
    let introspect16 = introspect_at(16, tokens.clone()).await?;
    let introspect = introspect_at(32, tokens.clone()).await?;
    let service = introspect_at(32, service_tokens.clone()).await?;
    let service1 = introspect_at(1, service_tokens.clone()).await?;
    // Sanity: the tokens introspected were live (a benchmark of refusals would flatter).
    for token in [&tokens[0], &service_tokens[0]] {
        let check: serde_json::Value = client
            .post(format!("{base}/internal/v1/introspect"))
            .bearer_auth(&run.api_key)
            .json(&json!({ "token": token }))
            .send()
            .await?
            .json()
            .await?;
        anyhow::ensure!(check["active"] == true, "benchmark tokens must be active");
    }

    let login_ratio = login.rps() / limit;
    let register_ratio = register.rps() / limit;
    let providers = crate::bench_oauth::section(run, login.pct(0.5)).await?;
    Ok(format!(
        "## Login and registration against the argon2 limit\n\n\
         | figure | value | goal |\n|---|---|---|\n\
         | argon2id hash (m=19456, t=2, p=1), one thread reusing its memory as the service does: median of 30 after warm-up, 15 before these phases and 15 after (their medians {before_ms:.1} / {after_ms:.1} ms) | {hash_ms:.1} ms | reference |\n\
         | limit = cores ÷ hash time | {limit:.1} hashes/s | reference |\n\
         | login throughput ({tasks} clients) | {lrps:.1} logins/s ({lerr} errors) | |\n\
         | login ÷ limit | **{login_ratio:.2}** | ≥ 0.80 {login_ok} |\n\
         | login p50 / p99 | {lp50:.1} / {lp99:.1} ms | |\n\
         | `/health/live` p50 / p99 during the login storm ({live_n} probes) | {hp50:.2} / **{hp99:.2}** ms | p99 < 5 ms {live_ok} |\n\
         | registration throughput ({tasks} clients, new users) | **{rrps:.1} registrations/s** ({rerr} errors) | |\n\
         | registration ÷ limit | {register_ratio:.2} | |\n\
         | registration p50 / p99 | {rp50:.1} / {rp99:.1} ms | |\n\n\
         ## Introspection\n\n\
         | figure | value | goal |\n|---|---|---|\n\
         | `POST /internal/v1/introspect`, user access tokens, 32 clients | **{irps:.0} req/s** ({ierr} errors) | ≥ 5,000/s {irps_ok} |\n\
         | user tokens, 32 clients: p50 / p99 | {ip50:.2} / **{ip99:.2}** ms | p99 < 10 ms {ip99_ok} |\n\
         | same, 16 clients | {i16} | |\n\
         | service tokens (`ast_…`), 32 clients | **{srps:.0} req/s** ({serr} errors) | |\n\
         | service tokens, 32 clients: p50 / p99 | {sp50:.2} / **{sp99:.2}** ms | p99 < 10 ms {sp99_ok} |\n\
         | service tokens, one caller at a time | p50 / p99 {s1p50:.2} / **{s1p99:.2}** ms ({s1rps:.0} req/s) | p99 < 1 ms (aim) {s1_ok} |\n\n\
         Each introspection verifies the JWT (Ed25519, once per token, then remembered until it expires) and\n\
         reads three columns of the session joined to its user, so a logout or lock is seen by the very next\n\
         call. A service token costs one indexed read of its hash (so revoke-all holds at once on every\n\
         replica) and no write: its use is counted in memory and written in batches every 2 s. The load\n\
         generator builds each request once and sends clones of it.\n\n{providers}",
        tasks = 4 * cores(),
        lrps = login.rps(),
        lerr = login.errors,
        login_ok = ok(login_ratio >= 0.8),
        lp50 = login.pct(0.5),
        lp99 = login.pct(0.99),
        live_n = live.latencies.len(),
        hp50 = live.pct(0.5),
        hp99 = live.pct(0.99),
        live_ok = ok(live.pct(0.99) < 5.0),
        rrps = register.rps(),
        rerr = register.errors,
        rp50 = register.pct(0.5),
        rp99 = register.pct(0.99),
        irps = introspect.rps(),
        ierr = introspect.errors,
        irps_ok = ok(introspect.rps() >= 5000.0),
        ip50 = introspect.pct(0.5),
        ip99 = introspect.pct(0.99),
        ip99_ok = ok(introspect.pct(0.99) < 10.0),
        i16 = introspect16.summary(),
        srps = service.rps(),
        serr = service.errors,
        sp50 = service.pct(0.5),
        sp99 = service.pct(0.99),
        sp99_ok = ok(service.pct(0.99) < 10.0),
        s1p50 = service1.pct(0.5),
        s1p99 = service1.pct(0.99),
        s1rps = service1.rps(),
        s1_ok = ok(service1.pct(0.99) < 1.0),
    ))
}

/// Inserts `rows` (SQL value tuples) with `insert` (`INSERT INTO t (cols)
/// VALUES`) in one transaction, `batch` rows per statement: seeding a
/// benchmark straight into a database, past the services.
pub async fn insert_rows(
    url: &str,
    insert: &str,
    rows: Vec<String>,
    batch: usize,
) -> anyhow::Result<()> {
    use diesel_async::RunQueryDsl;
    let pool = service_kit::db::DbPool::connect(url, 1).await?;
    let mut pooled = pool.get().await?;
    let conn = &mut pooled.conn();
    service_kit::transaction!(conn, |tx| -> anyhow::Error {
        for chunk in rows.chunks(batch) {
            let sql = format!("{insert} {}", chunk.join(", "));
            service_kit::run!(tx, |c| diesel::sql_query(&sql).execute(c).await)?;
        }
        Ok(())
    })
}
