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
mod bench_events;
mod bench_oauth;
mod bench_routes;
mod bench_scale;
mod bench_sync;

use launcher::dev;

#[derive(clap::Parser)]
#[command(
    name = "launcher",
    about = "Both services for development, and the benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Both services on SQLite with generated development secrets (the default).
    Dev,
    /// The benchmark; rewrites BENCHMARKS.md.
    Bench(bench::Args),
    /// Through a transaction-mode pooler against direct; rewrites its section.
    BenchPooler(bench_routes::Args),
    /// Over TLS against plain connections; rewrites its section.
    BenchTls(bench_routes::Args),
    /// 10,000 and 1,000,000 users on PostgreSQL; rewrites its section.
    BenchScale(bench_scale::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    use clap::Parser;
    match Cli::parse().command.unwrap_or(Command::Dev) {
        Command::Dev => dev::run().await,
        Command::Bench(args) => bench::run(args).await,
        Command::BenchPooler(args) => bench_routes::run(bench_routes::Route::Pooler, args).await,
        Command::BenchTls(args) => bench_routes::run(bench_routes::Route::Tls, args).await,
        Command::BenchScale(args) => bench_scale::run(args).await,
    }
}
