//! The database layer shared by both services: one pool type, one connection
//! type and one way to write each query for both PostgreSQL and SQLite.
//!
//! How a query is written once: every query function takes `&mut Conn<'_>`
//! and uses [`run!`] to expand its body once per backend, so the same diesel
//! expression is type-checked and compiled for PostgreSQL and for SQLite.
//! Connections through a transaction-mode pooler differ only in how they
//! are set up (see `pooler_connection`): their statements are sent unnamed,
//! in one round trip, so no statement is split across server connections.
//!
//! Pools are plain: no role switching, no per-request settings, no JWT claims
//! on connections. Authentication happens at the HTTP edge only.

pub mod digest;
mod postgres;
pub mod sql_types;

pub use postgres::{establish as establish_pg, url_with_database, PgConnector, SslMode};

pub use sql_types::{DbJson, DbTime, DbUuid, SqlJson, SqlTimestamp, SqlUuid};

use std::time::Duration;

pub use crate::config::Pooler;
use diesel::connection::SimpleConnection;
use diesel::sqlite::SqliteConnection;
use diesel::Connection as _;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection, TransactionManager};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness};

/// SQLite through diesel's sync connection, run on tokio's blocking pool.
pub type SqliteConn = SyncConnectionWrapper<SqliteConnection, FinishBeforeDrop>;

/// Runs SQLite work on tokio's blocking pool, like diesel-async's own
/// spawner, but safe on actix's single-threaded workers.
///
/// The work goes to the blocking pool of the runtime that runs the query,
/// not of the one that opened the connection: pooled connections move
/// between actix's worker runtimes and the main one, and a worker's runtime
/// ends at shutdown while the main one still writes (its handle is kept
/// only for a query started outside any runtime).
///
/// A request future can be dropped mid-query (the client went away, or a
/// sibling extractor failed). The query must then still finish before the
/// connection is reused, so the drop waits for it. diesel-async waits with
/// `block_in_place`, which panics on a current-thread runtime and took the
/// worker down; this waits by parking the thread instead. The wait is one
/// SQLite statement, and happens only on cancellation.
pub struct FinishBeforeDrop(tokio::runtime::Handle);

impl diesel_async::sync_connection_wrapper::SpawnBlocking for FinishBeforeDrop {
    fn spawn_blocking<'a, R>(
        &mut self,
        task: impl FnOnce() -> R + Send + 'static,
    ) -> futures::future::BoxFuture<'a, Result<R, Box<dyn std::error::Error + Send + Sync + 'static>>>
    where
        R: Send + 'static,
    {
        use futures::TryFutureExt;
        let runtime = tokio::runtime::Handle::try_current().unwrap_or_else(|_| self.0.clone());
        Box::pin(JoinOnDrop(runtime.spawn_blocking(task)).map_err(Box::from))
    }

    fn get_runtime() -> Self {
        Self(tokio::runtime::Handle::current())
    }
}

struct JoinOnDrop<R>(tokio::task::JoinHandle<R>);

impl<R> std::future::Future for JoinOnDrop<R> {
    type Output = Result<R, tokio::task::JoinError>;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

impl<R> Drop for JoinOnDrop<R> {
    fn drop(&mut self) {
        if !self.0.is_finished() {
            let _ = futures::executor::block_on(&mut self.0);
        }
    }
}

/// Pragmas for every SQLite connection. `busy_timeout` comes first: it makes
/// every later statement (switching to WAL included) wait for a lock held by
/// another connection or process instead of failing with "database is
/// locked". WAL lets readers run beside the one writer; write transactions
/// use `BEGIN IMMEDIATE` (see `Conn::begin`), which takes the write lock up
/// front so two transactions can't deadlock upgrading.
const SQLITE_PRAGMAS: &str = "PRAGMA busy_timeout = 15000; PRAGMA journal_mode = WAL; \
     PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;";

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    pub fn of_url(url: &str) -> Option<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Self::Postgres)
        } else if url.starts_with("sqlite:") {
            Some(Self::Sqlite)
        } else {
            None
        }
    }
}

