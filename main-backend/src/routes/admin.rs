//! Operator endpoints.

use actix_web::web;
use shared_types::SyncReport;

use crate::error::ApiError;
use crate::extractors::OpsCaller;
use crate::sync::reconcile::{ReconcileError, Reconciler};
use crate::AppState;

/// Runs a full reconciliation now and reports what it changed.
pub async fn sync(
    _caller: OpsCaller,
    state: web::Data<AppState>,
) -> Result<web::Json<SyncReport>, ApiError> {
    let reconciler = Reconciler {
        db: &state.db,
        auth: &state.auth,
        validator: &state.validator,
        instance: &state.instance,
    };
    match reconciler.run("manual").await {
        Ok(report) => Ok(web::Json(report)),
        Err(ReconcileError::Busy) => Err(ApiError::conflict(
            "sync_in_progress",
            "a reconciliation is already running; try again when it ends",
        )),
        Err(ReconcileError::Auth(e)) => Err(crate::sync::auth_unavailable(e)),
        Err(ReconcileError::Db(e)) => Err(ApiError::unavailable(format!(
            "reconciliation failed on the database: {e}"
        ))),
    }
}
