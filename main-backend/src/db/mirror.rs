//! `userbase`: the mirror of the auth service's users, plus business fields.
//!
//! This module is the sync path: the only code that writes auth-owned
//! columns (email, email_verified, mfa_enabled, account_locked and the
//! `auth_*` bookkeeping), and it writes them only from a `UserRecord` whose
//! `version` is newer than the row's. Every update is guarded in SQL
//! (`WHERE auth_version < new`), so a webhook, a lazy fetch and a
//! reconciliation racing on one user cannot move it backwards.

use std::collections::{HashMap, HashSet};

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use service_kit::run;
use shared_types::{IdRange, RangeDigest, UserRecord};
use uuid::Uuid;

use super::schema::{user_tombstones as tomb, userbase as ub};
use super::sql_types::{DbTime, DbUuid};
use super::Conn;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = ub)]
pub struct MirrorUser {
    pub id: DbUuid,
    pub email: String,
    pub email_verified: bool,
    pub mfa_enabled: bool,
    pub account_locked: bool,
    pub auth_version: i64,
    pub full_name: Option<String>,
    pub picture: Option<String>,
    pub role: String,
    pub plan_tier: String,
    pub permissions: String,
    pub feature_flags: String,
    pub tool_permissions: String,
    pub created_at: DbTime,
    pub updated_at: DbTime,
}

/// What applying a batch of records did, per record.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    pub created: i64,
    pub updated: i64,
    pub unchanged: i64,
    /// Ids created or updated.
    pub changed: Vec<Uuid>,
    /// Ids whose record is older than the mirror's row or its tombstone:
    /// ignored here, candidates for `rewind_records` (none, normally).
    pub behind: Vec<Uuid>,
}

#[derive(Insertable)]
#[diesel(table_name = ub)]
struct NewRow<'a> {
    id: DbUuid,
    email: &'a str,
    email_verified: bool,
    mfa_enabled: bool,
    account_locked: bool,
    auth_version: i64,
    auth_created_at: DbTime,
    auth_updated_at: DbTime,
    // Taken from the record once, at creation; owned here afterwards.
    full_name: Option<&'a str>,
    created_at: DbTime,
    updated_at: DbTime,
    synced_at: DbTime,
}

pub async fn find(conn: &mut Conn<'_>, id: Uuid) -> QueryResult<Option<MirrorUser>> {
    run!(conn, |c| ub::table
        .find(DbUuid(id))
        .select(MirrorUser::as_select())
        .first(c)
        .await
        .optional())
}

pub async fn count(conn: &mut Conn<'_>) -> QueryResult<i64> {
    run!(conn, |c| ub::table.count().get_result(c).await)
}

