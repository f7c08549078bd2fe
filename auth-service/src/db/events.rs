//! The audit trail (`authentication_events`). Rows never hold a password or token.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use super::schema::authentication_events;
use super::sql_types::{DbTime, DbUuid};
use super::Conn;
use service_kit::run;

/// Event kinds named by the contract's audit endpoint.
pub mod kind {
    pub const LOGIN_SUCCEEDED: &str = "login_succeeded";
    pub const LOGIN_FAILED: &str = "login_failed";
    pub const REFRESH: &str = "refresh";
    pub const REFRESH_REUSED: &str = "refresh_reused";
    pub const LOGOUT: &str = "logout";
    pub const LOCKOUT: &str = "lockout";
    pub const PASSWORD_CHANGED: &str = "password_changed";
    pub const PASSWORD_RESET: &str = "password_reset";
    pub const EMAIL_VERIFIED: &str = "email_verified";
    pub const EMAIL_CHANGED: &str = "email_changed";
    pub const MFA_ENABLED: &str = "mfa_enabled";
    pub const MFA_DISABLED: &str = "mfa_disabled";
    pub const SERVICE_TOKEN_USED: &str = "service_token_used";
    pub const ADMIN_ACTION: &str = "admin_action";
    pub const OAUTH_LOGIN: &str = "oauth_login";
    pub const IDENTITY_LINKED: &str = "identity_linked";
    pub const IDENTITY_UNLINKED: &str = "identity_unlinked";
    pub const PASSKEY_ADDED: &str = "passkey_added";
    pub const PASSKEY_REMOVED: &str = "passkey_removed";

    /// Every kind the audit endpoint can be filtered by.
    pub const ALL: &[&str] = &[
        LOGIN_SUCCEEDED,
        LOGIN_FAILED,
        LOCKOUT,
        REFRESH,
        REFRESH_REUSED,
        LOGOUT,
        PASSWORD_CHANGED,
        PASSWORD_RESET,
        EMAIL_VERIFIED,
        EMAIL_CHANGED,
        MFA_ENABLED,
        MFA_DISABLED,
        SERVICE_TOKEN_USED,
        ADMIN_ACTION,
        OAUTH_LOGIN,
        IDENTITY_LINKED,
        IDENTITY_UNLINKED,
        PASSKEY_ADDED,
        PASSKEY_REMOVED,
    ];
}

#[derive(Debug, Clone, Insertable, Queryable, Selectable)]
#[diesel(table_name = authentication_events)]
pub struct AuthEvent {
    pub id: DbUuid,
    pub kind: String,
    pub user_id: Option<DbUuid>,
    pub service_token_id: Option<DbUuid>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub endpoint: Option<String>,
    pub request_id: Option<String>,
    /// Cloudflare's id of the request (`cf-ray`), when it came through Cloudflare.
    pub cf_ray: Option<String>,
    pub success: bool,
    pub detail: Option<String>,
    pub created_at: DbTime,
}

pub async fn record(conn: &mut Conn<'_>, event: &AuthEvent) -> QueryResult<()> {
    run!(conn, |c| diesel::insert_into(authentication_events::table)
        .values(event)
        .execute(c)
        .await)?;
    Ok(())
}

/// Writes a batch (the buffered service-token uses) in one statement on
/// PostgreSQL; SQLite has no multi-row insert for these types in diesel, so
/// there it is one statement per row (call it inside a transaction).
pub async fn record_many(conn: &mut Conn<'_>, batch: &[AuthEvent]) -> QueryResult<()> {
    if batch.is_empty() {
        return Ok(());
    }
    match conn {
        Conn::Pg(c) => {
            // PostgreSQL takes at most 65535 bind parameters per statement.
            for chunk in batch.chunks(4096) {
                diesel::insert_into(authentication_events::table)
                    .values(chunk)
                    .execute(&mut **c)
                    .await?;
            }
        }
        Conn::Sqlite(_) => {
            for event in batch {
                record(conn, event).await?;
            }
        }
    }
    Ok(())
}

/// Newest first, optionally for one user and/or one kind.
pub async fn list(
    conn: &mut Conn<'_>,
    user_id: Option<Uuid>,
    kind: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<AuthEvent>> {
    run!(conn, |c| {
        let mut q = authentication_events::table
            .select(AuthEvent::as_select())
            .order((
                authentication_events::created_at.desc(),
                authentication_events::id.desc(),
            ))
            .limit(limit)
            .into_boxed();
        if let Some(user_id) = user_id {
            q = q.filter(authentication_events::user_id.eq(DbUuid(user_id)));
        }
        if let Some(kind) = kind {
            q = q.filter(authentication_events::kind.eq(kind));
        }
        q.load(c).await
    })
}
