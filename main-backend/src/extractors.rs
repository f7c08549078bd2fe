//! Who is calling: `AuthenticatedUser` (a bearer token the auth service has
//! confirmed, and the caller's mirror row), `AdminCaller` (an admin user or
//! a service token with scope `admin`) and `OpsCaller` (a service token with
//! scope `admin` or `ops`). Every credential is confirmed by the auth service.

use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};
use futures::future::{ready, Either, LocalBoxFuture, Ready};
use service_kit::http::{bearer, with_bearer};
use shared_types::SERVICE_TOKEN_PREFIX;

use crate::db::mirror;
use crate::error::ApiError;
use crate::sync;
use crate::validation::{Cached, CachedUser, Principal, ServicePrincipal};
use crate::AppState;

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
    /// The mirror row (`auth.user.email`, ...), shared with the cache.
    pub user: Arc<CachedUser>,
}

impl AuthenticatedUser {
    async fn authenticate(state: &AppState, token: &str) -> Result<Self, ApiError> {
        let principal = state
            .validator
            .validate(token)
            .await?
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
        let user = Arc::new(CachedUser::new(
            user.filter(|u| !u.account_locked)
                .ok_or_else(invalid_token)?,
        ));
        state.validator.remember_profile(user.clone());
        Ok(Self { principal, user })
    }
}

impl FromRequest for AuthenticatedUser {
    type Error = ApiError;
    type Future =
        Either<Ready<Result<Self, ApiError>>, LocalBoxFuture<'static, Result<Self, ApiError>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        // Nearly every request is answered by the caches; answer those here,
        // from the borrowed header, with a ready future.
        let state = req.app_data::<web::Data<AppState>>();
        if let Some(cached) = state
            .zip(bearer(req))
            .and_then(|(s, t)| s.validator.cached(t))
        {
            return Either::Left(ready(match cached {
                Cached::Live(principal, user) => Ok(Self { principal, user }),
                Cached::Refused => Err(invalid_token()),
            }));
        }
        Either::Right(with_bearer(
            req,
            move |state: web::Data<AppState>, token| async move {
                let token = token.ok_or_else(|| {
                    ApiError::unauthorized(
                        "unauthorized",
                        "send Authorization: Bearer <access token>",
                    )
                })?;
                Self::authenticate(&state, &token).await
            },
        ))
    }
}

/// A service token the auth service confirmed just now, holding one of
/// `accepted`: 401 when it is not live, 403 when it lacks the scope.
async fn service_caller(
    state: &AppState,
    token: &str,
    accepted: &[&str],
) -> Result<ServicePrincipal, ApiError> {
    let principal = state
        .validator
        .validate_service(token)
        .await?
        .ok_or_else(|| {
            ApiError::unauthorized(
                "invalid_token",
                "the service token is unknown, expired or revoked",
            )
        })?;
    if !principal.has_any(accepted) {
        return Err(ApiError::forbidden(
            "forbidden",
            format!("this endpoint needs scope {}", accepted.join(" or ")),
        ));
    }
    Ok(principal)
}

/// Who may change users' business fields: a user whose mirror role is
/// `admin`, or a service token with scope `admin`.
pub enum AdminCaller {
    User(AuthenticatedUser),
    Service(ServicePrincipal),
}

impl AdminCaller {
    /// For logs: who did it.
    pub fn describe(&self) -> String {
        match self {
            AdminCaller::User(u) => format!("user:{}", u.user.id.0),
            AdminCaller::Service(s) => format!("service_token:{}", s.token_id),
        }
    }
}

impl FromRequest for AdminCaller {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        with_bearer(req, move |state: web::Data<AppState>, token| async move {
            let token = token.ok_or_else(|| {
                ApiError::unauthorized(
                    "unauthorized",
                    "send Authorization: Bearer <an admin's access token or a service token>",
                )
            })?;
            if token.starts_with(SERVICE_TOKEN_PREFIX) {
                let service = service_caller(&state, &token, &["admin"]).await?;
                return Ok(AdminCaller::Service(service));
            }
            let user = AuthenticatedUser::authenticate(&state, &token).await?;
            if user.user.role != "admin" {
                return Err(ApiError::forbidden(
                    "forbidden",
                    "only administrators can change users",
                ));
            }
            Ok(AdminCaller::User(user))
        })
    }
}

/// An operator's program: a service token with scope `admin` or `ops`.
pub struct OpsCaller(pub ServicePrincipal);

impl FromRequest for OpsCaller {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        with_bearer(req, move |state: web::Data<AppState>, token| async move {
            match token {
                Some(t) if t.starts_with(SERVICE_TOKEN_PREFIX) => Ok(OpsCaller(
                    service_caller(&state, &t, &["admin", "ops"]).await?,
                )),
                _ => Err(ApiError::unauthorized(
                    "unauthorized",
                    "this endpoint needs a service token with scope admin or ops",
                )),
            }
        })
    }
}
