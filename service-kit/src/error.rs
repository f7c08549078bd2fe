//! The service's one error type and its mapping to RFC 9457 problem details.
//!
//! Handlers return `Result<_, ApiError>`; everything that can go wrong ends
//! here and leaves as `application/problem+json` with a stable `code`. Body,
//! path and query parsing failures are mapped by the `*_error_handler`
//! functions below, so malformed input is a 4xx and never a 500. A 500 body
//! says nothing about the cause; the cause goes to the log.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use shared_types::Problem;

use crate::db::PoolError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    pub retry_after: Option<u64>,
    /// The underlying cause of a 5xx, for the log only.
    pub source: Option<anyhow::Error>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.detail)
    }
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            retry_after: None,
            source: None,
        }
    }
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", detail)
    }
    pub fn validation(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail)
    }
    pub fn unauthorized(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, detail)
    }
    pub fn forbidden(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, detail)
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", detail)
    }
    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, detail)
    }
    /// 429 with `Retry-After: retry_after_secs` (at least 1).
    pub fn too_many(code: &'static str, retry_after_secs: u64, detail: impl Into<String>) -> Self {
        Self {
            retry_after: Some(retry_after_secs.max(1)),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, code, detail)
        }
    }
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            detail,
        )
    }
    pub fn internal(source: impl Into<anyhow::Error>) -> Self {
        Self {
            source: Some(source.into()),
            ..Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "an unexpected error occurred",
            )
        }
    }

    pub fn problem(&self) -> Problem {
        Problem {
            // The stable `code` is what clients branch on; `type` stays the
            // RFC 9457 default, whose `title` is the status phrase.
            kind: "about:blank".to_owned(),
            title: self.status.canonical_reason().unwrap_or("Error").to_owned(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            code: self.code.to_owned(),
        }
    }
}

impl From<diesel::result::Error> for ApiError {
    fn from(e: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error};
        match &e {
            // A lost or closed connection is the database being away, which
            // clients should treat as retryable.
            _ if database_away(&e) => Self {
                source: Some(e.into()),
                ..Self::unavailable("the database is unavailable; retry shortly")
            },
            // A row it refers to went away meanwhile (say, the user was
            // deleted by the sync path during the request): not a server bug.
            Error::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _) => Self {
                source: Some(e.into()),
                ..Self::conflict(
                    "conflict",
                    "something this refers to no longer exists; reload and retry",
                )
            },
            _ => Self::internal(e),
        }
    }
}

/// Whether `e` says the database server is away (stopped, restarting,
/// failing over) rather than that the query is wrong: answered 503, never
/// 500. diesel-async reports a dropped PostgreSQL socket as
/// `UnableToSendCommand` ("connection closed"), and keeps only the message
/// of the server's own shutdown errors (SQLSTATE 57P01-57P03) under
/// `Unknown`, so those are recognised by their fixed wording.
fn database_away(e: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    match e {
        Error::DatabaseError(
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
            _,
        )
        | Error::BrokenTransactionManager => true,
        Error::DatabaseError(DatabaseErrorKind::Unknown, info) => {
            let message = info.message();
            message.starts_with("terminating connection")
                || message.starts_with("the database system is")
        }
        _ => false,
    }
}

/// A broken rule is 422 with the rule's own code.
impl From<crate::invalid::Invalid> for ApiError {
    fn from(e: crate::invalid::Invalid) -> Self {
        Self::validation(e.code, e.detail)
    }
}

impl From<crate::invalid::StoreError> for ApiError {
    fn from(e: crate::invalid::StoreError) -> Self {
        match e {
            crate::invalid::StoreError::Query(e) => e.into(),
            crate::invalid::StoreError::Pool(e) => e.into(),
        }
    }
}

impl From<PoolError> for ApiError {
    fn from(e: PoolError) -> Self {
        Self {
            source: Some(e.into()),
            ..Self::unavailable("the database is unavailable; retry shortly")
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        if self.status.is_server_error() {
            match &self.source {
                Some(source) => {
                    tracing::error!(code = self.code, error = ?source, "request failed")
                }
                None => tracing::error!(code = self.code, detail = %self.detail, "request failed"),
            }
        }
        let mut res = HttpResponse::build(self.status);
        res.insert_header((header::CONTENT_TYPE, "application/problem+json"));
        if self.status == StatusCode::UNAUTHORIZED {
            res.insert_header((
                header::WWW_AUTHENTICATE,
                format!(
                    "Bearer error=\"invalid_token\", error_description=\"{}\"",
                    self.code
                ),
            ));
        }
        if let Some(secs) = self.retry_after {
            res.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        res.body(serde_json::to_string(&self.problem()).unwrap_or_default())
    }
}

/// Bad JSON bodies: syntax errors are 400, shape errors (unknown or missing
/// fields, wrong types) are 422, too large is 413, not JSON is 415.
pub fn json_error_handler(
    err: actix_web::error::JsonPayloadError,
    _req: &HttpRequest,
) -> actix_web::Error {
    use actix_web::error::JsonPayloadError as E;
    let api = match &err {
        E::Overflow { .. } | E::OverflowKnownLength { .. } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is too large",
        ),
        E::ContentType => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as application/json",
        ),
        E::Deserialize(e) if e.is_data() => {
            ApiError::validation("validation_failed", e.to_string())
        }
        E::Deserialize(e) => ApiError::bad_request(format!("malformed JSON: {e}")),
        other => ApiError::bad_request(other.to_string()),
    };
    api.into()
}

pub fn path_error_handler(
    err: actix_web::error::PathError,
    _req: &HttpRequest,
) -> actix_web::Error {
    ApiError::bad_request(format!("invalid path parameter: {err}")).into()
}

pub fn query_error_handler(
    err: actix_web::error::QueryPayloadError,
    _req: &HttpRequest,
) -> actix_web::Error {
    ApiError::bad_request(format!("invalid query string: {err}")).into()
}

/// Unknown routes.
pub async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::not_found("no such route"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::result::{DatabaseErrorKind, Error};

    fn status(e: Error) -> StatusCode {
        ApiError::from(e).status_code()
    }

    #[test]
    fn a_database_that_went_away_is_503_and_a_bad_query_is_500() {
        let info = |m: &str| Box::new(m.to_owned()) as _;
        for away in [
            Error::DatabaseError(
                DatabaseErrorKind::UnableToSendCommand,
                info("connection closed"),
            ),
            Error::DatabaseError(DatabaseErrorKind::ClosedConnection, info("closed")),
            Error::DatabaseError(
                DatabaseErrorKind::Unknown,
                info("terminating connection due to administrator command"),
            ),
            Error::DatabaseError(
                DatabaseErrorKind::Unknown,
                info("the database system is shutting down"),
            ),
            Error::BrokenTransactionManager,
        ] {
            assert_eq!(status(away), StatusCode::SERVICE_UNAVAILABLE);
        }
        for bug in [
            Error::DatabaseError(
                DatabaseErrorKind::Unknown,
                info("column \"nope\" does not exist"),
            ),
            Error::NotFound,
        ] {
            assert_eq!(status(bug), StatusCode::INTERNAL_SERVER_ERROR);
        }
    }
}
