//! What only PostgreSQL can show (each test returns on SQLite): the
//! database server restarted under load, and two replicas of each service
//! on one database sharing the work once.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use launcher::system::{free_port, Port, System};
use serde_json::{json, Value};
use service_kit::db::{DbPool, DbTime};
use service_kit::testing::TestDb;

use crate::faults::*;
use crate::stack::{client, get_json, postgres, scratch, Scratch, Stack, READY, SERIAL};

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
