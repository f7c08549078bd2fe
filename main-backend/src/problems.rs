//! Every error the main backend's operations and domain types return,
//! answered as problem details, in one place. The operations know no HTTP;
//! handlers return `ApiError` and `?` converts through these.

use actix_web::http::StatusCode;

use crate::auth_client::AuthUnavailable;
use crate::domain::profile::PatchError;
use crate::error::ApiError;
use crate::sync::reconcile::ReconcileError;
use crate::sync::SyncError;

/// The auth service could not answer: 503, retryable. Fail closed.
impl From<AuthUnavailable> for ApiError {
    fn from(e: AuthUnavailable) -> Self {
        tracing::warn!(error = %e, "auth service unavailable");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "auth_unavailable",
            "the auth service cannot be reached; retry shortly",
        )
    }
}

impl From<SyncError> for ApiError {
    fn from(e: SyncError) -> Self {
        match e {
            SyncError::Malformed(invalid) => invalid.into(),
            SyncError::Auth(e) => e.into(),
            SyncError::Store(e) => e.into(),
        }
    }
}

impl From<PatchError> for ApiError {
    fn from(e: PatchError) -> Self {
        match e {
            PatchError::AuthOwned { .. } => ApiError::validation("auth_owned_field", e.to_string()),
            PatchError::AdminOwned(_) => ApiError::forbidden("forbidden", e.to_string()),
            PatchError::Invalid(invalid) => invalid.into(),
        }
    }
}

impl From<ReconcileError> for ApiError {
    fn from(e: ReconcileError) -> Self {
        match e {
            ReconcileError::Busy => ApiError::conflict(
                "sync_in_progress",
                "a reconciliation is already running; try again when it ends",
            ),
            ReconcileError::Auth(e) => e.into(),
            // The cause was logged by the run; the caller gets no database text.
            ReconcileError::Db(_) => {
                ApiError::unavailable("reconciliation failed on the database; retry shortly")
            }
            ReconcileError::MassDeleteRefused {
                would_remove,
                limit,
            } => ApiError::conflict(
                "mass_delete_refused",
                format!(
                    "the auth service's answer would remove {would_remove} users (limit {limit}, \
                     SYNC_MAX_DELETES); nothing was removed. Check AUTH_SERVICE_URL and the auth \
                     database; if the removal is real, repeat with ?allow_mass_delete=true"
                ),
            ),
        }
    }
}
