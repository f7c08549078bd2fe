//! Register, login, refresh, logout: parse, call the operation in
//! `crate::services`, shape the answer (status, body, and in cookie mode
//! the refresh cookies).

use actix_web::cookie::{Cookie, SameSite};
use actix_web::{web, FromRequest, HttpRequest, HttpResponse, HttpResponseBuilder};
use chrono::Duration;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use shared_types::{RegisterResponse, TokenPair};
use uuid::Uuid;

use crate::domain::{Email, FullName, NewPassword};
use crate::error::ApiError;
use crate::extractors::{AuthenticatedUser, ClientInfo, TokenTransport};
use crate::services::sessions::{self, RefreshError};
use crate::services::sign_in::{self, Credentials};
use crate::services::sign_up::{self, SignUp};
use crate::AppState;

// Request bodies derive no `Debug`: they hold passwords and tokens.

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    email: String,
    password: String,
    #[serde(default)]
    full_name: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    email: String,
    password: String,
    #[serde(default)]
    totp_code: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    refresh_token: String,
}

/// The cookie holding the refresh token in cookie mode. It is set twice,
/// once per path, so the browser sends it to refresh (`/v1/token/...`) and
/// to logout (`/v1/logout...`, which must end the session even when the
/// access token has expired) and nowhere else.
pub const REFRESH_COOKIE: &str = "refresh_token";
const REFRESH_COOKIE_PATHS: [&str; 2] = ["/v1/token", "/v1/logout"];

/// The refresh cookies with `value`; an empty value and age 0 delete them.
fn refresh_cookies(state: &AppState, value: &str, max_age: Duration) -> [Cookie<'static>; 2] {
    REFRESH_COOKIE_PATHS.map(|path| {
        Cookie::build(REFRESH_COOKIE, value.to_owned())
            .path(path)
            .http_only(true)
            .same_site(SameSite::Strict)
            .secure(state.settings.cookie_secure)
            .max_age(actix_web::cookie::time::Duration::seconds(
                max_age.num_seconds(),
            ))
            .finish()
    })
}

/// Answers with `body`, which holds `pair`: unchanged in body mode; in
/// cookie mode the refresh token moves out of the JSON into the cookie.
pub(super) fn deliver<T: Serialize>(
    state: &AppState,
    transport: TokenTransport,
    mut answer: HttpResponseBuilder,
    body: &T,
    pair: &TokenPair,
) -> Result<HttpResponse, ApiError> {
    if transport == TokenTransport::Body {
        return Ok(answer.json(body));
    }
    let mut json = serde_json::to_value(body).map_err(ApiError::internal)?;
    if let Some(object) = json.as_object_mut() {
        object.remove("refresh_token");
        if let Some(tokens) = object.get_mut("tokens").and_then(|t| t.as_object_mut()) {
            tokens.remove("refresh_token");
        }
    }
    let days = Duration::days(state.settings.refresh_token_days);
    for cookie in refresh_cookies(state, &pair.refresh_token, days) {
        answer.cookie(cookie);
    }
    Ok(answer.json(json))
}

#[utoipa::path(post, path = "/v1/register", tag = "auth", request_body = RegisterRequest, params(("X-Token-Transport" = Option<String>, Header, description = "`cookie` for browser clients")), responses((status = 201, description = "Account and first session", body = RegisterResponse)), security(()))]
pub async fn register(
    state: web::Data<AppState>,
    client: ClientInfo,
    transport: TokenTransport,
    body: service_kit::http::Json<RegisterRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let new = SignUp {
        email: Email::parse(&body.email)?,
        password: NewPassword::parse(body.password)?,
        full_name: match body.full_name.as_deref() {
            Some(raw) => FullName::parse(raw)?,
            None => None,
        },
    };
    let signed_up = sign_up::sign_up(&state, &client, new).await?;
    let answer = RegisterResponse {
        user: signed_up.user,
        tokens: signed_up.tokens,
    };
    deliver(
        &state,
        transport,
        HttpResponse::Created(),
        &answer,
        &answer.tokens,
    )
}

/// `POST /v1/login` (`crate::services::sign_in` says in what order what
/// is checked).
#[utoipa::path(post, path = "/v1/login", tag = "auth", request_body = LoginRequest, params(("X-Token-Transport" = Option<String>, Header, description = "`cookie` for browser clients")), responses((status = 200, description = "A new session", body = TokenPair)), security(()))]
pub async fn login(
    state: web::Data<AppState>,
    client: ClientInfo,
    transport: TokenTransport,
    body: service_kit::http::Json<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let credentials = Credentials {
        email: body.email,
        password: SecretString::from(body.password),
        totp_code: body.totp_code,
    };
    let tokens = sign_in::sign_in(&state, &client, credentials).await?;
    deliver(&state, transport, HttpResponse::Ok(), &tokens, &tokens)
}

