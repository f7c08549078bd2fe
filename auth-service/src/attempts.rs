//! Exact brute-force accounting around every check of a secret: a login's
//! password and second factor, and the password (or code) asked again
//! before an account change. The counters and locks are `db::lockouts`;
//! this module is the one way callers use them.
//!
//! A check runs only inside a slot taken before it (`AppState::reserve`),
//! so a burst gets no more checks than the limits allow, whatever its size
//! and however many replicas share the database. The slot is then settled:
//! `failed` (it stays a failure and may lock), `passed` (a lock written
//! meanwhile still wins) or `released` (nothing was decided).

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use crate::db::events::{self, kind};
use crate::db::lockouts::{self, Locked, Reservation};
use crate::db::{self, sessions, Conn};
use crate::extractors::{AuthenticatedUser, ClientInfo};
use crate::services::{audit, faults, Fault};
use crate::AppState;
use service_kit::transaction;

/// Why no check may run: a limit is full until some time, or the store
/// failed.
#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    #[error("too many failed attempts; try again in {retry_after} s or reset the password")]
    TooMany { retry_after: u64 },
    #[error(transparent)]
    Fault(#[from] Fault),
}

faults!(AttemptError);

/// Whether an operation's error is a lockout, which `Attempt::settle`
/// must not undo by giving the slot back.
pub trait LockedOut {
    fn locked_out(&self) -> bool;
}

/// For an operation's error enum with `TooManyAttempts { retry_after }`
/// and `Fault(Fault)` variants: `From<AttemptError>` (so `?` works on a
/// reservation and on `passed`) and `LockedOut` (for `settle`).
macro_rules! lockout_errors {
    ($($error:ty),+ $(,)?) => {$(
        impl From<$crate::attempts::AttemptError> for $error {
            fn from(e: $crate::attempts::AttemptError) -> Self {
                match e {
                    $crate::attempts::AttemptError::TooMany { retry_after } => {
                        Self::TooManyAttempts { retry_after }
                    }
                    $crate::attempts::AttemptError::Fault(f) => Self::Fault(f),
                }
            }
        }
        impl $crate::attempts::LockedOut for $error {
            fn locked_out(&self) -> bool {
                matches!(self, Self::TooManyAttempts { .. })
            }
        }
    )+};
}
pub(crate) use lockout_errors;

/// One reserved check of `email`'s secret from the client's address.
pub struct Attempt {
    email_key: String,
    ip: String,
    slot: Uuid,
}

/// Locked until `until`.
pub fn too_many_attempts(until: DateTime<Utc>, now: DateTime<Utc>) -> AttemptError {
    AttemptError::TooMany {
        retry_after: crate::services::seconds_until(until, now),
    }
}

impl AppState {
    fn lockout_window(&self) -> Duration {
        Duration::minutes(self.settings.lockout_minutes)
    }

    fn lockout_threshold(&self) -> i64 {
        i64::from(self.settings.lockout_threshold)
    }

    /// Takes a slot for one check of `email_key`'s secret, or answers 429
    /// (audited as `refused_kind`, with the user when known).
    pub(crate) async fn reserve(
        &self,
        client: &ClientInfo,
        email_key: &str,
        user_id: Option<Uuid>,
        refused_kind: &str,
    ) -> Result<Attempt, AttemptError> {
        let ip = client.limit_key();
        let mut pooled = self.db.get().await?;
        let conn = &mut pooled.conn();
        let now = db::now();
        let reservation = transaction!(conn, |tx| -> AttemptError {
            Ok(lockouts::reserve(
                tx,
                email_key,
                &ip,
                self.lockout_threshold(),
                self.lockout_window(),
                now,
            )
            .await?)
        })?;
        match reservation {
            Reservation::Granted { slot } => Ok(Attempt {
                email_key: email_key.to_owned(),
                ip,
                slot,
            }),
            Reservation::Refused { until } => {
                events::record(
                    conn,
                    &audit(refused_kind, user_id, client, false, Some("locked out")),
                )
                .await?;
                Err(too_many_attempts(until, now))
            }
        }
    }
}

