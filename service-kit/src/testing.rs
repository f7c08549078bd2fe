//! Test support (feature `testing`): a database of its own for each test.
//!
//! SQLite by default (a file in the test's temporary directory); with
//! `TEST_DATABASE_URL=postgres://.../postgres` a fresh PostgreSQL database
//! per test, created here and dropped when the `TestDb` is dropped.

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

/// A database of its own for one test, removed when the test ends.
pub enum TestDb {
    Sqlite,
    Postgres { admin_url: String, name: String },
}

impl TestDb {
    pub async fn create(dir: &std::path::Path, name: &str) -> (Self, String) {
        match std::env::var("TEST_DATABASE_URL")
            .ok()
            .filter(|u| u.starts_with("postgres"))
        {
            Some(admin_url) => {
                let name = format!("test_{}", Uuid::new_v4().simple());
                let mut conn = AsyncPgConnection::establish(&admin_url)
                    .await
                    .expect("TEST_DATABASE_URL reachable");
                diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
                    .execute(&mut conn)
                    .await
                    .expect("create database");
                let url = match admin_url.rsplit_once('/') {
                    Some((base, _)) => format!("{base}/{name}"),
                    None => panic!("TEST_DATABASE_URL must end in /DBNAME"),
                };
                (TestDb::Postgres { admin_url, name }, url)
            }
            None => (
                TestDb::Sqlite,
                format!("sqlite://{}", dir.join(format!("{name}.db")).display()),
            ),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let TestDb::Postgres { admin_url, name } = self {
            let (url, name) = (admin_url.clone(), name.clone());
            // Drop runs outside any async context we may block on, so the
            // cleanup gets a thread and a small runtime of its own.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async {
                    if let Ok(mut conn) = AsyncPgConnection::establish(&url).await {
                        let _ = diesel::sql_query(format!(
                            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                        ))
                        .execute(&mut conn)
                        .await;
                    }
                });
            })
            .join();
        }
    }
}

/// A fresh `whsec_<base64>` webhook secret (32 random bytes) for one test.
pub fn webhook_secret() -> String {
    format!("whsec_{}", secrets_key())
}

/// Everything a database holds, as text, for tests that prove a value was
/// never stored (tokens, secrets in plaintext). SQLite: the raw bytes of the
/// file and its WAL, so deleted or not-yet-checkpointed pages count too.
/// PostgreSQL: every row of every table in `public`, as its text form.
pub async fn database_text(url: &str) -> String {
    use diesel::sql_types::Text;
    #[derive(diesel::QueryableByName)]
    struct Line {
        #[diesel(sql_type = Text)]
        line: String,
    }
    match crate::db::Backend::of_url(url) {
        Some(crate::db::Backend::Sqlite) => {
            let path = crate::db::sqlite_path(url);
            let mut out = String::new();
            for suffix in ["", "-wal", "-journal"] {
                if let Ok(bytes) = std::fs::read(format!("{path}{suffix}")) {
                    out.push_str(&String::from_utf8_lossy(&bytes));
                }
            }
            out
        }
        _ => {
            let mut conn = AsyncPgConnection::establish(url)
                .await
                .expect("database reachable");
            let tables: Vec<Line> = diesel::sql_query(
                "SELECT tablename AS line FROM pg_tables WHERE schemaname = 'public'",
            )
            .load(&mut conn)
            .await
            .expect("list tables");
            let mut out = String::new();
            for t in tables {
                let rows: Vec<Line> =
                    diesel::sql_query(format!("SELECT t::text AS line FROM \"{}\" t", t.line))
                        .load(&mut conn)
                        .await
                        .expect("dump table");
                for r in rows {
                    out.push_str(&r.line);
                    out.push('\n');
                }
            }
            out
        }
    }
}

/// A fresh `MAIN_SECRETS_KEY` (base64 of 32 random bytes) for one test.
pub fn secrets_key() -> String {
    use base64::Engine as _;
    let bytes: Vec<u8> = [Uuid::new_v4(), Uuid::new_v4()]
        .iter()
        .flat_map(|u| u.into_bytes())
        .collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
