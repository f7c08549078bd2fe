//! Register, login, refresh, logout.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::{web, FromRequest, HttpRequest, HttpResponse, HttpResponseBuilder};
use chrono::{DateTime, Duration, Utc};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use shared_types::{PublicUser, RegisterResponse, TokenPair};
use uuid::Uuid;

use crate::db::events::{self, kind, AuthEvent};
use crate::db::sessions::{self, RefreshToken, Session};
use crate::db::sql_types::{DbTime, DbUuid};
use crate::db::users::{self, NewUser};
use crate::db::{self, Conn};
use crate::domain::{Email, FullName, NewPassword};
use crate::error::ApiError;
use crate::extractors::{AuthenticatedUser, ClientInfo, TokenTransport};
use crate::metrics::LoginOutcome;
use crate::tokens::{hash_token, random_token};
use crate::AppState;
use service_kit::transaction;

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

pub(crate) fn audit(
    kind: &str,
    user_id: Option<Uuid>,
    client: &ClientInfo,
    success: bool,
    detail: Option<&str>,
) -> AuthEvent {
    AuthEvent {
        id: DbUuid(Uuid::now_v7()),
        kind: kind.to_owned(),
        user_id: user_id.map(DbUuid),
        service_token_id: None,
        ip: client.ip_string(),
        user_agent: client.user_agent.clone(),
        endpoint: Some(client.endpoint.clone()),
        request_id: client.request_id.clone(),
        cf_ray: client.cf_ray.clone(),
        success,
        detail: detail.map(str::to_owned),
        created_at: DbTime(db::now()),
    }
}

/// The cookie holding the refresh token in cookie mode. It is set twice,
/// once per path, so the browser sends it to refresh (`/v1/token/...`) and
/// to logout (`/v1/logout...`, which must end the session even when the
/// access token has expired) and nowhere else.
pub const REFRESH_COOKIE: &str = "refresh_token";
const REFRESH_COOKIE_PATHS: [&str; 2] = ["/v1/token", "/v1/logout"];

impl AppState {
    /// The refresh cookies with `value`; an empty value and age 0 delete them.
    fn refresh_cookies(&self, value: &str, max_age: Duration) -> [Cookie<'static>; 2] {
        REFRESH_COOKIE_PATHS.map(|path| {
            Cookie::build(REFRESH_COOKIE, value.to_owned())
                .path(path)
                .http_only(true)
                .same_site(SameSite::Strict)
                .secure(self.settings.cookie_secure)
                .max_age(actix_web::cookie::time::Duration::seconds(
                    max_age.num_seconds(),
                ))
                .finish()
        })
    }

    /// Answers with `body`, which holds `pair`: unchanged in body mode; in
    /// cookie mode the refresh token moves out of the JSON into the cookie.
    fn deliver<T: Serialize>(
        &self,
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
        let days = Duration::days(self.settings.refresh_token_days);
        for cookie in self.refresh_cookies(&pair.refresh_token, days) {
            answer.cookie(cookie);
        }
        Ok(answer.json(json))
    }
}

/// What a refresh token row and the access token issued with it have in
/// common; enough to (re)build the pair the client receives.
struct Issued {
    refresh_token: String,
    row: RefreshToken,
}

impl AppState {
    fn token_pair(&self, session: &Session, issued: &Issued) -> Result<TokenPair, ApiError> {
        let access = self
            .keys
            .issue_access(
                session.user_id.0,
                session.id.0,
                issued.row.access_jti.0,
                issued.row.issued_at.0,
            )
            .map_err(ApiError::internal)?;
        Ok(TokenPair {
            access_token: access,
            refresh_token: issued.refresh_token.clone(),
            token_type: "Bearer".into(),
            expires_in: self.keys.access_ttl_seconds(),
            session_id: session.id.0,
            user_id: session.user_id.0,
        })
    }

    fn new_refresh_row(
        &self,
        session_id: Uuid,
        token: &str,
        parent: Option<Uuid>,
        now: DateTime<Utc>,
    ) -> RefreshToken {
        RefreshToken {
            id: DbUuid(Uuid::now_v7()),
            session_id: DbUuid(session_id),
            token_hash: hash_token(token),
            parent_id: parent.map(DbUuid),
            access_jti: DbUuid(Uuid::new_v4()),
            issued_at: DbTime(now),
            expires_at: DbTime(now + Duration::days(self.settings.refresh_token_days)),
            used_at: None,
        }
    }

