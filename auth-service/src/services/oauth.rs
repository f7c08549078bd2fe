//! Sign-in with other providers, the accounts side: the authorize
//! redirect, the callback, the one-time code's exchange for a session,
//! linking and unlinking identities. The protocol is `crate::providers`.
//!
//! The secrets of a sign-in are single use and kept in the database
//! (`db::identities`, so every replica agrees):
//! - the `state` of the authorize redirect (10 minutes) is bound to the
//!   browser that started it by an HttpOnly cookie (`BINDING_COOKIE`): a
//!   state carried to another browser (a login CSRF, a leaked URL) is
//!   refused at the callback;
//! - the one-time `code` of the callback's fragment (60 s) is exchanged
//!   for the session; a user with TOTP must send the code with it, and a
//!   missing or wrong second factor leaves the code good until it expires
//!   (wrong ones count toward the lockout like a login's);
//! - a link ticket (5 minutes) starts linking from a signed-in session.
//!
//! Accounts: an identity (provider, subject) belongs to one user. A new one
//! makes a user, unless its email is an account's: it is then linked only
//! when both the provider and the account say the address is verified,
//! else 409 `account_exists` (sign in, then link). A user keeps at least
//! one way to sign in (a password or an identity).

use chrono::Duration;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use serde::{Deserialize, Serialize};
use shared_types::{PublicUser, TokenPair};
use uuid::Uuid;

use super::{audit, faults, second_factor, sessions, Fault};
use crate::attempts::{lockout_errors, Attempt, ReauthError};
use crate::db::events::{self, kind};
use crate::db::identities::{self, flow, Identity, NewIdentity};
use crate::db::mail::{self, MailKind};
use crate::db::sql_types::{DbTime, DbUuid};
use crate::db::users::{self, NewUser, User, NO_PASSWORD};
use crate::db::{self, Conn};
use crate::domain::Email;
use crate::extractors::{AuthenticatedUser, ClientInfo};
use crate::providers::{Asserted, Challenge, Provider, ProviderTokens};
use crate::tokens::{hash_token, random_token};
use crate::AppState;
use service_kit::invalid::Invalid;
use service_kit::transaction;

/// The cookie that binds a sign-in's state to the browser that started
/// it: HttpOnly, `SameSite=Lax` (the provider's redirect back is a
/// top-level navigation from another site), path `/v1/oauth`.
pub const BINDING_COOKIE: &str = "oauth_binding";
pub fn state_ttl() -> Duration {
    Duration::minutes(10)
}
pub fn code_ttl() -> Duration {
    Duration::seconds(60)
}
pub fn link_ttl() -> Duration {
    Duration::minutes(5)
}

#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error("no such provider")]
    UnknownProvider,
    #[error("return_to must be an address under {0}")]
    InvalidReturnTo(String),
    #[error("this sign-in is unknown, expired, already used or was started in another browser; start again")]
    InvalidState,
    #[error("the code is unknown, expired or used already; sign in again")]
    InvalidCode,
    #[error("an account with this email already exists; sign in to it, then link the provider in its settings")]
    AccountExists,
    #[error("this account is locked; contact an administrator")]
    AccountLocked,
    #[error(
        "this account uses two-factor sign-in: send the code again with totp_code (a current code or a recovery code)"
    )]
    MfaRequired,
    #[error(
        "the code is incorrect or was used already; send a current code or an unused recovery code"
    )]
    WrongSecondFactor,
    #[error("too many failed attempts; try again in {retry_after} s or reset the password")]
    TooManyAttempts { retry_after: u64 },
    #[error("current_password is missing or incorrect (an account with a password must send it to link a provider)")]
    WrongPassword,
    #[error("sign in again (this session is older than 10 minutes) to link a provider")]
    StaleSession,
    #[error("no such identity")]
    NoSuchIdentity,
    #[error("this is the account's last way to sign in: set a password (reset it by mail) or link another provider first")]
    LastSignInMethod,
    /// `AUTH_ALLOWED_EMAIL_DOMAINS`.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error(transparent)]
    Fault(#[from] Fault),
}

faults!(OAuthError);
lockout_errors!(OAuthError);

