//! Prometheus metrics (`GET /metrics`, text format 0.0.4).
//!
//! One registry per application, not the process-global one: tests run many
//! applications in one process, and each must count only its own requests.
//! Every app gets request counts and latency by route pattern and status
//! (the pattern, `/v1/users/{id}`, not the path, so ids don't become
//! labels; unknown paths share `unmatched`) and database pool usage; each
//! service registers its own counters beside them. Counters are per process:
//! with replicas, sum them in Prometheus.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::db::DbPool;

/// Latency buckets in seconds: from half a millisecond (a cached answer)
/// to ten seconds (a timeout).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// An application's registry with the metrics every app has.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    pool: IntGaugeVec,
}

// Registration fails only for a duplicate or malformed name: a programming
// error caught by every test that builds an app.
#[allow(clippy::expect_used)]
fn registered<T: prometheus::core::Collector + Clone + 'static>(registry: &Registry, c: T) -> T {
    registry
        .register(Box::new(c.clone()))
        .expect("metric names are unique and well formed");
    c
}

#[allow(clippy::expect_used)]
impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = registered(
            &registry,
            IntCounterVec::new(
                Opts::new("http_requests_total", "HTTP requests served"),
                &["method", "route", "status"],
            )
            .expect("valid metric"),
        );
        let latency = registered(
            &registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "http_request_duration_seconds",
                    "Time to serve an HTTP request",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["method", "route", "status"],
            )
            .expect("valid metric"),
        );
        let pool = registered(
            &registry,
            IntGaugeVec::new(
                Opts::new(
                    "db_pool_connections",
                    "Database pool connections: max (configured), open, in_use, idle",
                ),
                &["state"],
            )
            .expect("valid metric"),
        );
        Self {
            registry,
            requests,
            latency,
            pool,
        }
    }

    pub fn counter(&self, name: &str, help: &str) -> IntCounter {
        registered(
            &self.registry,
            IntCounter::new(name, help).expect("valid metric"),
        )
    }

    pub fn counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        registered(
            &self.registry,
            IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
        )
    }

    pub fn gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        registered(
            &self.registry,
            IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"),
        )
    }

    pub fn gauge(&self, name: &str, help: &str) -> IntGauge {
        registered(
            &self.registry,
            IntGauge::new(name, help).expect("valid metric"),
        )
    }

    pub fn histogram(&self, name: &str, help: &str, buckets: &[f64]) -> Histogram {
        registered(
            &self.registry,
            Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
                .expect("valid metric"),
        )
    }

    /// The text exposition, after reading the pool's current usage.
    pub fn render(&self, db: &DbPool) -> HttpResponse {
        let usage = db.usage();
        for (state, value) in [
            ("max", usage.max),
            ("open", usage.open),
            ("in_use", usage.open.saturating_sub(usage.idle)),
            ("idle", usage.idle),
        ] {
            self.pool.with_label_values(&[state]).set(i64::from(value));
        }
        let mut out = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "metrics encoding failed");
        }
        HttpResponse::Ok()
            .content_type(encoder.format_type())
            .body(out)
    }

    fn observe(&self, method: &str, route: &str, status: &str, seconds: f64) {
        let labels = [method, route, status];
        self.requests.with_label_values(&labels).inc();
        self.latency.with_label_values(&labels).observe(seconds);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The `method` label: the standard methods by name, anything else
/// (HTTP allows any token as an extension method) as `OTHER`. Every label
/// value must come from a fixed set: one taken from the request would let
/// anyone grow the series, and so memory and `/metrics`, without limit.
/// The other labels are bounded already: `route` is a pattern from the
/// app's route table or `unmatched`, `status` one the app itself answered.
pub fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    const KNOWN: [(Method, &str); 9] = [
        (Method::GET, "GET"),
        (Method::HEAD, "HEAD"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::PATCH, "PATCH"),
        (Method::DELETE, "DELETE"),
        (Method::OPTIONS, "OPTIONS"),
        (Method::CONNECT, "CONNECT"),
        (Method::TRACE, "TRACE"),
    ];
    KNOWN
        .iter()
        .find(|(m, _)| m == method)
        .map_or("OTHER", |(_, name)| name)
}

/// Middleware: counts and times every request by route pattern and status.
/// Needs the app's `web::Data<Metrics>`; without it, it only passes through.
pub async fn observe_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let Some(metrics) = req.app_data::<web::Data<Metrics>>().cloned() else {
        return next.call(req).await;
    };
    // Resolved from the path against the app's routes, so it is known
    // before routing, and also for an error a middleware returns.
    let route = req.match_pattern();
    let method = req.method().clone();
    let started = Instant::now();
    let res = next.call(req).await;
    let status = match &res {
        Ok(r) => r.status(),
        // An error a middleware (the rate limiter) returned instead of a response.
        Err(e) => e.as_response_error().status_code(),
    };
    metrics.observe(
        method_label(&method),
        route.as_deref().unwrap_or("unmatched"),
        status.as_str(),
        started.elapsed().as_secs_f64(),
    );
    res
}
