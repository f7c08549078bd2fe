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
//!
//! Every check of a secret (a login's password or code, the password asked
//! again before an account change) first reserves a slot (`reserve`): the
//! attempt row is written before the check and counts as a failure until
//! the check passes, so the limits are exact under any burst.

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

/// The answer to a request for one check of a secret.
#[derive(Debug, Clone, Copy)]
pub enum Reservation {
    /// One check may run; its row (`slot`) counts as a failure until the
    /// check passes and `settle_success` removes it.
    Granted { slot: Uuid },
    /// Refused before any check: a lock holds until `until`, or the checks
    /// already failed or still in flight fill the limit (then `until` is a
    /// moment away, when they will have been decided).
    Refused { until: DateTime<Utc> },
}

/// How long a request refused because the limit is full of checks still
/// running is told to wait: they are decided within an argon2 hash.
const IN_FLIGHT_RETRY: Duration = Duration::seconds(1);

/// Takes one slot for a check of `email`'s secret from `ip`, or refuses.
///
/// Why a slot before the check: the check (an argon2 hash) is slow, so a
/// gate that only looked at settled failures let every request of a burst
/// through before the first failure was written. Here the attempt row is
/// written first, under a lock on the email held across replicas
/// (`Conn::lock_key`), and counts from that moment: of N requests sent at
/// once, exactly as many as the limit allows are checked. Call it in a
/// transaction.
pub async fn reserve(
    tx: &mut Conn<'_>,
    email: &str,
    ip: &str,
    threshold: i64,
    window: Duration,
    now: DateTime<Utc>,
) -> QueryResult<Reservation> {
    let (by_email, by_pair) = match locked_counts(tx, email, ip, now, window).await? {
        Err(until) => return Ok(Reservation::Refused { until }),
        Ok(counts) => counts,
    };
    if by_email >= threshold * EMAIL_FACTOR || by_pair >= threshold {
        return Ok(Reservation::Refused {
            until: now + IN_FLIGHT_RETRY,
        });
    }
    let slot = Uuid::now_v7();
    run!(tx, |c| diesel::insert_into(la::table)
        .values((
            la::id.eq(DbUuid(slot)),
            la::email.eq(email),
            la::ip.eq(ip),
            la::success.eq(false),
            la::created_at.eq(DbTime(now)),
        ))
        .execute(c)
        .await)?;
    Ok(Reservation::Granted { slot })
}

/// The check in a slot failed: the slot stays as a failure, and a lock is
/// written when a limit is now full (unless one already holds). Call it in
/// a transaction.
pub async fn settle_failure(
    tx: &mut Conn<'_>,
    email: &str,
    ip: &str,
    threshold: i64,
    window: Duration,
    now: DateTime<Utc>,
) -> QueryResult<Option<Locked>> {
    // A lock that holds already is not written again.
    let Ok((by_email, by_pair)) = locked_counts(tx, email, ip, now, window).await? else {
        return Ok(None);
    };
    if by_email >= threshold * EMAIL_FACTOR {
        insert_lock(tx, email, None, now, window).await?;
        return Ok(Some(Locked::Email));
    }
    if by_pair >= threshold {
        insert_lock(tx, email, Some(ip), now, window).await?;
        return Ok(Some(Locked::Pair));
    }
    Ok(None)
}

/// The check in a slot passed. A lock that a concurrent failure wrote
/// meanwhile still wins (`Err` with its end: the caller refuses and rolls
/// back); otherwise the address's failures for this email are forgotten,
/// the slot with them. Call it in the transaction that acts on the success.
pub async fn settle_success(
    tx: &mut Conn<'_>,
    email: &str,
    ip: &str,
    window: Duration,
    now: DateTime<Utc>,
) -> QueryResult<Result<(), DateTime<Utc>>> {
    tx.lock_key(&lock_key(email)).await?;
    if let Gate::Locked { until } = gate(tx, email, ip, now, window).await? {
        return Ok(Err(until));
    }
    run!(tx, |c| diesel::delete(
        la::table
            .filter(la::email.eq(email))
            .filter(la::ip.eq(ip))
            .filter(la::success.eq(false))
    )
    .execute(c)
    .await)?;
    Ok(Ok(()))
}

/// Gives a slot back without a verdict: the check was never decided by a
/// wrong secret (the account is locked by an administrator, or a second
/// factor is still to come).
pub async fn release(conn: &mut Conn<'_>, slot: Uuid) -> QueryResult<()> {
    run!(conn, |c| diesel::delete(
        la::table.filter(la::id.eq(DbUuid(slot)))
    )
    .execute(c)
    .await)?;
    Ok(())
}

/// The advisory-lock key of an email's counters.
fn lock_key(email: &str) -> String {
    format!("login_attempts:{email}")
}

/// Under the email's lock (held to the end of the transaction): the end of
/// the lock that holds (`Err`), or the failures, settled or in flight, that
/// count toward the email's and the pair's limits (`Ok((by_email, by_pair))`).
async fn locked_counts(
    tx: &mut Conn<'_>,
    email: &str,
    ip: &str,
    now: DateTime<Utc>,
    window: Duration,
) -> QueryResult<Result<(i64, i64), DateTime<Utc>>> {
    tx.lock_key(&lock_key(email)).await?;
    match gate(tx, email, ip, now, window).await? {
        Gate::Locked { until } => Ok(Err(until)),
        Gate::Open {
            pair_since,
            email_since,
        } => Ok(Ok(counts(tx, email, ip, pair_since, email_since).await?)),
    }
}

/// Failures (settled or in flight) for the email since `email_since`, and
/// for the (email, address) pair since `pair_since`.
async fn counts(
    tx: &mut Conn<'_>,
    email: &str,
    ip: &str,
    pair_since: DateTime<Utc>,
    email_since: DateTime<Utc>,
) -> QueryResult<(i64, i64)> {
    let by_email: i64 = run!(tx, |c| la::table
        .filter(la::email.eq(email))
        .filter(la::success.eq(false))
        .filter(la::created_at.gt(DbTime(email_since)))
        .count()
        .get_result(c)
        .await)?;
    let by_pair: i64 = run!(tx, |c| la::table
        .filter(la::email.eq(email))
        .filter(la::ip.eq(ip))
        .filter(la::success.eq(false))
        .filter(la::created_at.gt(DbTime(pair_since)))
        .count()
        .get_result(c)
        .await)?;
    Ok((by_email, by_pair))
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
