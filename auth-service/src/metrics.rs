//! The auth service's own metrics, beside the request and pool metrics
//! every app has (`service_kit::metrics`): sign-ins by outcome, lockouts,
//! introspections, webhook deliveries and the outbox's backlog.

use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge, IntGaugeVec};
use service_kit::metrics::{Metrics, LATENCY_BUCKETS};

use crate::db::jobs::{self, JobKind};
use crate::db::DbPool;

pub struct AuthMetrics {
    pub base: Metrics,
    logins: IntCounterVec,
    lockouts: IntCounter,
    introspections: IntCounterVec,
    deliveries: IntCounterVec,
    delivery_latency: Histogram,
    reset_requests: IntCounterVec,
    outbox: IntGaugeVec,
    feed_requests: IntCounterVec,
    open_streams: IntGauge,
    feed_lag: Histogram,
    nats_publishes: IntCounterVec,
}

/// How a sign-in ended, as the `outcome` label says it.
#[derive(Debug, Clone, Copy)]
pub enum LoginOutcome {
    Success,
    /// Wrong email or password, or a wrong second factor.
    Failure,
    /// Refused by a lockout before any password was checked.
    LockedOut,
    /// An administrator locked the account.
    AccountLocked,
    /// The password was right and a second factor is needed.
    MfaRequired,
}

impl AuthMetrics {
    pub fn new() -> Self {
        let base = Metrics::new();
        Self {
            logins: base.counter_vec(
                "auth_login_attempts_total",
                "Sign-in attempts by outcome: success, failure, locked_out, account_locked, mfa_required",
                &["outcome"],
            ),
            lockouts: base.counter(
                "auth_lockouts_total",
                "Lockouts started by repeated failed sign-ins",
            ),
            introspections: base.counter_vec(
                "auth_introspections_total",
                "Token introspections by token kind (user, service) and answer (active, inactive)",
                &["kind", "active"],
            ),
            deliveries: base.counter_vec(
                "auth_webhook_deliveries_total",
                "Webhook delivery attempts by result: delivered, failed (will retry or gave up)",
                &["result"],
            ),
            delivery_latency: base.histogram(
                "auth_webhook_delivery_latency_seconds",
                "From the change's commit to the receiver's 2xx",
                LATENCY_BUCKETS,
            ),
            reset_requests: base.counter_vec(
                "auth_password_reset_requests_total",
                "Password reset requests by what became of them after the 202: queued (a mail), \
                 spaced (one went there under a minute ago), no_account, failed",
                &["outcome"],
            ),
            outbox: base.gauge_vec(
                "auth_outbox_events",
                "Webhook outbox events by status (pending, failed), read at scrape time",
                &["status"],
            ),
            feed_requests: base.counter_vec(
                "auth_event_feed_requests_total",
                "Event feed requests by mode: page (JSON, maybe long-polled), stream (Server-Sent Events)",
                &["mode"],
            ),
            open_streams: base.gauge(
                "auth_event_feed_open_streams",
                "Server-Sent Event streams open now",
            ),
            feed_lag: base.histogram(
                "auth_event_feed_lag_seconds",
                "From an event's commit to its being served on the feed (a page or a stream)",
                LATENCY_BUCKETS,
            ),
            nats_publishes: base.counter_vec(
                "auth_nats_publishes_total",
                "Events published to NATS JetStream by outcome: published (acknowledged), failed (published again after a delay), lost (pruned before they could be published)",
                &["outcome"],
            ),
            base,
        }
    }

    pub fn nats_publish(&self, acknowledged: bool) {
        let outcome = if acknowledged { "published" } else { "failed" };
        self.nats_publishes.with_label_values(&[outcome]).inc();
    }

    pub fn nats_lost(&self, events: i64) {
        self.nats_publishes
            .with_label_values(&["lost"])
            .inc_by(events.max(0) as u64);
    }

    pub fn feed_request(&self, mode: &'static str) {
        self.feed_requests.with_label_values(&[mode]).inc();
    }

    pub fn stream_opened(&self) {
        self.open_streams.inc();
    }

    pub fn stream_closed(&self) {
        self.open_streams.dec();
    }

    /// Each served event's age: how far behind its commit the feed is.
    pub fn feed_served(&self, events: &[shared_types::FeedEvent]) {
        let now = chrono::Utc::now();
        for e in events {
            let lag = (now - e.event.timestamp).num_microseconds().unwrap_or(0);
            self.feed_lag.observe(lag.max(0) as f64 / 1e6);
        }
    }

    /// What a password reset request came to (`queued`, `spaced`,
    /// `no_account`, `failed`), known only after the 202 went out.
    pub fn reset_request(&self, outcome: &'static str) {
        self.reset_requests.with_label_values(&[outcome]).inc();
    }

    pub fn login(&self, outcome: LoginOutcome) {
        let label = match outcome {
            LoginOutcome::Success => "success",
            LoginOutcome::Failure => "failure",
            LoginOutcome::LockedOut => "locked_out",
            LoginOutcome::AccountLocked => "account_locked",
            LoginOutcome::MfaRequired => "mfa_required",
        };
        self.logins.with_label_values(&[label]).inc();
    }

    pub fn lockout(&self) {
        self.lockouts.inc();
    }

    pub fn introspection(&self, kind: &str, active: bool) {
        let active = if active { "true" } else { "false" };
        self.introspections.with_label_values(&[kind, active]).inc();
    }

    /// One attempt's result; `latency` (since commit) when it was delivered.
    pub fn delivery(&self, latency: Option<std::time::Duration>) {
        match latency {
            Some(d) => {
                self.deliveries.with_label_values(&["delivered"]).inc();
                self.delivery_latency.observe(d.as_secs_f64());
            }
            None => self.deliveries.with_label_values(&["failed"]).inc(),
        }
    }

    /// The exposition, with the outbox backlog read now. A database that
    /// can't be reached leaves the backlog at its last value; the pool
    /// gauges and `/health/ready` say why.
    pub async fn render(&self, db: &DbPool) -> actix_web::HttpResponse {
        if let Ok(mut pooled) = db.get().await {
            if let Ok(stats) = jobs::stats(&mut pooled.conn(), JobKind::Webhook).await {
                self.outbox
                    .with_label_values(&["pending"])
                    .set(stats.pending);
                self.outbox.with_label_values(&["failed"]).set(stats.failed);
            }
        }
        self.base.render(db)
    }
}

impl Default for AuthMetrics {
    fn default() -> Self {
        Self::new()
    }
}
