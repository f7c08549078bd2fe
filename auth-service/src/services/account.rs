//! Account changes: password change, forgot and reset; email verification
//! and change.
//!
//! Tokens sent by mail are 256-bit random, stored as SHA-256 only
//! (`db::one_time_tokens`), single-use and expiring; their mail is queued in
//! the same transaction (`db::mail`) and sent by `crate::mail`, never on the
//! request path. A change that asks for the password again goes through
//! `crate::attempts`, counted like a login.

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use uuid::Uuid;

use super::{audit, faults, Fault};
use crate::attempts::{lockout_errors, ReauthError};
use crate::db::events::{self, kind};
use crate::db::mail::{self, MailKind};
use crate::db::one_time_tokens::{self as ott, purpose};
use crate::db::{self, lockouts, sessions, users, Conn};
use crate::domain::{Email, NewPassword};
use crate::extractors::{AuthenticatedUser, ClientInfo};
use crate::tokens::{hash_token, random_token};
use crate::AppState;
use service_kit::invalid::Invalid;
use service_kit::transaction;

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("the password is incorrect")]
    WrongPassword,
    #[error("too many failed attempts; try again in {retry_after} s or reset the password")]
    TooManyAttempts { retry_after: u64 },
    #[error("a mail like this went to that address less than a minute ago; try again in {retry_after} s")]
    MailTooSoon { retry_after: u64 },
    #[error("the token is unknown, used or expired; ask for a new one")]
    InvalidToken,
    #[error("an account with this email already exists")]
    EmailTaken,
    #[error(transparent)]
    Fault(#[from] Fault),
}

faults!(AccountError);

impl From<ReauthError> for AccountError {
    fn from(e: ReauthError) -> Self {
        match e {
            // These changes always ask for the password (an account
            // without one sets it through a reset first).
            ReauthError::Refused | ReauthError::StaleSession => Self::WrongPassword,
            ReauthError::TooMany { retry_after } => Self::TooManyAttempts { retry_after },
            ReauthError::Fault(f) => Self::Fault(f),
        }
    }
}

lockout_errors!(AccountError);

impl AppState {
    /// `{AUTH_APP_URL}/account/{page}?token=...`: where the mail's link
    /// leads (the web app's page that posts the token back to the matching
    /// endpoint).
    fn link(&self, page: &str, token: &str) -> String {
        format!("{}/account/{page}?token={token}", self.settings.app_url)
    }

    /// Queues a mail carrying a fresh token (whose hash the caller stores in
    /// the same transaction).
    pub(crate) async fn queue_token_mail(
        &self,
        tx: &mut Conn<'_>,
        kind: MailKind,
        to: &str,
        subject: &str,
        page: &str,
        token: &str,
    ) -> Result<(), Fault> {
        let payload = mail::Payload {
            subject: subject.to_owned(),
            token: Some(token.to_owned()),
            link: Some(self.link(page, token)),
        };
        mail::enqueue(tx, &self.settings.secrets_key, kind, to, &payload).await?;
        Ok(())
    }

