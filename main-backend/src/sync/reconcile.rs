//! Full reconciliation with the auth service as the truth: apply newer
//! versions, create missing rows, delete mirror rows whose user is gone.
//! One replica at a time (the `reconcile` lease); each run leaves a
//! `sync_runs` row.
//!
//! Its cost follows the drift, not the user count. The mirror is cut into
//! ranges of `RANGE` of its users, and each range's digest (count, and a
//! sum over ids and versions: service-kit `db::digest`) is compared with
//! the auth service's for the same range (`POST /internal/v1/users/digests`).
//! Only ranges that differ are read row by row, by pages of
//! `/internal/v1/users` in id order; each page is compared with the
//! mirror's rows in the same id range, in one transaction per page, so
//! memory and lock time stay bounded whatever the number of users.
//!
//! Removals are the one destructive step (the cascade takes the user's
//! tasks, secrets and corpus), and an empty or partial answer from a
//! misconfigured auth service (a wrong URL, a fresh database after a lost
//! volume) looks exactly like "everyone was deleted". So a run only
//! collects what it would remove while it applies the rest, and removes it
//! at the end when it is no more than `SYNC_MAX_DELETES` (default: the
//! larger of 10 and 1 % of the mirror). Over that it removes nothing, is
//! recorded as failed with `mass_delete_refused`, and `/health/sync` says
//! `failing` until an operator confirms with `allow_mass_delete` or the
//! answer changes. The auth service's own user count is checked first,
//! so an obviously empty answer is refused before a single page is read.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use shared_types::{IdRange, RangeDigest, SyncReport, UserRecord};
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
/// The mirror is compared with the auth service in ranges of this many of
/// its users: a differing range costs this many users read row by row.
const RANGE: i64 = 256;
/// Ranges per digest request (the auth service takes up to 256).
const DIGEST_BATCH: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("another reconciliation is running")]
    Busy,
    #[error(transparent)]
    Auth(#[from] AuthUnavailable),
    #[error("database: {0}")]
    Db(String),
    #[error("would remove {would_remove} mirror rows, more than the limit of {limit}")]
    MassDeleteRefused { would_remove: i64, limit: i64 },
}

impl ReconcileError {
    /// The stable code recorded in `sync_runs` and shown by `/health/sync`;
    /// the detail (database or network text) goes to the log only.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Busy => "sync_in_progress",
            Self::Auth(_) => "auth_unavailable",
            Self::Db(_) => "database_unavailable",
            Self::MassDeleteRefused { .. } => "mass_delete_refused",
        }
    }
}

/// The codes `ReconcileError::code` gives: only these leave the service.
pub const ERROR_CODES: [&str; 4] = [
    "sync_in_progress",
    "auth_unavailable",
    "database_unavailable",
    "mass_delete_refused",
];

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

/// Mirror rows (id, version) one page proved gone, with when it was fetched.
type Doomed = (chrono::DateTime<chrono::Utc>, Vec<(Uuid, i64)>);

/// A page of the auth service's users: the range it was asked for (from
/// its start) and when.
struct Fetched {
    fetched_at: chrono::DateTime<chrono::Utc>,
    range: IdRange,
    users: shared_types::UserPage,
}

/// What one page changed in the mirror.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    created: i64,
    updated: i64,
    unchanged: i64,
    rewound: i64,
}

/// What applying a page proved gone, the revocations of users it found
/// locked, the users it changed, and its counts.
type Applied = (Vec<(Uuid, i64)>, Vec<Revocation>, HashSet<Uuid>, Counts);

pub struct Reconciler<'a> {
    pub db: &'a DbPool,
    pub auth: &'a AuthClient,
    pub validator: &'a Validator,
    pub metrics: &'a crate::metrics::MainMetrics,
    /// This process's lease holder id.
    pub instance: &'a str,
    /// `SYNC_MAX_DELETES`; `None`: the larger of 10 and 1 % of the mirror.
    pub max_deletes: Option<i64>,
    /// An operator confirmed that a removal over the limit is real.
    pub allow_mass_delete: bool,
}

