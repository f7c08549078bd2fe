//! The transactional outbox: `webhook_events`.
//!
//! A change and the event reporting it are written in one transaction
//! (`enqueue` takes the transaction's connection), so an event exists exactly
//! when its change committed. The delivery worker (`crate::webhooks`) claims
//! due events with a lease, `locked_until`: a claim is an `UPDATE` guarded by
//! "not leased", so two replicas never hold the same event at once, and a
//! worker that dies mid-delivery only delays the event until its lease runs
//! out. On PostgreSQL the claim also skips rows another replica is claiming
//! (`FOR UPDATE SKIP LOCKED`) instead of queueing behind it; on SQLite the
//! write lock of `BEGIN IMMEDIATE` serializes claims.

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::Serialize;
use service_kit::run;
use shared_types::{event_types, SessionRevoked, WebhookEvent};
use uuid::Uuid;

use super::schema::webhook_events as we;
use super::users::User;
use super::Conn;
use service_kit::db::sql_types::{DbTime, DbUuid};

pub mod status {
    pub const PENDING: &str = "pending";
    pub const DELIVERED: &str = "delivered";
    pub const FAILED: &str = "failed";
}

/// A claimed event, ready to send.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = we)]
pub struct OutboxEvent {
    pub id: DbUuid,
    pub payload: String,
    pub attempts: i32,
    /// When the change was committed: delivery latency counts from here.
    pub created_at: DbTime,
}

/// Writes one event; call it inside the transaction making the change.
pub async fn enqueue(
    tx: &mut Conn<'_>,
    event_type: &str,
    data: impl Serialize,
) -> QueryResult<Uuid> {
    let now = super::now();
    let id = Uuid::now_v7();
    let body = WebhookEvent {
        kind: event_type.to_owned(),
        timestamp: now,
        data: serde_json::to_value(data)
            .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?,
    };
    // The body is fixed here: every retry sends (and signs) the same bytes.
    let payload = serde_json::to_string(&body)
        .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
    run!(tx, |c| diesel::insert_into(we::table)
        .values((
            we::id.eq(DbUuid(id)),
            we::event_type.eq(event_type),
            we::payload.eq(&payload),
            we::status.eq(status::PENDING),
            we::attempts.eq(0),
            we::next_attempt_at.eq(DbTime(now)),
            we::created_at.eq(DbTime(now)),
        ))
        .execute(c)
        .await)?;
    Ok(id)
}

/// `user.created` / `user.updated` / `user.deleted` with the user's record.
pub async fn user_event(tx: &mut Conn<'_>, event_type: &str, user: &User) -> QueryResult<Uuid> {
    enqueue(tx, event_type, user.record()).await
}

/// `session.revoked`; an empty `session_ids` means every session of the user.
pub async fn sessions_revoked(
    tx: &mut Conn<'_>,
    user_id: Uuid,
    session_ids: Vec<Uuid>,
) -> QueryResult<Uuid> {
    enqueue(
        tx,
        event_types::SESSION_REVOKED,
        SessionRevoked {
            user_id,
            session_ids,
        },
    )
    .await
}

/// Leases up to `limit` due events for `lease` and counts the attempt.
pub async fn claim(
    conn: &mut Conn<'_>,
    limit: i64,
    lease: Duration,
) -> QueryResult<Vec<OutboxEvent>> {
    super::claim_due!(conn, we, OutboxEvent, status::PENDING, limit, lease)
}

pub async fn mark_delivered(conn: &mut Conn<'_>, id: Uuid) -> QueryResult<()> {
    let now = super::now();
    run!(conn, |c| diesel::update(we::table.find(DbUuid(id)))
        .set((
            we::status.eq(status::DELIVERED),
            we::delivered_at.eq(Some(DbTime(now))),
            we::locked_until.eq(None::<DbTime>),
            we::last_error.eq(None::<String>),
        ))
        .execute(c)
        .await)?;
    Ok(())
}