impl From<ReauthError> for OAuthError {
    fn from(e: ReauthError) -> Self {
        match e {
            ReauthError::Refused => Self::WrongPassword,
            ReauthError::StaleSession => Self::StaleSession,
            ReauthError::TooMany { retry_after } => Self::TooManyAttempts { retry_after },
            ReauthError::Fault(f) => Self::Fault(f),
        }
    }
}

/// What the state row keeps (sealed).
#[derive(Serialize, Deserialize)]
struct StateData {
    pkce_verifier: String,
    nonce: String,
    return_to: String,
    binding_hash: String,
}

#[derive(Serialize, Deserialize)]
struct LinkData {
    return_to: String,
}

impl AppState {
    fn provider(&self, name: &str) -> Result<&Provider, OAuthError> {
        self.providers.get(name).ok_or(OAuthError::UnknownProvider)
    }

    /// `{AUTH_PUBLIC_URL}/v1/oauth/{provider}/callback`: what to register
    /// at the provider.
    pub fn redirect_uri(&self, provider: &str) -> String {
        format!(
            "{}/v1/oauth/{provider}/callback",
            self.settings.public_url.trim_end_matches('/')
        )
    }

    fn seal_tokens(&self, identity_id: Uuid, tokens: &ProviderTokens) -> Result<String, Fault> {
        let json = serde_json::to_vec(tokens).map_err(anyhow::Error::from)?;
        Ok(self
            .settings
            .secrets_key
            .seal_text(format!("oauth_tokens:{identity_id}").as_bytes(), &json))
    }

    /// `return_to` if it lies under `AUTH_APP_URL` (same origin, under its
    /// path), without a fragment; `AUTH_APP_URL/` when absent.
    pub fn check_return_to(&self, return_to: Option<&str>) -> Result<String, OAuthError> {
        let app = self.settings.app_url.as_str();
        let refuse = || OAuthError::InvalidReturnTo(app.to_owned());
        let Some(raw) = return_to.filter(|r| !r.is_empty()) else {
            return Ok(format!("{app}/"));
        };
        if raw.len() > 2048 {
            return Err(refuse());
        }
        let base = oauth2::url::Url::parse(&format!("{app}/")).map_err(|_| refuse())?;
        // Parsed, so `..`, `\` and percent-encoded tricks are resolved
        // before the comparison, as the browser will resolve them.
        let mut url = oauth2::url::Url::parse(raw).map_err(|_| refuse())?;
        if url.origin() != base.origin()
            || !url.username().is_empty()
            || url.password().is_some()
            || !url.path().starts_with(base.path())
        {
            return Err(refuse());
        }
        url.set_fragment(None);
        Ok(url.to_string())
    }
}

/// `return_to` with the outcome in its fragment.
fn with_fragment(return_to: &str, key: &str, value: &str) -> String {
    format!("{return_to}#{key}={value}")
}

/// The authorize redirect.
pub struct Begun {
    /// Where the browser goes: the provider, or `return_to#error=...`.
    pub location: String,
    /// The binding cookie's value to set.
    pub binding: String,
}

/// Starts a sign-in at `provider` (or, with a link ticket, linking it to
/// the ticket's user). `binding` is the browser's binding cookie, if it
/// has one already (several sign-ins may be open in one browser).
pub async fn begin(
    state: &AppState,
    provider: &str,
    return_to: Option<&str>,
    link_ticket: Option<&str>,
    login_hint: Option<&str>,
    binding: Option<&str>,
) -> Result<Begun, OAuthError> {
    let provider = state.provider(provider)?;
    let name = provider.settings.name.as_str();
    let (return_to, linking) = match link_ticket {
        None => (state.check_return_to(return_to)?, None),
        Some(ticket) => {
            let taken = state.take_flow::<LinkData>(flow::LINK, ticket).await?;
            let Some((taken, data)) = taken.filter(|(f, _)| f.provider == name) else {
                return Err(OAuthError::InvalidState);
            };
            (data.return_to, taken.user_id)
        }
    };
    let binding = binding
        .filter(|b| {
            b.len() == 43
                && b.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        })
        .map_or_else(random_token, str::to_owned);
    let challenge = Challenge::new();
    let hint = login_hint.filter(|h| !h.is_empty() && h.len() <= 254);
    let location = match state
        .providers
        .authorize_url(provider, &state.redirect_uri(name), &challenge, hint)
        .await
    {
        Ok(url) => url,
        Err(e) => {
            tracing::warn!(provider = name, error = %e, "sign-in with provider could not start");
            return Ok(Begun {
                location: with_fragment(&return_to, "error", e.code()),
                binding,
            });
        }
    };
    let data = StateData {
        pkce_verifier: challenge.pkce_verifier.clone(),
        nonce: challenge.nonce.clone(),
        return_to,
        binding_hash: hash_token(&binding),
    };
    let row = state.flow_row(
        flow::STATE,
        &challenge.state,
        name,
        linking,
        state_ttl(),
        &data,
    )?;
    // A connection only now: none is held while the provider's discovery
    // is fetched, so a slow provider cannot drain the pool.
    let mut pooled = state.db.get().await?;
    identities::put_flow(&mut pooled.conn(), &row, db::now()).await?;
    Ok(Begun { location, binding })
}

