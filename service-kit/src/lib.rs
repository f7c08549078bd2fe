//! What both services share below their own routes, naming none of their
//! variables:
//! - `config`: `Env`, the one reader of environment variables (defaults,
//!   ranges, every error naming its variable), and the settings both
//!   services parse alike (database, CORS);
//! - `db`: one pool and one query style for PostgreSQL and SQLite
//!   (`run!`, `transaction!`), TLS to PostgreSQL, migrations;
//! - `server`: a service's `main`, `serve` (the middleware every app has)
//!   and the background tasks stopped after the last request;
//! - `http`: `Routes` and `route!`, which route a handler where its
//!   `#[utoipa::path]` says and document it (one source for the router and
//!   the OpenAPI document), bearer parsing, the JSON extractor, CORS;
//!   `docs`: what both documents add (security schemes, problem
//!   responses) and Swagger UI;
//! - `invalid`: the errors domain types and operations return (no HTTP in
//!   them); `error`: the error type mapped to RFC 9457 problem details;
//! - `metrics`, `telemetry` (logs with request ids), `crypto` (sealing),
//!   `testing` (a database of its own per test).

#[doc(hidden)]
pub use paste;

pub mod config;
pub mod crypto;
pub mod db;
pub mod docs;
pub mod error;
pub mod http;
pub mod invalid;
pub mod metrics;
pub mod server;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
