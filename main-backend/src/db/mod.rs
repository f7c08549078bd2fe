//! The main backend's tables and queries. The generic layer (pool, `Conn`,
//! `run!`, `transaction!`, SQL types, migrations) is `service-kit`'s `db`.
//!
//! Auth-owned columns of `userbase` are written only by `mirror` (the sync
//! path); nothing else in this crate updates them.

pub mod schema;

/// A keyset page of one owned table (`user_id`, UUIDv7 `id`), newest first,
/// with one row beyond the limit so the caller can tell whether more exist.
/// A macro because diesel's boxed queries are typed per table.
macro_rules! owned_page {
    ($conn:expr, $table:ident, $row:ty, $user_id:expr, $req:expr) => {{
        let (user_id, req): (uuid::Uuid, crate::domain::business::PageRequest) = ($user_id, $req);
        service_kit::run!($conn, |c| {
            let mut q = $table::table
                .filter($table::user_id.eq(DbUuid(user_id)))
                .select(<$row>::as_select())
                .order($table::id.desc())
                .limit(req.limit + 1)
                .into_boxed();
            if let Some(before) = req.before {
                q = q.filter($table::id.lt(DbUuid(before)));
            }
            q.load(c).await
        })
    }};
}

pub mod activity;
pub mod event_stream;
pub mod leases;
pub mod mirror;
pub mod revocations;
pub mod secrets;
pub mod settings;
pub mod sync_runs;
pub mod tasks;
pub mod webhooks;

pub use service_kit::db::*;