/// A wrong secret, and why (`detail`, for the audit row).
pub struct Refusal {
    pub detail: &'static str,
}

/// Why a re-authentication let no change through.
#[derive(Debug, thiserror::Error)]
pub enum ReauthError {
    /// The secret was wrong (counted, and audited with its detail).
    #[error("the secret is incorrect")]
    Refused,
    #[error("too many failed attempts; try again in {retry_after} s or reset the password")]
    TooMany { retry_after: u64 },
    /// The account has no password to ask, and the session was not signed
    /// in recently enough (`fresh_session`).
    #[error("sign in again (this session is older than 10 minutes) to make this change")]
    StaleSession,
    #[error(transparent)]
    Fault(#[from] Fault),
}

faults!(ReauthError);

/// An account without a password (made by a provider sign-in) may make a
/// change that would otherwise ask for it from a session signed in this
/// recently.
pub fn fresh_session() -> Duration {
    Duration::minutes(10)
}

impl From<AttemptError> for ReauthError {
    fn from(e: AttemptError) -> Self {
        match e {
            AttemptError::TooMany { retry_after } => Self::TooMany { retry_after },
            AttemptError::Fault(f) => Self::Fault(f),
        }
    }
}

impl AppState {
    /// Checks the secret asked again before an account change (`check`:
    /// `Err` when it is wrong) in a slot of the signed-in user's email from
    /// this address, exactly like a login: refused once locked, and a
    /// failure that fills a limit also ends the session it came from, so a
    /// stolen session cannot go on guessing. On `Ok` the caller settles the
    /// attempt with `passed` in the transaction that makes the change.
    pub(crate) async fn reauthenticate<F>(
        &self,
        client: &ClientInfo,
        auth: &AuthenticatedUser,
        audit_kind: &str,
        check: F,
    ) -> Result<Attempt, ReauthError>
    where
        F: std::future::Future<Output = Result<Result<(), Refusal>, Fault>>,
    {
        let user_id = auth.user.id.0;
        let attempt = self
            .reserve(client, &auth.user.email, Some(user_id), audit_kind)
            .await?;
        let refusal = match check.await {
            Ok(Ok(())) => return Ok(attempt),
            Ok(Err(refusal)) => refusal,
            Err(e) => {
                attempt.released(self).await?;
                return Err(e.into());
            }
        };
        let locked = attempt
            .failed(self, client, Some(user_id), audit_kind, refusal.detail)
            .await?;
        if locked {
            let mut pooled = self.db.get().await?;
            let conn = &mut pooled.conn();
            transaction!(conn, |tx| -> Fault {
                sessions::revoke(tx, user_id, auth.session_id, "too_many_attempts", db::now())
                    .await?;
                events::record(
                    tx,
                    &audit(
                        kind::LOGOUT,
                        Some(user_id),
                        client,
                        true,
                        Some("this session: too many failed re-authentications"),
                    ),
                )
                .await?;
                Ok(())
            })?;
            self.outbox.wake();
            tracing::warn!(%user_id, session_id = %auth.session_id, "session revoked after too many failed re-authentications");
        }
        Err(ReauthError::Refused)
    }

    /// The account's password asked again when it has one
    /// (`reauthenticate_password`; a missing one is refused without being
    /// counted); an account without a password instead needs a session
    /// signed in within `fresh_session()`. `Some(attempt)` to settle when a
    /// password was checked.
    pub(crate) async fn reauthenticate_account(
        &self,
        client: &ClientInfo,
        auth: &AuthenticatedUser,
        audit_kind: &str,
        password: Option<String>,
        detail: &'static str,
    ) -> Result<Option<Attempt>, ReauthError> {
        if auth.user.password_hash().is_some() {
            let Some(password) = password else {
                return Err(ReauthError::Refused);
            };
            return self
                .reauthenticate_password(client, auth, audit_kind, password, detail)
                .await
                .map(Some);
        }
        let now = db::now();
        let mut pooled = self.db.get().await?;
        let session = sessions::find_active_with_user(&mut pooled.conn(), auth.session_id, now)
            .await
            .map_err(Fault::from)?;
        if session.is_none_or(|(s, _)| s.created_at.0 < now - fresh_session()) {
            return Err(ReauthError::StaleSession);
        }
        Ok(None)
    }

