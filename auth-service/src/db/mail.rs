//! The mail queue: `mail_queue`.
//!
//! A mail is written in the same transaction as the token it carries (a
//! reset, a verification), so a committed token always has its mail, and a
//! rolled-back one never does. The payload (subject, token, link) is sealed
//! under the service's secrets key and erased once the mail is sent or
//! given up on: the token itself is stored in clear nowhere. The sender is
//! `crate::mail`; claims use the same lease as the webhook outbox.

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::{Deserialize, Serialize};
use service_kit::crypto::SealingKey;
use service_kit::run;
use uuid::Uuid;

use super::schema::mail_queue as mq;
use super::sql_types::{DbTime, DbUuid};
use super::Conn;

/// The `kind` of a mail, as written to the outbox file.
pub mod kind {
    pub const EMAIL_VERIFICATION: &str = "email_verification";
    pub const PASSWORD_RESET: &str = "password_reset";
    /// To the new address, with the confirmation token.
    pub const EMAIL_CHANGE: &str = "email_change";
    /// To the old address, without a token.
    pub const EMAIL_CHANGE_NOTICE: &str = "email_change_notice";
    /// A notice (no token) that two-factor sign-in was turned on.
    pub const MFA_ENABLED: &str = "mfa_enabled";
}

pub mod status {
    pub const PENDING: &str = "pending";
    pub const SENT: &str = "sent";
    pub const FAILED: &str = "failed";
}

/// What is sealed. No `Debug`: it holds a token.
#[derive(Serialize, Deserialize)]
pub struct Payload {
    pub subject: String,
    pub token: Option<String>,
    pub link: Option<String>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = mq)]
pub struct QueuedMail {
    pub id: DbUuid,
    pub kind: String,
    pub to_addr: String,
    pub payload_sealed: Option<String>,
    pub attempts: i32,
}

fn aad(id: Uuid) -> Vec<u8> {
    let mut aad = b"auth-service mail v1\0".to_vec();
    aad.extend_from_slice(id.as_bytes());
    aad
}

impl QueuedMail {
    pub fn open(&self, key: &SealingKey) -> Option<Payload> {
        let sealed = self.payload_sealed.as_deref()?;
        let plain = key.open_text(&aad(self.id.0), sealed).ok()?;
        serde_json::from_slice(&plain).ok()
    }
}

/// Queues one mail; call it inside the transaction that creates its token.
pub async fn enqueue(
    tx: &mut Conn<'_>,
    key: &SealingKey,
    kind: &str,
    to: &str,
    payload: &Payload,
) -> QueryResult<Uuid> {
    let id = Uuid::now_v7();
    let plain = serde_json::to_vec(payload)
        .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
    let sealed = key.seal_text(&aad(id), &plain);
    let now = super::now();
    run!(tx, |c| diesel::insert_into(mq::table)
        .values((
            mq::id.eq(DbUuid(id)),
            mq::kind.eq(kind),
            mq::to_addr.eq(to),
            mq::payload_sealed.eq(Some(&sealed)),
            mq::status.eq(status::PENDING),
            mq::attempts.eq(0),
            mq::next_attempt_at.eq(DbTime(now)),
            mq::created_at.eq(DbTime(now)),
        ))
        .execute(c)
        .await)?;
    Ok(id)
}

/// How often one address gets a mail of one kind that a caller can ask
/// for again and again (verification, email change, reset): at most once
/// a minute, so the service cannot be used to flood an inbox.
pub const SPACING: chrono::Duration = chrono::Duration::seconds(60);

/// `None` when a mail of `kind` may go to `to` now; otherwise when it may.
/// Holds a lock on the address until the transaction ends, so of a burst
/// of requests exactly one queues a mail (on every replica); call it in the
/// transaction that queues the mail, before anything else.
pub async fn spacing_wait(
    tx: &mut Conn<'_>,
    kind: &str,
    to: &str,
) -> QueryResult<Option<chrono::DateTime<chrono::Utc>>> {
    tx.lock_key(&format!("mail:{kind}:{to}")).await?;
    let last: Option<DbTime> = run!(tx, |c| mq::table
        .filter(mq::to_addr.eq(to))
        .filter(mq::kind.eq(kind))
        .select(diesel::dsl::max(mq::created_at))
        .first(c)
        .await)?;
    let now = super::now();
    Ok(last.map(|t| t.0 + SPACING).filter(|next| *next > now))
}

/// Leases up to `limit` due mails for `lease` and counts the attempt.
pub async fn claim(
    conn: &mut Conn<'_>,
    limit: i64,
    lease: Duration,
) -> QueryResult<Vec<QueuedMail>> {
    super::claim_due!(conn, mq, QueuedMail, status::PENDING, limit, lease)
}

/// Sent: the payload is erased.
pub async fn mark_sent(conn: &mut Conn<'_>, id: Uuid) -> QueryResult<()> {
    run!(conn, |c| diesel::update(mq::table.find(DbUuid(id)))
        .set((
            mq::status.eq(status::SENT),
            mq::sent_at.eq(Some(DbTime(super::now()))),
            mq::payload_sealed.eq(None::<String>),
            mq::locked_until.eq(None::<DbTime>),
            mq::last_error.eq(None::<String>),
        ))
        .execute(c)
        .await)?;
    Ok(())
}

/// A failed attempt: retried at `retry_at`, or given up (`failed`, payload
/// erased: its token expires soon anyway) when `None`.
pub async fn mark_attempt_failed(
    conn: &mut Conn<'_>,
    id: Uuid,
    error: &str,
    retry_at: Option<DateTime<Utc>>,
) -> QueryResult<()> {
    let error: String = error.chars().take(500).collect();
    run!(conn, |c| {
        let row = mq::table.find(DbUuid(id));
        match retry_at {
            Some(at) => {
                diesel::update(row)
                    .set((
                        mq::next_attempt_at.eq(DbTime(at)),
                        mq::locked_until.eq(None::<DbTime>),
                        mq::last_error.eq(Some(&error)),
                    ))
                    .execute(c)
                    .await
            }
            None => {
                diesel::update(row)
                    .set((
                        mq::status.eq(status::FAILED),
                        mq::payload_sealed.eq(None::<String>),
                        mq::locked_until.eq(None::<DbTime>),
                        mq::last_error.eq(Some(&error)),
                    ))
                    .execute(c)
                    .await
            }
        }
    })?;
    Ok(())
}

/// When the earliest pending mail is due (for the sender's sleep).
pub async fn next_due(conn: &mut Conn<'_>) -> QueryResult<Option<DateTime<Utc>>> {
    let t: Option<DbTime> = run!(conn, |c| mq::table
        .filter(mq::status.eq(status::PENDING))
        .select(diesel::dsl::min(mq::next_attempt_at))
        .first(c)
        .await)?;
    Ok(t.map(|t| t.0))
}

/// Removes sent and failed mail (already without payload) older than `before`.
pub async fn prune_done(conn: &mut Conn<'_>, before: DateTime<Utc>) -> QueryResult<usize> {
    run!(conn, |c| diesel::delete(
        mq::table
            .filter(mq::status.ne(status::PENDING))
            .filter(mq::created_at.lt(DbTime(before)))
    )
    .execute(c)
    .await)
}