/// `sqlite://data/auth.db` and `sqlite:data/auth.db` both name `data/auth.db`.
pub fn sqlite_path(url: &str) -> &str {
    url.trim_start_matches("sqlite:").trim_start_matches("//")
}

#[derive(Clone)]
pub enum DbPool {
    Postgres(Pool<AsyncPgConnection>),
    Sqlite(Pool<SqliteConn>),
}

/// A connection checked out of the pool; `conn()` gives the query handle.
// Lives on one request's stack and is never stored in bulk, so the size gap
// between variants costs nothing worth a heap allocation per checkout.
#[allow(clippy::large_enum_variant)]
pub enum PooledConn {
    Postgres(Object<AsyncPgConnection>),
    Sqlite(Object<SqliteConn>),
}

/// A borrowed connection of either backend: what every query takes.
pub enum Conn<'a> {
    Pg(&'a mut AsyncPgConnection),
    Sqlite(&'a mut SqliteConn),
}

/// Failure to get a connection: the database is down or the pool exhausted.
#[derive(Debug, thiserror::Error)]
#[error("database unavailable: {0}")]
pub struct PoolError(String);

impl From<diesel_async::pooled_connection::deadpool::PoolError> for PoolError {
    fn from(e: diesel_async::pooled_connection::deadpool::PoolError) -> Self {
        PoolError(e.to_string())
    }
}

/// How long a caller waits for a free connection, for a new one to open,
/// or for an idle one to answer its check, before the request fails (503).
const POOL_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a connection is reused when nothing says otherwise.
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// A pool that opens connections lazily, inside the caller's own future:
/// nothing is spawned, so whichever runtime asks (an actix worker, or the
/// main runtime at shutdown) a connection is either opened or not counted.
/// A checkout reuses a connection without a query to it first
/// (`RecyclingMethod::Fast`): the default `SELECT 1` on every checkout
/// doubled the round trips of a one-query request (the profile of the
/// tasks list showed it). What it guarded against is still caught: a
/// PostgreSQL connection whose server closed it, or whose runtime ended,
/// reports itself closed (`is_broken` asks tokio-postgres, whose driver
/// task ends with the socket) and is replaced; one that fails a query
/// mid-transaction is marked broken by diesel; a SQLite file does not go
/// away.
/// A connection older than `max_lifetime` is closed at its next checkout
/// instead of being reused (managed servers and poolers drop old ones).
fn build_pool<C>(
    manager: AsyncDieselConnectionManager<C>,
    max_size: u32,
    max_lifetime: Duration,
) -> anyhow::Result<Pool<C>>
where
    AsyncDieselConnectionManager<C>: deadpool::managed::Manager,
{
    Pool::builder(manager)
        .max_size(max_size as usize)
        .pre_recycle(deadpool::managed::Hook::sync_fn(move |_, metrics| {
            if metrics.age() > max_lifetime {
                Err(deadpool::managed::HookError::message(
                    "past its maximum lifetime",
                ))
            } else {
                Ok(())
            }
        }))
        .wait_timeout(Some(POOL_TIMEOUT))
        .create_timeout(Some(POOL_TIMEOUT))
        .recycle_timeout(Some(POOL_TIMEOUT))
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .map_err(|e| anyhow::anyhow!("database pool: {e}"))
}

impl DbPool {
    /// Builds the pool lazily: the server starts even if the database is
    /// briefly unreachable, and `/health/ready` says so.
    pub async fn connect(url: &str, max_size: u32) -> anyhow::Result<Self> {
        Self::connect_with(url, max_size, Pooler::None, DEFAULT_MAX_LIFETIME).await
    }

    /// The pool a service's database settings describe; by default 16
    /// connections on PostgreSQL and 8 on SQLite (one writer at a time).
    pub async fn for_settings(s: &crate::config::DatabaseSettings) -> anyhow::Result<Self> {
        let default = match Backend::of_url(&s.url) {
            Some(Backend::Sqlite) => 8,
            _ => 16,
        };
        Self::connect_with(
            &s.url,
            s.pool_size.unwrap_or(default),
            s.pooler,
            s.max_lifetime,
        )
        .await
    }

    /// Like [`DbPool::connect`], for a database behind `pooler`, closing
    /// connections older than `max_lifetime`.
    pub async fn connect_with(
        url: &str,
        max_size: u32,
        pooler: Pooler,
        max_lifetime: Duration,
    ) -> anyhow::Result<Self> {
        match Backend::of_url(url) {
            Some(Backend::Postgres) => {
                // Read once: a bad sslmode or root file stops the start.
                let connector = PgConnector::from_url(url)?;
                let mut config = ManagerConfig::<AsyncPgConnection>::default();
                match pooler {
                    Pooler::None => {
                        config.recycling_method = RecyclingMethod::Fast;
                        config.custom_setup = Box::new(move |_| {
                            let connector = connector.clone();
                            Box::pin(async move { connector.establish().await })
                        });
                    }
                    Pooler::Transaction => {
                        config.custom_setup =
                            Box::new(move |_| Box::pin(pooler_connection(connector.clone())));
                        config.recycling_method = RecyclingMethod::Fast;
                    }
                }
                let manager = AsyncDieselConnectionManager::new_with_config(url, config);
                Ok(Self::Postgres(build_pool(manager, max_size, max_lifetime)?))
            }
            Some(Backend::Sqlite) => {
                let path = sqlite_path(url).to_owned();
                ensure_parent_dir(&path)?;
                let mut config = ManagerConfig::<SqliteConn>::default();
                config.recycling_method = RecyclingMethod::Fast;
                config.custom_setup = Box::new(|url| {
                    Box::pin(async move {
                        let mut conn = SqliteConn::establish(url).await?;
                        conn.batch_execute(SQLITE_PRAGMAS)
                            .await
                            .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
                        conn.spawn_blocking(digest::register_sqlite)
                            .await
                            .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
                        Ok(conn)
                    })
                });
                let manager = AsyncDieselConnectionManager::new_with_config(path, config);
                Ok(Self::Sqlite(build_pool(manager, max_size, max_lifetime)?))
            }
            None => anyhow::bail!("unsupported database URL (use postgres://... or sqlite://PATH)"),
        }
    }

    pub async fn get(&self) -> Result<PooledConn, PoolError> {
        Ok(match self {
            Self::Postgres(p) => PooledConn::Postgres(p.get().await?),
            Self::Sqlite(p) => PooledConn::Sqlite(p.get().await?),
        })
    }
}

/// How many connections a pool holds and uses, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUsage {
    pub max: u32,
    pub open: u32,
    pub idle: u32,
}

