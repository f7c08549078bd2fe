use clap::{Parser, Subcommand};
use main_backend::configuration::Settings;
use main_backend::{migrate, Application};

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

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    service_kit::server::main("main-backend", |listener| run(cli, listener))
}

async fn run(cli: Cli, listener: Option<std::net::TcpListener>) -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Migrate => {
            let n = migrate(&settings).await?;
            eprintln!("{n} migration(s) applied");
        }
        Command::Serve => {
            let app = match listener {
                Some(listener) => Application::build_on(settings, listener).await?,
                None => Application::build(settings).await?,
            };
            tracing::info!(port = app.port(), "main backend listening");
            app.run_until_stopped().await?;
        }
    }
    Ok(())
}
