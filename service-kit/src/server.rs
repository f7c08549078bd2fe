//! Starting and stopping a service, the same way for both: where it
//! listens, the middleware every app has, and the background tasks that
//! stop after the last request.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::{middleware, web, App, HttpServer};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::CorsSettings;
use crate::metrics::Metrics;

/// A socket handed over by whoever started the process (systemd socket
/// activation, `systemfd`, the system tests): `LISTEN_FDS`. It is bound
/// before the process starts, so its port can be given to peers first and
/// never races another process for it. Call it in `main` before the
/// runtime starts threads: listenfd clears the variables it read (with
/// `env::remove_var`), which is sound only while the process has one
/// thread.
pub fn inherited_listener() -> anyhow::Result<Option<TcpListener>> {
    listenfd::ListenFd::from_env()
        .take_tcp_listener(0)
        .map_err(|e| anyhow::anyhow!("LISTEN_FDS: {e}"))
}

/// Listens on `addr` (port 0: any free port); `var` names the variable it
/// came from, for the error.
pub fn bind(var: &str, addr: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).map_err(|e| anyhow::anyhow!("{var}: cannot listen on {addr}: {e}"))
}

/// Tasks that run beside the server and stop after it: each is given
/// `stopped()`, a receiver that turns true when the server has stopped,
/// and then finishes what it is doing and returns.
pub struct Background {
    stop: watch::Sender<bool>,
    draining: Arc<watch::Sender<bool>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Default for Background {
    fn default() -> Self {
        Self {
            stop: watch::channel(false).0,
            draining: Arc::new(watch::channel(false).0),
            tasks: Vec::new(),
        }
    }
}

impl Background {
    /// Turns true when a shutdown signal came, before in-flight requests
    /// are waited for: a request that would otherwise wait long (a
    /// long-poll, an event stream) answers at once instead of holding the
    /// shutdown up to its deadline.
    pub fn draining(&self) -> watch::Receiver<bool> {
        self.draining.subscribe()
    }

    /// Turns true at shutdown.
    pub fn stopped(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    pub fn spawn(&mut self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tasks.push(tokio::spawn(task));
    }
}

/// Stops a server from outside, announcing draining first (as a signal
/// does), so long-polls and event streams answer at once.
#[derive(Clone)]
pub struct Handle {
    server: actix_web::dev::ServerHandle,
    draining: Arc<watch::Sender<bool>>,
}

impl Handle {
    /// As `actix_web::dev::ServerHandle::stop`; the command is sent at
    /// once, the future only waits.
    pub fn stop(&self, graceful: bool) -> impl std::future::Future<Output = ()> + use<> {
        let _ = self.draining.send(true);
        self.server.stop(graceful)
    }
}

/// What differs between the services' HTTP servers.
pub struct Options {
    pub workers: Option<usize>,
    pub max_body: usize,
    pub cors: CorsSettings,
    /// Request headers of the service's own that browsers may send across
    /// origins (beside `Authorization`, `Content-Type`, `X-Request-Id`).
    pub cors_headers: &'static [&'static str],
    /// The request counters `observe_requests` feeds.
    pub metrics: Metrics,
}

/// A running service: its server and its background tasks.
pub struct Server {
    port: u16,
    server: actix_web::dev::Server,
    background: Background,
}

/// Serves on `listener` with what every app of ours has (request metrics,
/// CORS, a request span and id, problem details for every error, the body
/// limit) around the routes and state `configure` adds.
pub fn serve<F>(
    listener: TcpListener,
    options: Options,
    background: Background,
    configure: F,
) -> anyhow::Result<Server>
where
    F: Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
{
    let port = listener.local_addr()?.port();
    let metrics = web::Data::new(options.metrics);
    let (cors, cors_headers, max_body) = (options.cors, options.cors_headers, options.max_body);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(metrics.clone())
            .wrap(middleware::from_fn(crate::metrics::observe_requests))
            .wrap(crate::http::cors(&cors, cors_headers))
            .wrap(middleware::from_fn(crate::telemetry::request_span))
            .configure(|cfg| crate::http::configure_errors(cfg, max_body))
            .configure(configure.clone())
    });
    let server = match options.workers {
        Some(n) => server.workers(n),
        None => server,
    };
    // Signals are ours (`run_until_stopped`): draining is announced before
    // the graceful stop starts waiting for requests.
    let server = server
        .listen(listener)?
        .shutdown_timeout(30)
        .disable_signals()
        .run();
    Ok(Server {
        port,
        server,
        background,
    })
}

impl Server {
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server from outside (tests, the launcher).
    pub fn handle(&self) -> Handle {
        Handle {
            server: self.server.handle(),
            draining: self.background.draining.clone(),
        }
    }

    /// Serves until the server is stopped (SIGTERM/Ctrl-C: in-flight
    /// requests finish), then tells the background tasks to stop and waits
    /// for each to finish what it was doing.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let handle = self.server.handle();
        let mut server = std::pin::pin!(self.server);
        let served = tokio::select! {
            served = &mut server => served,
            () = shutdown_signal() => {
                tracing::info!("shutting down: finishing in-flight requests");
                let _ = self.background.draining.send(true);
                handle.stop(true).await;
                server.await
            }
        };
        let _ = self.background.stop.send(true);
        for task in self.background.tasks {
            let _ = task.await;
        }
        served
    }
}

/// SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// A service's `main`: reads `.env` and takes a handed-over socket while
/// the process still has one thread (both change or read the environment),
/// then starts logging and the runtime and runs `run` on it. An error ends
/// the process with one line naming `name` and exit code 1.
pub fn main<F, Fut>(name: &str, run: F) -> std::process::ExitCode
where
    F: FnOnce(Option<TcpListener>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let _ = dotenvy::dotenv();
    let outcome = inherited_listener().and_then(|listener| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            crate::telemetry::init("info");
            run(listener).await
        })
    });
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