impl DbPool {
    pub fn usage(&self) -> PoolUsage {
        let status = match self {
            Self::Postgres(p) => p.status(),
            Self::Sqlite(p) => p.status(),
        };
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        PoolUsage {
            max: count(status.max_size),
            open: count(status.size),
            idle: count(status.available),
        }
    }
}

impl PooledConn {
    pub fn conn(&mut self) -> Conn<'_> {
        match self {
            Self::Postgres(c) => Conn::Pg(c),
            Self::Sqlite(c) => Conn::Sqlite(c),
        }
    }
}

/// A connection for a transaction-mode pooler (PgBouncer, Supavisor).
///
/// diesel-async prepares every statement as a named one and binds it in a
/// second round trip; between the two the pooler may hand the client to
/// another server connection, which lacks the statement. With the
/// statement cache off, our patched diesel-async (`vendor/diesel-async`)
/// sends each statement unnamed, parse to execute in one round trip, which
/// the pooler keeps on one server connection. Its own setup statements run
/// before the cache is turned off, so they run inside BEGIN/COMMIT.
async fn pooler_connection(connector: PgConnector) -> diesel::ConnectionResult<AsyncPgConnection> {
    use diesel::ConnectionError;
    let (client, connection) = connector.connect_raw().await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "pooler connection closed");
        }
    });
    client
        .batch_execute("BEGIN")
        .await
        .map_err(|e| ConnectionError::BadConnection(e.to_string()))?;
    let mut conn = AsyncPgConnection::try_from(client).await?;
    conn.batch_execute("COMMIT")
        .await
        .map_err(ConnectionError::CouldntSetupConfiguration)?;
    conn.set_prepared_statement_cache_size(diesel::connection::CacheSize::Disabled);
    Ok(conn)
}

