//! Test support (feature `testing`): a database of its own for each test.
//!
//! SQLite by default (a file in the test's temporary directory); with
//! `TEST_DATABASE_URL=postgres://.../postgres` a fresh PostgreSQL database
//! per test, created here and dropped when the `TestDb` is dropped. With
//! `TEST_DATABASE_POOLER_URL` too (a transaction-mode PgBouncer in front of
//! that server, e.g. `postgres://postgres@127.0.0.1:6432/postgres`), the
//! services under test connect through the pooler ([`TestDb::service_env`]);
//! the tests themselves and migrations still go straight to the server.

use diesel_async::RunQueryDsl;
use uuid::Uuid;

/// A database of its own for one test, removed when the test ends.
pub enum TestDb {
    Sqlite,
    Postgres {
        admin_url: String,
        name: String,
        /// The database's URL through the pooler, when tests run behind one.
        pooled_url: Option<String>,
    },
}

use crate::db::url_with_database as with_database;

impl TestDb {
    pub async fn create(dir: &std::path::Path, name: &str) -> (Self, String) {
        match std::env::var("TEST_DATABASE_URL")
            .ok()
            .filter(|u| u.starts_with("postgres"))
        {
            Some(admin_url) => {
                let name = format!("test_{}", Uuid::new_v4().simple());
                let mut conn = crate::db::establish_pg(&admin_url)
                    .await
                    .expect("TEST_DATABASE_URL reachable");
                diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
                    .execute(&mut conn)
                    .await
                    .expect("create database");
                let url =
                    with_database(&admin_url, &name).expect("TEST_DATABASE_URL ends in /DBNAME");
                let pooled_url = std::env::var("TEST_DATABASE_POOLER_URL")
                    .ok()
                    .filter(|u| !u.is_empty())
                    .map(|p| {
                        with_database(&p, &name).expect("TEST_DATABASE_POOLER_URL ends in /DBNAME")
                    });
                (
                    TestDb::Postgres {
                        admin_url,
                        name,
                        pooled_url,
                    },
                    url,
                )
            }
            None => (
                TestDb::Sqlite,
                format!("sqlite://{}", dir.join(format!("{name}.db")).display()),
            ),
        }
    }
}

