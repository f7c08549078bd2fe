//! Passkeys: parse, call `crate::services::passkeys`, shape the answer.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::auth::deliver;
use crate::error::ApiError;
use crate::extractors::{AuthenticatedUser, ClientInfo, TokenTransport};
use crate::services::passkeys;
use crate::AppState;

#[derive(Serialize, utoipa::ToSchema)]
pub struct ChallengeResponse {
    /// Send it back with the credential (works once, for 5 minutes).
    challenge_id: String,
    /// What `navigator.credentials.create` (registration) or `.get`
    /// (sign-in) takes, with binary fields in base64url.
    #[schema(value_type = Object)]
    options: serde_json::Value,
}

impl From<passkeys::Challenge> for ChallengeResponse {
    fn from(c: passkeys::Challenge) -> Self {
        Self {
            challenge_id: c.challenge_id,
            options: c.options,
        }
    }
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterStart {
    /// The account's password, asked again so that a stolen session cannot
    /// add a passkey of its own; an account without a password sends none
    /// and needs a session signed in within the last 10 minutes.
    #[serde(default)]
    current_password: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterFinish {
    challenge_id: String,
    /// The `PublicKeyCredential` the browser made, as JSON (binary fields
    /// in base64url).
    #[schema(value_type = Object)]
    credential: serde_json::Value,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct PasskeyInfo {
    id: Uuid,
    name: String,
    created_at: DateTime<Utc>,
    last_used_at: Option<DateTime<Utc>>,
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginStart {
    /// With it, the account's passkeys are offered; without, any
    /// discoverable passkey of this site.
    #[serde(default)]
    email: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginFinish {
    challenge_id: String,
    #[schema(value_type = Object)]
    credential: serde_json::Value,
}

/// A body that may be empty (then `T::default()`), else a JSON object.
fn optional_body<T: Default + serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        service_kit::http::parse_json_object(body)
    }
}

#[utoipa::path(post, path = "/v1/passkeys/register/start", tag = "passkeys", request_body(content = RegisterStart, description = "May be empty for an account without a password"), responses((status = 200, description = "Options for navigator.credentials.create", body = ChallengeResponse)), security(("bearer" = [])))]
pub async fn register_start(
    state: web::Data<AppState>,
    client: ClientInfo,
    auth: AuthenticatedUser,
    body: web::Bytes,
) -> Result<web::Json<ChallengeResponse>, ApiError> {
    let body: RegisterStart = optional_body(&body)?;
    Ok(web::Json(
        passkeys::register_start(&state, &client, &auth, body.current_password)
            .await?
            .into(),
    ))
}

#[utoipa::path(post, path = "/v1/passkeys/register/finish", tag = "passkeys", request_body = RegisterFinish, responses((status = 201, description = "The new passkey", body = PasskeyInfo)), security(("bearer" = [])))]
pub async fn register_finish(
    state: web::Data<AppState>,
    client: ClientInfo,
    auth: AuthenticatedUser,
    body: service_kit::http::Json<RegisterFinish>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let added = passkeys::register_finish(
        &state,
        &client,
        &auth,
        &body.challenge_id,
        body.credential,
        body.name,
    )
    .await?;
    Ok(HttpResponse::Created().json(PasskeyInfo {
        id: added.id,
        name: added.name,
        created_at: added.created_at,
        last_used_at: None,
    }))
}

#[utoipa::path(get, path = "/v1/passkeys", tag = "passkeys", responses((status = 200, description = "The caller's passkeys", body = Vec<PasskeyInfo>)), security(("bearer" = [])))]
pub async fn list(
    state: web::Data<AppState>,
    auth: AuthenticatedUser,
) -> Result<web::Json<Vec<PasskeyInfo>>, ApiError> {
    let rows = passkeys::list(&state, auth.user.id.0).await?;
    Ok(web::Json(
        rows.into_iter()
            .map(|r| PasskeyInfo {
                id: r.id.0,
                name: r.name,
                created_at: r.created_at.0,
                last_used_at: r.last_used_at.map(|t| t.0),
            })
            .collect(),
    ))
}

/// Another user's passkey answers 404, like an unknown one.
#[utoipa::path(delete, path = "/v1/passkeys/{id}", tag = "passkeys", params(("id" = Uuid, Path, description = "Passkey id")), responses((status = 204, description = "Removed")), security(("bearer" = [])))]
pub async fn remove(
    state: web::Data<AppState>,
    client: ClientInfo,
    auth: AuthenticatedUser,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    passkeys::remove(&state, &client, auth.user.id.0, path.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(post, path = "/v1/passkeys/login/start", tag = "passkeys", request_body = LoginStart, responses((status = 200, description = "Options for navigator.credentials.get", body = ChallengeResponse)), security(()))]
pub async fn login_start(
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<web::Json<ChallengeResponse>, ApiError> {
    let body: LoginStart = optional_body(&body)?;
    Ok(web::Json(
        passkeys::login_start(&state, body.email.as_deref())
            .await?
            .into(),
    ))
}

/// A user-verified passkey is both factors: no TOTP code is asked.
#[utoipa::path(post, path = "/v1/passkeys/login/finish", tag = "passkeys", request_body = LoginFinish, params(("X-Token-Transport" = Option<String>, Header, description = "`cookie` for browser clients")), responses((status = 200, description = "A new session", body = shared_types::TokenPair)), security(()))]
pub async fn login_finish(
    state: web::Data<AppState>,
    client: ClientInfo,
    transport: TokenTransport,
    body: service_kit::http::Json<LoginFinish>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let tokens =
        passkeys::login_finish(&state, &client, &body.challenge_id, body.credential).await?;
    deliver(&state, transport, HttpResponse::Ok(), &tokens, &tokens)
}