impl Reconciler<'_> {
    /// Runs one reconciliation now, unless another replica is running one.
    pub async fn run(&self, trigger: &str) -> Result<SyncReport, ReconcileError> {
        self.run_unless_recent(trigger, None).await
    }

    /// The most rows this run may remove from a mirror of `mirror_rows`.
    fn delete_limit(&self, mirror_rows: i64) -> i64 {
        if self.allow_mass_delete {
            return i64::MAX;
        }
        self.max_deletes.unwrap_or((mirror_rows / 100).max(10))
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
            error: report.as_ref().err().map(|e| e.code().to_owned()),
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
            Err(e @ ReconcileError::MassDeleteRefused { .. }) => tracing::error!(
                trigger,
                error = %e,
                "reconciliation refused to remove users: check AUTH_SERVICE_URL and the auth \
                 database; if the removal is real, run POST /admin/v1/sync?allow_mass_delete=true"
            ),
            Err(e) => tracing::warn!(trigger, code = e.code(), error = %e, "reconciliation failed"),
        }
        report
    }

    /// The mirror's and the auth service's digests of `batch`, computed at
    /// the same time.
    async fn digests_of(
        &self,
        batch: &[IdRange],
    ) -> Result<(Vec<RangeDigest>, Vec<RangeDigest>), ReconcileError> {
        let ours = async {
            let mut pooled = self.db.get().await?;
            Ok::<_, ReconcileError>(mirror::digests(&mut pooled.conn(), batch).await?)
        };
        let theirs = async { Ok(self.auth.digests(batch).await?) };
        tokio::try_join!(ours, theirs)
    }

    /// The ranges whose digests differ between the auth service and the
    /// mirror, and how many users the matching ranges hold. The ranges are
    /// cut from the mirror's own ids, `RANGE` users each, and cover the
    /// whole id space, so users the mirror lacks fall in one of them; each
    /// side computes its digests from its id index alone.
    async fn differing_ranges(&self) -> Result<(Vec<IdRange>, i64), ReconcileError> {
        let ranges = {
            let mut pooled = self.db.get().await?;
            mirror::digest_ranges(&mut pooled.conn(), RANGE).await?
        };
        // Two batches in flight, each digested by both sides at once: both
        // databases work all the time, instead of the mirror digesting
        // everything before the auth service starts.
        let mut compared = Vec::with_capacity(ranges.len().div_ceil(DIGEST_BATCH));
        for pair in ranges.chunks(2 * DIGEST_BATCH) {
            let (one, two) = pair.split_at(pair.len().min(DIGEST_BATCH));
            if two.is_empty() {
                compared.push((one, self.digests_of(one).await?));
            } else {
                let (a, b) = tokio::try_join!(self.digests_of(one), self.digests_of(two))?;
                compared.extend([(one, a), (two, b)]);
            }
        }
        let (mut differing, mut same) = (Vec::new(), 0);
        for (batch, (ours, theirs)) in compared {
            for ((range, ours), theirs) in batch.iter().zip(ours).zip(theirs) {
                if theirs == ours {
                    same += ours.count;
                    continue;
                }
                // Neighbours are read as one range: fewer, fuller pages.
                match differing.last_mut() {
                    Some(IdRange { upto, .. }) if *upto == range.after => *upto = range.upto,
                    _ => differing.push(*range),
                }
            }
        }
        Ok((differing, same))
    }

    async fn pages(&self) -> Result<SyncReport, ReconcileError> {
        let mirror_rows = {
            let mut pooled = self.db.get().await?;
            mirror::count(&mut pooled.conn()).await?
        };
        let limit = self.delete_limit(mirror_rows);
        // An answer that says (nearly) nobody exists is refused before any
        // page is read: cheap, and it names the likely cause in the log.
        let auth_count = self.auth.user_count().await?;
        if mirror_rows - auth_count > limit {
            return Err(ReconcileError::MassDeleteRefused {
                would_remove: mirror_rows - auth_count,
                limit,
            });
        }
        let mut report = SyncReport::default();
        // What the pages prove gone, with the instant each page was fetched:
        // removed together at the end, and only if within the limit.
        let mut doomed: Vec<Doomed> = Vec::new();
        let mut doomed_count: i64 = 0;
        let mut rewound_total: i64 = 0;
        // Only the ranges whose digests differ are read row by row. The
        // next page is fetched while this one is applied: the auth service
        // and the mirror's database work at the same time.
        let compared_at = Instant::now();
        let (differing, same) = self.differing_ranges().await?;
        tracing::info!(
            unchanged = same,
            differing = differing.len(),
            elapsed_ms = compared_at.elapsed().as_millis() as u64,
            "reconciliation: digests compared"
        );
        report.unchanged += same;
        let mut ranges = differing.into_iter();
        let mut pending = match ranges.next() {
            Some(range) => Some(self.fetch(range).await?),
            None => None,
        };
        while let Some(page) = pending.take() {
            let next = match page.users.next_after {
                Some(next) => Some(IdRange {
                    after: Some(next),
                    upto: page.range.upto,
                }),
                None => ranges.next(),
            };
            let (applied, fetched) = tokio::join!(self.apply(&page), async {
                match next {
                    Some(range) => Some(self.fetch(range).await),
                    None => None,
                }
            });
            let (gone, locked, changed, counts) = applied?;
            pending = fetched.transpose()?;
            report.created += counts.created;
            report.updated += counts.updated;
            report.unchanged += counts.unchanged;
            report.compared += page.users.users.len() as i64;
            rewound_total += counts.rewound;
            for id in changed {
                self.validator.forget_user(id);
            }
            for r in locked {
                self.validator.revoke(r.user_id.0, None, r.created_at.0);
            }
            doomed_count += gone.len() as i64;
            // Past the limit the run is refused anyway: keep no more ids.
            if doomed_count <= limit && !gone.is_empty() {
                doomed.push((page.fetched_at, gone));
            }
        }
        if rewound_total > 0 {
            tracing::error!(
                users = rewound_total,
                "the auth service's user versions went backwards (was its database restored?); \
                 the mirror followed it: check recent account changes"
            );
            self.metrics.rewound(rewound_total);
        }
        if doomed_count > limit {
            return Err(ReconcileError::MassDeleteRefused {
                would_remove: doomed_count,
                limit,
            });
        }
        report.deleted = self.remove(doomed).await?;
        Ok(report)
    }

    /// One page of the auth service's users in `range`, from its start.
    async fn fetch(&self, range: IdRange) -> Result<Fetched, ReconcileError> {
        let fetched_at = crate::db::now();
        let users = self.auth.users_page(range, PAGE).await?;
        Ok(Fetched {
            fetched_at,
            range,
            users,
        })
    }

    /// Applies one page to the mirror in one transaction. Answers the
    /// mirror rows in the page's id span that the page proves gone, the
    /// revocations of users found locked, the users that changed, and the
    /// counts.
    async fn apply(&self, page: &Fetched) -> Result<Applied, ReconcileError> {
        let users = &page.users.users;
        // The span this page covers: up to its last user when more follow.
        let upto = match page.users.next_after {
            Some(_) => users.last().map(|u| u.id),
            None => page.range.upto,
        };
        let present: HashSet<Uuid> = users.iter().map(|u| u.id).collect();
        let mut pooled = self.db.get().await?;
        let conn = &mut pooled.conn();
        transaction!(conn, |tx| -> ReconcileError {
            let gone: Vec<(Uuid, i64)> =
                mirror::stale_in_range(tx, page.range.after, upto, page.fetched_at)
                    .await?
                    .into_iter()
                    .filter(|(id, _)| !present.contains(id))
                    .collect();
            let applied = mirror::apply_records(tx, users).await?;
            // A restored auth database: versions went backwards. Only
            // records behind the mirror are looked at (none, normally).
            let behind: HashSet<Uuid> = applied.behind.iter().copied().collect();
            let behind: Vec<UserRecord> = users
                .iter()
                .filter(|u| behind.contains(&u.id))
                .cloned()
                .collect();
            let rewound = mirror::rewind_records(tx, &behind, page.fetched_at).await?;
            let counts = Counts {
                created: applied.created,
                updated: applied.updated + rewound.len() as i64,
                unchanged: applied.unchanged - rewound.len() as i64,
                rewound: rewound.len() as i64,
            };
            // Users found locked by this run (their webhook was lost):
            // every replica drops their tokens.
            let changed: HashSet<Uuid> = applied.changed.into_iter().chain(rewound).collect();
            let locked: Vec<Revocation> = users
                .iter()
                .filter(|u| u.account_locked && changed.contains(&u.id))
                .map(|u| Revocation::new(u.id, None))
                .collect();
            revocations::insert(tx, &locked).await?;
            Ok((gone, locked, changed, counts))
        })
    }

    /// Removes what the pages proved gone, in one transaction, skipping a
    /// row written since its page was fetched (a webhook for it arrived).
    async fn remove(&self, doomed: Vec<Doomed>) -> Result<i64, ReconcileError> {
        if doomed.is_empty() {
            return Ok(0);
        }
        let mut pooled = self.db.get().await?;
        let conn = &mut pooled.conn();
        let (deleted, rows) = transaction!(conn, |tx| -> ReconcileError {
            let mut deleted = 0;
            let mut rows = Vec::new();
            for (fetched_at, users) in &doomed {
                let still = mirror::still_stale(tx, users, *fetched_at).await?;
                deleted += mirror::delete_users(tx, &still).await?;
                rows.extend(still.iter().map(|(id, _)| Revocation::new(*id, None)));
            }
            revocations::insert(tx, &rows).await?;
            Ok((deleted, rows))
        })?;
        for r in rows {
            self.validator.revoke(r.user_id.0, None, r.created_at.0);
        }
        Ok(deleted)
    }
}

/// Reconciles every `interval` (with ±10 % jitter so replicas spread out),
/// starting shortly after start-up.
#[allow(clippy::too_many_arguments)]
pub async fn periodic(
    db: DbPool,
    auth: AuthClient,
    validator: std::sync::Arc<Validator>,
    metrics: std::sync::Arc<crate::metrics::MainMetrics>,
    instance: String,
    interval: Duration,
    max_deletes: Option<i64>,
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
            max_deletes,
            allow_mass_delete: false,
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