/// Applies auth records: creates missing rows, updates rows whose version
/// is older, leaves the rest. Records of deleted users (a tombstone at or
/// above their version) are ignored. Call inside a transaction.
pub async fn apply_records(conn: &mut Conn<'_>, records: &[UserRecord]) -> QueryResult<Applied> {
    let mut applied = Applied::default();
    if records.is_empty() {
        return Ok(applied);
    }
    let ids: Vec<DbUuid> = records.iter().map(|r| DbUuid(r.id)).collect();
    let local: HashMap<Uuid, i64> = run!(conn, |c| ub::table
        .filter(ub::id.eq_any(&ids))
        .select((ub::id, ub::auth_version))
        .load::<(DbUuid, i64)>(c)
        .await)?
    .into_iter()
    .map(|(id, v)| (id.0, v))
    .collect();
    let tombstones: HashMap<Uuid, i64> = run!(conn, |c| tomb::table
        .filter(tomb::id.eq_any(&ids))
        .select((tomb::id, tomb::version))
        .load::<(DbUuid, i64)>(c)
        .await)?
    .into_iter()
    .map(|(id, v)| (id.0, v))
    .collect();
    let now = DbTime(super::now());
    let mut to_insert = Vec::new();
    let mut to_update = Vec::new();
    for r in records {
        if tombstones.get(&r.id).is_some_and(|&v| v >= r.version) {
            applied.unchanged += 1;
            applied.behind.push(r.id);
            continue;
        }
        match local.get(&r.id) {
            None => to_insert.push(r),
            Some(&v) if r.version > v => to_update.push(r),
            Some(&v) => {
                applied.unchanged += 1;
                if r.version < v {
                    applied.behind.push(r.id);
                }
            }
        }
    }
    if !to_insert.is_empty() {
        let rows: Vec<NewRow<'_>> = to_insert
            .iter()
            .map(|r| NewRow {
                id: DbUuid(r.id),
                email: &r.email,
                email_verified: r.email_verified,
                mfa_enabled: r.mfa_enabled,
                account_locked: r.account_locked,
                auth_version: r.version,
                auth_created_at: DbTime(r.created_at),
                auth_updated_at: DbTime(r.updated_at),
                full_name: r.full_name.as_deref(),
                created_at: now,
                updated_at: now,
                synced_at: now,
            })
            .collect();
        // One multi-row INSERT on PostgreSQL (a round trip per row would
        // dominate a large reconciliation); row by row on SQLite, where
        // diesel has no multi-row insert and a statement costs microseconds.
        let inserted: Vec<DbUuid> = match conn {
            Conn::Pg(c) => {
                diesel::insert_into(ub::table)
                    .values(&rows)
                    .on_conflict(ub::id)
                    .do_nothing()
                    .returning(ub::id)
                    .get_results(&mut **c)
                    .await?
            }
            Conn::Sqlite(c) => {
                let mut ids = Vec::with_capacity(rows.len());
                for row in &rows {
                    let id: Option<DbUuid> = diesel::insert_into(ub::table)
                        .values(row)
                        .on_conflict(ub::id)
                        .do_nothing()
                        .returning(ub::id)
                        .get_result(&mut **c)
                        .await
                        .optional()?;
                    ids.extend(id);
                }
                ids
            }
        };
        applied.created += inserted.len() as i64;
        applied.changed.extend(inserted.iter().map(|id| id.0));
        // Rows created meanwhile by a racing writer: fall back to the
        // guarded update, which applies only if this record is newer.
        let inserted: HashSet<Uuid> = inserted.into_iter().map(|id| id.0).collect();
        to_update.extend(to_insert.into_iter().filter(|r| !inserted.contains(&r.id)));
    }
    for r in to_update {
        if update_auth_fields(conn, r, now, Replace::older_than(r)).await? {
            applied.updated += 1;
            applied.changed.push(r.id);
        } else {
            applied.unchanged += 1;
        }
    }
    Ok(applied)
}

/// Which rows `update_auth_fields` may overwrite.
struct Replace {
    /// Versions in `below`'s range only: older than the record for a
    /// normal update, exactly the one read for a rewind.
    versions: std::ops::Range<i64>,
    /// Rows last synced before this instant only.
    synced_before: DbTime,
}

impl Replace {
    /// The normal case: any row older than the record.
    fn older_than(r: &UserRecord) -> Self {
        Self {
            versions: i64::MIN..r.version,
            // Any row: the end of year 9999 (fixed-width, so it also
            // compares right as SQLite's text form, which chrono's MAX_UTC
            // with its `+` sign would not).
            synced_before: DbTime(
                chrono::DateTime::<chrono::Utc>::from_timestamp(253_402_300_799, 0)
                    .unwrap_or_default(),
            ),
        }
    }
}

/// The one write of auth-owned fields, guarded in SQL by `replace`.
async fn update_auth_fields(
    conn: &mut Conn<'_>,
    r: &UserRecord,
    now: DbTime,
    replace: Replace,
) -> QueryResult<bool> {
    let n = run!(conn, |c| diesel::update(
        ub::table
            .filter(ub::id.eq(DbUuid(r.id)))
            .filter(ub::auth_version.ge(replace.versions.start))
            .filter(ub::auth_version.lt(replace.versions.end))
            .filter(ub::synced_at.lt(replace.synced_before))
    )
    .set((
        ub::email.eq(&r.email),
        ub::email_verified.eq(r.email_verified),
        ub::mfa_enabled.eq(r.mfa_enabled),
        ub::account_locked.eq(r.account_locked),
        ub::auth_version.eq(r.version),
        ub::auth_updated_at.eq(DbTime(r.updated_at)),
        ub::updated_at.eq(now),
        ub::synced_at.eq(now),
    ))
    .execute(c)
    .await)?;
    Ok(n == 1)
}

