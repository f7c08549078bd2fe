//! Digests of user id ranges, for reconciliation whose cost grows with the
//! drift rather than the user count: both services sum, over a range of
//! ids, a term of each row's id and version in one indexed query, and only
//! ranges whose `(count, sum)` differ are looked at row by row.
//!
//! The term is `id_hash(id) + version * 1_000_003`, where `id_hash` is the
//! id's low 31 bits (random in a UUIDv7 or v4). A changed version moves the
//! sum by a multiple of 1,000,003; a user swapped for another moves it by
//! the difference of two random 31-bit numbers; so a change hides only by
//! an exact arithmetic coincidence with another change in the same range.
//!
//! `id_hash` is an SQL function on both backends: PostgreSQL gets it from
//! a migration (`CREATE FUNCTION id_hash(uuid)`), SQLite from
//! [`register_sqlite`] on every connection (ids are hyphenated text there).

use uuid::Uuid;

/// What a row adds to its range's digest, computed in Rust (tests, and
/// what the SQL functions must agree with).
pub fn id_hash(id: &Uuid) -> i64 {
    (id.as_u128() as u64 & 0x7fff_ffff) as i64
}

/// The version's weight in a row's term.
pub const VERSION_WEIGHT: i64 = 1_000_003;

/// The SQL that sums a range's terms, for ids in `id` and versions in
/// `version` (column names), as a non-null BIGINT.
pub fn sum_sql(id: &str, version: &str) -> String {
    format!("CAST(COALESCE(SUM(id_hash({id}) + {version} * {VERSION_WEIGHT}), 0) AS BIGINT)")
}

diesel::define_sql_function! {
    /// `id_hash` as SQLite sees it: the id is hyphenated text.
    #[sql_name = "id_hash"]
    fn id_hash_text(id: diesel::sql_types::Text) -> diesel::sql_types::BigInt;
}

/// Registers `id_hash` on a SQLite connection. A text that is not a UUID
/// hashes to -1, which no real id gives.
pub fn register_sqlite(conn: &mut diesel::SqliteConnection) -> diesel::QueryResult<()> {
    id_hash_text_utils::register_impl(conn, |id: String| {
        Uuid::parse_str(&id).map_or(-1, |id| id_hash(&id))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_the_low_31_bits() {
        let id = Uuid::parse_str("01234567-89ab-7def-8123-456789abcdef").expect("uuid");
        assert_eq!(id_hash(&id), 0x89ab_cdef & 0x7fff_ffff);
    }
}