/// What the provider sent back to the callback.
pub struct Callback {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
}

/// The provider's redirect back: checks the state and its browser, asks
/// the provider who signed in, and answers where the browser goes next:
/// `return_to#code=...` (to exchange), `#linked=PROVIDER`, or `#error=CODE`.
pub async fn callback(
    state: &AppState,
    client: &ClientInfo,
    provider: &str,
    params: Callback,
    binding: Option<&str>,
) -> Result<String, OAuthError> {
    let provider = state.provider(provider)?;
    let name = provider.settings.name.as_str();
    let now = db::now();
    let Some(state_param) = params.state.as_deref() else {
        return Err(OAuthError::InvalidState);
    };
    let taken = state
        .take_flow::<StateData>(flow::STATE, state_param)
        .await?;
    let Some((taken, data)) = taken.filter(|(f, _)| f.provider == name) else {
        return Err(OAuthError::InvalidState);
    };
    let same_browser =
        binding.is_some_and(|b| service_kit::http::key_matches(&hash_token(b), &data.binding_hash));
    if !same_browser {
        tracing::warn!(
            provider = name,
            "provider callback from a browser that did not start the sign-in"
        );
        return Err(OAuthError::InvalidState);
    }
    let fail = |code: &str| with_fragment(&data.return_to, "error", code);
    if let Some(error) = params.error.as_deref() {
        tracing::info!(
            provider = name,
            error,
            "provider answered the sign-in with an error"
        );
        return Ok(fail(if error == "access_denied" {
            "access_denied"
        } else {
            "provider_error"
        }));
    }
    let Some(code) = params.code.as_deref().filter(|c| !c.is_empty()) else {
        return Ok(fail("provider_error"));
    };
    let asserted = match state
        .providers
        .identify(
            provider,
            &state.redirect_uri(name),
            code,
            &data.pkce_verifier,
            &data.nonce,
        )
        .await
    {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(provider = name, error = %e, "provider sign-in failed");
            return Ok(fail(e.code()));
        }
    };
    if let Some(user_id) = taken.user_id {
        return Ok(
            match link(state, client, user_id.0, name, &asserted).await? {
                true => with_fragment(&data.return_to, "linked", name),
                false => fail("identity_taken"),
            },
        );
    }
    let one_time = random_token();
    let row = state.flow_row(flow::CODE, &one_time, name, None, code_ttl(), &asserted)?;
    let mut pooled = state.db.get().await?;
    identities::put_flow(&mut pooled.conn(), &row, now).await?;
    Ok(with_fragment(&data.return_to, "code", &one_time))
}

