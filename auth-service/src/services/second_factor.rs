//! The second factor of a user whose TOTP is enabled, as sign-in and
//! turning TOTP off check it.

use uuid::Uuid;

use super::Fault;
use crate::attempts::Attempt;
use crate::db::events::kind;
use crate::db::{self, mfa as mfa_db, Conn};
use crate::extractors::ClientInfo;
use crate::mfa;
use crate::tokens::hash_token;
use crate::AppState;

/// True for a current code not used before, or an unused recovery code
/// (spent by this call).
pub async fn check(
    state: &AppState,
    conn: &mut Conn<'_>,
    user_id: Uuid,
    code: &str,
) -> Result<bool, Fault> {
    let code = code.trim();
    if mfa::looks_like_totp(code) {
        let Some(row) = mfa_db::find(conn, user_id).await? else {
            return Ok(false);
        };
        let secret = mfa::open(&state.settings.secrets_key, user_id, &row.secret_sealed)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "TOTP secret does not open: was AUTH_SECRETS_KEY (or, without it, AUTH_SERVICE_API_KEY) changed?"
                )
            })?;
        return match mfa::matching_step(&secret, code, mfa::unix_now()) {
            Some(step) => Ok(mfa_db::accept_step(conn, user_id, step).await?),
            None => Ok(false),
        };
    }
    let normalized = mfa::normalize_recovery_code(code);
    if normalized.is_empty() {
        return Ok(false);
    }
    Ok(mfa_db::spend_recovery_code(conn, user_id, &hash_token(&normalized), db::now()).await?)
}

/// `check` inside the lockout slot a sign-in took for the user's email: a
/// wrong code is counted as a failed sign-in (and may lock). Answers the
/// slot back when the code was right, to settle with the sign-in. The
/// caller holds no connection: counting a failure takes one.
pub async fn check_in_slot(
    state: &AppState,
    client: &ClientInfo,
    user_id: Uuid,
    code: &str,
    attempt: Attempt,
) -> Result<Option<Attempt>, Fault> {
    let right = {
        let mut pooled = state.db.get().await?;
        check(state, &mut pooled.conn(), user_id, code).await?
    };
    if right {
        return Ok(Some(attempt));
    }
    attempt
        .failed(
            state,
            client,
            Some(user_id),
            kind::LOGIN_FAILED,
            "invalid second factor",
        )
        .await?;
    Ok(None)
}
