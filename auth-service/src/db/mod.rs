//! The auth service's tables and queries. The generic layer (pool, `Conn`,
//! `run!`, `transaction!`, SQL types, migrations) is `service_kit::db`,
//! shared with the main backend.

pub mod schema;

pub mod events;
pub mod feed;
pub mod identities;
pub mod jobs;
pub mod lockouts;
pub mod mail;
pub mod mfa;
pub mod one_time_tokens;
pub mod outbox;
pub mod passkeys;
pub mod service_tokens;

pub mod sessions;
pub mod users;

pub use service_kit::db::*;
