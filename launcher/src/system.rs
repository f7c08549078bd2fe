//! The real service binaries as child processes on loopback.
//!
//! The benchmark and the fault-injection suite both need what a user runs:
//! separate processes (so a kill -9 kills one service, and RSS is one
//! service's), fixed ports (so a restarted process is found where the other
//! service expects it), and logs kept on disk across restarts.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// The path of a workspace binary (`auth-service`, `main-backend`) built in
/// the same profile as the running executable. Test binaries live in
/// `target/<profile>/deps`, the launcher in `target/<profile>`.
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let mut dir = exe.parent().context("executable has no directory")?;
    if dir.ends_with("deps") {
        dir = dir.parent().context("deps has no parent")?;
    }
    let path = dir.join(name);
    anyhow::ensure!(
        path.exists(),
        "{} is not built; run `cargo build --bins` in the same profile first",
        path.display()
    );
    Ok(path)
}

/// A loopback port for a program that binds it itself (chromedriver, a
/// throwaway PostgreSQL): free a moment ago, so another process may take it
/// first. Our services get a [`Port`] instead.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A loopback socket bound now, handed to the service's first process
/// (`LISTEN_FDS`, as systemd does): its number can go to peers before
/// either starts, and no other process can take it meanwhile. The port is
/// fixed for the service's life, so a killed process comes back where its
/// peer looks for it (it binds the number again; only then could another
/// process have taken it).
pub struct Port {
    listener: Option<std::net::TcpListener>,
    pub number: u16,
}

/// The number, for URLs.
impl std::fmt::Display for Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.number)
    }
}

impl Port {
    pub fn new() -> anyhow::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        Ok(Self {
            number: listener.local_addr()?.port(),
            listener: Some(listener),
        })
    }
}

/// One running (or stopped) service process.
pub struct Service {
    pub name: String,
    pub port: u16,
    /// The bound socket, until the first process takes it.
    listener: Option<std::net::TcpListener>,
    exe: PathBuf,
    env: BTreeMap<String, String>,
    dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Service {
    /// Starts `exe` with exactly `env` (nothing inherited, and the working
    /// directory is `dir`, so no stray `.env` file is read).
    pub fn start(
        name: &str,
        exe: PathBuf,
        dir: &Path,
        port: Port,
        env: BTreeMap<String, String>,
    ) -> anyhow::Result<Self> {
        let mut service = Self {
            name: name.to_owned(),
            port: port.number,
            listener: port.listener,
            exe,
            env,
            dir: dir.to_owned(),
            log: dir.join(format!("{name}.log")),
            child: None,
        };
        service.spawn()?;
        Ok(service)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut command = Command::new(&self.exe);
        command
            .env_clear()
            .envs(&self.env)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if let Some(listener) = self.listener.take() {
            use command_fds::{CommandFdExt, FdMapping};
            command.env("LISTEN_FDS", "1").fd_mappings(vec![FdMapping {
                parent_fd: listener.into(),
                child_fd: 3,
            }])?;
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", self.exe.display()))?;
        self.child = Some(child);
        Ok(())
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Waits until `/health/live` answers 200; fails early when the process
    /// exits (its log says why).
    pub async fn ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    anyhow::bail!(
                        "{} exited with {status}; log:\n{}",
                        self.name,
                        self.log_tail(40)
                    );
                }
            }
            let live = client
                .get(format!("{}/health/live", self.url()))
                .timeout(Duration::from_millis(500))
                .send()
                .await;
            if matches!(&live, Ok(r) if r.status().is_success()) {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{} not live after {timeout:?}; log:\n{}",
                self.name,
                self.log_tail(40)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no shutdown hook, no flush, nothing graceful.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends a signal by name (`STOP`, `CONT`, `TERM`).
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let pid = self.pid().context("not running")?;
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()?;
        anyhow::ensure!(status.success(), "kill -{signal} {pid} failed");
        Ok(())
    }

    /// Starts the same binary again with the same environment and port.
    pub async fn restart(&mut self, timeout: Duration) -> anyhow::Result<()> {
        self.kill();
        self.spawn()?;
        self.ready(timeout).await
    }

    /// A field of `/proc/PID/status` in KiB: `VmRSS` (now) or `VmHWM` (peak).
    pub fn memory_kib(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status
            .lines()
            .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }

    /// Everything the process (and its earlier incarnations) wrote.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        // SIGKILL also ends a SIGSTOPped process.
        self.kill();
    }
}

/// Secrets and a working directory shared by every process of one system,
/// as a deployment shares them between replicas.
pub struct System {
    pub dir: PathBuf,
    secrets: HashMap<String, String>,
}

impl System {
    pub fn new(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let secrets = crate::dev::ensure_dev_secrets(&dir.join("secrets"))?;
        Ok(Self {
            dir: dir.to_owned(),
            secrets,
        })
    }

    /// The scratch directory: logs, secrets, the mail outbox (`mail.jsonl`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn api_key(&self) -> &str {
        self.secrets
            .get("AUTH_SERVICE_API_KEY")
            .map(String::as_str)
            .unwrap_or_default()
    }

    fn base_env(&self, extra: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut env: BTreeMap<String, String> = self
            .secrets
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        // Logs stay readable in the files; the services honour RUST_LOG.
        env.insert("RUST_LOG".into(), "info".into());
        for (k, v) in extra {
            env.insert((*k).into(), (*v).into());
        }
        env
    }

    /// An auth service on `port` with database `db_url`, delivering webhooks
    /// to `webhook_url`. The per-address rate limit is off: every client here
    /// is 127.0.0.1, and the limiter is not what is tested or measured.
    pub fn auth(
        &self,
        name: &str,
        port: Port,
        db_url: &str,
        webhook_url: &str,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<Service> {
        let mut env = self.base_env(&[
            ("AUTH_BIND", &format!("127.0.0.1:{}", port.number)),
            ("AUTH_DATABASE_URL", db_url),
            ("AUTH_WEBHOOK_URL", webhook_url),
            ("AUTH_RATE_LIMIT_PER_MINUTE", "0"),
            (
                "AUTH_MAIL_OUTBOX",
                &self.dir.join("mail.jsonl").display().to_string(),
            ),
        ]);
        env.extend(extra.iter().map(|(k, v)| ((*k).into(), (*v).into())));
        Service::start(name, binary("auth-service")?, &self.dir, port, env)
    }

    /// A main backend on `port` with database `db_url`, validating tokens
    /// at `auth_url`.
    pub fn main(
        &self,
        name: &str,
        port: Port,
        db_url: &str,
        auth_url: &str,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<Service> {
        let mut env = self.base_env(&[
            ("MAIN_BIND", &format!("127.0.0.1:{}", port.number)),
            ("DATABASE_URL", db_url),
            ("AUTH_SERVICE_URL", auth_url),
        ]);
        env.extend(extra.iter().map(|(k, v)| ((*k).into(), (*v).into())));
        Service::start(name, binary("main-backend")?, &self.dir, port, env)
    }
}
