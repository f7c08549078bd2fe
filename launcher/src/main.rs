//! Development launcher and benchmark driver.
//!
//! `cargo run -p launcher` runs the services locally on the embedded SQLite
//! default. Development secrets (API key, webhook secret, JWT signing key) are
//! generated on first run into `data/dev/` (git-ignored) and reused after that;
//! variables set in the environment win over them.
//!
//! `./scripts/bench` builds the release binaries and runs `launcher bench`,
//! which rewrites BENCHMARKS.md (see `bench.rs`); `./scripts/bench-pooler`
//! runs `launcher bench-pooler`, which rewrites its PgBouncer section, and
//! `./scripts/bench-tls` runs `launcher bench-tls`, which rewrites its TLS one.

mod bench;
mod bench_routes;
mod bench_sync;

use launcher::dev;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None | Some("dev") => dev::run().await,
        Some("bench") => bench::run(&args[1..]).await,
        Some("bench-pooler") => bench_routes::run(bench_routes::Route::Pooler, &args[1..]).await,
        Some("bench-tls") => bench_routes::run(bench_routes::Route::Tls, &args[1..]).await,
        Some(other) => {
            eprintln!("unknown command `{other}`; use `dev` (default) or `bench [--postgres URL] [--seconds N] [--out FILE]` or `bench-pooler --postgres URL --pooler URL [--seconds N]` or `bench-tls --postgres URL --tls URL [--seconds N]`");
            std::process::exit(2)
        }
    }
}