/// Records a failed attempt: retried at `retry_at`, or `failed` when `None`.
pub async fn mark_attempt_failed(
    conn: &mut Conn<'_>,
    id: Uuid,
    error: &str,
    retry_at: Option<DateTime<Utc>>,
) -> QueryResult<()> {
    let error: String = error.chars().take(500).collect();
    let (new_status, next) = match retry_at {
        Some(at) => (status::PENDING, at),
        None => (status::FAILED, super::now()),
    };
    run!(conn, |c| diesel::update(we::table.find(DbUuid(id)))
        .set((
            we::status.eq(new_status),
            we::next_attempt_at.eq(DbTime(next)),
            we::locked_until.eq(None::<DbTime>),
            we::last_error.eq(Some(&error)),
        ))
        .execute(c)
        .await)?;
    Ok(())
}

/// When the earliest pending event is due (for the worker's sleep).
pub async fn next_due(conn: &mut Conn<'_>) -> QueryResult<Option<DateTime<Utc>>> {
    let t: Option<DbTime> = run!(conn, |c| we::table
        .filter(we::status.eq(status::PENDING))
        .select(diesel::dsl::min(we::next_attempt_at))
        .first(c)
        .await)?;
    Ok(t.map(|t| t.0))
}

pub struct Stats {
    pub pending: i64,
    pub failed: i64,
    pub delivered: i64,
    pub oldest_pending: Option<DateTime<Utc>>,
    pub last_delivered: Option<DateTime<Utc>>,
}

pub async fn stats(conn: &mut Conn<'_>) -> QueryResult<Stats> {
    let counts: Vec<(String, i64)> = run!(conn, |c| we::table
        .group_by(we::status)
        .select((we::status, diesel::dsl::count_star()))
        .load(c)
        .await)?;
    let count = |s: &str| counts.iter().find(|(k, _)| k == s).map_or(0, |(_, n)| *n);
    let oldest: Option<DbTime> = run!(conn, |c| we::table
        .filter(we::status.eq(status::PENDING))
        .select(diesel::dsl::min(we::created_at))
        .first(c)
        .await)?;
    let last: Option<DbTime> = run!(conn, |c| we::table
        .select(diesel::dsl::max(we::delivered_at))
        .first(c)
        .await)?;
    Ok(Stats {
        pending: count(status::PENDING),
        failed: count(status::FAILED),
        delivered: count(status::DELIVERED),
        oldest_pending: oldest.map(|t| t.0),
        last_delivered: last.map(|t| t.0),
    })
}

/// Puts failed events back in the queue (the given ones, or all), due now
/// and with a fresh retry budget. Returns how many were requeued.
pub async fn redeliver(conn: &mut Conn<'_>, ids: Option<&[Uuid]>) -> QueryResult<usize> {
    let now = DbTime(super::now());
    let set = (
        we::status.eq(status::PENDING),
        we::attempts.eq(0),
        we::next_attempt_at.eq(now),
        we::locked_until.eq(None::<DbTime>),
    );
    match ids {
        None => run!(conn, |c| diesel::update(
            we::table.filter(we::status.eq(status::FAILED))
        )
        .set(set)
        .execute(c)
        .await),
        Some(ids) => {
            let ids: Vec<DbUuid> = ids.iter().copied().map(DbUuid).collect();
            run!(conn, |c| diesel::update(
                we::table
                    .filter(we::status.eq(status::FAILED))
                    .filter(we::id.eq_any(&ids))
            )
            .set(set)
            .execute(c)
            .await)
        }
    }
}

/// Deletes delivered events older than `before`; the outbox is a queue,
/// not an archive (the audit log is `authentication_events`).
pub async fn prune_delivered(conn: &mut Conn<'_>, before: DateTime<Utc>) -> QueryResult<usize> {
    run!(conn, |c| diesel::delete(
        we::table
            .filter(we::status.eq(status::DELIVERED))
            .filter(we::delivered_at.lt(DbTime(before)))
    )
    .execute(c)
    .await)
}
