//! What an administrator (a service token with scope `admin`) does to
//! users and service tokens. Every change writes an `admin_action` audit
//! row in the same transaction as the change.

use uuid::Uuid;

use super::{faults, Fault};
use crate::db::events::{self, kind, AuthEvent};
use crate::db::service_tokens as rows;
use crate::db::{self, mfa as mfa_db, sessions, users};
use crate::extractors::ServiceCaller;
use crate::services::service_tokens;
use crate::AppState;
use service_kit::transaction;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("no such user")]
    NoSuchUser,
    #[error("no such service token")]
    NoSuchToken,
    #[error(transparent)]
    Fault(#[from] Fault),
}

faults!(AdminError);

/// The audit row of an administrator's action (on `user_id`, if any).
fn action(caller: &ServiceCaller, user_id: Option<Uuid>, detail: String) -> AuthEvent {
    AuthEvent {
        user_id: user_id.map(db::DbUuid),
        ..service_tokens::audit_event(
            kind::ADMIN_ACTION,
            Some(caller.token_id),
            Some(&caller.client),
            true,
            Some(detail),
        )
    }
}

/// The audit row of a token created by `caller`.
pub fn token_created(caller: &ServiceCaller) -> AuthEvent {
    action(caller, None, String::new())
}

/// Revokes one service token (revoking a revoked one changes nothing).
pub async fn revoke_token(
    state: &AppState,
    caller: &ServiceCaller,
    id: Uuid,
) -> Result<(), AdminError> {
    let mut pooled = state.db.get().await?;
    let conn = &mut pooled.conn();
    let found = transaction!(conn, |tx| -> AdminError {
        let found = rows::revoke(tx, id, db::now()).await?;
        if found == Some(true) {
            events::record(
                tx,
                &action(caller, None, format!("revoked service token {id}")),
            )
            .await?;
        }
        Ok(found)
    })?;
    found.map(|_| ()).ok_or(AdminError::NoSuchToken)
}

/// The emergency switch: every token stops working at the commit, on every
/// replica, since each check reads the row. Returns how many were revoked.
pub async fn revoke_all_tokens(
    state: &AppState,
    caller: &ServiceCaller,
) -> Result<usize, AdminError> {
    let mut pooled = state.db.get().await?;
    let conn = &mut pooled.conn();
    let revoked = transaction!(conn, |tx| -> AdminError {
        let revoked = rows::revoke_all(tx, db::now()).await?;
        events::record(
            tx,
            &action(
                caller,
                None,
                format!("revoked all service tokens ({revoked})"),
            ),
        )
        .await?;
        Ok(revoked)
    })?;
    tracing::warn!(revoked, by = %caller.token_id, "every service token was revoked");
    Ok(revoked)
}

/// Locks or unlocks an account. Locking revokes its sessions, and its
/// tokens stop introspecting as active at once.
pub async fn set_locked(
    state: &AppState,
    caller: &ServiceCaller,
    id: Uuid,
    locked: bool,
) -> Result<(), AdminError> {
    let mut pooled = state.db.get().await?;
    let conn = &mut pooled.conn();
    let verb = if locked { "locked" } else { "unlocked" };
    let found = transaction!(conn, |tx| -> AdminError {
        let found = users::set_locked(tx, id, locked, db::now()).await?;
        if let Some(changed) = found {
            let detail = if changed {
                format!("{verb} user")
            } else {
                format!("user was already {verb}")
            };
            events::record(tx, &action(caller, Some(id), detail)).await?;
        }
        Ok(found)
    })?;
    if found.ok_or(AdminError::NoSuchUser)? {
        state.outbox.wake();
    }
    Ok(())
}

/// Removes a user's second factor (TOTP and recovery codes) and ends
/// every session: for an owner who lost the device.
pub async fn reset_mfa(
    state: &AppState,
    caller: &ServiceCaller,
    id: Uuid,
) -> Result<(), AdminError> {
    let mut pooled = state.db.get().await?;
    let conn = &mut pooled.conn();
    let now = db::now();
    let found = transaction!(conn, |tx| -> AdminError {
        let Some(user) = users::find(tx, id).await? else {
            return Ok(false);
        };
        mfa_db::remove(tx, id).await?;
        if user.mfa_enabled {
            users::set_mfa_enabled(tx, id, false, now).await?;
        }
        // Passkeys are second factors too: an owner who lost the device
        // may have lost them with it.
        let passkeys = crate::db::passkeys::delete_all(tx, id).await?;
        let revoked = sessions::revoke_all(tx, id, None, "mfa_reset", now).await?;
        let detail = format!(
            "second factor reset (was {}; passkeys removed: {passkeys}); sessions revoked: {}",
            if user.mfa_enabled { "on" } else { "off" },
            revoked.len()
        );
        events::record(tx, &action(caller, Some(id), detail)).await?;
        Ok(true)
    })?;
    if !found {
        return Err(AdminError::NoSuchUser);
    }
    state.outbox.wake();
    Ok(())
}

pub async fn delete_user(
    state: &AppState,
    caller: &ServiceCaller,
    id: Uuid,
) -> Result<(), AdminError> {
    let mut pooled = state.db.get().await?;
    let conn = &mut pooled.conn();
    let deleted = transaction!(conn, |tx| -> AdminError {
        let deleted = users::delete(tx, id, db::now()).await?;
        if let Some(user) = &deleted {
            // The email is kept in the audit trail: who was deleted matters
            // more after the fact than before.
            let detail = format!("deleted user {}", user.email);
            events::record(tx, &action(caller, Some(id), detail)).await?;
        }
        Ok(deleted)
    })?;
    deleted.ok_or(AdminError::NoSuchUser)?;
    state.outbox.wake();
    Ok(())
}