    /// `email_not_allowed` when `AUTH_ALLOWED_EMAIL_DOMAINS` is set and
    /// `email`'s domain is not in it: accounts of this deployment belong
    /// to those organisations only.
    pub(crate) fn check_email_domain(&self, email: &Email) -> Result<(), Invalid> {
        match &self.settings.allowed_email_domains {
            Some(allowed) if !allowed.iter().any(|d| d == email.domain()) => Err(Invalid::new(
                "email_not_allowed",
                format!(
                    "addresses at {} cannot have an account here; allowed: {}",
                    email.domain(),
                    allowed.join(", ")
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Refused when a mail of `kind` went to `to` less than a minute ago
    /// (`db::mail::spacing_wait`); call first in the transaction that
    /// queues the mail.
    pub(crate) async fn mail_spacing(
        &self,
        tx: &mut Conn<'_>,
        kind: MailKind,
        to: &str,
    ) -> Result<(), AccountError> {
        match mail::spacing_wait(tx, kind, to).await? {
            None => Ok(()),
            Some(next) => Err(AccountError::MailTooSoon {
                retry_after: super::seconds_until(next, db::now()),
            }),
        }
    }

    /// Queues a verification of `email` for `user_id`.
    pub(crate) async fn queue_verification(
        &self,
        tx: &mut Conn<'_>,
        user_id: Uuid,
        email: &str,
    ) -> Result<(), Fault> {
        let token = random_token();
        let now = db::now();
        ott::insert_verification(
            tx,
            user_id,
            purpose::VERIFY,
            email,
            &hash_token(&token),
            ott::verification_ttl(),
            now,
        )
        .await?;
        self.queue_token_mail(
            tx,
            MailKind::EmailVerification,
            email,
            "Confirm your email address",
            "verify-email",
            &token,
        )
        .await
    }
}

/// A new password, proven by the current one; every other session ends.
pub async fn change_password(
    state: &AppState,
    client: &ClientInfo,
    auth: &AuthenticatedUser,
    current_password: String,
    new_password: NewPassword,
) -> Result<(), AccountError> {
    let user = &auth.user;
    let attempt = state
        .reauthenticate_password(
            client,
            auth,
            kind::PASSWORD_CHANGED,
            current_password,
            "current password incorrect",
        )
        .await?;
    let hash = state
        .hasher
        .hash(new_password.into_secret())
        .await
        .map_err(Fault::Internal)?;
    let now = db::now();
    let mut pooled = state.db.get().await?;
    let conn = &mut pooled.conn();
    let result = transaction!(conn, |tx| -> AccountError {
        attempt.passed(state, tx).await?;
        users::set_password(tx, user.id.0, &hash, now).await?;
        let revoked = sessions::revoke_all(
            tx,
            user.id.0,
            Some(auth.session_id),
            "password changed",
            now,
        )
        .await?;
        events::record(
            tx,
            &audit(
                kind::PASSWORD_CHANGED,
                Some(user.id.0),
                client,
                true,
                Some(&format!("other sessions revoked: {}", revoked.len())),
            ),
        )
        .await?;
        Ok(())
    });
    drop(pooled);
    attempt.settle(state, result).await?;
    state.outbox.wake();
    Ok(())
}

/// What a password reset request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetRequest {
    /// A mail with a reset link is queued.
    Queued,
    /// One went to that address less than a minute ago: nothing more.
    Spaced,
    /// No account has this address: nothing is sent.
    NoAccount,
}

impl ResetRequest {
    pub fn label(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Spaced => "spaced",
            Self::NoAccount => "no_account",
        }
    }
}

/// Mails a reset link when `email` has an account (nothing otherwise, and
/// nothing when one went there less than a minute ago).
pub async fn send_reset(state: &AppState, email: &Email) -> Result<ResetRequest, Fault> {
    let mut pooled = state.db.get().await?;
    let conn = &mut pooled.conn();
    let Some(user) = users::find_by_email(conn, email.as_str()).await? else {
        return Ok(ResetRequest::NoAccount);
    };
    let now = db::now();
    let token = random_token();
    let queued = transaction!(conn, |tx| -> Fault {
        // Spaced like every mail a caller can repeat; the answer was 202
        // already, so a spaced-out request just sends nothing.
        if mail::spacing_wait(tx, MailKind::PasswordReset, &user.email)
            .await?
            .is_some()
        {
            return Ok(false);
        }
        ott::insert_reset(tx, user.id.0, &hash_token(&token), now).await?;
        state
            .queue_token_mail(
                tx,
                MailKind::PasswordReset,
                &user.email,
                "Reset your password",
                "reset-password",
                &token,
            )
            .await?;
        Ok(true)
    })?;
    if !queued {
        return Ok(ResetRequest::Spaced);
    }
    state.mail.wake();
    Ok(ResetRequest::Queued)
}

/// Sets the password, ends every session, lifts brute-force locks on the
/// address (the reset proved the owner) and marks the address verified
/// (the mail reached it).
pub async fn reset_password(
    state: &AppState,
    client: &ClientInfo,
    token: &str,
    new_password: NewPassword,
) -> Result<(), AccountError> {
    let token_hash = hash_token(token);
    let mut pooled = state.db.get().await?;
    let conn = &mut pooled.conn();
    let hash = state
        .hasher
        .hash(new_password.into_secret())
        .await
        .map_err(Fault::Internal)?;
    let now = db::now();
    transaction!(conn, |tx| -> AccountError {
        let user_id = ott::spend_reset(tx, &token_hash, now)
            .await?
            .ok_or(AccountError::InvalidToken)?;
        let user = users::set_password(tx, user_id, &hash, now)
            .await?
            .ok_or(AccountError::InvalidToken)?;
        users::mark_email_verified(tx, user_id, &user.email, now).await?;
        sessions::revoke_all(tx, user_id, None, "password reset", now).await?;
        lockouts::lift(tx, &user.email).await?;
        events::record(
            tx,
            &audit(kind::PASSWORD_RESET, Some(user_id), client, true, None),
        )
        .await?;
        Ok(())
    })?;
    state.outbox.wake();
    Ok(())
}

/// Mails a new verification link (nothing when the address is verified
/// already).
pub async fn request_verification(
    state: &AppState,
    auth: &AuthenticatedUser,
) -> Result<(), AccountError> {
    if auth.user.email_verified {
        return Ok(());
    }
    let mut pooled = state.db.get().await?;
    let conn = &mut pooled.conn();
    transaction!(conn, |tx| -> AccountError {
        state
            .mail_spacing(tx, MailKind::EmailVerification, &auth.user.email)
            .await?;
        state
            .queue_verification(tx, auth.user.id.0, &auth.user.email)
            .await?;
        Ok(())
    })?;
    state.mail.wake();
    Ok(())
}

pub async fn verify_email(
    state: &AppState,
    client: &ClientInfo,
    token: &str,
) -> Result<(), AccountError> {
    let token_hash = hash_token(token);
    let mut pooled = state.db.get().await?;
    let conn = &mut pooled.conn();
    let now = db::now();
    transaction!(conn, |tx| -> AccountError {
        let (user_id, email) = ott::spend_verification(tx, &token_hash, purpose::VERIFY, now)
            .await?
            .ok_or(AccountError::InvalidToken)?;
        if users::mark_email_verified(tx, user_id, &email, now)
            .await?
            .is_none()
        {
            // Verified already (fine), or the account moved to another
            // address since the mail went out (the token is stale).
            let current = users::find(tx, user_id).await?;
            if current.is_none_or(|u| u.email != email) {
                return Err(AccountError::InvalidToken);
            }
            return Ok(());
        }
        events::record(
            tx,
            &audit(kind::EMAIL_VERIFIED, Some(user_id), client, true, None),
        )
        .await?;
        Ok(())
    })?;
    state.outbox.wake();
    Ok(())
}

/// A link to the new address, a notice to the old; the address changes
/// only when the link is followed (`confirm_email_change`).
pub async fn change_email(
    state: &AppState,
    client: &ClientInfo,
    auth: &AuthenticatedUser,
    new_email: Email,
    password: String,
) -> Result<(), AccountError> {
    state.check_email_domain(&new_email)?;
    let user = &auth.user;
    if new_email.as_str() == user.email {
        return Err(
            Invalid::new("same_email", "new_email is already this account's address").into(),
        );
    }
    let attempt = state
        .reauthenticate_password(
            client,
            auth,
            kind::EMAIL_CHANGED,
            password,
            "password incorrect",
        )
        .await?;
    let mut pooled = state.db.get().await?;
    let conn = &mut pooled.conn();
    let token = random_token();
    let now = db::now();
    let result = transaction!(conn, |tx| -> AccountError {
        if users::find_by_email(tx, new_email.as_str())
            .await?
            .is_some()
        {
            return Err(AccountError::EmailTaken);
        }
        state
            .mail_spacing(tx, MailKind::EmailChange, new_email.as_str())
            .await?;
        attempt.passed(state, tx).await?;
        ott::insert_verification(
            tx,
            user.id.0,
            purpose::CHANGE,
            new_email.as_str(),
            &hash_token(&token),
            ott::email_change_ttl(),
            now,
        )
        .await?;
        state
            .queue_token_mail(
                tx,
                MailKind::EmailChange,
                new_email.as_str(),
                "Confirm your new email address",
                "confirm-email",
                &token,
            )
            .await?;
        let notice = mail::Payload {
            subject: "Your email address is being changed".into(),
            token: None,
            link: None,
        };
        mail::enqueue(
            tx,
            &state.settings.secrets_key,
            MailKind::EmailChangeNotice,
            &user.email,
            &notice,
        )
        .await?;
        Ok(())
    });
    drop(pooled);
    attempt.settle(state, result).await?;
    state.mail.wake();
    Ok(())
}

pub async fn confirm_email_change(
    state: &AppState,
    client: &ClientInfo,
    token: &str,
) -> Result<(), AccountError> {
    let token_hash = hash_token(token);
    let mut pooled = state.db.get().await?;
    let conn = &mut pooled.conn();
    let now = db::now();
    transaction!(conn, |tx| -> AccountError {
        let (user_id, email) = ott::spend_verification(tx, &token_hash, purpose::CHANGE, now)
            .await?
            .ok_or(AccountError::InvalidToken)?;
        users::change_email(tx, user_id, &email, now)
            .await
            .map_err(|e| match e {
                DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
                    AccountError::EmailTaken
                }
                other => other.into(),
            })?
            .ok_or(AccountError::InvalidToken)?;
        events::record(
            tx,
            &audit(kind::EMAIL_CHANGED, Some(user_id), client, true, None),
        )
        .await?;
        Ok(())
    })?;
    state.outbox.wake();
    Ok(())
}
