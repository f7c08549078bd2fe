//! The job queue: `jobs`, one table for everything sent in the background.
//!
//! A job is written in the transaction of the change it belongs to
//! (`enqueue` takes the transaction's connection), so it exists exactly when
//! that change committed. A runner (`crate::jobs`) claims due jobs of its
//! kind with a lease, `locked_until`: a claim is an `UPDATE` guarded by "not
//! leased", so two replicas never hold the same job at once, and a runner
//! that dies mid-job only delays it until its lease runs out. On PostgreSQL
//! the claim also skips rows another replica is claiming (`FOR UPDATE SKIP
//! LOCKED`) instead of queueing behind it; on SQLite the write lock of
//! `BEGIN IMMEDIATE` serializes claims.
//!
//! A job's `data` (a mail's sealed message) is erased when the job finishes,
//! sent or given up on: nothing secret outlives its use.

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use service_kit::run;
use uuid::Uuid;

use super::schema::jobs;
use super::sql_types::{DbTime, DbUuid};
use super::Conn;

/// What runs a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// Delivers one `webhook_events` row; the job has the event's id.
    Webhook,
    /// Sends one mail.
    Mail,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Mail => "mail",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pending,
    Done,
    /// Gave up; counted, and (for webhooks) redeliverable.
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }
}

/// A job to write.
pub struct NewJob<'a> {
    pub kind: JobKind,
    pub id: Uuid,
    pub subject: &'a str,
    pub data: Option<&'a str>,
}

/// A claimed job, ready to run.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = jobs)]
pub struct Claimed {
    pub id: DbUuid,
    pub subject: String,
    pub data: Option<String>,
    /// Including the one this claim starts.
    pub attempts: i32,
    /// When the change committed: latency counts from here.
    pub created_at: DbTime,
}

/// Writes one job, due now; call it inside the transaction making the change.
pub async fn enqueue(tx: &mut Conn<'_>, job: NewJob<'_>) -> QueryResult<()> {
    let now = DbTime(super::now());
    run!(tx, |c| diesel::insert_into(jobs::table)
        .values((
            jobs::kind.eq(job.kind.as_str()),
            jobs::id.eq(DbUuid(job.id)),
            jobs::subject.eq(job.subject),
            jobs::data.eq(job.data),
            jobs::status.eq(Status::Pending.as_str()),
            jobs::attempts.eq(0),
            jobs::next_attempt_at.eq(now),
            jobs::created_at.eq(now),
        ))
        .execute(c)
        .await)?;
    Ok(())
}

/// Leases up to `limit` due jobs of `kind` for `lease` and counts the attempt.
pub async fn claim(
    conn: &mut Conn<'_>,
    kind: JobKind,
    limit: i64,
    lease: Duration,
) -> QueryResult<Vec<Claimed>> {
    let now = DbTime(super::now());
    let not_leased = || jobs::locked_until.is_null().or(jobs::locked_until.le(now));
    service_kit::transaction!(conn, |tx| -> diesel::result::Error {
        let due = jobs::table
            .filter(jobs::kind.eq(kind.as_str()))
            .filter(jobs::status.eq(Status::Pending.as_str()))
            .filter(jobs::next_attempt_at.le(now))
            .filter(not_leased())
            .order(jobs::next_attempt_at)
            .select(jobs::id)
            .limit(limit);
        let ids: Vec<DbUuid> = match tx {
            Conn::Pg(c) => due.for_update().skip_locked().load(&mut **c).await?,
            Conn::Sqlite(c) => due.load(&mut **c).await?,
        };
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // The guard is repeated so a row leased meanwhile is not taken twice.
        run!(tx, |c| diesel::update(
            jobs::table
                .filter(jobs::kind.eq(kind.as_str()))
                .filter(jobs::id.eq_any(&ids))
                .filter(jobs::status.eq(Status::Pending.as_str()))
                .filter(not_leased())
        )
        .set((
            jobs::locked_until.eq(DbTime(now.0 + lease)),
            jobs::attempts.eq(jobs::attempts + 1),
        ))
        .returning(Claimed::as_returning())
        .get_results(c)
        .await)
    })
}

/// Records how an attempt went: done, retried at `retry_at`, or given up
/// (`failed`) when that is `None`. A finished job's data is erased.
pub async fn record(
    conn: &mut Conn<'_>,
    kind: JobKind,
    id: Uuid,
    outcome: Result<(), (&str, Option<DateTime<Utc>>)>,
) -> QueryResult<()> {
    let now = super::now();
    let row = jobs::table
        .filter(jobs::kind.eq(kind.as_str()))
        .filter(jobs::id.eq(DbUuid(id)));
    let (status, next, error) = match outcome {
        Ok(()) => (Status::Done, now, None),
        Err((error, retry_at)) => (
            retry_at.map_or(Status::Failed, |_| Status::Pending),
            retry_at.unwrap_or(now),
            Some(error.chars().take(500).collect::<String>()),
        ),
    };
    let finished = (status != Status::Pending).then_some(DbTime(now));
    run!(conn, |c| {
        if finished.is_some() {
            diesel::update(row)
                .set((
                    jobs::status.eq(status.as_str()),
                    jobs::locked_until.eq(None::<DbTime>),
                    jobs::last_error.eq(&error),
                    jobs::finished_at.eq(finished),
                    jobs::data.eq(None::<String>),
                ))
                .execute(c)
                .await
        } else {
            diesel::update(row)
                .set((
                    jobs::next_attempt_at.eq(DbTime(next)),
                    jobs::locked_until.eq(None::<DbTime>),
                    jobs::last_error.eq(&error),
                ))
                .execute(c)
                .await
        }
    })?;
    Ok(())
}

