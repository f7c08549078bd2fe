//! `sync_runs`: one row per reconciliation.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use service_kit::run;

use super::schema::sync_runs;
use super::sql_types::{DbTime, DbUuid};
use super::Conn;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = sync_runs)]
pub struct SyncRun {
    pub id: DbUuid,
    pub trigger: String,
    pub status: String,
    pub started_at: DbTime,
    pub finished_at: Option<DbTime>,
    pub created: i64,
    pub updated: i64,
    pub deleted: i64,
    pub unchanged: i64,
    pub duration_ms: Option<i64>,
    pub error: Option<String>,
}

pub async fn insert(conn: &mut Conn<'_>, run_row: &SyncRun) -> QueryResult<()> {
    run!(conn, |c| diesel::insert_into(sync_runs::table)
        .values(run_row)
        .execute(c)
        .await)?;
    Ok(())
}

pub async fn latest(conn: &mut Conn<'_>) -> QueryResult<Option<SyncRun>> {
    run!(conn, |c| sync_runs::table
        .order(sync_runs::started_at.desc())
        .select(SyncRun::as_select())
        .first(c)
        .await
        .optional())
}