    /// Opens a session with its first refresh token, inside the caller's transaction.
    async fn start_session(
        &self,
        tx: &mut Conn<'_>,
        user_id: Uuid,
        client: &ClientInfo,
        now: DateTime<Utc>,
    ) -> Result<TokenPair, ApiError> {
        let session = Session {
            id: DbUuid(Uuid::now_v7()),
            user_id: DbUuid(user_id),
            created_at: DbTime(now),
            last_used_at: DbTime(now),
            expires_at: DbTime(now + Duration::days(self.settings.refresh_token_days)),
            ip: client.ip_string(),
            user_agent: client.user_agent.clone(),
            revoked_at: None,
            revoked_reason: None,
        };
        sessions::insert(tx, &session).await?;
        let refresh_token = random_token();
        let row = self.new_refresh_row(session.id.0, &refresh_token, None, now);
        sessions::insert_refresh_token(tx, &row).await?;
        self.token_pair(&session, &Issued { refresh_token, row })
    }
}

#[utoipa::path(post, path = "/v1/register", tag = "auth", request_body = RegisterRequest, params(("X-Token-Transport" = Option<String>, Header, description = "`cookie` for browser clients")), responses((status = 201, description = "Account and first session", body = RegisterResponse), (status = "4XX", description = "Problem details (RFC 9457); `code` says which", body = shared_types::Problem, content_type = "application/problem+json"), (status = "5XX", description = "Problem details; 503 when a dependency is unavailable", body = shared_types::Problem, content_type = "application/problem+json")), security(()))]
pub async fn register(
    state: web::Data<AppState>,
    client: ClientInfo,
    transport: TokenTransport,
    body: service_kit::http::Json<RegisterRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let email = Email::parse(&body.email)?;
    state.check_email_domain(&email)?;
    let password = NewPassword::parse(body.password)?;
    let full_name = match body.full_name.as_deref() {
        Some(raw) => FullName::parse(raw)?,
        None => None,
    };
    let password_hash = state
        .hasher
        .hash(password.into_secret())
        .await
        .map_err(ApiError::internal)?;
    let now = db::now();
    let new_user = NewUser {
        id: DbUuid(Uuid::now_v7()),
        email: email.as_str(),
        password_hash: &password_hash,
        full_name: full_name.as_ref().map(FullName::as_str),
        password_changed_at: DbTime(now),
        created_at: DbTime(now),
        updated_at: DbTime(now),
    };
    let mut pooled = state.db.get().await?;
    let conn = &mut pooled.conn();
    let tokens = transaction!(conn, |tx| -> ApiError {
        users::insert(tx, &new_user).await.map_err(|e| match e {
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
                ApiError::conflict("email_taken", "an account with this email already exists")
            }
            other => other.into(),
        })?;
        state
            .queue_verification(tx, new_user.id.0, email.as_str())
            .await?;
        state.start_session(tx, new_user.id.0, &client, now).await
    })?;
    state.outbox.wake();
    state.mail.wake();
    let user = PublicUser {
        id: new_user.id.0,
        email: email.as_str().to_owned(),
        email_verified: false,
        full_name: full_name.map(|n| n.as_str().to_owned()),
        created_at: now,
    };
    tracing::info!(user_id = %user.id, "user registered");
    let answer = RegisterResponse { user, tokens };
    state.deliver(transport, HttpResponse::Created(), &answer, &answer.tokens)
}

/// `POST /v1/login`. In order: the brute-force gate (`db::lockouts`:
/// refused with 429 before any password is checked, for known and unknown
/// emails alike), the password (an unknown email verifies a dummy hash, so
/// both cost the same), the administrator's lock, then the second factor
/// when TOTP is on. A wrong password or code counts toward the locks.
#[utoipa::path(post, path = "/v1/login", tag = "auth", request_body = LoginRequest, params(("X-Token-Transport" = Option<String>, Header, description = "`cookie` for browser clients")), responses((status = 200, description = "A new session", body = TokenPair), (status = "4XX", description = "Problem details (RFC 9457); `code` says which", body = shared_types::Problem, content_type = "application/problem+json"), (status = "5XX", description = "Problem details; 503 when a dependency is unavailable", body = shared_types::Problem, content_type = "application/problem+json")), security(()))]
pub async fn login(
    state: web::Data<AppState>,
    client: ClientInfo,
    transport: TokenTransport,
    body: service_kit::http::Json<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let had_code = body.totp_code.is_some();
    let result = sign_in(&state, client, transport, body).await;
    let outcome = match &result {
        Ok(_) => LoginOutcome::Success,
        Err(e) => match e.code {
            "too_many_attempts" => LoginOutcome::LockedOut,
            "account_locked" => LoginOutcome::AccountLocked,
            "mfa_required" if !had_code => LoginOutcome::MfaRequired,
            _ => LoginOutcome::Failure,
        },
    };
    state.metrics.login(outcome);
    result
}

