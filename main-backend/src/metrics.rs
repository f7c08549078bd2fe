//! The main backend's own metrics, beside the request and pool metrics
//! every app has (`service_kit::metrics`): calls to the auth service's
//! introspection, the token cache in front of it, and reconciliation.

use std::sync::OnceLock;

use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge};
use service_kit::metrics::Metrics;

pub struct MainMetrics {
    pub base: Metrics,
    introspections: IntCounterVec,
    cache: IntCounterVec,
    cache_results: OnceLock<[IntCounter; 2]>,
    evictions: IntCounterVec,
    reconcile_runs: IntCounterVec,
    reconcile_seconds: Histogram,
    reconcile_drift: IntCounterVec,
    last_drift: IntGauge,
    auth_owned_attempts: IntCounterVec,
    revocation_polls: IntCounterVec,
    stream_polls: IntCounterVec,
    stream_events: IntCounterVec,
    stream_lag: Histogram,
}

impl MainMetrics {
    pub fn new() -> Self {
        let base = Metrics::new();
        Self {
            introspections: base.counter_vec(
                "main_introspections_total",
                "Calls to the auth service's introspection by result: active, inactive, error",
                &["result"],
            ),
            cache: base.counter_vec(
                "main_token_cache_requests_total",
                "User-token validations by cache result: hit, miss (a miss calls the auth service)",
                &["result"],
            ),
            cache_results: OnceLock::new(),
            evictions: base.counter_vec(
                "main_token_cache_evictions_total",
                "Entries leaving the token cache by cause: expired, explicit (revocation), replaced, size",
                &["cause"],
            ),
            reconcile_runs: base.counter_vec(
                "main_reconcile_runs_total",
                "Reconciliations by status: ok, failed",
                &["status"],
            ),
            reconcile_seconds: base.histogram(
                "main_reconcile_duration_seconds",
                "Time one reconciliation took",
                &[0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0],
            ),
            reconcile_drift: base.counter_vec(
                "main_reconcile_drift_total",
                "Mirror rows reconciliation fixed, by kind: created, updated, deleted, rewound (versions that went backwards: a restored auth database)",
                &["kind"],
            ),
            last_drift: base.gauge(
                "main_reconcile_last_drift",
                "Mirror rows the last successful reconciliation had to fix (created + updated + deleted)",
            ),
            auth_owned_attempts: base.counter_vec(
                "main_auth_owned_field_attempts_total",
                "PATCH /v1/me requests refused for naming an auth-owned field, by field (its canonical name)",
                &["field"],
            ),
            revocation_polls: base.counter_vec(
                "main_revocation_polls_total",
                "Reads of the shared revocation feed by outcome: ok, failed (a replica that stops reading keeps revoked tokens cached)",
                &["outcome"],
            ),
            stream_polls: base.counter_vec(
                "main_stream_polls_total",
                "Reads of the auth service's event feed (SYNC_TRANSPORT=stream|both) by outcome: ok, expired (410: reconciled, restarted from the head), failed, standby (another replica follows)",
                &["outcome"],
            ),
            stream_events: base.counter_vec(
                "main_stream_events_total",
                "Feed events by outcome: applied (or found applied), malformed (skipped and logged; reconciliation repairs the user)",
                &["outcome"],
            ),
            stream_lag: base.histogram(
                "main_stream_lag_seconds",
                "From an event's commit in the auth service to its being applied here from the feed",
                service_kit::metrics::LATENCY_BUCKETS,
            ),
            base,
        }
    }

    pub fn stream_poll(&self, outcome: &'static str) {
        self.stream_polls.with_label_values(&[outcome]).inc();
    }

    /// One feed event handled; `lag` since its commit when it applied.
    pub fn stream_event(&self, lag: Option<f64>) {
        match lag {
            Some(seconds) => {
                self.stream_events.with_label_values(&["applied"]).inc();
                self.stream_lag.observe(seconds.max(0.0));
            }
            None => self.stream_events.with_label_values(&["malformed"]).inc(),
        }
    }

    pub fn revocation_poll(&self, ok: bool) {
        let outcome = if ok { "ok" } else { "failed" };
        self.revocation_polls.with_label_values(&[outcome]).inc();
    }

    /// Mirror rows moved back to older versions (a restored auth database).
    pub fn rewound(&self, rows: i64) {
        self.reconcile_drift
            .with_label_values(&["rewound"])
            .inc_by(u64::try_from(rows).unwrap_or(0));
    }

    /// `field` is one of `domain::profile::AUTH_OWNED`'s names: a fixed set.
    pub fn auth_owned_attempt(&self, field: &'static str) {
        self.auth_owned_attempts.with_label_values(&[field]).inc();
    }

    pub fn introspection(&self, result: &str) {
        self.introspections.with_label_values(&[result]).inc();
    }

    pub fn cache(&self, hit: bool) {
        // Resolved once: this runs on every authenticated request, and a
        // label lookup hashes and locks each time.
        let [hits, misses] = self
            .cache_results
            .get_or_init(|| ["hit", "miss"].map(|result| self.cache.with_label_values(&[result])));
        if hit { hits } else { misses }.inc();
    }

    pub fn eviction(&self, cause: moka::notification::RemovalCause) {
        use moka::notification::RemovalCause;
        let cause = match cause {
            RemovalCause::Expired => "expired",
            RemovalCause::Explicit => "explicit",
            RemovalCause::Replaced => "replaced",
            RemovalCause::Size => "size",
        };
        self.evictions.with_label_values(&[cause]).inc();
    }

    pub fn reconciled(&self, report: Option<&shared_types::SyncReport>, seconds: f64) {
        self.reconcile_seconds.observe(seconds);
        let Some(r) = report else {
            self.reconcile_runs.with_label_values(&["failed"]).inc();
            return;
        };
        self.reconcile_runs.with_label_values(&["ok"]).inc();
        for (kind, n) in [
            ("created", r.created),
            ("updated", r.updated),
            ("deleted", r.deleted),
        ] {
            self.reconcile_drift
                .with_label_values(&[kind])
                .inc_by(u64::try_from(n).unwrap_or(0));
        }
        self.last_drift.set(r.created + r.updated + r.deleted);
    }
}

impl Default for MainMetrics {
    fn default() -> Self {
        Self::new()
    }
}
