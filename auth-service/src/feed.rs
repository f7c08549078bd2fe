//! The event feed (`GET /internal/v1/events`): the outbox's events in
//! commit order, for consumers the auth service cannot reach by webhook.
//!
//! [`Feed::run`] is the sequencer: woken after every commit that wrote an
//! event (the same [`Wakeup`] as the webhook runner) and every
//! [`POLL`] for events other replicas wrote, it stamps feed positions on
//! committed events (`db::feed::stamp`, which says why the feed has no
//! gaps) and publishes the head. Readers wait on the head in memory,
//! holding no database connection, and read pages from the database; a
//! read first stamps anything committed but not stamped yet, so a reader
//! sees its own writes at once. Every [`PRUNE_EVERY`] it prunes events
//! older than `AUTH_EVENTS_RETENTION_DAYS`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::db::feed::{self, FeedEvent};
use crate::db::DbPool;
use crate::jobs::Wakeup;
use crate::services::Fault;

/// How often a replica looks for events other replicas wrote: the
/// longest a waiting reader here lags behind a commit there.
pub const POLL: Duration = Duration::from_millis(200);
const PRUNE_EVERY: Duration = Duration::from_secs(600);

pub struct Feed {
    db: DbPool,
    head: watch::Sender<i64>,
    wakeup: Wakeup,
    retention: chrono::Duration,
    /// True once the service is shutting down: waiting readers answer.
    draining: watch::Receiver<bool>,
}

/// A position in the feed, as consumers see it: opaque, and ordered only
/// by the feed. Today the decimal position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor(pub i64);

impl Cursor {
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok().map(Self)
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Where a reader asked to start.
#[derive(Debug, Clone, Copy)]
pub enum Start {
    /// The oldest kept event.
    Oldest,
    /// The newest: only events from now on.
    Now,
    After(Cursor),
}

/// Why a page cannot be served from where the reader is.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("events after this cursor were pruned (kept {retention_days} days), or the cursor is ahead of the feed (a restored database?): reconcile, then start again from after=now")]
    CursorExpired { retention_days: i64 },
    #[error(transparent)]
    Fault(#[from] Fault),
}

impl From<diesel::result::Error> for FeedError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Fault(e.into())
    }
}

impl From<service_kit::db::PoolError> for FeedError {
    fn from(e: service_kit::db::PoolError) -> Self {
        Self::Fault(e.into())
    }
}

/// One page: its events and where the next read starts.
pub struct Page {
    pub events: Vec<FeedEvent>,
    pub next: Cursor,
}

impl Feed {
    pub fn new(db: DbPool, retention_days: i64, draining: watch::Receiver<bool>) -> Self {
        Self {
            db,
            head: watch::Sender::new(0),
            wakeup: Wakeup::default(),
            retention: chrono::Duration::days(retention_days),
            draining,
        }
    }

    /// True once the service is shutting down.
    pub fn draining(&self) -> bool {
        *self.draining.borrow()
    }

    /// Wake it after committing an event.
    pub fn wakeup(&self) -> Wakeup {
        self.wakeup.clone()
    }

    /// The head as last published (what waiting readers compare with).
    pub fn published_head(&self) -> i64 {
        *self.head.borrow()
    }

    /// Stamps what has committed since the last look and publishes the
    /// head; answers it.
    pub async fn catch_up(&self) -> Result<i64, Fault> {
        let mut pooled = self.db.get().await?;
        let conn = &mut pooled.conn();
        if feed::has_unstamped(conn).await? {
            feed::stamp(conn).await?;
        }
        let head = feed::head(conn).await?;
        self.head.send_if_modified(|h| {
            let moved = head > *h;
            if moved {
                *h = head;
            }
            moved
        });
        Ok(head)
    }

    /// The sequencer, until `stopped` turns true.
    pub async fn run(self: Arc<Self>, mut stopped: watch::Receiver<bool>) {
        let mut last_prune = None::<Instant>;
        loop {
            if *stopped.borrow() {
                break;
            }
            if let Err(e) = self.catch_up().await {
                tracing::warn!(error = %e, "event feed: stamping failed; retrying");
            }
            if last_prune.is_none_or(|t| t.elapsed() > PRUNE_EVERY) {
                last_prune = Some(Instant::now());
                self.prune().await;
            }
            tokio::select! {
                _ = self.wakeup.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
                _ = stopped.changed() => {}
            }
        }
        tracing::debug!("event feed sequencer stopped");
    }

    async fn prune(&self) {
        let before = chrono::Utc::now() - self.retention;
        let pruned = match self.db.get().await {
            Ok(mut pooled) => feed::prune(&mut pooled.conn(), before).await,
            Err(e) => {
                tracing::warn!(error = %e, "event feed: pruning skipped");
                return;
            }
        };
        match pruned {
            Ok(0) => {}
            Ok(n) => tracing::info!(pruned = n, "event feed: old events pruned"),
            Err(e) => tracing::warn!(error = %e, "event feed: pruning failed"),
        }
    }

    /// Waits, holding no connection, until the head passes `after`, `wait`
    /// ends or the service shuts down; true when it passed.
    pub async fn wait_past(&self, after: Cursor, wait: Duration) -> bool {
        let mut head = self.head.subscribe();
        let mut draining = self.draining.clone();
        tokio::select! {
            passed = tokio::time::timeout(wait, head.wait_for(|h| *h > after.0)) => {
                passed.is_ok_and(|r| r.is_ok())
            }
            () = async {
                // A dropped sender (no server around) never drains.
                if draining.wait_for(|d| *d).await.is_err() {
                    std::future::pending::<()>().await;
                }
            } => false,
        }
    }

    /// Where `start` is: the cursor to read after. Refuses a cursor below
    /// what was pruned, or beyond the head (events would be skipped).
    pub async fn resolve(&self, start: Start) -> Result<Cursor, FeedError> {
        let head = self.catch_up().await?;
        let mut pooled = self.db.get().await?;
        let pruned = feed::pruned_through(&mut pooled.conn()).await?;
        match start {
            Start::Now => Ok(Cursor(head)),
            Start::Oldest => Ok(Cursor(pruned)),
            Start::After(c) if c.0 < pruned || c.0 > head => Err(FeedError::CursorExpired {
                retention_days: self.retention.num_days(),
            }),
            Start::After(c) => Ok(c),
        }
    }

    /// Up to `limit` events after `after`. Pruning may have passed the
    /// reader while it waited: then the cursor has expired.
    pub async fn page(&self, after: Cursor, limit: i64) -> Result<Page, FeedError> {
        if self.published_head() <= after.0 {
            self.catch_up().await?;
        }
        let mut pooled = self.db.get().await?;
        let conn = &mut pooled.conn();
        let events = feed::page(conn, after.0, limit).await?;
        if feed::pruned_through(conn).await? > after.0 {
            return Err(FeedError::CursorExpired {
                retention_days: self.retention.num_days(),
            });
        }
        let next = events.last().and_then(|e| e.seq).map_or(after, Cursor);
        Ok(Page { events, next })
    }
}