async fn sign_in(
    state: &AppState,
    client: ClientInfo,
    transport: TokenTransport,
    body: LoginRequest,
) -> Result<HttpResponse, ApiError> {
    // A malformed email can't match an account, but it is still counted and
    // still pays for a hash, so that its answer looks like any other failure.
    let email = Email::parse(&body.email).ok();
    let email_key: String = email.as_ref().map_or_else(
        || body.email.trim().to_lowercase().chars().take(254).collect(),
        |e| e.as_str().to_owned(),
    );
    // The slot comes first: no password or code is checked outside one.
    let attempt = state
        .reserve(&client, &email_key, None, kind::LOGIN_FAILED)
        .await?;
    let user = match &email {
        Some(e) => {
            let mut pooled = state.db.get().await?;
            users::find_by_email(&mut pooled.conn(), e.as_str()).await?
        }
        None => None,
    };
    // No connection is held across the hash: a burst must not drain the pool.
    let password = SecretString::from(body.password);
    let matches = state
        .hasher
        .verify(password, user.as_ref().map(|u| u.password_hash.clone()))
        .await
        .map_err(ApiError::internal)?;
    let known_id = user.as_ref().map(|u| u.id.0);
    let Some(user) = user.filter(|_| matches) else {
        attempt
            .failed(
                state,
                &client,
                known_id,
                kind::LOGIN_FAILED,
                "invalid credentials",
            )
            .await?;
        return Err(ApiError::unauthorized(
            "invalid_credentials",
            "email or password is incorrect",
        ));
    };
    let mut pooled = state.db.get().await?;
    let conn = &mut pooled.conn();
    if user.account_locked {
        attempt.released(state).await?;
        events::record(
            conn,
            &audit(
                kind::LOGIN_FAILED,
                Some(user.id.0),
                &client,
                false,
                Some("account locked"),
            ),
        )
        .await?;
        return Err(ApiError::forbidden(
            "account_locked",
            "this account is locked; contact an administrator",
        ));
    }
    if user.mfa_enabled {
        let Some(code) = body.totp_code.as_deref() else {
            // The password was right; the code decides, in a slot of its own.
            attempt.released(state).await?;
            return Err(ApiError::unauthorized(
                "mfa_required",
                "this account uses two-factor sign-in: send totp_code (a current code or a recovery code)",
            ));
        };
        if !state.second_factor_ok(conn, user.id.0, code).await? {
            attempt
                .failed(
                    state,
                    &client,
                    Some(user.id.0),
                    kind::LOGIN_FAILED,
                    "invalid second factor",
                )
                .await?;
            return Err(ApiError::unauthorized(
                "mfa_required",
                "the code is incorrect or was used already; send a current code or an unused recovery code",
            ));
        }
    }
    let now = db::now();
    let result = transaction!(conn, |tx| -> ApiError {
        attempt.passed(state, tx).await?;
        let tokens = state.start_session(tx, user.id.0, &client, now).await?;
        users::touch_last_login(tx, user.id.0, now).await?;
        events::record(
            tx,
            &audit(kind::LOGIN_SUCCEEDED, Some(user.id.0), &client, true, None),
        )
        .await?;
        Ok(tokens)
    });
    let tokens = attempt.settle(state, result).await?;
    state.deliver(transport, HttpResponse::Ok(), &tokens, &tokens)
}

