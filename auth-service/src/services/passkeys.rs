//! Passkeys (WebAuthn, webauthn-rs): registering one from a signed-in
//! session, listing and removing them, and signing in with one, with an
//! email (the account's credentials are offered) or without (discoverable
//! credentials).
//!
//! Every ceremony's state is stored server-side in `oauth_flows` (single
//! use, five minutes, sealed), so replicas agree and a challenge answers
//! once. webauthn-rs checks the relying party id, the origin, the
//! signature, user verification (a passkey is always user-verified, so it
//! satisfies the second factor) and the signature counter: a counter that
//! goes backwards means a cloned authenticator, refused and audited. A
//! sign-in with a passkey takes a slot of the same lockout as a password.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::Duration;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use serde::{Deserialize, Serialize};
use shared_types::TokenPair;
use uuid::Uuid;
use webauthn_rs::prelude::{
    DiscoverableAuthentication, Passkey, PasskeyAuthentication, PasskeyRegistration,
    PublicKeyCredential, RegisterPublicKeyCredential, WebauthnError,
};

use super::{audit, faults, sessions, Fault};
use crate::attempts::{lockout_errors, Attempt, ReauthError};
use crate::db::events::{self, kind};
use crate::db::identities::{self, Flow};
use crate::db::passkeys::{self as db_passkeys, PasskeyRow};
use crate::db::sql_types::{DbTime, DbUuid};
use crate::db::{self, users};
use crate::extractors::{AuthenticatedUser, ClientInfo};
use crate::tokens::random_token;
use crate::AppState;
use service_kit::transaction;

pub const REGISTRATION: &str = "passkey_registration";
pub const AUTHENTICATION: &str = "passkey_authentication";

pub fn challenge_ttl() -> Duration {
    Duration::minutes(5)
}

#[derive(Debug, thiserror::Error)]
pub enum PasskeyError {
    /// Malformed, for another challenge or origin, badly signed, replayed,
    /// or a credential registered already.
    #[error("the credential was not accepted: {0}")]
    InvalidCredential(String),
    #[error("the passkey or its challenge is not valid; start again")]
    InvalidCredentials,
    #[error("too many failed attempts; try again in {retry_after} s or reset the password")]
    TooManyAttempts { retry_after: u64 },
    #[error("this account is locked; contact an administrator")]
    AccountLocked,
    #[error("no such passkey")]
    NotFound,
    #[error("passkeys are off on this deployment (AUTH_WEBAUTHN_RP_ID is not set and the app is served at an IP address)")]
    Disabled,
    #[error("current_password is missing or incorrect (an account with a password must send it to add a passkey)")]
    WrongPassword,
    #[error("sign in again (this session is older than 10 minutes) to add a passkey")]
    StaleSession,
    #[error("this is the account's last way to sign in: set a password (reset it by mail) or add another way first")]
    LastSignInMethod,
    #[error(transparent)]
    Fault(#[from] Fault),
}

faults!(PasskeyError);
lockout_errors!(PasskeyError);

impl From<ReauthError> for PasskeyError {
    fn from(e: ReauthError) -> Self {
        match e {
            ReauthError::Refused => Self::WrongPassword,
            ReauthError::StaleSession => Self::StaleSession,
            ReauthError::TooMany { retry_after } => Self::TooManyAttempts { retry_after },
            ReauthError::Fault(f) => Self::Fault(f),
        }
    }
}

/// A ceremony's options for the browser, and the id of its stored state.
pub struct Challenge {
    pub challenge_id: String,
    /// What `navigator.credentials.create` / `.get` takes.
    pub options: serde_json::Value,
}

#[derive(Serialize, Deserialize)]
enum LoginState {
    /// With an email: the account's credentials were offered.
    Offered(PasskeyAuthentication),
    /// Without: any discoverable credential of this relying party.
    Discoverable(DiscoverableAuthentication),
}

impl AppState {
    fn relying_party(&self) -> Result<&webauthn_rs::Webauthn, PasskeyError> {
        self.webauthn.as_ref().ok_or(PasskeyError::Disabled)
    }