/// After the auth database was restored to an earlier point, its versions
/// are lower than the mirror's, and `apply_records` (newer only) would
/// ignore the truth for good. A reconciliation page is a full answer at
/// `fetched_at`: a mirror row with a higher version that nothing wrote
/// since then (so no webhook raced the page) can only mean the auth
/// service went back in time, and the mirror follows it down. The same for
/// a user the mirror saw deleted before the page and the auth service
/// lists again: the tombstone goes and the row comes back (its business
/// data went with the deletion). Returns the ids moved back. Call inside
/// the transaction that applied the page.
pub async fn rewind_records(
    conn: &mut Conn<'_>,
    records: &[UserRecord],
    fetched_at: chrono::DateTime<chrono::Utc>,
) -> QueryResult<Vec<Uuid>> {
    if records.is_empty() {
        return Ok(Vec::new());
    }
    let before = DbTime(fetched_at);
    let ids: Vec<DbUuid> = records.iter().map(|r| DbUuid(r.id)).collect();
    let ahead: HashMap<Uuid, i64> = run!(conn, |c| ub::table
        .filter(ub::id.eq_any(&ids))
        .filter(ub::synced_at.lt(before))
        .select((ub::id, ub::auth_version))
        .load::<(DbUuid, i64)>(c)
        .await)?
    .into_iter()
    .map(|(id, v)| (id.0, v))
    .collect();
    let buried: HashMap<Uuid, i64> = run!(conn, |c| tomb::table
        .filter(tomb::id.eq_any(&ids))
        .filter(tomb::deleted_at.lt(before))
        .select((tomb::id, tomb::version))
        .load::<(DbUuid, i64)>(c)
        .await)?
    .into_iter()
    .map(|(id, v)| (id.0, v))
    .collect();
    let now = DbTime(super::now());
    let mut moved = Vec::new();
    for r in records {
        if let Some(&local) = ahead.get(&r.id).filter(|v| **v > r.version) {
            // Compare-and-set: a webhook that wrote meanwhile wins.
            let replace = Replace {
                versions: local..local + 1,
                synced_before: before,
            };
            if update_auth_fields(conn, r, now, replace).await? {
                moved.push(r.id);
            }
        } else if buried.get(&r.id).is_some_and(|v| *v >= r.version) {
            let n = run!(conn, |c| diesel::delete(
                tomb::table
                    .filter(tomb::id.eq(DbUuid(r.id)))
                    .filter(tomb::deleted_at.lt(before))
            )
            .execute(c)
            .await)?;
            if n == 1 && apply_records(conn, std::slice::from_ref(r)).await?.created == 1 {
                moved.push(r.id);
            }
        }
    }
    Ok(moved)
}

/// Removes users and leaves tombstones at `version`, so older events for
/// them are refused later. Returns how many mirror rows were deleted.
pub async fn delete_users(conn: &mut Conn<'_>, users: &[(Uuid, i64)]) -> QueryResult<i64> {
    if users.is_empty() {
        return Ok(0);
    }
    let now = DbTime(super::now());
    let mut deleted = 0;
    for &(id, version) in users {
        // The newest deletion version wins: a replayed, older `user.deleted`
        // must not lower the tombstone.
        let existing: Option<i64> = run!(conn, |c| tomb::table
            .find(DbUuid(id))
            .select(tomb::version)
            .first(c)
            .await
            .optional())?;
        match existing {
            None => {
                run!(conn, |c| diesel::insert_into(tomb::table)
                    .values((
                        tomb::id.eq(DbUuid(id)),
                        tomb::version.eq(version),
                        tomb::deleted_at.eq(now)
                    ))
                    .on_conflict(tomb::id)
                    .do_nothing()
                    .execute(c)
                    .await)?;
            }
            Some(v) if v < version => {
                run!(conn, |c| diesel::update(tomb::table.find(DbUuid(id)))
                    .set(tomb::version.eq(version))
                    .execute(c)
                    .await)?;
            }
            Some(_) => {}
        }
        deleted += run!(conn, |c| diesel::delete(
            ub::table
                .filter(ub::id.eq(DbUuid(id)))
                .filter(ub::auth_version.le(version))
        )
        .execute(c)
        .await)? as i64;
    }
    Ok(deleted)
}

/// Mirror rows with `after < id <= upto` (`upto = None`: to the end) last
/// synced before `synced_before`: what one page of the auth service's list,
/// fetched at `synced_before`, can prove deleted. A row written after the
/// page was fetched (a webhook for a new user) is not judged by it.
pub async fn stale_in_range(
    conn: &mut Conn<'_>,
    after: Option<Uuid>,
    upto: Option<Uuid>,
    synced_before: chrono::DateTime<chrono::Utc>,
) -> QueryResult<Vec<(Uuid, i64)>> {
    let after = DbUuid(after.unwrap_or(Uuid::nil()));
    let before = DbTime(synced_before);
    let rows: Vec<(DbUuid, i64)> = match upto {
        Some(upto) => run!(conn, |c| ub::table
            .filter(ub::id.gt(after))
            .filter(ub::id.le(DbUuid(upto)))
            .filter(ub::synced_at.lt(before))
            .select((ub::id, ub::auth_version))
            .load(c)
            .await)?,
        None => run!(conn, |c| ub::table
            .filter(ub::id.gt(after))
            .filter(ub::synced_at.lt(before))
            .select((ub::id, ub::auth_version))
            .load(c)
            .await)?,
    };
    Ok(rows.into_iter().map(|(id, v)| (id.0, v)).collect())
}

