//! Who is calling: the caller's address, a user's bearer token, an internal
//! service's key or service token, an administrator's service token. Each is an extractor, so a handler that names one in its
//! arguments cannot run without the check having passed.

use std::net::IpAddr;

use actix_web::dev::Payload;
use actix_web::{http::header, web, FromRequest, HttpMessage, HttpRequest};
use secrecy::ExposeSecret;
use uuid::Uuid;

use crate::configuration::Cidr;
use crate::db::{sessions, users::User};
use crate::domain::service_token::scope;
use crate::error::ApiError;
use crate::services::service_tokens::{self, Checked};
use crate::telemetry::RequestId;
use crate::AppState;
use futures::future::LocalBoxFuture;
use service_kit::http::with_bearer;

/// The header a browser client sends to ask for the refresh token as an
/// HttpOnly cookie instead of in the JSON body. Being a non-standard
/// header, it makes every cross-origin use of it need a CORS preflight,
/// which only configured origins pass.
pub const TOKEN_TRANSPORT_HEADER: &str = "x-token-transport";

pub use service_kit::http::{bearer, key_matches};

/// Where a request came from, for sessions, lockout and the audit trail.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    /// Cloudflare's `cf-ray` request id, when the request carried one.
    pub cf_ray: Option<String>,
    pub endpoint: String,
}

impl ClientInfo {
    pub fn ip_string(&self) -> Option<String> {
        self.ip.map(|ip| ip.to_string())
    }
}

impl ClientInfo {
    /// What the brute-force limits and the rate limit count by: the
    /// address, or for IPv6 its /64 (`limit_key`).
    pub fn limit_key(&self) -> String {
        self.ip
            .map_or_else(|| "unknown".to_owned(), |ip| limit_key(ip).to_string())
    }
}

/// One IPv6 /64 is one client: a single host or home usually holds a whole
/// /64 and can pick any address in it, so counting per /128 would give an
/// attacker 2^64 fresh counters. IPv4 addresses count one by one.
pub fn limit_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(std::net::Ipv6Addr::from(bits))
        }
    }
}

/// One `X-Forwarded-For` entry: `ip`, `ipv4:port`, `[ipv6]` or
/// `[ipv6]:port` (proxies write all of these).
fn forwarded_hop(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(addr) = entry.parse::<std::net::SocketAddr>() {
        return Some(addr.ip());
    }
    entry
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .and_then(|inner| inner.parse::<IpAddr>().ok())
}

/// The client address: the TCP peer, unless the peer is a trusted proxy; then
/// the nearest address in `X-Forwarded-For` that is not itself trusted.
/// Addresses a client wrote into the header beyond that are ignored, so a
/// client cannot choose its own address. An entry that does not parse ends
/// the walk: what lies left of it cannot be trusted to be a real hop (else
/// a proxy that appends `ip:port` the parser skipped would hand the
/// client's own left-hand entry over as its address), so the nearest hop
/// read so far is the answer.
pub fn client_ip(req: &HttpRequest, trusted: &[Cidr]) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip().to_canonical();
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return Some(peer);
    }
    let entries: Vec<&str> = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    let mut nearest = peer;
    for entry in entries.into_iter().rev() {
        let Some(hop) = forwarded_hop(entry).map(|ip| ip.to_canonical()) else {
            break;
        };
        nearest = hop;
        if !is_trusted(hop) {
            break;
        }
    }
    Some(nearest)
}

/// The `cf-ray` header, kept for correlation only (nothing is decided on
/// it, and anyone can send one): Cloudflare's form is hex digits, a dash
/// and a data-centre code; anything else, or longer than 64 bytes, is
/// dropped rather than stored.
fn cf_ray(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get("cf-ray")?.to_str().ok()?;
    let valid = !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    valid.then(|| value.to_owned())
}

impl ClientInfo {
    pub fn of(req: &HttpRequest) -> Self {
        let trusted = req
            .app_data::<web::Data<AppState>>()
            .map(|s| s.settings.trusted_proxies.as_slice())
            .unwrap_or(&[]);
        ClientInfo {
            ip: client_ip(req, trusted),
            user_agent: req
                .headers()
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(|s| s.chars().take(512).collect()),
            request_id: req.extensions().get::<RequestId>().map(|r| r.0.clone()),
            cf_ray: cf_ray(req),
            endpoint: format!(
                "{} {}",
                req.method(),
                req.match_pattern().unwrap_or_else(|| req.path().to_owned())
            ),
        }
    }
}

impl FromRequest for ClientInfo {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(Ok(ClientInfo::of(req)))
    }
}

