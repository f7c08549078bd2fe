//! Benchmarks of the event feed (`GET /internal/v1/events`): from an
//! event's commit to its receipt on Server-Sent Event streams (1 and 50
//! consumers), a registration reaching the mirror by webhook and by the
//! stream transport side by side (a second main backend with
//! `SYNC_TRANSPORT=stream` on its own database), and how fast one consumer
//! drains a backlog of 100,000 events.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::bench::{ok, service_tokens, Run, Sample};
use crate::bench_sync::pct;

const BACKLOG: i64 = 100_000;

async fn head(run: &Run) -> anyhow::Result<i64> {
    let page: Value = run
        .client
        .get(format!("{}/internal/v1/events?after=now", run.auth.url()))
        .bearer_auth(&run.api_key)
        .send()
        .await?
        .json()
        .await?;
    Ok(page["next_cursor"].as_str().unwrap_or("0").parse()?)
}

/// Reads one SSE stream from `after` until the event at `last` came;
/// answers each event's age at receipt (from the timestamp its writing
/// transaction gave it), in microseconds.
async fn follow(
    client: reqwest::Client,
    url: String,
    key: String,
    after: i64,
    last: tokio::sync::watch::Receiver<i64>,
) -> anyhow::Result<Vec<u64>> {
    let mut res = client
        .get(format!("{url}/internal/v1/events?after={after}"))
        .bearer_auth(key)
        .header("accept", "text/event-stream")
        .send()
        .await?;
    anyhow::ensure!(res.status().is_success(), "stream: {}", res.status());
    let (mut buffer, mut ages, mut seen) = (String::new(), Vec::new(), after);
    loop {
        let target = *last.borrow();
        if target > 0 && seen >= target {
            return Ok(ages);
        }
        let chunk = tokio::time::timeout(Duration::from_secs(20), res.chunk())
            .await
            .map_err(|_| anyhow::anyhow!("no event for 20 s"))??
            .ok_or_else(|| anyhow::anyhow!("the stream ended"))?;
        let received = Utc::now();
        buffer.push_str(std::str::from_utf8(&chunk)?);
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(name).map(str::to_owned))
            };
            if let (Some(id), Some(data)) = (field("id: "), field("data: ")) {
                let body: Value = serde_json::from_str(&data)?;
                let at: DateTime<Utc> = serde_json::from_value(body["timestamp"].clone())?;
                ages.push((received - at).num_microseconds().unwrap_or(0).max(0) as u64);
                seen = id.parse()?;
            }
        }
    }
}

/// `consumers` streams open while one admin locks and unlocks a user
/// `changes` times (each change commits events through the service, as
/// real changes do).
async fn sse_latency(
    run: &Run,
    admin: &str,
    user: &str,
    consumers: usize,
    changes: usize,
) -> anyhow::Result<Sample> {
    let from = head(run).await?;
    let (last_tx, last_rx) = tokio::sync::watch::channel(0i64);
    let readers: Vec<_> = (0..consumers)
        .map(|_| {
            tokio::spawn(follow(
                run.client.clone(),
                run.auth.url(),
                run.api_key.clone(),
                from,
                last_rx.clone(),
            ))
        })
        .collect();
    // Let every stream open before the first change.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    for i in 0..changes {
        let action = if i % 2 == 0 { "lock" } else { "unlock" };
        let res = run
            .client
            .post(format!("{}/admin/v1/users/{user}/{action}", run.auth.url()))
            .bearer_auth(admin)
            .send()
            .await?;
        anyhow::ensure!(res.status().is_success(), "{action}: {}", res.status());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = last_tx.send(head(run).await?);
    let mut ages = Vec::new();
    for reader in readers {
        ages.extend(reader.await??);
    }
    Ok(Sample::of(ages, 0, started.elapsed()))
}

/// Inserts `n` events straight into the outbox (no webhook jobs: the
/// receiver is not what is measured), in one transaction.
async fn seed_backlog(url: &str, n: i64) -> anyhow::Result<()> {
    let now = service_kit::db::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    let rows = (0..n)
        .map(|i| {
            format!(
                "('{}', 'bench.backlog', '{{\"type\":\"bench.backlog\",\"timestamp\":\"{now}\",\"data\":{{\"i\":{i}}}}}', '{now}')",
                uuid::Uuid::now_v7()
            )
        })
        .collect();
    crate::bench::insert_rows(
        url,
        "INSERT INTO webhook_events (id, event_type, payload, created_at) VALUES",
        rows,
        500,
    )
    .await
}

