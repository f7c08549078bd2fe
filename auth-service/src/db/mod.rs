//! The auth service's tables and queries. The generic layer (pool, `Conn`,
//! `run!`, `transaction!`, SQL types, migrations) is the `db-core` crate,
//! shared with the main backend.

pub mod schema;

pub mod events;
pub mod outbox;
pub mod service_tokens;

pub mod sessions;
pub mod users;

pub use service_kit::db::*;
