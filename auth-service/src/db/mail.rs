//! Mail in the job queue (`db::jobs`, kind `mail`).
//!
//! A mail is written in the same transaction as the token it carries (a
//! reset, a verification), so a committed token always has its mail, and a
//! rolled-back one never does. The job's subject is `<kind>:<address>`, in
//! clear for the spacing below; its data (subject line, token, link) is
//! sealed under the service's secrets key and erased once the mail is sent
//! or given up on: the token itself is stored in clear nowhere. The sender
//! is `crate::mail`.

use serde::{Deserialize, Serialize};
use service_kit::crypto::SealingKey;
use uuid::Uuid;

use super::jobs::{self, Claimed, JobKind, NewJob};
use super::Conn;
use diesel::QueryResult;

/// What a mail is for; its name is the `kind` of the outbox file's lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailKind {
    EmailVerification,
    PasswordReset,
    /// To the new address, with the confirmation token.
    EmailChange,
    /// To the old address, without a token.
    EmailChangeNotice,
    /// A notice (no token) that two-factor sign-in was turned on.
    MfaEnabled,
    /// A notice (no token) that a provider identity was linked.
    IdentityLinked,
}

impl MailKind {
    const ALL: [Self; 6] = [
        Self::EmailVerification,
        Self::PasswordReset,
        Self::EmailChange,
        Self::EmailChangeNotice,
        Self::MfaEnabled,
        Self::IdentityLinked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::EmailVerification => "email_verification",
            Self::PasswordReset => "password_reset",
            Self::EmailChange => "email_change",
            Self::EmailChangeNotice => "email_change_notice",
            Self::MfaEnabled => "mfa_enabled",
            Self::IdentityLinked => "identity_linked",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// What is sealed. No `Debug`: it holds a token.
#[derive(Serialize, Deserialize)]
pub struct Payload {
    pub subject: String,
    pub token: Option<String>,
    pub link: Option<String>,
}

/// A claimed mail job, read.
pub struct QueuedMail {
    pub id: Uuid,
    pub kind: MailKind,
    pub to: String,
    pub payload: Option<Payload>,
}

fn aad(id: Uuid) -> Vec<u8> {
    let mut aad = b"auth-service mail v1\0".to_vec();
    aad.extend_from_slice(id.as_bytes());
    aad
}

fn subject(kind: MailKind, to: &str) -> String {
    format!("{}:{to}", kind.as_str())
}

impl QueuedMail {
    /// Reads a claimed job: `None` when its subject is not a mail's. The
    /// payload is `None` when it does not open under `key` (or was erased).
    pub fn open(job: &Claimed, key: &SealingKey) -> Option<Self> {
        let (kind, to) = job.subject.split_once(':')?;
        let id = job.id.0;
        let payload = job.data.as_deref().and_then(|sealed| {
            let plain = key.open_text(&aad(id), sealed).ok()?;
            serde_json::from_slice(&plain).ok()
        });
        Some(Self {
            id,
            kind: MailKind::parse(kind)?,
            to: to.to_owned(),
            payload,
        })
    }
}

/// Queues one mail; call it inside the transaction that creates its token.
pub async fn enqueue(
    tx: &mut Conn<'_>,
    key: &SealingKey,
    kind: MailKind,
    to: &str,
    payload: &Payload,
) -> QueryResult<Uuid> {
    let id = Uuid::now_v7();
    let plain = serde_json::to_vec(payload)
        .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
    let sealed = key.seal_text(&aad(id), &plain);
    jobs::enqueue(
        tx,
        NewJob {
            kind: JobKind::Mail,
            id,
            subject: &subject(kind, to),
            data: Some(&sealed),
        },
    )
    .await?;
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
    kind: MailKind,
    to: &str,
) -> QueryResult<Option<chrono::DateTime<chrono::Utc>>> {
    let subject = subject(kind, to);
    tx.lock_key(&format!("mail:{subject}")).await?;
    let last = jobs::last_written(tx, JobKind::Mail, &subject).await?;
    let now = super::now();
    Ok(last.map(|t| t + SPACING).filter(|next| *next > now))
}