/// Links the asserted identity to `user_id`; false when it is another
/// user's.
async fn link(
    state: &AppState,
    client: &ClientInfo,
    user_id: Uuid,
    provider: &str,
    asserted: &Asserted,
) -> Result<bool, OAuthError> {
    let now = db::now();
    let identity_id = Uuid::now_v7();
    let sealed = state.seal_tokens(identity_id, &asserted.tokens)?;
    let mut pooled = state.db.get().await?;
    let conn = &mut pooled.conn();
    let linked = transaction!(conn, |tx| -> OAuthError {
        identities::lock_sign_in_methods(tx, user_id).await?;
        let Some(user) = users::find(tx, user_id).await? else {
            return Err(OAuthError::InvalidState);
        };
        match identities::find(tx, provider, &asserted.subject).await? {
            Some(existing) if existing.user_id.0 == user_id => {
                let sealed = state.seal_tokens(existing.id.0, &asserted.tokens)?;
                identities::refresh(
                    tx,
                    existing.id.0,
                    &asserted.email,
                    &sealed,
                    asserted.tokens.expires_at,
                    now,
                )
                .await?;
                return Ok(true);
            }
            Some(_) => return Ok(false),
            None => {}
        }
        let new = NewIdentity {
            id: identity_id,
            user_id,
            provider,
            subject: &asserted.subject,
            email: &asserted.email,
            tokens_sealed: &sealed,
            tokens_expire: asserted.tokens.expires_at,
        };
        match identities::insert(tx, &new, now).await {
            Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => {
                return Ok(false)
            }
            other => other?,
        }
        linked_audit_and_notice(state, tx, client, &user, provider, &asserted.email).await?;
        Ok(true)
    })?;
    state.mail.wake();
    Ok(linked)
}

/// The audit row and the owner's notice of a new identity.
async fn linked_audit_and_notice(
    state: &AppState,
    tx: &mut Conn<'_>,
    client: &ClientInfo,
    user: &User,
    provider: &str,
    provider_email: &str,
) -> Result<(), Fault> {
    let detail = format!("{provider}: {provider_email}");
    events::record(
        tx,
        &audit(
            kind::IDENTITY_LINKED,
            Some(user.id.0),
            client,
            true,
            Some(&detail),
        ),
    )
    .await?;
    let notice = mail::Payload {
        subject: format!("A {provider} account ({provider_email}) was linked to your account"),
        token: None,
        link: None,
    };
    mail::enqueue(
        tx,
        &state.settings.secrets_key,
        MailKind::IdentityLinked,
        &user.email,
        &notice,
    )
    .await?;
    Ok(())
}

/// A session from a provider sign-in.
pub struct Exchanged {
    pub user: PublicUser,
    pub tokens: TokenPair,
    /// True when this sign-in made the account.
    pub created: bool,
}

/// Who the asserted identity is here.
enum Resolved {
    Known(Box<User>, Identity),
    /// An account with the same, verified address: linked by this sign-in.
    SameEmail(Box<User>),
    New,
}

/// Finds the account the asserted identity signs in to, by the identity,
/// else by a verified address both sides vouch for.
async fn resolve(
    state: &AppState,
    provider: &str,
    asserted: &Asserted,
) -> Result<Resolved, OAuthError> {
    let mut pooled = state.db.get().await?;
    let conn = &mut pooled.conn();
    Ok(
        match identities::find(conn, provider, &asserted.subject).await? {
            Some(identity) => match users::find(conn, identity.user_id.0).await? {
                Some(user) => Resolved::Known(Box::new(user), identity),
                None => Resolved::New,
            },
            None => match users::find_by_email(conn, &asserted.email).await? {
                Some(user) if asserted.email_verified && user.email_verified => {
                    Resolved::SameEmail(Box::new(user))
                }
                Some(_) => return Err(OAuthError::AccountExists),
                None => Resolved::New,
            },
        },
    )
}

/// Exchanges the callback's one-time code for a session.
pub async fn exchange(
    state: &AppState,
    client: &ClientInfo,
    code: &str,
    totp_code: Option<&str>,
) -> Result<Exchanged, OAuthError> {
    let Some((taken, asserted)) = state.take_flow::<Asserted>(flow::CODE, code).await? else {
        return Err(OAuthError::InvalidCode);
    };
    let result = sign_in(state, client, &taken.provider, asserted, totp_code).await;
    if matches!(
        result,
        Err(OAuthError::MfaRequired
            | OAuthError::WrongSecondFactor
            | OAuthError::TooManyAttempts { .. })
    ) {
        // The second factor may still come: the code stays good until it
        // expires (wrong codes count toward the lockout meanwhile).
        let mut pooled = state.db.get().await?;
        identities::put_flow(&mut pooled.conn(), &taken, db::now()).await?;
    }
    result
}

