//! The event feed's queries: stamping feed positions (`seq`) on committed
//! outbox events, reading pages after a position, and pruning.
//!
//! Why the feed has no gaps: a position is not taken at insert (the
//! transactions that insert events commit in any order, so "after 11"
//! could be read before 10 commits and 10 would be skipped for good). It
//! is stamped afterwards, on rows already committed, by `stamp`, which
//! runs under one lock for the whole database and numbers from the highest
//! position committed: every stamping commits before the next one starts,
//! so what a reader can see is always positions 1..head, with no hole.
//! PostgreSQL: an advisory transaction lock (behind a transaction-mode
//! pooler too). SQLite: writers already run one at a time.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use service_kit::run;
use uuid::Uuid;

use super::jobs::{JobKind, Status};
use super::schema::{event_feed as ef, jobs as j, webhook_events as we};
use super::Conn;
use service_kit::db::sql_types::{DbTime, DbUuid};
use service_kit::transaction;

/// Events stamped per statement (a backlog takes several).
const STAMP_BATCH: i64 = 1000;

/// One event of the feed.
#[derive(Queryable, Debug)]
pub struct FeedEvent {
    pub id: DbUuid,
    pub seq: Option<i64>,
    pub event_type: String,
    pub payload: String,
}

/// Gives positions to committed events that have none, in the order they
/// were written; returns how many were stamped.
pub async fn stamp(conn: &mut Conn<'_>) -> QueryResult<usize> {
    // One statement for both backends (UPDATE ... FROM and window
    // functions: PostgreSQL, SQLite 3.33+). The base is read inside the
    // statement, after the lock, so it counts every committed stamp.
    let sql = format!(
        "UPDATE webhook_events SET seq = s.base + s.n \
         FROM (SELECT id, row_number() OVER (ORDER BY created_at, id) AS n, \
                      (SELECT COALESCE(MAX(seq), 0) FROM webhook_events) AS base \
               FROM webhook_events WHERE seq IS NULL \
               ORDER BY created_at, id LIMIT {STAMP_BATCH}) AS s \
         WHERE webhook_events.id = s.id"
    );
    let mut total = 0;
    loop {
        let n = transaction!(conn, |tx| -> diesel::result::Error {
            tx.lock_key("event-feed-sequencer").await?;
            run!(tx, |c| diesel::sql_query(&sql).execute(c).await)
        })?;
        total += n;
        if (n as i64) < STAMP_BATCH {
            return Ok(total);
        }
    }
}

/// True when some committed event has no position yet (one index probe).
pub async fn has_unstamped(conn: &mut Conn<'_>) -> QueryResult<bool> {
    let one: Option<DbUuid> = run!(conn, |c| we::table
        .filter(we::seq.is_null())
        .select(we::id)
        .first(c)
        .await
        .optional())?;
    Ok(one.is_some())
}

/// The highest position handed out (0 before the first event).
pub async fn head(conn: &mut Conn<'_>) -> QueryResult<i64> {
    let max: Option<i64> = run!(conn, |c| we::table
        .select(diesel::dsl::max(we::seq))
        .first(c)
        .await)?;
    Ok(max.unwrap_or(0))
}

/// The highest position pruned (0 when none was): a reader below it has
/// missed events for good.
pub async fn pruned_through(conn: &mut Conn<'_>) -> QueryResult<i64> {
    run!(conn, |c| ef::table
        .select(ef::pruned_through)
        .first(c)
        .await)
}

/// Up to `limit` events after position `after`, in feed order.
pub async fn page(conn: &mut Conn<'_>, after: i64, limit: i64) -> QueryResult<Vec<FeedEvent>> {
    run!(conn, |c| we::table
        .filter(we::seq.gt(after))
        .order(we::seq.asc())
        .limit(limit)
        .select((we::id, we::seq, we::event_type, we::payload))
        .load(c)
        .await)
}

