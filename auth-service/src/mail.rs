//! Sending mail: drains `db::mail` over SMTP (`SMTP_URL`, lettre with
//! rustls) or, without SMTP, appends one JSON line per mail to
//! `AUTH_MAIL_OUTBOX`: `{to, subject, kind, token, link}`, which development
//! and the tests read the way a person reads mail.
//!
//! Requests never wait for mail: they queue it in their transaction and
//! wake this sender. A failed send is retried with the webhook worker's
//! backoff (from 2 s, for about two hours; the tokens expire before long
//! anyway), then marked failed. Several replicas may run a sender each: a
//! mail is leased before it is sent, so it goes out once (at least once if a
//! sender dies between sending and marking).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use lettre::message::{header::ContentType, Mailbox};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;
use service_kit::crypto::SealingKey;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use crate::configuration::Settings;
use crate::db::mail::{self, kind, Payload, QueuedMail};
use crate::db::DbPool;
use crate::webhooks::{retry_delay, until_due, Wakeup};

const POLL: Duration = Duration::from_secs(2);
const LEASE_SECONDS: i64 = 120;
const BATCH: i64 = 32;
const BACKOFF_BASE: Duration = Duration::from_secs(2);
const GIVE_UP_AFTER: Duration = Duration::from_secs(2 * 3600);
/// Housekeeping (this sender runs it): sent mail and old sign-in attempts.
const PRUNE_EVERY: Duration = Duration::from_secs(600);
const KEEP_SENT_DAYS: i64 = 7;

enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    File(PathBuf),
}

pub struct Sender {
    db: DbPool,
    key: Arc<SealingKey>,
    from: Mailbox,
    transport: Transport,
    queue: Wakeup,
    /// Attempts older than this can no longer count toward a lock.
    lockout_window: chrono::Duration,
}

/// Why one mail could not be sent, and whether trying again can help.
struct SendError {
    message: String,
    permanent: bool,
}

