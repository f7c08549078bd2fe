//! Small HTTP edge helpers both services need.

use actix_web::http::header;
use actix_web::{web, HttpRequest};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::{self, ApiError};

/// What every app of ours sets: body limits, problem details for bodies,
/// paths and queries that don't parse, and a 404 problem for unknown routes.
pub fn configure_errors(cfg: &mut web::ServiceConfig, max_body: usize) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(max_body)
            .error_handler(error::json_error_handler),
    )
    .app_data(web::PayloadConfig::default().limit(max_body))
    .app_data(web::PathConfig::default().error_handler(error::path_error_handler))
    .app_data(web::QueryConfig::default().error_handler(error::query_error_handler))
    .default_service(web::to(error::not_found));
}

/// One source for the router and the OpenAPI document. A handler is
/// registered with [`route!`](crate::route), which reads its path and
/// method from its `#[utoipa::path]` attribute, routes it there and adds
/// its operation (and the schemas it names) to the document: the path is
/// written once, and no route can go undocumented. All methods of one path
/// share one resource, which answers any other method with 405 and an
/// `Allow` header. `table` returns every `(METHOD, path)`, which a test
/// holds against the served document.
pub struct Routes<'a> {
    /// `None` when only the document is wanted (`Routes::document_only`).
    cfg: Option<&'a mut web::ServiceConfig>,
    table: Vec<(&'static str, String)>,
    /// Paths in first-registration order, with their methods' routes.
    pending: Vec<(String, Vec<(&'static str, actix_web::Route)>)>,
    paths: utoipa::openapi::path::PathsBuilder,
    schemas: Vec<(
        String,
        utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
    )>,
}

/// Routes `module::handler` where its `#[utoipa::path]` says, and
/// documents it; `route!(r, module::handler, |resource| ...)` wraps the
/// handler's resource first (in a rate limiter, say).
#[macro_export]
macro_rules! route {
    ($routes:expr, $module:ident :: $handler:ident) => {{
        let (method, path) = $routes.operation::<$crate::paste::paste!($module::[<__path_ $handler>])>();
        $routes.add(method, path, $crate::http::method(method).to($module::$handler));
    }};
    ($routes:expr, $module:ident :: $handler:ident, $wrap:expr) => {{
        let (method, path) = $routes.operation::<$crate::paste::paste!($module::[<__path_ $handler>])>();
        let resource = actix_web::web::resource(path.clone())
            .route($crate::http::method(method).to($module::$handler))
            .default_service($crate::http::method_not_allowed(method));
        $routes.resource(method, path, $wrap(resource));
    }};
}

/// The actix route guard of an upper-case method name.
pub fn method(name: &str) -> actix_web::Route {
    let method = actix_web::http::Method::from_bytes(name.as_bytes())
        .expect("an HTTP method from a #[utoipa::path]");
    web::method(method)
}

impl<'a> Routes<'a> {
    pub fn new(cfg: &'a mut web::ServiceConfig) -> Self {
        Self {
            cfg: Some(cfg),
            table: Vec::new(),
            pending: Vec::new(),
            paths: Default::default(),
            schemas: Vec::new(),
        }
    }

    /// Collects the document without building a router.
    pub fn document_only() -> Routes<'static> {
        Routes {
            cfg: None,
            table: Vec::new(),
            pending: Vec::new(),
            paths: Default::default(),
            schemas: Vec::new(),
        }
    }

    /// Adds `P`'s operation to the document; returns its method and path.
    /// Use [`route!`](crate::route), which names `P` for a handler.
    pub fn operation<P>(&mut self) -> (&'static str, String)
    where
        P: utoipa::Path + utoipa::__dev::SchemaReferences + utoipa::__dev::Tags<'static>,
    {
        use utoipa::openapi::path::HttpMethod;
        let methods = P::methods();
        let method = match methods.as_slice() {
            [HttpMethod::Get] => "GET",
            [HttpMethod::Post] => "POST",
            [HttpMethod::Put] => "PUT",
            [HttpMethod::Patch] => "PATCH",
            [HttpMethod::Delete] => "DELETE",
            _ => panic!("{}: one method of GET, POST, PUT, PATCH, DELETE", P::path()),
        };
        // The tag of the handler's `#[utoipa::path(tag = ...)]`, which
        // `P::operation` leaves to the `OpenApi` derive to add.
        let mut operation = P::operation();
        operation
            .tags
            .get_or_insert_with(Vec::new)
            .extend(P::tags().into_iter().map(str::to_owned));
        let item = utoipa::openapi::path::PathItem::new(methods[0].clone(), operation);
        self.paths = std::mem::take(&mut self.paths).path(P::path(), item);
        P::schemas(&mut self.schemas);
        (method, P::path())
    }

    /// Routes `route` (already guarded by `method`) at `path`.
    pub fn add(&mut self, method: &'static str, path: String, route: actix_web::Route) {
        self.table.push((method, path.clone()));
        match self.pending.iter_mut().find(|(p, _)| *p == path) {
            Some((_, routes)) => routes.push((method, route)),
            None => self.pending.push((path, vec![(method, route)])),
        }
    }

    /// A resource built by hand (to wrap it in a middleware) that serves
    /// only `method`; give it `method_not_allowed(method)` as its default.
    pub fn resource(
        &mut self,
        method: &'static str,
        path: String,
        resource: impl actix_web::dev::HttpServiceFactory + 'static,
    ) {
        self.table.push((method, path));
        if let Some(cfg) = self.cfg.as_deref_mut() {
            cfg.service(resource);
        }
    }

    /// A service that registers several routes at once, listed as `routes`.
    pub(crate) fn register(
        &mut self,
        routes: &[(&'static str, &'static str)],
        service: impl actix_web::dev::HttpServiceFactory + 'static,
    ) {
        self.table
            .extend(routes.iter().map(|(m, p)| (*m, (*p).to_owned())));
        if let Some(cfg) = self.cfg.as_deref_mut() {
            cfg.service(service);
        }
    }

    /// A route whose table entry a `register` call already made.
    pub(crate) fn route_unlisted(&mut self, path: &str, route: actix_web::Route) {
        if let Some(cfg) = self.cfg.as_deref_mut() {
            cfg.route(path, route);
        }
    }

    /// The document: `base` (title, tags, security schemes) with every
    /// operation routed so far, the schemas they name, and the problem
    /// responses every operation shares.
    pub fn openapi(self, base: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
        use utoipa::Modify;
        let mut doc = base;
        doc.paths.paths.extend(self.paths.build().paths);
        let components = doc.components.get_or_insert_with(Default::default);
        components.schemas.extend(self.schemas);
        crate::docs::ProblemResponses.modify(&mut doc);
        doc
    }

    /// Registers what is pending; returns every `(METHOD, path)`, in order.
    pub fn table(mut self) -> Vec<(&'static str, String)> {
        if let Some(cfg) = self.cfg.as_deref_mut() {
            for (path, routes) in std::mem::take(&mut self.pending) {
                let allow = routes
                    .iter()
                    .map(|(m, _)| *m)
                    .collect::<Vec<_>>()
                    .join(", ");
                let mut resource = web::resource(path);
                for (_, route) in routes {
                    resource = resource.route(route);
                }
                cfg.service(resource.default_service(method_not_allowed(allow)));
            }
        }
        self.table
    }
}

/// A 405 problem naming the methods a path serves (`Allow`, RFC 9110).
pub fn method_not_allowed(allow: impl Into<String>) -> actix_web::Route {
    let allow = allow.into();
    web::to(move || {
        let allow = allow.clone();
        async move {
            let mut res = actix_web::ResponseError::error_response(&ApiError::new(
                actix_web::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("this path serves {allow}"),
            ));
            if let Ok(value) = header::HeaderValue::from_str(&allow) {
                res.headers_mut().insert(header::ALLOW, value);
            }
            res
        }
    })
}

/// A JSON body whose shape errors name the field at fault: `web::Json`
/// says "invalid type: string, expected a boolean" without saying where;
/// this says "completed: invalid type ...". Syntax errors are 400, shape
/// errors 422, an oversized body 413 (the `PayloadConfig` limit), a body
/// sent as something other than JSON 415.
pub struct Json<T>(pub T);

impl<T> Json<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Json<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: serde::de::DeserializeOwned + 'static> actix_web::FromRequest for Json<T> {
    type Error = actix_web::Error;
    type Future = futures::future::LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let json_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .is_some_and(|m| m == "application/json" || m.ends_with("+json"));
        let bytes = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            if !json_type {
                return Err(ApiError::new(
                    actix_web::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    "send the body as application/json",
                )
                .into());
            }
            let bytes = bytes.await.map_err(|e| {
                let status = e.as_response_error().status_code();
                if status == actix_web::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(status, "payload_too_large", "the request body is too large")
                } else {
                    ApiError::bad_request(format!("could not read the body: {e}"))
                }
            })?;
            Ok(Json(parse_json_object(&bytes)?))
        })
    }
}