    /// `reauthenticate` with the account's password as the secret (a
    /// wrong one is audited with `detail`).
    pub(crate) async fn reauthenticate_password(
        &self,
        client: &ClientInfo,
        auth: &AuthenticatedUser,
        audit_kind: &str,
        password: String,
        detail: &'static str,
    ) -> Result<Attempt, ReauthError> {
        let check = async {
            Ok(if self.password_matches(&auth.user, password).await? {
                Ok(())
            } else {
                Err(Refusal { detail })
            })
        };
        self.reauthenticate(client, auth, audit_kind, check).await
    }

    /// True when `password` is the user's; costs one argon2 verification.
    pub(crate) async fn password_matches(
        &self,
        user: &crate::db::users::User,
        password: String,
    ) -> Result<bool, Fault> {
        Ok(self
            .hasher
            .verify(secrecy::SecretString::from(password), user.password_hash())
            .await?)
    }
}

impl Attempt {
    /// The check failed: counts it, locks when a limit is full, and audits
    /// the failure as `audit_kind` (and the lock). True when this failure locked.
    pub(crate) async fn failed(
        self,
        state: &AppState,
        client: &ClientInfo,
        user_id: Option<Uuid>,
        audit_kind: &str,
        detail: &str,
    ) -> Result<bool, Fault> {
        let mut pooled = state.db.get().await?;
        let conn = &mut pooled.conn();
        let locked = transaction!(conn, |tx| -> Fault {
            let locked = lockouts::settle_failure(
                tx,
                &self.email_key,
                &self.ip,
                state.lockout_threshold(),
                state.lockout_window(),
                db::now(),
            )
            .await?;
            let record = |kind, detail| audit(kind, user_id, client, false, Some(detail));
            events::record(tx, &record(audit_kind, detail)).await?;
            if let Some(locked) = locked {
                let what = match locked {
                    Locked::Pair => "this email from this address",
                    Locked::Email => "this email from every address",
                };
                events::record(tx, &record(kind::LOCKOUT, what)).await?;
                tracing::warn!(user_id = ?user_id, lock = what, "locked after repeated failures");
            }
            Ok(locked.is_some())
        })?;
        if locked {
            state.metrics.lockout();
        }
        Ok(locked)
    }

    /// The check passed; call inside the transaction that acts on it. A
    /// lock that a concurrent failure wrote meanwhile wins: 429, and the
    /// caller's transaction rolls back.
    pub(crate) async fn passed(
        &self,
        state: &AppState,
        tx: &mut Conn<'_>,
    ) -> Result<(), AttemptError> {
        let now = db::now();
        lockouts::settle_success(tx, &self.email_key, &self.ip, state.lockout_window(), now)
            .await?
            .map_err(|until| too_many_attempts(until, now))
    }

    /// The result of the transaction that called `passed`: when it failed
    /// for another reason (a conflict, a mail sent too recently, the
    /// database), its rollback kept the slot, and a right secret must not
    /// count as a failure, so the slot is given back (best effort).
    pub(crate) async fn settle<T, E: LockedOut>(
        self,
        state: &AppState,
        result: Result<T, E>,
    ) -> Result<T, E> {
        if let Err(e) = &result {
            if !e.locked_out() {
                if let Err(release) = self.released(state).await {
                    tracing::warn!(error = %release, "a passed check's slot was not released");
                }
            }
        }
        result
    }

    /// Nothing was decided by a wrong secret: the slot is given back.
    pub(crate) async fn released(self, state: &AppState) -> Result<(), Fault> {
        let mut pooled = state.db.get().await?;
        lockouts::release(&mut pooled.conn(), self.slot).await?;
        Ok(())
    }
}