/// Where the caller wants its refresh token: in the JSON body (the default,
/// for programs) or in an HttpOnly cookie (`X-Token-Transport: cookie`, for
/// browser apps, whose JavaScript then never holds it).
///
/// Cookie mode is the one place a browser's ambient credential (the cookie)
/// authenticates a request, so it is where cross-site request forgery is
/// stopped, three ways: the cookie is `SameSite=Strict`; the custom header
/// makes every cross-origin call need a CORS preflight that only configured
/// origins pass; and the request's `Origin` must be this service's own or
/// one of `CORS_ALLOWED_ORIGINS` (403 `origin_not_allowed` otherwise, also
/// when it is missing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenTransport {
    Body,
    Cookie,
}

impl TokenTransport {
    pub fn of(req: &HttpRequest, state: &AppState) -> Result<Self, ApiError> {
        let Some(value) = req.headers().get(TOKEN_TRANSPORT_HEADER) else {
            return Ok(Self::Body);
        };
        if !value.as_bytes().eq_ignore_ascii_case(b"cookie") {
            return Err(ApiError::bad_request(
                "X-Token-Transport: the only accepted value is `cookie`",
            ));
        }
        let origin = req
            .headers()
            .get(header::ORIGIN)
            .and_then(|o| o.to_str().ok())
            .unwrap_or("");
        let own = state.settings.public_origin.as_deref() == Some(origin);
        if origin.is_empty() || !(own || state.settings.cors.allows(origin)) {
            return Err(ApiError::forbidden(
                "origin_not_allowed",
                "cookie mode needs an Origin header naming this service or one of CORS_ALLOWED_ORIGINS",
            ));
        }
        Ok(Self::Cookie)
    }
}

impl FromRequest for TokenTransport {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(
            service_kit::http::app_state::<AppState>(req).and_then(|state| Self::of(req, &state)),
        )
    }
}

/// A user whose access token is valid *and* whose session is still live:
/// logout takes effect at once, not when the token expires.
#[derive(Debug, Clone)]
pub struct AuthenticatedUser {
    pub user: User,
    pub session_id: Uuid,
}

