//! Service tokens: bearer credentials for programs, with scopes.
//!
//! A token is `ast_` followed by 256 random bits (base64url). The prefix lets
//! secret scanners and people recognise one, and lets us tell it from a JWT
//! without a database round trip. Only its SHA-256 is stored, so a copy of
//! the database holds no usable token.
//!
//! Every check reads the token's row (one indexed lookup), so a revocation,
//! including the emergency revoke-all, holds at once on every replica: no
//! process keeps a list of valid tokens.
//!
//! Usage (`use_count`, `last_used_at`, and one `service_token_used` audit
//! row per use) is buffered in memory and written every `FLUSH_INTERVAL` in
//! one transaction, so using a token costs no database write. The buffer is
//! flushed when the server stops gracefully; a kill -9 loses at most one
//! interval of usage statistics, never a revocation or a permission.
//!
//! Failed uses cost an attacker nothing (any `Bearer ast_...` will do), so
//! they are aggregated instead: one audit row per (token, address, reason)
//! and flush, carrying the count, with a short user agent; and an address
//! past `FAILURE_BUDGET` failures in a minute gets 429 before any lookup.
//! The budget is per process: it bounds this process's audit writes, which
//! is its whole job (the brute-force limits that need exactness live in the
//! database).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use diesel::QueryResult;
use rand::RngCore;
use secrecy::SecretString;
use uuid::Uuid;

use crate::db::events::{self, kind, AuthEvent};
use crate::db::service_tokens::{self as rows, ServiceTokenRow};
use crate::db::sql_types::{DbJson, DbTime, DbUuid};
use crate::db::{Conn, DbPool};
use crate::domain::TokenSpec;
use crate::extractors::ClientInfo;
use crate::tokens::hash_token;
use service_kit::transaction;

pub use shared_types::SERVICE_TOKEN_PREFIX as PREFIX;
/// `ast_` + 43 base64url characters (32 bytes).
const TOKEN_LEN: usize = 4 + 43;
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(2);
/// Audit rows held while the database is unreachable; beyond this, uses are
/// still counted but their individual rows are dropped (and a warning logged).
const MAX_BUFFERED_EVENTS: usize = 100_000;

/// Failed service-token uses one address may make per minute, per process.
pub const FAILURE_BUDGET: u32 = 20;
/// Distinct (token, address, reason) aggregates held between flushes;
/// beyond this, failures are only counted in a warning.
const MAX_FAILURE_KEYS: usize = 1000;
/// Addresses whose failure budget is tracked; the table is cleared each minute.
const MAX_BUDGET_KEYS: usize = 10_000;
/// How much of a failed caller's user agent an audit row keeps.
const FAILURE_USER_AGENT_CHARS: usize = 128;

/// Recorded as `created_by` for tokens made with the command line.
pub const CREATED_BY_CLI: &str = "command line";

pub fn created_by_token(id: Uuid) -> String {
    format!("service_token:{id}")
}

/// Whether a bearer looks like one of our service tokens (not whether it is valid).
pub fn looks_like(token: &str) -> bool {
    token.starts_with(PREFIX)
}

fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// A token just made: its row, and the token itself, which exists nowhere
/// else and is shown to its creator this once.
pub struct Created {
    pub row: ServiceTokenRow,
    pub token: SecretString,
}

/// Creates a token and records who did it (`admin_action`), in one transaction.
pub async fn create(
    conn: &mut Conn<'_>,
    spec: &TokenSpec,
    created_by: &str,
    audit: AuthEvent,
) -> QueryResult<Created> {
    let token = generate();
    let now = crate::db::now();
    let row = ServiceTokenRow {
        id: DbUuid(Uuid::now_v7()),
        name: spec.name.clone(),
        scopes: serde_json::to_string(&spec.scopes)
            .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?,
        token_hash: hash_token(&token),
        created_at: DbTime(now),
        expires_at: spec
            .expires_in_days
            .map(|d| DbTime(now + chrono::Duration::days(d))),
        last_used_at: None,
        use_count: 0,
        revoked_at: None,
        created_by: created_by.to_owned(),
        metadata: spec.metadata.clone().map(DbJson),
    };
    let audit = AuthEvent {
        detail: Some(format!(
            "created service token {} ({}) with scopes {}",
            row.id.0, row.name, row.scopes
        )),
        ..audit
    };
    transaction!(conn, |tx| -> diesel::result::Error {
        rows::insert(tx, &row).await?;
        events::record(tx, &audit).await?;
        Ok(())
    })?;
    Ok(Created {
        row,
        token: token.into(),
    })
}

