//! Every error the auth service's operations return, answered as problem
//! details, in one place. The operations (`services`, `attempts`) know no
//! HTTP; handlers return `ApiError` and `?` converts through these.

use crate::attempts::AttemptError;
use crate::error::ApiError;
use crate::services::account::AccountError;
use crate::services::admin::AdminError;
use crate::services::mfa::MfaError;
use crate::services::oauth::OAuthError;
use crate::services::passkeys::PasskeyError;
use crate::services::sessions::RefreshError;
use crate::services::sign_in::SignInError;
use crate::services::sign_up::SignUpError;
use crate::services::Fault;

/// 429 `too_many_attempts` with Retry-After: every lockout, whichever
/// operation met it.
fn too_many_attempts(retry_after: u64, e: &impl std::fmt::Display) -> ApiError {
    ApiError::too_many("too_many_attempts", retry_after, e.to_string())
}

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
            AttemptError::TooMany { retry_after } => too_many_attempts(retry_after, &e),
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
            SignInError::TooManyAttempts { retry_after } => too_many_attempts(retry_after, &e),
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

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::Invalid(invalid) => invalid.into(),
            AccountError::WrongPassword => {
                ApiError::unauthorized("invalid_credentials", e.to_string())
            }
            AccountError::TooManyAttempts { retry_after } => too_many_attempts(retry_after, &e),
            AccountError::MailTooSoon { retry_after } => {
                ApiError::too_many("too_many_requests", retry_after, e.to_string())
            }
            AccountError::InvalidToken => ApiError::new(
                actix_web::http::StatusCode::BAD_REQUEST,
                "invalid_token",
                e.to_string(),
            ),
            AccountError::EmailTaken => ApiError::conflict("email_taken", e.to_string()),
            AccountError::Fault(f) => f.into(),
        }
    }
}

impl From<MfaError> for ApiError {
    fn from(e: MfaError) -> Self {
        let bad_code = |e: &MfaError| {
            ApiError::new(
                actix_web::http::StatusCode::BAD_REQUEST,
                "invalid_code",
                e.to_string(),
            )
        };
        match e {
            MfaError::AlreadyEnabled => ApiError::conflict("mfa_already_enabled", e.to_string()),
            MfaError::NotEnabled => ApiError::conflict("mfa_not_enabled", e.to_string()),
            MfaError::NotSetUp | MfaError::Unreadable | MfaError::CodeMismatch => bad_code(&e),
            MfaError::WrongPassword | MfaError::WrongPasswordOrCode => {
                ApiError::unauthorized("invalid_credentials", e.to_string())
            }
            MfaError::TooManyAttempts { retry_after } => too_many_attempts(retry_after, &e),
            MfaError::StaleSession => {
                ApiError::unauthorized("reauthentication_required", e.to_string())
            }
            MfaError::Fault(f) => f.into(),
        }
    }
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::NoSuchUser | AdminError::NoSuchToken => ApiError::not_found(e.to_string()),
            AdminError::Fault(f) => f.into(),
        }
    }
}

impl From<OAuthError> for ApiError {
    fn from(e: OAuthError) -> Self {
        use actix_web::http::StatusCode;
        let bad = |code: &'static str, e: &OAuthError| {
            ApiError::new(StatusCode::BAD_REQUEST, code, e.to_string())
        };
        match e {
            OAuthError::UnknownProvider | OAuthError::NoSuchIdentity => {
                ApiError::not_found(e.to_string())
            }
            OAuthError::InvalidReturnTo(_) => bad("invalid_return_to", &e),
            OAuthError::InvalidState => bad("invalid_state", &e),
            OAuthError::InvalidCode => bad("invalid_code", &e),
            OAuthError::AccountExists => ApiError::conflict("account_exists", e.to_string()),
            OAuthError::LastSignInMethod => {
                ApiError::conflict("last_sign_in_method", e.to_string())
            }
            OAuthError::AccountLocked => ApiError::forbidden("account_locked", e.to_string()),
            OAuthError::MfaRequired | OAuthError::WrongSecondFactor => {
                ApiError::unauthorized("mfa_required", e.to_string())
            }
            OAuthError::TooManyAttempts { retry_after } => too_many_attempts(retry_after, &e),
            OAuthError::WrongPassword => {
                ApiError::unauthorized("invalid_credentials", e.to_string())
            }
            OAuthError::StaleSession => {
                ApiError::unauthorized("reauthentication_required", e.to_string())
            }
            OAuthError::Invalid(invalid) => invalid.into(),
            OAuthError::Fault(f) => f.into(),
        }
    }
}

impl From<PasskeyError> for ApiError {
    fn from(e: PasskeyError) -> Self {
        match e {
            PasskeyError::InvalidCredential(_) => ApiError::new(
                actix_web::http::StatusCode::BAD_REQUEST,
                "invalid_credential",
                e.to_string(),
            ),
            PasskeyError::InvalidCredentials => {
                ApiError::unauthorized("invalid_credentials", e.to_string())
            }
            PasskeyError::TooManyAttempts { retry_after } => too_many_attempts(retry_after, &e),
            PasskeyError::AccountLocked => ApiError::forbidden("account_locked", e.to_string()),
            PasskeyError::NotFound => ApiError::not_found(e.to_string()),
            PasskeyError::Disabled => ApiError::new(
                actix_web::http::StatusCode::NOT_IMPLEMENTED,
                "passkeys_disabled",
                e.to_string(),
            ),
            PasskeyError::WrongPassword => {
                ApiError::unauthorized("invalid_credentials", e.to_string())
            }
            PasskeyError::StaleSession => {
                ApiError::unauthorized("reauthentication_required", e.to_string())
            }
            PasskeyError::LastSignInMethod => {
                ApiError::conflict("last_sign_in_method", e.to_string())
            }
            PasskeyError::Fault(f) => f.into(),
        }
    }
}
