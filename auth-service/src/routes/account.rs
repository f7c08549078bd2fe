//! Password change, forgot and reset; email verification and change.
//!
//! Tokens sent by mail are 256-bit random, stored as SHA-256 only
//! (`db::one_time_tokens`), single-use and expiring; their mail is queued in
//! the same transaction (`db::mail`) and sent by `crate::mail`, never on the
//! request path.

use actix_web::{web, HttpResponse};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use secrecy::SecretString;
use serde::Deserialize;
use uuid::Uuid;

use crate::db::events::{self, kind};
use crate::db::mail::{self, kind as mail_kind};
use crate::db::one_time_tokens::{self as ott, purpose};
use crate::db::{self, lockouts, sessions, users, Conn};
use crate::domain::{Email, NewPassword};
use crate::error::ApiError;
use crate::extractors::{AuthenticatedUser, ClientInfo};
use crate::services::{audit, Fault};
use crate::tokens::{hash_token, random_token};
use crate::AppState;
use service_kit::invalid::Invalid;
use service_kit::transaction;

// Request bodies derive no `Debug`: they hold passwords and tokens.

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePassword {
    current_password: String,
    new_password: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Forgot {
    email: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reset {
    token: String,
    new_password: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    token: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeEmail {
    new_email: String,
    password: String,
}

fn invalid_token() -> ApiError {
    ApiError::new(
        actix_web::http::StatusCode::BAD_REQUEST,
        "invalid_token",
        "the token is unknown, used or expired; ask for a new one",
    )
}

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
        kind: &str,
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

    /// 422 `email_not_allowed` when `AUTH_ALLOWED_EMAIL_DOMAINS` is set and
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

    /// 429 `too_many_requests` when a mail of `kind` went to `to` less
    /// than a minute ago (`db::mail::spacing_wait`); call first in the
    /// transaction that queues the mail.
    pub(crate) async fn mail_spacing(
        &self,
        tx: &mut Conn<'_>,
        kind: &str,
        to: &str,
    ) -> Result<(), ApiError> {
        match mail::spacing_wait(tx, kind, to).await? {
            None => Ok(()),
            Some(next) => {
                let seconds = u64::try_from((next - db::now()).num_seconds())
                    .unwrap_or(0)
                    .max(1);
                Err(ApiError::too_many(
                    "too_many_requests",
                    seconds,
                    format!("a mail like this went to that address less than a minute ago; try again in {seconds} s"),
                ))
            }
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
            mail_kind::EMAIL_VERIFICATION,
            email,
            "Confirm your email address",
            "verify-email",
            &token,
        )
        .await
    }

    /// True when `password` is the user's; costs one argon2 verification.
    pub(crate) async fn password_matches(
        &self,
        user: &users::User,
        password: String,
    ) -> Result<bool, ApiError> {
        self.hasher
            .verify(
                SecretString::from(password),
                Some(user.password_hash.clone()),
            )
            .await
            .map_err(ApiError::internal)
    }
}

/// `POST /v1/password/change`: every other session of the user ends.
#[utoipa::path(post, path = "/v1/password/change", tag = "account", request_body = ChangePassword, responses((status = 204, description = "Changed; other sessions end"), (status = "4XX", description = "Problem details (RFC 9457); `code` says which", body = shared_types::Problem, content_type = "application/problem+json"), (status = "5XX", description = "Problem details; 503 when a dependency is unavailable", body = shared_types::Problem, content_type = "application/problem+json")), security(("bearer" = [])))]
pub async fn change_password(
    state: web::Data<AppState>,
    client: ClientInfo,
    auth: AuthenticatedUser,
    body: service_kit::http::Json<ChangePassword>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let new_password = NewPassword::parse(body.new_password)?;
    let user = &auth.user;
    let attempt = state
        .reauthenticate_password(
            &client,
            &auth,
            kind::PASSWORD_CHANGED,
            body.current_password,
            "current password incorrect",
        )
        .await?;
    let hash = state
        .hasher
        .hash(new_password.into_secret())
        .await
        .map_err(ApiError::internal)?;
    let now = db::now();
    let mut pooled = state.db.get().await?;
    let conn = &mut pooled.conn();
    let result = transaction!(conn, |tx| -> ApiError {
        attempt.passed(&state, tx).await?;
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
                &client,
                true,
                Some(&format!("other sessions revoked: {}", revoked.len())),
            ),
        )
        .await?;
        Ok(())
    });
    attempt.settle(&state, result).await?;
    state.outbox.wake();
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /v1/password/forgot`: 202 at once, whatever the email. The lookup
/// and the mail happen after the answer, so neither the answer nor its
/// timing says whether an account exists.
#[utoipa::path(post, path = "/v1/password/forgot", tag = "account", request_body = Forgot, responses((status = 202, description = "A reset link is mailed if the account exists"), (status = "4XX", description = "Problem details (RFC 9457); `code` says which", body = shared_types::Problem, content_type = "application/problem+json"), (status = "5XX", description = "Problem details; 503 when a dependency is unavailable", body = shared_types::Problem, content_type = "application/problem+json")), security(()))]
pub async fn forgot_password(
    state: web::Data<AppState>,
    client: ClientInfo,
    body: service_kit::http::Json<Forgot>,
) -> Result<HttpResponse, ApiError> {
    let email = Email::parse(&body.into_inner().email)?;
    let state = state.into_inner();
    tokio::spawn(async move {
        if let Err(e) = send_reset(&state, &email).await {
            tracing::warn!(error = %e, request_id = ?client.request_id, "password reset mail not queued");
        }
    });
    Ok(HttpResponse::Accepted().finish())
}

async fn send_reset(state: &AppState, email: &Email) -> Result<(), ApiError> {
    let mut pooled = state.db.get().await?;
    let conn = &mut pooled.conn();
    let Some(user) = users::find_by_email(conn, email.as_str()).await? else {
        return Ok(());
    };
    let now = db::now();
    let token = random_token();
    let queued = transaction!(conn, |tx| -> ApiError {
        // Spaced like every mail a caller can repeat; the answer was 202
        // already, so a spaced-out request just sends nothing.
        if mail::spacing_wait(tx, mail_kind::PASSWORD_RESET, &user.email)
            .await?
            .is_some()
        {
            return Ok(false);
        }
        ott::insert_reset(tx, user.id.0, &hash_token(&token), now).await?;
        state
            .queue_token_mail(
                tx,
                mail_kind::PASSWORD_RESET,
                &user.email,
                "Reset your password",
                "reset-password",
                &token,
            )
            .await?;
        Ok(true)
    })?;
    if queued {
        state.mail.wake();
    }
    Ok(())
}

/// `POST /v1/password/reset`: sets the password, ends every session, lifts
/// brute-force locks on the address (the reset proved the owner) and marks
/// the address verified (the mail reached it).
#[utoipa::path(post, path = "/v1/password/reset", tag = "account", request_body = Reset, responses((status = 204, description = "Password set; every session ended"), (status = "4XX", description = "Problem details (RFC 9457); `code` says which", body = shared_types::Problem, content_type = "application/problem+json"), (status = "5XX", description = "Problem details; 503 when a dependency is unavailable", body = shared_types::Problem, content_type = "application/problem+json")), security(()))]
pub async fn reset_password(
    state: web::Data<AppState>,
    client: ClientInfo,
    body: service_kit::http::Json<Reset>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let new_password = NewPassword::parse(body.new_password)?;
    let token_hash = hash_token(&body.token);
    let mut pooled = state.db.get().await?;
    let conn = &mut pooled.conn();
    let hash = state
        .hasher
        .hash(new_password.into_secret())
        .await
        .map_err(ApiError::internal)?;
    let now = db::now();
    transaction!(conn, |tx| -> ApiError {
        let user_id = ott::spend_reset(tx, &token_hash, now)
            .await?
            .ok_or_else(invalid_token)?;
        let user = users::set_password(tx, user_id, &hash, now)
            .await?
            .ok_or_else(invalid_token)?;
        users::mark_email_verified(tx, user_id, &user.email, now).await?;
        sessions::revoke_all(tx, user_id, None, "password reset", now).await?;
        lockouts::lift(tx, &user.email).await?;
        events::record(
            tx,
            &audit(kind::PASSWORD_RESET, Some(user_id), &client, true, None),
        )
        .await?;
        Ok(())
    })?;
    state.outbox.wake();
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /v1/email/verify/request`: mails a new link (nothing when the
/// address is verified already).
#[utoipa::path(post, path = "/v1/email/verify/request", tag = "account", responses((status = 202, description = "A verification link is mailed"), (status = "4XX", description = "Problem details (RFC 9457); `code` says which", body = shared_types::Problem, content_type = "application/problem+json"), (status = "5XX", description = "Problem details; 503 when a dependency is unavailable", body = shared_types::Problem, content_type = "application/problem+json")), security(("bearer" = [])))]
pub async fn request_verification(
    state: web::Data<AppState>,
    auth: AuthenticatedUser,
) -> Result<HttpResponse, ApiError> {
    if !auth.user.email_verified {
        let mut pooled = state.db.get().await?;
        let conn = &mut pooled.conn();
        transaction!(conn, |tx| -> ApiError {
            state
                .mail_spacing(tx, mail_kind::EMAIL_VERIFICATION, &auth.user.email)
                .await?;
            state
                .queue_verification(tx, auth.user.id.0, &auth.user.email)
                .await?;
            Ok(())
        })?;
        state.mail.wake();
    }
    Ok(HttpResponse::Accepted().finish())
}

/// `POST /v1/email/verify`
#[utoipa::path(post, path = "/v1/email/verify", tag = "account", request_body = TokenBody, responses((status = 204, description = "Email verified"), (status = "4XX", description = "Problem details (RFC 9457); `code` says which", body = shared_types::Problem, content_type = "application/problem+json"), (status = "5XX", description = "Problem details; 503 when a dependency is unavailable", body = shared_types::Problem, content_type = "application/problem+json")), security(()))]
pub async fn verify_email(
    state: web::Data<AppState>,
    client: ClientInfo,
    body: service_kit::http::Json<TokenBody>,
) -> Result<HttpResponse, ApiError> {
    let token_hash = hash_token(&body.into_inner().token);
    let mut pooled = state.db.get().await?;
    let conn = &mut pooled.conn();
    let now = db::now();
    transaction!(conn, |tx| -> ApiError {
        let (user_id, email) = ott::spend_verification(tx, &token_hash, purpose::VERIFY, now)
            .await?
            .ok_or_else(invalid_token)?;
        if users::mark_email_verified(tx, user_id, &email, now)
            .await?
            .is_none()
        {
            // Verified already (fine), or the account moved to another
            // address since the mail went out (the token is stale).
            let current = users::find(tx, user_id).await?;
            if current.is_none_or(|u| u.email != email) {
                return Err(invalid_token());
            }
            return Ok(());
        }
        events::record(
            tx,
            &audit(kind::EMAIL_VERIFIED, Some(user_id), &client, true, None),
        )
        .await?;
        Ok(())
    })?;
    state.outbox.wake();
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /v1/email/change`: a link to the new address, a notice to the old.
/// The address changes only when the link is followed.
#[utoipa::path(post, path = "/v1/email/change", tag = "account", request_body = ChangeEmail, responses((status = 202, description = "A confirmation link is mailed to the new address"), (status = "4XX", description = "Problem details (RFC 9457); `code` says which", body = shared_types::Problem, content_type = "application/problem+json"), (status = "5XX", description = "Problem details; 503 when a dependency is unavailable", body = shared_types::Problem, content_type = "application/problem+json")), security(("bearer" = [])))]
pub async fn change_email(
    state: web::Data<AppState>,
    client: ClientInfo,
    auth: AuthenticatedUser,
    body: service_kit::http::Json<ChangeEmail>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let new_email = Email::parse(&body.new_email)?;
    state.check_email_domain(&new_email)?;
    let user = &auth.user;
    if new_email.as_str() == user.email {
        return Err(ApiError::validation(
            "same_email",
            "new_email is already this account's address",
        ));
    }
    let attempt = state
        .reauthenticate_password(
            &client,
            &auth,
            kind::EMAIL_CHANGED,
            body.password,
            "password incorrect",
        )
        .await?;
    let mut pooled = state.db.get().await?;
    let conn = &mut pooled.conn();
    let token = random_token();
    let now = db::now();
    let result = transaction!(conn, |tx| -> ApiError {
        if users::find_by_email(tx, new_email.as_str())
            .await?
            .is_some()
        {
            return Err(email_taken());
        }
        state
            .mail_spacing(tx, mail_kind::EMAIL_CHANGE, new_email.as_str())
            .await?;
        attempt.passed(&state, tx).await?;
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
                mail_kind::EMAIL_CHANGE,
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
            mail_kind::EMAIL_CHANGE_NOTICE,
            &user.email,
            &notice,
        )
        .await?;
        Ok(())
    });
    attempt.settle(&state, result).await?;
    state.mail.wake();
    Ok(HttpResponse::Accepted().finish())
}

fn email_taken() -> ApiError {
    ApiError::conflict("email_taken", "an account with this email already exists")
}

/// `POST /v1/email/change/confirm`
#[utoipa::path(post, path = "/v1/email/change/confirm", tag = "account", request_body = TokenBody, responses((status = 204, description = "Email changed"), (status = "4XX", description = "Problem details (RFC 9457); `code` says which", body = shared_types::Problem, content_type = "application/problem+json"), (status = "5XX", description = "Problem details; 503 when a dependency is unavailable", body = shared_types::Problem, content_type = "application/problem+json")), security(()))]
pub async fn confirm_email_change(
    state: web::Data<AppState>,
    client: ClientInfo,
    body: service_kit::http::Json<TokenBody>,
) -> Result<HttpResponse, ApiError> {
    let token_hash = hash_token(&body.into_inner().token);
    let mut pooled = state.db.get().await?;
    let conn = &mut pooled.conn();
    let now = db::now();
    transaction!(conn, |tx| -> ApiError {
        let (user_id, email) = ott::spend_verification(tx, &token_hash, purpose::CHANGE, now)
            .await?
            .ok_or_else(invalid_token)?;
        users::change_email(tx, user_id, &email, now)
            .await
            .map_err(|e| match e {
                DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => email_taken(),
                other => other.into(),
            })?
            .ok_or_else(invalid_token)?;
        events::record(
            tx,
            &audit(kind::EMAIL_CHANGED, Some(user_id), &client, true, None),
        )
        .await?;
        Ok(())
    })?;
    state.outbox.wake();
    Ok(HttpResponse::NoContent().finish())
}
