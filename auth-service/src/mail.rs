//! Sending mail: the `mail` jobs (`db::mail`), over SMTP (`SMTP_URL`, lettre
//! with rustls) or, without SMTP, appended as one JSON line per mail to
//! `AUTH_MAIL_OUTBOX`: `{to, subject, kind, token, link}`, which development
//! and the tests read the way a person reads mail.
//!
//! Requests never wait for mail: they queue it in their transaction and
//! wake the runner (`crate::jobs`). A failed send is retried from 2 s for
//! about two hours (the tokens expire before long anyway), then given up.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use lettre::message::{header::ContentType, Mailbox};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;
use service_kit::crypto::SealingKey;
use tokio::io::AsyncWriteExt;

use crate::configuration::Settings;
use crate::db::jobs::{Claimed, JobKind, Status};
use crate::db::mail::{MailKind, Payload, QueuedMail};
use crate::db::Conn;
use crate::jobs::{Failure, Job};

enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    File(PathBuf),
}

pub struct Sender {
    key: Arc<SealingKey>,
    from: Mailbox,
    transport: Transport,
    /// Attempts older than this can no longer count toward a lock.
    lockout_window: chrono::Duration,
}

impl Sender {
    pub fn new(settings: &Settings) -> anyhow::Result<Self> {
        let transport = match &settings.smtp_url {
            Some(url) => Transport::Smtp(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose_secret())
                    .map_err(|e| anyhow::anyhow!("SMTP_URL: {e}"))?
                    .timeout(Some(Duration::from_secs(20)))
                    .build(),
            ),
            None => Transport::File(settings.mail_outbox.clone()),
        };
        Ok(Self {
            key: settings.secrets_key.clone(),
            from: settings.mail_from.clone(),
            transport,
            lockout_window: chrono::Duration::minutes(settings.lockout_minutes),
        })
    }

    async fn send(&self, queued: &QueuedMail, payload: &Payload) -> Result<(), Failure> {
        match &self.transport {
            Transport::File(path) => {
                let line = serde_json::json!({
                    "to": queued.to,
                    "subject": payload.subject,
                    "kind": queued.kind.as_str(),
                    "token": payload.token,
                    "link": payload.link,
                });
                append_line(path, &line.to_string()).await.map_err(|e| {
                    Failure::retry(format!("AUTH_MAIL_OUTBOX {}: {e}", path.display()))
                })
            }
            Transport::Smtp(smtp) => {
                let to: Mailbox = queued
                    .to
                    .parse()
                    .map_err(|e| Failure::permanent(format!("recipient: {e}")))?;
                let message = Message::builder()
                    .from(self.from.clone())
                    .to(to)
                    .subject(&payload.subject)
                    .header(ContentType::TEXT_PLAIN)
                    .body(body(queued.kind, payload))
                    .map_err(|e| Failure::permanent(format!("building the message: {e}")))?;
                smtp.send(message).await.map(drop).map_err(|e| Failure {
                    // 5xx answers (unknown mailbox, ...) will not change.
                    permanent: e.is_permanent(),
                    message: e.to_string(),
                })
            }
        }
    }
}

impl Job for Sender {
    const KIND: JobKind = JobKind::Mail;
    const BATCH: i64 = 32;
    const LEASE: Duration = Duration::from_secs(120);
    const POLL: Duration = Duration::from_secs(2);
    // Given-up mail has no payload left, and its token has expired.
    const PRUNED: &'static [Status] = &[Status::Done, Status::Failed];

    fn backoff(&self) -> (Duration, Duration) {
        (Duration::from_secs(2), Duration::from_secs(2 * 3600))
    }

    async fn run(&self, job: &Claimed) -> Result<(), Failure> {
        let queued = QueuedMail::open(job, &self.key)
            .ok_or_else(|| Failure::permanent(format!("not a mail: {}", job.subject)))?;
        let payload = queued
            .payload
            .as_ref()
            .ok_or_else(|| Failure::permanent("payload does not open under AUTH_SECRETS_KEY"))?;
        self.send(&queued, payload).await?;
        tracing::info!(mail_id = %queued.id, kind = queued.kind.as_str(), "mail sent");
        Ok(())
    }

    /// Old sign-in attempts (this runner is the auth service's one
    /// periodic housekeeper): a day at least, so the audit of a lock can
    /// still be matched to its attempts.
    async fn prune_more(&self, conn: &mut Conn<'_>) -> diesel::QueryResult<usize> {
        let keep = self.lockout_window.max(chrono::Duration::days(1));
        crate::db::lockouts::prune(conn, Utc::now() - keep).await
    }
}

/// One `write` of a whole line on a file opened for appending, so lines from
/// several senders (replicas) never interleave.
async fn append_line(path: &std::path::Path, line: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(dir).await?;
    }
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await?;
    file.write_all(format!("{line}\n").as_bytes()).await?;
    file.flush().await
}

/// The plain-text body of a mail.
fn body(kind: MailKind, payload: &Payload) -> String {
    let link = payload.link.as_deref().unwrap_or_default();
    match kind {
        MailKind::EmailVerification => format!(
            "Confirm your email address by opening this link:\n\n{link}\n\n\
             The link works once and expires in 24 hours. If you did not sign up, ignore this mail.\n"
        ),
        MailKind::PasswordReset => format!(
            "Someone asked to reset the password of your account. To choose a new one, open:\n\n{link}\n\n\
             The link works once and expires in 1 hour. If it was not you, ignore this mail: your password stays as it is.\n"
        ),
        MailKind::EmailChange => format!(
            "Confirm this address as the new email of your account by opening:\n\n{link}\n\n\
             The link works once and expires in 1 hour. If you did not ask for this, ignore this mail.\n"
        ),
        MailKind::EmailChangeNotice => "Someone asked to change the email address of your account to another address.\n\
              If it was you, nothing needs doing. If it was not, change your password now: \
              the change only happens once the new address is confirmed.\n"
            .to_owned(),
        MailKind::MfaEnabled => "Two-factor sign-in was just turned on for your account: signing in now also \
              takes a code from your authenticator app or one of your recovery codes.\n\
              If it was not you, reset your password now and contact support.\n"
            .to_owned(),
        MailKind::IdentityLinked => format!(
            "{}\nYou can now sign in to your account with it.\n\
             If it was not you, remove it under Settings, sign out everywhere and reset your password.\n",
            payload.subject
        ),
    }
}
