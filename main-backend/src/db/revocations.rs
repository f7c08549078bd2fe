//! Session revocations, shared by all replicas through the database.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use service_kit::run;
use uuid::Uuid;

use super::schema::revocations;
use super::sql_types::{DbTime, DbUuid};
use super::Conn;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = revocations)]
pub struct Revocation {
    pub id: DbUuid,
    pub user_id: DbUuid,
    /// `None`: every session of the user.
    pub session_id: Option<DbUuid>,
    pub created_at: DbTime,
}

impl Revocation {
    pub fn new(user_id: Uuid, session_id: Option<Uuid>) -> Self {
        Self {
            id: DbUuid(Uuid::now_v7()),
            user_id: DbUuid(user_id),
            session_id: session_id.map(DbUuid),
            created_at: DbTime(super::now()),
        }
    }
}

pub async fn insert(conn: &mut Conn<'_>, rows: &[Revocation]) -> QueryResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    for row in rows {
        run!(conn, |c| diesel::insert_into(revocations::table)
            .values(row)
            .execute(c)
            .await)?;
    }
    Ok(())
}

/// Revocations written at or after `since`. Pollers read a window that
/// overlaps the previous one: a row committed late with an earlier
/// timestamp is still seen, and applying one twice is harmless.
pub async fn since(conn: &mut Conn<'_>, since: DateTime<Utc>) -> QueryResult<Vec<Revocation>> {
    run!(conn, |c| revocations::table
        .filter(revocations::created_at.ge(DbTime(since)))
        .order(revocations::created_at)
        .select(Revocation::as_select())
        .load(c)
        .await)
}

pub async fn prune(conn: &mut Conn<'_>, before: DateTime<Utc>) -> QueryResult<usize> {
    run!(conn, |c| diesel::delete(
        revocations::table.filter(revocations::created_at.lt(DbTime(before)))
    )
    .execute(c)
    .await)
}