async fn pg_begin(c: &mut AsyncPgConnection) -> diesel::QueryResult<()> {
    <AsyncPgConnection as AsyncConnection>::TransactionManager::begin_transaction(c).await
}

/// Commits on `Ok`, rolls back on `Err` (see [`Conn::finish`]).
async fn pg_finish<T, E: From<diesel::result::Error>>(
    c: &mut AsyncPgConnection,
    result: Result<T, E>,
) -> Result<T, E> {
    type Tm = <AsyncPgConnection as AsyncConnection>::TransactionManager;
    match result {
        Ok(value) => {
            Tm::commit_transaction(c).await?;
            Ok(value)
        }
        Err(e) => {
            warn_failed_rollback(Tm::rollback_transaction(c).await);
            Err(e)
        }
    }
}

fn warn_failed_rollback(result: diesel::QueryResult<()>) {
    if let Err(rb) = result {
        tracing::warn!(error = %rb, "rollback failed; connection will be discarded");
    }
}

/// Expands `$body` once per backend with `$c` bound to the concrete
/// connection, so the query inside is compiled for both.
#[macro_export]
macro_rules! run {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::db::Conn::Pg($c) => {
                let $c: &mut ::diesel_async::AsyncPgConnection = &mut **$c;
                $body
            }
            $crate::db::Conn::Sqlite($c) => {
                let $c: &mut $crate::db::SqliteConn = &mut **$c;
                $body
            }
        }
    };
}

/// Runs `$body` (an expression returning `Result<T, $err>`) in a transaction:
/// committed on `Ok`, rolled back on `Err`. `$tx` is a `&mut Conn` for the
/// queries inside. On SQLite the transaction takes the write lock at once.
#[macro_export]
macro_rules! transaction {
    ($conn:expr, |$tx:ident| -> $err:ty $body:block) => {{
        let __conn: &mut $crate::db::Conn<'_> = $conn;
        match __conn.begin().await {
            Err(e) => Err(<$err>::from(e)),
            Ok(()) => {
                let __result: Result<_, $err> = async {
                    let $tx: &mut $crate::db::Conn<'_> = &mut *__conn;
                    $body
                }
                .await;
                __conn.finish(__result).await
            }
        }
    }};
}

