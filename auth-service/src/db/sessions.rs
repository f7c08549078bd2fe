//! Queries on `sessions` and `refresh_tokens` (a session's token family).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use super::schema::{refresh_tokens, sessions, users};
use super::sql_types::{DbTime, DbUuid};
use super::users::User;
use super::{outbox, Conn};
use service_kit::run;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = sessions)]
pub struct Session {
    pub id: DbUuid,
    pub user_id: DbUuid,
    pub created_at: DbTime,
    pub last_used_at: DbTime,
    pub expires_at: DbTime,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub revoked_at: Option<DbTime>,
    pub revoked_reason: Option<String>,
}

impl Session {
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.0 > now
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = refresh_tokens)]
pub struct RefreshToken {
    pub id: DbUuid,
    pub session_id: DbUuid,
    pub token_hash: String,
    pub parent_id: Option<DbUuid>,
    pub access_jti: DbUuid,
    pub issued_at: DbTime,
    pub expires_at: DbTime,
    pub used_at: Option<DbTime>,
}

pub async fn insert(conn: &mut Conn<'_>, session: &Session) -> QueryResult<()> {
    run!(conn, |c| diesel::insert_into(sessions::table)
        .values(session)
        .execute(c)
        .await)?;
    Ok(())
}

/// A session with its user, if the session exists and is neither revoked nor
/// expired. This is the check behind every bearer token.
pub async fn find_active_with_user(
    conn: &mut Conn<'_>,
    session_id: Uuid,
    now: DateTime<Utc>,
) -> QueryResult<Option<(Session, User)>> {
    run!(conn, |c| sessions::table
        .inner_join(users::table)
        .filter(sessions::id.eq(DbUuid(session_id)))
        .filter(sessions::revoked_at.is_null())
        .filter(sessions::expires_at.gt(DbTime(now)))
        .select((Session::as_select(), User::as_select()))
        .first(c)
        .await
        .optional())
}

/// Who an access token speaks for, as introspection answers it: the
/// session's user if the session is live, belongs to `user_id` and its
/// user is not locked. The same checks as [`find_active_with_user`], in
/// SQL, with only the three columns the answer carries: introspection is
/// the main backend's every uncached request, and decoding the two whole
/// rows (nine timestamps among them) was most of the query's cost.
pub async fn find_introspected(
    conn: &mut Conn<'_>,
    session_id: Uuid,
    user_id: Uuid,
    now: DateTime<Utc>,
) -> QueryResult<Option<(DbUuid, String, bool)>> {
    run!(conn, |c| sessions::table
        .inner_join(users::table)
        .filter(sessions::id.eq(DbUuid(session_id)))
        .filter(sessions::user_id.eq(DbUuid(user_id)))
        .filter(sessions::revoked_at.is_null())
        .filter(sessions::expires_at.gt(DbTime(now)))
        .filter(users::account_locked.eq(false))
        .select((users::id, users::email, users::email_verified))
        .first(c)
        .await
        .optional())
}

pub async fn list_active(
    conn: &mut Conn<'_>,
    user_id: Uuid,
    now: DateTime<Utc>,
) -> QueryResult<Vec<Session>> {
    run!(conn, |c| sessions::table
        .filter(sessions::user_id.eq(DbUuid(user_id)))
        .filter(sessions::revoked_at.is_null())
        .filter(sessions::expires_at.gt(DbTime(now)))
        .order(sessions::created_at.desc())
        .select(Session::as_select())
        .load(c)
        .await)
}

/// Revokes one session of one user; returns false if there was none to revoke
/// (unknown, another user's, or already revoked).
pub async fn revoke(
    conn: &mut Conn<'_>,
    user_id: Uuid,
    session_id: Uuid,
    reason: &str,
    now: DateTime<Utc>,
) -> QueryResult<bool> {
    let n = run!(conn, |c| diesel::update(
        sessions::table
            .filter(sessions::id.eq(DbUuid(session_id)))
            .filter(sessions::user_id.eq(DbUuid(user_id)))
            .filter(sessions::revoked_at.is_null())
    )
    .set((
        sessions::revoked_at.eq(DbTime(now)),
        sessions::revoked_reason.eq(reason)
    ))
    .execute(c)
    .await)?;
    if n == 1 {
        outbox::sessions_revoked(conn, user_id, vec![session_id]).await?;
    }
    Ok(n == 1)
}

