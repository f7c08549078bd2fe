//! Wire types shared by the auth service, the main backend and their tests.
//!
//! Everything here is part of the external contract (`CONTRACT.md`): renaming a
//! field is a breaking change for clients. This crate depends on serde, uuid,
//! chrono and the small RustCrypto crates for webhook signatures, so any client
//! can use it without pulling in a web framework or ORM.

pub mod webhook;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// `tokens` in the contract: the answer to register, login and refresh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    pub session_id: Uuid,
    pub user_id: Uuid,
}

/// `user` in the contract: the public view returned by registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PublicUser {
    pub id: Uuid,
    pub email: String,
    pub email_verified: bool,
    pub full_name: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// Answer to `POST /v1/register`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RegisterResponse {
    pub user: PublicUser,
    pub tokens: TokenPair,
}

/// Answer to the auth service's `GET /v1/me`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuthMe {
    pub id: Uuid,
    pub email: String,
    pub email_verified: bool,
    pub mfa_enabled: bool,
    pub created_at: DateTime<Utc>,
    pub last_login: Option<DateTime<Utc>>,
}

/// One entry of `GET /v1/sessions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SessionInfo {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub current: bool,
}

/// The auth-owned view of a user that the main backend mirrors.
///
/// `version` grows by at least one on every change to an auth-owned field, so a
/// receiver can drop stale or reordered updates by comparing versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserRecord {
    pub id: Uuid,
    pub email: String,
    pub email_verified: bool,
    pub full_name: Option<String>,
    pub mfa_enabled: bool,
    pub account_locked: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

/// Answer to `GET /internal/v1/users`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserPage {
    pub users: Vec<UserRecord>,
    /// Pass as `after` to get the next page; `None` at the end.
    pub next_after: Option<Uuid>,
}

/// A range of user ids: after `after` (exclusive; absent: from the start)
/// up to `upto` (inclusive; absent: to the end).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IdRange {
    #[serde(default)]
    pub after: Option<Uuid>,
    #[serde(default)]
    pub upto: Option<Uuid>,
}

/// Body of `POST /internal/v1/users/digests`: up to 256 ranges.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DigestRequest {
    pub ranges: Vec<IdRange>,
}

/// A range's users: how many, and the sum over them of
/// `id_hash(id) + version * 1000003` (`id_hash`: the id's low 31 bits).
/// Equal digests on both sides mean, short of an arithmetic coincidence,
/// the same users at the same versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RangeDigest {
    pub count: i64,
    pub sum: i64,
}

/// Answer to `POST /internal/v1/users/digests`, one per range, in order.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DigestResponse {
    pub digests: Vec<RangeDigest>,
}

/// Answer to `GET /internal/v1/users/count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserCount {
    pub count: i64,
}

/// Body of `POST /internal/v1/introspect`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IntrospectRequest {
    pub token: String,
}

/// RFC 7662 introspection answer. Inactive answers carry `active: false` only,
/// so a caller learns nothing about why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
pub struct Introspection {
    pub active: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// A service token's name (RFC 7662 `client_id`); absent for access tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// A service token's metadata object, when it was given one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
}

impl Introspection {
    pub fn inactive() -> Self {
        Self::default()
    }
}

/// Standard Webhooks event body: `{type, timestamp, data}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WebhookEvent {
    #[serde(rename = "type")]
    #[schema(value_type = String, example = "user.created")]
    pub kind: EventType,
    pub timestamp: DateTime<Utc>,
    pub data: serde_json::Value,
}

/// One event of the feed (`GET /internal/v1/events`): the webhook body
/// with the event's id (its `webhook-id`) and its feed position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FeedEvent {
    pub id: Uuid,
    /// Opaque; read on after it with `after=`.
    pub cursor: String,
    #[serde(flatten)]
    pub event: WebhookEvent,
}

/// A page of the feed. `next_cursor` is never null: on an empty page it is
/// where the reader already was.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EventPage {
    pub events: Vec<FeedEvent>,
    pub next_cursor: String,
}

