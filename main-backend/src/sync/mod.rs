//! Keeping the mirror right: webhook events (`apply_event`), lazy sync of
//! one user (`fetch_user`), periodic reconciliation (`reconcile`) and the
//! cross-replica revocation feed (`revocation_poller`).
//!
//! All of them write `userbase` through `db::mirror`, the only writer of
//! auth-owned fields, and all of them apply a record only when its
//! `version` is newer than the mirror's.

pub mod reconcile;
pub mod stream;

use std::time::Duration;

use shared_types::{EventType, SessionRevoked, UserRecord, WebhookEvent};
use uuid::Uuid;

use crate::auth_client::{AuthClient, AuthUnavailable};
use crate::db::revocations::{self, Revocation};
use crate::db::{mirror, webhooks, DbPool};
use crate::validation::Validator;
use service_kit::invalid::{Invalid, StoreError};
use service_kit::transaction;

/// Why an event or a user could not be applied (`crate::problems` answers
/// each for HTTP).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The event's `data` does not fit its type.
    #[error(transparent)]
    Malformed(#[from] Invalid),
    #[error(transparent)]
    Auth(#[from] AuthUnavailable),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<diesel::result::Error> for SyncError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Store(e.into())
    }
}

impl From<service_kit::db::PoolError> for SyncError {
    fn from(e: service_kit::db::PoolError) -> Self {
        Self::Store(e.into())
    }
}

/// Applies one verified webhook delivery. Idempotent: the id is recorded in
/// the same transaction as the change, and a second delivery of it is a no-op.
pub async fn apply_event(
    db: &DbPool,
    validator: &Validator,
    webhook_id: &str,
    event: &WebhookEvent,
) -> Result<(), SyncError> {
    let mut revoked: Vec<(Uuid, Option<Uuid>)> = Vec::new();
    let mut rows: Vec<Revocation> = Vec::new();
    let mut touched: Option<Uuid> = None;
    let mut pooled = db.get().await?;
    let conn = &mut pooled.conn();
    transaction!(conn, |tx| -> SyncError {
        if !webhooks::mark_processed(tx, webhook_id, event.kind.as_str()).await? {
            tracing::debug!(webhook_id, "webhook already applied; ignored");
            return Ok(());
        }
        match &event.kind {
            EventType::UserCreated | EventType::UserUpdated => {
                let record = parse::<UserRecord>(event)?;
                mirror::apply_records(tx, std::slice::from_ref(&record)).await?;
                touched = Some(record.id);
                if record.account_locked {
                    revoked.push((record.id, None));
                }
            }
            EventType::UserDeleted => {
                let record = parse::<UserRecord>(event)?;
                mirror::delete_users(tx, &[(record.id, record.version)]).await?;
                revoked.push((record.id, None));
            }
            EventType::SessionRevoked => {
                let data = parse::<SessionRevoked>(event)?;
                if data.session_ids.is_empty() {
                    revoked.push((data.user_id, None));
                } else {
                    revoked.extend(data.session_ids.iter().map(|s| (data.user_id, Some(*s))));
                }
            }
            EventType::Other(other) => {
                // Newer auth services may send more; recorded and skipped.
                tracing::info!(event_type = %other, "unknown webhook event type ignored");
            }
        }
        rows = revoked
            .iter()
            .map(|&(user, session)| Revocation::new(user, session))
            .collect();
        revocations::insert(tx, &rows).await?;
        Ok(())
    })?;
    // After commit, so a request in between cannot re-cache the old row.
    if let Some(id) = touched {
        validator.forget_user(id);
    }
    for r in rows {
        validator.revoke(r.user_id.0, r.session_id.map(|s| s.0), r.created_at.0);
    }
    Ok(())
}

fn parse<T: serde::de::DeserializeOwned>(event: &WebhookEvent) -> Result<T, Invalid> {
    serde_json::from_value(event.data.clone())
        .map_err(|e| Invalid::failed(format!("`data` of a {} event: {e}", event.kind)))
}

/// Lazy sync: a valid token whose user the mirror lacks fetches that user.
/// `Ok(false)` when the auth service has no such user.
pub async fn fetch_user(db: &DbPool, auth: &AuthClient, id: Uuid) -> Result<bool, SyncError> {
    let record = auth.user(id).await?;
    let Some(record) = record else {
        return Ok(false);
    };
    let mut pooled = db.get().await?;
    let conn = &mut pooled.conn();
    transaction!(conn, |tx| -> SyncError {
        mirror::apply_records(tx, std::slice::from_ref(&record)).await?;
        Ok(())
    })?;
    tracing::info!(user_id = %id, "user fetched into the mirror on first use");
    Ok(true)
}

/// Every `poll`, reads revocations written by any replica and evicts them
/// here. Reads overlap by a margin, so a row committed late is still seen.
pub async fn revocation_poller(
    db: DbPool,
    validator: std::sync::Arc<Validator>,
    metrics: std::sync::Arc<crate::metrics::MainMetrics>,
    poll: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    const OVERLAP: chrono::Duration = chrono::Duration::seconds(10);
    let mut since = crate::db::now() - OVERLAP;
    let mut last_prune = std::time::Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = stop.changed() => break,
        }
        let Ok(mut pooled) = db.get().await else {
            metrics.revocation_poll(false);
            continue;
        };
        let conn = &mut pooled.conn();
        let started = crate::db::now();
        match revocations::since(conn, since).await {
            Ok(rows) => {
                // Idempotent: the same row seen again changes nothing.
                for r in rows {
                    validator.revoke(r.user_id.0, r.session_id.map(|s| s.0), r.created_at.0);
                }
                since = started - OVERLAP;
                metrics.revocation_poll(true);
            }
            Err(e) => {
                metrics.revocation_poll(false);
                tracing::warn!(error = %e, "reading revocations failed");
            }
        }
        if last_prune.elapsed() > Duration::from_secs(600) {
            last_prune = std::time::Instant::now();
            let _ = revocations::prune(conn, started - chrono::Duration::hours(1)).await;
            let _ = webhooks::prune(conn, started - chrono::Duration::days(7)).await;
        }
    }
}