impl Conn<'_> {
    pub async fn begin(&mut self) -> diesel::QueryResult<()> {
        match self {
            Conn::Pg(c) => pg_begin(c).await,
            Conn::Sqlite(c) => {
                c.spawn_blocking(|inner| {
                    diesel::connection::AnsiTransactionManager::begin_transaction_sql(
                        inner,
                        "BEGIN IMMEDIATE",
                    )
                })
                .await
            }
        }
    }

    /// Commits on `Ok`, rolls back on `Err`. A failed rollback leaves the
    /// connection marked broken, and the pool discards it.
    pub async fn finish<T, E: From<diesel::result::Error>>(
        &mut self,
        result: Result<T, E>,
    ) -> Result<T, E> {
        match self {
            Conn::Pg(c) => pg_finish(c, result).await,
            Conn::Sqlite(c) => {
                type Tm = <SqliteConn as AsyncConnection>::TransactionManager;
                let rolled_back = match result {
                    Ok(value) => {
                        Tm::commit_transaction(&mut **c).await?;
                        return Ok(value);
                    }
                    Err(e) => (Tm::rollback_transaction(&mut **c).await, e),
                };
                warn_failed_rollback(rolled_back.0);
                Err(rolled_back.1)
            }
        }
    }

    /// Serialises transactions on `key` until this one ends, across every
    /// process on the database: counters that must be exact under a burst
    /// (the brute-force limits) read and write under it. PostgreSQL: a
    /// transaction-scoped advisory lock (works behind a transaction-mode
    /// pooler). SQLite: write transactions already run one at a time
    /// (`BEGIN IMMEDIATE`), so nothing more is needed. Call it first in the
    /// transaction, before anything is read.
    pub async fn lock_key(&mut self, key: &str) -> diesel::QueryResult<()> {
        use diesel_async::RunQueryDsl;
        match self {
            Conn::Pg(c) => {
                diesel::sql_query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
                    .bind::<diesel::sql_types::Text, _>(key)
                    .execute(*c)
                    .await
                    .map(|_| ())
            }
            Conn::Sqlite(_) => Ok(()),
        }
    }

    /// A round trip to the database, for readiness checks.
    pub async fn ping(&mut self) -> diesel::QueryResult<()> {
        use diesel_async::RunQueryDsl;
        run!(self, |c| diesel::sql_query("SELECT 1")
            .execute(c)
            .await
            .map(|_| ()))
    }
}

/// The current time at the precision both backends store (microseconds), so
/// a value returned to a client equals the value read back later.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    use chrono::SubsecRound;
    chrono::Utc::now().trunc_subsecs(6)
}

fn ensure_parent_dir(path: &str) -> anyhow::Result<()> {
    if let Some(parent) = std::path::Path::new(path).parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent)?;
        }
    }
    Ok(())
}

/// Arbitrary but fixed key for the migration advisory lock (ASCII "authmigr").
/// Advisory locks are per database, so both services can share it.
const MIGRATION_LOCK_KEY: i64 = 0x6175_7468_6d69_6772;

/// Applies pending migrations for the URL's backend and returns how many ran.
///
/// Runs on the blocking pool with a synchronous connection: diesel's migration
/// harness is synchronous. On PostgreSQL it holds a session advisory lock so
/// replicas starting together apply each migration once; this needs a direct
/// connection, not a transaction-mode pooler.
pub async fn run_migrations(
    url: &str,
    postgres: EmbeddedMigrations,
    sqlite: EmbeddedMigrations,
) -> anyhow::Result<usize> {
    migrate(url, postgres, sqlite, None).await
}

/// Applies only the first `n` pending migrations: the upgrade tests' way to
/// stand a database at an older schema, write old rows, then move on.
pub async fn run_first_migrations(
    url: &str,
    postgres: EmbeddedMigrations,
    sqlite: EmbeddedMigrations,
    n: usize,
) -> anyhow::Result<usize> {
    migrate(url, postgres, sqlite, Some(n)).await
}

fn apply<DB: diesel::backend::Backend>(
    conn: &mut impl MigrationHarness<DB>,
    source: EmbeddedMigrations,
    limit: Option<usize>,
) -> anyhow::Result<usize> {
    let applied = match limit {
        None => conn.run_pending_migrations(source).map(|v| v.len()),
        Some(n) => conn.pending_migrations(source).and_then(|pending| {
            for m in pending.iter().take(n) {
                conn.run_migration(&**m)?;
            }
            Ok(pending.len().min(n))
        }),
    };
    applied.map_err(|e| anyhow::anyhow!("migration failed: {e}"))
}

