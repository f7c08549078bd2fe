//! The short-lived, single-use secrets of a sign-in ceremony (a provider's
//! state, its one-time code, a link ticket, a passkey challenge), kept in
//! `oauth_flows` (`db::identities`): stored by the secret's hash, their
//! data sealed under `AUTH_SECRETS_KEY` and bound to the row's kind and id.

use chrono::Duration;
use serde::{de::DeserializeOwned, Serialize};

use super::Fault;
use crate::db;
use crate::db::identities::{self, Flow};
use crate::db::sql_types::{DbTime, DbUuid};
use crate::tokens::hash_token;
use crate::AppState;

impl AppState {
    /// The row of a new flow secret, expiring `ttl` from now.
    pub(crate) fn flow_row(
        &self,
        kind: &str,
        secret: &str,
        provider: &str,
        user_id: Option<DbUuid>,
        ttl: Duration,
        data: &impl Serialize,
    ) -> Result<Flow, Fault> {
        let id = hash_token(secret);
        let json = serde_json::to_vec(data).map_err(anyhow::Error::from)?;
        let now = db::now();
        Ok(Flow {
            data: self
                .settings
                .secrets_key
                .seal_text(format!("oauth_flows:{kind}:{id}").as_bytes(), &json),
            id,
            kind: kind.into(),
            provider: provider.to_owned(),
            user_id,
            expires_at: DbTime(now + ttl),
            created_at: DbTime(now),
        })
    }

    /// A taken row's data; `None` when it does not open (or is not a `T`).
    pub(crate) fn open_flow<T: DeserializeOwned>(&self, flow: &Flow) -> Option<T> {
        let aad = format!("oauth_flows:{}:{}", flow.kind, flow.id);
        let plain = self
            .settings
            .secrets_key
            .open_text(aad.as_bytes(), &flow.data)
            .ok()?;
        serde_json::from_slice(&plain).ok()
    }

    /// Takes the flow secret `secret` of `kind` (single use) and opens it.
    pub(crate) async fn take_flow<T: DeserializeOwned>(
        &self,
        kind: &str,
        secret: &str,
    ) -> Result<Option<(Flow, T)>, Fault> {
        let mut pooled = self.db.get().await?;
        let taken =
            identities::take_flow(&mut pooled.conn(), &hash_token(secret), kind, db::now()).await?;
        Ok(taken.and_then(|flow| self.open_flow(&flow).map(|data| (flow, data))))
    }
}
