//! The webhook delivery worker: drains the outbox (`db::outbox`) to
//! `AUTH_WEBHOOK_URL`, signed per Standard Webhooks.
//!
//! At least once: an event is marked delivered only after a 2xx, so a crash
//! between sending and marking means one more delivery (the receiver ignores
//! event ids it has applied). A failed attempt is retried after an
//! exponentially growing delay with jitter (`retry_delay`) until the event has
//! been retried for `AUTH_WEBHOOK_GIVE_UP_SECONDS` worth of delays (about a
//! day by default); then it is `failed`, counted in stats and redeliverable.
//!
//! Latency: handlers call `Wakeup::wake` (the `outbox` one) after committing, so a new event goes
//! out at once; otherwise the worker sleeps until the next retry is due, at
//! most `POLL` (which also picks up events written by other replicas whose
//! worker is down).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{watch, Notify};
use uuid::Uuid;

use crate::configuration::WebhookTarget;
use crate::db::outbox::{self, OutboxEvent};
use crate::db::DbPool;

/// Longest idle sleep between looks at the outbox.
const POLL: Duration = Duration::from_secs(1);
/// How long a claim holds an event. A round sends its whole batch at once,
/// so a claim lasts one delivery (at most `TIMEOUT`) plus recording the
/// outcome; the lease is twice that. It is also how long an event claimed
/// by a process that then crashed waits before another sends it again.
const LEASE: Duration = Duration::from_secs(30);
/// Per-delivery HTTP timeout.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Events claimed per round, all sent at once.
const BATCH: i64 = 16;
/// No retry waits longer than this.
const MAX_DELAY: Duration = Duration::from_secs(3600);
/// Delivered events are kept this long, then pruned.
const KEEP_DELIVERED_DAYS: i64 = 7;

/// Wakes a local background sender (this webhook worker, the mail sender);
/// cheap, call after committing what it should send.
#[derive(Clone, Default)]
pub struct Wakeup {
    wake: Arc<Notify>,
}

impl Wakeup {
    pub fn wake(&self) {
        // A stored permit makes the next wait return at once, so a wake-up
        // sent while the sender is busy is not lost.
        self.wake.notify_one();
    }

    pub async fn notified(&self) {
        self.wake.notified().await;
    }
}

/// How long a sender may sleep: until `next` is due, at most `poll`.
pub fn until_due(next: Option<chrono::DateTime<Utc>>, poll: Duration) -> Duration {
    next.map_or(poll, |at| {
        (at - Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO)
            .min(poll)
    })
}

/// Delay before the next attempt after `attempts` failed ones, or `None` to
/// give up. The budget counts nominal delays (without jitter) so the total
/// retry span is predictable: base, 2·base, 4·base, … capped at an hour,
/// until their sum reaches `give_up_after`.
pub fn retry_delay(attempts: i32, base: Duration, give_up_after: Duration) -> Option<Duration> {
    let nominal = |i: i32| {
        let factor = 2u32.saturating_pow(u32::try_from(i).unwrap_or(0).min(31));
        base.saturating_mul(factor).min(MAX_DELAY)
    };
    let spent: Duration = (0..attempts - 1).map(nominal).sum();
    if spent >= give_up_after {
        return None;
    }
    // "Equal jitter": half fixed, half random, so retries of events that
    // failed together spread out but none comes back too early.
    let delay = nominal(attempts - 1);
    let jitter = rand::random::<f64>() * 0.5 + 0.5;
    Some(delay.mul_f64(jitter))
}

pub struct Worker {
    db: DbPool,
    target: WebhookTarget,
    client: reqwest::Client,
    outbox: Wakeup,
    metrics: std::sync::Arc<crate::metrics::AuthMetrics>,
}

