//! Queries on `users`.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use shared_types::{IdRange, RangeDigest};
use uuid::Uuid;

use super::schema::users;
use super::sql_types::{DbTime, DbUuid};
use super::Conn;
use service_kit::run;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = users)]
pub struct User {
    pub id: DbUuid,
    pub email: String,
    pub password_hash: String,
    pub full_name: Option<String>,
    pub email_verified: bool,
    pub mfa_enabled: bool,
    pub account_locked: bool,
    pub last_login_at: Option<DbTime>,
    pub password_changed_at: DbTime,
    pub version: i64,
    pub created_at: DbTime,
    pub updated_at: DbTime,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = users)]
pub struct NewUser<'a> {
    pub id: DbUuid,
    pub email: &'a str,
    /// `NO_PASSWORD` for an account made by a provider sign-in.
    pub password_hash: &'a str,
    /// True only when a provider asserted the address verified.
    pub email_verified: bool,
    pub full_name: Option<&'a str>,
    pub password_changed_at: DbTime,
    pub created_at: DbTime,
    pub updated_at: DbTime,
}

/// The stored hash of an account without a password (made by a provider
/// sign-in; the owner may set one through a reset). Nothing verifies
/// against it: `User::password_hash` answers `None`.
pub const NO_PASSWORD: &str = "";

impl User {
    /// The hash to verify a password against; `None` when the account has
    /// no password (the caller then verifies a dummy hash, so the answer
    /// costs the same and is no).
    pub fn password_hash(&self) -> Option<String> {
        (self.password_hash != NO_PASSWORD).then(|| self.password_hash.clone())
    }

    pub fn record(&self) -> shared_types::UserRecord {
        shared_types::UserRecord {
            id: self.id.0,
            email: self.email.clone(),
            email_verified: self.email_verified,
            full_name: self.full_name.clone(),
            mfa_enabled: self.mfa_enabled,
            account_locked: self.account_locked,
            created_at: self.created_at.0,
            updated_at: self.updated_at.0,
            version: self.version,
        }
    }
}

/// Inserts a user and writes `user.created` (call it in a transaction).
/// A duplicate email surfaces as diesel's `UniqueViolation`.
pub async fn insert(conn: &mut Conn<'_>, new: &NewUser<'_>) -> QueryResult<User> {
    let user = run!(conn, |c| diesel::insert_into(users::table)
        .values(new)
        .returning(User::as_returning())
        .get_result(c)
        .await)?;
    super::outbox::user_event(conn, shared_types::EventType::UserCreated, &user).await?;
    Ok(user)
}

pub async fn find(conn: &mut Conn<'_>, id: Uuid) -> QueryResult<Option<User>> {
    run!(conn, |c| users::table
        .find(DbUuid(id))
        .select(User::as_select())
        .first(c)
        .await
        .optional())
}

/// `email` must already be normalised (see `domain::Email`).
pub async fn find_by_email(conn: &mut Conn<'_>, email: &str) -> QueryResult<Option<User>> {
    run!(conn, |c| users::table
        .filter(users::email.eq(email))
        .select(User::as_select())
        .first(c)
        .await
        .optional())
}

/// Keyset page ordered by id: stable under concurrent inserts and O(limit)
/// however deep the page.
pub async fn page(conn: &mut Conn<'_>, range: IdRange, limit: i64) -> QueryResult<Vec<User>> {
    run!(conn, |c| {
        let mut query = users::table
            .select(User::as_select())
            .order(users::id.asc())
            .limit(limit)
            .into_boxed();
        if let Some(after) = range.after {
            query = query.filter(users::id.gt(DbUuid(after)));
        }
        if let Some(upto) = range.upto {
            query = query.filter(users::id.le(DbUuid(upto)));
        }
        query.load(c).await
    })
}

/// The users table as digests see it (service-kit `db::digest`).
const DIGEST_ROWS: service_kit::db::digest::Rows = service_kit::db::digest::Rows {
    table: "users",
    id: "id",
    version: "version",
};

/// The digest of the users in each of `ranges`, in order.
pub async fn digests(conn: &mut Conn<'_>, ranges: &[IdRange]) -> QueryResult<Vec<RangeDigest>> {
    service_kit::db::digest::of_ranges(conn, DIGEST_ROWS, ranges).await
}

pub async fn count(conn: &mut Conn<'_>) -> QueryResult<i64> {
    run!(conn, |c| users::table.count().get_result(c).await)
}

/// Records a successful login. `last_login_at` is not an auth-owned field of
/// the mirror, so `version` does not move.
pub async fn touch_last_login(
    conn: &mut Conn<'_>,
    id: Uuid,
    now: DateTime<Utc>,
) -> QueryResult<()> {
    run!(conn, |c| diesel::update(users::table.find(DbUuid(id)))
        .set(users::last_login_at.eq(DbTime(now)))
        .execute(c)
        .await)?;
    Ok(())
}

