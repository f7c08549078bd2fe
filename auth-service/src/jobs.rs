//! Running the job queue (`db::jobs`): one loop for every kind of job.
//!
//! A kind of job is a type implementing [`Job`]: which rows it takes, how
//! many at once, how long a claim holds them, how to run one, and how long
//! to retry. [`Runner`] does the rest, the same way for all: claim a batch
//! with a lease, run it concurrently, record each outcome (done; retried
//! after an exponentially growing delay with jitter, `retry_delay`; or given
//! up and `failed` once the retry budget is spent or the failure cannot
//! change), sleep until the next job is due or a [`Wakeup`] comes, and
//! prune what finished long ago. Several replicas may each run one: a job
//! is leased before it runs, so it runs once, or again if a runner dies
//! between running it and recording that (at least once).
//!
//! Today's kinds: webhook deliveries (`crate::webhooks`) and mail
//! (`crate::mail`).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::{watch, Notify};

use crate::db::jobs::{self, Claimed, JobKind, Status};
use crate::db::{Conn, DbPool};

/// No retry waits longer than this.
const MAX_DELAY: Duration = Duration::from_secs(3600);
/// How often finished jobs (and each kind's own leftovers) are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(600);
/// Finished jobs are kept this long, then pruned.
const KEEP_FINISHED_DAYS: i64 = 7;

/// Why a job did not succeed, and whether trying again can help.
pub struct Failure {
    pub message: String,
    /// A failure that will not change (an unknown mailbox, a payload that
    /// does not open): the job is given up at once.
    pub permanent: bool,
}

impl Failure {
    pub fn retry(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            permanent: false,
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            permanent: true,
        }
    }
}

/// One kind of background job.
pub trait Job: Send + Sync + 'static {
    const KIND: JobKind;
    /// Jobs claimed per round, all run at once.
    const BATCH: i64;
    /// How long a claim holds a job: a run (bounded by its own timeout)
    /// plus recording the outcome, with room to spare. It is also how long
    /// a job claimed by a process that then crashed waits to run again.
    const LEASE: Duration;
    /// Longest idle sleep between looks at the queue (which also picks up
    /// jobs written by replicas whose runner is down).
    const POLL: Duration;
    /// Which finished jobs are pruned after `KEEP_FINISHED_DAYS`.
    const PRUNED: &'static [Status];

    /// The first retry delay, and how long (in nominal delays) to keep
    /// retrying before giving up.
    fn backoff(&self) -> (Duration, Duration);

    /// Runs one claimed job.
    fn run(&self, job: &Claimed) -> impl Future<Output = Result<(), Failure>> + Send;

    /// What else this kind prunes, every `PRUNE_EVERY`; returns a count
    /// for the log.
    fn prune_more(
        &self,
        _conn: &mut Conn<'_>,
    ) -> impl Future<Output = diesel::QueryResult<usize>> + Send {
        async { Ok(0) }
    }
}

/// Wakes a local runner; cheap, call after committing a job for it.
#[derive(Clone, Default)]
pub struct Wakeup {
    wake: Arc<Notify>,
    /// Others to wake with this one: everything that follows the outbox
    /// (the webhook runner, the event feed's sequencer).
    also: Vec<Wakeup>,
}

impl Wakeup {
    /// One that wakes each of `others` too.
    pub fn all(others: Vec<Wakeup>) -> Self {
        Self {
            wake: Arc::default(),
            also: others,
        }
    }

    pub fn wake(&self) {
        // A stored permit makes the next wait return at once, so a wake-up
        // sent while the runner is busy is not lost.
        self.wake.notify_one();
        for other in &self.also {
            other.wake();
        }
    }

    pub async fn notified(&self) {
        self.wake.notified().await;
    }
}

/// How long a runner may sleep: until `next` is due, at most `poll`.
fn until_due(next: Option<chrono::DateTime<Utc>>, poll: Duration) -> Duration {
    next.map_or(poll, |at| {
        (at - Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO)
            .min(poll)
    })
}

/// Delay before the next attempt after `attempts` failed ones, or `None` to
/// give up. The budget counts nominal delays (without jitter) so the total
/// retry span is predictable: base, 2·base, 4·base, … capped at an hour,
/// until their sum reaches `give_up_after`.
pub fn retry_delay(attempts: i32, base: Duration, give_up_after: Duration) -> Option<Duration> {
    let nominal = |i: i32| {
        let factor = 2u32.saturating_pow(u32::try_from(i).unwrap_or(0).min(31));
        base.saturating_mul(factor).min(MAX_DELAY)
    };
    let spent: Duration = (0..attempts - 1).map(nominal).sum();
    if spent >= give_up_after {
        return None;
    }
    // "Equal jitter": half fixed, half random, so retries of jobs that
    // failed together spread out but none comes back too early.
    let delay = nominal(attempts - 1);
    let jitter = rand::random::<f64>() * 0.5 + 0.5;
    Some(delay.mul_f64(jitter))
}

/// Runs jobs of one kind until shut down.
pub struct Runner<J> {
    db: DbPool,
    job: J,
    wakeup: Wakeup,
}

impl<J: Job> Runner<J> {
    pub fn new(db: DbPool, job: J, wakeup: Wakeup) -> Self {
        Self { db, job, wakeup }
    }

