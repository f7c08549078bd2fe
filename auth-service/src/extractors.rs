//! Who is calling: the caller's address, a user's bearer token, an internal
//! service's key. Each is an extractor, so a handler that names one in its
//! arguments cannot run without the check having passed.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{http::header, web, FromRequest, HttpMessage, HttpRequest};
use secrecy::ExposeSecret;
use uuid::Uuid;

use crate::configuration::Cidr;
use crate::db::{sessions, users::User};
use crate::error::ApiError;
use crate::telemetry::RequestId;
use crate::AppState;
pub use service_kit::http::{bearer, key_matches};

/// Where a request came from, for sessions, lockout and the audit trail.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    pub endpoint: String,
}

impl ClientInfo {
    pub fn ip_string(&self) -> Option<String> {
        self.ip.map(|ip| ip.to_string())
    }
}

/// The client address: the TCP peer, unless the peer is a trusted proxy; then
/// the nearest address in `X-Forwarded-For` that is not itself trusted.
/// Addresses a client wrote into the header beyond that are ignored, so a
/// client cannot choose its own address.
pub fn client_ip(req: &HttpRequest, trusted: &[Cidr]) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip().to_canonical();
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return Some(peer);
    }
    let forwarded: Vec<IpAddr> = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .map(|ip| ip.to_canonical())
        .collect();
    Some(
        forwarded
            .into_iter()
            .rev()
            .find(|ip| !is_trusted(*ip))
            .unwrap_or(peer),
    )
}

impl FromRequest for ClientInfo {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let trusted = req
            .app_data::<web::Data<AppState>>()
            .map(|s| s.settings.trusted_proxies.as_slice())
            .unwrap_or(&[]);
        std::future::ready(Ok(ClientInfo {
            ip: client_ip(req, trusted),
            user_agent: req
                .headers()
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(|s| s.chars().take(512).collect()),
            request_id: req.extensions().get::<RequestId>().map(|r| r.0.clone()),
            endpoint: format!(
                "{} {}",
                req.method(),
                req.match_pattern().unwrap_or_else(|| req.path().to_owned())
            ),
        }))
    }
}

/// A user whose access token is valid *and* whose session is still live:
/// logout takes effect at once, not when the token expires.
#[derive(Debug, Clone)]
pub struct AuthenticatedUser {
    pub user: User,
    pub session_id: Uuid,
}

fn state(req: &HttpRequest) -> Result<web::Data<AppState>, ApiError> {
    service_kit::http::app_state(req)
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
                ApiError::unauthorized("unauthorized", "a bearer access token is required")
            })?;
            let invalid = || {
                ApiError::unauthorized(
                    "invalid_token",
                    "the access token is invalid, expired or revoked",
                )
            };
            let claims = state.keys.verify_access(&token).ok_or_else(invalid)?;
            let mut pooled = state.db.get().await?;
            let (session, user) =
                sessions::find_active_with_user(&mut pooled.conn(), claims.sid, crate::db::now())
                    .await?
                    .ok_or_else(invalid)?;
            if session.user_id.0 != claims.sub || user.account_locked {
                return Err(invalid());
            }
            Ok(AuthenticatedUser {
                user,
                session_id: session.id.0,
            })
        })
    }
}

/// Another service of ours, holding `AUTH_SERVICE_API_KEY`.
#[derive(Debug, Clone, Copy)]
pub struct InternalCaller;

impl FromRequest for InternalCaller {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let result = state(req).and_then(|state| match bearer(req) {
            Some(token) if key_matches(token, state.settings.service_api_key.expose_secret()) => {
                Ok(InternalCaller)
            }
            _ => Err(ApiError::unauthorized(
                "unauthorized",
                "internal endpoints need the service API key",
            )),
        });
        std::future::ready(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn forwarded_for_is_honoured_only_from_trusted_proxies() {
        let trusted = vec![Cidr::parse("10.0.0.0/8").expect("cidr")];
        let via_proxy = TestRequest::default()
            .peer_addr("10.0.0.5:1234".parse().expect("addr"))
            .insert_header(("x-forwarded-for", "6.6.6.6, 1.2.3.4, 10.0.0.9"))
            .to_http_request();
        assert_eq!(
            client_ip(&via_proxy, &trusted),
            Some("1.2.3.4".parse().expect("ip"))
        );
        let direct = TestRequest::default()
            .peer_addr("8.8.8.8:1234".parse().expect("addr"))
            .insert_header(("x-forwarded-for", "1.2.3.4"))
            .to_http_request();
        assert_eq!(
            client_ip(&direct, &trusted),
            Some("8.8.8.8".parse().expect("ip"))
        );
        assert_eq!(
            client_ip(&direct, &[]),
            Some("8.8.8.8".parse().expect("ip"))
        );
    }

    #[test]
    fn key_comparison() {
        assert!(key_matches("same-key", "same-key"));
        assert!(!key_matches("same-key", "other-key"));
        assert!(!key_matches("same", "same-key"));
    }
}