/// What a presented token turned out to be.
pub enum Checked {
    Valid(ServiceTokenRow),
    /// Revoked or expired; the id is known, so the failed use is attributed.
    Inactive(Uuid),
    /// Not a token of ours.
    Unknown,
}

pub async fn check(conn: &mut Conn<'_>, token: &str, now: DateTime<Utc>) -> QueryResult<Checked> {
    if !looks_like(token) || token.len() != TOKEN_LEN {
        return Ok(Checked::Unknown);
    }
    Ok(match rows::find_by_hash(conn, &hash_token(token)).await? {
        Some(row) if row.is_active(now) => Checked::Valid(row),
        Some(row) => Checked::Inactive(row.id.0),
        None => Checked::Unknown,
    })
}

/// An audit row for something a service token (or the command line) did.
pub fn audit_event(
    kind: &str,
    token_id: Option<Uuid>,
    client: Option<&ClientInfo>,
    success: bool,
    detail: Option<String>,
) -> AuthEvent {
    AuthEvent {
        id: DbUuid(Uuid::now_v7()),
        kind: kind.to_owned(),
        user_id: None,
        service_token_id: token_id.map(DbUuid),
        ip: client.and_then(ClientInfo::ip_string),
        user_agent: client.and_then(|c| c.user_agent.clone()),
        endpoint: client.map(|c| c.endpoint.clone()),
        request_id: client.and_then(|c| c.request_id.clone()),
        cf_ray: client.and_then(|c| c.cf_ray.clone()),
        success,
        detail,
        created_at: DbTime(crate::db::now()),
    }
}

#[derive(Default)]
struct Pending {
    /// Accepted uses per token, and the latest.
    counts: HashMap<Uuid, (i64, DateTime<Utc>)>,
    events: Vec<AuthEvent>,
    dropped_events: u64,
    /// Failed uses, one aggregate per (token, address, reason).
    failures: HashMap<(Option<Uuid>, String, String), Failures>,
    dropped_failures: u64,
    /// Failures per address in the current minute (`FAILURE_BUDGET`).
    budget: HashMap<String, u32>,
    budget_minute: i64,
}

/// Failed uses with the same token, address and reason since the last flush.
struct Failures {
    count: u64,
    /// The first one's audit row; the count is added to its detail.
    first: AuthEvent,
}

/// The usage buffer; see the module documentation.
#[derive(Clone, Default)]
pub struct Usage(Arc<Mutex<Pending>>);

impl Usage {
    /// Notes a failed use from `client` (unknown, revoked or expired token,
    /// or a missing scope) and says whether the address is still within
    /// its budget (`false`: answer 429). Aggregated, see the module header.
    pub fn record_failure(
        &self,
        token_id: Option<Uuid>,
        client: &ClientInfo,
        detail: &str,
    ) -> bool {
        let address = client.limit_key();
        let minute = crate::db::now().timestamp() / 60;
        let mut pending = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if pending.budget_minute != minute || pending.budget.len() >= MAX_BUDGET_KEYS {
            pending.budget.clear();
            pending.budget_minute = minute;
        }
        let spent = pending.budget.entry(address.clone()).or_insert(0);
        *spent = spent.saturating_add(1);
        let within = *spent <= FAILURE_BUDGET;
        let key = (token_id, address, detail.to_owned());
        if let Some(agg) = pending.failures.get_mut(&key) {
            agg.count += 1;
        } else if pending.failures.len() < MAX_FAILURE_KEYS {
            let mut first = audit_event(
                kind::SERVICE_TOKEN_USED,
                token_id,
                Some(client),
                false,
                Some(detail.to_owned()),
            );
            first.user_agent = first
                .user_agent
                .map(|ua| ua.chars().take(FAILURE_USER_AGENT_CHARS).collect());
            pending.failures.insert(key, Failures { count: 1, first });
        } else {
            pending.dropped_failures += 1;
        }
        within
    }

    /// Whether `client`'s address has used up its failure budget this
    /// minute: then it is answered 429 before any lookup.
    pub fn exhausted(&self, client: &ClientInfo) -> bool {
        let address = client.limit_key();
        let minute = crate::db::now().timestamp() / 60;
        let pending = self.0.lock().unwrap_or_else(|e| e.into_inner());
        pending.budget_minute == minute
            && pending
                .budget
                .get(&address)
                .is_some_and(|n| *n >= FAILURE_BUDGET)
    }