async fn sign_in(
    state: &AppState,
    client: &ClientInfo,
    provider: &str,
    asserted: Asserted,
    totp_code: Option<&str>,
) -> Result<Exchanged, OAuthError> {
    let resolved = resolve(state, provider, &asserted).await?;
    // The gate may count a failure, which takes a connection of its own:
    // none is held across it.
    let attempt = match &resolved {
        Resolved::Known(user, _) | Resolved::SameEmail(user) => {
            second_factor_gate(state, client, user, totp_code).await?
        }
        Resolved::New => {
            state.check_email_domain(&Email::parse(&asserted.email)?)?;
            None
        }
    };
    let now = db::now();
    let identity_id = Uuid::now_v7();
    let mut pooled = state.db.get().await?;
    let conn = &mut pooled.conn();
    let result = transaction!(conn, |tx| -> OAuthError {
        if let Some(attempt) = &attempt {
            attempt.passed(state, tx).await?;
        }
        let (user, created) = match &resolved {
            Resolved::Known(user, identity) => {
                let sealed = state.seal_tokens(identity.id.0, &asserted.tokens)?;
                identities::refresh(
                    tx,
                    identity.id.0,
                    &asserted.email,
                    &sealed,
                    asserted.tokens.expires_at,
                    now,
                )
                .await?;
                ((**user).clone(), false)
            }
            Resolved::SameEmail(user) => {
                identities::lock_sign_in_methods(tx, user.id.0).await?;
                insert_identity(state, tx, identity_id, user.id.0, provider, &asserted).await?;
                linked_audit_and_notice(state, tx, client, user, provider, &asserted.email).await?;
                ((**user).clone(), false)
            }
            Resolved::New => {
                let new_user = NewUser {
                    id: DbUuid(Uuid::now_v7()),
                    email: &asserted.email,
                    password_hash: NO_PASSWORD,
                    email_verified: asserted.email_verified,
                    full_name: asserted.name.as_deref(),
                    password_changed_at: DbTime(now),
                    created_at: DbTime(now),
                    updated_at: DbTime(now),
                };
                let user = users::insert(tx, &new_user)
                    .await
                    .map_err(taken_meanwhile)?;
                if !asserted.email_verified {
                    state.queue_verification(tx, user.id.0, &user.email).await?;
                }
                insert_identity(state, tx, identity_id, user.id.0, provider, &asserted).await?;
                (user, true)
            }
        };
        let tokens = sessions::start(state, tx, user.id.0, client, now).await?;
        users::touch_last_login(tx, user.id.0, now).await?;
        events::record(
            tx,
            &audit(
                kind::OAUTH_LOGIN,
                Some(user.id.0),
                client,
                true,
                Some(provider),
            ),
        )
        .await?;
        Ok(Exchanged {
            user: PublicUser {
                id: user.id.0,
                email: user.email.clone(),
                email_verified: user.email_verified,
                full_name: user.full_name.clone(),
                created_at: user.created_at.0,
            },
            tokens,
            created,
        })
    });
    drop(pooled);
    let result = match attempt {
        Some(attempt) => attempt.settle(state, result).await,
        None => result,
    };
    if let Ok(done) = &result {
        state.outbox.wake();
        state.mail.wake();
        tracing::info!(user_id = %done.user.id, provider, created = done.created, "signed in with a provider");
    }
    result
}

/// A unique violation while making the account: the address or the
/// identity was taken by a concurrent sign-in.
fn taken_meanwhile(e: DieselError) -> OAuthError {
    match e {
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
            OAuthError::AccountExists
        }
        other => other.into(),
    }
}

async fn insert_identity(
    state: &AppState,
    tx: &mut Conn<'_>,
    id: Uuid,
    user_id: Uuid,
    provider: &str,
    asserted: &Asserted,
) -> Result<(), OAuthError> {
    let sealed = state.seal_tokens(id, &asserted.tokens)?;
    let new = NewIdentity {
        id,
        user_id,
        provider,
        subject: &asserted.subject,
        email: &asserted.email,
        tokens_sealed: &sealed,
        tokens_expire: asserted.tokens.expires_at,
    };
    identities::insert(tx, &new, db::now())
        .await
        .map_err(taken_meanwhile)
}

