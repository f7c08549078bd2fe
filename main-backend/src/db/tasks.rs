//! Queries on `tasks`. Every one filters by the owner: a task of another
//! user is indistinguishable from one that does not exist.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use service_kit::run;
use uuid::Uuid;

use super::schema::tasks as t;
use super::sql_types::{DbTime, DbUuid};
use super::Conn;
use crate::domain::business::{NewTask, PageRequest, TaskPatch};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = t)]
pub struct TaskRow {
    pub id: DbUuid,
    pub user_id: DbUuid,
    pub title: String,
    pub description: Option<String>,
    pub completed: bool,
    pub created_at: DbTime,
    pub updated_at: DbTime,
}

impl TaskRow {
    pub fn wire(&self) -> shared_types::Task {
        shared_types::Task {
            id: self.id.0,
            title: self.title.clone(),
            description: self.description.clone(),
            completed: self.completed,
            created_at: self.created_at.0,
            updated_at: self.updated_at.0,
        }
    }
}

pub async fn insert(conn: &mut Conn<'_>, user_id: Uuid, new: &NewTask) -> QueryResult<TaskRow> {
    let now = DbTime(super::now());
    let row = TaskRow {
        id: DbUuid(Uuid::now_v7()),
        user_id: DbUuid(user_id),
        title: new.title.clone(),
        description: new.description.clone(),
        completed: new.completed,
        created_at: now,
        updated_at: now,
    };
    run!(conn, |c| diesel::insert_into(t::table)
        .values(&row)
        .execute(c)
        .await)?;
    Ok(row)
}

pub async fn page(
    conn: &mut Conn<'_>,
    user_id: Uuid,
    req: PageRequest,
) -> QueryResult<Vec<TaskRow>> {
    owned_page!(conn, t, TaskRow, user_id, req)
}

pub async fn find(conn: &mut Conn<'_>, user_id: Uuid, id: Uuid) -> QueryResult<Option<TaskRow>> {
    run!(conn, |c| t::table
        .filter(t::id.eq(DbUuid(id)))
        .filter(t::user_id.eq(DbUuid(user_id)))
        .select(TaskRow::as_select())
        .first(c)
        .await
        .optional())
}

#[derive(AsChangeset)]
#[diesel(table_name = t)]
struct Changes<'a> {
    title: Option<&'a str>,
    description: Option<Option<&'a str>>,
    completed: Option<bool>,
    updated_at: DbTime,
}

/// `None` when the caller has no such task.
pub async fn update(
    conn: &mut Conn<'_>,
    user_id: Uuid,
    id: Uuid,
    patch: &TaskPatch,
) -> QueryResult<Option<TaskRow>> {
    let changes = Changes {
        title: patch.title.as_deref(),
        description: patch.description.as_ref().map(Option::as_deref),
        completed: patch.completed,
        updated_at: DbTime(super::now()),
    };
    run!(conn, |c| diesel::update(
        t::table
            .filter(t::id.eq(DbUuid(id)))
            .filter(t::user_id.eq(DbUuid(user_id)))
    )
    .set(&changes)
    .returning(TaskRow::as_returning())
    .get_result(c)
    .await
    .optional())
}

/// Whether the caller had such a task.
pub async fn delete(conn: &mut Conn<'_>, user_id: Uuid, id: Uuid) -> QueryResult<bool> {
    let n = run!(conn, |c| diesel::delete(
        t::table
            .filter(t::id.eq(DbUuid(id)))
            .filter(t::user_id.eq(DbUuid(user_id)))
    )
    .execute(c)
    .await)?;
    Ok(n > 0)
}
