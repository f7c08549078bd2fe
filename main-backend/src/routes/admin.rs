//! Operator endpoints.

use actix_web::web;
use shared_types::{Profile, SyncReport};
use uuid::Uuid;

use crate::db::mirror;
use crate::domain::admin_patch::{AdminPatch, AdminPatchBody};
use crate::error::ApiError;
use crate::extractors::{AdminCaller, OpsCaller};
use crate::routes::me::profile;
use crate::sync::reconcile::Reconciler;
use crate::AppState;
use service_kit::http::Json;

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SyncQuery {
    /// Confirms that removing more mirror rows than `SYNC_MAX_DELETES` is
    /// real (scope `admin` only): the users and their business data go.
    #[serde(default)]
    allow_mass_delete: bool,
}

/// Runs a full reconciliation now and reports what it changed.
#[utoipa::path(post, path = "/admin/v1/sync", tag = "admin", params(SyncQuery), responses((status = 200, description = "What the reconciliation changed", body = SyncReport), (status = "4XX", description = "Problem details (RFC 9457); `code` says which; 409 `mass_delete_refused` when the run would remove more than `SYNC_MAX_DELETES` users", body = shared_types::Problem, content_type = "application/problem+json")), security(("service" = [])))]
pub async fn sync(
    caller: OpsCaller,
    state: web::Data<AppState>,
    query: web::Query<SyncQuery>,
) -> Result<web::Json<SyncReport>, ApiError> {
    let allow_mass_delete = query.allow_mass_delete;
    if allow_mass_delete && !caller.0.has_any(&["admin"]) {
        return Err(ApiError::forbidden(
            "forbidden",
            "allow_mass_delete needs a service token with scope admin",
        ));
    }
    let reconciler = Reconciler {
        db: &state.db,
        auth: &state.auth,
        validator: &state.validator,
        metrics: &state.metrics,
        instance: &state.instance,
        max_deletes: state.settings.sync_max_deletes,
        allow_mass_delete,
    };
    let trigger = if allow_mass_delete {
        "manual_mass_delete"
    } else {
        "manual"
    };
    Ok(web::Json(reconciler.run(trigger).await?))
}

/// Sets a user's role, plan tier, permissions, feature flags or tool
/// permissions. Auth-owned fields are not accepted here (unknown fields are
/// 422); they change only through the auth service and the sync path.
#[utoipa::path(patch, path = "/admin/v1/users/{id}", tag = "admin", request_body = crate::domain::admin_patch::AdminPatchBody, params(("id" = Uuid, Path, description = "User id")), responses((status = 200, description = "The updated profile", body = Profile)), security(("service" = [])))]
pub async fn patch_user(
    caller: AdminCaller,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    body: Json<AdminPatchBody>,
) -> Result<web::Json<Profile>, ApiError> {
    let id = path.into_inner();
    let patch = AdminPatch::parse(body.into_inner())?;
    let mut pooled = state.db.get().await?;
    let user = mirror::update_admin_fields(&mut pooled.conn(), id, &patch)
        .await?
        .ok_or_else(|| ApiError::not_found("no such user in the mirror"))?;
    state.validator.forget_user(id);
    // The audit record of this change; the auth service's trail covers
    // only its own data.
    tracing::info!(
        user_id = %id,
        by = %caller.describe(),
        fields = ?patch.fields(),
        "administrator changed a user's business fields"
    );
    Ok(web::Json(profile(&user)))
}
