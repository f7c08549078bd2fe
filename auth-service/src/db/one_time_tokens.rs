//! Single-use tokens sent by mail: `password_resets` and
//! `email_verifications` (verifying the current address, confirming a new
//! one). Only the SHA-256 of a token is stored. Spending is one guarded
//! `UPDATE ... WHERE used_at IS NULL AND expires_at > now`, so of two
//! concurrent uses exactly one wins, on either backend.

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use service_kit::run;
use uuid::Uuid;

use super::schema::{email_verifications as ev, password_resets as pr};
use super::sql_types::{DbTime, DbUuid};
use super::Conn;

pub fn reset_ttl() -> Duration {
    Duration::hours(1)
}

pub fn verification_ttl() -> Duration {
    Duration::hours(24)
}

pub fn email_change_ttl() -> Duration {
    Duration::hours(1)
}

pub mod purpose {
    /// Verify the address the account has.
    pub const VERIFY: &str = "verify";
    /// Confirm a new address (`email` is the new one).
    pub const CHANGE: &str = "change";
}

pub async fn insert_reset(
    tx: &mut Conn<'_>,
    user_id: Uuid,
    token_hash: &str,
    now: DateTime<Utc>,
) -> QueryResult<()> {
    run!(tx, |c| diesel::insert_into(pr::table)
        .values((
            pr::id.eq(DbUuid(Uuid::now_v7())),
            pr::user_id.eq(DbUuid(user_id)),
            pr::token_hash.eq(token_hash),
            pr::created_at.eq(DbTime(now)),
            pr::expires_at.eq(DbTime(now + reset_ttl())),
        ))
        .execute(c)
        .await)?;
    Ok(())
}

/// Spends a reset token and every other open one of the same user; returns
/// the user, or `None` for an unknown, used or expired token.
pub async fn spend_reset(
    tx: &mut Conn<'_>,
    token_hash: &str,
    now: DateTime<Utc>,
) -> QueryResult<Option<Uuid>> {
    let user: Option<DbUuid> = run!(tx, |c| diesel::update(
        pr::table
            .filter(pr::token_hash.eq(token_hash))
            .filter(pr::used_at.is_null())
            .filter(pr::expires_at.gt(DbTime(now)))
    )
    .set(pr::used_at.eq(Some(DbTime(now))))
    .returning(pr::user_id)
    .get_result(c)
    .await
    .optional())?;
    let Some(user) = user else { return Ok(None) };
    run!(tx, |c| diesel::update(
        pr::table
            .filter(pr::user_id.eq(user))
            .filter(pr::used_at.is_null())
    )
    .set(pr::used_at.eq(Some(DbTime(now))))
    .execute(c)
    .await)?;
    Ok(Some(user.0))
}

pub async fn insert_verification(
    tx: &mut Conn<'_>,
    user_id: Uuid,
    purpose: &str,
    email: &str,
    token_hash: &str,
    ttl: Duration,
    now: DateTime<Utc>,
) -> QueryResult<()> {
    run!(tx, |c| diesel::insert_into(ev::table)
        .values((
            ev::id.eq(DbUuid(Uuid::now_v7())),
            ev::user_id.eq(DbUuid(user_id)),
            ev::token_hash.eq(token_hash),
            ev::purpose.eq(purpose),
            ev::email.eq(email),
            ev::created_at.eq(DbTime(now)),
            ev::expires_at.eq(DbTime(now + ttl)),
        ))
        .execute(c)
        .await)?;
    Ok(())
}

/// Spends a verification token of `purpose` and every other open one of the
/// same user and purpose; returns `(user, email)`.
pub async fn spend_verification(
    tx: &mut Conn<'_>,
    token_hash: &str,
    purpose: &str,
    now: DateTime<Utc>,
) -> QueryResult<Option<(Uuid, String)>> {
    let row: Option<(DbUuid, String)> = run!(tx, |c| diesel::update(
        ev::table
            .filter(ev::token_hash.eq(token_hash))
            .filter(ev::purpose.eq(purpose))
            .filter(ev::used_at.is_null())
            .filter(ev::expires_at.gt(DbTime(now)))
    )
    .set(ev::used_at.eq(Some(DbTime(now))))
    .returning((ev::user_id, ev::email))
    .get_result(c)
    .await
    .optional())?;
    let Some((user, email)) = row else {
        return Ok(None);
    };
    run!(tx, |c| diesel::update(
        ev::table
            .filter(ev::user_id.eq(user))
            .filter(ev::purpose.eq(purpose))
            .filter(ev::used_at.is_null())
    )
    .set(ev::used_at.eq(Some(DbTime(now))))
    .execute(c)
    .await)?;
    Ok(Some((user.0, email)))
}