/// Locks or unlocks an account and writes `user.updated` (call it in a
/// transaction). Locking also revokes every session (`session.revoked`).
/// `None`: no such user; `Some(changed)`: false when it was already in that state.
pub async fn set_locked(
    tx: &mut Conn<'_>,
    id: Uuid,
    locked: bool,
    now: DateTime<Utc>,
) -> QueryResult<Option<bool>> {
    let changed = run!(tx, |c| diesel::update(
        users::table
            .filter(users::id.eq(DbUuid(id)))
            .filter(users::account_locked.ne(locked))
    )
    .set((
        users::account_locked.eq(locked),
        users::version.eq(users::version + 1),
        users::updated_at.eq(DbTime(now)),
    ))
    .returning(User::as_returning())
    .get_result(c)
    .await
    .optional())?;
    let Some(user) = changed else {
        return Ok(find(tx, id).await?.map(|_| false));
    };
    if locked {
        super::sessions::revoke_all(tx, id, None, "account locked", now).await?;
    }
    super::outbox::user_event(tx, shared_types::EventType::UserUpdated, &user).await?;
    Ok(Some(true))
}

/// Deletes a user (sessions and tokens go with them by cascade) and writes
/// `user.deleted`, carrying a version above the last one so the mirror
/// orders it after every earlier event. Call it in a transaction.
pub async fn delete(tx: &mut Conn<'_>, id: Uuid, now: DateTime<Utc>) -> QueryResult<Option<User>> {
    let Some(mut user) = find(tx, id).await? else {
        return Ok(None);
    };
    run!(tx, |c| diesel::delete(users::table.find(DbUuid(id)))
        .execute(c)
        .await)?;
    user.version += 1;
    user.updated_at = DbTime(now);
    super::outbox::user_event(tx, shared_types::EventType::UserDeleted, &user).await?;
    Ok(Some(user))
}

/// Updates the user `$id` (when `$filter` also holds) with the given
/// assignments, grows `version`, and writes `user.updated`: every change to
/// an auth-owned field goes through here, so none reaches the mirror late or
/// out of order. Evaluates to the updated user, if any row matched.
macro_rules! update_announced {
    ($tx:expr, $id:expr, $now:expr, $filter:expr, ($($set:expr),+ $(,)?)) => {{
        let updated = run!($tx, |c| diesel::update(
            users::table.filter(users::id.eq(DbUuid($id))).filter($filter)
        )
        .set((
            $($set,)+
            users::version.eq(users::version + 1),
            users::updated_at.eq(DbTime($now)),
        ))
        .returning(User::as_returning())
        .get_result(c)
        .await
        .optional())?;
        if let Some(user) = &updated {
            super::outbox::user_event($tx, shared_types::EventType::UserUpdated, user).await?;
        }
        updated
    }};
}

/// New password hash (sessions are the caller's business).
pub async fn set_password(
    tx: &mut Conn<'_>,
    id: Uuid,
    password_hash: &str,
    now: DateTime<Utc>,
) -> QueryResult<Option<User>> {
    Ok(update_announced!(
        tx,
        id,
        now,
        users::id.eq(DbUuid(id)),
        (
            users::password_hash.eq(password_hash),
            users::password_changed_at.eq(DbTime(now)),
        )
    ))
}

pub async fn set_mfa_enabled(
    tx: &mut Conn<'_>,
    id: Uuid,
    enabled: bool,
    now: DateTime<Utc>,
) -> QueryResult<Option<User>> {
    Ok(update_announced!(
        tx,
        id,
        now,
        users::mfa_enabled.ne(enabled),
        (users::mfa_enabled.eq(enabled),)
    ))
}

/// Marks `email` verified if it is still the user's address; `None` when it
/// is not (changed since the mail went out) or was verified already.
pub async fn mark_email_verified(
    tx: &mut Conn<'_>,
    id: Uuid,
    email: &str,
    now: DateTime<Utc>,
) -> QueryResult<Option<User>> {
    Ok(update_announced!(
        tx,
        id,
        now,
        users::email.eq(email).and(users::email_verified.eq(false)),
        (users::email_verified.eq(true),)
    ))
}

/// Moves the account to a confirmed new address (verified by the
/// confirmation itself). A taken address surfaces as `UniqueViolation`.
pub async fn change_email(
    tx: &mut Conn<'_>,
    id: Uuid,
    email: &str,
    now: DateTime<Utc>,
) -> QueryResult<Option<User>> {
    Ok(update_announced!(
        tx,
        id,
        now,
        users::id.eq(DbUuid(id)),
        (users::email.eq(email), users::email_verified.eq(true))
    ))
}
