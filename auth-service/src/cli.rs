//! `auth-service service-token ...`: service tokens managed straight on the
//! configured database (`AUTH_DATABASE_URL`), with or without the server
//! running; this is how the first admin token is made. Only the database URL
//! is read, so no server secret is needed. What a script captures goes to
//! stdout (the token alone, on one line); notes go to stderr.

use std::io::Write;

use clap::Subcommand;
use secrecy::ExposeSecret;
use uuid::Uuid;

use crate::db::events::{self, kind};
use crate::db::service_tokens as rows;
use crate::db::{self, DbPool};
use crate::domain::TokenSpec;
use crate::services::service_tokens::{self, audit_event, CREATED_BY_CLI};
use service_kit::transaction;

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it (alone, on stdout). It is shown only this once.
    Create {
        /// What the token is for, e.g. "ci" or "ops-dashboard".
        #[arg(long)]
        name: String,
        /// A scope to grant (admin, internal, ops, or your own); repeat for more.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// Expire after this many days (default: never).
        #[arg(long)]
        expires_in_days: Option<i64>,
    },
    /// List every token (never their values), tab-separated with a header.
    List,
    /// Revoke one token by id.
    Revoke { id: Uuid },
    /// Revoke every token at once (the emergency switch).
    RevokeAll,
}

/// Runs one command; `out` is stdout in the binary.
pub async fn service_token(
    database_url: &str,
    command: TokenCommand,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    crate::migrate(database_url).await?;
    let pool = DbPool::connect(database_url, 1).await?;
    let mut pooled = pool.get().await?;
    let conn = &mut pooled.conn();
    let by_cli = |detail: String| audit_event(kind::ADMIN_ACTION, None, None, true, Some(detail));
    match command {
        TokenCommand::Create {
            name,
            scopes,
            expires_in_days,
        } => {
            let spec = TokenSpec::parse(&name, &scopes, expires_in_days, None)
                .map_err(|e| anyhow::anyhow!("{}", e.detail))?;
            let created =
                service_tokens::create(conn, &spec, CREATED_BY_CLI, by_cli(String::new())).await?;
            writeln!(out, "{}", created.token.expose_secret())?;
            eprintln!(
                "created service token {} ({}) with scopes {}{}; it is shown only once",
                created.row.id.0,
                created.row.name,
                spec.scopes.join(","),
                created
                    .row
                    .expires_at
                    .map(|t| format!(", expiring {}", t.0.to_rfc3339()))
                    .unwrap_or_default()
            );
        }
        TokenCommand::List => {
            let list = rows::list(conn).await?;
            writeln!(
                out,
                "id\tname\tscopes\tcreated_at\texpires_at\tlast_used_at\tuse_count\tstatus"
            )?;
            let now = db::now();
            let time = |t: Option<db::DbTime>| t.map(|t| t.0.to_rfc3339()).unwrap_or("-".into());
            for row in &list {
                let status = if row.revoked_at.is_some() {
                    "revoked"
                } else if row.is_active(now) {
                    "active"
                } else {
                    "expired"
                };
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{status}",
                    row.id.0,
                    row.name,
                    row.scope_list().join(","),
                    row.created_at.0.to_rfc3339(),
                    time(row.expires_at),
                    time(row.last_used_at),
                    row.use_count,
                )?;
            }
        }
        TokenCommand::Revoke { id } => {
            let found = transaction!(conn, |tx| -> diesel::result::Error {
                let found = rows::revoke(tx, id, db::now()).await?;
                if found == Some(true) {
                    events::record(tx, &by_cli(format!("revoked service token {id}"))).await?;
                }
                Ok(found)
            })?;
            match found {
                Some(true) => eprintln!("revoked {id}"),
                Some(false) => eprintln!("{id} was already revoked"),
                None => anyhow::bail!("no service token {id}"),
            }
        }
        TokenCommand::RevokeAll => {
            let revoked = transaction!(conn, |tx| -> diesel::result::Error {
                let revoked = rows::revoke_all(tx, db::now()).await?;
                events::record(
                    tx,
                    &by_cli(format!("revoked all service tokens ({revoked})")),
                )
                .await?;
                Ok(revoked)
            })?;
            eprintln!("revoked {revoked} service token(s)");
        }
    }
    Ok(())
}
