use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use main_backend::db::{mirror, DbPool};
use reqwest::StatusCode;
use serde_json::{json, Value};
use service_kit::testing::TestDb;
use shared_types::webhook::WebhookKey;
use shared_types::{RegisterResponse, TokenPair};
use uuid::Uuid;

pub const PASSWORD: &str = "correct horse battery staple";

/// A socket on a free loopback port, bound now: each service must know the
/// other's address before it starts, and a port merely free a moment ago
/// could be taken meanwhile (by any outgoing connection, say).
fn bound() -> (std::net::TcpListener, u16) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    (listener, port)
}

pub struct Running {
    handle: service_kit::server::Handle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    async fn stop(self) {
        self.handle.stop(true).await;
        let _ = self.task.await;
    }
}

/// Both services, started and stopped at will; databases outlive restarts.
pub struct Stack {
    pub client: reqwest::Client,
    pub auth_url: String,
    pub main_url: String,
    pub api_key: String,
    pub webhook_secret: String,
    auth_env: HashMap<String, String>,
    pub main_env: HashMap<String, String>,
    pub main_db_url: String,
    auth: Option<Running>,
    main: Option<Running>,
    /// The sockets the first start of each service serves on; a restart
    /// binds the same port again.
    auth_listener: Option<std::net::TcpListener>,
    main_listener: Option<std::net::TcpListener>,
    extra_mains: Vec<Running>,
    _auth_db: TestDb,
    /// Databases the auth service was moved to (`restart_auth_on_empty_database`).
    other_auth_dbs: Vec<TestDb>,
    _main_db: TestDb,
    dir: PathBuf,
}

