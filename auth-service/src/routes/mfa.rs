//! TOTP: setup, enable (with recovery codes), disable. The second-factor
//! check itself is `crate::services::second_factor`.

use actix_web::{web, HttpResponse};
use secrecy::ExposeSecret;
use serde::Deserialize;
use shared_types::{RecoveryCodes, TotpSetup};

use crate::attempts::Refusal;
use crate::db::events::{self, kind};
use crate::db::mail;
use crate::db::{self, mfa as mfa_db, users};
use crate::error::ApiError;
use crate::extractors::{AuthenticatedUser, ClientInfo};
use crate::mfa;
use crate::services::{audit, second_factor};
use crate::tokens::hash_token;
use crate::AppState;
use service_kit::transaction;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnableRequest {
    code: String,
    /// The account's password: a stolen session alone must not enroll its
    /// own second factor.
    password: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DisableRequest {
    password: String,
    code: String,
}

fn already_enabled() -> ApiError {
    ApiError::conflict(
        "mfa_already_enabled",
        "TOTP is already enabled; disable it first",
    )
}

/// `POST /v1/mfa/totp/setup`: a new secret, shown this once; it does
/// nothing until `enable` proves an app holds it.
#[utoipa::path(post, path = "/v1/mfa/totp/setup", tag = "mfa", responses((status = 200, description = "A new secret, shown once", body = TotpSetup), (status = "4XX", description = "Problem details (RFC 9457); `code` says which", body = shared_types::Problem, content_type = "application/problem+json"), (status = "5XX", description = "Problem details; 503 when a dependency is unavailable", body = shared_types::Problem, content_type = "application/problem+json")), security(("bearer" = [])))]
pub async fn setup(
    state: web::Data<AppState>,
    auth: AuthenticatedUser,
) -> Result<web::Json<TotpSetup>, ApiError> {
    let user = &auth.user;
    if user.mfa_enabled {
        return Err(already_enabled());
    }
    let secret = mfa::new_secret();
    let sealed = mfa::seal(&state.settings.secrets_key, user.id.0, &secret);
    let mut pooled = state.db.get().await?;
    let conn = &mut pooled.conn();
    let stored = transaction!(conn, |tx| -> ApiError {
        Ok(mfa_db::put_pending(tx, user.id.0, &sealed, db::now()).await?)
    })?;
    if !stored {
        return Err(already_enabled());
    }
    // The issuer shown in authenticator apps: the public host name.
    let issuer = crate::configuration::public_host(&state.settings.public_url);
    let otpauth_uri = mfa::otpauth_uri(&secret, &user.email, issuer)
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("otpauth URI could not be built")))?;
    Ok(web::Json(TotpSetup {
        secret: secret.expose_secret().to_owned(),
        otpauth_uri,
    }))
}