pub async fn run(run: &Run) -> anyhow::Result<String> {
    let admin = service_tokens(run, "admin", 1).await?.remove(0);
    let res: Value = run
        .client
        .post(format!("{}/v1/register", run.auth.url()))
        .json(&json!({"email": format!("feed-{}@example.com", uuid::Uuid::new_v4().simple()), "password": "benchmark password 123"}))
        .send()
        .await?
        .json()
        .await?;
    let user = res["user"]["id"].as_str().unwrap_or_default().to_owned();

    // 1. Commit to receipt on Server-Sent Event streams.
    let one = sse_latency(run, &admin, &user, 1, 200).await?;
    let fifty = sse_latency(run, &admin, &user, 50, 200).await?;

    // 2. Register to mirror row: webhook (the run's main backend) and
    // stream (a second one following the feed), for the same users.
    let port = launcher::system::Port::new()?;
    let mut streamer = run.system.main(
        "stream-main",
        port,
        &run.stream_main_db,
        &run.auth.url(),
        &[("SYNC_TRANSPORT", "stream"), ("SYNC_INTERVAL_SECONDS", "0")],
    )?;
    streamer.ready(Duration::from_secs(60)).await?;
    let (by_webhook, by_stream) = {
        let webhook_db = service_kit::db::DbPool::connect(&run.main_db, 2).await?;
        let stream_db = service_kit::db::DbPool::connect(&run.stream_main_db, 2).await?;
        // The follower starts from the head it finds: wait for its first read.
        let started = Instant::now();
        loop {
            let state =
                main_backend::db::event_stream::get(&mut stream_db.get().await?.conn()).await?;
            if state.cursor.is_some() {
                break;
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(20),
                "the stream follower never read"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (mut webhook, mut stream) = (Vec::new(), Vec::new());
        for i in 0..100 {
            let res = run
                .client
                .post(format!("{}/v1/register", run.auth.url()))
                .json(&json!({"email": format!("transport-{i}-{}@example.com", uuid::Uuid::new_v4().simple()), "password": "benchmark password 123"}))
                .send()
                .await?;
            anyhow::ensure!(res.status().is_success(), "register: {}", res.status());
            let done = Instant::now();
            let body: Value = res.json().await?;
            let id: uuid::Uuid = serde_json::from_value(body["user"]["id"].clone())?;
            let (mut w, mut s) = (None, None);
            while w.is_none() || s.is_none() {
                if w.is_none()
                    && main_backend::db::mirror::find(&mut webhook_db.get().await?.conn(), id)
                        .await?
                        .is_some()
                {
                    w = Some(done.elapsed());
                }
                if s.is_none()
                    && main_backend::db::mirror::find(&mut stream_db.get().await?.conn(), id)
                        .await?
                        .is_some()
                {
                    s = Some(done.elapsed());
                }
                anyhow::ensure!(
                    done.elapsed() < Duration::from_secs(10),
                    "a user never reached a mirror"
                );
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
            webhook.extend(w);
            stream.extend(s);
        }
        webhook.sort();
        stream.sort();
        (webhook, stream)
    };
    drop(streamer);

    // 3. Draining a backlog of 100,000 events, 1,000 a page.
    let from = head(run).await?;
    let seeded = Instant::now();
    seed_backlog(&run.auth_db, BACKLOG).await?;
    let insert = seeded.elapsed();
    let stamped = Instant::now();
    while head(run).await? < from + BACKLOG {
        anyhow::ensure!(
            stamped.elapsed() < Duration::from_secs(300),
            "the backlog was never stamped"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stamping = stamped.elapsed();
    let drained = Instant::now();
    let (mut cursor, mut events) = (from.to_string(), 0usize);
    while events < BACKLOG as usize {
        let page: Value = run
            .client
            .get(format!(
                "{}/internal/v1/events?after={cursor}&limit=1000",
                run.auth.url()
            ))
            .bearer_auth(&run.api_key)
            .send()
            .await?
            .json()
            .await?;
        let n = page["events"].as_array().map_or(0, Vec::len);
        anyhow::ensure!(n > 0, "the backlog ended early at {events}");
        events += n;
        cursor = page["next_cursor"].as_str().unwrap_or_default().to_owned();
    }
    let drain = drained.elapsed();
    let rate = events as f64 / drain.as_secs_f64();

    Ok(format!(
        "## Event feed\n\n\
         | figure | value | goal |\n|---|---|---|\n\
         | commit to receipt on a Server-Sent Event stream, 1 consumer ({n1} events): p50 / p99 | {a50:.1} / **{a99:.1} ms** | |\n\
         | same, 50 consumers ({n50} receipts) | {b50:.1} / **{b99:.1} ms** | p99 < 50 ms {bok} |\n\
         | register to the mirror row by webhook, 100 users: p50 / p99 | {w50:.1} / {w99:.1} ms | |\n\
         | register to the mirror row by the stream transport (`SYNC_TRANSPORT=stream`), same users: p50 / p99 | {s50:.1} / {s99:.1} ms | |\n\
         | one consumer draining a backlog of 100,000 events, 1,000 a page | **{rate:.0} events/s** ({drain:.1} s) | |\n\
         | stamping that backlog with feed positions (after its insert, {ins:.1} s) | {stamp:.1} s | |\n\n\
         Commit to receipt runs from the timestamp an event's writing transaction gave it to the moment a\n\
         consumer read it, on the same clock; the changes are administrator locks and unlocks of one user, 5 ms\n\
         apart, each one transaction through the service (the after-commit wake-up then reaches the feed's\n\
         sequencer, which stamps positions and wakes every stream). The stream transport is a second main\n\
         backend, on its own database, following the feed with 10 s long-polls while the first one receives\n\
         webhooks: each registration is timed on both.\n\n",
        n1 = one.len(),
        a50 = one.pct(0.5),
        a99 = one.pct(0.99),
        n50 = fifty.len(),
        b50 = fifty.pct(0.5),
        b99 = fifty.pct(0.99),
        bok = ok(fifty.pct(0.99) < 50.0),
        w50 = pct(&by_webhook, 0.5),
        w99 = pct(&by_webhook, 0.99),
        s50 = pct(&by_stream, 0.5),
        s99 = pct(&by_stream, 0.99),
        drain = drain.as_secs_f64(),
        ins = insert.as_secs_f64(),
        stamp = stamping.as_secs_f64(),
    ))
}