/// Revokes every live session of a user except `keep`; returns the ids revoked.
/// Like `revoke`, writes `session.revoked` when anything was revoked: naming
/// the sessions when one is kept, else "every session" (empty list), which
/// also covers a session opened while the event is in flight.
pub async fn revoke_all(
    conn: &mut Conn<'_>,
    user_id: Uuid,
    keep: Option<Uuid>,
    reason: &str,
    now: DateTime<Utc>,
) -> QueryResult<Vec<Uuid>> {
    let keep = DbUuid(keep.unwrap_or(Uuid::nil()));
    let ids = run!(conn, |c| diesel::update(
        sessions::table
            .filter(sessions::user_id.eq(DbUuid(user_id)))
            .filter(sessions::revoked_at.is_null())
            .filter(sessions::id.ne(keep))
    )
    .set((
        sessions::revoked_at.eq(DbTime(now)),
        sessions::revoked_reason.eq(reason)
    ))
    .returning(sessions::id)
    .get_results::<DbUuid>(c)
    .await)?;
    let ids: Vec<Uuid> = ids.into_iter().map(|id| id.0).collect();
    if !ids.is_empty() {
        let named = if keep.0.is_nil() {
            Vec::new()
        } else {
            ids.clone()
        };
        outbox::sessions_revoked(conn, user_id, named).await?;
    }
    Ok(ids)
}

/// Marks a session used and slides its expiry along with its newest refresh token.
pub async fn touch(
    conn: &mut Conn<'_>,
    session_id: Uuid,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> QueryResult<()> {
    run!(conn, |c| diesel::update(
        sessions::table.find(DbUuid(session_id))
    )
    .set((
        sessions::last_used_at.eq(DbTime(now)),
        sessions::expires_at.eq(DbTime(expires_at))
    ))
    .execute(c)
    .await)?;
    Ok(())
}

pub async fn insert_refresh_token(conn: &mut Conn<'_>, token: &RefreshToken) -> QueryResult<()> {
    run!(conn, |c| diesel::insert_into(refresh_tokens::table)
        .values(token)
        .execute(c)
        .await)?;
    Ok(())
}

/// The refresh token with this hash and its session (revoked or not).
pub async fn find_refresh_token(
    conn: &mut Conn<'_>,
    token_hash: &str,
) -> QueryResult<Option<(RefreshToken, Session)>> {
    run!(conn, |c| refresh_tokens::table
        .inner_join(sessions::table)
        .filter(refresh_tokens::token_hash.eq(token_hash))
        .select((RefreshToken::as_select(), Session::as_select()))
        .first(c)
        .await
        .optional())
}

/// Spends a refresh token. Returns false when another request spent it
/// first: the conditional update is what makes exactly one refresh win.
pub async fn spend_refresh_token(
    conn: &mut Conn<'_>,
    id: Uuid,
    now: DateTime<Utc>,
) -> QueryResult<bool> {
    let n = run!(conn, |c| diesel::update(
        refresh_tokens::table
            .filter(refresh_tokens::id.eq(DbUuid(id)))
            .filter(refresh_tokens::used_at.is_null())
    )
    .set(refresh_tokens::used_at.eq(DbTime(now)))
    .execute(c)
    .await)?;
    Ok(n == 1)
}

/// The token issued in exchange for `parent_id`, if any.
pub async fn find_successor(
    conn: &mut Conn<'_>,
    parent_id: Uuid,
) -> QueryResult<Option<RefreshToken>> {
    run!(conn, |c| refresh_tokens::table
        .filter(refresh_tokens::parent_id.eq(DbUuid(parent_id)))
        .select(RefreshToken::as_select())
        .first(c)
        .await
        .optional())
}
