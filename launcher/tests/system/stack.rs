//! One auth service and one main backend as real processes, each with a
//! database of its own: what the fault and browser tests start.

use std::path::PathBuf;
use std::time::Duration;

use launcher::system::{Port, Service, System};
use service_kit::testing::TestDb;
use uuid::Uuid;

/// The tests of this binary run one at a time: they time timeouts and
/// drive browsers, and two cores shared by several systems would blur them.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
pub const READY: Duration = Duration::from_secs(30);

pub fn postgres() -> Option<String> {
    std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres"))
}

/// One auth service and one main backend, each with a database of its own.
pub struct Stack {
    pub system: System,
    pub auth: Service,
    pub main: Service,
    pub auth_db: String,
    pub main_db: String,
    pub client: reqwest::Client,
    pub _dbs: Vec<TestDb>,
    /// Last, so it is dropped after the services.
    _scratch: Scratch,
}

pub fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("faults-{name}-{}", Uuid::new_v4().simple()))
}

/// Removes a system's directory (databases, logs, mail) when dropped,
/// unless the test failed: then it stays for a look. Held after the
/// processes that write there, so they have stopped first.
pub struct Scratch(pub PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Stack {
    /// `auth_extra` and `main_extra` add or override environment variables.
    pub async fn start(
        name: &str,
        auth_extra: &[(&str, &str)],
        main_extra: &[(&str, &str)],
    ) -> Self {
        Self::start_on_host(name, "127.0.0.1", auth_extra, main_extra).await
    }

    pub async fn on(
        system: System,
        auth_db: String,
        main_db: String,
        dbs: Vec<TestDb>,
        auth_extra: &[(&str, &str)],
        main_extra: &[(&str, &str)],
    ) -> Self {
        Self::on_host(
            system,
            auth_db,
            main_db,
            dbs,
            "127.0.0.1",
            auth_extra,
            main_extra,
        )
        .await
    }

    /// As `start`, with browsers reaching both services at `localhost`
    /// (they listen on 127.0.0.1 all the same): passkeys need a host name,
    /// browsers refuse an IP address as a relying party id.
    pub async fn start_at_localhost(
        name: &str,
        auth_extra: &[(&str, &str)],
        main_extra: &[(&str, &str)],
    ) -> Self {
        Self::start_on_host(name, "localhost", auth_extra, main_extra).await
    }

    async fn start_on_host(
        name: &str,
        host: &str,
        auth_extra: &[(&str, &str)],
        main_extra: &[(&str, &str)],
    ) -> Self {
        let dir = scratch(name);
        let system = System::new(&dir).expect("system dir");
        let (auth_tdb, auth_db) = TestDb::create(&dir, "auth").await;
        let (main_tdb, main_db) = TestDb::create(&dir, "main").await;
        Self::on_host(
            system,
            auth_db,
            main_db,
            vec![auth_tdb, main_tdb],
            host,
            auth_extra,
            main_extra,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn on_host(
        system: System,
        auth_db: String,
        main_db: String,
        dbs: Vec<TestDb>,
        host: &str,
        auth_extra: &[(&str, &str)],
        main_extra: &[(&str, &str)],
    ) -> Self {
        let (auth_port, main_port) = (Port::new().unwrap(), Port::new().unwrap());
        // Retries start at 100 ms so a restarted receiver is found quickly.
        // The main backend's web app may use cookie mode, as in development.
        let app_url = format!("http://{host}:{main_port}");
        // Where browsers reach the auth service: a provider sends them back
        // to its callback there.
        let auth_public = format!("http://{host}:{auth_port}");
        let mut auth_env = vec![
            ("AUTH_PUBLIC_URL", auth_public.as_str()),
            ("AUTH_WEBHOOK_BACKOFF_MS", "100"),
            ("AUTH_APP_URL", &app_url),
            ("CORS_ALLOWED_ORIGINS", &app_url),
            ("CORS_ALLOW_CREDENTIALS", "true"),
        ];
        // Behind a pooler (TEST_DATABASE_POOLER_URL) the services connect
        // through it; `dbs` is [auth, main] when the stack made them.
        let pooled: Vec<Vec<(String, String)>> = match dbs.as_slice() {
            [a, m] => vec![
                a.service_env("AUTH_DATABASE_URL", &auth_db),
                m.service_env("DATABASE_URL", &main_db),
            ],
            _ => vec![Vec::new(), Vec::new()],
        };
        auth_env.extend(pooled[0].iter().map(|(k, v)| (k.as_str(), v.as_str())));
        auth_env.extend_from_slice(auth_extra);
        let mut auth = system
            .auth(
                "auth",
                auth_port,
                &auth_db,
                &format!("http://127.0.0.1:{main_port}/webhooks/auth"),
                &auth_env,
            )
            .unwrap();
        auth.ready(READY).await.unwrap();
        let mut main_env = vec![
            ("SYNC_INTERVAL_SECONDS", "0"),
            ("AUTH_PUBLIC_URL", auth_public.as_str()),
        ];
        main_env.extend(pooled[1].iter().map(|(k, v)| (k.as_str(), v.as_str())));
        main_env.extend_from_slice(main_extra);
        let mut main = system
            .main("main", main_port, &main_db, &auth.url(), &main_env)
            .unwrap();
        main.ready(READY).await.unwrap();
        Self {
            _scratch: Scratch(system.dir().to_owned()),
            system,
            auth,
            main,
            auth_db,
            main_db,
            client: client(),
            _dbs: dbs,
        }
    }
}

impl Stack {
    /// The main backend's `GET /health/sync`.
    pub async fn sync_health(&self) -> serde_json::Value {
        get_json(
            &self.client,
            &format!("{}/health/sync", self.main.url()),
            None,
        )
        .await
    }
}

/// `GET url` (with a bearer token when given), the body as JSON.
pub async fn get_json(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
) -> serde_json::Value {
    let mut req = client.get(url);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    req.send().await.unwrap().json().await.unwrap()
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}