impl Drop for Stack {
    fn drop(&mut self) {
        for r in self
            .auth
            .take()
            .into_iter()
            .chain(self.main.take())
            .chain(self.extra_mains.drain(..))
        {
            drop(r.handle.stop(false));
            r.task.abort();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub async fn spawn_stack() -> Stack {
    spawn_stack_with(&[], &[]).await
}

/// Starts both services with test defaults plus overrides (environment
/// variable names and values, as an operator would set them).
pub async fn spawn_stack_with(
    auth_overrides: &[(&str, &str)],
    main_overrides: &[(&str, &str)],
) -> Stack {
    let dir = std::env::temp_dir().join(format!("stack-test-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (auth_db, auth_db_url) = TestDb::create(&dir, "auth").await;
    let (main_db, main_db_url) = TestDb::create(&dir, "main").await;
    let ((auth_listener, auth_port), (main_listener, main_port)) = (bound(), bound());
    let api_key = format!("test-api-key-{}", Uuid::new_v4().simple());
    let webhook_secret = service_kit::testing::webhook_secret();
    let jwt_secret = format!("test-jwt-secret-{}", Uuid::new_v4().simple());
    let mut auth_env: HashMap<String, String> = [
        ("AUTH_BIND", format!("127.0.0.1:{auth_port}")),
        ("AUTH_DATABASE_URL", auth_db_url),
        ("AUTH_JWT_ALGORITHM", "HS256".into()),
        ("AUTH_JWT_SECRET", jwt_secret),
        ("AUTH_SERVICE_API_KEY", api_key.clone()),
        ("AUTH_SECRETS_KEY", service_kit::testing::secrets_key()),
        (
            "AUTH_WEBHOOK_URL",
            format!("http://127.0.0.1:{main_port}/webhooks/auth"),
        ),
        ("AUTH_WEBHOOK_SECRET", webhook_secret.clone()),
        ("AUTH_WEBHOOK_BACKOFF_MS", "50".into()),
        (
            "AUTH_MAIL_OUTBOX",
            dir.join("mail.jsonl").display().to_string(),
        ),
        ("AUTH_DATABASE_POOL_SIZE", "4".into()),
        ("AUTH_WORKERS", "1".into()),
        // Many registrations come from one address here.
        ("AUTH_RATE_LIMIT_PER_MINUTE", "0".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let mut main_env: HashMap<String, String> = [
        ("MAIN_BIND", format!("127.0.0.1:{main_port}")),
        ("DATABASE_URL", main_db_url.clone()),
        ("AUTH_SERVICE_URL", format!("http://127.0.0.1:{auth_port}")),
        ("AUTH_SERVICE_API_KEY", api_key.clone()),
        ("AUTH_WEBHOOK_SECRET", webhook_secret.clone()),
        ("MAIN_SECRETS_KEY", service_kit::testing::secrets_key()),
        // Reconciliation only when a test asks for it.
        ("SYNC_INTERVAL_SECONDS", "0".into()),
        ("AUTH_TIMEOUT_MS", "1000".into()),
        ("REVOCATION_POLL_MS", "100".into()),
        ("MAIN_DATABASE_POOL_SIZE", "4".into()),
        ("MAIN_WORKERS", "1".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    auth_env.extend(auth_db.service_env("AUTH_DATABASE_URL", &auth_env["AUTH_DATABASE_URL"]));
    main_env.extend(main_db.service_env("DATABASE_URL", &main_db_url));
    for (k, v) in auth_overrides {
        auth_env.insert((*k).into(), (*v).into());
    }
    for (k, v) in main_overrides {
        main_env.insert((*k).into(), (*v).into());
    }
    let mut stack = Stack {
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        auth_url: format!("http://127.0.0.1:{auth_port}"),
        main_url: format!("http://127.0.0.1:{main_port}"),
        api_key,
        webhook_secret,
        auth_env,
        main_env,
        main_db_url,
        auth: None,
        main: None,
        auth_listener: Some(auth_listener),
        main_listener: Some(main_listener),
        extra_mains: Vec::new(),
        _auth_db: auth_db,
        other_auth_dbs: Vec::new(),
        _main_db: main_db,
        dir,
    };
    stack.start_main().await;
    stack.start_auth().await;
    stack
}

impl Stack {
    pub async fn start_auth(&mut self) {
        let env = self.auth_env.clone();
        let settings = auth_service::configuration::Settings::from_lookup(|k| env.get(k).cloned())
            .expect("valid auth settings");
        let app = match self.auth_listener.take() {
            Some(listener) => auth_service::Application::build_on(settings, listener).await,
            None => auth_service::Application::build(settings).await,
        }
        .expect("auth builds");
        self.auth = Some(Running {
            handle: app.handle(),
            task: tokio::spawn(app.run_until_stopped()),
        });
    }

    /// Restarts the auth service on a new, empty database, as a bad deploy
    /// would (a wrong URL, a lost volume, a fresh SQLite file); returns its
    /// settings from before, for `restart_auth_with`.
    pub async fn restart_auth_on_empty_database(&mut self) -> HashMap<String, String> {
        let before = self.auth_env.clone();
        let (db, url) =
            TestDb::create(&self.dir, &format!("auth{}", self.other_auth_dbs.len())).await;
        let mut env = before.clone();
        env.extend(db.service_env("AUTH_DATABASE_URL", &url));
        self.other_auth_dbs.push(db);
        self.restart_auth_with(env).await;
        before
    }

    /// Restarts the auth service with these settings.
    pub async fn restart_auth_with(&mut self, env: HashMap<String, String>) {
        self.stop_auth().await;
        self.auth_env = env;
        self.start_auth().await;
    }

    pub async fn stop_auth(&mut self) {
        if let Some(r) = self.auth.take() {
            r.stop().await;
        }
    }

    async fn build_main(
        &self,
        env: HashMap<String, String>,
        listener: Option<std::net::TcpListener>,
    ) -> Running {
        let settings = main_backend::configuration::Settings::from_lookup(|k| env.get(k).cloned())
            .expect("valid main settings");
        let app = match listener {
            Some(listener) => main_backend::Application::build_on(settings, listener).await,
            None => main_backend::Application::build(settings).await,
        }
        .expect("main builds");
        Running {
            handle: app.handle(),
            task: tokio::spawn(app.run_until_stopped()),
        }
    }

    pub async fn start_main(&mut self) {
        let listener = self.main_listener.take();
        let running = self.build_main(self.main_env.clone(), listener).await;
        self.main = Some(running);
    }

    pub async fn stop_main(&mut self) {
        if let Some(r) = self.main.take() {
            r.stop().await;
        }
    }

    /// A second main-backend replica on the same database; returns its URL.
    pub async fn start_main_replica(&mut self) -> String {
        let mut env = self.main_env.clone();
        let (listener, port) = bound();
        env.insert("MAIN_BIND".into(), format!("127.0.0.1:{port}"));
        let running = self.build_main(env, Some(listener)).await;
        self.extra_mains.push(running);
        format!("http://127.0.0.1:{port}")
    }

    pub async fn register(&self, email: &str) -> RegisterResponse {
        let res = self
            .client
            .post(format!("{}/v1/register", self.auth_url))
            .json(&json!({"email": email, "password": PASSWORD, "full_name": "Test User"}))
            .send()
            .await
            .expect("register");
        assert_eq!(res.status(), StatusCode::CREATED);
        res.json().await.expect("register body")
    }

    pub async fn login(&self, email: &str) -> TokenPair {
        let res = self
            .client
            .post(format!("{}/v1/login", self.auth_url))
            .json(&json!({"email": email, "password": PASSWORD}))
            .send()
            .await
            .expect("login");
        assert_eq!(res.status(), StatusCode::OK);
        res.json().await.expect("login body")
    }

    /// The token of the newest mail of `kind` to `to` in the auth service's
    /// outbox file, waiting for it up to 10 s.
    pub async fn mailed_token(&self, to: &str, kind: &str) -> String {
        for _ in 0..200 {
            let text = std::fs::read_to_string(self.dir.join("mail.jsonl")).unwrap_or_default();
            let found = text
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .rfind(|m| m["to"] == to && m["kind"] == kind);
            if let Some(token) = found.and_then(|m| m["token"].as_str().map(str::to_owned)) {
                return token;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no {kind} mail to {to}");
    }

    pub async fn auth_post(
        &self,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> reqwest::Response {
        let mut req = self
            .client
            .post(format!("{}{path}", self.auth_url))
            .json(body);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.send().await.expect("auth request")
    }

    /// `GET base + path` with no credentials.
    pub async fn get(&self, base: &str, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{base}{path}"))
            .send()
            .await
            .expect("request")
    }

    pub async fn main_get(&self, base: &str, path: &str, token: &str) -> reqwest::Response {
        self.client
            .get(format!("{base}{path}"))
            .bearer_auth(token)
            .send()
            .await
            .expect("main request")
    }

    pub async fn me(&self, token: &str) -> reqwest::Response {
        self.main_get(&self.main_url, "/v1/me", token).await
    }

    /// A pool on the main backend's database, to look at the mirror directly.
    /// A pool on the auth service's database, for changing it underneath
    /// (a restore from backup).
    pub async fn auth_db(&self) -> DbPool {
        let url = self
            .auth_env
            .get("AUTH_DATABASE_DIRECT_URL")
            .unwrap_or(&self.auth_env["AUTH_DATABASE_URL"]);
        DbPool::connect(url, 2).await.expect("auth db")
    }

    pub async fn main_db(&self) -> DbPool {
        DbPool::connect(&self.main_db_url, 2)
            .await
            .expect("main db")
    }

    pub async fn mirror_user(&self, id: Uuid) -> Option<mirror::MirrorUser> {
        let db = self.main_db().await;
        let mut c = db.get().await.expect("conn");
        mirror::find(&mut c.conn(), id).await.expect("query")
    }

    pub async fn mirror_count(&self) -> i64 {
        let db = self.main_db().await;
        let mut c = db.get().await.expect("conn");
        mirror::count(&mut c.conn()).await.expect("query")
    }

    /// A new service token with these scopes, made as an operator would:
    /// with the auth service's command line, on its database.
    pub async fn service_token(&self, scopes: &[&str]) -> String {
        let mut out = Vec::new();
        auth_service::cli::service_token(
            self.auth_env
                .get("AUTH_DATABASE_DIRECT_URL")
                .unwrap_or(&self.auth_env["AUTH_DATABASE_URL"]),
            auth_service::cli::TokenCommand::Create {
                name: format!("test-{}", Uuid::new_v4().simple()),
                scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
                expires_in_days: None,
            },
            &mut out,
        )
        .await
        .expect("service-token create");
        String::from_utf8(out).expect("utf-8").trim().to_owned()
    }

    /// `POST /admin/v1/sync` with an ops token; asserts 200.
    pub async fn sync_now(&self) -> Value {
        let token = self.service_token(&["ops"]).await;
        let res = self
            .client
            .post(format!("{}/admin/v1/sync", self.main_url))
            .bearer_auth(token)
            .send()
            .await
            .expect("sync");
        assert_eq!(res.status(), StatusCode::OK);
        res.json().await.expect("sync body")
    }

    pub fn auth_internal(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.auth_url))
            .bearer_auth(&self.api_key)
    }

    pub async fn webhook_stats(&self) -> Value {
        self.auth_internal(reqwest::Method::GET, "/internal/v1/webhooks/stats")
            .send()
            .await
            .expect("stats")
            .json()
            .await
            .expect("stats json")
    }

    /// Sends a webhook signed with the shared secret (or `secret`).
    pub async fn send_webhook(
        &self,
        id: &str,
        timestamp: i64,
        body: &Value,
        secret: Option<&str>,
    ) -> reqwest::Response {
        let body = serde_json::to_vec(body).expect("json");
        let key = WebhookKey::parse(secret.unwrap_or(&self.webhook_secret)).expect("key");
        self.client
            .post(format!("{}/webhooks/auth", self.main_url))
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", key.sign(id, timestamp, &body))
            .body(body)
            .send()
            .await
            .expect("webhook")
    }
}

/// Polls `check` until it holds or `within` passes; returns the time taken.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        if start.elapsed() > within {
            panic!("condition not met within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn unique_email() -> String {
    format!("user-{}@example.com", Uuid::new_v4().simple())
}
