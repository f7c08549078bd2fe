//! Queries on `mfa_totp` and `mfa_recovery_codes` (the TOTP logic itself is
//! `crate::mfa`).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use service_kit::run;
use uuid::Uuid;

use super::schema::{mfa_recovery_codes as rc, mfa_totp as mt};
use super::sql_types::{DbTime, DbUuid};
use super::Conn;

#[derive(Queryable, Selectable)]
#[diesel(table_name = mt)]
pub struct TotpRow {
    pub secret_sealed: String,
    pub enabled_at: Option<DbTime>,
}

pub async fn find(conn: &mut Conn<'_>, user_id: Uuid) -> QueryResult<Option<TotpRow>> {
    run!(conn, |c| mt::table
        .find(DbUuid(user_id))
        .select(TotpRow::as_select())
        .first(c)
        .await
        .optional())
}

/// Stores a new, not yet enabled secret, replacing any earlier one that was
/// never enabled; false (nothing written) when TOTP is already enabled.
pub async fn put_pending(
    tx: &mut Conn<'_>,
    user_id: Uuid,
    sealed: &str,
    now: DateTime<Utc>,
) -> QueryResult<bool> {
    run!(tx, |c| diesel::delete(
        mt::table
            .filter(mt::user_id.eq(DbUuid(user_id)))
            .filter(mt::enabled_at.is_null())
    )
    .execute(c)
    .await)?;
    if find(tx, user_id).await?.is_some() {
        return Ok(false);
    }
    run!(tx, |c| diesel::insert_into(mt::table)
        .values((
            mt::user_id.eq(DbUuid(user_id)),
            mt::secret_sealed.eq(sealed),
            mt::created_at.eq(DbTime(now)),
        ))
        .execute(c)
        .await)?;
    Ok(true)
}

/// Enables the pending secret, its first code's step counting as used.
pub async fn enable(
    tx: &mut Conn<'_>,
    user_id: Uuid,
    step: i64,
    now: DateTime<Utc>,
) -> QueryResult<bool> {
    let n = run!(tx, |c| diesel::update(
        mt::table
            .filter(mt::user_id.eq(DbUuid(user_id)))
            .filter(mt::enabled_at.is_null())
    )
    .set((
        mt::enabled_at.eq(Some(DbTime(now))),
        mt::last_step.eq(Some(step))
    ))
    .execute(c)
    .await)?;
    Ok(n == 1)
}

/// Accepts a code's step once: true only if `step` is newer than every
/// step accepted before. Concurrent logins with one code: one wins.
pub async fn accept_step(conn: &mut Conn<'_>, user_id: Uuid, step: i64) -> QueryResult<bool> {
    let n = run!(conn, |c| diesel::update(
        mt::table
            .filter(mt::user_id.eq(DbUuid(user_id)))
            .filter(mt::enabled_at.is_not_null())
            .filter(mt::last_step.is_null().or(mt::last_step.lt(step)))
    )
    .set(mt::last_step.eq(Some(step)))
    .execute(c)
    .await)?;
    Ok(n == 1)
}

/// Removes the secret and every recovery code.
pub async fn remove(tx: &mut Conn<'_>, user_id: Uuid) -> QueryResult<()> {
    run!(tx, |c| diesel::delete(
        mt::table.filter(mt::user_id.eq(DbUuid(user_id)))
    )
    .execute(c)
    .await)?;
    run!(tx, |c| diesel::delete(
        rc::table.filter(rc::user_id.eq(DbUuid(user_id)))
    )
    .execute(c)
    .await)?;
    Ok(())
}

/// Replaces the user's recovery codes with these hashes.
pub async fn replace_recovery_codes(
    tx: &mut Conn<'_>,
    user_id: Uuid,
    hashes: &[String],
    now: DateTime<Utc>,
) -> QueryResult<()> {
    run!(tx, |c| diesel::delete(
        rc::table.filter(rc::user_id.eq(DbUuid(user_id)))
    )
    .execute(c)
    .await)?;
    // Row by row: ten rows, and one statement shape for both backends.
    for hash in hashes {
        run!(tx, |c| diesel::insert_into(rc::table)
            .values((
                rc::id.eq(DbUuid(Uuid::now_v7())),
                rc::user_id.eq(DbUuid(user_id)),
                rc::code_hash.eq(hash),
                rc::created_at.eq(DbTime(now)),
            ))
            .execute(c)
            .await)?;
    }
    Ok(())
}

/// Spends a recovery code: true once per code.
pub async fn spend_recovery_code(
    conn: &mut Conn<'_>,
    user_id: Uuid,
    hash: &str,
    now: DateTime<Utc>,
) -> QueryResult<bool> {
    let n = run!(conn, |c| diesel::update(
        rc::table
            .filter(rc::user_id.eq(DbUuid(user_id)))
            .filter(rc::code_hash.eq(hash))
            .filter(rc::used_at.is_null())
    )
    .set(rc::used_at.eq(Some(DbTime(now))))
    .execute(c)
    .await)?;
    Ok(n == 1)
}
