//! Publishing every event to NATS JetStream (`AUTH_EVENTS_NATS_URL`), for
//! teams that run a message bus.
//!
//! The publisher follows the event feed (`crate::feed`), so events go out
//! in feed order and none is skipped; one replica publishes at a time,
//! under a lease in `event_feed`. A page is published with each event's id
//! as `Nats-Msg-Id` (JetStream drops a duplicate inside its window), the
//! acknowledgements are awaited in order, and the position is stored only
//! up to the last acknowledged event: a failure or a crash publishes the
//! rest again (at least once, deduplicated by the server), after a delay
//! that doubles up to a minute, with jitter, like webhook retries. Pruning
//! waits for the publisher while it is alive; events pruned before it
//! could send them (NATS down for longer than the retention) are counted
//! and logged, never skipped silently.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use secrecy::ExposeSecret;
use tokio::sync::watch;

use crate::configuration::NatsSettings;
use crate::db::{feed as db_feed, DbPool};
use crate::feed::{Cursor, Feed, FeedError};
use crate::metrics::AuthMetrics;

/// Events published per round.
const PAGE: i64 = 200;
/// A publisher renews its lease every round; one that stops is replaced
/// after this.
const LEASE: chrono::Duration = chrono::Duration::seconds(30);
const STANDBY: Duration = Duration::from_secs(5);
/// How long an idle publisher waits on the feed before renewing.
const IDLE: Duration = Duration::from_secs(10);
const FIRST_RETRY: Duration = Duration::from_millis(200);
const LONGEST_RETRY: Duration = Duration::from_secs(60);

pub struct Publisher {
    pub db: DbPool,
    pub feed: Arc<Feed>,
    pub settings: NatsSettings,
    pub metrics: Arc<AuthMetrics>,
    /// This process's lease holder id.
    pub holder: String,
}

enum Round {
    /// Published (or nothing to publish after a wait): go on.
    Done,
    /// Another replica publishes.
    Standby,
}

impl Publisher {
    /// Publishes until `stopped` turns true.
    pub async fn run(self, mut stopped: watch::Receiver<bool>) {
        let mut delay = FIRST_RETRY;
        let mut js = None;
        loop {
            if *stopped.borrow() {
                break;
            }
            let round = match &js {
                Some(js) => self.round(js).await,
                None => self.connect().await.map(|c| {
                    js = Some(c);
                    Round::Done
                }),
            };
            let pause = match round {
                Ok(Round::Done) => {
                    delay = FIRST_RETRY;
                    continue;
                }
                Ok(Round::Standby) => STANDBY,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "publishing events to NATS failed; retrying");
                    let pause = delay.mul_f64(0.5 + rand::random::<f64>() * 0.5);
                    delay = (delay * 2).min(LONGEST_RETRY);
                    pause
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stopped.changed() => {}
            }
        }
        tracing::debug!("NATS publisher stopped");
    }

    /// Connects (the client reconnects by itself afterwards) and makes the
    /// stream when missing.
    async fn connect(&self) -> anyhow::Result<jetstream::Context> {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .request_timeout(Some(Duration::from_secs(10)))
            .retry_on_initial_connect()
            .connect(self.settings.url.expose_secret())
            .await
            .map_err(|e| anyhow::anyhow!("connecting to AUTH_EVENTS_NATS_URL: {e}"))?;
        let js = jetstream::new(client);
        js.get_or_create_stream(jetstream::stream::Config {
            name: self.settings.stream.clone(),
            subjects: vec![self.settings.stream_subjects()],
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow::anyhow!("the JetStream stream {}: {e}", self.settings.stream))?;
        tracing::info!(stream = %self.settings.stream, "publishing events to NATS JetStream");
        Ok(js)
    }

    async fn round(&self, js: &jetstream::Context) -> anyhow::Result<Round> {
        let now = chrono::Utc::now();
        let cursor = {
            let mut pooled = self.db.get().await?;
            let conn = &mut pooled.conn();
            if !db_feed::nats_lease(conn, &self.holder, now, now + LEASE).await? {
                return Ok(Round::Standby);
            }
            match db_feed::nats_cursor(conn).await? {
                Some(c) => Cursor(c),
                // First configured: from now on (not the feed's history).
                None => {
                    let head = self.feed.catch_up().await?;
                    db_feed::set_nats_cursor(conn, &self.holder, head).await?;
                    Cursor(head)
                }
            }
        };
        let page = match self.feed.page(cursor, PAGE).await {
            Ok(page) => page,
            Err(FeedError::CursorExpired { .. }) => return self.skip_pruned(cursor).await,
            Err(FeedError::Fault(e)) => return Err(e.into()),
        };
        if page.events.is_empty() {
            // While the service drains, requests may still commit events:
            // keep publishing, without spinning.
            if !self.feed.wait_past(cursor, IDLE).await && self.feed.draining() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            return Ok(Round::Done);
        }
        // Sent together, acknowledged in order: the position moves to the
        // last event the server confirmed.
        let mut pending = Vec::with_capacity(page.events.len());
        let mut failure = None;
        for event in &page.events {
            let message = jetstream::message::PublishMessage::build()
                .payload(event.payload.clone().into())
                .message_id(event.id.0.to_string());
            match js
                .send_publish(self.settings.subject_for(&event.event_type), message)
                .await
            {
                Ok(ack) => pending.push((event.seq, ack)),
                Err(e) => {
                    failure = Some(anyhow::anyhow!("publish: {e}"));
                    break;
                }
            }
        }
        let mut reached = None;
        for (seq, ack) in pending {
            match ack.await {
                Ok(_) => {
                    self.metrics.nats_publish(true);
                    reached = seq;
                }
                Err(e) => {
                    self.metrics.nats_publish(false);
                    failure.get_or_insert_with(|| anyhow::anyhow!("acknowledgement: {e}"));
                    break;
                }
            }
        }
        if let Some(reached) = reached {
            let mut pooled = self.db.get().await?;
            db_feed::set_nats_cursor(&mut pooled.conn(), &self.holder, reached).await?;
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(Round::Done),
        }
    }

    /// Events after the stored position were pruned before they could be
    /// published: said loudly, counted, and publishing goes on from the
    /// oldest event still kept.
    async fn skip_pruned(&self, cursor: Cursor) -> anyhow::Result<Round> {
        let mut pooled = self.db.get().await?;
        let conn = &mut pooled.conn();
        let pruned = db_feed::pruned_through(conn).await?;
        let lost = pruned - cursor.0;
        tracing::error!(lost, "events were pruned before they were published to NATS (was NATS down for longer than AUTH_EVENTS_RETENTION_DAYS?); reconcile consumers from /internal/v1/users");
        self.metrics.nats_lost(lost);
        db_feed::set_nats_cursor(conn, &self.holder, pruned).await?;
        Ok(Round::Done)
    }
}