/// Webhook event types named by the contract.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum EventType {
    UserCreated,
    UserUpdated,
    UserDeleted,
    SessionRevoked,
    /// A type this build does not know (a newer auth service may send
    /// more): kept as sent, so a receiver can record and skip it.
    Other(String),
}

impl EventType {
    pub fn as_str(&self) -> &str {
        match self {
            Self::UserCreated => "user.created",
            Self::UserUpdated => "user.updated",
            Self::UserDeleted => "user.deleted",
            Self::SessionRevoked => "session.revoked",
            Self::Other(other) => other,
        }
    }
}

impl From<String> for EventType {
    fn from(s: String) -> Self {
        match s.as_str() {
            "user.created" => Self::UserCreated,
            "user.updated" => Self::UserUpdated,
            "user.deleted" => Self::UserDeleted,
            "session.revoked" => Self::SessionRevoked,
            _ => Self::Other(s),
        }
    }
}

impl From<EventType> for String {
    fn from(t: EventType) -> Self {
        match t {
            EventType::Other(s) => s,
            known => known.as_str().to_owned(),
        }
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `data` of a `session.revoked` event; empty `session_ids` means every session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SessionRevoked {
    pub user_id: Uuid,
    pub session_ids: Vec<Uuid>,
}

/// `GET /internal/v1/webhooks/stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WebhookStats {
    pub pending: i64,
    pub failed: i64,
    pub delivered: i64,
    /// Age of the oldest undelivered event; null when none is pending.
    pub oldest_pending_seconds: Option<i64>,
    pub last_delivered_at: Option<DateTime<Utc>>,
}

/// `POST /internal/v1/webhooks/redeliver`: the given failed events, or all.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedeliverRequest {
    #[serde(default)]
    pub event_ids: Option<Vec<Uuid>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Requeued {
    pub requeued: usize,
}

/// The main backend's `GET /v1/me`: mirror fields plus business fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Profile {
    pub id: Uuid,
    pub email: String,
    pub email_verified: bool,
    pub full_name: Option<String>,
    pub picture: Option<String>,
    pub role: String,
    pub plan_tier: String,
    pub permissions: serde_json::Value,
    pub feature_flags: serde_json::Value,
    pub tool_permissions: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Result of a full reconciliation (`POST /admin/v1/sync`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SyncReport {
    pub created: i64,
    pub updated: i64,
    pub deleted: i64,
    pub unchanged: i64,
    pub duration_ms: i64,
    /// Users read row by row: those in id ranges whose digests differed.
    #[serde(default)]
    pub compared: i64,
}

/// `GET /health/sync` on the main backend: counts only, never ids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SyncHealth {
    /// `ok`, `degraded` or `failing`.
    pub status: String,
    pub auth_user_count: Option<i64>,
    pub local_user_count: i64,
    pub difference: Option<i64>,
    pub threshold: i64,
    pub auth_reachable: bool,
    pub last_webhook_at: Option<DateTime<Utc>>,
    pub last_reconcile_at: Option<DateTime<Utc>>,
    pub last_reconcile: Option<LastReconcile>,
    pub webhooks: WebhookBacklog,
    /// With `SYNC_TRANSPORT=stream|both`: the follower of the event feed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<StreamHealth>,
}

/// The follower of the auth service's event feed, as stored (so every
/// replica answers the same).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StreamHealth {
    /// Where the next read starts.
    pub cursor: Option<String>,
    /// The feed's last answer; older than a minute makes the status
    /// `degraded` (no replica is following).
    pub last_poll_at: Option<DateTime<Utc>>,
    /// How far behind the auth service's commits the mirror is: 0 when the
    /// last page was short (caught up), else the age of the newest event
    /// applied.
    pub lag_seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LastReconcile {
    /// `ok` or `failed`.
    pub status: String,
    pub trigger: String,
    pub started_at: DateTime<Utc>,
    pub created: i64,
    pub updated: i64,
    pub deleted: i64,
    pub unchanged: i64,
    pub duration_ms: Option<i64>,
    /// A stable code when the run failed: `auth_unavailable`,
    /// `database_unavailable`, `mass_delete_refused`, `sync_in_progress`
    /// (never database or network text).
    pub error: Option<String>,
}

/// The auth service's outbox as seen from the main backend (null when unreachable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WebhookBacklog {
    pub pending: Option<i64>,
    pub failed: Option<i64>,
}

