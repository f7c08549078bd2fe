//! Sessions: the token pair a session hands out, refreshing it (a spent
//! refresh token presented again is reuse, and ends the session), and
//! signing out.

use chrono::{DateTime, Duration, Utc};
use shared_types::TokenPair;
use uuid::Uuid;

use super::{audit, faults, Fault};
use crate::db::events::{self, kind};
use crate::db::sessions::{self, RefreshToken, Session};
use crate::db::sql_types::{DbTime, DbUuid};
use crate::db::{self, users, Conn};
use crate::extractors::ClientInfo;
use crate::tokens::{hash_token, random_token};
use crate::AppState;
use service_kit::transaction;

/// Why a refresh token bought nothing.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// Unknown, expired, of an ended session or a locked account.
    #[error("the refresh token is invalid or expired")]
    Invalid,
    /// Spent before, outside the grace period: the session is now revoked.
    #[error("this refresh token was already used; the session has been revoked, sign in again")]
    Reused,
    #[error(transparent)]
    Fault(#[from] Fault),
}

faults!(RefreshError);

/// A refresh token and its row: enough to (re)build the pair the client
/// receives.
struct Issued {
    refresh_token: String,
    row: RefreshToken,
}

fn token_pair(state: &AppState, session: &Session, issued: &Issued) -> Result<TokenPair, Fault> {
    let access = state.keys.issue_access(
        session.user_id.0,
        session.id.0,
        issued.row.access_jti.0,
        issued.row.issued_at.0,
    )?;
    Ok(TokenPair {
        access_token: access,
        refresh_token: issued.refresh_token.clone(),
        token_type: "Bearer".into(),
        expires_in: state.keys.access_ttl_seconds(),
        session_id: session.id.0,
        user_id: session.user_id.0,
    })
}

fn new_refresh_row(
    state: &AppState,
    session_id: Uuid,
    token: &str,
    parent: Option<Uuid>,
    now: DateTime<Utc>,
) -> RefreshToken {
    RefreshToken {
        id: DbUuid(Uuid::now_v7()),
        session_id: DbUuid(session_id),
        token_hash: hash_token(token),
        parent_id: parent.map(DbUuid),
        access_jti: DbUuid(Uuid::new_v4()),
        issued_at: DbTime(now),
        expires_at: DbTime(now + Duration::days(state.settings.refresh_token_days)),
        used_at: None,
    }
}

/// Opens a session with its first refresh token, inside the caller's
/// transaction (a sign-up or sign-in that commits with it).
pub async fn start(
    state: &AppState,
    tx: &mut Conn<'_>,
    user_id: Uuid,
    client: &ClientInfo,
    now: DateTime<Utc>,
) -> Result<TokenPair, Fault> {
    let session = Session {
        id: DbUuid(Uuid::now_v7()),
        user_id: DbUuid(user_id),
        created_at: DbTime(now),
        last_used_at: DbTime(now),
        expires_at: DbTime(now + Duration::days(state.settings.refresh_token_days)),
        ip: client.ip_string(),
        user_agent: client.user_agent.clone(),
        revoked_at: None,
        revoked_reason: None,
    };
    sessions::insert(tx, &session).await?;
    let refresh_token = random_token();
    let row = new_refresh_row(state, session.id.0, &refresh_token, None, now);
    sessions::insert_refresh_token(tx, &row).await?;
    token_pair(state, &session, &Issued { refresh_token, row })
}