/// The administrator's lock, then the second factor of a TOTP user, in a
/// lockout slot of the account's email (as a login's code is checked).
/// `Some(attempt)` to settle in the sign-in's transaction.
async fn second_factor_gate(
    state: &AppState,
    client: &ClientInfo,
    user: &User,
    totp_code: Option<&str>,
) -> Result<Option<Attempt>, OAuthError> {
    if user.account_locked {
        let mut pooled = state.db.get().await?;
        super::audit_locked_refusal(&mut pooled.conn(), client, user.id.0).await?;
        return Err(OAuthError::AccountLocked);
    }
    if !user.mfa_enabled {
        return Ok(None);
    }
    let Some(code) = totp_code else {
        return Err(OAuthError::MfaRequired);
    };
    let attempt = state
        .reserve(client, &user.email, Some(user.id.0), kind::LOGIN_FAILED)
        .await?;
    match second_factor::check_in_slot(state, client, user.id.0, code, attempt).await? {
        Some(attempt) => Ok(Some(attempt)),
        None => Err(OAuthError::WrongSecondFactor),
    }
}

/// Starts linking `provider` to the signed-in caller: answers the URL the
/// browser goes to. The account's password is asked again (a stolen
/// session must not add the thief's identity as a way in); an account
/// without one needs a session signed in within the last 10 minutes.
pub async fn start_link(
    state: &AppState,
    client: &ClientInfo,
    auth: &AuthenticatedUser,
    provider: &str,
    current_password: Option<String>,
    return_to: Option<&str>,
) -> Result<String, OAuthError> {
    let name = state.provider(provider)?.settings.name.clone();
    let return_to = state.check_return_to(return_to)?;
    let ticket = random_token();
    let row = state.flow_row(
        flow::LINK,
        &ticket,
        &name,
        Some(auth.user.id),
        link_ttl(),
        &LinkData { return_to },
    )?;
    let now = db::now();
    let attempt = state
        .reauthenticate_account(
            client,
            auth,
            kind::IDENTITY_LINKED,
            current_password,
            "wrong current password",
        )
        .await?;
    let mut pooled = state.db.get().await?;
    let conn = &mut pooled.conn();
    let result = transaction!(conn, |tx| -> OAuthError {
        if let Some(attempt) = &attempt {
            attempt.passed(state, tx).await?;
        }
        identities::put_flow(tx, &row, now).await?;
        Ok(())
    });
    drop(pooled);
    match attempt {
        Some(attempt) => attempt.settle(state, result).await?,
        None => result?,
    }
    Ok(format!(
        "{}/v1/oauth/{name}/authorize?link={ticket}",
        state.settings.public_url.trim_end_matches('/')
    ))
}

/// The caller's identities.
pub async fn list(state: &AppState, user_id: Uuid) -> Result<Vec<Identity>, Fault> {
    let mut pooled = state.db.get().await?;
    Ok(identities::of_user(&mut pooled.conn(), user_id).await?)
}

/// Removes one of the caller's identities and its tokens, unless it is the
/// account's last way to sign in. Serialised per user, so two removals at
/// once cannot both pass that check.
pub async fn unlink(
    state: &AppState,
    client: &ClientInfo,
    user_id: Uuid,
    identity_id: Uuid,
) -> Result<(), OAuthError> {
    let mut pooled = state.db.get().await?;
    let conn = &mut pooled.conn();
    transaction!(conn, |tx| -> OAuthError {
        let methods = identities::sign_in_methods_locked(tx, user_id).await?;
        let Some(removed) = identities::delete(tx, user_id, identity_id).await? else {
            return Err(OAuthError::NoSuchIdentity);
        };
        if methods.total() <= 1 {
            return Err(OAuthError::LastSignInMethod);
        }
        let detail = format!(
            "{}: {}",
            removed.provider,
            removed.email.as_deref().unwrap_or("")
        );
        events::record(
            tx,
            &audit(
                kind::IDENTITY_UNLINKED,
                Some(user_id),
                client,
                true,
                Some(&detail),
            ),
        )
        .await?;
        Ok(())
    })
}
