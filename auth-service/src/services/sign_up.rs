//! Sign-up: a new account, its verification mail and its first session,
//! in one transaction (with the `user.created` event the outbox sends).

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use shared_types::{PublicUser, TokenPair};
use uuid::Uuid;

use super::{faults, sessions, Fault};
use crate::db;
use crate::db::sql_types::{DbTime, DbUuid};
use crate::db::users::{self, NewUser};
use crate::domain::{Email, FullName, NewPassword};
use crate::extractors::ClientInfo;
use crate::AppState;
use service_kit::invalid::Invalid;
use service_kit::transaction;

/// What a new account is made of, validated.
pub struct SignUp {
    pub email: Email,
    pub password: NewPassword,
    pub full_name: Option<FullName>,
}

pub struct SignedUp {
    pub user: PublicUser,
    pub tokens: TokenPair,
}

#[derive(Debug, thiserror::Error)]
pub enum SignUpError {
    /// A rule of this deployment (`AUTH_ALLOWED_EMAIL_DOMAINS`).
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("an account with this email already exists")]
    EmailTaken,
    #[error(transparent)]
    Fault(#[from] Fault),
}

faults!(SignUpError);

pub async fn sign_up(
    state: &AppState,
    client: &ClientInfo,
    new: SignUp,
) -> Result<SignedUp, SignUpError> {
    state.check_email_domain(&new.email)?;
    let password_hash = state
        .hasher
        .hash(new.password.into_secret())
        .await
        .map_err(Fault::Internal)?;
    let now = db::now();
    let new_user = NewUser {
        id: DbUuid(Uuid::now_v7()),
        email: new.email.as_str(),
        password_hash: &password_hash,
        email_verified: false,
        full_name: new.full_name.as_ref().map(FullName::as_str),
        password_changed_at: DbTime(now),
        created_at: DbTime(now),
        updated_at: DbTime(now),
    };
    let mut pooled = state.db.get().await?;
    let conn = &mut pooled.conn();
    let tokens = transaction!(conn, |tx| -> SignUpError {
        users::insert(tx, &new_user).await.map_err(|e| match e {
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
                SignUpError::EmailTaken
            }
            other => other.into(),
        })?;
        state
            .queue_verification(tx, new_user.id.0, new.email.as_str())
            .await?;
        Ok(sessions::start(state, tx, new_user.id.0, client, now).await?)
    })?;
    state.outbox.wake();
    state.mail.wake();
    let user = PublicUser {
        id: new_user.id.0,
        email: new.email.as_str().to_owned(),
        email_verified: false,
        full_name: new.full_name.map(|n| n.as_str().to_owned()),
        created_at: now,
    };
    tracing::info!(user_id = %user.id, "user registered");
    Ok(SignedUp { user, tokens })
}
