//! The auth service's operations: what happens when someone signs up,
//! signs in, refreshes or signs out. Each takes plain inputs (validated
//! `domain` values, who is calling) and returns a domain result or its own
//! error enum; none knows HTTP. `crate::problems` answers every error as
//! problem details, in one place; the handlers in `routes/` parse, call one
//! operation and shape the answer (status, cookies, body).
//!
//! - `account`: password change and reset, email verification and change;
//! - `sign_up`: a new account and its first session;
//! - `sign_in`: email and password (and the second factor), under the
//!   brute-force accounting of `crate::attempts`;
//! - `admin`: locking, unlocking, deleting users, resetting their second
//!   factor, revoking service tokens;
//! - `mfa`: turning TOTP on and off;
//! - `oauth`: sign-in with other providers (the protocol is
//!   `crate::providers`), linking and unlinking identities;
//! - `passkeys`: WebAuthn credentials, registered and used to sign in;
//! - `second_factor`: a TOTP or recovery code, as sign-in and turning TOTP
//!   off check it;
//! - `service_tokens`: tokens for programs (made, checked, their batched
//!   usage);
//! - `sessions`: what a session is made of (its token pair), refresh with
//!   reuse detection, and signing out.
//!
//! A new sign-in method is one module here plus one route file.

pub mod account;
pub mod admin;
mod flows;
pub mod mfa;
pub mod oauth;
pub mod passkeys;
pub mod second_factor;
pub mod service_tokens;
pub mod sessions;
pub mod sign_in;
pub mod sign_up;

use uuid::Uuid;

use crate::db::events::AuthEvent;
use crate::db::sql_types::{DbTime, DbUuid};
use crate::extractors::ClientInfo;
use service_kit::invalid::StoreError;

/// What no caller can fix: the store failed, or something that should not
/// happen did (a signing key that does not sign, a hasher thread gone).
/// Answered 503 or 500; the cause goes to the log only.
#[derive(Debug, thiserror::Error)]
pub enum Fault {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<diesel::result::Error> for Fault {
    fn from(e: diesel::result::Error) -> Self {
        Self::Store(e.into())
    }
}

impl From<service_kit::db::PoolError> for Fault {
    fn from(e: service_kit::db::PoolError) -> Self {
        Self::Store(e.into())
    }
}

/// `From` the store's errors for an operation's error enum with a
/// `Fault(Fault)` variant, so `?` and `transaction!` work inside it.
macro_rules! faults {
    ($($error:ty),+ $(,)?) => {$(
        impl From<diesel::result::Error> for $error {
            fn from(e: diesel::result::Error) -> Self {
                Self::Fault(e.into())
            }
        }
        impl From<service_kit::db::PoolError> for $error {
            fn from(e: service_kit::db::PoolError) -> Self {
                Self::Fault(e.into())
            }
        }
    )+};
}
pub(crate) use faults;

/// Whole seconds from `now` to `until`, at least one: a `Retry-After`.
pub fn seconds_until(
    until: chrono::DateTime<chrono::Utc>,
    now: chrono::DateTime<chrono::Utc>,
) -> u64 {
    u64::try_from((until - now).num_seconds())
        .unwrap_or(0)
        .max(1)
}

/// The audit row of something `client` did (to `user_id`'s account).
pub fn audit(
    kind: &str,
    user_id: Option<Uuid>,
    client: &ClientInfo,
    success: bool,
    detail: Option<&str>,
) -> AuthEvent {
    AuthEvent {
        id: DbUuid(Uuid::now_v7()),
        kind: kind.to_owned(),
        user_id: user_id.map(DbUuid),
        service_token_id: None,
        ip: client.ip_string(),
        user_agent: client.user_agent.clone(),
        endpoint: Some(client.endpoint.clone()),
        request_id: client.request_id.clone(),
        cf_ray: client.cf_ray.clone(),
        success,
        detail: detail.map(str::to_owned),
        created_at: DbTime(crate::db::now()),
    }
}

/// Audits a sign-in refused because an administrator locked the account.
pub async fn audit_locked_refusal(
    conn: &mut crate::db::Conn<'_>,
    client: &ClientInfo,
    user_id: Uuid,
) -> Result<(), Fault> {
    let refused = audit(
        crate::db::events::kind::LOGIN_FAILED,
        Some(user_id),
        client,
        false,
        Some("account locked"),
    );
    crate::db::events::record(conn, &refused).await?;
    Ok(())
}
