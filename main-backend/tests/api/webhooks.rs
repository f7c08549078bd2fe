//! The receiver: signatures, replays, stale and out-of-order events.

use chrono::Utc;
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::*;

fn user_event(kind: &str, id: Uuid, email: &str, version: i64, locked: bool) -> Value {
    json!({
        "type": kind,
        "timestamp": Utc::now(),
        "data": {
            "id": id, "email": email, "email_verified": true, "full_name": "Changed Name",
            "mfa_enabled": false, "account_locked": locked,
            "created_at": Utc::now(), "updated_at": Utc::now(), "version": version
        }
    })
}

async fn problem_code(res: reqwest::Response) -> (StatusCode, String) {
    let status = res.status();
    let body: Value = res.json().await.expect("problem json");
    (status, body["code"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn forged_stale_and_unsigned_deliveries_are_refused() {
    let stack = spawn_stack_with(&[("AUTH_WEBHOOK_URL", "off")], &[]).await;
    let id = Uuid::now_v7();
    let event = user_event("user.created", id, "a@example.com", 1, false);
    let now = Utc::now().timestamp();
    let other_secret = service_kit::testing::webhook_secret();
    let res = stack
        .send_webhook("evt-1", now, &event, Some(&other_secret))
        .await;
    assert_eq!(
        problem_code(res).await,
        (StatusCode::UNAUTHORIZED, "invalid_signature".into())
    );
    let res = stack.send_webhook("evt-1", now - 301, &event, None).await;
    assert_eq!(
        problem_code(res).await,
        (StatusCode::UNAUTHORIZED, "invalid_signature".into())
    );
    let res = stack.send_webhook("evt-1", now + 301, &event, None).await;
    assert_eq!(
        problem_code(res).await,
        (StatusCode::UNAUTHORIZED, "invalid_signature".into())
    );
    let res = stack
        .client
        .post(format!("{}/webhooks/auth", stack.main_url))
        .json(&event)
        .send()
        .await
        .expect("post");
    assert_eq!(
        problem_code(res).await,
        (StatusCode::UNAUTHORIZED, "invalid_signature".into())
    );
    // A valid signature over a different body.
    let key = shared_types::webhook::WebhookKey::parse(&stack.webhook_secret).expect("key");
    let res = stack
        .client
        .post(format!("{}/webhooks/auth", stack.main_url))
        .header("webhook-id", "evt-1")
        .header("webhook-timestamp", now.to_string())
        .header("webhook-signature", key.sign("evt-1", now, b"{}"))
        .body(serde_json::to_vec(&event).expect("json"))
        .send()
        .await
        .expect("post");
    assert_eq!(
        problem_code(res).await,
        (StatusCode::UNAUTHORIZED, "invalid_signature".into())
    );
    assert!(stack.mirror_user(id).await.is_none());
    // Signed but not an event: 422, never a 500.
    let res = stack
        .send_webhook("evt-2", now, &json!({"hello": 1}), None)
        .await;
    assert_eq!(problem_code(res).await.0, StatusCode::UNPROCESSABLE_ENTITY);
    let res = stack
        .send_webhook(
            "evt-3",
            now,
            &json!({"type": "user.updated", "timestamp": Utc::now(), "data": {"id": 1}}),
            None,
        )
        .await;
    assert_eq!(problem_code(res).await.0, StatusCode::UNPROCESSABLE_ENTITY);
    // The same event, properly signed, is applied.
    let res = stack.send_webhook("evt-4", now, &event, None).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert!(stack.mirror_user(id).await.is_some());
}

#[tokio::test]
async fn replayed_stale_and_out_of_order_events_leave_the_mirror_right() {
    let stack = spawn_stack_with(&[("AUTH_WEBHOOK_URL", "off")], &[]).await;
    let id = Uuid::now_v7();
    let now = Utc::now().timestamp();
    let send = |evt: &str, body: Value| {
        let stack = &stack;
        let evt = evt.to_owned();
        async move {
            let res = stack.send_webhook(&evt, now, &body, None).await;
            assert_eq!(res.status(), StatusCode::NO_CONTENT, "{evt}");
        }
    };
    send(
        "e1",
        user_event("user.created", id, "v1@example.com", 1, false),
    )
    .await;
    send(
        "e3",
        user_event("user.updated", id, "v3@example.com", 3, false),
    )
    .await;
    // Older version, arriving late: ignored.
    send(
        "e2",
        user_event("user.updated", id, "v2@example.com", 2, false),
    )
    .await;
    let row = stack.mirror_user(id).await.expect("row");
    assert_eq!(
        (row.email.as_str(), row.auth_version),
        ("v3@example.com", 3)
    );
    // `full_name` is taken at creation only and never overwritten by sync.
    assert_eq!(row.full_name.as_deref(), Some("Changed Name"));
    // A replay of an applied id with other content: ignored.
    send(
        "e3",
        user_event("user.updated", id, "replay@example.com", 9, false),
    )
    .await;
    assert_eq!(
        stack.mirror_user(id).await.expect("row").email,
        "v3@example.com"
    );
    // Deleted, then a stale update arrives: stays deleted.
    send(
        "e4",
        user_event("user.deleted", id, "v3@example.com", 4, false),
    )
    .await;
    assert!(stack.mirror_user(id).await.is_none());
    send(
        "e2b",
        user_event("user.updated", id, "v2@example.com", 2, false),
    )
    .await;
    send(
        "e1b",
        user_event("user.created", id, "v1@example.com", 1, false),
    )
    .await;
    assert!(stack.mirror_user(id).await.is_none());
    // Unknown types are accepted and ignored (newer auth services).
    send(
        "e5",
        json!({"type": "user.exploded", "timestamp": Utc::now(), "data": {}}),
    )
    .await;
}

#[tokio::test]
async fn concurrent_duplicate_deliveries_apply_once() {
    let stack = spawn_stack_with(&[("AUTH_WEBHOOK_URL", "off")], &[]).await;
    let id = Uuid::now_v7();
    let now = Utc::now().timestamp();
    let event = user_event("user.created", id, "dup@example.com", 1, false);
    let sends = (0..8).map(|_| stack.send_webhook("same-id", now, &event, None));
    for res in futures::future::join_all(sends).await {
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
    }
    assert_eq!(stack.mirror_count().await, 1);
    // An upsert would leave one mirror row however often it ran; a
    // revocation is a row per application, so it shows "once" for real.
    let session = Uuid::now_v7();
    let revoked = json!({
        "type": "session.revoked",
        "timestamp": Utc::now(),
        "data": {"user_id": id, "session_ids": [session]},
    });
    let ids: Vec<String> = (0..8).map(|_| "same-revocation".to_owned()).collect();
    let sends = ids
        .iter()
        .map(|webhook_id| stack.send_webhook(webhook_id, now, &revoked, None));
    for res in futures::future::join_all(sends).await {
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
    }
    let db = stack.main_db().await;
    let mut pooled = db.get().await.expect("conn");
    let rows: i64 = service_kit::run!(&mut pooled.conn(), |c| {
        use diesel::prelude::*;
        use main_backend::db::schema::revocations as r;
        diesel_async::RunQueryDsl::get_result(
            r::table
                .filter(r::session_id.eq(Some(service_kit::db::DbUuid(session))))
                .count(),
            c,
        )
        .await
    })
    .expect("count");
    assert_eq!(
        rows, 1,
        "one revocation row for eight deliveries of one event"
    );
}