/// When the event at position `seq` was written (`None` when not kept).
pub async fn written_at(conn: &mut Conn<'_>, seq: i64) -> QueryResult<Option<DateTime<Utc>>> {
    let at: Option<DbTime> = run!(conn, |c| we::table
        .filter(we::seq.eq(seq))
        .select(we::created_at)
        .first(c)
        .await
        .optional())?;
    Ok(at.map(|t| t.0))
}

/// Deletes stamped events written before `before`, except the newest one
/// (the head must never go back, or positions would be handed out twice)
/// and one whose webhook delivery failed (it stays redeliverable); records
/// the highest position deleted. A delivery still pending after the
/// retention has no runner (webhooks are off) and does not keep its event. The outbox
/// is a feed with a retention, not an archive (the audit log is
/// `authentication_events`).
pub async fn prune(conn: &mut Conn<'_>, before: DateTime<Utc>) -> QueryResult<usize> {
    transaction!(conn, |tx| -> diesel::result::Error {
        tx.lock_key("event-feed-sequencer").await?;
        // Not past what a live NATS publisher has yet to send; one gone
        // for longer than the retention no longer holds pruning back.
        let (nats_cursor, nats_alive): (Option<i64>, Option<DbTime>) = run!(tx, |c| ef::table
            .select((ef::nats_cursor, ef::nats_lease_until))
            .first(c)
            .await)?;
        let head = head(tx).await?;
        let limit = match (nats_cursor, nats_alive) {
            (Some(sent), Some(until)) if until.0 > before => head.min(sent + 1),
            _ => head,
        };
        let failed = j::table
            .filter(j::kind.eq(JobKind::Webhook.as_str()))
            .filter(j::status.eq(Status::Failed.as_str()))
            .select(j::id);
        let deleted: Vec<Option<i64>> = run!(tx, |c| diesel::delete(
            we::table
                .filter(we::created_at.lt(DbTime(before)))
                .filter(we::seq.lt(limit))
                .filter(diesel::dsl::not(we::id.eq_any(failed)))
        )
        .returning(we::seq)
        .get_results(c)
        .await)?;
        if let Some(highest) = deleted.iter().flatten().max() {
            run!(tx, |c| diesel::update(ef::table)
                .filter(ef::pruned_through.lt(*highest))
                .set(ef::pruned_through.eq(*highest))
                .execute(c)
                .await)?;
        }
        Ok(deleted.len())
    })
}

/// The event `id`'s position, once stamped (tests and benchmarks).
pub async fn position(conn: &mut Conn<'_>, id: Uuid) -> QueryResult<Option<i64>> {
    Ok(run!(conn, |c| we::table
        .find(DbUuid(id))
        .select(we::seq)
        .first::<Option<i64>>(c)
        .await
        .optional())?
    .flatten())
}

/// Takes (or renews) the NATS publisher's lease for `holder` until
/// `until`, if it is free, lapsed or already `holder`'s. One guarded
/// `UPDATE`: of two replicas racing, one wins.
pub async fn nats_lease(
    conn: &mut Conn<'_>,
    holder: &str,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
) -> QueryResult<bool> {
    let n = run!(conn, |c| diesel::update(
        ef::table.filter(
            ef::nats_lease_until
                .is_null()
                .or(ef::nats_lease_until.le(DbTime(now)))
                .or(ef::nats_holder.eq(holder))
        )
    )
    .set((
        ef::nats_holder.eq(holder),
        ef::nats_lease_until.eq(DbTime(until))
    ))
    .execute(c)
    .await)?;
    Ok(n == 1)
}

/// Where publishing to NATS is (`None`: never configured).
pub async fn nats_cursor(conn: &mut Conn<'_>) -> QueryResult<Option<i64>> {
    run!(conn, |c| ef::table.select(ef::nats_cursor).first(c).await)
}

/// Publishing reached `cursor`; only while `holder` holds the lease.
pub async fn set_nats_cursor(conn: &mut Conn<'_>, holder: &str, cursor: i64) -> QueryResult<bool> {
    let n = run!(conn, |c| diesel::update(
        ef::table.filter(ef::nats_holder.eq(holder))
    )
    .set(ef::nats_cursor.eq(Some(cursor)))
    .execute(c)
    .await)?;
    Ok(n == 1)
}
