//! SQL types that map to native types on PostgreSQL and to text on SQLite.
//!
//! Diesel's own `Uuid`, `Timestamptz` and `Jsonb` exist only for PostgreSQL,
//! so a table using them could not be queried through SQLite. These types
//! carry the right wire type for each backend, which lets one `table!`
//! definition and one query serve both: PostgreSQL gets
//! `uuid`/`timestamptz`/`jsonb` (binary protocol), SQLite gets `TEXT`.
//!
//! SQLite timestamps are written as `YYYY-MM-DDTHH:MM:SS.ffffffZ`: fixed width
//! and always UTC, so text comparison and ordering are time comparison and
//! ordering, and `WHERE expires_at > ?` means the same on both backends.

use chrono::{DateTime, SecondsFormat, Utc};
use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::Text;
use diesel::sqlite::{Sqlite, SqliteValue};
use uuid::Uuid;

/// SQL type of a UUID: `uuid` on PostgreSQL (oid 2950), `TEXT` on SQLite.
#[derive(
    Debug, Clone, Copy, Default, diesel::sql_types::SqlType, diesel::query_builder::QueryId,
)]
#[diesel(postgres_type(oid = 2950, array_oid = 2951))]
#[diesel(sqlite_type(name = "Text"))]
pub struct SqlUuid;

/// SQL type of a UTC instant: `timestamptz` on PostgreSQL (oid 1184), `TEXT` on SQLite.
#[derive(
    Debug, Clone, Copy, Default, diesel::sql_types::SqlType, diesel::query_builder::QueryId,
)]
#[diesel(postgres_type(oid = 1184, array_oid = 1185))]
#[diesel(sqlite_type(name = "Text"))]
pub struct SqlTimestamp;

// Ordered on both backends: timestamptz natively, and the fixed-width UTC
// text on SQLite sorts as time does. Lets `min`/`max` work on timestamps.
impl diesel::sql_types::SqlOrd for SqlTimestamp {}

/// SQL type of a JSON value: `jsonb` on PostgreSQL (oid 3802), `TEXT` on SQLite.
#[derive(
    Debug, Clone, Copy, Default, diesel::sql_types::SqlType, diesel::query_builder::QueryId,
)]
#[diesel(postgres_type(oid = 3802, array_oid = 3807))]
#[diesel(sqlite_type(name = "Text"))]
pub struct SqlJson;

/// A JSON value as stored (newtype for the same reason as `DbUuid`).
#[derive(Debug, Clone, PartialEq, AsExpression, FromSqlRow)]
#[diesel(sql_type = SqlJson)]
pub struct DbJson(pub serde_json::Value);

impl ToSql<SqlJson, Pg> for DbJson {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        <serde_json::Value as ToSql<diesel::sql_types::Jsonb, Pg>>::to_sql(&self.0, out)
    }
}

impl FromSql<SqlJson, Pg> for DbJson {
    fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
        <serde_json::Value as FromSql<diesel::sql_types::Jsonb, Pg>>::from_sql(bytes).map(Self)
    }
}

impl ToSql<SqlJson, Sqlite> for DbJson {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        out.set_value(self.0.to_string());
        Ok(IsNull::No)
    }
}

impl FromSql<SqlJson, Sqlite> for DbJson {
    fn from_sql(value: SqliteValue<'_, '_, '_>) -> deserialize::Result<Self> {
        let text = <String as FromSql<Text, Sqlite>>::from_sql(value)?;
        Ok(Self(serde_json::from_str(&text)?))
    }
}

/// A UUID as stored. A newtype because diesel's blanket impls and the orphan
/// rule leave no way to bind `uuid::Uuid` itself to a type of ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, AsExpression, FromSqlRow)]
#[diesel(sql_type = SqlUuid)]
pub struct DbUuid(pub Uuid);

/// A UTC instant as stored (newtype for the same reason as `DbUuid`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, AsExpression, FromSqlRow)]
#[diesel(sql_type = SqlTimestamp)]
pub struct DbTime(pub DateTime<Utc>);

impl From<Uuid> for DbUuid {
    fn from(u: Uuid) -> Self {
        Self(u)
    }
}

impl From<DateTime<Utc>> for DbTime {
    fn from(t: DateTime<Utc>) -> Self {
        Self(t)
    }
}

impl ToSql<SqlUuid, Pg> for DbUuid {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        <Uuid as ToSql<diesel::sql_types::Uuid, Pg>>::to_sql(&self.0, out)
    }
}

impl FromSql<SqlUuid, Pg> for DbUuid {
    fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
        <Uuid as FromSql<diesel::sql_types::Uuid, Pg>>::from_sql(bytes).map(Self)
    }
}

impl ToSql<SqlUuid, Sqlite> for DbUuid {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        out.set_value(self.0.hyphenated().to_string());
        Ok(IsNull::No)
    }
}

impl FromSql<SqlUuid, Sqlite> for DbUuid {
    fn from_sql(value: SqliteValue<'_, '_, '_>) -> deserialize::Result<Self> {
        let text = <String as FromSql<Text, Sqlite>>::from_sql(value)?;
        Ok(Self(Uuid::parse_str(&text)?))
    }
}

impl ToSql<SqlTimestamp, Pg> for DbTime {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        <DateTime<Utc> as ToSql<diesel::sql_types::Timestamptz, Pg>>::to_sql(&self.0, out)
    }
}

impl FromSql<SqlTimestamp, Pg> for DbTime {
    fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
        <DateTime<Utc> as FromSql<diesel::sql_types::Timestamptz, Pg>>::from_sql(bytes).map(Self)
    }
}

impl ToSql<SqlTimestamp, Sqlite> for DbTime {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        out.set_value(sqlite_timestamp(&self.0));
        Ok(IsNull::No)
    }
}

impl FromSql<SqlTimestamp, Sqlite> for DbTime {
    fn from_sql(value: SqliteValue<'_, '_, '_>) -> deserialize::Result<Self> {
        let text = <String as FromSql<Text, Sqlite>>::from_sql(value)?;
        Ok(Self(
            DateTime::parse_from_rfc3339(&text)?.with_timezone(&Utc),
        ))
    }
}

/// The fixed-width text form used on SQLite.
pub fn sqlite_timestamp(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn sqlite_timestamps_sort_as_text_in_time_order() {
        let a = Utc
            .with_ymd_and_hms(2026, 1, 2, 3, 4, 5)
            .single()
            .expect("valid");
        let b = a + chrono::Duration::microseconds(1);
        let c = a + chrono::Duration::days(400);
        let (ta, tb, tc) = (
            sqlite_timestamp(&a),
            sqlite_timestamp(&b),
            sqlite_timestamp(&c),
        );
        assert_eq!(ta.len(), tb.len());
        assert_eq!(ta.len(), tc.len());
        assert!(ta < tb && tb < tc, "{ta} {tb} {tc}");
        assert_eq!(ta, "2026-01-02T03:04:05.000000Z");
    }
}