/// When the earliest pending job of `kind` is due (for the runner's sleep).
pub async fn next_due(conn: &mut Conn<'_>, kind: JobKind) -> QueryResult<Option<DateTime<Utc>>> {
    let t: Option<DbTime> = run!(conn, |c| jobs::table
        .filter(jobs::kind.eq(kind.as_str()))
        .filter(jobs::status.eq(Status::Pending.as_str()))
        .select(diesel::dsl::min(jobs::next_attempt_at))
        .first(c)
        .await)?;
    Ok(t.map(|t| t.0))
}

/// When the latest job of `kind` about `subject` was written.
pub async fn last_written(
    conn: &mut Conn<'_>,
    kind: JobKind,
    subject: &str,
) -> QueryResult<Option<DateTime<Utc>>> {
    let t: Option<DbTime> = run!(conn, |c| jobs::table
        .filter(jobs::kind.eq(kind.as_str()))
        .filter(jobs::subject.eq(subject))
        .select(diesel::dsl::max(jobs::created_at))
        .first(c)
        .await)?;
    Ok(t.map(|t| t.0))
}

pub struct Stats {
    pub pending: i64,
    pub failed: i64,
    pub done: i64,
    pub oldest_pending: Option<DateTime<Utc>>,
    pub last_done: Option<DateTime<Utc>>,
}

pub async fn stats(conn: &mut Conn<'_>, kind: JobKind) -> QueryResult<Stats> {
    let of_kind = || jobs::table.filter(jobs::kind.eq(kind.as_str()));
    let counts: Vec<(String, i64)> = run!(conn, |c| of_kind()
        .group_by(jobs::status)
        .select((jobs::status, diesel::dsl::count_star()))
        .load(c)
        .await)?;
    let count = |s: Status| {
        counts
            .iter()
            .find(|(k, _)| k == s.as_str())
            .map_or(0, |(_, n)| *n)
    };
    let oldest: Option<DbTime> = run!(conn, |c| of_kind()
        .filter(jobs::status.eq(Status::Pending.as_str()))
        .select(diesel::dsl::min(jobs::created_at))
        .first(c)
        .await)?;
    let last: Option<DbTime> = run!(conn, |c| of_kind()
        .filter(jobs::status.eq(Status::Done.as_str()))
        .select(diesel::dsl::max(jobs::finished_at))
        .first(c)
        .await)?;
    Ok(Stats {
        pending: count(Status::Pending),
        failed: count(Status::Failed),
        done: count(Status::Done),
        oldest_pending: oldest.map(|t| t.0),
        last_done: last.map(|t| t.0),
    })
}

/// Puts failed jobs of `kind` back in the queue (the given ones, or all),
/// due now and with a fresh retry budget. Returns how many were requeued.
pub async fn retry_failed(
    conn: &mut Conn<'_>,
    kind: JobKind,
    ids: Option<&[Uuid]>,
) -> QueryResult<usize> {
    let failed = jobs::table
        .filter(jobs::kind.eq(kind.as_str()))
        .filter(jobs::status.eq(Status::Failed.as_str()));
    let set = (
        jobs::status.eq(Status::Pending.as_str()),
        jobs::attempts.eq(0),
        jobs::next_attempt_at.eq(DbTime(super::now())),
        jobs::locked_until.eq(None::<DbTime>),
        jobs::finished_at.eq(None::<DbTime>),
    );
    match ids {
        None => run!(conn, |c| diesel::update(failed).set(set).execute(c).await),
        Some(ids) => {
            let ids: Vec<DbUuid> = ids.iter().copied().map(DbUuid).collect();
            run!(conn, |c| diesel::update(
                failed.filter(jobs::id.eq_any(&ids))
            )
            .set(set)
            .execute(c)
            .await)
        }
    }
}

/// Deletes jobs of `kind` that finished (with one of `statuses`) before
/// `before`: the queue is a queue, not an archive (the audit log is
/// `authentication_events`).
pub async fn prune(
    conn: &mut Conn<'_>,
    kind: JobKind,
    statuses: &[Status],
    before: DateTime<Utc>,
) -> QueryResult<usize> {
    let statuses: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
    run!(conn, |c| diesel::delete(
        jobs::table
            .filter(jobs::kind.eq(kind.as_str()))
            .filter(jobs::status.eq_any(&statuses))
            .filter(jobs::finished_at.lt(DbTime(before)))
    )
    .execute(c)
    .await)
}
