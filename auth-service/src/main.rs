use auth_service::cli::{self, TokenCommand};
use auth_service::configuration::{self, Settings};
use auth_service::{migrate, Application};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "auth-service",
    version,
    about = "Users, passwords, sessions and tokens"
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
    /// Create, list and revoke service tokens on the configured database.
    #[command(subcommand)]
    ServiceToken(TokenCommand),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    service_kit::server::main("auth-service", |listener| run(cli, listener))
}

async fn run(cli: Cli, listener: Option<std::net::TcpListener>) -> anyhow::Result<()> {
    // One-off commands connect straight to the server, past any pooler.
    let database = configuration::database(configuration::env_var)?;
    let database_url = database.direct_url();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Migrate => {
            let n = migrate(database_url).await?;
            eprintln!("{n} migration(s) applied");
        }
        Command::ServiceToken(command) => {
            cli::service_token(database_url, command, &mut std::io::stdout().lock()).await?;
        }
        Command::Serve => {
            let settings = Settings::from_env()?;
            let app = match listener {
                Some(listener) => Application::build_on(settings, listener).await?,
                None => Application::build(settings).await?,
            };
            tracing::info!(port = app.port(), "auth service listening");
            app.run_until_stopped().await?;
        }
    }
    Ok(())
}
