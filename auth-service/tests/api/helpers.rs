use std::collections::HashMap;
use std::path::PathBuf;

use auth_service::configuration::Settings;
use auth_service::Application;
use ed25519_dalek::pkcs8::{spki::der::pem::LineEnding, EncodePrivateKey};
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use service_kit::testing::TestDb;
use shared_types::{RegisterResponse, TokenPair};
use uuid::Uuid;

pub const PASSWORD: &str = "correct horse battery staple";

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub api_key: String,
    pub database_url: String,
    pub settings: Settings,
    pub dir: PathBuf,
    handle: service_kit::server::Handle,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    replicas: Vec<service_kit::server::Handle>,
    _db: TestDb,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // `stop` sends its command at once; the returned future only waits.
        drop(self.handle.stop(false));
        for r in &self.replicas {
            drop(r.stop(false));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Every log line the servers in this test binary wrote, at debug level for
/// our crates: tests check that no token or password ever appears in it.
pub fn captured_logs() -> String {
    let buf = LOGS.get_or_init(Default::default);
    String::from_utf8_lossy(&buf.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
}

static LOGS: std::sync::OnceLock<std::sync::Arc<std::sync::Mutex<Vec<u8>>>> =
    std::sync::OnceLock::new();

#[derive(Clone)]
struct LogBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    let buf = LOGS.get_or_init(Default::default).clone();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "info,auth_service=debug,service_kit=debug,actix_web=debug",
        ))
        .with_writer(move || LogBuffer(buf.clone()))
        .with_ansi(false)
        .try_init();
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// Starts a server whose settings are the defaults plus `overrides`
/// (environment variable names and values, as an operator would set them).
pub async fn spawn_app_with(overrides: &[(&str, &str)]) -> TestApp {
    spawn_app_after(overrides, |_| async {}).await
}

