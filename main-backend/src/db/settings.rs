//! Queries on `user_settings`: one JSON object per user.

use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::RunQueryDsl;
use service_kit::run;
use uuid::Uuid;

use super::schema::user_settings as s;
use super::sql_types::{DbTime, DbUuid};
use super::Conn;

/// The stored preferences (JSON text), if the user saved any.
pub async fn get(conn: &mut Conn<'_>, user_id: Uuid) -> QueryResult<Option<String>> {
    run!(conn, |c| s::table
        .find(DbUuid(user_id))
        .select(s::preferences)
        .first(c)
        .await
        .optional())
}

/// Replaces the preferences (insert or update in one statement).
pub async fn put(conn: &mut Conn<'_>, user_id: Uuid, preferences: &str) -> QueryResult<()> {
    let now = DbTime(super::now());
    run!(conn, |c| diesel::insert_into(s::table)
        .values((
            s::user_id.eq(DbUuid(user_id)),
            s::preferences.eq(preferences),
            s::created_at.eq(now),
            s::updated_at.eq(now),
        ))
        .on_conflict(s::user_id)
        .do_update()
        .set((
            s::preferences.eq(excluded(s::preferences)),
            s::updated_at.eq(excluded(s::updated_at)),
        ))
        .execute(c)
        .await)?;
    Ok(())
}
