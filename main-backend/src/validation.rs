//! Token validation: every bearer token is confirmed by the auth service's
//! introspection, and the answer is reused for at most
//! `min(VALIDATION_CACHE_TTL_SECONDS, exp - now)`.
//!
//! - Concurrent misses for one token make one call (moka's `try_get_with`).
//! - Failures are never cached: when the auth service is unreachable, cached
//!   answers still serve and everything else is refused (fail closed).
//! - Revocations (`session.revoked`, deleted or locked users) evict at once.
//!   They arrive by webhook at one replica and reach the others through the
//!   `revocations` table (`sync::revocation_poller`); each replica also keeps
//!   recent revocations in memory and refuses any cached answer fetched
//!   before them (plus `SKEW`), which closes the race where an
//!   introspection started before a logout lands in the cache after the
//!   eviction. Times are the revocation row's `created_at`, so hearing of one
//!   revocation twice (webhook, then poll) changes nothing.
//! - Cache keys are SHA-256 digests of tokens, never the tokens.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::FutureExt;

use actix_web::web::Bytes;
use moka::future::Cache;
use moka::Expiry;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::auth_client::{AuthClient, AuthUnavailable};
use crate::db::mirror::MirrorUser;
use crate::metrics::MainMetrics;
use shared_types::Introspection;

/// Clock difference tolerated between replicas when comparing a
/// revocation's time with the time an answer was fetched.
const SKEW: chrono::Duration = chrono::Duration::milliseconds(250);
/// Negative answers (bad, expired, revoked tokens) are reused this long at most.
const NEGATIVE_TTL: Duration = Duration::from_secs(10);
const MAX_ENTRIES: u64 = 200_000;
/// Both caches' keys are SHA-256 digests or user ids the auth service
/// issued: no caller chooses them, so they need no flooding-resistant
/// hasher. SipHash hashed each key twice a request (callgrind: about 450 of
/// the 3,300 instructions a cached `/v1/me` adds to `/health/live`, SHA-256
/// aside).
type Hasher = foldhash::fast::RandomState;
/// How long a mirror row is reused for requests (see `Validator::profiles`).
const PROFILE_TTL: Duration = Duration::from_secs(1);

/// A caller's mirror row as requests reuse it (see `Validator::profiles`),
/// with the `GET /v1/me` body rendered from it on first use. The body lives
/// and dies with the row it was rendered from, so whatever forgets the row
/// (`forget_user`, the TTL) forgets the body too: it can never be staler
/// than the row. Derefs to the row.
pub struct CachedUser {
    row: MirrorUser,
    body: OnceLock<Bytes>,
}

impl CachedUser {
    pub fn new(row: MirrorUser) -> Self {
        Self {
            row,
            body: OnceLock::new(),
        }
    }

    /// The rendered body, rendering it now if no request has yet. Two
    /// requests racing here may both render; one result is kept, and both
    /// are the same bytes.
    pub fn body<E>(
        &self,
        render: impl FnOnce(&MirrorUser) -> Result<Vec<u8>, E>,
    ) -> Result<Bytes, E> {
        if let Some(body) = self.body.get() {
            return Ok(body.clone());
        }
        let body = Bytes::from(render(&self.row)?);
        Ok(self.body.get_or_init(|| body).clone())
    }
}

impl Deref for CachedUser {
    type Target = MirrorUser;

    fn deref(&self) -> &MirrorUser {
        &self.row
    }
}

/// A confirmed answer about one token.
#[derive(Debug, Clone)]
pub struct Checked {
    pub principal: Option<Principal>,
    /// When the introspection call started: revocations after it win.
    fetched_at: DateTime<Utc>,
    ttl: Duration,
}

/// Who a live access token belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub exp: i64,
}

struct PerEntryTtl;

impl Expiry<[u8; 32], Arc<Checked>> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        value: &Arc<Checked>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// The cache key of a token: its SHA-256 digest, never the token.
fn key(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A cached answer as it stands now (`Validator::judge`).
enum Judged {
    Live(Principal),
    Refused,
    /// A revocation came after the answer was fetched: refuse and evict.
    RevokedSince,
}

/// What the cache alone says about a token (`Validator::cached`).
pub enum Cached {
    /// Live, with the caller's mirror row.
    Live(Principal, Arc<CachedUser>),
    /// Known not to be live: invalid, expired or revoked.
    Refused,
}

/// A live service token, as the auth service described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePrincipal {
    pub token_id: Uuid,
    pub name: Option<String>,
    pub scopes: Vec<String>,
}

