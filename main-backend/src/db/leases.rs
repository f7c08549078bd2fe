//! Named leases in the database: "only one replica does this at a time"
//! without session advisory locks, which transaction-mode poolers break.

use chrono::Duration;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use service_kit::run;

use super::schema::leases;
use super::sql_types::DbTime;
use super::Conn;

/// Takes the lease `name` for `ttl` if it is free, expired or already ours.
/// One guarded `UPDATE`: of two replicas racing, exactly one matches.
pub async fn acquire(
    conn: &mut Conn<'_>,
    name: &str,
    holder: &str,
    ttl: Duration,
) -> QueryResult<bool> {
    let now = super::now();
    let n = run!(conn, |c| diesel::update(
        leases::table.filter(leases::name.eq(name)).filter(
            leases::expires_at
                .le(DbTime(now))
                .or(leases::holder.eq(holder))
        )
    )
    .set((
        leases::holder.eq(holder),
        leases::expires_at.eq(DbTime(now + ttl))
    ))
    .execute(c)
    .await)?;
    Ok(n == 1)
}

/// Gives the lease back early (only if still ours).
pub async fn release(conn: &mut Conn<'_>, name: &str, holder: &str) -> QueryResult<()> {
    run!(conn, |c| diesel::update(
        leases::table
            .filter(leases::name.eq(name))
            .filter(leases::holder.eq(holder))
    )
    .set(leases::expires_at.eq(DbTime(super::now())))
    .execute(c)
    .await)?;
    Ok(())
}
