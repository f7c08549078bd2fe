//! Queries on `service_tokens`. Rows hold the SHA-256 of a token, never the
//! token; what a token is and how it is checked is `crate::services::service_tokens`.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use super::schema::service_tokens as st;
use super::sql_types::{DbJson, DbTime, DbUuid};
use super::Conn;
use service_kit::run;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = st)]
pub struct ServiceTokenRow {
    pub id: DbUuid,
    pub name: String,
    /// JSON array of scope strings.
    pub scopes: String,
    pub token_hash: String,
    pub created_at: DbTime,
    pub expires_at: Option<DbTime>,
    pub last_used_at: Option<DbTime>,
    pub use_count: i64,
    pub revoked_at: Option<DbTime>,
    pub created_by: String,
    /// A JSON object, or none (`jsonb` on PostgreSQL).
    pub metadata: Option<DbJson>,
}

impl ServiceTokenRow {
    pub fn scope_list(&self) -> Vec<String> {
        // Written only by `crate::services::service_tokens::create`; a row that does
        // not parse grants nothing.
        serde_json::from_str(&self.scopes).unwrap_or_default()
    }

    /// The metadata object; `None` when there is none (or it does not parse:
    /// written only by `crate::services::service_tokens::create`).
    pub fn metadata_object(&self) -> Option<serde_json::Value> {
        self.metadata
            .as_ref()
            .map(|m| m.0.clone())
            .filter(serde_json::Value::is_object)
    }

    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|t| t.0 > now)
    }
}

pub async fn insert(conn: &mut Conn<'_>, row: &ServiceTokenRow) -> QueryResult<()> {
    run!(conn, |c| diesel::insert_into(st::table)
        .values(row)
        .execute(c)
        .await)?;
    Ok(())
}

pub async fn find_by_hash(conn: &mut Conn<'_>, hash: &str) -> QueryResult<Option<ServiceTokenRow>> {
    run!(conn, |c| st::table
        .filter(st::token_hash.eq(hash))
        .select(ServiceTokenRow::as_select())
        .first(c)
        .await
        .optional())
}

/// Every token, revoked and expired ones included, oldest first.
pub async fn list(conn: &mut Conn<'_>) -> QueryResult<Vec<ServiceTokenRow>> {
    run!(conn, |c| st::table
        .select(ServiceTokenRow::as_select())
        .order((st::created_at.asc(), st::id.asc()))
        .load(c)
        .await)
}

/// Revokes one token. `None`: no such token; `Some(false)`: it was revoked already.
pub async fn revoke(
    conn: &mut Conn<'_>,
    id: Uuid,
    now: DateTime<Utc>,
) -> QueryResult<Option<bool>> {
    let changed = run!(conn, |c| diesel::update(
        st::table
            .filter(st::id.eq(DbUuid(id)))
            .filter(st::revoked_at.is_null())
    )
    .set(st::revoked_at.eq(DbTime(now)))
    .execute(c)
    .await)?;
    if changed > 0 {
        return Ok(Some(true));
    }
    let exists = run!(conn, |c| st::table
        .find(DbUuid(id))
        .count()
        .get_result::<i64>(c)
        .await)?;
    Ok((exists > 0).then_some(false))
}

/// The emergency switch: every token not yet revoked is revoked now.
pub async fn revoke_all(conn: &mut Conn<'_>, now: DateTime<Utc>) -> QueryResult<usize> {
    run!(conn, |c| diesel::update(
        st::table.filter(st::revoked_at.is_null())
    )
    .set(st::revoked_at.eq(DbTime(now)))
    .execute(c)
    .await)
}

/// Adds a batch of uses (see `crate::services::service_tokens::Usage`).
pub async fn add_usage(
    conn: &mut Conn<'_>,
    id: Uuid,
    uses: i64,
    last_used: DateTime<Utc>,
) -> QueryResult<()> {
    run!(conn, |c| diesel::update(st::table.find(DbUuid(id)))
        .set((
            st::use_count.eq(st::use_count + uses),
            st::last_used_at.eq(DbTime(last_used)),
        ))
        .execute(c)
        .await)?;
    Ok(())
}
