//! The event feed for other services: JSON pages (long-polled with
//! `wait`) or, with `Accept: text/event-stream`, Server-Sent Events. The
//! sequencing and its no-gap argument are `crate::feed`'s.

use std::time::Duration;

use actix_web::http::header;
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use serde::Deserialize;
use shared_types::{EventPage, FeedEvent};

use crate::db::feed::FeedEvent as Row;
use crate::error::ApiError;
use crate::extractors::InternalCaller;
use crate::feed::{Cursor, Feed, FeedError, Start};
use crate::AppState;

/// An idle stream sends a comment this often, so proxies keep it open.
const HEARTBEAT: Duration = Duration::from_secs(15);
/// Events per chunk of a stream.
const STREAM_BATCH: i64 = 500;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// A `cursor` (or `next_cursor`) to read after; `now` for only what
    /// comes next; absent for the oldest kept event.
    after: Option<String>,
    /// 1 to 1000 (100).
    limit: Option<i64>,
    /// Seconds (0 to 30, default 0) to hold the request until an event
    /// arrives.
    wait: Option<u64>,
}

impl From<FeedError> for ApiError {
    fn from(e: FeedError) -> Self {
        match e {
            FeedError::CursorExpired { .. } => ApiError::new(
                actix_web::http::StatusCode::GONE,
                "cursor_expired",
                e.to_string(),
            ),
            FeedError::Fault(f) => f.into(),
        }
    }
}

fn invalid(detail: &'static str) -> ApiError {
    ApiError::validation("validation_failed", detail)
}

fn start(after: Option<&str>) -> Result<Start, ApiError> {
    match after {
        None => Ok(Start::Oldest),
        Some("now") => Ok(Start::Now),
        Some(c) => Cursor::parse(c)
            .map(Start::After)
            .ok_or_else(|| invalid("after must be a cursor from this feed, or now")),
    }
}

/// An event as the feed shows it; the payload is the webhook body as
/// first written (every transport sends the same bytes).
fn feed_event(row: &Row) -> Result<FeedEvent, ApiError> {
    let event = serde_json::from_str(&row.payload).map_err(|e| {
        ApiError::internal(anyhow::anyhow!("an outbox payload does not parse: {e}"))
    })?;
    Ok(FeedEvent {
        id: row.id.0,
        cursor: Cursor(row.seq.unwrap_or_default()).to_string(),
        event,
    })
}

fn wants_stream(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"))
}

/// Events in commit order, from a cursor. A reader that follows
/// `next_cursor` never misses one, even when the transactions that wrote
/// them commit out of order; a cursor older than the retention (or ahead
/// of the feed) is 410 `cursor_expired`.
#[utoipa::path(
    get,
    path = "/internal/v1/events",
    tag = "internal",
    params(
        EventsQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Server-Sent Events: resume after this cursor (wins over `after`)"),
    ),
    responses(
        (status = 200, description = "A page of events (`application/json`), or with `Accept: text/event-stream` the feed as Server-Sent Events: `id:` the cursor, `event:` the type, `data:` the webhook body; comment lines keep an idle stream open", content(
            (EventPage = "application/json"),
            (String = "text/event-stream"),
        )),
        (status = 410, description = "cursor_expired: reconcile, then start again from after=now"),
    ),
    security(("service" = []))
)]
pub async fn events(
    _caller: InternalCaller,
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<EventsQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(invalid("limit must be from 1 to 1000"));
    }
    let wait = query.wait.unwrap_or(0);
    if wait > 30 {
        return Err(invalid("wait must be from 0 to 30 seconds"));
    }
    let feed = state.feed.clone();
    if wants_stream(&req) {
        let last_event_id = req
            .headers()
            .get("last-event-id")
            .map(|v| v.to_str().unwrap_or("?"));
        let after = feed
            .resolve(start(last_event_id.or(query.after.as_deref()))?)
            .await?;
        state.metrics.feed_request("stream");
        return Ok(stream(state, after));
    }
    state.metrics.feed_request("page");
    let after = feed.resolve(start(query.after.as_deref())?).await?;
    let mut page = feed.page(after, limit).await?;
    if page.events.is_empty() && wait > 0 && feed.wait_past(after, Duration::from_secs(wait)).await
    {
        page = feed.page(after, limit).await?;
    }
    let events = page
        .events
        .iter()
        .map(feed_event)
        .collect::<Result<Vec<_>, _>>()?;
    state.metrics.feed_served(&events);
    Ok(HttpResponse::Ok().json(EventPage {
        events,
        next_cursor: page.next.to_string(),
    }))
}

/// What an open stream is doing.
struct Streaming {
    state: web::Data<AppState>,
    after: Cursor,
    /// Set when the stream must end after what it sends now.
    done: bool,
    _open: OpenStream,
}

/// Counts an open stream in the gauge while it lives.
struct OpenStream(web::Data<AppState>);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.metrics.stream_closed();
    }
}

fn stream(state: web::Data<AppState>, after: Cursor) -> HttpResponse {
    state.metrics.stream_opened();
    let open = OpenStream(state.clone());
    let streaming = Streaming {
        state,
        after,
        done: false,
        _open: open,
    };
    let body = futures::stream::unfold(streaming, |mut s| async move {
        if s.done {
            return None;
        }
        let chunk = next_chunk(&mut s).await;
        Some((Ok::<_, actix_web::Error>(Bytes::from(chunk)), s))
    });
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        // nginx would otherwise buffer the stream.
        .insert_header(("x-accel-buffering", "no"))
        .streaming(body)
}

/// The next bytes of a stream: the events after its cursor, or after a
/// wait with none, a heartbeat comment. An error ends the stream (the
/// consumer resumes with `Last-Event-ID`); an expired cursor says so
/// first, as an `error` event.
async fn next_chunk(s: &mut Streaming) -> String {
    let feed: &Feed = &s.state.feed;
    loop {
        if feed.draining() {
            s.done = true;
            return ": shutting down; reconnect with Last-Event-ID\n\n".into();
        }
        match feed.page(s.after, STREAM_BATCH).await {
            Ok(page) if !page.events.is_empty() => {
                let mut out = String::new();
                let mut served = Vec::with_capacity(page.events.len());
                for row in &page.events {
                    match feed_event(row) {
                        Ok(event) => {
                            let cursor = Cursor(row.seq.unwrap_or_default());
                            out.push_str(&format!(
                                "id: {cursor}\nevent: {}\ndata: {}\n\n",
                                row.event_type, row.payload
                            ));
                            served.push(event);
                        }
                        Err(_) => {
                            s.done = true;
                            break;
                        }
                    }
                }
                s.state.metrics.feed_served(&served);
                s.after = page.next;
                return out;
            }
            Ok(_) => {
                if !feed.wait_past(s.after, HEARTBEAT).await {
                    return ":\n\n".into();
                }
            }
            Err(FeedError::CursorExpired { .. }) => {
                s.done = true;
                return "event: error\ndata: {\"code\":\"cursor_expired\"}\n\n".into();
            }
            Err(FeedError::Fault(e)) => {
                tracing::warn!(error = %e, "event stream ended by a fault");
                s.done = true;
                return ": error; reconnect with Last-Event-ID\n\n".into();
            }
        }
    }
}
