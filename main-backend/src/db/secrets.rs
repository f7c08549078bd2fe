//! Queries on `secrets`: ciphertexts only (see `crate::crypto`).

use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::RunQueryDsl;
use service_kit::run;
use uuid::Uuid;

use super::schema::secrets as s;
use super::sql_types::{DbTime, DbUuid};
use super::Conn;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = s)]
pub struct SecretRow {
    pub id: DbUuid,
    pub user_id: DbUuid,
    pub name: String,
    pub ciphertext: Vec<u8>,
    pub nonce: Vec<u8>,
    pub hint: Option<String>,
    pub created_at: DbTime,
    pub updated_at: DbTime,
}

/// The caller's secrets by name (ciphertexts included, for server-side use;
/// routes show only name, hint and time).
pub async fn list(conn: &mut Conn<'_>, user_id: Uuid) -> QueryResult<Vec<SecretRow>> {
    run!(conn, |c| s::table
        .filter(s::user_id.eq(DbUuid(user_id)))
        .select(SecretRow::as_select())
        .order(s::name.asc())
        .load(c)
        .await)
}

pub async fn find(
    conn: &mut Conn<'_>,
    user_id: Uuid,
    name: &str,
) -> QueryResult<Option<SecretRow>> {
    run!(conn, |c| s::table
        .filter(s::user_id.eq(DbUuid(user_id)))
        .filter(s::name.eq(name))
        .select(SecretRow::as_select())
        .first(c)
        .await
        .optional())
}

/// Stores a sealed value under (user, name), replacing any earlier one.
pub async fn put(
    conn: &mut Conn<'_>,
    user_id: Uuid,
    name: &str,
    sealed: (Vec<u8>, Vec<u8>),
    hint: Option<&str>,
) -> QueryResult<()> {
    let now = DbTime(super::now());
    let (ciphertext, nonce) = sealed;
    run!(conn, |c| diesel::insert_into(s::table)
        .values((
            s::id.eq(DbUuid(Uuid::now_v7())),
            s::user_id.eq(DbUuid(user_id)),
            s::name.eq(name),
            s::ciphertext.eq(&ciphertext),
            s::nonce.eq(&nonce),
            s::hint.eq(hint),
            s::created_at.eq(now),
            s::updated_at.eq(now),
        ))
        .on_conflict((s::user_id, s::name))
        .do_update()
        .set((
            s::ciphertext.eq(excluded(s::ciphertext)),
            s::nonce.eq(excluded(s::nonce)),
            s::hint.eq(excluded(s::hint)),
            s::updated_at.eq(excluded(s::updated_at)),
        ))
        .execute(c)
        .await)?;
    Ok(())
}

/// Whether the caller had a secret of that name.
pub async fn delete(conn: &mut Conn<'_>, user_id: Uuid, name: &str) -> QueryResult<bool> {
    let n = run!(conn, |c| diesel::delete(
        s::table
            .filter(s::user_id.eq(DbUuid(user_id)))
            .filter(s::name.eq(name))
    )
    .execute(c)
    .await)?;
    Ok(n > 0)
}