impl Worker {
    pub fn new(
        db: DbPool,
        target: WebhookTarget,
        outbox: Wakeup,
        metrics: std::sync::Arc<crate::metrics::AuthMetrics>,
    ) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("auth-service/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            db,
            target,
            client,
            outbox,
            metrics,
        })
    }

    /// Runs until `shutdown` turns true; a round in progress finishes first.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut last_prune = None::<std::time::Instant>;
        loop {
            if *shutdown.borrow() {
                break;
            }
            let wait = match self.round().await {
                // A full batch: more may be due right away.
                Ok(n) if n as i64 == BATCH => continue,
                Ok(_) => self.idle_wait().await,
                Err(e) => {
                    tracing::warn!(error = %e, "webhook delivery round failed; retrying");
                    POLL
                }
            };
            if last_prune.is_none_or(|t| t.elapsed() > Duration::from_secs(600)) {
                last_prune = Some(std::time::Instant::now());
                self.prune().await;
            }
            tokio::select! {
                _ = self.outbox.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
        }
        tracing::debug!("webhook worker stopped");
    }

    /// Until the next pending event is due, at most `POLL`.
    async fn idle_wait(&self) -> Duration {
        let next = match self.db.get().await {
            Ok(mut c) => outbox::next_due(&mut c.conn()).await.ok().flatten(),
            Err(_) => None,
        };
        until_due(next, POLL)
    }

    /// Claims due events and delivers them; returns how many were claimed.
    async fn round(&self) -> anyhow::Result<usize> {
        let events = {
            let mut pooled = self.db.get().await?;
            outbox::claim(
                &mut pooled.conn(),
                BATCH,
                chrono::Duration::from_std(LEASE).unwrap_or_default(),
            )
            .await?
        };
        // Recording an outcome may be retried until shortly before the
        // lease ends; after that the event is another claimer's to send.
        let lease_ends = std::time::Instant::now() + LEASE - TIMEOUT / 2;
        let n = events.len();
        futures::future::join_all(events.into_iter().map(|e| self.deliver(e, lease_ends))).await;
        Ok(n)
    }

    async fn deliver(&self, event: OutboxEvent, lease_ends: std::time::Instant) {
        let outcome = self.send(event.id.0, &event.payload).await;
        self.metrics.delivery(outcome.as_ref().ok().map(|()| {
            (Utc::now() - event.created_at.0)
                .to_std()
                .unwrap_or_default()
        }));
        // The database may be away for a moment (a restart, a failover):
        // keep the outcome rather than send the event again after the lease.
        let mut pause = Duration::from_millis(250);
        loop {
            match self.record(&event, &outcome).await {
                Ok(()) => return,
                Err(e) if std::time::Instant::now() + pause < lease_ends => {
                    tracing::info!(event_id = %event.id.0, error = %e, "could not record delivery outcome; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(4));
                }
                Err(e) => {
                    // The lease runs out and the event is sent again: at least once.
                    tracing::warn!(event_id = %event.id.0, error = %e, "could not record delivery outcome");
                    return;
                }
            }
        }
    }

    async fn record(
        &self,
        event: &OutboxEvent,
        outcome: &Result<(), String>,
    ) -> anyhow::Result<()> {
        let id = event.id.0;
        match self.db.get().await {
            Err(e) => Err(anyhow::Error::from(e)),
            Ok(mut pooled) => {
                let conn = &mut pooled.conn();
                match &outcome {
                    Ok(()) => outbox::mark_delivered(conn, id).await,
                    Err(error) => {
                        let retry = retry_delay(
                            event.attempts,
                            self.target.backoff_base,
                            self.target.give_up_after,
                        );
                        match retry {
                            Some(d) => tracing::info!(event_id = %id, attempts = event.attempts, error = %error, retry_in_ms = d.as_millis() as u64, "webhook delivery failed; will retry"),
                            None => tracing::warn!(event_id = %id, attempts = event.attempts, error = %error, "webhook delivery failed for good; marked failed"),
                        }
                        let at = retry.map(|d| {
                            Utc::now() + chrono::Duration::from_std(d).unwrap_or_default()
                        });
                        outbox::mark_attempt_failed(conn, id, error, at).await
                    }
                }
                .map_err(anyhow::Error::from)
            }
        }
    }

    async fn send(&self, id: Uuid, payload: &str) -> Result<(), String> {
        let msg_id = id.to_string();
        let timestamp = Utc::now().timestamp();
        let signature = self.target.key.sign(&msg_id, timestamp, payload.as_bytes());
        let response = self
            .client
            .post(&self.target.url)
            .header("content-type", "application/json")
            .header("webhook-id", &msg_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(payload.to_owned())
            .send()
            .await
            // Without the URL: it may hold credentials.
            .map_err(|e| e.without_url().to_string())?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("receiver answered {status}"))
        }
    }

    async fn prune(&self) {
        let before = Utc::now() - chrono::Duration::days(KEEP_DELIVERED_DAYS);
        if let Ok(mut c) = self.db.get().await {
            match outbox::prune_delivered(&mut c.conn(), before).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(pruned = n, "old delivered webhook events removed"),
                Err(e) => tracing::warn!(error = %e, "pruning delivered webhook events failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_for_about_a_day_then_gives_up() {
        let base = Duration::from_secs(1);
        let day = Duration::from_secs(24 * 3600);
        let attempts = (1..)
            .find(|&n| retry_delay(n, base, day).is_none())
            .expect("gives up eventually");
        // 1+2+…+2048 s is about 68 min; then hourly until a day is spent.
        assert!((30..=40).contains(&attempts), "gave up after {attempts}");
        let waited: Duration = (1..attempts)
            .map(|n| retry_delay(n, base, day).expect("still retrying"))
            .sum();
        // Jitter takes off at most half of each delay.
        assert!(waited >= day / 2 && waited <= day + MAX_DELAY, "{waited:?}");
    }

    #[test]
    fn delays_grow_and_are_jittered_within_bounds() {
        let base = Duration::from_millis(100);
        let long = Duration::from_secs(1_000_000);
        for n in 1..=10 {
            let nominal = base * 2u32.pow(n as u32 - 1);
            let d = retry_delay(n, base, long).expect("retrying");
            assert!(d >= nominal / 2 && d <= nominal, "attempt {n}: {d:?}");
        }
        let capped = retry_delay(40, base, Duration::MAX).expect("retrying");
        assert!(capped <= MAX_DELAY);
    }
}