/// Those of `users` whose rows were last synced before `synced_before`:
/// a row written since (a webhook re-created or updated it) is not judged
/// by an answer older than it.
pub async fn still_stale(
    conn: &mut Conn<'_>,
    users: &[(Uuid, i64)],
    synced_before: chrono::DateTime<chrono::Utc>,
) -> QueryResult<Vec<(Uuid, i64)>> {
    let mut out = Vec::with_capacity(users.len());
    for chunk in users.chunks(500) {
        let ids: Vec<DbUuid> = chunk.iter().map(|(id, _)| DbUuid(*id)).collect();
        let stale: HashSet<Uuid> = run!(conn, |c| ub::table
            .filter(ub::id.eq_any(&ids))
            .filter(ub::synced_at.lt(DbTime(synced_before)))
            .select(ub::id)
            .load::<DbUuid>(c)
            .await)?
        .into_iter()
        .map(|id| id.0)
        .collect();
        out.extend(chunk.iter().filter(|(id, _)| stale.contains(id)).copied());
    }
    Ok(out)
}

/// Changes the profile fields a user may edit (main-owned only).
pub async fn update_profile(
    conn: &mut Conn<'_>,
    id: Uuid,
    full_name: Option<Option<&str>>,
    picture: Option<Option<&str>>,
) -> QueryResult<Option<MirrorUser>> {
    let now = DbTime(super::now());
    if let Some(v) = full_name {
        run!(conn, |c| diesel::update(ub::table.find(DbUuid(id)))
            .set((ub::full_name.eq(v), ub::updated_at.eq(now)))
            .execute(c)
            .await)?;
    }
    if let Some(v) = picture {
        run!(conn, |c| diesel::update(ub::table.find(DbUuid(id)))
            .set((ub::picture.eq(v), ub::updated_at.eq(now)))
            .execute(c)
            .await)?;
    }
    find(conn, id).await
}

/// The administrator's fields, in one statement; `None` fields are left alone.
#[derive(AsChangeset)]
#[diesel(table_name = ub)]
struct AdminChanges<'a> {
    role: Option<&'a str>,
    plan_tier: Option<&'a str>,
    permissions: Option<&'a str>,
    feature_flags: Option<&'a str>,
    tool_permissions: Option<&'a str>,
    updated_at: DbTime,
}

/// Applies a validated admin patch; `None` when the user is not in the mirror.
pub async fn update_admin_fields(
    conn: &mut Conn<'_>,
    id: Uuid,
    patch: &crate::domain::admin_patch::AdminPatch,
) -> QueryResult<Option<MirrorUser>> {
    let changes = AdminChanges {
        role: patch.role.as_deref(),
        plan_tier: patch.plan_tier.as_deref(),
        permissions: patch.permissions.as_deref(),
        feature_flags: patch.feature_flags.as_deref(),
        tool_permissions: patch.tool_permissions.as_deref(),
        updated_at: DbTime(super::now()),
    };
    let changed = run!(conn, |c| diesel::update(ub::table.find(DbUuid(id)))
        .set(&changes)
        .execute(c)
        .await)?;
    if changed == 0 {
        return Ok(None);
    }
    find(conn, id).await
}

/// The mirror as digests see it (service-kit `db::digest`).
const DIGEST_ROWS: service_kit::db::digest::Rows = service_kit::db::digest::Rows {
    table: "userbase",
    id: "id",
    version: "auth_version",
};

/// The mirror cut into ranges of `every` users, covering all ids.
pub async fn digest_ranges(conn: &mut Conn<'_>, every: i64) -> QueryResult<Vec<IdRange>> {
    service_kit::db::digest::ranges_of(conn, DIGEST_ROWS, every).await
}

/// The mirror's digest of each of `ranges`, in order.
pub async fn digests(conn: &mut Conn<'_>, ranges: &[IdRange]) -> QueryResult<Vec<RangeDigest>> {
    service_kit::db::digest::of_ranges(conn, DIGEST_ROWS, ranges).await
}
