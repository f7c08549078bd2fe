//! The auth service's tables and queries. The generic layer (pool, `Conn`,
//! `run!`, `transaction!`, SQL types, migrations) is `service_kit::db`,
//! shared with the main backend.

pub mod schema;

pub mod events;
pub mod lockouts;
pub mod mail;
pub mod mfa;
pub mod one_time_tokens;
pub mod outbox;
pub mod service_tokens;

pub mod sessions;
pub mod users;

pub use service_kit::db::*;

/// Leases up to `$limit` due rows of a queue table (`webhook_events`,
/// `mail_queue`: columns `id`, `status`, `next_attempt_at`, `locked_until`,
/// `attempts`) for `$lease`, counting the attempt. The claim is an `UPDATE`
/// guarded by "not leased", so two replicas never hold the same row at once;
/// on PostgreSQL it also skips rows another replica is claiming
/// (`FOR UPDATE SKIP LOCKED`), on SQLite `BEGIN IMMEDIATE` serializes claims.
macro_rules! claim_due {
    ($conn:expr, $t:ident, $row:ty, $pending:expr, $limit:expr, $lease:expr) => {{
        let now = $crate::db::now();
        service_kit::transaction!($conn, |tx| -> diesel::result::Error {
            let due = $t::table
                .filter($t::status.eq($pending))
                .filter($t::next_attempt_at.le(DbTime(now)))
                .filter(
                    $t::locked_until
                        .is_null()
                        .or($t::locked_until.le(DbTime(now))),
                )
                .order($t::next_attempt_at)
                .select($t::id)
                .limit($limit);
            let ids: Vec<DbUuid> = match tx {
                $crate::db::Conn::Pg(c) => due.for_update().skip_locked().load(&mut **c).await?,
                $crate::db::Conn::Sqlite(c) => due.load(&mut **c).await?,
            };
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            // The guard is repeated so a row leased meanwhile is not taken twice.
            service_kit::run!(tx, |c| diesel::update(
                $t::table
                    .filter($t::id.eq_any(&ids))
                    .filter($t::status.eq($pending))
                    .filter(
                        $t::locked_until
                            .is_null()
                            .or($t::locked_until.le(DbTime(now)))
                    )
            )
            .set((
                $t::locked_until.eq(DbTime(now + $lease)),
                $t::attempts.eq($t::attempts + 1),
            ))
            .returning(<$row>::as_returning())
            .get_results(c)
            .await)
        })
    }};
}
pub(crate) use claim_due;
