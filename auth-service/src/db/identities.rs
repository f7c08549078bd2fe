//! Provider identities (`oauth_tokens`, one row per identity with the
//! provider's tokens sealed) and the single-use secrets of a provider
//! sign-in (`oauth_flows`: states, one-time codes, link tickets).
//!
//! A flow secret is taken by `DELETE ... RETURNING` on the hash of the
//! secret: of two concurrent uses exactly one gets the row, on either
//! backend and across replicas.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use service_kit::run;
use uuid::Uuid;

use super::schema::{oauth_flows as f, oauth_tokens as t, users};
use super::sql_types::{DbTime, DbUuid};
use super::Conn;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = t)]
pub struct Identity {
    pub id: DbUuid,
    pub user_id: DbUuid,
    pub provider: String,
    pub provider_subject: String,
    pub email: Option<String>,
    pub created_at: DbTime,
}

/// What a new identity is made of; `tokens_sealed` is `crate::services::oauth`'s.
pub struct NewIdentity<'a> {
    pub id: Uuid,
    pub user_id: Uuid,
    pub provider: &'a str,
    pub subject: &'a str,
    pub email: &'a str,
    pub tokens_sealed: &'a str,
    pub tokens_expire: Option<DateTime<Utc>>,
}

pub async fn find(
    conn: &mut Conn<'_>,
    provider: &str,
    subject: &str,
) -> QueryResult<Option<Identity>> {
    run!(conn, |c| t::table
        .filter(t::provider.eq(provider))
        .filter(t::provider_subject.eq(subject))
        .select(Identity::as_select())
        .first(c)
        .await
        .optional())
}

pub async fn of_user(conn: &mut Conn<'_>, user_id: Uuid) -> QueryResult<Vec<Identity>> {
    run!(conn, |c| t::table
        .filter(t::user_id.eq(DbUuid(user_id)))
        .order(t::created_at.asc())
        .select(Identity::as_select())
        .load(c)
        .await)
}

/// A duplicate (provider, subject) surfaces as `UniqueViolation`.
pub async fn insert(
    tx: &mut Conn<'_>,
    new: &NewIdentity<'_>,
    now: DateTime<Utc>,
) -> QueryResult<()> {
    run!(tx, |c| diesel::insert_into(t::table)
        .values((
            t::id.eq(DbUuid(new.id)),
            t::user_id.eq(DbUuid(new.user_id)),
            t::provider.eq(new.provider),
            t::provider_subject.eq(new.subject),
            t::email.eq(new.email),
            t::token_ciphertext.eq(new.tokens_sealed),
            t::expires_at.eq(new.tokens_expire.map(DbTime)),
            t::created_at.eq(DbTime(now)),
            t::updated_at.eq(DbTime(now)),
        ))
        .execute(c)
        .await)?;
    Ok(())
}

/// The provider's latest tokens and address for an identity signing in again.
pub async fn refresh(
    tx: &mut Conn<'_>,
    id: Uuid,
    email: &str,
    tokens_sealed: &str,
    tokens_expire: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> QueryResult<()> {
    run!(tx, |c| diesel::update(t::table.find(DbUuid(id)))
        .set((
            t::email.eq(email),
            t::token_ciphertext.eq(tokens_sealed),
            t::expires_at.eq(tokens_expire.map(DbTime)),
            t::updated_at.eq(DbTime(now)),
        ))
        .execute(c)
        .await)?;
    Ok(())
}

/// Removes one of the user's identities (and its tokens); `None` when it
/// is not theirs.
pub async fn delete(tx: &mut Conn<'_>, user_id: Uuid, id: Uuid) -> QueryResult<Option<Identity>> {
    run!(tx, |c| diesel::delete(
        t::table
            .filter(t::id.eq(DbUuid(id)))
            .filter(t::user_id.eq(DbUuid(user_id)))
    )
    .returning(Identity::as_returning())
    .get_result(c)
    .await
    .optional())
}

/// A user's ways to sign in.
pub struct SignInMethods {
    pub password: bool,
    pub identities: i64,
    pub passkeys: i64,
}

impl SignInMethods {
    pub fn total(&self) -> i64 {
        i64::from(self.password) + self.identities + self.passkeys
    }
}

/// The user's ways to sign in. Read under `sign_in_methods_lock` when
/// about to remove one.
pub async fn sign_in_methods(conn: &mut Conn<'_>, user_id: Uuid) -> QueryResult<SignInMethods> {
    let password: bool = run!(conn, |c| users::table
        .find(DbUuid(user_id))
        .select(users::password_hash.ne(super::users::NO_PASSWORD))
        .first(c)
        .await
        .optional())?
    .unwrap_or(false);
    let identities: i64 = run!(conn, |c| t::table
        .filter(t::user_id.eq(DbUuid(user_id)))
        .count()
        .get_result(c)
        .await)?;
    let passkeys = super::passkeys::count_of_user(conn, user_id).await?;
    Ok(SignInMethods {
        password,
        identities,
        passkeys,
    })
}

/// Serialises changes to one user's ways of signing in until the
/// transaction ends (two removals at once must not both pass the "not the
/// last one" check).
pub async fn lock_sign_in_methods(tx: &mut Conn<'_>, user_id: Uuid) -> QueryResult<()> {
    tx.lock_key(&format!("sign-in-methods:{user_id}")).await
}

/// The user's ways to sign in, read under `lock_sign_in_methods`: for a
/// removal, which must leave one.
pub async fn sign_in_methods_locked(
    tx: &mut Conn<'_>,
    user_id: Uuid,
) -> QueryResult<SignInMethods> {
    lock_sign_in_methods(tx, user_id).await?;
    sign_in_methods(tx, user_id).await
}

pub mod flow {
    pub const STATE: &str = "state";
    pub const CODE: &str = "code";
    pub const LINK: &str = "link";
}

/// A flow secret's row.
#[derive(Queryable, Selectable, Insertable, Clone)]
#[diesel(table_name = f)]
pub struct Flow {
    pub id: String,
    pub kind: String,
    pub provider: String,
    pub user_id: Option<DbUuid>,
    pub data: String,
    pub expires_at: DbTime,
    pub created_at: DbTime,
}

/// Stores a flow secret (by its hash), clearing expired ones on the way:
/// the table holds only what is in flight.
pub async fn put_flow(conn: &mut Conn<'_>, flow: &Flow, now: DateTime<Utc>) -> QueryResult<()> {
    run!(conn, |c| diesel::delete(
        f::table.filter(f::expires_at.lt(DbTime(now)))
    )
    .execute(c)
    .await)?;
    run!(conn, |c| diesel::insert_into(f::table)
        .values(flow)
        .execute(c)
        .await)?;
    Ok(())
}

/// Takes (deletes and returns) the flow secret whose hash is `id`, if it
/// is of `kind` and has not expired. Single use: a second take finds nothing.
pub async fn take_flow(
    conn: &mut Conn<'_>,
    id: &str,
    kind: &str,
    now: DateTime<Utc>,
) -> QueryResult<Option<Flow>> {
    let taken = run!(conn, |c| diesel::delete(
        f::table.filter(f::id.eq(id)).filter(f::kind.eq(kind))
    )
    .returning(Flow::as_returning())
    .get_result(c)
    .await
    .optional())?;
    Ok(taken.filter(|flow| flow.expires_at.0 > now))
}
