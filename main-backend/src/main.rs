use clap::{Parser, Subcommand};
use main_backend::configuration::Settings;
use main_backend::{migrate, telemetry, Application};

#[derive(Parser)]
#[command(
    name = "main-backend",
    version,
    about = "Business backend with a mirror of the auth service's users"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Apply pending migrations and serve (the default).
    Serve,
    /// Apply pending migrations and exit.
    Migrate,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let _ = dotenvy::dotenv();
    telemetry::init("info");
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("main-backend: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Migrate => {
            let n = migrate(&settings).await?;
            eprintln!("{n} migration(s) applied");
        }
        Command::Serve => {
            let app = Application::build(settings).await?;
            tracing::info!(port = app.port(), "main backend listening");
            app.run_until_stopped().await?;
        }
    }
    Ok(())
}