/// Parses a request body that must be a JSON object into `T`. serde reads
/// a struct from a JSON array too (`["a@b.c", "pw"]` as `{email, password}`),
/// which no schema of ours allows, so another top-level value is 422 before
/// serde sees it. Syntax errors are 400; shape errors 422, naming the field.
pub fn parse_json_object<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if matches!(
        first,
        Some(b'[' | b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n')
    ) {
        // Only a JSON value's start; if the rest is not JSON, say that instead.
        if serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok() {
            return Err(ApiError::validation(
                "validation_failed",
                "the body must be a JSON object",
            ));
        }
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_data() {
            let detail = if path == "." {
                inner.to_string()
            } else {
                format!("{path}: {inner}")
            };
            ApiError::validation("validation_failed", detail)
        } else {
            ApiError::bad_request(format!("malformed JSON: {inner}"))
        }
    })?;
    de.end()
        .map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}")))?;
    Ok(value)
}

/// The body of a bearer-token extractor: the app's state and the bearer
/// token (if well formed) are taken from the request up front, so `check`
/// can be an `async` block that outlives it.
pub fn with_bearer<S, T, F, Fut>(
    req: &HttpRequest,
    check: F,
) -> futures::future::LocalBoxFuture<'static, Result<T, ApiError>>
where
    S: 'static,
    F: FnOnce(web::Data<S>, Option<String>) -> Fut + 'static,
    Fut: std::future::Future<Output = Result<T, ApiError>> + 'static,
{
    let token = bearer(req).map(str::to_owned);
    let state = app_state::<S>(req);
    Box::pin(async move { check(state?, token).await })
}

