//! Publishing to NATS JetStream against a real `nats-server -js`: 500
//! events written while the server is restarted once reach a JetStream
//! consumer exactly once each. Skipped (loudly) when `nats-server` is not
//! installed, unless REQUIRE_NATS=1 (CI sets it).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use auth_service::db::{feed, outbox, DbPool};
use futures::StreamExt;
use serde_json::json;
use service_kit::transaction;
use shared_types::EventType;

use crate::helpers::spawn_app_with;

struct NatsServer {
    port: u16,
    dir: PathBuf,
    child: std::process::Child,
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Debian puts it in /usr/sbin, which a user's PATH may lack.
fn binary() -> &'static str {
    let on_path = std::process::Command::new("nats-server")
        .arg("--version")
        .output()
        .is_ok();
    if on_path {
        "nats-server"
    } else {
        "/usr/sbin/nats-server"
    }
}

fn installed() -> bool {
    let found = std::process::Command::new(binary())
        .arg("--version")
        .output()
        .is_ok();
    if !found {
        assert!(
            std::env::var("REQUIRE_NATS").as_deref() != Ok("1"),
            "REQUIRE_NATS=1 but `nats-server` is not installed"
        );
        eprintln!("SKIPPED: nats-server is not installed (apt-get install nats-server)");
    }
    found
}

impl NatsServer {
    async fn start(port: u16, dir: &Path) -> Self {
        let child = std::process::Command::new(binary())
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nats-server starts");
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self {
            port,
            dir: dir.to_owned(),
            child,
        }
    }

    async fn restart(&mut self) {
        self.child.kill().expect("killed");
        self.child.wait().expect("exited");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (port, dir) = (self.port, self.dir.clone());
        *self = Self::start(port, &dir).await;
    }
}

#[tokio::test]
async fn every_event_reaches_jetstream_once_across_a_server_restart() {
    if !installed() {
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let dir = std::env::temp_dir().join(format!("nats-{}", uuid::Uuid::new_v4().simple()));
    let mut server = NatsServer::start(port, &dir).await;
    let url = format!("nats://127.0.0.1:{port}");
    let app = spawn_app_with(&[("AUTH_EVENTS_NATS_URL", &url)]).await;
    let db = DbPool::connect(&app.database_url, 12).await.expect("pool");
    // The publisher starts from the head it finds: wait until it has one.
    for _ in 0..200 {
        let started = feed::nats_cursor(&mut db.get().await.expect("conn").conn())
            .await
            .expect("read");
        if started.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    const WRITERS: usize = 10;
    const EACH: usize = 50;
    let write = |w: usize, from: usize, to: usize| {
        let db = db.clone();
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in from..to {
                let mut pooled = db.get().await.expect("conn");
                let conn = &mut pooled.conn();
                let id = transaction!(conn, |tx| -> diesel::result::Error {
                    outbox::enqueue(tx, EventType::UserUpdated, json!({"writer": w, "i": i})).await
                })
                .expect("write");
                ids.push(id);
            }
            ids
        })
    };
    // Half before the restart, half while the server is away and after.
    let mut written = HashSet::new();
    for ids in futures::future::join_all((0..WRITERS).map(|w| write(w, 0, EACH / 2))).await {
        written.extend(ids.expect("writer"));
    }
    let restart = server.restart();
    let rest = futures::future::join_all((0..WRITERS).map(|w| write(w, EACH / 2, EACH)));
    let ((), rest) = tokio::join!(restart, rest);
    for ids in rest {
        written.extend(ids.expect("writer"));
    }
    assert_eq!(written.len(), WRITERS * EACH);

    // A JetStream consumer of the stream gets each event once.
    let client = async_nats::connect(&url).await.expect("connect");
    let js = jetstream::new(client);
    let stream = js.get_stream("AUTH_EVENTS").await.expect("stream");
    let consumer: consumer::PullConsumer = stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some("test".into()),
            ..Default::default()
        })
        .await
        .expect("consumer");
    let mut received = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while received.len() < written.len() && tokio::time::Instant::now() < deadline {
        let mut batch = consumer
            .fetch()
            .max_messages(100)
            .expires(Duration::from_secs(1))
            .messages()
            .await
            .expect("fetch");
        while let Some(message) = batch.next().await {
            let message = message.expect("message");
            let id = message
                .headers
                .as_ref()
                .and_then(|h| h.get("Nats-Msg-Id"))
                .map(|v| v.to_string())
                .expect("Nats-Msg-Id");
            assert!(message
                .subject
                .as_str()
                .starts_with("auth.events.user.updated"));
            received.push(id.parse::<uuid::Uuid>().expect("an event id"));
            message.ack().await.expect("ack");
        }
    }
    // Nothing more arrives after the last one.
    let mut extra = consumer
        .fetch()
        .max_messages(10)
        .expires(Duration::from_millis(500))
        .messages()
        .await
        .expect("fetch");
    assert!(extra.next().await.is_none(), "a message beyond the 500");
    let unique: HashSet<_> = received.iter().copied().collect();
    assert_eq!(unique.len(), received.len(), "an event arrived twice");
    assert_eq!(unique, written);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
