//! The event feed: no gaps under out-of-order commits (32 writers, a
//! consumer following it on another replica), pages, long-polls, Server-
//! Sent Events resumed with `Last-Event-ID`, and what a consumer gets
//! wrong: a forged, expired or future cursor, a bad limit or wait, no key.

use std::collections::HashSet;
use std::time::Duration;

use auth_service::db::{feed, outbox, DbPool};
use reqwest::StatusCode;
use serde_json::{json, Value};
use service_kit::transaction;
use shared_types::{EventPage, EventType};

use crate::helpers::{assert_problem, email, spawn_app, TestApp};

async fn page(app: &TestApp, base: &str, query: &str) -> reqwest::Response {
    app.client
        .get(format!("{base}/internal/v1/events?{query}"))
        .bearer_auth(&app.api_key)
        .send()
        .await
        .expect("request")
}

async fn events(app: &TestApp, query: &str) -> EventPage {
    let res = page(app, &app.address, query).await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.expect("page")
}

/// Transactions that take their feed position at insert commit out of
/// order, and a reader that already read past a late one never sees it.
/// Here 32 writers each write events in transactions held open for a
/// random while (so they commit out of order), straight to the database,
/// while a consumer follows the feed on another replica in small pages.
/// It must see every event exactly once, in increasing cursor order.
#[tokio::test]
async fn a_consumer_sees_every_event_once_while_32_writers_commit_out_of_order() {
    let mut app = spawn_app().await;
    let replica = app.start_replica().await;
    let db = DbPool::connect(&app.database_url, 40).await.expect("pool");
    let sqlite = app.database_url.starts_with("sqlite");
    // The consumer starts at the head as it is before any writer runs.
    let start = events(&app, "after=now").await.next_cursor;
    const WRITERS: usize = 32;
    const EACH: usize = 8;
    let writers = (0..WRITERS).map(|w| {
        let db = db.clone();
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..EACH {
                // SQLite runs one writer at a time: shorter holds.
                let hold = rand::random::<u64>() % if sqlite { 3 } else { 40 };
                let mut pooled = db.get().await.expect("connection");
                let conn = &mut pooled.conn();
                let id = transaction!(conn, |tx| -> diesel::result::Error {
                    let id = outbox::enqueue(
                        tx,
                        EventType::Other("test.write".into()),
                        json!({"writer": w, "i": i}),
                    )
                    .await?;
                    tokio::time::sleep(Duration::from_millis(hold)).await;
                    Ok(id)
                })
                .expect("write");
                ids.push(id);
            }
            ids
        })
    });
    let writers = futures::future::join_all(writers);
    let consumer = async {
        let mut seen = Vec::new();
        let mut cursor = start;
        let mut last = 0i64;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while seen.len() < WRITERS * EACH && tokio::time::Instant::now() < deadline {
            let res = page(&app, &replica, &format!("after={cursor}&limit=7&wait=1")).await;
            assert_eq!(res.status(), StatusCode::OK);
            let got: EventPage = res.json().await.expect("page");
            for e in &got.events {
                let position: i64 = e.cursor.parse().expect("a cursor");
                assert!(position > last, "cursors go up: {position} after {last}");
                last = position;
                seen.push(e.id);
            }
            cursor = got.next_cursor;
        }
        seen
    };
    let (written, seen) = tokio::join!(writers, consumer);
    let written: HashSet<_> = written
        .into_iter()
        .flat_map(|w| w.expect("writer"))
        .collect();
    assert_eq!(written.len(), WRITERS * EACH);
    let unique: HashSet<_> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "an event was served twice");
    assert_eq!(unique, written, "every event, and only those, was seen");
}

#[tokio::test]
async fn the_feed_pages_long_polls_and_refuses_bad_cursors() {
    let app = spawn_app().await;
    let start = events(&app, "after=now").await;
    assert!(start.events.is_empty());
    // A long-poll from the head answers when a user registers.
    let query = format!("after={}&wait=10", start.next_cursor);
    let waiting = events(&app, &query);
    let address = email();
    let (got, reg) = tokio::join!(waiting, async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        app.register(&address).await
    });
    assert_eq!(got.events.len(), 1, "{got:?}");
    let created = &got.events[0];
    assert_eq!(created.event.kind, EventType::UserCreated);
    assert_eq!(created.event.data["id"], json!(reg.user.id));
    assert_eq!(created.cursor, got.next_cursor);
    // Without after: from the oldest kept event, the same one included.
    let all = events(&app, "limit=1000").await;
    assert!(all.events.iter().any(|e| e.id == created.id));
    // An empty page echoes the position; a short wait returns empty.
    let after = events(&app, &format!("after={}&wait=1", got.next_cursor)).await;
    assert!(after.events.is_empty());
    assert_eq!(after.next_cursor, got.next_cursor);

    // What a consumer gets wrong.
    for bad in [
        "after=abc",
        "after=-1",
        "after=1e3",
        "limit=0",
        "limit=1001",
        "wait=31",
    ] {
        let res = page(&app, &app.address, bad).await;
        assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    }
    let ahead: i64 = got.next_cursor.parse::<i64>().expect("cursor") + 1000;
    let res = page(&app, &app.address, &format!("after={ahead}")).await;
    assert_problem(res, StatusCode::GONE, "cursor_expired").await;
    let res = app
        .client
        .get(app.url("/internal/v1/events"))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = app
        .get_bearer("/internal/v1/events", &reg.tokens.access_token)
        .await;
    assert_eq!(
        res.status(),
        StatusCode::UNAUTHORIZED,
        "a user's token is not a service's"
    );

    // Pruned past a cursor: 410, and the newest event is always kept.
    app.register(&email()).await;
    let head = events(&app, "after=now").await.next_cursor;
    let db = DbPool::connect(&app.database_url, 2).await.expect("pool");
    let pruned = feed::prune(
        &mut db.get().await.expect("conn").conn(),
        chrono::Utc::now() + chrono::Duration::days(1),
    )
    .await
    .expect("prune");
    assert!(pruned >= 1);
    // A reader that had seen the first user.created missed nothing; one
    // just before it missed it.
    let first: i64 = got.next_cursor.parse().expect("cursor");
    let res = page(&app, &app.address, &format!("after={first}")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = page(&app, &app.address, &format!("after={}", first - 1)).await;
    assert_problem(res, StatusCode::GONE, "cursor_expired").await;
    let kept = events(&app, "").await;
    assert_eq!(kept.events.len(), 1, "the newest event stays");
    assert_eq!(kept.events[0].cursor, head);
}

