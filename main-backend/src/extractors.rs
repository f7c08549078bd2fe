//! Who is calling: `AuthenticatedUser` (a bearer token the auth service has
//! confirmed, and the caller's mirror row) and `OpsCaller` (the service key).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};
use secrecy::ExposeSecret;
use service_kit::http::{bearer, key_matches};

use crate::db::mirror::{self, MirrorUser};
use crate::error::ApiError;
use crate::sync;
use crate::validation::Principal;
use crate::AppState;

fn state(req: &HttpRequest) -> Result<web::Data<AppState>, ApiError> {
    service_kit::http::app_state(req)
}

fn invalid_token() -> ApiError {
    ApiError::unauthorized(
        "invalid_token",
        "the access token is invalid, expired or revoked",
    )
}

/// A user whose token the auth service confirmed (possibly from the cache),
/// with their mirror row (fetched first if the mirror lacks it).
pub struct AuthenticatedUser {
    pub principal: Principal,
    pub user: Arc<MirrorUser>,
}

impl FromRequest for AuthenticatedUser {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = bearer(req).map(str::to_owned);
        let state = state(req);
        Box::pin(async move {
            let state = state?;
            let token = token.ok_or_else(|| {
                ApiError::unauthorized("unauthorized", "send Authorization: Bearer <access token>")
            })?;
            let principal = state
                .validator
                .validate(&token)
                .await
                .map_err(sync::auth_unavailable)?
                .ok_or_else(invalid_token)?;
            let user_id = principal.user_id;
            if let Some(user) = state.validator.cached_profile(user_id) {
                return Ok(Self { principal, user });
            }
            let mut user = {
                let mut pooled = state.db.get().await?;
                mirror::find(&mut pooled.conn(), user_id).await?
            };
            if user.is_none() {
                if !sync::fetch_user(&state.db, &state.auth, user_id).await? {
                    return Err(invalid_token());
                }
                let mut pooled = state.db.get().await?;
                user = mirror::find(&mut pooled.conn(), user_id).await?;
            }
            // The mirror may know of a lock before the cache expires: deny.
            let user = Arc::new(
                user.filter(|u| !u.account_locked)
                    .ok_or_else(invalid_token)?,
            );
            state.validator.remember_profile(user.clone());
            Ok(Self { principal, user })
        })
    }
}

/// An operator's or another service's call with `AUTH_SERVICE_API_KEY`
/// (service tokens with scope `admin` or `ops` join when they exist).
pub struct OpsCaller;

impl FromRequest for OpsCaller {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let result = state(req).and_then(|state| match bearer(req) {
            Some(t) if key_matches(t, state.settings.auth_api_key.expose_secret()) => Ok(OpsCaller),
            _ => Err(ApiError::unauthorized(
                "unauthorized",
                "this endpoint needs an admin or ops credential",
            )),
        });
        std::future::ready(result)
    }
}