impl ServicePrincipal {
    pub fn has_any(&self, scopes: &[&str]) -> bool {
        self.scopes.iter().any(|s| scopes.contains(&s.as_str()))
    }
}

/// A revocation this replica has heard of: a session, or every session.
#[derive(Debug, Clone, Copy)]
struct Revoked {
    session_id: Option<Uuid>,
    at: DateTime<Utc>,
}

pub struct Validator {
    auth: AuthClient,
    ttl: Duration,
    cache: Cache<[u8; 32], Arc<Checked>, Hasher>,
    /// Mirror rows of recent callers, for at most `PROFILE_TTL`: a request
    /// with a cached token then needs no database round trip. Local writes
    /// and every sync path call `forget_user`; another replica's write is
    /// seen within `PROFILE_TTL`. Locks and revocations never depend on it:
    /// they go through the token cache above.
    profiles: moka::sync::Cache<Uuid, Arc<CachedUser>, Hasher>,
    /// Recent revocations by user, kept for one TTL (no cached answer is older).
    recent: RwLock<HashMap<Uuid, Vec<Revoked>>>,
    metrics: Arc<MainMetrics>,
}

impl Validator {
    pub fn new(auth: AuthClient, ttl: Duration, metrics: Arc<MainMetrics>) -> Self {
        let evictions = metrics.clone();
        let cache = Cache::builder()
            .max_capacity(MAX_ENTRIES)
            .expire_after(PerEntryTtl)
            .support_invalidation_closures()
            .eviction_listener(move |_, _, cause| evictions.eviction(cause))
            .build_with_hasher(Hasher::default());
        let profiles = moka::sync::Cache::builder()
            .max_capacity(MAX_ENTRIES)
            .time_to_live(PROFILE_TTL)
            .build_with_hasher(Hasher::default());
        Self {
            auth,
            ttl,
            cache,
            profiles,
            recent: RwLock::new(HashMap::new()),
            metrics,
        }
    }

    /// Counts one call to the auth service's introspection by its result.
    fn counted(
        &self,
        answer: Result<Introspection, AuthUnavailable>,
    ) -> Result<Introspection, AuthUnavailable> {
        self.metrics.introspection(match &answer {
            Ok(a) if a.active => "active",
            Ok(_) => "inactive",
            Err(_) => "error",
        });
        answer
    }

    /// The answer for a token whose validation and mirror row are both
    /// cached, without waiting: the path of nearly every authenticated
    /// request, so it borrows the token, boxes nothing and awaits nothing.
    /// `None` when anything needs more than a lookup (a miss, a row not
    /// cached, a revocation to act on): the caller then takes `validate`,
    /// which decides everything again.
    pub fn cached(&self, token: &str) -> Option<Cached> {
        // moka's read is async only because a full read log may make it run
        // housekeeping; a read that would wait is left to `validate`.
        let checked = self.cache.get(&key(token)).now_or_never()??;
        let answer = match self.judge(&checked) {
            // `validate` evicts the entry as well as refusing it.
            Judged::RevokedSince => return None,
            Judged::Live(p) => Cached::Live(p, self.profiles.get(&p.user_id)?),
            Judged::Refused => Cached::Refused,
        };
        self.metrics.cache(true);
        Some(answer)
    }

    /// `Ok(None)`: the token is not live. `Err`: nobody could say (503).
    pub async fn validate(&self, token: &str) -> Result<Option<Principal>, AuthUnavailable> {
        let key = key(token);
        // A plain lookup first: most requests hit, and it costs less than
        // preparing an insertion.
        let checked = match self.cache.get(&key).await {
            Some(checked) => {
                self.metrics.cache(true);
                checked
            }
            None => {
                // Concurrent misses share one call; only the caller that
                // makes it counts as a miss.
                let missed = std::sync::atomic::AtomicBool::new(false);
                let checked = self
                    .cache
                    .try_get_with(key, async {
                        missed.store(true, std::sync::atomic::Ordering::Relaxed);
                        self.introspect(token).await
                    })
                    .await
                    .map_err(|e| AuthUnavailable(e.0.clone()))?;
                self.metrics
                    .cache(!missed.load(std::sync::atomic::Ordering::Relaxed));
                checked
            }
        };
        match self.judge(&checked) {
            Judged::RevokedSince => {
                self.cache.invalidate(&key).await;
                Ok(None)
            }
            Judged::Live(p) => Ok(Some(p)),
            Judged::Refused => Ok(None),
        }
    }

