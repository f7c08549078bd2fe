//! Every error the auth service's operations return, answered as problem
//! details, in one place. The operations (`services`, `attempts`) know no
//! HTTP; handlers return `ApiError` and `?` converts through these.

use crate::attempts::AttemptError;
use crate::error::ApiError;
use crate::services::sessions::RefreshError;
use crate::services::sign_in::SignInError;
use crate::services::sign_up::SignUpError;
use crate::services::Fault;

/// 503 when the store is away, 500 otherwise; the cause goes to the log.
impl From<Fault> for ApiError {
    fn from(e: Fault) -> Self {
        match e {
            Fault::Store(e) => e.into(),
            Fault::Internal(e) => ApiError::internal(e),
        }
    }
}

/// 429 `too_many_attempts` with Retry-After.
impl From<AttemptError> for ApiError {
    fn from(e: AttemptError) -> Self {
        match e {
            AttemptError::TooMany { retry_after } => {
                ApiError::too_many("too_many_attempts", retry_after, e.to_string())
            }
            AttemptError::Fault(f) => f.into(),
        }
    }
}

impl From<SignUpError> for ApiError {
    fn from(e: SignUpError) -> Self {
        match e {
            SignUpError::Invalid(invalid) => invalid.into(),
            SignUpError::EmailTaken => ApiError::conflict("email_taken", e.to_string()),
            SignUpError::Fault(f) => f.into(),
        }
    }
}

impl From<SignInError> for ApiError {
    fn from(e: SignInError) -> Self {
        match e {
            SignInError::InvalidCredentials => {
                ApiError::unauthorized("invalid_credentials", e.to_string())
            }
            SignInError::TooManyAttempts { retry_after } => {
                ApiError::too_many("too_many_attempts", retry_after, e.to_string())
            }
            SignInError::AccountLocked => ApiError::forbidden("account_locked", e.to_string()),
            // Both ask for the second factor; the detail says which.
            SignInError::MfaRequired | SignInError::WrongSecondFactor => {
                ApiError::unauthorized("mfa_required", e.to_string())
            }
            SignInError::Fault(f) => f.into(),
        }
    }
}

impl From<RefreshError> for ApiError {
    fn from(e: RefreshError) -> Self {
        match e {
            RefreshError::Invalid => ApiError::unauthorized("invalid_refresh_token", e.to_string()),
            RefreshError::Reused => ApiError::unauthorized("refresh_token_reused", e.to_string()),
            RefreshError::Fault(f) => f.into(),
        }
    }
}