/// `POST /v1/token/refresh`: the refresh token comes from the JSON body,
/// or in cookie mode from the cookie (the body is then ignored).
#[utoipa::path(post, path = "/v1/token/refresh", tag = "auth", request_body = RefreshRequest, params(("X-Token-Transport" = Option<String>, Header, description = "`cookie`: the refresh token is read from the cookie and the body ignored")), responses((status = 200, description = "The next token pair; the presented refresh token is spent", body = TokenPair), (status = "4XX", description = "Problem details (RFC 9457); `code` says which", body = shared_types::Problem, content_type = "application/problem+json"), (status = "5XX", description = "Problem details; 503 when a dependency is unavailable", body = shared_types::Problem, content_type = "application/problem+json")), security(()))]
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
            None => return Err(invalid_refresh_token().into()),
        },
    };
    let pair = exchange(&state, &client, presented).await?;
    Ok(state.deliver(transport, HttpResponse::Ok(), &pair, &pair)?)
}

fn invalid_refresh_token() -> ApiError {
    ApiError::unauthorized(
        "invalid_refresh_token",
        "the refresh token is invalid or expired",
    )
}

/// Exchanges a refresh token for a new pair and spends it.
///
/// A spent token presented again within `AUTH_REFRESH_REUSE_GRACE_SECONDS`
/// (two tabs refreshing at once, a retried request) gets the same pair the
/// first exchange produced; after that it is reuse — a sign the token was
/// stolen — and the whole session is revoked.
async fn exchange(
    state: &AppState,
    client: &ClientInfo,
    presented: String,
) -> Result<TokenPair, ApiError> {
    let invalid = invalid_refresh_token;
    let now = db::now();
    let mut pooled = state.db.get().await?;
    let conn = &mut pooled.conn();
    let hash = hash_token(&presented);
    let (token, session) = sessions::find_refresh_token(conn, &hash)
        .await?
        .ok_or_else(invalid)?;
    if token.expires_at.0 <= now {
        return Err(invalid());
    }
    if token.used_at.is_none() {
        if !session.is_active(now) {
            return Err(invalid());
        }
        let user = users::find(conn, session.user_id.0)
            .await?
            .ok_or_else(invalid)?;
        if user.account_locked {
            return Err(invalid());
        }
        let successor = state.keys.successor_refresh_token(&presented);
        let row = state.new_refresh_row(session.id.0, &successor, Some(token.id.0), now);
        let won = transaction!(conn, |tx| -> ApiError {
            if !sessions::spend_refresh_token(tx, token.id.0, now).await? {
                return Ok(false);
            }
            sessions::insert_refresh_token(tx, &row).await?;
            sessions::touch(tx, session.id.0, now, row.expires_at.0).await?;
            events::record(
                tx,
                &audit(kind::REFRESH, Some(session.user_id.0), client, true, None),
            )
            .await?;
            Ok(true)
        })?;
        if won {
            return state.token_pair(
                &session,
                &Issued {
                    refresh_token: successor,
                    row,
                },
            );
        }
    }
    // Spent, possibly a moment ago by a request racing this one.
    let (token, session) = sessions::find_refresh_token(conn, &hash)
        .await?
        .ok_or_else(invalid)?;
    let used_at = token.used_at.map_or(now, |t| t.0);
    let in_grace = now - used_at <= Duration::seconds(state.settings.refresh_reuse_grace_seconds);
    if in_grace && session.is_active(now) {
        if let Some(row) = sessions::find_successor(conn, token.id.0).await? {
            let successor = state.keys.successor_refresh_token(&presented);
            // Recomputed, so checked: were the derivation key changed
            // meanwhile, this would be a token never stored. Fail closed
            // (without calling it reuse: the client did nothing wrong).
            if hash_token(&successor) != row.token_hash {
                tracing::warn!(session_id = %session.id.0, "refresh successor does not match its stored hash (was AUTH_SECRETS_KEY changed?)");
                return Err(invalid());
            }
            return state.token_pair(
                &session,
                &Issued {
                    refresh_token: successor,
                    row,
                },
            );
        }
    }
    transaction!(conn, |tx| -> ApiError {
        sessions::revoke(
            tx,
            session.user_id.0,
            session.id.0,
            "refresh_token_reused",
            now,
        )
        .await?;
        events::record(
            tx,
            &audit(
                kind::REFRESH_REUSED,
                Some(session.user_id.0),
                client,
                false,
                None,
            ),
        )
        .await?;
        Ok(())
    })?;
    state.outbox.wake();
    tracing::warn!(user_id = %session.user_id.0, session_id = %session.id.0, "refresh token reused; session revoked");
    Err(ApiError::unauthorized(
        "refresh_token_reused",
        "this refresh token was already used; the session has been revoked, sign in again",
    ))
}