/// `POST /v1/token/refresh`: the refresh token comes from the JSON body,
/// or in cookie mode from the cookie (the body is then ignored).
#[utoipa::path(post, path = "/v1/token/refresh", tag = "auth", request_body = RefreshRequest, params(("X-Token-Transport" = Option<String>, Header, description = "`cookie`: the refresh token is read from the cookie and the body ignored")), responses((status = 200, description = "The next token pair; the presented refresh token is spent", body = TokenPair)), security(()))]
pub async fn refresh(
    state: web::Data<AppState>,
    client: ClientInfo,
    transport: TokenTransport,
    req: HttpRequest,
    payload: web::Payload,
) -> actix_web::Result<HttpResponse> {
    let presented = match transport {
        TokenTransport::Body => {
            service_kit::http::Json::<RefreshRequest>::from_request(&req, &mut payload.into_inner())
                .await?
                .into_inner()
                .refresh_token
        }
        TokenTransport::Cookie => match req.cookie(REFRESH_COOKIE) {
            Some(cookie) => cookie.value().to_owned(),
            None => return Err(ApiError::from(RefreshError::Invalid).into()),
        },
    };
    let pair = sessions::refresh(&state, &client, &presented)
        .await
        .map_err(ApiError::from)?;
    Ok(deliver(
        &state,
        transport,
        HttpResponse::Ok(),
        &pair,
        &pair,
    )?)
}

/// Ends the caller's current session (`/v1/logout`). In cookie mode the
/// session the refresh cookie belongs to ends too, and without a valid
/// access token (it may have expired while the tab slept) the cookie alone
/// ends it: holding the refresh token proves the session. The cookies are
/// always deleted in cookie mode, so a browser is never left holding a
/// live 7-day credential after "signed out".
#[utoipa::path(post, path = "/v1/logout", tag = "auth", params(("X-Token-Transport" = Option<String>, Header, description = "`cookie`: the session of the refresh cookie ends even without a valid bearer")), responses((status = 204, description = "This session ended")), security(("bearer" = [])))]
pub async fn logout(
    state: web::Data<AppState>,
    client: ClientInfo,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    // Without a valid bearer, only cookie mode goes on. A caller with
    // neither a bearer nor a well-formed transport header is told 401
    // first, as on every other bearer route; cookie mode from an origin
    // not allowed stays 403 (CSRF), bearer or not.
    let bearer = AuthenticatedUser::from_request(&req, &mut actix_web::dev::Payload::None).await;
    let (transport, auth) = match (TokenTransport::of(&req, &state), bearer) {
        (Err(malformed), Err(unauthenticated))
            if malformed.status == actix_web::http::StatusCode::BAD_REQUEST =>
        {
            return Err(unauthenticated)
        }
        (Err(refused), _) => return Err(refused),
        (Ok(TokenTransport::Body), Err(unauthenticated)) => return Err(unauthenticated),
        (Ok(transport), bearer) => (transport, bearer.ok()),
    };
    let cookie_session = match (transport, req.cookie(REFRESH_COOKIE)) {
        (TokenTransport::Cookie, Some(cookie)) => {
            sessions::of_refresh_token(&state, cookie.value()).await?
        }
        _ => None,
    };
    let mut ended: Vec<(Uuid, Uuid)> = Vec::new();
    if let Some(auth) = &auth {
        ended.push((auth.user.id.0, auth.session_id));
    }
    if let Some(session) = cookie_session {
        // With a bearer, only a session of the same user: a stray cookie
        // from another account signed in earlier is not this caller's.
        if auth.as_ref().is_none_or(|a| a.user.id == session.user_id) {
            ended.push((session.user_id.0, session.id.0));
        }
    }
    ended.dedup();
    sessions::sign_out(&state, &client, &ended).await?;
    Ok(without_refresh_cookies(&state, HttpResponse::NoContent()))
}

/// Ends every session of the caller (`/v1/logout/all`).
#[utoipa::path(post, path = "/v1/logout/all", tag = "auth", responses((status = 204, description = "Every session ended")), security(("bearer" = [])))]
pub async fn logout_all(
    state: web::Data<AppState>,
    client: ClientInfo,
    auth: AuthenticatedUser,
) -> Result<HttpResponse, ApiError> {
    sessions::sign_out_everywhere(&state, &client, auth.user.id.0).await?;
    Ok(without_refresh_cookies(&state, HttpResponse::NoContent()))
}

/// `answer` with the refresh cookies deleted: a browser app's cookie goes
/// with the session.
fn without_refresh_cookies(state: &AppState, mut answer: HttpResponseBuilder) -> HttpResponse {
    for cookie in refresh_cookies(state, "", Duration::zero()) {
        answer.cookie(cookie);
    }
    answer.finish()
}
