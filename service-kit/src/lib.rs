//! What both services share below their own routes: configuration
//! helpers (`config`: settings both parse alike, the database's among
//! them), the database layer
//! (`db`: one pool and one query style for PostgreSQL and SQLite), the
//! errors domain types and operations return (`invalid`: no HTTP in them),
//! the error type mapped to RFC 9457 problem details (`error`), bearer
//! parsing (`http`) and logging with request ids (`telemetry`).

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
