//! `launcher bench-scale --postgres URL`: the system at 10,000 users and
//! at 1,000,000 (two sessions each), two systems side by side in one run,
//! on PostgreSQL: filling, reconciling into an empty mirror, reconciling with nothing
//! changed and with 120 changes, login / introspection / refresh latency,
//! memory, and database size per user. Rewrites its section of
//! BENCHMARKS.md (`./scripts/bench` keeps it).

use std::time::{Duration, Instant};

use diesel_async::RunQueryDsl;
use launcher::system::{Port, Service, System};
use serde_json::{json, Value};

use crate::bench::{
    introspect_requests, load, mib, ok, replay, service_tokens, Databases, Run, Sample,
};

#[derive(clap::Args)]
pub struct Args {
    /// A PostgreSQL admin URL (databases are made and dropped).
    #[arg(long, value_name = "URL")]
    postgres: String,
    /// The large size.
    #[arg(long, default_value_t = 1_000_000)]
    users: i64,
    /// Seconds per latency slice (four per size and workload).
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    #[arg(long, default_value = "BENCHMARKS.md")]
    out: String,
}

const SMALL: i64 = 10_000;

/// Around this section of BENCHMARKS.md (`./scripts/bench` keeps it).
pub const MARKERS: (&str, &str) = (
    "<!-- scale benchmark: ./scripts/bench-scale -->",
    "<!-- end of scale benchmark -->",
);

async fn sql(url: &str, statement: &str) -> anyhow::Result<()> {
    let mut conn = service_kit::db::establish_pg(url).await?;
    diesel::sql_query(statement).execute(&mut conn).await?;
    Ok(())
}

/// A UUIDv7 as the service makes them (48 bits of milliseconds first, then
/// random bits), one millisecond apart per `g` in the past year: ids
/// ordered by time, as reconciliation's ranges must handle them.
const V7: &str = "(lpad(to_hex((extract(epoch from now()) * 1000)::bigint - 31536000000 + g), 12, '0') \
     || '7' || substr(md5(random()::text), 1, 3) || '8' || substr(md5(random()::text), 1, 15))::uuid";

/// Users `from..=to` (two sessions each) straight into the auth database,
/// with one shared, unusable password hash: hashing a million passwords
/// is not what is measured.
async fn fill(url: &str, from: i64, to: i64) -> anyhow::Result<Duration> {
    let started = Instant::now();
    sql(
        url,
        &format!(
            "INSERT INTO users (id, email, password_hash, full_name, email_verified, mfa_enabled, \
             account_locked, last_login_at, password_changed_at, version, created_at, updated_at) \
             SELECT {V7}, 'scale-' || g || '@example.com', 'not-a-password-hash', NULL, \
             true, false, false, NULL, now(), 1, now(), now() FROM generate_series({from}, {to}) g"
        ),
    )
    .await?;
    sql(
        url,
        &format!(
            "INSERT INTO sessions (id, user_id, created_at, last_used_at, expires_at) \
             SELECT gen_random_uuid(), u.id, now(), now(), now() + interval '7 days' \
             FROM users u CROSS JOIN generate_series(1, 2) \
             WHERE u.email ~ '^scale-[0-9]+@' AND substr(u.email, 7, length(u.email) - 18)::bigint BETWEEN {from} AND {to}"
        ),
    )
    .await?;
    let took = started.elapsed();
    settle(url).await?;
    Ok(took)
}

/// What a bulk load leaves for later (autovacuum of the new rows,
/// statistics, dirty pages) is done now, so the latency phases measure the
/// system at this size rather than the load's aftermath.
async fn settle(url: &str) -> anyhow::Result<()> {
    sql(url, "VACUUM ANALYZE").await?;
    sql(url, "CHECKPOINT").await
}

