//! Webhook delivery: the `webhook` jobs (`db::jobs`) of the outbox
//! (`db::outbox`), sent to `AUTH_WEBHOOK_URL`, signed per Standard Webhooks.
//!
//! At least once: a job is done only after a 2xx, so a crash between sending
//! and recording means one more delivery (the receiver ignores event ids it
//! has applied). Failed attempts are retried by the job runner
//! (`crate::jobs`) from `AUTH_WEBHOOK_BACKOFF_MS` until
//! `AUTH_WEBHOOK_GIVE_UP_SECONDS` worth of delays (about a day by default);
//! then the job is `failed`, counted in stats and redeliverable.
//!
//! Latency: handlers wake the runner after committing, so a new event goes
//! out at once.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use uuid::Uuid;

use crate::configuration::WebhookTarget;
use crate::db::jobs::{Claimed, JobKind, Status};
use crate::db::{outbox, DbPool};
use crate::jobs::{Failure, Job};
use crate::metrics::AuthMetrics;

/// Per-delivery HTTP timeout.
const TIMEOUT: Duration = Duration::from_secs(10);

pub struct Delivery {
    db: DbPool,
    target: WebhookTarget,
    client: reqwest::Client,
    metrics: Arc<AuthMetrics>,
}

impl Delivery {
    pub fn new(
        db: DbPool,
        target: WebhookTarget,
        metrics: Arc<AuthMetrics>,
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
            metrics,
        })
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
}

impl Job for Delivery {
    const KIND: JobKind = JobKind::Webhook;
    const BATCH: i64 = 16;
    // A round sends its whole batch at once, so a claim lasts one delivery
    // (at most `TIMEOUT`) plus recording the outcome.
    const LEASE: Duration = Duration::from_secs(30);
    const POLL: Duration = Duration::from_secs(1);
    // Failed deliveries stay until redelivered.
    const PRUNED: &'static [Status] = &[Status::Done];

    fn backoff(&self) -> (Duration, Duration) {
        (self.target.backoff_base, self.target.give_up_after)
    }

    async fn run(&self, job: &Claimed) -> Result<(), Failure> {
        let id = job.id.0;
        let payload = {
            let mut pooled = self
                .db
                .get()
                .await
                .map_err(|e| Failure::retry(e.to_string()))?;
            outbox::payload(&mut pooled.conn(), id)
                .await
                .map_err(|e| Failure::retry(e.to_string()))?
        };
        let Some(payload) = payload else {
            return Err(Failure::permanent("the event is no longer in the outbox"));
        };
        let outcome = self.send(id, &payload).await;
        self.metrics.delivery(
            outcome
                .is_ok()
                .then(|| (Utc::now() - job.created_at.0).to_std().unwrap_or_default()),
        );
        outcome.map_err(Failure::retry)
    }
}
