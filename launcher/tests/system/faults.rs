//! Fault injection on the real binaries (`target/<profile>/auth-service` and
//! `main-backend`, built by `cargo test --workspace`): processes killed with
//! SIGKILL, frozen with SIGSTOP, SQLite under concurrent writers. The
//! PostgreSQL server restarted under load and replicas are `replicas.rs`.
//!
//! Every test runs on SQLite, or on PostgreSQL when `TEST_DATABASE_URL` is
//! set (as in the README's test command); the SQLite-only one returns on
//! PostgreSQL.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use service_kit::db::{DbPool, DbUuid};
use uuid::Uuid;

use crate::stack::{postgres, Stack, READY, SERIAL};

pub(crate) const PASSWORD: &str = "fault injection password 42";

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

pub(crate) fn email(tag: &str, i: usize) -> String {
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
pub(crate) use load;

/// Users as the auth service's database has them: id → version.
pub(crate) async fn auth_users(url: &str) -> HashMap<Uuid, i64> {
    use auth_service::db::schema::users::dsl::*;
    use diesel::prelude::*;
    let rows: Vec<(DbUuid, i64)> = load!(url, users.select((id, version)));
    rows.into_iter().map(|(i, v)| (i.0, v)).collect()
}

/// The auth service's webhook deliveries: (event id, type, status, attempts).
pub(crate) async fn outbox(url: &str) -> Vec<(Uuid, String, String, i32)> {
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
pub(crate) async fn mirror_users(url: &str) -> HashMap<Uuid, i64> {
    use diesel::prelude::*;
    use main_backend::db::schema::userbase::dsl::*;
    let rows: Vec<(DbUuid, i64)> = load!(url, userbase.select((id, auth_version)));
    rows.into_iter().map(|(i, v)| (i.0, v)).collect()
}

pub(crate) async fn processed_webhooks(url: &str) -> Vec<String> {
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
pub(crate) async fn outbox_clean(
    stack_auth_db: &str,
    main_db: &str,
    users: usize,
    leased_by_the_dead: bool,
) {
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

/// Counts an answer by status; a non-2xx one is also described (what was
/// asked, the status and the problem's code and detail), so a failure
/// says which service refused and why.
async fn tally(
    res: reqwest::Response,
    what: &str,
    statuses: &mut HashMap<u16, usize>,
    problems: &mut Vec<String>,
) {
    let status = res.status();
    *statuses.entry(status.as_u16()).or_default() += 1;
    if !status.is_success() {
        let body = res.text().await.unwrap_or_default();
        problems.push(format!("{what}: {status} {body}"));
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
                let mut problems: Vec<String> = Vec::new();
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
                        tally(res, "create a task", &mut statuses, &mut problems).await;
                    }
                    let res = client
                        .put(format!("{main_url}/v1/me/settings"))
                        .bearer_auth(&token)
                        .json(&json!({"theme": "dark", "n": i}))
                        .send()
                        .await
                        .unwrap();
                    tally(res, "put settings", &mut statuses, &mut problems).await;
                    let res = client
                        .post(format!("{auth_url}/v1/login"))
                        .json(&json!({"email": mail, "password": PASSWORD}))
                        .send()
                        .await
                        .unwrap();
                    tally(res, "log in", &mut statuses, &mut problems).await;
                }
                (statuses, problems)
            })
        })
        .collect();
    let mut statuses: HashMap<u16, usize> = HashMap::new();
    let mut problems = Vec::new();
    for w in writers {
        let (counted, found) = w.await.unwrap();
        for (k, v) in counted {
            *statuses.entry(k).or_default() += v;
        }
        problems.extend(found);
    }
    // A task for a user whose webhook has not landed yet still succeeds:
    // the main backend fetches an unknown user on first sight.
    let failed: Vec<_> = statuses
        .iter()
        .filter(|(s, _)| !(200..300).contains(*s))
        .collect();
    assert!(
        failed.is_empty(),
        "non-2xx answers: {failed:?} of {statuses:?}: {problems:?}"
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