/// As `spawn_app_with`, but `prepare` gets the new database's URL first,
/// before the server migrates it and starts (an upgrade test's old rows).
pub async fn spawn_app_after<F, Fut>(overrides: &[(&str, &str)], prepare: F) -> TestApp
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    capture_logs();
    let dir = std::env::temp_dir().join(format!("auth-test-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (db, database_url) = TestDb::create(&dir, "auth").await;
    prepare(database_url.clone()).await;
    let api_key = format!("test-api-key-{}", Uuid::new_v4().simple());
    let mut env = test_env(&dir, &api_key);
    env.insert("AUTH_DATABASE_URL".into(), database_url.clone());
    env.extend(db.service_env("AUTH_DATABASE_URL", &database_url));
    // Bound first, so the service knows its own address: a provider
    // redirects the browser back to AUTH_PUBLIC_URL.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    env.insert("AUTH_PUBLIC_URL".into(), format!("http://127.0.0.1:{port}"));
    for (k, v) in overrides {
        env.insert((*k).into(), (*v).into());
    }
    let settings = Settings::from_lookup(|k| env.get(k).cloned()).expect("valid test settings");
    let app = Application::build_on(settings.clone(), listener)
        .await
        .expect("app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let handle = app.handle();
    let task = Some(tokio::spawn(app.run_until_stopped()));
    TestApp {
        address,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        api_key,
        database_url,
        settings,
        handle,
        task,
        replicas: Vec::new(),
        _db: db,
        dir,
    }
}

/// The settings every test server gets (a fresh signing key in `dir`, mail
/// to a file there), as environment variables; the database is added by
/// the caller.
fn test_env(dir: &std::path::Path, api_key: &str) -> HashMap<String, String> {
    let key_path = dir.join("jwt.pem");
    let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    std::fs::write(
        &key_path,
        key.to_pkcs8_pem(LineEnding::LF).expect("pem").as_bytes(),
    )
    .expect("write key");
    HashMap::from([
        ("AUTH_BIND".into(), "127.0.0.1:0".into()),
        (
            "AUTH_JWT_PRIVATE_KEY_FILE".into(),
            key_path.display().to_string(),
        ),
        ("AUTH_SERVICE_API_KEY".into(), api_key.to_owned()),
        (
            "AUTH_SECRETS_KEY".into(),
            service_kit::testing::secrets_key(),
        ),
        (
            "AUTH_MAIL_OUTBOX".into(),
            dir.join("mail.jsonl").display().to_string(),
        ),
        ("AUTH_DATABASE_POOL_SIZE".into(), "4".into()),
        ("AUTH_WORKERS".into(), "1".into()),
        // The rate limit has its own test; elsewhere many requests come
        // from one address.
        ("AUTH_RATE_LIMIT_PER_MINUTE".into(), "0".into()),
        // Delivery is tested across both services (main-backend's tests).
        ("AUTH_WEBHOOK_URL".into(), "off".into()),
    ])
}

/// Starts a server on the database `database_url` names, which must fail;
/// returns what it said (as `auth-service` prints it: `{:#}`).
pub async fn start_error(database_url: &str) -> String {
    let dir = std::env::temp_dir().join(format!("auth-test-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let api_key = format!("test-api-key-{}", Uuid::new_v4().simple());
    let mut env = test_env(&dir, &api_key);
    env.insert("AUTH_DATABASE_URL".into(), database_url.to_owned());
    let settings = Settings::from_lookup(|k| env.get(k).cloned()).expect("valid test settings");
    let result = Application::build(settings).await;
    let _ = std::fs::remove_dir_all(&dir);
    match result {
        Ok(_) => panic!("the service started on {database_url}"),
        Err(e) => format!("{e:#}"),
    }
}

/// A unique, valid email for this test.
pub fn email() -> String {
    format!("user-{}@example.com", Uuid::new_v4().simple())
}

impl TestApp {
    /// Stops the server as SIGTERM would: in-flight requests finish, the
    /// workers stop and buffered usage is written. Returns once it has.
    pub async fn stop_gracefully(&mut self) {
        let stopping = self.handle.stop(true);
        stopping.await;
        if let Some(task) = self.task.take() {
            task.await.expect("server task").expect("server ran");
        }
    }

    /// Another replica on the same database; returns its base URL.
    pub async fn start_replica(&mut self) -> String {
        let app = Application::build(self.settings.clone())
            .await
            .expect("replica builds");
        let address = format!("http://127.0.0.1:{}", app.port());
        self.replicas.push(app.handle());
        tokio::spawn(app.run_until_stopped());
        address
    }

    /// A pool on this app's database, for looking underneath the API.
    pub async fn db(&self) -> auth_service::db::DbPool {
        auth_service::db::DbPool::connect(&self.database_url, 2)
            .await
            .expect("test db")
    }

    /// Runs `auth-service service-token ...` as an operator would, through
    /// the command-line code on this app's database; returns stdout.
    pub async fn cli(&self, command: auth_service::cli::TokenCommand) -> String {
        let mut out = Vec::new();
        auth_service::cli::service_token(&self.database_url, command, &mut out)
            .await
            .expect("cli command");
        String::from_utf8(out).expect("utf-8")
    }

    /// A new service token with these scopes (made with the command line code).
    pub async fn service_token(&self, scopes: &[&str]) -> String {
        let out = self
            .cli(auth_service::cli::TokenCommand::Create {
                name: format!("test-{}", Uuid::new_v4().simple()),
                scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
                expires_in_days: None,
            })
            .await;
        out.trim().to_owned()
    }

    /// Moves every queued mail a minute and more into the past, as if the
    /// spacing between mails to one address (`db::mail::SPACING`) had passed.
    pub async fn let_mail_spacing_pass(&self) {
        use auth_service::db::schema::jobs;
        use diesel::prelude::*;
        use diesel_async::RunQueryDsl;
        use service_kit::db::sql_types::DbTime;
        use service_kit::run;
        let db = self.db().await;
        let mut pooled = db.get().await.expect("conn");
        let conn = &mut pooled.conn();
        let past = DbTime(chrono::Utc::now() - chrono::Duration::seconds(61));
        run!(conn, |c| diesel::update(
            jobs::table.filter(jobs::kind.eq("mail"))
        )
        .set(jobs::created_at.eq(past))
        .execute(c)
        .await)
        .expect("age mail");
    }

    /// Every mail written to this app's outbox file so far.
    pub fn mails(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.join("mail.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("each mail is one JSON line"))
            .collect()
    }

    /// The value of one series of this server's `/metrics`, e.g.
    /// `auth_password_reset_requests_total{outcome="spaced"}` (0 if absent).
    pub async fn metric(&self, series: &str) -> f64 {
        let text = self
            .client
            .get(format!("{}/metrics", self.address))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text");
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    /// Waits (up to 10 s) until `series` reaches `value`: the positive
    /// signal a check for "nothing else happened" waits for first.
    pub async fn wait_metric(&self, series: &str, value: f64) {
        for _ in 0..200 {
            if self.metric(series).await >= value {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("{series} did not reach {value}");
    }

    /// Mails still waiting to be sent (queued, not yet sent or given up).
    pub async fn pending_mail(&self) -> i64 {
        use auth_service::db::schema::jobs;
        use diesel::prelude::*;
        let db = self.db().await;
        let mut pooled = db.get().await.expect("conn");
        service_kit::run!(&mut pooled.conn(), |c| {
            diesel_async::RunQueryDsl::get_result(
                jobs::table
                    .filter(jobs::kind.eq("mail"))
                    .filter(jobs::status.eq("pending"))
                    .count(),
                c,
            )
            .await
        })
        .expect("pending mail")
    }

    /// Waits (up to 10 s) for the `n`-th mail (1-based) of `kind` to `to`,
    /// as a person waits for mail.
    pub async fn nth_mail(&self, to: &str, kind: &str, n: usize) -> Value {
        for _ in 0..200 {
            let found: Vec<Value> = self
                .mails()
                .into_iter()
                .filter(|m| m["to"] == to && m["kind"] == kind)
                .collect();
            if found.len() >= n {
                return found[n - 1].clone();
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!(
            "no mail #{n} of kind {kind} to {to}; outbox: {:?}",
            self.mails()
        );
    }

    pub async fn mail(&self, to: &str, kind: &str) -> Value {
        self.nth_mail(to, kind, 1).await
    }

    /// The token in a mail's link, read from the link as a browser would.
    pub fn token_in_link(mail: &Value) -> String {
        let link = mail["link"].as_str().expect("mail has a link");
        let url = reqwest::Url::parse(link).expect("link is a URL");
        let token = url
            .query_pairs()
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned())
            .expect("link carries a token");
        assert_eq!(
            mail["token"],
            token.as_str(),
            "token field matches the link"
        );
        token
    }

    /// `POST /v1/login` with any password and code, from `forwarded_for`
    /// (seen as the client only when the app trusts loopback as a proxy).
    pub async fn try_login(
        &self,
        email: &str,
        password: &str,
        totp_code: Option<&str>,
        forwarded_for: Option<&str>,
    ) -> Response {
        let mut body = json!({"email": email, "password": password});
        if let Some(code) = totp_code {
            body["totp_code"] = json!(code);
        }
        let mut req = self.client.post(self.url("/v1/login")).json(&body);
        if let Some(ip) = forwarded_for {
            req = req.header("x-forwarded-for", ip);
        }
        req.send().await.expect("request")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn post_bearer(&self, path: &str, token: &str, body: Option<&Value>) -> Response {
        let mut req = self.client.post(self.url(path)).bearer_auth(token);
        if let Some(body) = body {
            req = req.json(body);
        }
        req.send().await.expect("request")
    }

    pub async fn delete_bearer(&self, path: &str, token: &str) -> Response {
        self.client
            .delete(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
    }

    /// GET without credentials, body as JSON.
    pub async fn get_json(&self, path: &str) -> Value {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json body")
    }

    pub async fn get_bearer(&self, path: &str, token: &str) -> Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
    }

    pub async fn register(&self, email: &str) -> RegisterResponse {
        let res = self
            .post_json(
                "/v1/register",
                &json!({"email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
        res.json().await.expect("register body")
    }

    pub async fn login(&self, email: &str) -> TokenPair {
        let res = self
            .post_json("/v1/login", &json!({"email": email, "password": PASSWORD}))
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        res.json().await.expect("tokens")
    }

    pub async fn refresh(&self, refresh_token: &str) -> Response {
        self.post_json(
            "/v1/token/refresh",
            &json!({"refresh_token": refresh_token}),
        )
        .await
    }

    pub async fn introspect(&self, token: &str) -> Value {
        let res = self
            .post_bearer(
                "/internal/v1/introspect",
                &self.api_key,
                Some(&json!({"token": token})),
            )
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        res.json().await.expect("introspection")
    }

    /// Status of `GET /v1/me` with this token.
    pub async fn me_status(&self, token: &str) -> StatusCode {
        self.get_bearer("/v1/me", token).await.status()
    }
}

/// Asserts a problem-details answer with this status and code; returns the body.
pub async fn assert_problem(res: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(res.status(), status, "status");
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    if status == StatusCode::UNAUTHORIZED {
        let www = res
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        assert!(
            www.starts_with("Bearer"),
            "401 must carry WWW-Authenticate: Bearer, got {www:?}"
        );
    }
    let body: Value = res.json().await.expect("problem body");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status.as_u16());
    for field in ["type", "title", "detail"] {
        assert!(body[field].is_string(), "problem lacks {field}: {body}");
    }
    body
}

pub fn retry_after(res: &reqwest::Response) -> u64 {
    res.headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("429 carries Retry-After in seconds")
}

pub async fn audit(app: &TestApp, query: &str) -> Vec<Value> {
    let admin = app.service_token(&["admin"]).await;
    let res = app
        .get_bearer(&format!("/admin/v1/audit?{query}"), &admin)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.expect("audit")
}

/// Password reset requests are handled after their 202: waits until they
/// were, with exactly these outcomes, and until no mail is left to send.
pub async fn reset_requests_handled(app: &TestApp, outcomes: &[(&str, f64)]) {
    let series =
        |outcome: &str| format!(r#"auth_password_reset_requests_total{{outcome="{outcome}"}}"#);
    for (outcome, count) in outcomes {
        app.wait_metric(&series(outcome), *count).await;
    }
    for (outcome, count) in outcomes {
        assert_eq!(app.metric(&series(outcome)).await, *count, "{outcome}");
    }
    assert_eq!(app.pending_mail().await, 0);
}

/// The statuses of a burst of requests sent at once, in order.
#[derive(Debug)]
pub struct Statuses(pub Vec<StatusCode>);

impl Statuses {
    pub async fn of<F>(burst: impl IntoIterator<Item = F>) -> Self
    where
        F: std::future::Future<Output = reqwest::Response>,
    {
        Self(
            futures::future::join_all(burst)
                .await
                .iter()
                .map(|r| r.status())
                .collect(),
        )
    }

    /// How many answered `status`.
    pub fn count(&self, status: StatusCode) -> usize {
        self.0.iter().filter(|s| **s == status).count()
    }
}