    /// Notes one use: counted when `success`, and audited either way.
    pub fn record(
        &self,
        token_id: Option<Uuid>,
        client: &ClientInfo,
        success: bool,
        detail: Option<&str>,
    ) {
        let event = audit_event(
            kind::SERVICE_TOKEN_USED,
            token_id,
            Some(client),
            success,
            detail.map(str::to_owned),
        );
        let mut pending = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let (Some(id), true) = (token_id, success) {
            let entry = pending.counts.entry(id).or_insert((0, event.created_at.0));
            entry.0 += 1;
            entry.1 = entry.1.max(event.created_at.0);
        }
        if pending.events.len() < MAX_BUFFERED_EVENTS {
            pending.events.push(event);
        } else {
            pending.dropped_events += 1;
        }
    }

    /// Writes everything buffered in one transaction. On failure the batch
    /// goes back into the buffer for the next attempt.
    pub async fn flush(&self, db: &DbPool) -> anyhow::Result<()> {
        let mut batch = {
            let mut pending = self.0.lock().unwrap_or_else(|e| e.into_inner());
            Pending {
                counts: std::mem::take(&mut pending.counts),
                events: std::mem::take(&mut pending.events),
                dropped_events: std::mem::take(&mut pending.dropped_events),
                failures: std::mem::take(&mut pending.failures),
                dropped_failures: std::mem::take(&mut pending.dropped_failures),
                ..Pending::default()
            }
        };
        if batch.dropped_failures > 0 {
            tracing::warn!(
                dropped = batch.dropped_failures,
                "failed service-token uses from too many addresses to audit each; counted here only"
            );
        }
        for (_, agg) in batch.failures.drain() {
            let mut event = agg.first;
            if agg.count > 1 {
                event.detail = Some(format!(
                    "{} ({} attempts)",
                    event.detail.unwrap_or_default(),
                    agg.count
                ));
            }
            batch.events.push(event);
        }
        if batch.counts.is_empty() && batch.events.is_empty() {
            return Ok(());
        }
        if batch.dropped_events > 0 {
            tracing::warn!(
                dropped = batch.dropped_events,
                "service-token audit rows dropped while the database was unreachable"
            );
        }
        let written = async {
            let mut pooled = db.get().await?;
            let conn = &mut pooled.conn();
            transaction!(conn, |tx| -> diesel::result::Error {
                for (id, (uses, last)) in &batch.counts {
                    rows::add_usage(tx, *id, *uses, *last).await?;
                }
                events::record_many(tx, &batch.events).await?;
                Ok(())
            })?;
            anyhow::Ok(())
        }
        .await;
        if let Err(e) = written {
            let mut pending = self.0.lock().unwrap_or_else(|e| e.into_inner());
            for (id, (uses, last)) in batch.counts {
                let entry = pending.counts.entry(id).or_insert((0, last));
                entry.0 += uses;
                entry.1 = entry.1.max(last);
            }
            let mut events = batch.events;
            events.append(&mut pending.events);
            events.truncate(MAX_BUFFERED_EVENTS);
            pending.events = events;
            return Err(e);
        }
        Ok(())
    }

    /// Flushes every `FLUSH_INTERVAL` until `stop` turns true, then once more.
    pub async fn run(self, db: DbPool, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(FLUSH_INTERVAL) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            if let Err(e) = self.flush(&db).await {
                tracing::warn!(error = %e, "service-token usage not written yet; will retry");
            }
        }
        // Last chance at shutdown: try a few times before giving up.
        for attempt in 0..3 {
            match self.flush(&db).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, attempt, "final service-token usage flush failed");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_and_random() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        assert!(looks_like(&a));
        assert_eq!(a.len(), TOKEN_LEN);
        let raw = URL_SAFE_NO_PAD
            .decode(&a[PREFIX.len()..])
            .expect("base64url");
        assert_eq!(raw.len(), 32, "256 bits of randomness");
    }

    #[test]
    fn usage_counts_only_accepted_uses_and_audits_all() {
        let usage = Usage::default();
        let client = ClientInfo {
            ip: None,
            user_agent: None,
            request_id: None,
            cf_ray: None,
            endpoint: "GET /x".into(),
        };
        let id = Uuid::now_v7();
        usage.record(Some(id), &client, true, None);
        usage.record(Some(id), &client, true, None);
        usage.record(Some(id), &client, false, Some("missing scope"));
        for _ in 0..FAILURE_BUDGET {
            assert!(usage.record_failure(None, &client, "unknown token"));
        }
        assert!(!usage.record_failure(None, &client, "unknown token"));
        let pending = usage.0.lock().expect("lock");
        assert_eq!(pending.counts.get(&id).map(|c| c.0), Some(2));
        assert_eq!(pending.events.len(), 3);
        assert_eq!(pending.failures.len(), 1, "one aggregate for 21 failures");
        assert_eq!(pending.failures.values().next().map(|f| f.count), Some(21));
    }
}
