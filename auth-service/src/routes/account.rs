//! Password change, forgot and reset; email verification and change:
//! parse, call `crate::services::account`, answer.

use actix_web::{web, HttpResponse};
use serde::Deserialize;

use crate::domain::{Email, NewPassword};
use crate::error::ApiError;
use crate::extractors::{AuthenticatedUser, ClientInfo};
use crate::services::account;
use crate::AppState;

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

/// `POST /v1/password/change`: every other session of the user ends.
#[utoipa::path(post, path = "/v1/password/change", tag = "account", request_body = ChangePassword, responses((status = 204, description = "Changed; other sessions end")), security(("bearer" = [])))]
pub async fn change_password(
    state: web::Data<AppState>,
    client: ClientInfo,
    auth: AuthenticatedUser,
    body: service_kit::http::Json<ChangePassword>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let new_password = NewPassword::parse(body.new_password)?;
    account::change_password(&state, &client, &auth, body.current_password, new_password).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /v1/password/forgot`: 202 at once, whatever the email. The lookup
/// and the mail happen after the answer, so neither the answer nor its
/// timing says whether an account exists.
#[utoipa::path(post, path = "/v1/password/forgot", tag = "account", request_body = Forgot, responses((status = 202, description = "A reset link is mailed if the account exists")), security(()))]
pub async fn forgot_password(
    state: web::Data<AppState>,
    client: ClientInfo,
    body: service_kit::http::Json<Forgot>,
) -> Result<HttpResponse, ApiError> {
    let email = Email::parse(&body.into_inner().email)?;
    let state = state.into_inner();
    tokio::spawn(async move {
        let outcome = match account::send_reset(&state, &email).await {
            Ok(done) => done.label(),
            Err(e) => {
                tracing::warn!(error = %e, request_id = ?client.request_id, "password reset mail not queued");
                "failed"
            }
        };
        state.metrics.reset_request(outcome);
    });
    Ok(HttpResponse::Accepted().finish())
}

/// `POST /v1/password/reset`: sets the password, ends every session, lifts
/// brute-force locks on the address (the reset proved the owner) and marks
/// the address verified (the mail reached it).
#[utoipa::path(post, path = "/v1/password/reset", tag = "account", request_body = Reset, responses((status = 204, description = "Password set; every session ended")), security(()))]
pub async fn reset_password(
    state: web::Data<AppState>,
    client: ClientInfo,
    body: service_kit::http::Json<Reset>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let new_password = NewPassword::parse(body.new_password)?;
    account::reset_password(&state, &client, &body.token, new_password).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /v1/email/verify/request`: mails a new link (nothing when the
/// address is verified already).
#[utoipa::path(post, path = "/v1/email/verify/request", tag = "account", responses((status = 202, description = "A verification link is mailed")), security(("bearer" = [])))]
pub async fn request_verification(
    state: web::Data<AppState>,
    auth: AuthenticatedUser,
) -> Result<HttpResponse, ApiError> {
    account::request_verification(&state, &auth).await?;
    Ok(HttpResponse::Accepted().finish())
}

/// `POST /v1/email/verify`
#[utoipa::path(post, path = "/v1/email/verify", tag = "account", request_body = TokenBody, responses((status = 204, description = "Email verified")), security(()))]
pub async fn verify_email(
    state: web::Data<AppState>,
    client: ClientInfo,
    body: service_kit::http::Json<TokenBody>,
) -> Result<HttpResponse, ApiError> {
    account::verify_email(&state, &client, &body.into_inner().token).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /v1/email/change`: a link to the new address, a notice to the old.
/// The address changes only when the link is followed.
#[utoipa::path(post, path = "/v1/email/change", tag = "account", request_body = ChangeEmail, responses((status = 202, description = "A confirmation link is mailed to the new address")), security(("bearer" = [])))]
pub async fn change_email(
    state: web::Data<AppState>,
    client: ClientInfo,
    auth: AuthenticatedUser,
    body: service_kit::http::Json<ChangeEmail>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let new_email = Email::parse(&body.new_email)?;
    account::change_email(&state, &client, &auth, new_email, body.password).await?;
    Ok(HttpResponse::Accepted().finish())
}

/// `POST /v1/email/change/confirm`
#[utoipa::path(post, path = "/v1/email/change/confirm", tag = "account", request_body = TokenBody, responses((status = 204, description = "Email changed")), security(()))]
pub async fn confirm_email_change(
    state: web::Data<AppState>,
    client: ClientInfo,
    body: service_kit::http::Json<TokenBody>,
) -> Result<HttpResponse, ApiError> {
    account::confirm_email_change(&state, &client, &body.into_inner().token).await?;
    Ok(HttpResponse::NoContent().finish())
}