impl FromRequest for AuthenticatedUser {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        with_bearer(req, move |state: web::Data<AppState>, token| async move {
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

/// A service token that passed `service_tokens::check` and holds a
/// required scope.
#[derive(Debug, Clone)]
pub struct ServiceCaller {
    pub token_id: Uuid,
    pub name: String,
    pub client: ClientInfo,
}

/// Checks a service token for one of `accepted` scopes, and notes the use
/// (counted and audited in batches; see `service_tokens::Usage`).
/// Unknown, revoked or expired: 401. Valid but without the scope: 403.
async fn service_caller(
    state: &AppState,
    token: &str,
    client: ClientInfo,
    accepted: &[&str],
) -> Result<ServiceCaller, ApiError> {
    // Failures are aggregated and budgeted per address (see
    // `service_tokens`): anyone can send a token, so they must not cost a
    // row, or past the budget even a lookup, each.
    let over_budget = || {
        ApiError::too_many(
            "too_many_requests",
            60,
            "too many failed service-token uses from this address; retry in a minute",
        )
    };
    if state.usage.exhausted(&client) {
        state
            .usage
            .record_failure(None, &client, "refused: too many failures");
        return Err(over_budget());
    }
    let checked = {
        let mut pooled = state.db.get().await?;
        service_tokens::check(&mut pooled.conn(), token, crate::db::now()).await?
    };
    let refuse = |token_id: Option<Uuid>, detail: &str, error: ApiError| {
        if state.usage.record_failure(token_id, &client, detail) {
            error
        } else {
            over_budget()
        }
    };
    let row = match checked {
        Checked::Valid(row) => row,
        Checked::Inactive(id) => {
            return Err(refuse(
                Some(id),
                "revoked or expired",
                invalid_service_token(),
            ));
        }
        Checked::Unknown => return Err(refuse(None, "unknown token", invalid_service_token())),
    };
    let scopes = row.scope_list();
    if !accepted.iter().any(|a| scopes.iter().any(|s| s == a)) {
        let detail = format!("needs scope {}", accepted.join(" or "));
        return Err(refuse(
            Some(row.id.0),
            &detail,
            ApiError::forbidden(
                "insufficient_scope",
                format!("this service token lacks the scope this endpoint {detail}"),
            ),
        ));
    }
    state.usage.record(Some(row.id.0), &client, true, None);
    Ok(ServiceCaller {
        token_id: row.id.0,
        name: row.name,
        client,
    })
}

fn invalid_service_token() -> ApiError {
    ApiError::unauthorized(
        "invalid_token",
        "the service token is unknown, expired or revoked",
    )
}

/// Another service of ours: `AUTH_SERVICE_API_KEY`, or a service token
/// with scope `internal` (then `token_id` names it).
#[derive(Debug, Clone, Copy)]
pub struct InternalCaller {
    pub token_id: Option<Uuid>,
}

impl FromRequest for InternalCaller {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let client = bearer(req)
            .filter(|t| service_tokens::looks_like(t))
            .map(|_| ClientInfo::of(req));
        with_bearer(req, move |state: web::Data<AppState>, token| async move {
            // `client` is built only for service tokens: the API key path
            // (every introspection by the main backend) stays lean.
            match (token, client) {
                (Some(t), _) if key_matches(&t, state.settings.service_api_key.expose_secret()) => {
                    Ok(InternalCaller { token_id: None })
                }
                (Some(t), Some(client)) => {
                    let caller = service_caller(&state, &t, client, &[scope::INTERNAL]).await?;
                    Ok(InternalCaller {
                        token_id: Some(caller.token_id),
                    })
                }
                _ => Err(ApiError::unauthorized(
                    "unauthorized",
                    "internal endpoints need the service API key or a service token with scope internal",
                )),
            }
        })
    }
}

/// An administrator's program: a service token with scope `admin`.
#[derive(Debug, Clone)]
pub struct AdminCaller(pub ServiceCaller);

impl FromRequest for AdminCaller {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let client = bearer(req)
            .filter(|t| service_tokens::looks_like(t))
            .map(|_| ClientInfo::of(req));
        with_bearer(req, move |state: web::Data<AppState>, token| async move {
            match (token, client) {
                (Some(t), Some(client)) => Ok(AdminCaller(
                    service_caller(&state, &t, client, &[scope::ADMIN]).await?,
                )),
                (Some(t), None) if key_matches(&t, state.settings.service_api_key.expose_secret()) => {
                    Err(ApiError::forbidden(
                        "insufficient_scope",
                        "the service API key does not grant admin; use a service token with scope admin",
                    ))
                }
                _ => Err(ApiError::unauthorized(
                    "unauthorized",
                    "admin endpoints need a service token with scope admin",
                )),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    /// The review's finding: a proxy that appends `ip:port` used to have
    /// its entry skipped, so the client's own left-hand entry became the
    /// client address. Ports and brackets parse now, and garbage ends the walk.
    #[test]
    fn forwarded_for_hops_with_ports_parse_and_garbage_ends_the_walk() {
        let trusted = vec![Cidr::parse("10.0.0.0/8").expect("cidr")];
        let ip = |header: &str| {
            let req = TestRequest::default()
                .peer_addr("10.0.0.5:1234".parse().expect("addr"))
                .insert_header(("x-forwarded-for", header))
                .to_http_request();
            client_ip(&req, &trusted).expect("ip").to_string()
        };
        assert_eq!(ip("6.6.6.6, 1.2.3.4:5678"), "1.2.3.4");
        assert_eq!(ip("6.6.6.6, [2001:db8::7]:443"), "2001:db8::7");
        assert_eq!(ip("6.6.6.6, [2001:db8::7]"), "2001:db8::7");
        // Unparseable hop: nothing left of it is believed; the nearest
        // hop read (the trusted proxy) is the key, shared and fail-closed.
        assert_eq!(ip("6.6.6.6, not-an-address, 10.0.0.9"), "10.0.0.9");
        assert_eq!(ip("6.6.6.6, unknown"), "10.0.0.5");
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_slash_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:ffff:1:2:3".parse().expect("ip");
        let other: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(limit_key(a), limit_key(b));
        assert_ne!(limit_key(a), limit_key(other));
        assert_eq!(limit_key(a).to_string(), "2001:db8:1:2::");
        let v4: IpAddr = "192.0.2.7".parse().expect("ip");
        assert_eq!(limit_key(v4), v4);
    }

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
}

/// Rate-limit key for `actix-governor`: the client address as `client_ip`
/// sees it (trusted proxies only), so a client cannot dodge the limit with
/// a forged `X-Forwarded-For`.
#[derive(Clone)]
pub struct ClientAddress {
    pub trusted: std::sync::Arc<Vec<Cidr>>,
}

impl actix_governor::KeyExtractor for ClientAddress {
    type Key = IpAddr;
    type KeyExtractionError = ApiError;

    fn extract(&self, req: &actix_web::dev::ServiceRequest) -> Result<IpAddr, ApiError> {
        Ok(client_ip(req.request(), &self.trusted)
            .map_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), limit_key))
    }

    fn exceed_rate_limit_response(
        &self,
        negative: &actix_governor::governor::NotUntil<
            actix_governor::governor::clock::QuantaInstant,
        >,
        mut response: actix_web::HttpResponseBuilder,
    ) -> actix_web::HttpResponse {
        use actix_governor::governor::clock::{Clock, DefaultClock};
        let wait = negative.wait_time_from(DefaultClock::default().now());
        let problem = ApiError::new(
            actix_web::http::StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            format!(
                "too many requests from this address; retry in {} s",
                wait.as_secs().max(1)
            ),
        )
        .problem();
        response
            .content_type("application/problem+json")
            .json(problem)
    }
}