    /// A new ceremony's challenge id and its stored state.
    fn passkey_flow(
        &self,
        kind: &str,
        user_id: Option<Uuid>,
        data: &impl Serialize,
    ) -> Result<(String, Flow), Fault> {
        let secret = random_token();
        let flow = self.flow_row(
            kind,
            &secret,
            "passkey",
            user_id.map(DbUuid),
            challenge_ttl(),
            data,
        )?;
        Ok((secret, flow))
    }
}

fn credential_key(id: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(id)
}

/// The registration options: a discoverable credential is asked for, so
/// the passkey also signs in without an email. The account's password is
/// asked again (counted like a login's): a stolen session must not add the
/// thief's passkey as a way in. An account without a password needs a
/// session signed in within the last 10 minutes instead.
pub async fn register_start(
    state: &AppState,
    client: &ClientInfo,
    auth: &AuthenticatedUser,
    current_password: Option<String>,
) -> Result<Challenge, PasskeyError> {
    let relying_party = state.relying_party()?;
    let attempt = state
        .reauthenticate_account(
            client,
            auth,
            kind::PASSKEY_ADDED,
            current_password,
            "wrong current password",
        )
        .await?;
    let user = &auth.user;
    let existing = {
        let mut pooled = state.db.get().await?;
        db_passkeys::of_user(&mut pooled.conn(), user.id.0).await?
    };
    let exclude: Vec<_> = existing
        .iter()
        .filter_map(|row| serde_json::from_str::<Passkey>(&row.passkey).ok())
        .map(|p| p.cred_id().clone())
        .collect();
    let display = user.full_name.as_deref().unwrap_or(&user.email);
    let (ccr, registration) = relying_party
        .start_passkey_registration(user.id.0, &user.email, display, Some(exclude))
        .map_err(|e| Fault::Internal(anyhow::anyhow!("passkey registration start: {e}")))?;
    let mut options = serde_json::to_value(&ccr).map_err(|e| Fault::Internal(e.into()))?;
    if let Some(selection) = options
        .pointer_mut("/publicKey/authenticatorSelection")
        .and_then(|s| s.as_object_mut())
    {
        selection.insert("residentKey".into(), "required".into());
        selection.insert("requireResidentKey".into(), true.into());
    }
    let (challenge_id, flow) = state.passkey_flow(REGISTRATION, Some(user.id.0), &registration)?;
    let mut pooled = state.db.get().await?;
    let conn = &mut pooled.conn();
    let result = transaction!(conn, |tx| -> PasskeyError {
        if let Some(attempt) = &attempt {
            attempt.passed(state, tx).await?;
        }
        identities::put_flow(tx, &flow, db::now()).await?;
        Ok(())
    });
    drop(pooled);
    match attempt {
        Some(attempt) => attempt.settle(state, result).await?,
        None => result?,
    }
    Ok(Challenge {
        challenge_id,
        options,
    })
}

/// A new passkey, as listed.
pub struct Added {
    pub id: Uuid,
    pub name: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

pub async fn register_finish(
    state: &AppState,
    client: &ClientInfo,
    auth: &AuthenticatedUser,
    challenge_id: &str,
    credential: serde_json::Value,
    name: Option<String>,
) -> Result<Added, PasskeyError> {
    let invalid = |why: &str| PasskeyError::InvalidCredential(why.to_owned());
    let Some((flow, registration)) = state
        .take_flow::<PasskeyRegistration>(REGISTRATION, challenge_id)
        .await?
    else {
        return Err(invalid("unknown, expired or used challenge"));
    };
    if flow.user_id != Some(auth.user.id) {
        return Err(invalid("the challenge is another session's"));
    }
    let credential: RegisterPublicKeyCredential = serde_json::from_value(credential)
        .map_err(|e| PasskeyError::InvalidCredential(format!("malformed credential: {e}")))?;
    let passkey = state
        .relying_party()?
        .finish_passkey_registration(&credential, &registration)
        .map_err(|e| PasskeyError::InvalidCredential(e.to_string()))?;
    let now = db::now();
    let name = name
        .map(|n| n.trim().chars().take(100).collect::<String>())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "Passkey".into());
    let row = PasskeyRow {
        id: DbUuid(Uuid::now_v7()),
        user_id: auth.user.id,
        credential_id: credential_key(passkey.cred_id()),
        name: name.clone(),
        passkey: serde_json::to_string(&passkey).map_err(|e| Fault::Internal(e.into()))?,
        created_at: DbTime(now),
        last_used_at: None,
    };
    let mut pooled = state.db.get().await?;
    let conn = &mut pooled.conn();
    transaction!(conn, |tx| -> PasskeyError {
        match db_passkeys::insert(tx, &row).await {
            Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => {
                return Err(PasskeyError::InvalidCredential(
                    "this credential is registered already".into(),
                ))
            }
            other => other?,
        }
        events::record(
            tx,
            &audit(
                kind::PASSKEY_ADDED,
                Some(auth.user.id.0),
                client,
                true,
                Some(&name),
            ),
        )
        .await?;
        Ok(())
    })?;
    Ok(Added {
        id: row.id.0,
        name,
        created_at: now,
    })
}

pub async fn list(state: &AppState, user_id: Uuid) -> Result<Vec<PasskeyRow>, Fault> {
    let mut pooled = state.db.get().await?;
    Ok(db_passkeys::of_user(&mut pooled.conn(), user_id).await?)
}

/// Removes one of the caller's passkeys, unless it is the account's last
/// way to sign in (under the same per-user lock as unlinking).
pub async fn remove(
    state: &AppState,
    client: &ClientInfo,
    user_id: Uuid,
    id: Uuid,
) -> Result<(), PasskeyError> {
    let mut pooled = state.db.get().await?;
    let conn = &mut pooled.conn();
    transaction!(conn, |tx| -> PasskeyError {
        let methods = identities::sign_in_methods_locked(tx, user_id).await?;
        let Some(removed) = db_passkeys::delete(tx, user_id, id).await? else {
            return Err(PasskeyError::NotFound);
        };
        if methods.total() <= 1 {
            return Err(PasskeyError::LastSignInMethod);
        }
        events::record(
            tx,
            &audit(
                kind::PASSKEY_REMOVED,
                Some(user_id),
                client,
                true,
                Some(&removed.name),
            ),
        )
        .await?;
        Ok(())
    })
}

/// The sign-in options: the account's credentials when an email is given
/// and has passkeys, else a discoverable ceremony (which looks the same to
/// a caller probing for accounts).
pub async fn login_start(state: &AppState, email: Option<&str>) -> Result<Challenge, PasskeyError> {
    let rp = state.relying_party()?;
    let mut offered: Vec<Passkey> = Vec::new();
    if let Some(email) = email.and_then(|e| crate::domain::Email::parse(e).ok()) {
        let mut pooled = state.db.get().await?;
        let conn = &mut pooled.conn();
        if let Some(user) = users::find_by_email(conn, email.as_str()).await? {
            offered = db_passkeys::of_user(conn, user.id.0)
                .await?
                .iter()
                .filter_map(|row| serde_json::from_str(&row.passkey).ok())
                .collect();
        }
    }
    let start_failed =
        |e: WebauthnError| Fault::Internal(anyhow::anyhow!("passkey sign-in start: {e}"));
    let (rcr, login) = if offered.is_empty() {
        let (mut rcr, discoverable) = rp
            .start_discoverable_authentication()
            .map_err(start_failed)?;
        // A button, not the autofill (conditional) prompt.
        rcr.mediation = None;
        (rcr, LoginState::Discoverable(discoverable))
    } else {
        let (rcr, offered) = rp
            .start_passkey_authentication(&offered)
            .map_err(start_failed)?;
        (rcr, LoginState::Offered(offered))
    };
    let options = serde_json::to_value(&rcr).map_err(|e| Fault::Internal(e.into()))?;
    let (challenge_id, flow) = state.passkey_flow(AUTHENTICATION, None, &login)?;
    let mut pooled = state.db.get().await?;
    identities::put_flow(&mut pooled.conn(), &flow, db::now()).await?;
    Ok(Challenge {
        challenge_id,
        options,
    })
}

/// Signs in with a passkey: the credential must answer this challenge,
/// from an allowed origin, signed by a registered key with user
/// verification and a counter that moved forward. Counted in the lockout
/// of the account's email.
pub async fn login_finish(
    state: &AppState,
    client: &ClientInfo,
    challenge_id: &str,
    credential: serde_json::Value,
) -> Result<TokenPair, PasskeyError> {
    let rp = state.relying_party()?;
    let Some((_, login)) = state
        .take_flow::<LoginState>(AUTHENTICATION, challenge_id)
        .await?
    else {
        return Err(PasskeyError::InvalidCredentials);
    };
    let credential: PublicKeyCredential =
        serde_json::from_value(credential).map_err(|_| PasskeyError::InvalidCredentials)?;
    let key = credential_key(credential.get_credential_id());
    let (row, user) = {
        let mut pooled = state.db.get().await?;
        let conn = &mut pooled.conn();
        let Some(row) = db_passkeys::by_credential(conn, &key).await? else {
            return Err(PasskeyError::InvalidCredentials);
        };
        let Some(user) = users::find(conn, row.user_id.0).await? else {
            return Err(PasskeyError::InvalidCredentials);
        };
        (row, user)
    };
    let attempt = state
        .reserve(client, &user.email, Some(user.id.0), kind::LOGIN_FAILED)
        .await?;
    let passkey: Passkey = parse_stored(&row)?;
    let checked = match login {
        LoginState::Offered(offered) => rp.finish_passkey_authentication(&credential, &offered),
        LoginState::Discoverable(discoverable) => {
            // The user handle the authenticator returned must be this
            // credential's owner.
            match rp.identify_discoverable_authentication(&credential) {
                Ok((handle, _)) if handle == user.id.0 => {
                    rp.finish_discoverable_authentication_v2(&credential, discoverable, &passkey)
                }
                Ok(_) => Err(WebauthnError::InvalidUserUniqueId),
                Err(e) => Err(e),
            }
        }
    };
    let result = match checked {
        Ok(result) => result,
        Err(WebauthnError::CredentialPossibleCompromise) => {
            return refuse_clone(state, client, attempt, &user, &row).await
        }
        Err(_) => return refuse(state, client, attempt, &user, "passkey refused").await,
    };
    // Giving the slot back or counting a failure takes a connection of
    // its own: none is held meanwhile.
    if user.account_locked {
        attempt.released(state).await?;
        let mut pooled = state.db.get().await?;
        super::audit_locked_refusal(&mut pooled.conn(), client, user.id.0).await?;
        return Err(PasskeyError::AccountLocked);
    }
    let mut pooled = state.db.get().await?;
    let conn = &mut pooled.conn();
    let now = db::now();
    let outcome = transaction!(conn, |tx| -> PasskeyError {
        // The counter was checked against the record read before the
        // signature; another sign-in with this passkey (a clone's, on
        // another replica) may have moved it since. Sign-ins of one
        // passkey take turns here and check the counter stored now, so two
        // assertions with one counter never both get a session.
        tx.lock_key(&format!("passkey:{}", row.id.0)).await?;
        let Some(current) = db_passkeys::by_credential(tx, &key).await? else {
            return Err(PasskeyError::InvalidCredentials);
        };
        let mut passkey = parse_stored(&current)?;
        let counter = result.counter();
        if counter != 0 && counter <= stored_counter(&passkey)? {
            return Ok(None);
        }
        passkey.update_credential(&result);
        let updated = serde_json::to_string(&passkey).map_err(|e| Fault::Internal(e.into()))?;
        attempt.passed(state, tx).await?;
        db_passkeys::used(tx, row.id.0, &updated, now).await?;
        let tokens = sessions::start(state, tx, user.id.0, client, now).await?;
        users::touch_last_login(tx, user.id.0, now).await?;
        events::record(
            tx,
            &audit(
                kind::LOGIN_SUCCEEDED,
                Some(user.id.0),
                client,
                true,
                Some("passkey"),
            ),
        )
        .await?;
        Ok(Some(tokens))
    });
    drop(pooled);
    match outcome {
        Ok(Some(tokens)) => Ok(tokens),
        Ok(None) => refuse_clone(state, client, attempt, &user, &row).await,
        Err(e) => attempt.settle(state, Err(e)).await,
    }
}

fn parse_stored(row: &PasskeyRow) -> Result<Passkey, Fault> {
    serde_json::from_str(&row.passkey).map_err(|e| Fault::Internal(e.into()))
}

/// The signature counter of a stored passkey, read from its serialised
/// form (webauthn-rs keeps the field private without its
/// `danger-credential-internals` feature; the form is what we store).
fn stored_counter(passkey: &Passkey) -> Result<u32, Fault> {
    let value = serde_json::to_value(passkey).map_err(|e| Fault::Internal(e.into()))?;
    value
        .pointer("/cred/counter")
        .and_then(serde_json::Value::as_u64)
        .and_then(|c| u32::try_from(c).ok())
        .ok_or_else(|| Fault::Internal(anyhow::anyhow!("a stored passkey has no counter")))
}

/// A counter that did not move forward: the authenticator was probably
/// cloned. Refused like any bad assertion, and logged.
async fn refuse_clone(
    state: &AppState,
    client: &ClientInfo,
    attempt: Attempt,
    user: &users::User,
    row: &PasskeyRow,
) -> Result<TokenPair, PasskeyError> {
    tracing::warn!(user_id = %user.id.0, passkey = %row.id.0, "passkey counter went backwards: a cloned authenticator?");
    let detail = "passkey refused: its counter went backwards (a cloned authenticator?)";
    refuse(state, client, attempt, user, detail).await
}

/// A refused assertion: counted like a wrong password and audited.
async fn refuse(
    state: &AppState,
    client: &ClientInfo,
    attempt: Attempt,
    user: &users::User,
    detail: &str,
) -> Result<TokenPair, PasskeyError> {
    attempt
        .failed(state, client, Some(user.id.0), kind::LOGIN_FAILED, detail)
        .await?;
    Err(PasskeyError::InvalidCredentials)
}
