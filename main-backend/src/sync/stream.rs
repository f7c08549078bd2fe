//! `SYNC_TRANSPORT=stream|both`: following the auth service's event feed
//! (`GET /internal/v1/events`), for deployments where the auth service
//! cannot reach this one.
//!
//! One replica follows at a time, under the lease `event-stream`; the
//! others stand by and take over when it lapses. The follower long-polls a
//! page, applies each event through the webhook path (`apply_event`:
//! idempotent by event id, version-guarded), then stores the page's
//! `next_cursor` (`db::event_stream`): a restart, here or at the auth
//! service, resumes from there, and an event applied twice changes
//! nothing. A cursor the feed no longer has (410: pruned, or a restored
//! database) is answered by reconciling and starting again from the head
//! read before it, so nothing in between is missed.

use std::sync::Arc;
use std::time::Duration;

use shared_types::FeedEvent;

use super::reconcile::{ReconcileError, Reconciler};
use super::{apply_event, SyncError};
use crate::auth_client::{AuthClient, FeedRead};
use crate::db::{event_stream, leases, DbPool};
use crate::metrics::MainMetrics;
use crate::validation::Validator;

const LEASE: &str = "event-stream";
/// A follower renews its lease every round (a long-poll at most `WAIT`
/// plus a page's work); one that stops is replaced after this.
const LEASE_TTL: chrono::Duration = chrono::Duration::seconds(30);
/// How long one read waits for an event at the auth service.
const WAIT: Duration = Duration::from_secs(10);
const PAGE: u32 = 500;
/// How often a standby replica checks whether the lease lapsed.
const STANDBY: Duration = Duration::from_secs(5);

pub struct Follower {
    pub db: DbPool,
    pub auth: AuthClient,
    pub validator: Arc<Validator>,
    pub metrics: Arc<MainMetrics>,
    /// This process's lease holder id.
    pub instance: String,
    pub max_deletes: Option<i64>,
}

enum Step {
    /// A page was read and applied (or the cursor recovered): read again.
    Read,
    /// Another replica follows.
    Standby,
    /// Shutting down.
    Stopped,
}

impl Follower {
    /// Follows until `stop` turns true.
    pub async fn run(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut backoff = Duration::from_secs(1);
        loop {
            if *stop.borrow() {
                break;
            }
            let pause = match self.step(&mut stop).await {
                Ok(Step::Stopped) => break,
                Ok(Step::Read) => {
                    backoff = Duration::from_secs(1);
                    continue;
                }
                Ok(Step::Standby) => {
                    self.metrics.stream_poll("standby");
                    STANDBY
                }
                Err(e) => {
                    self.metrics.stream_poll("failed");
                    tracing::warn!(error = %e, "following the event feed failed; retrying");
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    backoff / 2
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stop.changed() => break,
            }
        }
        // Hand over at once rather than after the lease lapses.
        if let Ok(mut pooled) = self.db.get().await {
            let _ = leases::release(&mut pooled.conn(), LEASE, &self.instance).await;
        }
    }

    /// One round. Only the wait for the auth service's answer gives way to
    /// `stop`; applying a page is never cut off halfway.
    async fn step(&self, stop: &mut tokio::sync::watch::Receiver<bool>) -> anyhow::Result<Step> {
        let cursor = {
            let mut pooled = self.db.get().await?;
            let conn = &mut pooled.conn();
            if !leases::acquire(conn, LEASE, &self.instance, LEASE_TTL).await? {
                return Ok(Step::Standby);
            }
            // A first start begins at the head: what came before is the
            // reconciliation's, which runs at start.
            event_stream::get(conn)
                .await?
                .cursor
                .unwrap_or_else(|| "now".into())
        };
        // No connection is held while the read waits.
        let read = tokio::select! {
            read = self.auth.events(&cursor, PAGE, WAIT) => read?,
            _ = stop.changed() => return Ok(Step::Stopped),
        };
        match read {
            FeedRead::Page(page) => {
                for event in &page.events {
                    self.apply(event).await?;
                }
                let mut pooled = self.db.get().await?;
                event_stream::advance(
                    &mut pooled.conn(),
                    &page.next_cursor,
                    page.events.last().map(|e| e.event.timestamp),
                    page.events.len() == PAGE as usize,
                )
                .await?;
                self.metrics.stream_poll("ok");
                Ok(Step::Read)
            }
            FeedRead::Expired => {
                self.metrics.stream_poll("expired");
                self.recover().await?;
                Ok(Step::Read)
            }
        }
    }

    async fn apply(&self, event: &FeedEvent) -> Result<(), SyncError> {
        match apply_event(
            &self.db,
            &self.validator,
            &event.id.to_string(),
            &event.event,
        )
        .await
        {
            Ok(()) => {
                let lag = (crate::db::now() - event.event.timestamp).num_milliseconds();
                self.metrics.stream_event(Some(lag as f64 / 1000.0));
                Ok(())
            }
            // One bad event must not stop the stream for good: it is
            // logged and skipped; reconciliation repairs its user.
            Err(SyncError::Malformed(e)) => {
                tracing::error!(event_id = %event.id, error = %e, "a feed event does not parse; skipped");
                self.metrics.stream_event(None);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// The cursor expired: reads the head, reconciles, then resumes from
    /// that head. An event after the head is read next; one before it is
    /// in what the reconciliation fetched.
    async fn recover(&self) -> anyhow::Result<()> {
        let head = match self.auth.events("now", 1, Duration::ZERO).await? {
            FeedRead::Page(page) => page.next_cursor,
            FeedRead::Expired => anyhow::bail!("the feed refused after=now"),
        };
        tracing::warn!(
            "the event feed no longer has our cursor: reconciling, then following from the head"
        );
        let reconciler = Reconciler {
            db: &self.db,
            auth: &self.auth,
            validator: &self.validator,
            metrics: &self.metrics,
            instance: &self.instance,
            max_deletes: self.max_deletes,
            allow_mass_delete: false,
        };
        loop {
            match reconciler.run("stream_expired").await {
                // A refused mass removal waits for an operator (and says
                // so in /health/sync); the stream goes on meanwhile.
                Ok(_) | Err(ReconcileError::MassDeleteRefused { .. }) => break,
                Err(ReconcileError::Busy) => tokio::time::sleep(Duration::from_secs(1)).await,
                Err(e) => anyhow::bail!("reconciliation after an expired cursor failed: {e}"),
            }
        }
        let mut pooled = self.db.get().await?;
        event_stream::advance(&mut pooled.conn(), &head, None, false).await?;
        Ok(())
    }
}
