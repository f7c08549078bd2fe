//! Digests of user id ranges, for reconciliation whose cost grows with the
//! drift rather than the user count: both services sum, over a range of
//! ids, a term of each row's id and version, and only ranges whose
//! `(count, sum)` differ are looked at row by row.
//!
//! The term is `id_hash(id) + version * 1_000_003`, where `id_hash` is the
//! id's low 31 bits (random in a UUIDv7 or v4). A changed version moves the
//! sum by a multiple of 1,000,003; a user swapped for another moves it by
//! the difference of two random 31-bit numbers; so a change hides only by
//! an exact arithmetic coincidence with another change in the same range.
//!
//! `id_hash` is an SQL function on both backends: PostgreSQL gets it from
//! a migration (`CREATE FUNCTION id_hash(uuid)`, from the id's bytes:
//! three times cheaper than going through its text), SQLite from
//! [`register_sqlite`] on every connection (ids are hyphenated text there).
//!
//! Ranges are cut by the data, not by id width: user ids are UUIDv7, whose
//! first 48 bits are a timestamp, so equal-width cuts of the id space would
//! put every user in one part. [`boundaries`] takes every n-th id of one
//! side; the other side is asked for the same ranges.

use diesel::sql_types::{Array, BigInt};
use diesel::QueryResult;
use diesel_async::RunQueryDsl;
use shared_types::{IdRange, RangeDigest};
use uuid::Uuid;

use super::{Conn, DbUuid, SqlUuid};

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

/// The ids of a table, for the queries below: a table and its id and
/// version columns (names written in the code, never from a request).
#[derive(Debug, Clone, Copy)]
pub struct Rows {
    pub table: &'static str,
    pub id: &'static str,
    pub version: &'static str,
}

#[derive(diesel::QueryableByName)]
struct Boundary {
    #[diesel(sql_type = SqlUuid)]
    id: DbUuid,
}

#[derive(diesel::QueryableByName)]
struct Digest {
    #[diesel(sql_type = BigInt)]
    count: i64,
    #[diesel(sql_type = BigInt)]
    sum: i64,
}

/// Ranges of `every` rows each (the last may hold fewer), covering the
/// whole id space: the first starts at the beginning, the last runs to the
/// end, so ids the other side has beyond ours fall in one of them. One
/// ordered pass over the id index. No rows: one range, everything.
pub async fn ranges_of(conn: &mut Conn<'_>, rows: Rows, every: i64) -> QueryResult<Vec<IdRange>> {
    let Rows { table, id, .. } = rows;
    let every = every.max(1);
    let query = diesel::sql_query(format!(
        "SELECT {id} AS id FROM (SELECT {id}, ROW_NUMBER() OVER (ORDER BY {id}) AS rn FROM {table}) x \
         WHERE rn % {every} = 0 ORDER BY {id}"
    ));
    let cuts: Vec<Boundary> = match conn {
        Conn::Pg(c) => query.load(&mut **c).await?,
        Conn::Sqlite(c) => query.load(&mut **c).await?,
    };
    let mut ranges = Vec::with_capacity(cuts.len() + 1);
    let mut after = None;
    for cut in cuts {
        ranges.push(IdRange {
            after,
            upto: Some(cut.id.0),
        });
        after = Some(cut.id.0);
    }
    ranges.push(IdRange { after, upto: None });
    Ok(ranges)
}

/// The digest of each of `ranges`, in order. PostgreSQL answers them all
/// in one statement (one index descent per range, one round trip: a
/// managed database is a millisecond away); SQLite, in process, one
/// statement per range. On PostgreSQL each range is aggregated on its own
/// (`LATERAL`): a join of all ranges with the table, grouped afterwards,
/// was estimated so costly that JIT compilation alone took 0.3 s.
pub async fn of_ranges(
    conn: &mut Conn<'_>,
    rows: Rows,
    ranges: &[IdRange],
) -> QueryResult<Vec<RangeDigest>> {
    let Rows { table, id, version } = rows;
    let sum = sum_sql(&format!("t.{id}"), &format!("t.{version}"));
    // An open end is the smallest or largest UUID: no real id is either,
    // and both compare the same way as UUIDs and as hyphenated text.
    let lo = |r: &IdRange| DbUuid(r.after.unwrap_or(Uuid::nil()));
    let hi = |r: &IdRange| DbUuid(r.upto.unwrap_or(Uuid::max()));
    let digests: Vec<Digest> = match conn {
        Conn::Pg(c) => {
            diesel::sql_query(format!(
                "SELECT d.count, d.sum FROM unnest($1, $2) WITH ORDINALITY AS r(lo, hi, n) \
                 CROSS JOIN LATERAL (SELECT COUNT(*) AS count, {sum} AS sum FROM {table} t \
                 WHERE t.{id} > r.lo AND t.{id} <= r.hi) d ORDER BY r.n"
            ))
            .bind::<Array<SqlUuid>, _>(ranges.iter().map(lo).collect::<Vec<_>>())
            .bind::<Array<SqlUuid>, _>(ranges.iter().map(hi).collect::<Vec<_>>())
            .load(&mut **c)
            .await?
        }
        Conn::Sqlite(c) => {
            let statement =
                format!("SELECT COUNT(*) AS count, {sum} AS sum FROM {table} t WHERE t.{id} > ? AND t.{id} <= ?");
            let mut out = Vec::with_capacity(ranges.len());
            for range in ranges {
                out.push(
                    diesel::sql_query(&statement)
                        .bind::<SqlUuid, _>(lo(range))
                        .bind::<SqlUuid, _>(hi(range))
                        .get_result(&mut **c)
                        .await?,
                );
            }
            out
        }
    };
    Ok(digests
        .into_iter()
        .map(|d| RangeDigest {
            count: d.count,
            sum: d.sum,
        })
        .collect())
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