/// Reads Server-Sent Events until `n` events came; answers their
/// (id, event, data) lines.
async fn read_sse(mut res: reqwest::Response, n: usize) -> Vec<(String, String, Value)> {
    let mut buffer = String::new();
    let mut out = Vec::new();
    while out.len() < n {
        let chunk = tokio::time::timeout(Duration::from_secs(10), res.chunk())
            .await
            .expect("an event in time")
            .expect("bytes")
            .expect("the stream stays open");
        buffer.push_str(std::str::from_utf8(&chunk).expect("utf-8"));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_owned))
            };
            if let (Some(id), Some(event), Some(data)) =
                (field("id"), field("event"), field("data"))
            {
                out.push((id, event, serde_json::from_str(&data).expect("json data")));
            }
        }
    }
    out
}

#[tokio::test]
async fn server_sent_events_follow_the_feed_and_resume_with_last_event_id() {
    let app = spawn_app().await;
    let start = events(&app, "after=now").await;
    let sse = |after: Option<&str>, last: Option<&str>| {
        let mut req = app
            .client
            .get(app.url("/internal/v1/events"))
            .bearer_auth(&app.api_key)
            .header("accept", "text/event-stream");
        if let Some(a) = after {
            req = req.query(&[("after", a)]);
        }
        if let Some(l) = last {
            req = req.header("last-event-id", l);
        }
        req.send()
    };
    let res = sse(Some(&start.next_cursor), None).await.expect("stream");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let (a, b) = (email(), email());
    app.register(&a).await;
    app.register(&b).await;
    let got = read_sse(res, 2).await;
    assert_eq!(got[0].1, "user.created");
    assert_eq!(got[0].2["data"]["email"], json!(a));
    assert_eq!(got[1].2["data"]["email"], json!(b));
    // Resumed after the first: Last-Event-ID wins over `after`.
    let res = sse(Some("now"), Some(&got[0].0)).await.expect("stream");
    let again = read_sse(res, 1).await;
    assert_eq!(again[0], got[1]);
    // A forged Last-Event-ID is refused before the stream starts.
    let res = sse(None, Some("forged")).await.expect("answer");
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
}

/// Waiting readers hold no database connection: with a pool of 2, twelve
/// long-polls and four streams wait while a registration (which needs
/// connections) goes through, and every one of them then gets its event.
#[tokio::test]
async fn waiting_readers_hold_no_database_connection() {
    let app = crate::helpers::spawn_app_with(&[("AUTH_DATABASE_POOL_SIZE", "2")]).await;
    let head = events(&app, "after=now").await.next_cursor;
    let query = format!("after={head}&wait=20");
    let polls = futures::future::join_all((0..12).map(|_| events(&app, &query)));
    let mut streams = Vec::new();
    for _ in 0..4 {
        let res = app
            .client
            .get(app.url("/internal/v1/events"))
            .bearer_auth(&app.api_key)
            .header("accept", "text/event-stream")
            .header("last-event-id", &head)
            .send()
            .await
            .expect("stream");
        assert_eq!(res.status(), StatusCode::OK);
        streams.push(res);
    }
    let address = email();
    let register = async {
        // Every reader is waiting by now.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let started = std::time::Instant::now();
        app.register(&address).await;
        started.elapsed()
    };
    let (pages, took) = tokio::join!(polls, register);
    assert!(
        took < Duration::from_secs(3),
        "registration waited {took:?} for a connection"
    );
    for page in pages {
        assert_eq!(page.events.len(), 1);
        assert_eq!(page.events[0].event.data["email"], json!(address));
    }
    for res in streams {
        let got = read_sse(res, 1).await;
        assert_eq!(got[0].2["data"]["email"], json!(address));
    }
}