/// RFC 9457 problem details with the contract's stable `code`.
/// A page of a long list: `next_cursor` goes into `?cursor=` for the next
/// page and is null on the last one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// A task on the main backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Task {
    pub id: Uuid,
    pub title: String,
    pub description: Option<String>,
    pub completed: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One of a user's secrets, as listed: never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SecretInfo {
    pub name: String,
    /// At most the last 4 characters, and only of values of 16 or more.
    pub hint: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// An agent session: a unit of work an agent did for the user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AgentSession {
    pub id: Uuid,
    pub title: String,
    pub status: String,
    pub metadata: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One call of a tool, for the user's own usage history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ToolUsage {
    pub id: Uuid,
    pub agent_session_id: Option<Uuid>,
    pub tool_name: String,
    pub success: bool,
    pub duration_ms: Option<i64>,
    pub metadata: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

/// A document of the user's corpus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CorpusItem {
    pub id: Uuid,
    pub title: String,
    pub content: String,
    pub content_type: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Every service token starts with this, so that people, secret scanners
/// and our services tell one from a JWT at a glance.
pub const SERVICE_TOKEN_PREFIX: &str = "ast_";

/// Body of `POST /admin/v1/service-tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateServiceToken {
    pub name: String,
    pub scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_days: Option<i64>,
    /// A JSON object of up to 4 KiB, handed to the checking service by
    /// introspection (`metadata`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
}

/// Answer to `POST /admin/v1/service-tokens`: the only time `token` is shown.
/// No `Debug`: it holds the token.
#[derive(Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreatedServiceToken {
    pub id: Uuid,
    pub name: String,
    pub scopes: Vec<String>,
    pub token: String,
    pub expires_at: Option<DateTime<Utc>>,
}

/// One row of `GET /admin/v1/service-tokens` (never the token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ServiceTokenInfo {
    pub id: Uuid,
    pub name: String,
    pub scopes: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub use_count: i64,
    pub revoked_at: Option<DateTime<Utc>>,
    /// The object given at creation; `{}` when none was.
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
}

/// Answer to `POST /admin/v1/service-tokens/revoke-all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RevokedCount {
    pub revoked: u64,
}

/// One row of `GET /admin/v1/audit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEvent {
    pub id: Uuid,
    pub kind: String,
    pub user_id: Option<Uuid>,
    pub service_token_id: Option<Uuid>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub endpoint: Option<String>,
    pub request_id: Option<String>,
    /// Cloudflare's id of the request (its `cf-ray` header), when it came
    /// through Cloudflare: follows one request from the edge to this row.
    pub cf_ray: Option<String>,
    pub success: bool,
    pub detail: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    pub code: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inactive_introspection_serializes_to_active_false_only() {
        let json = serde_json::to_string(&Introspection::inactive()).expect("serializes");
        assert_eq!(json, r#"{"active":false}"#);
    }

    #[test]
    fn problem_uses_type_as_field_name() {
        let p = Problem {
            kind: "about:blank".into(),
            title: "Not Found".into(),
            status: 404,
            detail: "x".into(),
            code: "not_found".into(),
        };
        let v = serde_json::to_value(&p).expect("serializes");
        assert_eq!(v["type"], "about:blank");
        assert!(v.get("kind").is_none());
    }
}

/// `POST /v1/mfa/totp/setup`: the secret is shown this once.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct TotpSetup {
    /// Base32, for typing into an authenticator app.
    pub secret: String,
    /// `otpauth://totp/...`, for a QR code.
    pub otpauth_uri: String,
}

/// `POST /v1/mfa/totp/enable`: single-use codes, shown this once.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct RecoveryCodes {
    pub recovery_codes: Vec<String>,
}