/// The app's shared state, for extractors.
pub fn app_state<T: 'static>(req: &HttpRequest) -> Result<web::Data<T>, ApiError> {
    req.app_data::<web::Data<T>>()
        .cloned()
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("app state missing")))
}

/// The token of an `Authorization: Bearer <token>` header, if well formed.
pub fn bearer(req: &HttpRequest) -> Option<&str> {
    // `HeaderValue::to_str` checks byte by byte; a header value already
    // holds no control bytes, so `to_str` succeeds exactly when it is
    // ASCII, which `is_ascii` checks a word at a time (this runs on every
    // authenticated request, over a token of several hundred bytes).
    let value = req.headers().get(header::AUTHORIZATION)?.as_bytes();
    let value = std::str::from_utf8(value).ok().filter(|v| v.is_ascii())?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Compares fixed-length digests so neither the key's content nor its length
/// leaks through timing.
pub fn key_matches(presented: &str, expected: &str) -> bool {
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    a.ct_eq(&b).into()
}

/// CORS for browser clients on other origins: only the configured origins,
/// credentials only when configured, and the headers our APIs use (those
/// every API has, and the service's own `headers`). Requests from other
/// origins are served without CORS headers (the browser then hides the
/// answer); their preflights are refused.
pub fn cors(settings: &crate::config::CorsSettings, headers: &[&'static str]) -> actix_cors::Cors {
    let mut cors = actix_cors::Cors::default()
        .allowed_methods(["GET", "POST", "PUT", "PATCH", "DELETE"])
        .allowed_headers(
            [
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::HeaderName::from_static("x-request-id"),
            ]
            .into_iter()
            .chain(headers.iter().map(|h| header::HeaderName::from_static(h))),
        )
        .expose_headers([
            header::HeaderName::from_static("x-request-id"),
            header::RETRY_AFTER,
        ])
        .max_age(600);
    for origin in &settings.origins {
        cors = cors.allowed_origin(origin);
    }
    if settings.credentials {
        cors = cors.supports_credentials();
    }
    cors
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn bearer_parsing() {
        let req = TestRequest::default()
            .insert_header((header::AUTHORIZATION, "Bearer abc"))
            .to_http_request();
        assert_eq!(bearer(&req), Some("abc"));
        let req = TestRequest::default()
            .insert_header((header::AUTHORIZATION, "bearer  abc "))
            .to_http_request();
        assert_eq!(bearer(&req), Some("abc"));
        for bad in ["Basic abc", "Bearer", "Bearer ", "abc"] {
            let req = TestRequest::default()
                .insert_header((header::AUTHORIZATION, bad))
                .to_http_request();
            assert_eq!(bearer(&req), None, "{bad}");
        }
    }

    #[test]
    fn key_comparison() {
        assert!(key_matches("abc", "abc"));
        assert!(!key_matches("abc", "abd"));
        assert!(!key_matches("abc", "abcd"));
        assert!(!key_matches("", "abc"));
    }
}