/// 100 changed, 10 deleted, 10 created, behind the mirror's back, spread
/// over the whole id space (ids are random; the numbers in the emails are
/// not related to them), so each lands in a range of its own.
async fn drift(url: &str, tag: &str, from: i64, to: i64) -> anyhow::Result<()> {
    let every = ((to - from + 1) / 110).max(1);
    let numbered = "substr(email, 7, length(email) - 18)::bigint";
    sql(
        url,
        &format!(
            "UPDATE users SET email = 'changed-{tag}-' || email, version = version + 1 \
             WHERE email ~ '^scale-[0-9]+@' AND {numbered} BETWEEN {from} AND {to} \
             AND ({numbered} - {from}) % {every} = 0 AND ({numbered} - {from}) / {every} < 100"
        ),
    )
    .await?;
    sql(
        url,
        &format!(
            "DELETE FROM users WHERE email ~ '^scale-[0-9]+@' AND {numbered} BETWEEN {from} AND {to} \
             AND ({numbered} - {from}) % {every} = 0 AND ({numbered} - {from}) / {every} BETWEEN 100 AND 109"
        ),
    )
    .await?;
    sql(
        url,
        &format!(
            "INSERT INTO users (id, email, password_hash, full_name, email_verified, mfa_enabled, \
             account_locked, last_login_at, password_changed_at, version, created_at, updated_at) \
             SELECT {V7}, 'new-{tag}-' || g || '@example.com', 'x', NULL, true, false, \
             false, NULL, now(), 1, now(), now() FROM generate_series(31535999990, 31535999999) g"
        ),
    )
    .await
}

async fn sync(run: &Run, token: &str) -> anyhow::Result<(Value, Duration)> {
    let started = Instant::now();
    let res = run
        .client
        .post(format!("{}/admin/v1/sync", run.main.url()))
        .bearer_auth(token)
        .timeout(Duration::from_secs(600))
        .send()
        .await?;
    anyhow::ensure!(res.status().is_success(), "sync: {}", res.status());
    Ok((res.json().await?, started.elapsed()))
}

/// One size's reconciliation figures.
struct Reconciled {
    fill: Duration,
    into_empty: Duration,
    nothing: Duration,
    nothing_compared: i64,
    drift: Duration,
    found: (i64, i64, i64),
}

/// One size's latency figures, each merged from its slices.
struct Latency {
    login: Sample,
    introspect: Sample,
    refresh: Sample,
}

async fn db_size(url: &str) -> anyhow::Result<i64> {
    #[derive(diesel::QueryableByName)]
    struct Size {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        size: i64,
    }
    let mut conn = service_kit::db::establish_pg(url).await?;
    let rows: Vec<Size> = diesel::sql_query("SELECT pg_database_size(current_database()) AS size")
        .load(&mut conn)
        .await?;
    Ok(rows.into_iter().next().map_or(0, |r| r.size))
}

/// Fills the auth database from `from` to `to` users and times three
/// reconciliations: into an empty mirror, with nothing changed, and after
/// 120 changes.
async fn reconcile(run: &Run, from: i64, to: i64, tag: &str) -> anyhow::Result<Reconciled> {
    let ops = service_tokens(run, "ops", 1).await?.remove(0);
    eprintln!("bench-scale: filling to {to} users");
    let fill = fill(&run.auth_db, from, to).await?;
    eprintln!("bench-scale: reconciling");
    sql(&run.main_db, "DELETE FROM userbase").await?;
    let (_, into_empty) = sync(run, &ops).await?;
    settle(&run.main_db).await?;
    let (nothing_report, nothing) = sync(run, &ops).await?;
    drift(&run.auth_db, tag, from, to).await?;
    let (report, drift_took) = sync(run, &ops).await?;
    Ok(Reconciled {
        fill,
        into_empty,
        nothing,
        nothing_compared: nothing_report["compared"].as_i64().unwrap_or(-1),
        drift: drift_took,
        found: (
            report["created"].as_i64().unwrap_or(0),
            report["updated"].as_i64().unwrap_or(0),
            report["deleted"].as_i64().unwrap_or(0),
        ),
    })
}

const PASSWORD: &str = "benchmark password 123";

