//! The main backend's tables and queries. The generic layer (pool, `Conn`,
//! `run!`, `transaction!`, SQL types, migrations) is `service-kit`'s `db`.
//!
//! Auth-owned columns of `userbase` are written only by `mirror` (the sync
//! path); nothing else in this crate updates them.

pub mod schema;

pub mod leases;
pub mod mirror;
pub mod revocations;
pub mod sync_runs;
pub mod webhooks;

pub use service_kit::db::*;
