//! `processed_webhooks`: which deliveries were applied already.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use service_kit::run;

use super::schema::processed_webhooks as pw;
use super::sql_types::DbTime;
use super::Conn;

/// Records a webhook id; `false` when it was recorded before (a replay or
/// a retry of an event already applied). Call it in the transaction that
/// applies the event, so "recorded" and "applied" commit together.
pub async fn mark_processed(conn: &mut Conn<'_>, id: &str, event_type: &str) -> QueryResult<bool> {
    let n = run!(conn, |c| diesel::insert_into(pw::table)
        .values((
            pw::id.eq(id),
            pw::event_type.eq(event_type),
            pw::received_at.eq(DbTime(super::now())),
        ))
        .on_conflict(pw::id)
        .do_nothing()
        .execute(c)
        .await)?;
    Ok(n == 1)
}

pub async fn last_received(conn: &mut Conn<'_>) -> QueryResult<Option<DateTime<Utc>>> {
    let t: Option<DbTime> = run!(conn, |c| pw::table
        .select(diesel::dsl::max(pw::received_at))
        .first(c)
        .await)?;
    Ok(t.map(|t| t.0))
}

/// Forgets ids older than `before`. Safe: a user event replayed later is
/// still refused by its version, and a replayed revocation only revokes again.
pub async fn prune(conn: &mut Conn<'_>, before: DateTime<Utc>) -> QueryResult<usize> {
    run!(conn, |c| diesel::delete(
        pw::table.filter(pw::received_at.lt(DbTime(before)))
    )
    .execute(c)
    .await)
}