/// 32 real users for the latency figures: (email, access, refresh).
async fn real_users(run: &Run, tag: &str) -> anyhow::Result<Vec<(String, String, String)>> {
    let mut users = Vec::new();
    for i in 0..32 {
        let email = format!("scale-real-{tag}-{i}@example.com");
        let res: Value = run
            .client
            .post(format!("{}/v1/register", run.auth.url()))
            .json(&json!({"email": email, "password": PASSWORD}))
            .send()
            .await?
            .json()
            .await?;
        let token = |kind: &str| res["tokens"][kind].as_str().unwrap_or_default().to_owned();
        users.push((email, token("access_token"), token("refresh_token")));
    }
    Ok(users)
}

/// One slice of each latency workload: logins (8 clients), introspection
/// (32), and refresh (32 clients, each rotating its own user's token,
/// kept in `users` for the next slice).
async fn latency_slice(
    run: &Run,
    users: &mut [(String, String, String)],
    into: &mut Latency,
) -> anyhow::Result<()> {
    let (client, base) = (run.client.clone(), run.auth.url());
    let shared = std::sync::Arc::new(users.to_vec());
    let login = {
        let (client, base, users) = (client.clone(), base.clone(), shared.clone());
        load(8, run.secs, move |i| {
            let (client, base, email) = (client.clone(), base.clone(), users[i % 32].0.clone());
            async move {
                client
                    .post(format!("{base}/v1/login"))
                    .json(&json!({"email": email, "password": PASSWORD}))
                    .send()
                    .await
            }
        })
        .await
    };
    into.login.merge(login);
    let requests = introspect_requests(run, shared.iter().take(32).map(|u| u.1.as_str()))?;
    let introspect = replay(&client, 32, run.secs, requests).await;
    into.introspect.merge(introspect);
    let started = Instant::now();
    let deadline = started + run.secs;
    let tasks: Vec<_> = users
        .iter()
        .map(|u| {
            let (client, base, mut token) = (client.clone(), base.clone(), u.2.clone());
            tokio::spawn(async move {
                let (mut lat, mut errors) = (Vec::new(), 0usize);
                while Instant::now() < deadline {
                    let sent = Instant::now();
                    let res = client
                        .post(format!("{base}/v1/token/refresh"))
                        .json(&json!({"refresh_token": token}))
                        .send()
                        .await;
                    match res {
                        Ok(res) if res.status().is_success() => {
                            let body: Value = res.json().await.unwrap_or_default();
                            lat.push(sent.elapsed().as_micros() as u64);
                            token = body["refresh_token"]
                                .as_str()
                                .unwrap_or_default()
                                .to_owned();
                        }
                        _ => errors += 1,
                    }
                }
                (lat, errors, token)
            })
        })
        .collect();
    let (mut lat, mut errors) = (Vec::new(), 0);
    for (task, user) in tasks.into_iter().zip(users.iter_mut()) {
        let (l, e, token) = task.await?;
        lat.extend(l);
        errors += e;
        user.2 = token;
    }
    into.refresh
        .merge(Sample::of(lat, errors, started.elapsed()));
    Ok(())
}

/// One size's system: both services on their own databases.
struct Sized {
    run: Run,
    dbs: Databases,
    dir: std::path::PathBuf,
}

impl Sized {
    async fn start(postgres: &str, slice: Duration) -> anyhow::Result<Self> {
        let dir =
            std::env::temp_dir().join(format!("auth-scale-{}", uuid::Uuid::new_v4().simple()));
        let system = System::new(&dir)?;
        let dbs = Databases::create(&dir, Some(postgres)).await?;
        let (auth_port, main_port) = (Port::new()?, Port::new()?);
        let mut auth: Service = system.auth("auth", auth_port, &dbs.auth, "off", &[])?;
        auth.ready(Duration::from_secs(60)).await?;
        let mut main = system.main(
            "main",
            main_port,
            &dbs.main,
            &auth.url(),
            &[("SYNC_INTERVAL_SECONDS", "0"), ("SYNC_MAX_DELETES", "100")],
        )?;
        main.ready(Duration::from_secs(60)).await?;
        let run = Run::new(system, &dbs, (auth, main), slice)?;
        Ok(Self { run, dbs, dir })
    }