async fn migrate(
    url: &str,
    postgres: EmbeddedMigrations,
    sqlite: EmbeddedMigrations,
    limit: Option<usize>,
) -> anyhow::Result<usize> {
    let url = url.to_owned();
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || -> anyhow::Result<usize> {
        match Backend::of_url(&url) {
            Some(Backend::Postgres) => {
                use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
                let connector = PgConnector::from_url(&url)?;
                let _guard = handle.enter();
                let mut conn: AsyncConnectionWrapper<AsyncPgConnection> =
                    handle.block_on(connector.establish())?.into();
                SimpleConnection::batch_execute(
                    &mut conn,
                    &format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"),
                )?;
                let applied = apply(&mut conn, postgres, limit);
                SimpleConnection::batch_execute(
                    &mut conn,
                    &format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"),
                )?;
                applied
            }
            Some(Backend::Sqlite) => {
                let path = sqlite_path(&url);
                ensure_parent_dir(path)?;
                let mut conn = SqliteConnection::establish(path)?;
                conn.batch_execute(SQLITE_PRAGMAS)?;
                apply(&mut conn, sqlite, limit)
            }
            None => anyhow::bail!("unsupported database URL (use postgres://... or sqlite://PATH)"),
        }
    })
    .await?
}

#[cfg(test)]
mod tests {
    use super::*;

