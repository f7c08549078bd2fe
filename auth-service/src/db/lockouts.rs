//! Brute-force protection: `login_attempts` and `login_lockouts`.
//!
//! Failures are rows keyed by the email as typed (normalised), whether or
//! not an account has it, and by the client address. When failures since
//! the last lock cross a threshold inside the window, a lock row is written:
//! for the (email, address) pair at `threshold`, for the email from every
//! address at ten times that. A lock lasts `window` from its creation. While
//! one holds, attempts are refused before any password is checked and are
//! not counted, so an attacker cannot extend a lock by hammering it. Being
//! rows, locks hold across replicas and restarts.

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use service_kit::run;
use uuid::Uuid;

use super::schema::{login_attempts as la, login_lockouts as ll};
use super::sql_types::{DbTime, DbUuid};
use super::Conn;

/// The per-email limit is this many times the per-pair one.
pub const EMAIL_FACTOR: i64 = 10;

/// Whether a login may be tried now.
#[derive(Debug, Clone, Copy)]
pub enum Gate {
    /// Count failures after these instants (the window's start, or the end
    /// of the last lock's trigger, whichever is later).
    Open {
        pair_since: DateTime<Utc>,
        email_since: DateTime<Utc>,
    },
    Locked {
        until: DateTime<Utc>,
    },
}

/// What a failure started, for the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locked {
    Pair,
    Email,
}

pub async fn gate(
    conn: &mut Conn<'_>,
    email: &str,
    ip: &str,
    now: DateTime<Utc>,
    window: Duration,
) -> QueryResult<Gate> {
    let start = now - window;
    let locks: Vec<(Option<String>, DbTime, DbTime)> = run!(conn, |c| ll::table
        .filter(ll::email.eq(email))
        .filter(ll::created_at.gt(DbTime(start)))
        .select((ll::ip, ll::created_at, ll::locked_until))
        .load(c)
        .await)?;
    let applies = |lock_ip: &Option<String>| lock_ip.as_deref().is_none_or(|l| l == ip);
    if let Some(until) = locks
        .iter()
        .filter(|(lock_ip, _, until)| applies(lock_ip) && until.0 > now)
        .map(|(_, _, until)| until.0)
        .max()
    {
        return Ok(Gate::Locked { until });
    }
    let since = |pair: bool| {
        locks
            .iter()
            .filter(|(lock_ip, _, _)| {
                if pair {
                    lock_ip.as_deref() == Some(ip)
                } else {
                    lock_ip.is_none()
                }
            })
            .map(|(_, created, _)| created.0)
            .fold(start, DateTime::max)
    };
    Ok(Gate::Open {
        pair_since: since(true),
        email_since: since(false),
    })
}

/// Records a failed attempt and locks when a threshold is crossed; call it
/// in a transaction, with the `Gate::Open` instants `gate` gave.
#[allow(clippy::too_many_arguments)]
pub async fn record_failure(
    tx: &mut Conn<'_>,
    email: &str,
    ip: &str,
    pair_since: DateTime<Utc>,
    email_since: DateTime<Utc>,
    threshold: i64,
    window: Duration,
    now: DateTime<Utc>,
) -> QueryResult<Option<Locked>> {
    run!(tx, |c| diesel::insert_into(la::table)
        .values((
            la::id.eq(DbUuid(Uuid::now_v7())),
            la::email.eq(email),
            la::ip.eq(ip),
            la::success.eq(false),
            la::created_at.eq(DbTime(now)),
        ))
        .execute(c)
        .await)?;
    let by_email: i64 = run!(tx, |c| la::table
        .filter(la::email.eq(email))
        .filter(la::success.eq(false))
        .filter(la::created_at.gt(DbTime(email_since)))
        .count()
        .get_result(c)
        .await)?;
    if by_email >= threshold * EMAIL_FACTOR {
        insert_lock(tx, email, None, now, window).await?;
        return Ok(Some(Locked::Email));
    }
    let by_pair: i64 = run!(tx, |c| la::table
        .filter(la::email.eq(email))
        .filter(la::ip.eq(ip))
        .filter(la::success.eq(false))
        .filter(la::created_at.gt(DbTime(pair_since)))
        .count()
        .get_result(c)
        .await)?;
    if by_pair >= threshold {
        insert_lock(tx, email, Some(ip), now, window).await?;
        return Ok(Some(Locked::Pair));
    }
    Ok(None)
}

async fn insert_lock(
    tx: &mut Conn<'_>,
    email: &str,
    ip: Option<&str>,
    now: DateTime<Utc>,
    window: Duration,
) -> QueryResult<()> {
    run!(tx, |c| diesel::insert_into(ll::table)
        .values((
            ll::id.eq(DbUuid(Uuid::now_v7())),
            ll::email.eq(email),
            ll::ip.eq(ip),
            ll::created_at.eq(DbTime(now)),
            ll::locked_until.eq(DbTime(now + window)),
        ))
        .execute(c)
        .await)?;
    Ok(())
}

/// A successful login from this address forgets its earlier failures.
pub async fn record_success(tx: &mut Conn<'_>, email: &str, ip: &str) -> QueryResult<()> {
    run!(tx, |c| diesel::delete(
        la::table
            .filter(la::email.eq(email))
            .filter(la::ip.eq(ip))
            .filter(la::success.eq(false))
    )
    .execute(c)
    .await)?;
    Ok(())
}

/// Lifts every lock on `email` and forgets its failures: a completed
/// password reset proves the owner, so an attacker's failures cannot keep
/// the owner out.
pub async fn lift(tx: &mut Conn<'_>, email: &str) -> QueryResult<()> {
    run!(tx, |c| diesel::delete(
        ll::table.filter(ll::email.eq(email))
    )
    .execute(c)
    .await)?;
    run!(tx, |c| diesel::delete(
        la::table.filter(la::email.eq(email))
    )
    .execute(c)
    .await)?;
    Ok(())
}

/// Forgets attempts and locks older than `before` (past every window).
pub async fn prune(conn: &mut Conn<'_>, before: DateTime<Utc>) -> QueryResult<usize> {
    let attempts = run!(conn, |c| diesel::delete(
        la::table.filter(la::created_at.lt(DbTime(before)))
    )
    .execute(c)
    .await)?;
    let locks = run!(conn, |c| diesel::delete(
        ll::table.filter(ll::locked_until.lt(DbTime(before)))
    )
    .execute(c)
    .await)?;
    Ok(attempts + locks)
}
