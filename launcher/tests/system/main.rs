//! Tests of the whole system: the real binaries (`target/<profile>/auth-service`
//! and `main-backend`, built by `cargo test --workspace`) started as
//! processes. One binary, run one test at a time (`stack::SERIAL`).
//!
//! - `faults`: processes killed and frozen, SQLite under concurrent writers;
//!   `replicas`: the PostgreSQL server restarted under load, two replicas of
//!   each service on one database.
//! - `browser`: the web app in headless Chromium (WebDriver).
//! - `alerts`: the Prometheus rules and Grafana dashboard against a live /metrics.
//! - `roles`: each service as its own PostgreSQL role (deploy/postgres/roles.sql).

// A failed unwrap here is a failed test, with its line number.
#![allow(clippy::unwrap_used)]

mod alerts;
mod browser;
mod faults;
mod replicas;
mod roles;
mod stack;
