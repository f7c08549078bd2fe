//! The auth service's internal API, as the main backend calls it.
//!
//! Every call waits at most `AUTH_TIMEOUT_MS`. Anything but the expected
//! answer (no connection, timeout, 5xx, our API key refused, a body that
//! does not parse) is `AuthUnavailable`: callers fail closed on it.

use std::time::Duration;

use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use shared_types::{
    DigestRequest, DigestResponse, EventPage, IdRange, IntrospectRequest, Introspection,
    RangeDigest, UserCount, UserPage, UserRecord, WebhookStats,
};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
#[error("auth service unavailable: {0}")]
pub struct AuthUnavailable(pub String);

#[derive(Clone)]
pub struct AuthClient {
    base: String,
    api_key: SecretString,
    http: reqwest::Client,
    timeout: Duration,
}

/// A read of the event feed.
pub enum FeedRead {
    Page(EventPage),
    /// 410 `cursor_expired`: events after the cursor are gone (or the
    /// cursor is ahead of the feed): reconcile, then start from the head.
    Expired,
}

impl AuthClient {
    pub fn new(base: &str, api_key: SecretString, timeout: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_max_idle_per_host(64)
            .user_agent(concat!("main-backend/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            api_key,
            http,
            timeout,
        })
    }

    async fn call<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<Option<T>, AuthUnavailable> {
        Self::answer(self.send(request).await?).await
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, AuthUnavailable> {
        request
            .bearer_auth(self.api_key.expose_secret())
            .send()
            .await
            .map_err(|e| AuthUnavailable(e.without_url().to_string()))
    }

    /// The expected answer's body; `None` for 404.
    async fn answer<T: DeserializeOwned>(
        response: reqwest::Response,
    ) -> Result<Option<T>, AuthUnavailable> {
        match response.status() {
            StatusCode::OK | StatusCode::ACCEPTED => response
                .json::<T>()
                .await
                .map(Some)
                .map_err(|e| AuthUnavailable(format!("unexpected answer: {}", e.without_url()))),
            StatusCode::NOT_FOUND => Ok(None),
            StatusCode::UNAUTHORIZED => {
                tracing::error!("the auth service refused AUTH_SERVICE_API_KEY; check both services use the same key");
                Err(AuthUnavailable("API key refused".into()))
            }
            other => Err(AuthUnavailable(format!("answered {other}"))),
        }
    }

    fn expect<T>(found: Option<T>, what: &str) -> Result<T, AuthUnavailable> {
        found.ok_or_else(|| AuthUnavailable(format!("{what}: not found")))
    }

    /// RFC 7662 introspection of a bearer token.
    pub async fn introspect(&self, token: &str) -> Result<Introspection, AuthUnavailable> {
        let req = self
            .http
            .post(format!("{}/internal/v1/introspect", self.base))
            .json(&IntrospectRequest {
                token: token.to_owned(),
            });
        Self::expect(self.call(req).await?, "introspect")
    }

    /// One user; `None` when the auth service has no such user.
    pub async fn user(&self, id: Uuid) -> Result<Option<UserRecord>, AuthUnavailable> {
        let req = self
            .http
            .get(format!("{}/internal/v1/users/{id}", self.base));
        self.call(req).await
    }

    /// A page of the users in `range`, by id.
    pub async fn users_page(
        &self,
        range: IdRange,
        limit: u32,
    ) -> Result<UserPage, AuthUnavailable> {
        let mut url = format!("{}/internal/v1/users?limit={limit}", self.base);
        if let Some(after) = range.after {
            url.push_str(&format!("&after={after}"));
        }
        if let Some(upto) = range.upto {
            url.push_str(&format!("&upto={upto}"));
        }
        Self::expect(self.call(self.http.get(url)).await?, "users")
    }

    /// The auth service's digests of `ranges` (at most 256), in order.
    pub async fn digests(&self, ranges: &[IdRange]) -> Result<Vec<RangeDigest>, AuthUnavailable> {
        let req = self
            .http
            .post(format!("{}/internal/v1/users/digests", self.base))
            .json(&DigestRequest {
                ranges: ranges.to_vec(),
            });
        let answer: DigestResponse = Self::expect(self.call(req).await?, "digests")?;
        if answer.digests.len() != ranges.len() {
            return Err(AuthUnavailable("digests: one per range expected".into()));
        }
        Ok(answer.digests)
    }

    pub async fn user_count(&self) -> Result<i64, AuthUnavailable> {
        let req = self
            .http
            .get(format!("{}/internal/v1/users/count", self.base));
        Ok(Self::expect(self.call::<UserCount>(req).await?, "count")?.count)
    }

    /// A page of the event feed after `after` (a cursor, or `now`),
    /// long-polled up to `wait`; the request may take that much longer
    /// than other calls.
    pub async fn events(
        &self,
        after: &str,
        limit: u32,
        wait: Duration,
    ) -> Result<FeedRead, AuthUnavailable> {
        let request = self
            .http
            .get(format!("{}/internal/v1/events", self.base))
            .query(&[
                ("after", after.to_owned()),
                ("limit", limit.to_string()),
                ("wait", wait.as_secs().to_string()),
            ])
            .timeout(wait + self.timeout);
        let response = self.send(request).await?;
        if response.status() == StatusCode::GONE {
            return Ok(FeedRead::Expired);
        }
        Self::expect(Self::answer(response).await?, "events").map(FeedRead::Page)
    }

    pub async fn webhook_stats(&self) -> Result<WebhookStats, AuthUnavailable> {
        let req = self
            .http
            .get(format!("{}/internal/v1/webhooks/stats", self.base));
        Self::expect(self.call(req).await?, "webhook stats")
    }
}
