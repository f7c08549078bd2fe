//! Sign-in with other providers: parse, call `crate::services::oauth`,
//! shape the answer (redirects, the binding cookie, cookie mode).

use actix_web::cookie::{Cookie, SameSite};
use actix_web::{http::header, web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared_types::{PublicUser, TokenPair};
use uuid::Uuid;

use super::auth::deliver;
use crate::error::ApiError;
use crate::extractors::{AuthenticatedUser, ClientInfo, TokenTransport};
use crate::services::oauth::{self, Callback, BINDING_COOKIE};
use crate::AppState;

/// A provider the web app offers a button for.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ProviderInfo {
    /// In the paths: `/v1/oauth/{name}/authorize`.
    name: String,
    display_name: String,
    /// `oidc` or `oauth2`.
    protocol: &'static str,
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct AuthorizeQuery {
    /// Where the browser lands afterwards, with `#code=` or `#error=`:
    /// an address under `AUTH_APP_URL` (default `AUTH_APP_URL/`).
    return_to: Option<String>,
    /// A link ticket from `POST /v1/oauth/{provider}/link`.
    link: Option<String>,
    /// Passed on to the provider (which account to offer).
    login_hint: Option<String>,
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    /// The provider's OAuth error, if it refused.
    error: Option<String>,
}

// Request bodies derive no `Debug`: they hold codes and passwords.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExchangeRequest {
    /// The one-time code from the callback's fragment (60 s, works once).
    code: String,
    /// For an account with two-factor sign-in.
    #[serde(default)]
    totp_code: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ExchangeResponse {
    user: PublicUser,
    tokens: TokenPair,
    /// True when this sign-in made the account.
    created: bool,
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkRequest {
    /// Required when the account has a password (a stolen session must not
    /// add a way in); a wrong one counts toward the lockout.
    #[serde(default)]
    current_password: Option<String>,
    /// Where the browser lands afterwards, with `#linked=PROVIDER` or
    /// `#error=CODE`: under `AUTH_APP_URL`.
    #[serde(default)]
    return_to: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct LinkResponse {
    /// Where the browser goes (works once, for 5 minutes).
    authorize_url: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct IdentityInfo {
    id: Uuid,
    provider: String,
    subject: String,
    email: Option<String>,
    created_at: DateTime<Utc>,
}

#[utoipa::path(get, path = "/v1/oauth/providers", tag = "oauth", responses((status = 200, description = "The configured providers, in order", body = Vec<ProviderInfo>)), security(()))]
pub async fn providers(state: web::Data<AppState>) -> web::Json<Vec<ProviderInfo>> {
    web::Json(
        state
            .providers
            .all()
            .map(|p| ProviderInfo {
                name: p.settings.name.clone(),
                display_name: p.settings.display_name.clone(),
                protocol: match p.settings.protocol {
                    crate::providers::Protocol::OpenIdConnect { .. } => "oidc",
                    crate::providers::Protocol::OAuth2 { .. } => "oauth2",
                },
            })
            .collect(),
    )
}

/// The browser's start: 302 to the provider with `state`, `nonce` (OpenID
/// Connect) and PKCE; sets the cookie that binds the state to this browser.
/// When the provider cannot be reached, 302 to `return_to#error=provider_unavailable`.
#[utoipa::path(get, path = "/v1/oauth/{provider}/authorize", tag = "oauth", params(("provider" = String, Path, description = "A name from /v1/oauth/providers"), AuthorizeQuery), responses((status = 302, description = "To the provider (or to return_to with #error=CODE)")), security(()))]
pub async fn authorize(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<AuthorizeQuery>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let cookie = req.cookie(BINDING_COOKIE);
    let begun = oauth::begin(
        &state,
        &path,
        query.return_to.as_deref(),
        query.link.as_deref(),
        query.login_hint.as_deref(),
        cookie.as_ref().map(Cookie::value),
    )
    .await?;
    let binding = Cookie::build(BINDING_COOKIE, begun.binding)
        .path("/v1/oauth")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(state.settings.cookie_secure)
        .max_age(actix_web::cookie::time::Duration::seconds(
            oauth::state_ttl().num_seconds(),
        ))
        .finish();
    Ok(found(&begun.location).cookie(binding).finish())
}

/// The provider's redirect back: 302 to `return_to` with `#code=` (for
/// `POST /v1/oauth/exchange`), `#linked=PROVIDER` or `#error=CODE`. A
/// state that is unknown, used, expired, or from another browser: 400.
#[utoipa::path(get, path = "/v1/oauth/{provider}/callback", tag = "oauth", params(("provider" = String, Path, description = "The provider"), CallbackQuery), responses((status = 302, description = "To return_to with the outcome in the fragment")), security(()))]
pub async fn callback(
    state: web::Data<AppState>,
    client: ClientInfo,
    path: web::Path<String>,
    query: web::Query<CallbackQuery>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let cookie = req.cookie(BINDING_COOKIE);
    let params = Callback {
        code: query.code,
        state: query.state,
        error: query.error,
    };
    let location = oauth::callback(
        &state,
        &client,
        &path,
        params,
        cookie.as_ref().map(Cookie::value),
    )
    .await?;
    Ok(found(&location).finish())
}

/// A 302 that no cache keeps and that leaks no URL onward.
fn found(location: &str) -> actix_web::HttpResponseBuilder {
    let mut answer = HttpResponse::Found();
    answer
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"));
    answer
}

/// The one-time code for the session (cookie mode as on login).
#[utoipa::path(post, path = "/v1/oauth/exchange", tag = "oauth", request_body = ExchangeRequest, params(("X-Token-Transport" = Option<String>, Header, description = "`cookie` for browser clients")), responses((status = 200, description = "A new session", body = ExchangeResponse)), security(()))]
pub async fn exchange(
    state: web::Data<AppState>,
    client: ClientInfo,
    transport: TokenTransport,
    body: service_kit::http::Json<ExchangeRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let done = oauth::exchange(&state, &client, &body.code, body.totp_code.as_deref()).await?;
    let answer = ExchangeResponse {
        user: done.user,
        tokens: done.tokens,
        created: done.created,
    };
    deliver(
        &state,
        transport,
        HttpResponse::Ok(),
        &answer,
        &answer.tokens,
    )
}

/// Starts linking a provider to the caller's account.
#[utoipa::path(post, path = "/v1/oauth/{provider}/link", tag = "oauth", params(("provider" = String, Path, description = "The provider")), request_body(content = Option<LinkRequest>), responses((status = 200, description = "Where the browser goes; the callback links the identity (or answers #error=identity_taken)", body = LinkResponse)), security(("bearer" = [])))]
pub async fn link(
    state: web::Data<AppState>,
    client: ClientInfo,
    auth: AuthenticatedUser,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<web::Json<LinkResponse>, ApiError> {
    // The body is optional, but one that is sent must be a valid request
    // (an `Option` extractor would quietly drop a malformed one).
    let body: LinkRequest = if body.iter().all(u8::is_ascii_whitespace) {
        LinkRequest::default()
    } else {
        service_kit::http::parse_json_object(&body)?
    };
    let authorize_url = oauth::start_link(
        &state,
        &client,
        &auth,
        &path,
        body.current_password,
        body.return_to.as_deref(),
    )
    .await?;
    Ok(web::Json(LinkResponse { authorize_url }))
}

#[utoipa::path(get, path = "/v1/me/identities", tag = "oauth", responses((status = 200, description = "The caller's provider identities", body = Vec<IdentityInfo>)), security(("bearer" = [])))]
pub async fn identities(
    state: web::Data<AppState>,
    auth: AuthenticatedUser,
) -> Result<web::Json<Vec<IdentityInfo>>, ApiError> {
    let list = oauth::list(&state, auth.user.id.0).await?;
    Ok(web::Json(
        list.into_iter()
            .map(|i| IdentityInfo {
                id: i.id.0,
                provider: i.provider,
                subject: i.provider_subject,
                email: i.email,
                created_at: i.created_at.0,
            })
            .collect(),
    ))
}

/// Removes an identity; another user's answers 404, like an unknown one.
#[utoipa::path(delete, path = "/v1/me/identities/{id}", tag = "oauth", params(("id" = Uuid, Path, description = "Identity id")), responses((status = 204, description = "Removed, with the provider's tokens")), security(("bearer" = [])))]
pub async fn unlink(
    state: web::Data<AppState>,
    client: ClientInfo,
    auth: AuthenticatedUser,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    oauth::unlink(&state, &client, auth.user.id.0, path.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}
