//! `/v1/users/{user_id}/tasks[/{task_id}]`: the caller's tasks.
//!
//! The path names a user, so it is checked first: another user's id is 403
//! `forbidden`. Below that every query filters by the caller, so another
//! user's task is 404, exactly like one that never existed.

use actix_web::{web, HttpResponse};
use shared_types::{Page, Task};
use uuid::Uuid;

use crate::db::tasks;
use crate::domain::business::{page, NewTask, NewTaskBody, PageQuery, TaskPatch, TaskPatchBody};
use crate::error::ApiError;
use crate::extractors::AuthenticatedUser;
use crate::AppState;
use service_kit::http::Json;

/// The caller's id, if the path names the caller.
fn own(auth: &AuthenticatedUser, user_id: Uuid) -> Result<Uuid, ApiError> {
    if auth.user.id.0 != user_id {
        return Err(ApiError::forbidden(
            "forbidden",
            "you can only reach your own tasks: use your own user id in the path",
        ));
    }
    Ok(user_id)
}

fn no_task() -> ApiError {
    ApiError::not_found("no such task")
}

#[utoipa::path(get, path = "/v1/users/{user_id}/tasks", tag = "tasks", params(("user_id" = Uuid, Path, description = "The caller's own user id"), crate::domain::business::PageQuery), responses((status = 200, description = "Newest first", body = Page<Task>)), security(("bearer" = [])))]
pub async fn list(
    auth: AuthenticatedUser,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    query: web::Query<PageQuery>,
) -> Result<web::Json<Page<Task>>, ApiError> {
    let user_id = own(&auth, path.into_inner())?;
    let req = query.parse()?;
    let mut pooled = state.db.get().await?;
    let rows = tasks::page(&mut pooled.conn(), user_id, req).await?;
    Ok(web::Json(page(
        rows,
        req.limit,
        |r| r.id.0,
        tasks::TaskRow::wire,
    )))
}

#[utoipa::path(post, path = "/v1/users/{user_id}/tasks", tag = "tasks", request_body = crate::domain::business::NewTaskBody, params(("user_id" = Uuid, Path, description = "The caller's own user id")), responses((status = 201, description = "Created", body = Task)), security(("bearer" = [])))]
pub async fn create(
    auth: AuthenticatedUser,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    body: Json<NewTaskBody>,
) -> Result<HttpResponse, ApiError> {
    let user_id = own(&auth, path.into_inner())?;
    let new = NewTask::parse(body.into_inner())?;
    let mut pooled = state.db.get().await?;
    let row = tasks::insert(&mut pooled.conn(), user_id, &new).await?;
    Ok(HttpResponse::Created().json(row.wire()))
}

#[utoipa::path(get, path = "/v1/users/{user_id}/tasks/{task_id}", tag = "tasks", params(("user_id" = Uuid, Path, description = "The caller's own user id"), ("task_id" = Uuid, Path, description = "Task id")), responses((status = 200, description = "The task", body = Task)), security(("bearer" = [])))]
pub async fn get(
    auth: AuthenticatedUser,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<web::Json<Task>, ApiError> {
    let (user_id, task_id) = path.into_inner();
    let user_id = own(&auth, user_id)?;
    let mut pooled = state.db.get().await?;
    let row = tasks::find(&mut pooled.conn(), user_id, task_id)
        .await?
        .ok_or_else(no_task)?;
    Ok(web::Json(row.wire()))
}

#[utoipa::path(patch, path = "/v1/users/{user_id}/tasks/{task_id}", tag = "tasks", request_body = crate::domain::business::TaskPatchBody, params(("user_id" = Uuid, Path, description = "The caller's own user id"), ("task_id" = Uuid, Path, description = "Task id")), responses((status = 200, description = "The updated task", body = Task)), security(("bearer" = [])))]
pub async fn patch(
    auth: AuthenticatedUser,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, Uuid)>,
    body: Json<TaskPatchBody>,
) -> Result<web::Json<Task>, ApiError> {
    let (user_id, task_id) = path.into_inner();
    let user_id = own(&auth, user_id)?;
    let patch = TaskPatch::parse(body.into_inner())?;
    let mut pooled = state.db.get().await?;
    let row = tasks::update(&mut pooled.conn(), user_id, task_id, &patch)
        .await?
        .ok_or_else(no_task)?;
    Ok(web::Json(row.wire()))
}

#[utoipa::path(delete, path = "/v1/users/{user_id}/tasks/{task_id}", tag = "tasks", params(("user_id" = Uuid, Path, description = "The caller's own user id"), ("task_id" = Uuid, Path, description = "Task id")), responses((status = 204, description = "Deleted")), security(("bearer" = [])))]
pub async fn delete(
    auth: AuthenticatedUser,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (user_id, task_id) = path.into_inner();
    let user_id = own(&auth, user_id)?;
    let mut pooled = state.db.get().await?;
    if !tasks::delete(&mut pooled.conn(), user_id, task_id).await? {
        return Err(no_task());
    }
    Ok(HttpResponse::NoContent().finish())
}
