//! Queries on `passkeys`.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use service_kit::run;
use uuid::Uuid;

use super::schema::passkeys as p;
use super::sql_types::{DbTime, DbUuid};
use super::Conn;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = p)]
pub struct PasskeyRow {
    pub id: DbUuid,
    pub user_id: DbUuid,
    pub credential_id: String,
    pub name: String,
    /// webauthn-rs's `Passkey`, as JSON.
    pub passkey: String,
    pub created_at: DbTime,
    pub last_used_at: Option<DbTime>,
}

/// A credential already registered (to anyone) surfaces as `UniqueViolation`.
pub async fn insert(tx: &mut Conn<'_>, row: &PasskeyRow) -> QueryResult<()> {
    run!(tx, |c| diesel::insert_into(p::table)
        .values(row)
        .execute(c)
        .await)?;
    Ok(())
}

pub async fn of_user(conn: &mut Conn<'_>, user_id: Uuid) -> QueryResult<Vec<PasskeyRow>> {
    run!(conn, |c| p::table
        .filter(p::user_id.eq(DbUuid(user_id)))
        .order(p::created_at.asc())
        .select(PasskeyRow::as_select())
        .load(c)
        .await)
}

pub async fn by_credential(
    conn: &mut Conn<'_>,
    credential_id: &str,
) -> QueryResult<Option<PasskeyRow>> {
    run!(conn, |c| p::table
        .filter(p::credential_id.eq(credential_id))
        .select(PasskeyRow::as_select())
        .first(c)
        .await
        .optional())
}

pub async fn count_of_user(conn: &mut Conn<'_>, user_id: Uuid) -> QueryResult<i64> {
    run!(conn, |c| p::table
        .filter(p::user_id.eq(DbUuid(user_id)))
        .count()
        .get_result(c)
        .await)
}

/// After a sign-in: the updated record (its counter) and when.
pub async fn used(
    tx: &mut Conn<'_>,
    id: Uuid,
    passkey: &str,
    now: DateTime<Utc>,
) -> QueryResult<()> {
    run!(tx, |c| diesel::update(p::table.find(DbUuid(id)))
        .set((
            p::passkey.eq(passkey),
            p::last_used_at.eq(Some(DbTime(now)))
        ))
        .execute(c)
        .await)?;
    Ok(())
}

/// Removes one of the user's passkeys; `None` when it is not theirs.
pub async fn delete(tx: &mut Conn<'_>, user_id: Uuid, id: Uuid) -> QueryResult<Option<PasskeyRow>> {
    run!(tx, |c| diesel::delete(
        p::table
            .filter(p::id.eq(DbUuid(id)))
            .filter(p::user_id.eq(DbUuid(user_id)))
    )
    .returning(PasskeyRow::as_returning())
    .get_result(c)
    .await
    .optional())
}

/// Every passkey of the user (an administrator's MFA reset).
pub async fn delete_all(tx: &mut Conn<'_>, user_id: Uuid) -> QueryResult<usize> {
    run!(tx, |c| diesel::delete(
        p::table.filter(p::user_id.eq(DbUuid(user_id)))
    )
    .execute(c)
    .await)
}
