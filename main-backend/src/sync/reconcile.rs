//! Full reconciliation with the auth service as the truth: page through
//! `/internal/v1/users` in id order, apply newer versions, create missing
//! rows, delete mirror rows whose user is gone. One replica at a time (the
//! `reconcile` lease); each run leaves a `sync_runs` row.
//!
//! Each page is compared with the mirror's rows in the same id range, in
//! one transaction per page, so memory and lock time stay bounded whatever
//! the number of users.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use shared_types::SyncReport;
use uuid::Uuid;

use crate::auth_client::{AuthClient, AuthUnavailable};
use crate::db::revocations::{self, Revocation};
use crate::db::sql_types::{DbTime, DbUuid};
use crate::db::sync_runs::{self, SyncRun};
use crate::db::{leases, mirror, DbPool};
use crate::validation::Validator;
use service_kit::transaction;

pub const LEASE: &str = "reconcile";
/// Longer than any run should take; a crashed holder blocks no longer.
const LEASE_TTL: chrono::Duration = chrono::Duration::minutes(10);
const PAGE: u32 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("another reconciliation is running")]
    Busy,
    #[error(transparent)]
    Auth(#[from] AuthUnavailable),
    #[error("database: {0}")]
    Db(String),
}

impl From<diesel::result::Error> for ReconcileError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Db(e.to_string())
    }
}

impl From<service_kit::db::PoolError> for ReconcileError {
    fn from(e: service_kit::db::PoolError) -> Self {
        Self::Db(e.to_string())
    }
}

pub struct Reconciler<'a> {
    pub db: &'a DbPool,
    pub auth: &'a AuthClient,
    pub validator: &'a Validator,
    pub metrics: &'a crate::metrics::MainMetrics,
    /// This process's lease holder id.
    pub instance: &'a str,
}

impl Reconciler<'_> {
    /// Runs one reconciliation now, unless another replica is running one.
    pub async fn run(&self, trigger: &str) -> Result<SyncReport, ReconcileError> {
        self.run_unless_recent(trigger, None).await
    }

    /// As `run`, but also skips (`Busy`) when any replica started one less
    /// than `min_gap` ago. Checked while holding the lease, and every run is
    /// recorded before its lease is released, so N replicas with the same
    /// timer reconcile once per interval between them, not N times.
    async fn run_unless_recent(
        &self,
        trigger: &str,
        min_gap: Option<Duration>,
    ) -> Result<SyncReport, ReconcileError> {
        {
            let mut pooled = self.db.get().await?;
            let conn = &mut pooled.conn();
            if !leases::acquire(conn, LEASE, self.instance, LEASE_TTL).await? {
                return Err(ReconcileError::Busy);
            }
            if let Some(gap) = min_gap {
                let recent = sync_runs::latest(conn).await.map(|last| {
                    last.is_some_and(|r| {
                        crate::db::now() - r.started_at.0
                            < chrono::Duration::from_std(gap).unwrap_or_default()
                    })
                });
                if !matches!(recent, Ok(false)) {
                    let _ = leases::release(conn, LEASE, self.instance).await;
                    return Err(recent.err().map_or(ReconcileError::Busy, Into::into));
                }
            }
        }
        let started_at = crate::db::now();
        let clock = Instant::now();
        let result = self.pages().await;
        let duration_ms = clock.elapsed().as_millis() as i64;
        self.metrics
            .reconciled(result.as_ref().ok(), clock.elapsed().as_secs_f64());
        let report = result.map(|r| SyncReport { duration_ms, ..r });
        let counts = report.as_ref().copied().unwrap_or_default();
        let row = SyncRun {
            id: DbUuid(Uuid::now_v7()),
            trigger: trigger.to_owned(),
            status: if report.is_ok() { "ok" } else { "failed" }.into(),
            started_at: DbTime(started_at),
            finished_at: Some(DbTime(crate::db::now())),
            created: counts.created,
            updated: counts.updated,
            deleted: counts.deleted,
            unchanged: counts.unchanged,
            duration_ms: Some(duration_ms),
            error: report.as_ref().err().map(ToString::to_string),
        };
        if let Ok(mut pooled) = self.db.get().await {
            let conn = &mut pooled.conn();
            if let Err(e) = sync_runs::insert(conn, &row).await {
                tracing::warn!(error = %e, "could not record the sync run");
            }
            let _ = leases::release(conn, LEASE, self.instance).await;
        }
        match &report {
            Ok(r) => tracing::info!(
                trigger,
                created = r.created,
                updated = r.updated,
                deleted = r.deleted,
                unchanged = r.unchanged,
                duration_ms,
                "reconciliation finished"
            ),
            Err(e) => tracing::warn!(trigger, error = %e, "reconciliation failed"),
        }
        report
    }

    async fn pages(&self) -> Result<SyncReport, ReconcileError> {
        let mut report = SyncReport::default();
        let mut after: Option<Uuid> = None;
        loop {
            let fetched_at = crate::db::now();
            let page = self.auth.users_page(after, PAGE).await?;
            let upto = match page.next_after {
                Some(_) => page.users.last().map(|u| u.id),
                None => None,
            };
            let present: HashSet<Uuid> = page.users.iter().map(|u| u.id).collect();
            let mut pooled = self.db.get().await?;
            let conn = &mut pooled.conn();
            let gone = transaction!(conn, |tx| -> ReconcileError {
                let gone: Vec<(Uuid, i64)> = mirror::stale_in_range(tx, after, upto, fetched_at)
                    .await?
                    .into_iter()
                    .filter(|(id, _)| !present.contains(id))
                    .collect();
                report.deleted += mirror::delete_users(tx, &gone).await?;
                let applied = mirror::apply_records(tx, &page.users).await?;
                report.created += applied.created;
                report.updated += applied.updated;
                report.unchanged += applied.unchanged;
                // Users deleted, or found locked by this run (their
                // webhook was lost): every replica drops their tokens.
                let changed: HashSet<Uuid> = applied.changed.into_iter().collect();
                let rows: Vec<Revocation> = gone
                    .iter()
                    .map(|(id, _)| *id)
                    .chain(
                        page.users
                            .iter()
                            .filter(|u| u.account_locked && changed.contains(&u.id))
                            .map(|u| u.id),
                    )
                    .map(|id| Revocation::new(id, None))
                    .collect();
                revocations::insert(tx, &rows).await?;
                Ok((rows, changed))
            })?;
            let (gone, changed) = gone;
            for id in changed {
                self.validator.forget_user(id);
            }
            for r in gone {
                self.validator.revoke(r.user_id.0, None, r.created_at.0);
            }
            match page.next_after {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        Ok(report)
    }
}

/// Reconciles every `interval` (with ±10 % jitter so replicas spread out),
/// starting shortly after start-up.
pub async fn periodic(
    db: DbPool,
    auth: AuthClient,
    validator: std::sync::Arc<Validator>,
    metrics: std::sync::Arc<crate::metrics::MainMetrics>,
    instance: String,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut wait = Duration::from_secs(2);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => break,
        }
        let reconciler = Reconciler {
            db: &db,
            auth: &auth,
            validator: &validator,
            metrics: &metrics,
            instance: &instance,
        };
        // Outcomes are logged and recorded by `run`; `Busy` means another
        // replica is doing it, or did it less than 0.8 interval ago (the
        // jitter below never brings this replica's own runs that close).
        let _ = reconciler
            .run_unless_recent("periodic", Some(interval.mul_f64(0.8)))
            .await;
        wait = interval.mul_f64(0.9 + rand::random::<f64>() * 0.2);
    }
}
