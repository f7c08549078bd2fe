//! TOTP: setup, enable (with recovery codes), disable: parse, call
//! `crate::services::mfa`, answer.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use shared_types::{RecoveryCodes, TotpSetup};

use crate::error::ApiError;
use crate::extractors::{AuthenticatedUser, ClientInfo};
use crate::services::mfa;
use crate::AppState;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnableRequest {
    code: String,
    /// The account's password, required when it has one: a stolen session
    /// alone must not enroll its own second factor. An account made by a
    /// provider sign-in has none and needs a session signed in within the
    /// last 10 minutes instead.
    #[serde(default)]
    password: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DisableRequest {
    password: String,
    code: String,
}

/// `POST /v1/mfa/totp/setup`: a new secret, shown this once; it does
/// nothing until `enable` proves an app holds it.
#[utoipa::path(post, path = "/v1/mfa/totp/setup", tag = "mfa", responses((status = 200, description = "A new secret, shown once", body = TotpSetup)), security(("bearer" = [])))]
pub async fn setup(
    state: web::Data<AppState>,
    auth: AuthenticatedUser,
) -> Result<web::Json<TotpSetup>, ApiError> {
    Ok(web::Json(mfa::setup(&state, &auth).await?))
}

/// `POST /v1/mfa/totp/enable`: a valid code and the password turn TOTP on
/// and return ten single-use recovery codes (only their hashes are kept); a
/// notice goes to the account's address, so an owner whose session was
/// stolen learns of an enrollment that was not theirs.
#[utoipa::path(post, path = "/v1/mfa/totp/enable", tag = "mfa", request_body = EnableRequest, responses((status = 200, description = "On; recovery codes, shown once", body = RecoveryCodes)), security(("bearer" = [])))]
pub async fn enable(
    state: web::Data<AppState>,
    client: ClientInfo,
    auth: AuthenticatedUser,
    body: service_kit::http::Json<EnableRequest>,
) -> Result<web::Json<RecoveryCodes>, ApiError> {
    let body = body.into_inner();
    let codes = mfa::enable(&state, &client, &auth, &body.code, body.password).await?;
    Ok(web::Json(codes))
}

/// `POST /v1/mfa/totp/disable`: needs the password and a code (or a
/// recovery code), so a stolen session alone cannot remove the factor;
/// both are counted like a login's.
#[utoipa::path(post, path = "/v1/mfa/totp/disable", tag = "mfa", request_body = DisableRequest, responses((status = 204, description = "Off")), security(("bearer" = [])))]
pub async fn disable(
    state: web::Data<AppState>,
    client: ClientInfo,
    auth: AuthenticatedUser,
    body: service_kit::http::Json<DisableRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    mfa::disable(&state, &client, &auth, body.password, &body.code).await?;
    Ok(HttpResponse::NoContent().finish())
}