/// `POST /v1/mfa/totp/enable`: a valid code and the password turn TOTP on
/// and return ten single-use recovery codes (only their hashes are kept); a
/// notice goes to the account's address, so an owner whose session was
/// stolen learns of an enrollment that was not theirs.
#[utoipa::path(post, path = "/v1/mfa/totp/enable", tag = "mfa", request_body = EnableRequest, responses((status = 200, description = "On; recovery codes, shown once", body = RecoveryCodes), (status = "4XX", description = "Problem details (RFC 9457); `code` says which", body = shared_types::Problem, content_type = "application/problem+json"), (status = "5XX", description = "Problem details; 503 when a dependency is unavailable", body = shared_types::Problem, content_type = "application/problem+json")), security(("bearer" = [])))]
pub async fn enable(
    state: web::Data<AppState>,
    client: ClientInfo,
    auth: AuthenticatedUser,
    body: service_kit::http::Json<EnableRequest>,
) -> Result<web::Json<RecoveryCodes>, ApiError> {
    let body = body.into_inner();
    let user = &auth.user;
    let user_id = user.id.0;
    let invalid = |detail: &str| {
        ApiError::new(
            actix_web::http::StatusCode::BAD_REQUEST,
            "invalid_code",
            detail.to_owned(),
        )
    };
    // The code proves the app holds the new secret (no credential of the
    // account is at stake), so it is checked first and outside any slot.
    let row = {
        let mut pooled = state.db.get().await?;
        mfa_db::find(&mut pooled.conn(), user_id).await?
    }
    .ok_or_else(|| invalid("no TOTP secret is set up; call /v1/mfa/totp/setup first"))?;
    if row.enabled_at.is_some() {
        return Err(already_enabled());
    }
    let secret = mfa::open(&state.settings.secrets_key, user_id, &row.secret_sealed)
        .ok_or_else(|| invalid("the TOTP secret is no longer readable; set up again"))?;
    let step = mfa::matching_step(&secret, body.code.trim(), mfa::unix_now()).ok_or_else(|| {
        invalid("the code does not match; check the app's clock and try the current code")
    })?;
    let attempt = state
        .reauthenticate_password(
            &client,
            &auth,
            kind::MFA_ENABLED,
            body.password,
            "password incorrect",
        )
        .await?;
    let codes = mfa::new_recovery_codes();
    let hashes: Vec<String> = codes
        .iter()
        .map(|c| hash_token(&mfa::normalize_recovery_code(c)))
        .collect();
    let now = db::now();
    let mut pooled = state.db.get().await?;
    let conn = &mut pooled.conn();
    let result = transaction!(conn, |tx| -> ApiError {
        attempt.passed(&state, tx).await?;
        if !mfa_db::enable(tx, user_id, step, now).await? {
            return Err(already_enabled());
        }
        mfa_db::replace_recovery_codes(tx, user_id, &hashes, now).await?;
        users::set_mfa_enabled(tx, user_id, true, now).await?;
        events::record(
            tx,
            &audit(kind::MFA_ENABLED, Some(user_id), &client, true, None),
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
            mail::kind::MFA_ENABLED,
            &user.email,
            &notice,
        )
        .await?;
        Ok(())
    });
    attempt.settle(&state, result).await?;
    state.outbox.wake();
    state.mail.wake();
    Ok(web::Json(RecoveryCodes {
        recovery_codes: codes,
    }))
}

/// `POST /v1/mfa/totp/disable`: needs the password and a code (or a
/// recovery code), so a stolen session alone cannot remove the factor;
/// both are counted like a login's.
#[utoipa::path(post, path = "/v1/mfa/totp/disable", tag = "mfa", request_body = DisableRequest, responses((status = 204, description = "Off"), (status = "4XX", description = "Problem details (RFC 9457); `code` says which", body = shared_types::Problem, content_type = "application/problem+json"), (status = "5XX", description = "Problem details; 503 when a dependency is unavailable", body = shared_types::Problem, content_type = "application/problem+json")), security(("bearer" = [])))]
pub async fn disable(
    state: web::Data<AppState>,
    client: ClientInfo,
    auth: AuthenticatedUser,
    body: service_kit::http::Json<DisableRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let user = &auth.user;
    if !user.mfa_enabled {
        return Err(ApiError::conflict("mfa_not_enabled", "TOTP is not enabled"));
    }
    let refused = |detail| Refusal {
        detail,
        error: ApiError::unauthorized(
            "invalid_credentials",
            "the password or the code is incorrect",
        ),
    };
    let check = async {
        if !state.password_matches(user, body.password).await? {
            return Ok(Err(refused("password incorrect")));
        }
        let mut pooled = state.db.get().await?;
        if !second_factor::check(&state, &mut pooled.conn(), user.id.0, &body.code).await? {
            return Ok(Err(refused("code incorrect")));
        }
        Ok(Ok(()))
    };
    let attempt = state
        .reauthenticate(&client, &auth, kind::MFA_DISABLED, check)
        .await?;
    let now = db::now();
    let mut pooled = state.db.get().await?;
    let conn = &mut pooled.conn();
    let result = transaction!(conn, |tx| -> ApiError {
        attempt.passed(&state, tx).await?;
        mfa_db::remove(tx, user.id.0).await?;
        users::set_mfa_enabled(tx, user.id.0, false, now).await?;
        events::record(
            tx,
            &audit(kind::MFA_DISABLED, Some(user.id.0), &client, true, None),
        )
        .await?;
        Ok(())
    });
    attempt.settle(&state, result).await?;
    state.outbox.wake();
    Ok(HttpResponse::NoContent().finish())
}
