//! `pooler-probe DIRECT_URL POOLER_URL [SECONDS]`: single-row SELECTs by
//! primary key from 8 concurrent workers, one connection each, per route:
//!
//! 1. diesel-async, direct, its defaults (named statements, cached);
//! 2. diesel-async through the pooler as the services run it with
//!    `DATABASE_POOLER=transaction` (no cache, each query in BEGIN/COMMIT);
//! 3. diesel's libpq `PgConnection`, direct, its defaults;
//! 4. libpq through the pooler, statement cache off (unnamed statements,
//!    sent with PQsendQueryParams: one round trip);
//! 5. tokio-postgres `query_typed` through the pooler (unnamed, one round
//!    trip), the async equivalent of 4.
//!
//! Prints queries per second and each route's ratio to route 1.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::connection::CacheSize;
use diesel::sql_types::{Integer, Text};
use diesel::{Connection, QueryableByName};
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};

const WORKERS: usize = 8;
const ROWS: i32 = 1000;
const SQL: &str = "SELECT id, email FROM pooler_probe WHERE id = $1";

#[derive(QueryableByName)]
#[allow(dead_code)]
struct Row {
    #[diesel(sql_type = Integer)]
    id: i32,
    #[diesel(sql_type = Text)]
    email: String,
}

async fn async_route(url: String, pooled: bool, until: Instant, count: Arc<AtomicU64>) {
    let mut conn = if pooled {
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(connection);
        client.batch_execute("BEGIN").await.expect("begin");
        let mut c = AsyncPgConnection::try_from(client).await.expect("setup");
        c.batch_execute("COMMIT").await.expect("commit");
        c.set_prepared_statement_cache_size(CacheSize::Disabled);
        c
    } else {
        AsyncPgConnection::establish(&url).await.expect("connect")
    };
    let mut i = 0;
    while Instant::now() < until {
        i = (i % ROWS) + 1;
        let query = diesel::sql_query(SQL).bind::<Integer, _>(i);
        let rows: Vec<Row> = if pooled {
            conn.transaction(async |c| diesel_async::RunQueryDsl::load(query, c).await)
                .await
                .expect("query")
        } else {
            diesel_async::RunQueryDsl::load(query, &mut conn)
                .await
                .expect("query")
        };
        assert_eq!(rows.len(), 1);
        count.fetch_add(1, Ordering::Relaxed);
    }
}

fn libpq_route(url: String, pooled: bool, until: Instant, count: Arc<AtomicU64>) {
    let mut conn = diesel::PgConnection::establish(&url).expect("connect");
    if pooled {
        conn.set_prepared_statement_cache_size(CacheSize::Disabled);
    }
    let mut i = 0;
    while Instant::now() < until {
        i = (i % ROWS) + 1;
        let rows: Vec<Row> =
            diesel::RunQueryDsl::load(diesel::sql_query(SQL).bind::<Integer, _>(i), &mut conn)
                .expect("query");
        assert_eq!(rows.len(), 1);
        count.fetch_add(1, Ordering::Relaxed);
    }
}

async fn query_typed_route(url: String, until: Instant, count: Arc<AtomicU64>) {
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    let mut i = 0;
    while Instant::now() < until {
        i = (i % ROWS) + 1;
        let rows = client
            .query_typed(SQL, &[(&i, tokio_postgres::types::Type::INT4)])
            .await
            .expect("query");
        assert_eq!(rows.len(), 1);
        count.fetch_add(1, Ordering::Relaxed);
    }
}

async fn measure(route: u8, direct: &str, pooler: &str, secs: u64) -> f64 {
    let count = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let until = started + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..WORKERS {
        let count = count.clone();
        let (direct, pooler) = (direct.to_owned(), pooler.to_owned());
        tasks.push(match route {
            1 => tokio::spawn(async_route(direct, false, until, count)),
            2 => tokio::spawn(async_route(pooler, true, until, count)),
            3 => tokio::task::spawn_blocking(move || libpq_route(direct, false, until, count)),
            4 => tokio::task::spawn_blocking(move || libpq_route(pooler, true, until, count)),
            _ => tokio::spawn(query_typed_route(pooler, until, count)),
        });
    }
    for t in tasks {
        t.await.expect("worker");
    }
    count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (direct, pooler) = match args.as_slice() {
        [d, p, ..] => (d.clone(), p.clone()),
        _ => {
            eprintln!("usage: pooler-probe DIRECT_URL POOLER_URL [SECONDS]");
            std::process::exit(2);
        }
    };
    let secs: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(3);
    let mut setup = AsyncPgConnection::establish(&direct).await.expect("connect");
    setup
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS pooler_probe; \
             CREATE TABLE pooler_probe (id int PRIMARY KEY, email text NOT NULL); \
             INSERT INTO pooler_probe SELECT g, 'user' || g || '@example.com' FROM generate_series(1, {ROWS}) g;"
        ))
        .await
        .expect("setup");
    let names = [
        "diesel-async, direct (defaults)",
        "diesel-async, pooler (BEGIN/query/COMMIT, no cache): what the services run",
        "diesel PgConnection (libpq), direct (defaults)",
        "diesel PgConnection (libpq), pooler, cache off (unnamed, one round trip)",
        "tokio-postgres query_typed, pooler (unnamed, one round trip)",
    ];
    // Two rounds, alternating, so drift falls on every route alike.
    let mut sums = [0.0f64; 5];
    for _ in 0..2 {
        for route in 1..=5u8 {
            sums[usize::from(route - 1)] += measure(route, &direct, &pooler, secs).await;
        }
    }
    let base = sums[0];
    println!("| route | queries/s | ratio to 1 |\n|---|---|---|");
    for (i, name) in names.iter().enumerate() {
        println!("| {}. {name} | {:.0} | {:.2} |", i + 1, sums[i] / 2.0, sums[i] / base);
    }
    setup
        .batch_execute("DROP TABLE pooler_probe")
        .await
        .expect("cleanup");
}
