//! Sign-in with email and password (and the second factor when TOTP is
//! on). In order: the brute-force gate (`crate::attempts`: refused before
//! any password is checked, for known and unknown emails alike), the
//! password (an unknown email verifies a dummy hash, so both cost the
//! same), the administrator's lock, then the second factor. A wrong
//! password or code counts toward the locks.

use secrecy::SecretString;
use shared_types::TokenPair;

use super::{audit, faults, second_factor, sessions, Fault};
use crate::attempts::lockout_errors;
use crate::db::events::{self, kind};
use crate::db::{self, users};
use crate::domain::Email;
use crate::extractors::ClientInfo;
use crate::metrics::LoginOutcome;
use crate::AppState;
use service_kit::transaction;

/// What the caller typed.
pub struct Credentials {
    /// As typed: a malformed address is still counted and still costs a hash.
    pub email: String,
    pub password: SecretString,
    pub totp_code: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error("email or password is incorrect")]
    InvalidCredentials,
    #[error("too many failed attempts; try again in {retry_after} s or reset the password")]
    TooManyAttempts { retry_after: u64 },
    #[error("this account is locked; contact an administrator")]
    AccountLocked,
    /// The password was right; the account needs a second factor.
    #[error(
        "this account uses two-factor sign-in: send totp_code (a current code or a recovery code)"
    )]
    MfaRequired,
    #[error(
        "the code is incorrect or was used already; send a current code or an unused recovery code"
    )]
    WrongSecondFactor,
    #[error(transparent)]
    Fault(#[from] Fault),
}

faults!(SignInError);

lockout_errors!(SignInError);

impl SignInError {
    /// How `auth_login_attempts_total` counts it.
    pub fn outcome(&self) -> LoginOutcome {
        match self {
            Self::TooManyAttempts { .. } => LoginOutcome::LockedOut,
            Self::AccountLocked => LoginOutcome::AccountLocked,
            Self::MfaRequired => LoginOutcome::MfaRequired,
            Self::InvalidCredentials | Self::WrongSecondFactor | Self::Fault(_) => {
                LoginOutcome::Failure
            }
        }
    }
}

/// Signs in and counts the outcome.
pub async fn sign_in(
    state: &AppState,
    client: &ClientInfo,
    credentials: Credentials,
) -> Result<TokenPair, SignInError> {
    let result = check_and_start(state, client, credentials).await;
    state.metrics.login(match &result {
        Ok(_) => LoginOutcome::Success,
        Err(e) => e.outcome(),
    });
    result
}

async fn check_and_start(
    state: &AppState,
    client: &ClientInfo,
    credentials: Credentials,
) -> Result<TokenPair, SignInError> {
    // A malformed email can't match an account, but it is still counted and
    // still pays for a hash, so that its answer looks like any other failure.
    let email = Email::parse(&credentials.email).ok();
    let email_key: String = email.as_ref().map_or_else(
        || {
            credentials
                .email
                .trim()
                .to_lowercase()
                .chars()
                .take(254)
                .collect()
        },
        |e| e.as_str().to_owned(),
    );
    // The slot comes first: no password or code is checked outside one.
    let mut attempt = state
        .reserve(client, &email_key, None, kind::LOGIN_FAILED)
        .await?;
    let user = match &email {
        Some(e) => {
            let mut pooled = state.db.get().await?;
            users::find_by_email(&mut pooled.conn(), e.as_str()).await?
        }
        None => None,
    };
    // No connection is held across the hash: a burst must not drain the pool.
    let matches = state
        .hasher
        .verify(
            credentials.password,
            user.as_ref().and_then(|u| u.password_hash()),
        )
        .await
        .map_err(Fault::Internal)?;
    let known_id = user.as_ref().map(|u| u.id.0);
    let Some(user) = user.filter(|_| matches) else {
        attempt
            .failed(
                state,
                client,
                known_id,
                kind::LOGIN_FAILED,
                "invalid credentials",
            )
            .await?;
        return Err(SignInError::InvalidCredentials);
    };
    // Giving the slot back or counting a failure takes a connection of
    // its own: none is held meanwhile, or a burst the size of the pool
    // would wait on itself.
    if user.account_locked {
        attempt.released(state).await?;
        let mut pooled = state.db.get().await?;
        super::audit_locked_refusal(&mut pooled.conn(), client, user.id.0).await?;
        return Err(SignInError::AccountLocked);
    }
    if user.mfa_enabled {
        let Some(code) = credentials.totp_code.as_deref() else {
            // The password was right; the code decides, in a slot of its own.
            attempt.released(state).await?;
            return Err(SignInError::MfaRequired);
        };
        // A wrong code is counted in the slot; a right one hands it back.
        let Some(kept) =
            second_factor::check_in_slot(state, client, user.id.0, code, attempt).await?
        else {
            return Err(SignInError::WrongSecondFactor);
        };
        attempt = kept;
    }
    let now = db::now();
    let mut pooled = state.db.get().await?;
    let conn = &mut pooled.conn();
    let result = transaction!(conn, |tx| -> SignInError {
        attempt.passed(state, tx).await?;
        let tokens = sessions::start(state, tx, user.id.0, client, now).await?;
        users::touch_last_login(tx, user.id.0, now).await?;
        events::record(
            tx,
            &audit(kind::LOGIN_SUCCEEDED, Some(user.id.0), client, true, None),
        )
        .await?;
        Ok(tokens)
    });
    drop(pooled);
    attempt.settle(state, result).await
}