/// Ends the caller's current session (`/v1/logout`). In cookie mode the
/// session the refresh cookie belongs to ends too, and without a valid
/// access token (it may have expired while the tab slept) the cookie alone
/// ends it: holding the refresh token proves the session. The cookies are
/// always deleted in cookie mode, so a browser is never left holding a
/// live 7-day credential after "signed out".
#[utoipa::path(post, path = "/v1/logout", tag = "auth", params(("X-Token-Transport" = Option<String>, Header, description = "`cookie`: the session of the refresh cookie ends even without a valid bearer")), responses((status = 204, description = "This session ended"), (status = "4XX", description = "Problem details (RFC 9457); `code` says which", body = shared_types::Problem, content_type = "application/problem+json"), (status = "5XX", description = "Problem details; 503 when a dependency is unavailable", body = shared_types::Problem, content_type = "application/problem+json")), security(("bearer" = [])))]
pub async fn logout(
    state: web::Data<AppState>,
    client: ClientInfo,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let transport = TokenTransport::of(&req, &state)?;
    // Without a valid bearer, only cookie mode goes on.
    let auth = match AuthenticatedUser::from_request(&req, &mut actix_web::dev::Payload::None).await
    {
        Ok(auth) => Some(auth),
        Err(e) if transport == TokenTransport::Body => return Err(e),
        Err(_) => None,
    };
    let cookie_session = match (transport, req.cookie(REFRESH_COOKIE)) {
        (TokenTransport::Cookie, Some(cookie)) => {
            let mut pooled = state.db.get().await?;
            sessions::find_refresh_token(&mut pooled.conn(), &hash_token(cookie.value()))
                .await?
                .map(|(_, session)| session)
                .filter(|s| s.revoked_at.is_none())
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
    if !ended.is_empty() {
        let mut pooled = state.db.get().await?;
        let conn = &mut pooled.conn();
        let now = db::now();
        transaction!(conn, |tx| -> ApiError {
            for (user_id, session_id) in &ended {
                sessions::revoke(tx, *user_id, *session_id, "logout", now).await?;
                events::record(
                    tx,
                    &audit(
                        kind::LOGOUT,
                        Some(*user_id),
                        &client,
                        true,
                        Some("this session"),
                    ),
                )
                .await?;
            }
            Ok(())
        })?;
        state.outbox.wake();
    }
    Ok(state.without_refresh_cookies(HttpResponse::NoContent()))
}

/// Ends every session of the caller (`/v1/logout/all`).
#[utoipa::path(post, path = "/v1/logout/all", tag = "auth", responses((status = 204, description = "Every session ended"), (status = "4XX", description = "Problem details (RFC 9457); `code` says which", body = shared_types::Problem, content_type = "application/problem+json"), (status = "5XX", description = "Problem details; 503 when a dependency is unavailable", body = shared_types::Problem, content_type = "application/problem+json")), security(("bearer" = [])))]
pub async fn logout_all(
    state: web::Data<AppState>,
    client: ClientInfo,
    auth: AuthenticatedUser,
) -> Result<HttpResponse, ApiError> {
    let mut pooled = state.db.get().await?;
    let conn = &mut pooled.conn();
    let now = db::now();
    let user_id = auth.user.id.0;
    transaction!(conn, |tx| -> ApiError {
        let revoked = sessions::revoke_all(tx, user_id, None, "logout_all", now).await?;
        let detail = format!("all sessions ({})", revoked.len());
        events::record(
            tx,
            &audit(kind::LOGOUT, Some(user_id), &client, true, Some(&detail)),
        )
        .await?;
        Ok(())
    })?;
    state.outbox.wake();
    Ok(state.without_refresh_cookies(HttpResponse::NoContent()))
}

impl AppState {
    /// `answer` with the refresh cookies deleted: a browser app's cookie
    /// goes with the session.
    fn without_refresh_cookies(&self, mut answer: HttpResponseBuilder) -> HttpResponse {
        for cookie in self.refresh_cookies("", Duration::zero()) {
            answer.cookie(cookie);
        }
        answer.finish()
    }
}
