//! The audit trail (`authentication_events`). Rows never hold a password or token.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use super::schema::authentication_events;
use super::sql_types::{DbTime, DbUuid};
use super::Conn;
use service_kit::run;

/// Event kinds named by the contract's audit endpoint.
pub mod kind {
    pub const LOGIN_SUCCEEDED: &str = "login_succeeded";
    pub const LOGIN_FAILED: &str = "login_failed";
    pub const REFRESH: &str = "refresh";
    pub const REFRESH_REUSED: &str = "refresh_reused";
    pub const LOGOUT: &str = "logout";
}

#[derive(Debug, Clone, Insertable, Queryable, Selectable)]
#[diesel(table_name = authentication_events)]
pub struct AuthEvent {
    pub id: DbUuid,
    pub kind: String,
    pub user_id: Option<DbUuid>,
    pub service_token_id: Option<DbUuid>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub endpoint: Option<String>,
    pub request_id: Option<String>,
    pub success: bool,
    pub detail: Option<String>,
    pub created_at: DbTime,
}

pub async fn record(conn: &mut Conn<'_>, event: &AuthEvent) -> QueryResult<()> {
    run!(conn, |c| diesel::insert_into(authentication_events::table)
        .values(event)
        .execute(c)
        .await)?;
    Ok(())
}

/// Newest first, optionally for one user.
pub async fn list(
    conn: &mut Conn<'_>,
    user_id: Option<Uuid>,
    limit: i64,
) -> QueryResult<Vec<AuthEvent>> {
    run!(conn, |c| {
        let mut q = authentication_events::table
            .select(AuthEvent::as_select())
            .order((
                authentication_events::created_at.desc(),
                authentication_events::id.desc(),
            ))
            .limit(limit)
            .into_boxed();
        if let Some(user_id) = user_id {
            q = q.filter(authentication_events::user_id.eq(DbUuid(user_id)));
        }
        q.load(c).await
    })
}