impl TestDb {
    /// The variables that point a service at this database: `url_var`
    /// (`<STEM>_URL`) set to `url`, or, behind a pooler, to the pooler's URL
    /// with the pooler switch and the direct URL beside it
    /// (`<STEM>_POOLER`, `<STEM>_DIRECT_URL`).
    pub fn service_env(&self, url_var: &str, url: &str) -> Vec<(String, String)> {
        match self {
            TestDb::Postgres {
                pooled_url: Some(pooled),
                ..
            } => {
                let stem = url_var.strip_suffix("_URL").unwrap_or(url_var);
                vec![
                    (url_var.to_owned(), pooled.clone()),
                    (format!("{stem}_DIRECT_URL"), url.to_owned()),
                    (format!("{stem}_POOLER"), "transaction".to_owned()),
                ]
            }
            _ => vec![(url_var.to_owned(), url.to_owned())],
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let TestDb::Postgres {
            admin_url, name, ..
        } = self
        {
            let (url, name) = (admin_url.clone(), name.clone());
            // Drop runs outside any async context we may block on, so the
            // cleanup gets a thread and a small runtime of its own.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async {
                    if let Ok(mut conn) = crate::db::establish_pg(&url).await {
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
            let mut conn = crate::db::establish_pg(url)
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

/// A fresh secrets key (base64 of 32 random bytes) for one test.
pub fn secrets_key() -> String {
    use base64::Engine as _;
    let bytes: Vec<u8> = [Uuid::new_v4(), Uuid::new_v4()]
        .iter()
        .flat_map(|u| u.into_bytes())
        .collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A Prometheus text exposition as `series → value`, where a series is
/// written as exposed (`name{label="value",...}`). Panics on a line that is
/// not a comment, a blank or `series value`: the test then fails on a
/// malformed exposition.
pub fn parse_metrics(text: &str) -> Metrics {
    let mut out = std::collections::HashMap::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("not `series value`: {line}"));
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':'),
            "bad metric name in {line}"
        );
        assert!(
            name_end == series.len() || series.ends_with('}'),
            "unterminated labels in {line}"
        );
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        out.insert(series.to_owned(), value);
    }
    Metrics(out)
}

/// A parsed exposition: each series as written to its value.
pub struct Metrics(pub std::collections::HashMap<String, f64>);

impl Metrics {
    /// The series' value; 0 when it is absent (a labelled counter appears
    /// only once it has been counted).
    pub fn get(&self, series: &str) -> f64 {
        self.0.get(series).copied().unwrap_or(0.0)
    }

    /// How far the series moved since `before`.
    pub fn since(&self, before: &Metrics, series: &str) -> f64 {
        self.get(series) - before.get(series)
    }
}

/// What an OpenAPI document says it serves, as `(METHOD, path)`, sorted.
pub fn documented_operations(doc: &utoipa::openapi::OpenApi) -> Vec<(String, String)> {
    let value = serde_json::to_value(doc).expect("the document serializes");
    let mut ops = Vec::new();
    if let Some(paths) = value["paths"].as_object() {
        for (path, item) in paths {
            for method in ["get", "put", "post", "delete", "patch", "head", "options"] {
                if item.get(method).is_some() {
                    ops.push((method.to_ascii_uppercase(), path.clone()));
                }
            }
        }
    }
    ops.sort();
    ops
}

/// The router's routes, as `(METHOD, path)`, sorted, without the
/// documentation's own (`/openapi.json`, `/docs`).
pub fn routed_operations(table: &[(&str, String)]) -> Vec<(String, String)> {
    let mut ops: Vec<(String, String)> = table
        .iter()
        .filter(|(m, p)| !crate::docs::DOC_ROUTES.contains(&(m, p.as_str())))
        .map(|(m, p)| ((*m).to_owned(), p.clone()))
        .collect();
    ops.sort();
    ops
}

/// Asserts that `doc` lists exactly the routes of `table` (the router's,
/// from `routes::configure`), the documentation's own routes aside.
pub fn assert_documents_routes(table: &[(&str, String)], doc: &utoipa::openapi::OpenApi) {
    let documented = documented_operations(doc);
    let routed = routed_operations(table);
    assert!(routed.len() > 10, "the table holds the routes: {routed:?}");
    let missing: Vec<_> = routed.iter().filter(|r| !documented.contains(r)).collect();
    let extra: Vec<_> = documented.iter().filter(|d| !routed.contains(d)).collect();
    assert!(missing.is_empty(), "routes the document lacks: {missing:?}");
    assert!(extra.is_empty(), "documented but not routed: {extra:?}");
}

/// Checks a served OpenAPI document: version 3.1, every operation has a
/// response, and every `$ref` names a component that exists.
pub fn check_openapi_json(doc: &serde_json::Value) {
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "OpenAPI 3.1: {}",
        doc["openapi"]
    );
    fn refs<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a str>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v.as_str()) {
                        ("$ref", Some(r)) => out.push(r),
                        _ => refs(v, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    refs(doc, &mut found);
    for r in found {
        let pointer = r
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("only local references: {r}"));
        assert!(doc.pointer(pointer).is_some(), "dangling $ref {r}");
    }
    let paths = doc["paths"].as_object().expect("paths");
    assert!(!paths.is_empty());
    for (path, item) in paths {
        for (method, op) in item.as_object().expect("path item") {
            let responses = op["responses"].as_object();
            assert!(
                responses.is_some_and(|r| !r.is_empty()),
                "{method} {path} documents no response"
            );
            // Errors are problem details everywhere (docs::ProblemResponses).
            for class in ["4XX", "5XX"] {
                assert_eq!(
                    op["responses"][class]["content"]["application/problem+json"]["schema"]["$ref"],
                    "#/components/schemas/Problem",
                    "{method} {path}: {class} as problem details"
                );
            }
        }
    }
}

pub mod hub;

/// A real OpenID Connect provider for tests: `auth-service/tests/oidc-provider`
/// (the certified `oidc-provider` package on Node.js; see its server.js for
/// the accounts it signs in). Runs `npm ci` there first if needed. Answers
/// the issuer URL and the process, which exits when the returned `Child`'s
/// stdin closes (drop it, or let the test process end).
///
/// `None` when Node.js is not installed and `REQUIRE_OIDC_PROVIDER` is not
/// 1 (CI sets it): the caller skips its test and says so.
pub fn start_oidc_provider(
    client_id: &str,
    client_secret: &str,
    default_account: Option<&str>,
) -> Option<(String, std::process::Child)> {
    use std::io::BufRead;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../auth-service/tests/oidc-provider");
    let required = std::env::var("REQUIRE_OIDC_PROVIDER").as_deref() == Ok("1");
    if std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            !required,
            "REQUIRE_OIDC_PROVIDER=1 but `node` is not installed"
        );
        eprintln!("SKIPPED: provider sign-in tests need Node.js (node) for auth-service/tests/oidc-provider");
        return None;
    }
    if !dir.join("node_modules/oidc-provider").exists() {
        let status = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--silent"])
            .current_dir(&dir)
            .status()
            .expect("npm runs");
        assert!(status.success(), "npm ci in {} failed", dir.display());
    }
    let mut command = std::process::Command::new("node");
    command
        .arg("server.js")
        .current_dir(&dir)
        .env("CLIENT_ID", client_id)
        .env("CLIENT_SECRET", client_secret)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    if let Some(account) = default_account {
        command.env("DEFAULT_ACCOUNT", account);
    }
    let mut child = command.spawn().expect("node starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .expect("the provider says where it listens");
    let started: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
    let issuer = started["issuer"].as_str().expect("issuer").to_owned();
    Some((issuer, child))
}