    async fn stop(self) {
        drop(self.run);
        self.dbs.drop_all().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Latency slices per size, alternating between the sizes so that the
/// machine's drift over the run falls on both alike.
const SLICES: usize = 4;

/// Everything measured, both sizes.
struct Outcome {
    small: (Reconciled, Latency),
    large: (Reconciled, Latency),
    /// RSS after the phases and peak RSS, (auth, main), small then large.
    rss: [(f64, f64); 3],
    /// Database bytes per user, (auth, main), small then large.
    per_user: [(f64, f64); 2],
}

async fn measure(small: &Sized, large: &Sized, args: &Args) -> anyhow::Result<Outcome> {
    let small_reconciled = reconcile(&small.run, 1, SMALL, "small").await?;
    let large_reconciled = reconcile(&large.run, 1, args.users, "large").await?;
    eprintln!("bench-scale: latency, {SLICES} slices per size, alternating");
    let mut small_users = real_users(&small.run, "small").await?;
    let mut large_users = real_users(&large.run, "large").await?;
    let empty = || Latency {
        login: Sample::empty(),
        introspect: Sample::empty(),
        refresh: Sample::empty(),
    };
    let (mut small_latency, mut large_latency) = (empty(), empty());
    for _ in 0..SLICES {
        latency_slice(&small.run, &mut small_users, &mut small_latency).await?;
        latency_slice(&large.run, &mut large_users, &mut large_latency).await?;
    }
    let rss = |run: &Run| (mib(&run.auth, "VmRSS"), mib(&run.main, "VmRSS"));
    let per_user = |sized: &Sized, n: i64| {
        let (auth, main) = (sized.run.auth_db.clone(), sized.run.main_db.clone());
        let users = (n + 10 + 32) as f64;
        async move {
            anyhow::Ok((
                db_size(&auth).await? as f64 / users,
                db_size(&main).await? as f64 / users,
            ))
        }
    };
    Ok(Outcome {
        rss: [
            rss(&small.run),
            rss(&large.run),
            (mib(&large.run.auth, "VmHWM"), mib(&large.run.main, "VmHWM")),
        ],
        per_user: [
            per_user(small, SMALL).await?,
            per_user(large, args.users).await?,
        ],
        small: (small_reconciled, small_latency),
        large: (large_reconciled, large_latency),
    })
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    // Both sizes run side by side, each its own pair of services and
    // databases, so their latency slices can alternate.
    let slice = Duration::from_secs(args.seconds);
    let small = Sized::start(&args.postgres, slice).await?;
    let large = match Sized::start(&args.postgres, slice).await {
        Ok(large) => large,
        Err(e) => {
            small.stop().await;
            return Err(e);
        }
    };
    let outcome = measure(&small, &large, &args).await;
    small.stop().await;
    large.stop().await;
    let Outcome {
        small: (small, small_latency),
        large: (large, large_latency),
        rss: [small_rss, large_rss, peak],
        per_user: [small_bytes, large_bytes],
    } = outcome?;
    let secs = |d: Duration| d.as_secs_f64();
    let ratio = |a: f64, b: f64| a / b;
    let n = args.users;
    let (start, end) = MARKERS;
    let section = format!(
        "{start}\n## Scale (PostgreSQL, `./scripts/bench-scale`)\n\n\
         Run on {date}, commit {commit}: the same services at {SMALL} users and at {n} users (two sessions\n\
         each, filled with bulk SQL and one shared password hash; ids are UUIDv7, as the service makes them),\n\
         in one run. Reconciliation is `POST /admin/v1/sync`: the mirror is cut into ranges of 256 of its users,\n\
         each range's digest is compared with the auth service's, and only differing ranges are read row by\n\
         row (the count in brackets). The drift is spread over the whole id space. Each size runs its own\n\
         services and databases, side by side; the latency phases run after `VACUUM ANALYZE` and a\n\
         checkpoint, in {SLICES} slices of {secs_per} s per size, alternating between the sizes (p99 over all\n\
         slices).\n\n\
         | figure | {SMALL} users | {n} users | goal at {n} |\n|---|---|---|---|\n\
         | fill (users + 2 sessions each) | {f1:.1} s | {f2:.1} s | |\n\
         | reconcile into an empty mirror | {e1:.2} s | **{e2:.2} s** | < 60 s {eok} |\n\
         | reconcile, nothing changed (users read row by row) | {z1:.3} s ({zc1}) | **{z2:.3} s** ({zc2}) | < 2 s {zok} |\n\
         | reconcile, 100 changed + 10 deleted + 10 created: created / updated / deleted | {d1:.3} s: {c1} / {u1} / {x1} | **{d2:.3} s**: {c2} / {u2} / {x2} | < 3 s, all found {dok} |\n\
         | login p99 (8 clients) | {l1:.1} ms | {l2:.1} ms ({lr:.2}×) | ≤ 1.2× {lok} |\n\
         | introspection p99 (32 clients) | {i1:.2} ms | {i2:.2} ms ({ir:.2}×) | ≤ 1.2× {iok} |\n\
         | refresh p99 (32 clients) | {r1:.2} ms | {r2:.2} ms ({rr:.2}×) | ≤ 1.2× {rok} |\n\
         | RSS after the phases, auth / main | {a1:.1} / {m1:.1} MiB | {a2:.1} / {m2:.1} MiB | within 10 % {mok} |\n\
         | peak RSS over the run, auth / main | | {pa:.1} / {pm:.1} MiB | |\n\
         | database size per user, auth / main | {ab1:.0} / {mb1:.0} B | {ab2:.0} / {mb2:.0} B | reported |\n\
         {end}",
        date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        commit = crate::bench::commit(),
        secs_per = args.seconds,
        f1 = secs(small.fill),
        f2 = secs(large.fill),
        e1 = secs(small.into_empty),
        e2 = secs(large.into_empty),
        eok = ok(secs(large.into_empty) < 60.0),
        z1 = secs(small.nothing),
        zc1 = small.nothing_compared,
        z2 = secs(large.nothing),
        zc2 = large.nothing_compared,
        zok = ok(secs(large.nothing) < 2.0),
        d1 = secs(small.drift),
        c1 = small.found.0,
        u1 = small.found.1,
        x1 = small.found.2,
        d2 = secs(large.drift),
        c2 = large.found.0,
        u2 = large.found.1,
        x2 = large.found.2,
        dok = ok(secs(large.drift) < 3.0 && large.found == (10, 100, 10)),
        l1 = small_latency.login.pct(0.99),
        l2 = large_latency.login.pct(0.99),
        lr = ratio(large_latency.login.pct(0.99), small_latency.login.pct(0.99)),
        lok = ok(large_latency.login.pct(0.99) <= 1.2 * small_latency.login.pct(0.99)),
        i1 = small_latency.introspect.pct(0.99),
        i2 = large_latency.introspect.pct(0.99),
        ir = ratio(large_latency.introspect.pct(0.99), small_latency.introspect.pct(0.99)),
        iok = ok(large_latency.introspect.pct(0.99) <= 1.2 * small_latency.introspect.pct(0.99)),
        r1 = small_latency.refresh.pct(0.99),
        r2 = large_latency.refresh.pct(0.99),
        rr = ratio(large_latency.refresh.pct(0.99), small_latency.refresh.pct(0.99)),
        rok = ok(large_latency.refresh.pct(0.99) <= 1.2 * small_latency.refresh.pct(0.99)),
        a1 = small_rss.0,
        m1 = small_rss.1,
        a2 = large_rss.0,
        m2 = large_rss.1,
        mok = ok(large_rss.0 <= 1.1 * small_rss.0 && large_rss.1 <= 1.1 * small_rss.1),
        pa = peak.0,
        pm = peak.1,
        ab1 = small_bytes.0,
        mb1 = small_bytes.1,
        ab2 = large_bytes.0,
        mb2 = large_bytes.1,
    );
    let old = std::fs::read_to_string(&args.out).unwrap_or_default();
    std::fs::write(
        &args.out,
        crate::bench_routes::replace_section(MARKERS, &old, &section),
    )?;
    println!("{section}");
    Ok(())
}