impl Sender {
    pub fn new(db: DbPool, settings: &Settings, queue: Wakeup) -> anyhow::Result<Self> {
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
            db,
            key: settings.secrets_key.clone(),
            from: settings.mail_from.clone(),
            transport,
            queue,
            lockout_window: chrono::Duration::minutes(settings.lockout_minutes),
        })
    }

    /// Runs until `shutdown` turns true; a round in progress finishes first.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut last_prune = None::<std::time::Instant>;
        loop {
            if *shutdown.borrow() {
                break;
            }
            if last_prune.is_none_or(|t| t.elapsed() > PRUNE_EVERY) {
                last_prune = Some(std::time::Instant::now());
                self.prune().await;
            }
            let wait = match self.round().await {
                Ok(n) if n as i64 == BATCH => continue,
                Ok(_) => self.idle_wait().await,
                Err(e) => {
                    tracing::warn!(error = %e, "mail round failed; retrying");
                    POLL
                }
            };
            tokio::select! {
                _ = self.queue.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
        }
        tracing::debug!("mail sender stopped");
    }

    async fn prune(&self) {
        let Ok(mut pooled) = self.db.get().await else {
            return;
        };
        let conn = &mut pooled.conn();
        let now = Utc::now();
        let mail = mail::prune_done(conn, now - chrono::Duration::days(KEEP_SENT_DAYS)).await;
        // A day at least, so the audit of a lock can still be matched to its attempts.
        let keep = self.lockout_window.max(chrono::Duration::days(1));
        let attempts = crate::db::lockouts::prune(conn, now - keep).await;
        match (mail, attempts) {
            (Ok(m), Ok(a)) if m + a > 0 => {
                tracing::info!(
                    mail = m,
                    attempts = a,
                    "old mail and sign-in attempts removed"
                )
            }
            (Ok(_), Ok(_)) => {}
            (m, a) => tracing::warn!(mail = ?m.err(), attempts = ?a.err(), "pruning failed"),
        }
    }

    async fn idle_wait(&self) -> Duration {
        let next = match self.db.get().await {
            Ok(mut c) => mail::next_due(&mut c.conn()).await.ok().flatten(),
            Err(_) => None,
        };
        until_due(next, POLL)
    }

    async fn round(&self) -> anyhow::Result<usize> {
        let claimed = {
            let mut pooled = self.db.get().await?;
            mail::claim(
                &mut pooled.conn(),
                BATCH,
                chrono::Duration::seconds(LEASE_SECONDS),
            )
            .await?
        };
        let n = claimed.len();
        for queued in claimed {
            self.deliver(queued).await;
        }
        Ok(n)
    }

    async fn deliver(&self, queued: QueuedMail) {
        let id = queued.id.0;
        let outcome = match queued.open(&self.key) {
            Some(payload) => self.send(&queued, &payload).await,
            None => Err(SendError {
                message: "payload does not open under AUTH_SECRETS_KEY".into(),
                permanent: true,
            }),
        };
        let Ok(mut pooled) = self.db.get().await else {
            tracing::warn!(mail_id = %id, "could not record mail outcome; the lease runs out and it is retried");
            return;
        };
        let conn = &mut pooled.conn();
        let recorded = match outcome {
            Ok(()) => {
                tracing::info!(mail_id = %id, kind = %queued.kind, "mail sent");
                mail::mark_sent(conn, id).await
            }
            Err(e) => {
                let retry = if e.permanent {
                    None
                } else {
                    retry_delay(queued.attempts, BACKOFF_BASE, GIVE_UP_AFTER)
                };
                tracing::warn!(mail_id = %id, kind = %queued.kind, attempts = queued.attempts, error = %e.message, will_retry = retry.is_some(), "mail not sent");
                let at =
                    retry.map(|d| Utc::now() + chrono::Duration::from_std(d).unwrap_or_default());
                mail::mark_attempt_failed(conn, id, &e.message, at).await
            }
        };
        if let Err(e) = recorded {
            tracing::warn!(mail_id = %id, error = %e, "could not record mail outcome");
        }
    }

    async fn send(&self, queued: &QueuedMail, payload: &Payload) -> Result<(), SendError> {
        match &self.transport {
            Transport::File(path) => {
                let line = serde_json::json!({
                    "to": queued.to_addr,
                    "subject": payload.subject,
                    "kind": queued.kind,
                    "token": payload.token,
                    "link": payload.link,
                });
                append_line(path, &line.to_string())
                    .await
                    .map_err(|e| SendError {
                        message: format!("AUTH_MAIL_OUTBOX {}: {e}", path.display()),
                        permanent: false,
                    })
            }
            Transport::Smtp(smtp) => {
                let to: Mailbox = queued.to_addr.parse().map_err(|e| SendError {
                    message: format!("recipient: {e}"),
                    permanent: true,
                })?;
                let message = Message::builder()
                    .from(self.from.clone())
                    .to(to)
                    .subject(&payload.subject)
                    .header(ContentType::TEXT_PLAIN)
                    .body(body(&queued.kind, payload))
                    .map_err(|e| SendError {
                        message: format!("building the message: {e}"),
                        permanent: true,
                    })?;
                smtp.send(message).await.map(drop).map_err(|e| SendError {
                    // 5xx answers (unknown mailbox, ...) will not change.
                    permanent: e.is_permanent(),
                    message: e.to_string(),
                })
            }
        }
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
fn body(kind: &str, payload: &Payload) -> String {
    let link = payload.link.as_deref().unwrap_or_default();
    match kind {
        kind::EMAIL_VERIFICATION => format!(
            "Confirm your email address by opening this link:\n\n{link}\n\n\
             The link works once and expires in 24 hours. If you did not sign up, ignore this mail.\n"
        ),
        kind::PASSWORD_RESET => format!(
            "Someone asked to reset the password of your account. To choose a new one, open:\n\n{link}\n\n\
             The link works once and expires in 1 hour. If it was not you, ignore this mail: your password stays as it is.\n"
        ),
        kind::EMAIL_CHANGE => format!(
            "Confirm this address as the new email of your account by opening:\n\n{link}\n\n\
             The link works once and expires in 1 hour. If you did not ask for this, ignore this mail.\n"
        ),
        _ => "Someone asked to change the email address of your account to another address.\n\
              If it was you, nothing needs doing. If it was not, change your password now: \
              the change only happens once the new address is confirmed.\n"
            .to_owned(),
    }
}
