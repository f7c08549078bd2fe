//! The transactional outbox: `webhook_events`, what happened.
//!
//! A change, the event reporting it and the job delivering that event
//! (`db::jobs`, kind `webhook`, with the event's id) are written in one
//! transaction (`enqueue` takes the transaction's connection), so an event
//! exists exactly when its change committed. How delivery goes (attempts,
//! lease, failure) is the job's; the event row is the fixed body that every
//! attempt sends and signs.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::Serialize;
use service_kit::run;
use shared_types::{EventType, SessionRevoked, WebhookEvent};
use uuid::Uuid;

use super::jobs::{self, JobKind, NewJob};
use super::schema::webhook_events as we;
use super::users::User;
use super::Conn;
use service_kit::db::sql_types::{DbTime, DbUuid};

/// Writes one event; call it inside the transaction making the change.
pub async fn enqueue(
    tx: &mut Conn<'_>,
    event_type: EventType,
    data: impl Serialize,
) -> QueryResult<Uuid> {
    let now = super::now();
    let id = Uuid::now_v7();
    let body = WebhookEvent {
        kind: event_type.clone(),
        timestamp: now,
        data: serde_json::to_value(data)
            .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?,
    };
    // The body is fixed here: every retry sends (and signs) the same bytes.
    let payload = serde_json::to_string(&body)
        .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
    run!(tx, |c| diesel::insert_into(we::table)
        .values((
            we::id.eq(DbUuid(id)),
            we::event_type.eq(event_type.as_str()),
            we::payload.eq(&payload),
            we::created_at.eq(DbTime(now)),
        ))
        .execute(c)
        .await)?;
    jobs::enqueue(
        tx,
        NewJob {
            kind: JobKind::Webhook,
            id,
            subject: event_type.as_str(),
            data: None,
        },
    )
    .await?;
    Ok(id)
}

/// `user.created` / `user.updated` / `user.deleted` with the user's record.
pub async fn user_event(
    tx: &mut Conn<'_>,
    event_type: EventType,
    user: &User,
) -> QueryResult<Uuid> {
    enqueue(tx, event_type, user.record()).await
}

/// `session.revoked`; an empty `session_ids` means every session of the user.
pub async fn sessions_revoked(
    tx: &mut Conn<'_>,
    user_id: Uuid,
    session_ids: Vec<Uuid>,
) -> QueryResult<Uuid> {
    enqueue(
        tx,
        EventType::SessionRevoked,
        SessionRevoked {
            user_id,
            session_ids,
        },
    )
    .await
}

/// The body of event `id`, as first written; `None` once pruned.
pub async fn payload(conn: &mut Conn<'_>, id: Uuid) -> QueryResult<Option<String>> {
    run!(conn, |c| we::table
        .find(DbUuid(id))
        .select(we::payload)
        .first(c)
        .await
        .optional())
}
