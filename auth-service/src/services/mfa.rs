//! TOTP: setup (a secret, shown once), enable (a code from the app and the
//! password; ten recovery codes back) and disable (the password and a
//! code). Both changes are counted like a login (`crate::attempts`); the
//! check of a code itself is `second_factor`.

use secrecy::ExposeSecret;
use shared_types::{RecoveryCodes, TotpSetup};

use super::{audit, faults, second_factor, Fault};
use crate::attempts::{lockout_errors, ReauthError, Refusal};
use crate::db::events::{self, kind};
use crate::db::mail;
use crate::db::{self, mfa as mfa_db, users};
use crate::extractors::{AuthenticatedUser, ClientInfo};
use crate::mfa;
use crate::tokens::hash_token;
use crate::AppState;
use service_kit::transaction;

#[derive(Debug, thiserror::Error)]
pub enum MfaError {
    #[error("TOTP is already enabled; disable it first")]
    AlreadyEnabled,
    #[error("TOTP is not enabled")]
    NotEnabled,
    #[error("no TOTP secret is set up; call /v1/mfa/totp/setup first")]
    NotSetUp,
    #[error("the TOTP secret is no longer readable; set up again")]
    Unreadable,
    #[error("the code does not match; check the app's clock and try the current code")]
    CodeMismatch,
    /// Enabling: the password was wrong.
    #[error("the password is incorrect")]
    WrongPassword,
    /// Disabling: the password or the code was wrong (not saying which).
    #[error("the password or the code is incorrect")]
    WrongPasswordOrCode,
    #[error("too many failed attempts; try again in {retry_after} s or reset the password")]
    TooManyAttempts { retry_after: u64 },
    /// Enabling on an account without a password: from a fresh session only.
    #[error("sign in again (this session is older than 10 minutes) to turn on two-factor sign-in")]
    StaleSession,
    #[error(transparent)]
    Fault(#[from] Fault),
}

faults!(MfaError);

lockout_errors!(MfaError);

/// `refused` is what a wrong secret means for this change.
fn reauth(e: ReauthError, refused: MfaError) -> MfaError {
    match e {
        ReauthError::Refused => refused,
        ReauthError::StaleSession => MfaError::StaleSession,
        ReauthError::TooMany { retry_after } => MfaError::TooManyAttempts { retry_after },
        ReauthError::Fault(f) => MfaError::Fault(f),
    }
}

/// A new secret, shown this once; it does nothing until `enable` proves
/// an app holds it.
pub async fn setup(state: &AppState, auth: &AuthenticatedUser) -> Result<TotpSetup, MfaError> {
    let user = &auth.user;
    if user.mfa_enabled {
        return Err(MfaError::AlreadyEnabled);
    }
    let secret = mfa::new_secret();
    let sealed = mfa::seal(&state.settings.secrets_key, user.id.0, &secret);
    let mut pooled = state.db.get().await?;
    let conn = &mut pooled.conn();
    let stored = transaction!(conn, |tx| -> MfaError {
        Ok(mfa_db::put_pending(tx, user.id.0, &sealed, db::now()).await?)
    })?;
    if !stored {
        return Err(MfaError::AlreadyEnabled);
    }
    // The issuer shown in authenticator apps: the public host name.
    let issuer = crate::configuration::public_host(&state.settings.public_url);
    let otpauth_uri = mfa::otpauth_uri(&secret, &user.email, issuer)
        .ok_or_else(|| Fault::Internal(anyhow::anyhow!("otpauth URI could not be built")))?;
    Ok(TotpSetup {
        secret: secret.expose_secret().to_owned(),
        otpauth_uri,
    })
}

/// A valid code and the password turn TOTP on and return ten single-use
/// recovery codes (only their hashes are kept); a notice goes to the
/// account's address, so an owner whose session was stolen learns of an
/// enrollment that was not theirs.
pub async fn enable(
    state: &AppState,
    client: &ClientInfo,
    auth: &AuthenticatedUser,
    code: &str,
    password: Option<String>,
) -> Result<RecoveryCodes, MfaError> {
    let user = &auth.user;
    let user_id = user.id.0;
    // The code proves the app holds the new secret (no credential of the
    // account is at stake), so it is checked first and outside any slot.
    let row = {
        let mut pooled = state.db.get().await?;
        mfa_db::find(&mut pooled.conn(), user_id).await?
    }
    .ok_or(MfaError::NotSetUp)?;
    if row.enabled_at.is_some() {
        return Err(MfaError::AlreadyEnabled);
    }
    let secret = mfa::open(&state.settings.secrets_key, user_id, &row.secret_sealed)
        .ok_or(MfaError::Unreadable)?;
    let step =
        mfa::matching_step(&secret, code.trim(), mfa::unix_now()).ok_or(MfaError::CodeMismatch)?;
    // The password when the account has one; an account made by a
    // provider sign-in has none, and needs a freshly signed-in session.
    let attempt = state
        .reauthenticate_account(
            client,
            auth,
            kind::MFA_ENABLED,
            password,
            "password incorrect",
        )
        .await
        .map_err(|e| reauth(e, MfaError::WrongPassword))?;
    let codes = mfa::new_recovery_codes();
    let hashes: Vec<String> = codes
        .iter()
        .map(|c| hash_token(&mfa::normalize_recovery_code(c)))
        .collect();
    let now = db::now();
    let mut pooled = state.db.get().await?;
    let conn = &mut pooled.conn();
    let result = transaction!(conn, |tx| -> MfaError {
        if let Some(attempt) = &attempt {
            attempt.passed(state, tx).await?;
        }
        if !mfa_db::enable(tx, user_id, step, now).await? {
            return Err(MfaError::AlreadyEnabled);
        }
        mfa_db::replace_recovery_codes(tx, user_id, &hashes, now).await?;
        users::set_mfa_enabled(tx, user_id, true, now).await?;
        events::record(
            tx,
            &audit(kind::MFA_ENABLED, Some(user_id), client, true, None),
        )
        .await?;
        let notice = mail::Payload {
            subject: "Two-factor sign-in was turned on".into(),
            token: None,
            link: None,
        };
        mail::enqueue(
            tx,
            &state.settings.secrets_key,
            mail::MailKind::MfaEnabled,
            &user.email,
            &notice,
        )
        .await?;
        Ok(())
    });
    drop(pooled);
    match attempt {
        Some(attempt) => attempt.settle(state, result).await?,
        None => result?,
    }
    state.outbox.wake();
    state.mail.wake();
    Ok(RecoveryCodes {
        recovery_codes: codes,
    })
}

/// Needs the password and a code (or a recovery code), so a stolen session
/// alone cannot remove the factor; both are counted like a login's.
pub async fn disable(
    state: &AppState,
    client: &ClientInfo,
    auth: &AuthenticatedUser,
    password: String,
    code: &str,
) -> Result<(), MfaError> {
    let user = &auth.user;
    if !user.mfa_enabled {
        return Err(MfaError::NotEnabled);
    }
    let check = async {
        if !state.password_matches(user, password).await? {
            return Ok(Err(Refusal {
                detail: "password incorrect",
            }));
        }
        let mut pooled = state.db.get().await?;
        if !second_factor::check(state, &mut pooled.conn(), user.id.0, code).await? {
            return Ok(Err(Refusal {
                detail: "code incorrect",
            }));
        }
        Ok(Ok(()))
    };
    let attempt = state
        .reauthenticate(client, auth, kind::MFA_DISABLED, check)
        .await
        .map_err(|e| reauth(e, MfaError::WrongPasswordOrCode))?;
    let now = db::now();
    let mut pooled = state.db.get().await?;
    let conn = &mut pooled.conn();
    let result = transaction!(conn, |tx| -> MfaError {
        attempt.passed(state, tx).await?;
        mfa_db::remove(tx, user.id.0).await?;
        users::set_mfa_enabled(tx, user.id.0, false, now).await?;
        events::record(
            tx,
            &audit(kind::MFA_DISABLED, Some(user.id.0), client, true, None),
        )
        .await?;
        Ok(())
    });
    drop(pooled);
    attempt.settle(state, result).await?;
    state.outbox.wake();
    Ok(())
}