/// Exchanges a refresh token for a new pair and spends it.
///
/// A spent token presented again within `AUTH_REFRESH_REUSE_GRACE_SECONDS`
/// (two tabs refreshing at once, a retried request) gets the same pair the
/// first exchange produced; after that it is reuse (a sign the token was
/// stolen) and the whole session is revoked.
pub async fn refresh(
    state: &AppState,
    client: &ClientInfo,
    presented: &str,
) -> Result<TokenPair, RefreshError> {
    use RefreshError::Invalid;
    let now = db::now();
    let mut pooled = state.db.get().await?;
    let conn = &mut pooled.conn();
    let hash = hash_token(presented);
    let (token, session) = sessions::find_refresh_token(conn, &hash)
        .await?
        .ok_or(Invalid)?;
    if token.expires_at.0 <= now {
        return Err(Invalid);
    }
    if token.used_at.is_none() {
        if !session.is_active(now) {
            return Err(Invalid);
        }
        let user = users::find(conn, session.user_id.0).await?.ok_or(Invalid)?;
        if user.account_locked {
            return Err(Invalid);
        }
        let successor = state.keys.successor_refresh_token(presented);
        let row = new_refresh_row(state, session.id.0, &successor, Some(token.id.0), now);
        let won = transaction!(conn, |tx| -> RefreshError {
            if !sessions::spend_refresh_token(tx, token.id.0, now).await? {
                return Ok(false);
            }
            sessions::insert_refresh_token(tx, &row).await?;
            sessions::touch(tx, session.id.0, now, row.expires_at.0).await?;
            events::record(
                tx,
                &audit(kind::REFRESH, Some(session.user_id.0), client, true, None),
            )
            .await?;
            Ok(true)
        })?;
        if won {
            let issued = Issued {
                refresh_token: successor,
                row,
            };
            return Ok(token_pair(state, &session, &issued)?);
        }
    }
    // Spent, possibly a moment ago by a request racing this one.
    let (token, session) = sessions::find_refresh_token(conn, &hash)
        .await?
        .ok_or(Invalid)?;
    let used_at = token.used_at.map_or(now, |t| t.0);
    let in_grace = now - used_at <= Duration::seconds(state.settings.refresh_reuse_grace_seconds);
    if in_grace && session.is_active(now) {
        if let Some(row) = sessions::find_successor(conn, token.id.0).await? {
            let successor = state.keys.successor_refresh_token(presented);
            // Recomputed, so checked: were the derivation key changed
            // meanwhile, this would be a token never stored. Fail closed
            // (without calling it reuse: the client did nothing wrong).
            if hash_token(&successor) != row.token_hash {
                tracing::warn!(session_id = %session.id.0, "refresh successor does not match its stored hash (was AUTH_SECRETS_KEY changed?)");
                return Err(Invalid);
            }
            let issued = Issued {
                refresh_token: successor,
                row,
            };
            return Ok(token_pair(state, &session, &issued)?);
        }
    }
    transaction!(conn, |tx| -> RefreshError {
        sessions::revoke(
            tx,
            session.user_id.0,
            session.id.0,
            "refresh_token_reused",
            now,
        )
        .await?;
        events::record(
            tx,
            &audit(
                kind::REFRESH_REUSED,
                Some(session.user_id.0),
                client,
                false,
                None,
            ),
        )
        .await?;
        Ok(())
    })?;
    state.outbox.wake();
    tracing::warn!(user_id = %session.user_id.0, session_id = %session.id.0, "refresh token reused; session revoked");
    Err(RefreshError::Reused)
}

/// The live session a refresh token belongs to, if any.
pub async fn of_refresh_token(state: &AppState, token: &str) -> Result<Option<Session>, Fault> {
    let mut pooled = state.db.get().await?;
    Ok(
        sessions::find_refresh_token(&mut pooled.conn(), &hash_token(token))
            .await?
            .map(|(_, session)| session)
            .filter(|s| s.revoked_at.is_none()),
    )
}

/// Ends these sessions, each `(user id, session id)`; audited as logouts.
pub async fn sign_out(
    state: &AppState,
    client: &ClientInfo,
    ended: &[(Uuid, Uuid)],
) -> Result<(), Fault> {
    if ended.is_empty() {
        return Ok(());
    }
    let mut pooled = state.db.get().await?;
    let conn = &mut pooled.conn();
    let now = db::now();
    transaction!(conn, |tx| -> Fault {
        for (user_id, session_id) in ended {
            sessions::revoke(tx, *user_id, *session_id, "logout", now).await?;
            events::record(
                tx,
                &audit(
                    kind::LOGOUT,
                    Some(*user_id),
                    client,
                    true,
                    Some("this session"),
                ),
            )
            .await?;
        }
        Ok(())
    })?;
    state.outbox.wake();
    Ok(())
}

/// Ends one of `user_id`'s own sessions; false when it has no such live
/// session (someone else's id is answered like an unknown one).
pub async fn end_own(state: &AppState, user_id: Uuid, session_id: Uuid) -> Result<bool, Fault> {
    let mut pooled = state.db.get().await?;
    let conn = &mut pooled.conn();
    let revoked = transaction!(conn, |tx| -> Fault {
        Ok(sessions::revoke(tx, user_id, session_id, "revoked_by_user", db::now()).await?)
    })?;
    if revoked {
        state.outbox.wake();
    }
    Ok(revoked)
}

/// Ends every session of `user_id`.
pub async fn sign_out_everywhere(
    state: &AppState,
    client: &ClientInfo,
    user_id: Uuid,
) -> Result<(), Fault> {
    let mut pooled = state.db.get().await?;
    let conn = &mut pooled.conn();
    let now = db::now();
    transaction!(conn, |tx| -> Fault {
        let revoked = sessions::revoke_all(tx, user_id, None, "logout_all", now).await?;
        let detail = format!("all sessions ({})", revoked.len());
        events::record(
            tx,
            &audit(kind::LOGOUT, Some(user_id), client, true, Some(&detail)),
        )
        .await?;
        Ok(())
    })?;
    state.outbox.wake();
    Ok(())
}