    /// actix runs each HTTP worker on its own runtime, and those runtimes
    /// end before the main one writes what was buffered at shutdown. The
    /// pool must come through that: bb8 opened connections in tasks
    /// spawned on the caller's runtime, so a worker that stopped while one
    /// was being opened left the pool counting a connection that never
    /// came, and the shutdown flush waited for it until it timed out
    /// (usage counts were lost). SQLite connections also ran their queries
    /// on the blocking pool of the runtime that opened them.
    #[test]
    fn the_pool_outlives_the_runtimes_that_used_it() {
        let dir = std::env::temp_dir().join(format!("kit-db-{}", uuid::Uuid::new_v4()));
        let url = format!("sqlite://{}/t.db", dir.display());
        let runtime = || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
        };
        let main = runtime();
        let pool = main.block_on(DbPool::connect(&url, 1)).expect("pool");
        // A worker opens the only connection and uses it...
        let worker_pool = pool.clone();
        std::thread::spawn(move || {
            runtime().block_on(async {
                let mut pooled = worker_pool.get().await.expect("conn");
                run!(&mut pooled.conn(), |c| {
                    diesel_async::SimpleAsyncConnection::batch_execute(
                        c,
                        "CREATE TABLE t (x INTEGER)",
                    )
                    .await
                })
                .expect("create");
            });
        })
        .join()
        .expect("worker thread");
        // ...another asks for one and stops while it is being opened.
        let worker_pool = pool.clone();
        std::thread::spawn(move || {
            runtime().block_on(async {
                let mut getting = std::pin::pin!(async {
                    let first = worker_pool.get().await;
                    let second = worker_pool.get().await;
                    (first.is_ok(), second.is_ok())
                });
                let _ = futures::poll!(getting.as_mut());
                let _ = futures::poll!(getting.as_mut());
            });
        })
        .join()
        .expect("worker thread");
        main.block_on(async {
            let mut pooled = pool
                .get()
                .await
                .expect("a connection after the workers ended");
            let conn = &mut pooled.conn();
            transaction!(conn, |tx| -> diesel::result::Error {
                run!(tx, |c| {
                    diesel_async::SimpleAsyncConnection::batch_execute(
                        c,
                        "INSERT INTO t VALUES (1)",
                    )
                    .await
                })
            })
            .expect("written after the workers' runtimes ended");
        });
        let _ = std::fs::remove_dir_all(dir);
    }

    /// `vendor/diesel-async` is a patched copy (its PATCHED.md). A version
    /// bump would silently switch to the unpatched registry crate (the
    /// `[patch]` stops applying) and break every query behind a
    /// transaction-mode pooler; so would a PATCHED.md that no longer shows
    /// the change the tree holds.
    #[test]
    fn the_vendored_diesel_async_is_the_locked_one() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let read = |p: &str| std::fs::read_to_string(root.join(p)).expect(p);
        let lock = read("Cargo.lock");
        let entry = lock
            .split("[[package]]")
            .find(|p| p.contains("name = \"diesel-async\"\n"))
            .expect("diesel-async in Cargo.lock");
        assert!(
            !entry.contains("source = "),
            "Cargo.lock takes diesel-async from a registry: the [patch] to vendor/diesel-async no longer applies"
        );
        let version_of = |text: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix("version = \""))
                .and_then(|v| v.strip_suffix('"'))
                .map(str::to_owned)
        };
        let vendored =
            version_of(&read("vendor/diesel-async/Cargo.toml")).expect("vendored version");
        assert_eq!(version_of(entry).as_deref(), Some(vendored.as_str()));
        let notes = read("vendor/diesel-async/PATCHED.md");
        assert!(notes.starts_with(&format!("# Patched diesel-async {vendored}\n")));
        let source = read("vendor/diesel-async/src/pg/mod.rs");
        let diff = notes
            .split("```diff\n")
            .nth(1)
            .and_then(|d| d.split("```").next())
            .expect("the diff in PATCHED.md");
        let added: Vec<&str> = diff
            .lines()
            .filter(|l| l.starts_with('+') && !l.starts_with("+++"))
            .map(|l| &l[1..])
            .collect();
        assert!(added.len() > 20, "the diff holds the change");
        for line in added {
            assert!(
                source.contains(line),
                "PATCHED.md adds a line src/pg/mod.rs lacks: {line}"
            );
        }
    }

    /// The URL that `crate::config` builds from seed parts reaches
    /// the driver with the password intact, whatever it holds.
    #[test]
    fn percent_encoded_credentials_reach_the_driver_decoded() {
        let config: tokio_postgres::Config =
            "postgres://app%40tenant:p%40ss%3Aw%2Frd%3F%23%25@db.example.com:6543/main%20app"
                .parse()
                .expect("url");
        assert_eq!(config.get_user(), Some("app@tenant"));
        assert_eq!(config.get_password(), Some(&b"p@ss:w/rd?#%"[..]));
        assert_eq!(config.get_dbname(), Some("main app"));
    }

    /// A connection past its maximum lifetime is closed at checkout and a
    /// new one opened (a SQLite temporary table lives only as long as its
    /// connection, so it tells them apart).
    #[tokio::test]
    async fn connections_past_their_lifetime_are_replaced() {
        let dir = std::env::temp_dir().join(format!("kit-life-{}", uuid::Uuid::new_v4()));
        let url = format!("sqlite://{}/t.db", dir.display());
        let survives = |lifetime: Duration| {
            let url = url.clone();
            async move {
                let pool = DbPool::connect_with(&url, 1, Pooler::None, lifetime)
                    .await
                    .expect("pool");
                {
                    let mut pooled = pool.get().await.expect("conn");
                    run!(&mut pooled.conn(), |c| {
                        diesel_async::SimpleAsyncConnection::batch_execute(
                            c,
                            "CREATE TEMP TABLE marker (x INTEGER)",
                        )
                        .await
                    })
                    .expect("temp table");
                }
                tokio::time::sleep(Duration::from_millis(150)).await;
                let mut pooled = pool.get().await.expect("conn");
                run!(&mut pooled.conn(), |c| {
                    diesel_async::SimpleAsyncConnection::batch_execute(c, "SELECT x FROM marker")
                        .await
                })
                .is_ok()
            }
        };
        assert!(
            survives(Duration::from_secs(60)).await,
            "reused while young"
        );
        assert!(
            !survives(Duration::from_millis(50)).await,
            "replaced when old"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
