//! Where the follower of the auth service's event feed is
//! (`SYNC_TRANSPORT=stream|both`, `crate::sync::stream`), one row.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use service_kit::run;

use super::schema::event_stream as es;
use super::sql_types::DbTime;
use super::Conn;

/// The follower's position and progress, as stored.
#[derive(Queryable, Debug, Clone)]
pub struct StreamState {
    pub cursor: Option<String>,
    pub polled_at: Option<DbTime>,
    pub last_event_at: Option<DbTime>,
    pub behind: bool,
}

pub async fn get(conn: &mut Conn<'_>) -> QueryResult<StreamState> {
    run!(conn, |c| es::table
        .select((es::cursor, es::polled_at, es::last_event_at, es::behind))
        .first(c)
        .await)
}

/// After a page was applied: the cursor after it, and how it went.
pub async fn advance(
    conn: &mut Conn<'_>,
    cursor: &str,
    last_event_at: Option<DateTime<Utc>>,
    behind: bool,
) -> QueryResult<()> {
    let now = super::now();
    match last_event_at {
        Some(at) => run!(conn, |c| diesel::update(es::table)
            .set((
                es::cursor.eq(cursor),
                es::polled_at.eq(DbTime(now)),
                es::last_event_at.eq(DbTime(at)),
                es::behind.eq(behind),
            ))
            .execute(c)
            .await)?,
        None => run!(conn, |c| diesel::update(es::table)
            .set((
                es::cursor.eq(cursor),
                es::polled_at.eq(DbTime(now)),
                es::behind.eq(behind),
            ))
            .execute(c)
            .await)?,
    };
    Ok(())
}