    /// Runs until `shutdown` turns true; a round in progress finishes first.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let kind = J::KIND.as_str();
        let mut last_prune = None::<Instant>;
        loop {
            if *shutdown.borrow() {
                break;
            }
            if last_prune.is_none_or(|t| t.elapsed() > PRUNE_EVERY) {
                last_prune = Some(Instant::now());
                self.prune().await;
            }
            let wait = match self.round().await {
                // A full batch: more may be due right away.
                Ok(n) if n as i64 == J::BATCH => continue,
                Ok(_) => self.idle_wait().await,
                Err(e) => {
                    tracing::warn!(kind, error = %e, "job round failed; retrying");
                    J::POLL
                }
            };
            tokio::select! {
                _ = self.wakeup.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
        }
        tracing::debug!(kind, "job runner stopped");
    }

    /// Until the next pending job is due, at most `POLL`.
    async fn idle_wait(&self) -> Duration {
        let next = match self.db.get().await {
            Ok(mut c) => jobs::next_due(&mut c.conn(), J::KIND).await.ok().flatten(),
            Err(_) => None,
        };
        until_due(next, J::POLL)
    }

    /// Claims due jobs and runs them; returns how many were claimed.
    async fn round(&self) -> anyhow::Result<usize> {
        let lease = chrono::Duration::from_std(J::LEASE).unwrap_or_default();
        let claimed = {
            let mut pooled = self.db.get().await?;
            jobs::claim(&mut pooled.conn(), J::KIND, J::BATCH, lease).await?
        };
        // Recording an outcome may be retried until a quarter of the lease
        // is left; after that the job is another claimer's to run.
        let lease_ends = Instant::now() + J::LEASE * 3 / 4;
        let n = claimed.len();
        futures::future::join_all(claimed.iter().map(|job| self.attempt(job, lease_ends))).await;
        Ok(n)
    }

    async fn attempt(&self, job: &Claimed, lease_ends: Instant) {
        let (kind, id) = (J::KIND.as_str(), job.id.0);
        let outcome = self.job.run(job).await.map_err(|failure| {
            let (base, give_up_after) = self.job.backoff();
            let retry = (!failure.permanent)
                .then(|| retry_delay(job.attempts, base, give_up_after))
                .flatten();
            match retry {
                Some(d) => tracing::info!(kind, job_id = %id, attempts = job.attempts, error = %failure.message, retry_in_ms = d.as_millis() as u64, "job failed; will retry"),
                None => tracing::warn!(kind, job_id = %id, attempts = job.attempts, error = %failure.message, "job failed for good; marked failed"),
            }
            let at = retry.map(|d| Utc::now() + chrono::Duration::from_std(d).unwrap_or_default());
            (failure.message, at)
        });
        // The database may be away for a moment (a restart, a failover):
        // keep the outcome rather than run the job again after the lease.
        let mut pause = Duration::from_millis(250);
        loop {
            let recorded = match self.db.get().await {
                Err(e) => Err(anyhow::Error::from(e)),
                Ok(mut pooled) => {
                    let outcome = outcome.as_ref().map_err(|(m, at)| (m.as_str(), *at));
                    jobs::record(&mut pooled.conn(), J::KIND, id, outcome.copied())
                        .await
                        .map_err(anyhow::Error::from)
                }
            };
            match recorded {
                Ok(()) => return,
                Err(e) if Instant::now() + pause < lease_ends => {
                    tracing::info!(kind, job_id = %id, error = %e, "could not record a job's outcome; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(4));
                }
                Err(e) => {
                    // The lease runs out and the job runs again: at least once.
                    tracing::warn!(kind, job_id = %id, error = %e, "could not record a job's outcome");
                    return;
                }
            }
        }
    }

    async fn prune(&self) {
        let kind = J::KIND.as_str();
        let Ok(mut pooled) = self.db.get().await else {
            return;
        };
        let conn = &mut pooled.conn();
        let before = Utc::now() - chrono::Duration::days(KEEP_FINISHED_DAYS);
        let finished = jobs::prune(conn, J::KIND, J::PRUNED, before).await;
        let more = self.job.prune_more(conn).await;
        match (finished, more) {
            (Ok(0), Ok(0)) => {}
            (Ok(jobs), Ok(more)) => tracing::info!(kind, jobs, more, "old finished jobs pruned"),
            (j, m) => tracing::warn!(kind, jobs = ?j.err(), more = ?m.err(), "pruning failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_for_about_a_day_then_gives_up() {
        let base = Duration::from_secs(1);
        let day = Duration::from_secs(24 * 3600);
        let attempts = (1..)
            .find(|&n| retry_delay(n, base, day).is_none())
            .expect("gives up eventually");
        // 1+2+…+2048 s is about 68 min; then hourly until a day is spent.
        assert!((30..=40).contains(&attempts), "gave up after {attempts}");
        let waited: Duration = (1..attempts)
            .map(|n| retry_delay(n, base, day).expect("still retrying"))
            .sum();
        // Jitter takes off at most half of each delay.
        assert!(waited >= day / 2 && waited <= day + MAX_DELAY, "{waited:?}");
    }

    #[test]
    fn delays_grow_and_are_jittered_within_bounds() {
        let base = Duration::from_millis(100);
        let long = Duration::from_secs(1_000_000);
        for n in 1..=10 {
            let nominal = base * 2u32.pow(n as u32 - 1);
            let d = retry_delay(n, base, long).expect("retrying");
            assert!(d >= nominal / 2 && d <= nominal, "attempt {n}: {d:?}");
        }
        let capped = retry_delay(40, base, Duration::MAX).expect("retrying");
        assert!(capped <= MAX_DELAY);
    }
}
