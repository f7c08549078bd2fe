//! Fault injection on the real binaries (`target/<profile>/auth-service` and
//! `main-backend`, built by `cargo test --workspace`): processes killed with
//! SIGKILL, frozen with SIGSTOP, PostgreSQL restarted under load, SQLite
//! under concurrent writers, two replicas of each service on one database.
//!
//! Every test runs on SQLite, or on PostgreSQL when `TEST_DATABASE_URL` is
//! set (as in the README's test command); the PostgreSQL-only ones (server
//! restart, replicas) say so and return on SQLite, the SQLite-only one on
//! PostgreSQL.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use launcher::system::{free_port, Port, System};
use serde_json::{json, Value};
use service_kit::db::{DbPool, DbTime, DbUuid};
use service_kit::testing::TestDb;
use uuid::Uuid;

use crate::stack::{client, get_json, postgres, scratch, Scratch, Stack, READY, SERIAL};

const PASSWORD: &str = "fault injection password 42";

/// Registers `email`; `Ok(Some((id, access token)))` on 201, `Ok(None)` on
/// any other answer, `Err` when no answer came (connection refused or cut).
pub(crate) async fn register(
    client: &reqwest::Client,
    auth_url: &str,
    email: &str,
) -> Result<Option<(Uuid, String)>, reqwest::Error> {
    let res = client
        .post(format!("{auth_url}/v1/register"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await?;
    if res.status().as_u16() != 201 {
        return Ok(None);
    }
    let body: Value = res.json().await?;
    Ok(Some((
        serde_json::from_value(body["user"]["id"].clone()).unwrap(),
        body["tokens"]["access_token"].as_str().unwrap().to_owned(),
    )))
}

fn email(tag: &str, i: usize) -> String {
    format!("{tag}-{i}-{}@example.com", Uuid::new_v4().simple())
}

/// Loads the rows of `$query` (a diesel select) from the database at
/// `$url`, on either backend.
macro_rules! load {
    ($url:expr, $query:expr) => {{
        let pool = DbPool::connect($url, 1).await.expect("database reachable");
        let mut pooled = pool.get().await.unwrap();
        service_kit::run!(&mut pooled.conn(), |c| {
            diesel_async::RunQueryDsl::load($query, c).await
        })
        .unwrap()
    }};
}

/// Users as the auth service's database has them: id → version.
async fn auth_users(url: &str) -> HashMap<Uuid, i64> {
    use auth_service::db::schema::users::dsl::*;
    use diesel::prelude::*;
    let rows: Vec<(DbUuid, i64)> = load!(url, users.select((id, version)));
    rows.into_iter().map(|(i, v)| (i.0, v)).collect()
}

/// The auth service's webhook deliveries: (event id, type, status, attempts).
async fn outbox(url: &str) -> Vec<(Uuid, String, String, i32)> {
    use auth_service::db::schema::jobs::dsl::*;
    use diesel::prelude::*;
    let rows: Vec<(DbUuid, String, String, i32)> = load!(
        url,
        jobs.filter(kind.eq("webhook"))
            .select((id, subject, status, attempts))
    );
    rows.into_iter()
        .map(|(i, t, s, a)| (i.0, t, s, a))
        .collect()
}

/// The main backend's mirror: id → auth version.
async fn mirror_users(url: &str) -> HashMap<Uuid, i64> {
    use diesel::prelude::*;
    use main_backend::db::schema::userbase::dsl::*;
    let rows: Vec<(DbUuid, i64)> = load!(url, userbase.select((id, auth_version)));
    rows.into_iter().map(|(i, v)| (i.0, v)).collect()
}

async fn processed_webhooks(url: &str) -> Vec<String> {
    use diesel::prelude::*;
    use main_backend::db::schema::processed_webhooks::dsl::*;
    load!(url, processed_webhooks.select(id))
}

/// Waits until the mirror holds exactly the auth service's users at their
/// versions; panics with the difference otherwise.
pub(crate) async fn converged(
    auth_db: &str,
    main_db: &str,
    within: Duration,
) -> HashMap<Uuid, i64> {
    let deadline = Instant::now() + within;
    loop {
        let (truth, mirror) = (auth_users(auth_db).await, mirror_users(main_db).await);
        if truth == mirror {
            return truth;
        }
        if Instant::now() > deadline {
            let missing = truth.keys().filter(|k| !mirror.contains_key(k)).count();
            let extra = mirror.keys().filter(|k| !truth.contains_key(k)).count();
            panic!(
                "mirror did not converge in {within:?}: {} users, {} mirrored, {missing} missing, {extra} extra",
                truth.len(),
                mirror.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every event reached the receiver's ledger exactly once, nothing else is
/// in it, and one `user.created` exists per user. Every event is marked
/// delivered, except, when `leased_by_the_dead` is true, events a killed
/// sender had claimed: the receiver applied them, and they are sent again
/// (and deduplicated) when the dead sender's lease runs out.
async fn outbox_clean(stack_auth_db: &str, main_db: &str, users: usize, leased_by_the_dead: bool) {
    let events = outbox(stack_auth_db).await;
    let undelivered: Vec<_> = events.iter().filter(|e| e.2 != "done").collect();
    if leased_by_the_dead {
        assert!(
            undelivered.iter().all(|e| e.2 == "pending" && e.3 >= 1),
            "only in-flight events may be unmarked: {undelivered:?}"
        );
    } else {
        assert!(
            undelivered.is_empty(),
            "undelivered events: {undelivered:?}"
        );
    }
    let created = events.iter().filter(|e| e.1 == "user.created").count();
    assert_eq!(created, users, "one user.created per user");
    // The ledger's key is the webhook id, so "once" is the schema's; what
    // can go wrong is a missing or a foreign id.
    let processed: HashSet<String> = processed_webhooks(main_db).await.into_iter().collect();
    let event_ids: HashSet<String> = events.iter().map(|e| e.0.to_string()).collect();
    assert_eq!(
        processed, event_ids,
        "the receiver's ledger has every event, and nothing else"
    );
}

#[tokio::test]
async fn auth_killed_during_200_concurrent_registrations_loses_and_duplicates_nothing() {
    let _serial = SERIAL.lock().await;
    let mut stack = Stack::start("kill-auth", &[], &[]).await;
    let auth_url = stack.auth.url();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let (client, url) = (stack.client.clone(), auth_url.clone());
            tokio::spawn(async move { register(&client, &url, &email("k", i)).await })
        })
        .collect();
    // Kill while the registrations are in flight: some have committed, some
    // are mid-transaction, some are still queued.
    let deadline = Instant::now() + Duration::from_secs(20);
    while auth_users(&stack.auth_db).await.len() < 20 {
        assert!(Instant::now() < deadline, "registrations never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stack.auth.kill();
    let mut created = HashSet::new();
    let mut cut = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(Some((id, _))) => {
                created.insert(id);
            }
            Ok(None) => {}
            Err(_) => cut += 1,
        }
    }
    assert!(cut > 0, "the kill must cut some registrations");
    stack.auth.restart(READY).await.unwrap();

    // An event the killed process had claimed waits for its lease (30 s).
    let truth = converged(&stack.auth_db, &stack.main_db, Duration::from_secs(60)).await;
    // Every 201 is a user, and (with reconciliation off) the webhooks alone
    // brought every committed user to the mirror, the cut ones included.
    assert!(created.iter().all(|id| truth.contains_key(id)));
    assert!(truth.len() >= created.len());
    outbox_clean(&stack.auth_db, &stack.main_db, truth.len(), true).await;
    let health = stack.sync_health().await;
    assert_eq!(health["difference"], 0, "{health}");
}

#[tokio::test]
async fn main_backend_killed_during_a_webhook_burst_catches_up_to_zero_drift() {
    let _serial = SERIAL.lock().await;
    let mut stack = Stack::start("kill-main", &[], &[]).await;
    let auth_url = stack.auth.url();
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let (client, url, done) = (stack.client.clone(), auth_url.clone(), done.clone());
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in 0..20 {
                    if let Some((id, _)) = register(&client, &url, &email("m", t * 100 + i))
                        .await
                        .unwrap()
                    {
                        ids.push(id);
                    }
                    done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                ids
            })
        })
        .collect();
    while done.load(std::sync::atomic::Ordering::Relaxed) < 40 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    stack.main.kill();
    let mut created = Vec::new();
    for task in tasks {
        created.extend(task.await.unwrap());
    }
    assert_eq!(created.len(), 160, "the auth service keeps working alone");
    let before = mirror_users(&stack.main_db).await.len();
    assert!(
        before < 160,
        "the kill must land inside the burst ({before} mirrored)"
    );
    stack.main.restart(READY).await.unwrap();

    let truth = converged(&stack.auth_db, &stack.main_db, Duration::from_secs(30)).await;
    assert_eq!(truth.len(), 160);
    outbox_clean(&stack.auth_db, &stack.main_db, 160, false).await;
    let health = stack.sync_health().await;
    assert_eq!(health["difference"], 0, "{health}");
    assert_eq!(health["status"], "ok", "{health}");
}

#[tokio::test]
async fn frozen_auth_service_cached_tokens_work_and_the_rest_fail_closed_within_the_timeout() {
    let _serial = SERIAL.lock().await;
    let stack = Stack::start("sigstop", &[], &[("AUTH_TIMEOUT_MS", "500")]).await;
    let (auth_url, main_url) = (stack.auth.url(), stack.main.url());
    let (_, cached) = register(&stack.client, &auth_url, &email("s", 0))
        .await
        .unwrap()
        .unwrap();
    let (_, fresh) = register(&stack.client, &auth_url, &email("s", 1))
        .await
        .unwrap()
        .unwrap();
    let me = |token: String| {
        let (client, url) = (stack.client.clone(), main_url.clone());
        async move {
            let started = Instant::now();
            let res = client
                .get(format!("{url}/v1/me"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            let body: Value = res.json().await.unwrap_or(Value::Null);
            (status, body, started.elapsed())
        }
    };
    // The mirror must have the user before /v1/me can answer for it.
    converged(&stack.auth_db, &stack.main_db, Duration::from_secs(10)).await;
    assert_eq!(me(cached.clone()).await.0, 200);

    stack.auth.signal("STOP").unwrap();
    let (status, _, took) = me(cached.clone()).await;
    assert_eq!(status, 200, "a validated token is served from the cache");
    assert!(
        took < Duration::from_millis(400),
        "no call to the frozen service: {took:?}"
    );
    for token in [fresh.clone(), "not-a-token.at.all".to_owned()] {
        let (status, body, took) = me(token).await;
        assert!(
            status == 503 || status == 401,
            "unconfirmed tokens are refused, got {status}"
        );
        if status == 503 {
            assert_eq!(body["code"], "auth_unavailable", "{body}");
        }
        assert!(
            took < Duration::from_millis(500 + 1500),
            "answered within the 500 ms timeout (plus scheduling): {took:?}"
        );
    }
    let (status, body, _) = me(fresh.clone()).await;
    assert_eq!(
        status, 503,
        "an unseen valid-looking token is never accepted: {body}"
    );
    let ready = stack
        .client
        .get(format!("{main_url}/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 503);

    stack.auth.signal("CONT").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _, _) = me(fresh.clone()).await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "still {status} after SIGCONT");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn sqlite_under_concurrent_writers_never_reports_a_locked_database() {
    if postgres().is_some() {
        eprintln!("SQLite only: skipped on the PostgreSQL pass");
        return;
    }
    let _serial = SERIAL.lock().await;
    let seconds: u64 = std::env::var("FAULTS_SQLITE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let stack = Stack::start("sqlite-writers", &[], &[]).await;
    let (auth_url, main_url) = (stack.auth.url(), stack.main.url());
    let deadline = Instant::now() + Duration::from_secs(seconds);
    // Each writer: register (auth: user, session, outbox, mail), then create
    // tasks and settings on the main backend while the webhooks land, and
    // log in again (auth: session, audit).
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let (client, auth_url, main_url) =
                (stack.client.clone(), auth_url.clone(), main_url.clone());
            tokio::spawn(async move {
                let mut statuses: HashMap<u16, usize> = HashMap::new();
                let mut i = 0;
                while Instant::now() < deadline {
                    i += 1;
                    let mail = email(&format!("w{w}"), i);
                    let (id, token) = match register(&client, &auth_url, &mail).await.unwrap() {
                        Some(pair) => pair,
                        None => {
                            *statuses.entry(0).or_default() += 1;
                            continue;
                        }
                    };
                    for n in 0..3 {
                        let res = client
                            .post(format!("{main_url}/v1/users/{id}/tasks"))
                            .bearer_auth(&token)
                            .json(&json!({"title": format!("task {n}")}))
                            .send()
                            .await
                            .unwrap();
                        *statuses.entry(res.status().as_u16()).or_default() += 1;
                    }
                    let res = client
                        .put(format!("{main_url}/v1/me/settings"))
                        .bearer_auth(&token)
                        .json(&json!({"theme": "dark", "n": i}))
                        .send()
                        .await
                        .unwrap();
                    *statuses.entry(res.status().as_u16()).or_default() += 1;
                    let res = client
                        .post(format!("{auth_url}/v1/login"))
                        .json(&json!({"email": mail, "password": PASSWORD}))
                        .send()
                        .await
                        .unwrap();
                    *statuses.entry(res.status().as_u16()).or_default() += 1;
                }
                statuses
            })
        })
        .collect();
    let mut statuses: HashMap<u16, usize> = HashMap::new();
    for w in writers {
        for (k, v) in w.await.unwrap() {
            *statuses.entry(k).or_default() += v;
        }
    }
    // A task for a user whose webhook has not landed yet still succeeds:
    // the main backend fetches an unknown user on first sight.
    let failed: Vec<_> = statuses
        .iter()
        .filter(|(s, _)| !(200..300).contains(*s))
        .collect();
    assert!(
        failed.is_empty(),
        "non-2xx answers: {failed:?} of {statuses:?}"
    );
    let writes: usize = statuses.values().sum();
    assert!(
        writes > 100,
        "the writers must actually write: {statuses:?}"
    );
    for service in [&stack.auth, &stack.main] {
        let log = service.log();
        assert!(
            !log.contains("database is locked") && !log.contains("SQLITE_BUSY"),
            "{} reported a locked database",
            service.name
        );
    }
    converged(&stack.auth_db, &stack.main_db, Duration::from_secs(30)).await;
}

/// A PostgreSQL server of the test's own (the shared one serves the other
/// tests, and this one gets restarted). Found like `scripts/test` finds it.
struct OwnPostgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
}

impl OwnPostgres {
    fn pg(&self, tool: &str) -> std::process::Command {
        let path = self.bin.join(tool);
        // PostgreSQL refuses to run as root: use its own user then.
        if running_as_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            std::process::Command::new(path)
        }
    }

    fn start() -> Self {
        let bin = find_pg_bin().expect("PostgreSQL binaries (initdb) for the restart test");
        let data = scratch("pgdata");
        std::fs::create_dir_all(&data).unwrap();
        if running_as_root() {
            let ok = std::process::Command::new("chown")
                .args(["postgres"])
                .arg(&data)
                .status()
                .unwrap();
            assert!(ok.success());
        }
        let me = Self {
            bin,
            data,
            port: free_port().unwrap(),
        };
        let ok = me
            .pg("initdb")
            .args(["-U", "postgres", "--auth=trust", "-D"])
            .arg(&me.data)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(ok.success(), "initdb");
        me.ctl("start");
        me
    }

    fn ctl(&self, action: &str) {
        let mut c = self.pg("pg_ctl");
        c.arg("-D").arg(&self.data).args(["-w", "-m", "fast"]);
        if action == "start" {
            c.arg("-l")
                .arg(self.data.join("server.log"))
                .arg("-o")
                .arg(format!(
                    "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
                    self.port,
                    self.data.display()
                ));
        }
        let ok = c
            .arg(action)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(ok.success(), "pg_ctl {action}");
    }

    async fn database(&self, name: &str) -> String {
        use diesel_async::{AsyncConnection, RunQueryDsl};
        let admin = format!("postgres://postgres@127.0.0.1:{}/postgres", self.port);
        let mut conn = diesel_async::AsyncPgConnection::establish(&admin)
            .await
            .unwrap();
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = self
            .pg("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

fn running_as_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn find_pg_bin() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("initdb").exists() && dir.join("pg_ctl").exists() {
                return Some(
                    std::fs::canonicalize(dir.join("pg_ctl"))
                        .ok()?
                        .parent()?
                        .into(),
                );
            }
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| Path::new(p).join("initdb").exists())
        .collect();
    found.sort();
    found.pop()
}

#[tokio::test]
async fn postgres_restarted_under_load_both_services_recover_with_503s_and_nothing_half_written() {
    if postgres().is_none() {
        eprintln!("PostgreSQL only: skipped on the SQLite pass");
        return;
    }
    let _serial = SERIAL.lock().await;
    let pg = OwnPostgres::start();
    let (auth_db, main_db) = (pg.database("auth").await, pg.database("main").await);
    let system = System::new(&scratch("pg-restart")).unwrap();
    let stack = Stack::on(system, auth_db, main_db, Vec::new(), &[], &[]).await;
    let (auth_url, main_url) = (stack.auth.url(), stack.main.url());
    let (owner, token) = register(&stack.client, &auth_url, &email("p", 0))
        .await
        .unwrap()
        .unwrap();
    converged(&stack.auth_db, &stack.main_db, Duration::from_secs(10)).await;

    let running = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let load: Vec<_> = (0..6)
        .map(|w| {
            let (client, auth_url, main_url, running, token) = (
                stack.client.clone(),
                auth_url.clone(),
                main_url.clone(),
                running.clone(),
                token.clone(),
            );
            tokio::spawn(async move {
                // (status, when) of every answer; the ids of tasks the
                // service said it created.
                let (mut seen, mut tasks, mut i) = (Vec::new(), Vec::new(), 0);
                while running.load(std::sync::atomic::Ordering::Relaxed) {
                    i += 1;
                    let res = if w % 2 == 0 {
                        client
                            .post(format!("{auth_url}/v1/register"))
                            .json(
                                &json!({"email": email(&format!("p{w}"), i), "password": PASSWORD}),
                            )
                            .send()
                            .await
                    } else {
                        client
                            .post(format!("{main_url}/v1/users/{owner}/tasks"))
                            .bearer_auth(&token)
                            .json(&json!({"title": format!("t{w}-{i}")}))
                            .send()
                            .await
                    };
                    let res = res.expect("the services stay up and answer");
                    let status = res.status().as_u16();
                    let body: Value = res.json().await.unwrap_or(Value::Null);
                    if status == 201 && w % 2 == 1 {
                        tasks.push(body["id"].as_str().unwrap().to_owned());
                    }
                    seen.push((status, Instant::now(), body["code"].clone()));
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                (seen, tasks)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stopped = Instant::now();
    pg.ctl("stop");
    // Longer than the pools' 5 s connection timeout, so requests in the gap
    // get their answer while the server is away.
    tokio::time::sleep(Duration::from_secs(7)).await;
    pg.ctl("start");
    let restarted = Instant::now();
    tokio::time::sleep(Duration::from_secs(6)).await;
    running.store(false, std::sync::atomic::Ordering::Relaxed);
    let (mut seen, mut task_ids) = (Vec::new(), Vec::new());
    for l in load {
        let (s, t) = l.await.unwrap();
        seen.extend(s);
        task_ids.extend(t);
    }
    let odd: Vec<_> = seen
        .iter()
        .filter(|(s, _, _)| ![200, 201, 503].contains(s))
        .collect();
    assert!(odd.is_empty(), "only 2xx and 503 may be seen: {odd:?}");
    let unavailable = seen.iter().filter(|(s, _, _)| *s == 503).count();
    assert!(unavailable > 0, "the gap must be felt");
    assert!(
        seen.iter()
            .filter(|(s, _, _)| *s == 503)
            .all(|(_, _, code)| code == "service_unavailable" || code == "auth_unavailable"),
        "503s are problem details with a retryable code"
    );
    assert!(
        seen.iter()
            .any(|(s, at, _)| *s == 201 && *at > restarted + Duration::from_secs(1)),
        "both kinds of request succeed again after the restart"
    );
    assert!(seen.iter().any(|(s, at, _)| *s == 201 && *at < stopped));
    for service in [&stack.auth, &stack.main] {
        assert!(
            !service.log().contains("panicked"),
            "{} panicked:\n{}",
            service.name,
            service.log_tail(30)
        );
    }
    // Nothing half-written: every user has its outbox event and reached the
    // mirror, and every task answered 201 exists.
    let truth = converged(&stack.auth_db, &stack.main_db, Duration::from_secs(30)).await;
    outbox_clean(&stack.auth_db, &stack.main_db, truth.len(), false).await;
    let listed = get_json(
        &stack.client,
        &format!("{main_url}/v1/users/{owner}/tasks?limit=100"),
        Some(&token),
    )
    .await;
    let mut stored: HashSet<String> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    let mut cursor = listed["next_cursor"].clone();
    while let Some(c) = cursor.as_str() {
        let page = get_json(
            &stack.client,
            &format!("{main_url}/v1/users/{owner}/tasks?limit=100&cursor={c}"),
            Some(&token),
        )
        .await;
        stored.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["id"].as_str().unwrap().to_owned()),
        );
        cursor = page["next_cursor"].clone();
    }
    assert!(
        task_ids.iter().all(|t| stored.contains(t)),
        "a 201 task was lost"
    );
}

#[tokio::test]
async fn two_replicas_of_each_service_share_the_work_once() {
    let Some(_) = postgres() else {
        eprintln!("PostgreSQL only (replicas share one server): skipped on the SQLite pass");
        return;
    };
    let _serial = SERIAL.lock().await;
    let dir = scratch("replicas");
    let _scratch = Scratch(dir.clone());
    let system = System::new(&dir).unwrap();
    let (auth_tdb, auth_db) = TestDb::create(&dir, "auth").await;
    let (main_tdb, main_db) = TestDb::create(&dir, "main").await;
    let [a1, a2, m1, m2] = [(); 4].map(|()| Port::new().unwrap());
    let hook = |p: &Port| format!("http://127.0.0.1:{p}/webhooks/auth");
    // Behind a pooler (TEST_DATABASE_POOLER_URL) both processes of each
    // service share one PgBouncer in transaction mode.
    let auth_env = auth_tdb.service_env("AUTH_DATABASE_URL", &auth_db);
    let mut main_env = main_tdb.service_env("DATABASE_URL", &main_db);
    main_env.push(("SYNC_INTERVAL_SECONDS".into(), "1".into()));
    let (auth_env, main_env) = (pairs(&auth_env), pairs(&main_env));
    let mut auth1 = system
        .auth("auth1", a1, &auth_db, &hook(&m1), &auth_env)
        .unwrap();
    auth1.ready(READY).await.unwrap();
    let mut auth2 = system
        .auth("auth2", a2, &auth_db, &hook(&m2), &auth_env)
        .unwrap();
    let mut main1 = system
        .main("main1", m1, &main_db, &auth1.url(), &main_env)
        .unwrap();
    let mut main2 = system
        .main("main2", m2, &main_db, &auth2.url(), &main_env)
        .unwrap();
    for s in [&mut auth2, &mut main1, &mut main2] {
        s.ready(READY).await.unwrap();
    }
    let reconcile_from = chrono::Utc::now();
    let client = client();

    // Registrations spread over both auth replicas; both outbox workers
    // claim from the one table.
    let tasks: Vec<_> = (0..120)
        .map(|i| {
            let url = if i % 2 == 0 { auth1.url() } else { auth2.url() };
            let client = client.clone();
            tokio::spawn(async move { register(&client, &url, &email("r", i)).await })
        })
        .collect();
    let mut users = Vec::new();
    for t in tasks {
        users.push(t.await.unwrap().unwrap().expect("201"));
    }
    let truth = converged(&auth_db, &main_db, Duration::from_secs(30)).await;
    assert_eq!(truth.len(), 120);
    outbox_clean(&auth_db, &main_db, 120, false).await;
    let events = outbox(&auth_db).await;
    let twice: Vec<_> = events.iter().filter(|e| e.3 != 1).collect();
    assert!(twice.is_empty(), "every event was sent once: {twice:?}");

    // Revocation evicts on both main replicas: the token is cached on each,
    // one logout at one auth replica, and both refuse it within a second.
    let (_, token) = &users[0];
    for m in [&main1, &main2] {
        let res = client
            .get(format!("{}/v1/me", m.url()))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 200, "{}", m.name);
    }
    let res = client
        .post(format!("{}/v1/logout", auth2.url()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 204);
    let logged_out = Instant::now();
    for m in [&main1, &main2] {
        loop {
            let res = client
                .get(format!("{}/v1/me", m.url()))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            if res.status().as_u16() == 401 {
                break;
            }
            assert!(
                logged_out.elapsed() < Duration::from_secs(1),
                "{} still serves a revoked token",
                m.name
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // Reconciliation once per interval, not once per replica per interval.
    let window = Duration::from_secs(8);
    tokio::time::sleep(window.saturating_sub(reconcile_from_elapsed(reconcile_from))).await;
    let runs: Vec<(String, DbTime)> = {
        use diesel::prelude::*;
        use main_backend::db::schema::sync_runs::dsl::*;
        load!(
            &main_db,
            sync_runs
                .select((trigger, started_at))
                .filter(started_at.ge(DbTime(reconcile_from)))
        )
    };
    let mut periodic: Vec<chrono::DateTime<chrono::Utc>> = runs
        .iter()
        .filter(|(t, _)| t == "periodic")
        .map(|(_, at)| at.0)
        .collect();
    periodic.sort();
    // One replica alone runs about once a second (after a 2 s start); two
    // uncoordinated ones would often run a few milliseconds apart. Whoever
    // runs, runs are at least 0.8 interval apart.
    assert!(periodic.len() >= 3, "{} periodic runs", periodic.len());
    for pair in periodic.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= chrono::Duration::milliseconds(790),
            "two reconciliations {} ms apart with a 1 s interval",
            gap.num_milliseconds()
        );
    }
    drop((auth1, auth2, main1, main2));
    drop((auth_tdb, main_tdb));
}

fn reconcile_from_elapsed(from: chrono::DateTime<chrono::Utc>) -> Duration {
    (chrono::Utc::now() - from).to_std().unwrap_or_default()
}

/// Borrowed `(name, value)` pairs, as `System::auth`/`main` take them.
fn pairs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}