    /// What a cached answer says now, the same on both paths: a revocation
    /// heard of after it was fetched, or the token's expiry since, refuse it.
    fn judge(&self, checked: &Checked) -> Judged {
        match checked.principal {
            Some(p) if self.revoked_since(&p, checked.fetched_at) => Judged::RevokedSince,
            Some(p) if p.exp > Utc::now().timestamp() => Judged::Live(p),
            _ => Judged::Refused,
        }
    }

    /// Confirms a service token, uncached: service tokens are revoked
    /// without a webhook (including all at once), so every admin or ops
    /// call asks the auth service. They are rare; a cache would keep a
    /// revoked token working for its lifetime.
    pub async fn validate_service(
        &self,
        token: &str,
    ) -> Result<Option<ServicePrincipal>, AuthUnavailable> {
        let answer = self.counted(self.auth.introspect(token).await)?;
        let live = answer.active
            && answer.token_type.as_deref() == Some("service")
            && answer.exp.is_none_or(|exp| exp > Utc::now().timestamp());
        Ok(match (live, answer.sub) {
            (true, Some(token_id)) => Some(ServicePrincipal {
                token_id,
                name: answer.client_id,
                scopes: answer
                    .scope
                    .unwrap_or_default()
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect(),
            }),
            _ => None,
        })
    }

    async fn introspect(&self, token: &str) -> Result<Arc<Checked>, AuthUnavailable> {
        let fetched_at = Utc::now();
        let answer = self.counted(self.auth.introspect(token).await)?;
        let now = Utc::now().timestamp();
        let principal = match (answer.active, answer.token_type.as_deref()) {
            (true, Some("access")) => match (answer.sub, answer.sid, answer.exp) {
                (Some(user_id), Some(session_id), Some(exp)) if exp > now => Some(Principal {
                    user_id,
                    session_id,
                    exp,
                }),
                _ => None,
            },
            // Service tokens are not user credentials here.
            _ => None,
        };
        let ttl = match &principal {
            Some(p) => self
                .ttl
                .min(Duration::from_secs(u64::try_from(p.exp - now).unwrap_or(0))),
            None => self.ttl.min(NEGATIVE_TTL),
        };
        Ok(Arc::new(Checked {
            principal,
            fetched_at,
            ttl,
        }))
    }

    fn revoked_since(&self, p: &Principal, fetched_at: DateTime<Utc>) -> bool {
        let recent = self.recent.read().unwrap_or_else(|e| e.into_inner());
        recent.get(&p.user_id).is_some_and(|list| {
            list.iter().any(|r| {
                fetched_at <= r.at + SKEW && r.session_id.is_none_or(|sid| sid == p.session_id)
            })
        })
    }

    /// Forgets cached answers for a user's session, or all their sessions
    /// (`session_id = None`), and refuses any answer fetched before `at`
    /// (the time the revocation was recorded).
    pub fn revoke(&self, user_id: Uuid, session_id: Option<Uuid>, at: DateTime<Utc>) {
        self.forget_user(user_id);
        {
            let mut recent = self.recent.write().unwrap_or_else(|e| e.into_inner());
            let horizon = Utc::now()
                - chrono::Duration::from_std(self.ttl).unwrap_or_default()
                - chrono::Duration::seconds(5);
            recent.retain(|_, list| {
                list.retain(|r| r.at > horizon);
                !list.is_empty()
            });
            let list = recent.entry(user_id).or_default();
            if list
                .iter()
                .any(|r| r.session_id == session_id && r.at == at)
            {
                return; // heard of already (webhook, then poll)
            }
            list.push(Revoked { session_id, at });
        }
        // Closures run lazily inside moka; the `recent` check above already
        // refuses matching entries in the meantime.
        let _ = self.cache.invalidate_entries_if(move |_, checked| {
            checked.principal.is_some_and(|p| {
                p.user_id == user_id && session_id.is_none_or(|sid| sid == p.session_id)
            })
        });
    }

    pub fn cached_profile(&self, id: Uuid) -> Option<Arc<CachedUser>> {
        self.profiles.get(&id)
    }

    pub fn remember_profile(&self, user: Arc<CachedUser>) {
        self.profiles.insert(user.id.0, user);
    }

    /// Drops a cached mirror row after it changed (here or by sync).
    pub fn forget_user(&self, id: Uuid) {
        self.profiles.invalidate(&id);
    }
}
