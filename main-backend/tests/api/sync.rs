//! The mirror follows the auth service by webhook: registration, account
//! changes, retries while the main backend is down, failed events and
//! their redelivery, and the metrics of it all.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::*;
use crate::reconcile::insert_stray;

#[tokio::test]
async fn register_reaches_the_mirror_by_webhook() {
    let stack = spawn_stack().await;
    let reg = stack.register(&unique_email()).await;
    let id = reg.user.id;
    eventually(Duration::from_secs(5), || async {
        stack.mirror_user(id).await.is_some()
    })
    .await;
    let row = stack.mirror_user(id).await.expect("mirrored");
    assert_eq!(row.email, reg.user.email);
    assert_eq!(row.full_name.as_deref(), Some("Test User"));
    assert_eq!(row.role, "standard_user");
    assert_eq!(row.plan_tier, "free");
    assert_eq!(row.auth_version, 1);
    // The auth service's outbox shows it delivered. The mirror row can be
    // visible before the relay has marked the event delivered (it does so
    // once the main backend's answer is back), so wait for that too.
    eventually(Duration::from_secs(5), || async {
        stack.webhook_stats().await["pending"] == 0
    })
    .await;
    let stats = stack.webhook_stats().await;
    assert_eq!(stats["pending"], 0, "{stats}");
    assert!(stats["delivered"].as_i64().expect("n") >= 1);
    assert!(stats["last_delivered_at"].is_string());
}

#[tokio::test]
async fn main_backend_down_then_up_catches_up_through_retries() {
    let mut stack = spawn_stack().await;
    stack.stop_main().await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(stack.register(&unique_email()).await.user.id);
    }
    // Undelivered while the receiver is down.
    let stats = stack.webhook_stats().await;
    assert_eq!(stats["pending"], 3, "{stats}");
    assert_eq!(stack.mirror_count().await, 0);
    stack.start_main().await;
    eventually(Duration::from_secs(10), || async {
        stack.mirror_count().await == 3
    })
    .await;
    for id in ids {
        assert!(stack.mirror_user(id).await.is_some());
    }
}

#[tokio::test]
async fn failed_events_are_counted_and_redelivered() {
    // Give up almost at once, so events end `failed` while main is down.
    let mut stack = spawn_stack_with(&[("AUTH_WEBHOOK_GIVE_UP_SECONDS", "1")], &[]).await;
    stack.stop_main().await;
    let id = stack.register(&unique_email()).await.user.id;
    eventually(Duration::from_secs(10), || async {
        stack.webhook_stats().await["failed"] == 1
    })
    .await;
    stack.start_main().await;
    // A malformed body is refused, not read as "requeue everything".
    let res = stack
        .auth_internal(Method::POST, "/internal/v1/webhooks/redeliver")
        .header("content-type", "application/json")
        .body(r#"{"event_ids": "all"}"#)
        .send()
        .await
        .expect("redeliver");
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let res = stack
        .auth_internal(Method::POST, "/internal/v1/webhooks/redeliver")
        .send()
        .await
        .expect("redeliver");
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["requeued"], 1);
    eventually(Duration::from_secs(5), || async {
        stack.mirror_user(id).await.is_some()
    })
    .await;
    assert_eq!(stack.webhook_stats().await["failed"], 0);
    // Without the key: 401.
    let res = stack
        .client
        .post(format!("{}/internal/v1/webhooks/redeliver", stack.auth_url))
        .send()
        .await
        .expect("redeliver");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn account_changes_in_the_auth_service_reach_the_mirror_and_keep_business_fields() {
    let stack = spawn_stack().await;
    let address = unique_email();
    let reg = stack.register(&address).await;
    let id = reg.user.id;
    let access = reg.tokens.access_token.clone();
    assert_eq!(stack.me(&access).await.status(), StatusCode::OK);
    let admin = stack.service_token(&["admin"]).await;
    let res = stack
        .client
        .patch(format!("{}/admin/v1/users/{id}", stack.main_url))
        .bearer_auth(&admin)
        .json(&json!({"plan_tier": "pro"}))
        .send()
        .await
        .expect("patch");
    assert_eq!(res.status(), StatusCode::OK);

    // Verification, followed from the mail.
    let token = stack.mailed_token(&address, "email_verification").await;
    let res = stack
        .auth_post("/v1/email/verify", None, &json!({"token": token}))
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    eventually(Duration::from_secs(5), || async {
        stack
            .mirror_user(id)
            .await
            .is_some_and(|u| u.email_verified)
    })
    .await;

    // A new address, confirmed from the mail to it.
    let new_address = unique_email();
    let res = stack
        .auth_post(
            "/v1/email/change",
            Some(&access),
            &json!({"new_email": new_address, "password": PASSWORD}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let token = stack.mailed_token(&new_address, "email_change").await;
    let res = stack
        .auth_post("/v1/email/change/confirm", None, &json!({"token": token}))
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    eventually(Duration::from_secs(5), || async {
        stack
            .mirror_user(id)
            .await
            .is_some_and(|u| u.email == new_address)
    })
    .await;

    // A reset ends every session: the main backend's cached answer goes too.
    let res = stack
        .auth_post("/v1/password/forgot", None, &json!({"email": new_address}))
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let token = stack.mailed_token(&new_address, "password_reset").await;
    let res = stack
        .auth_post(
            "/v1/password/reset",
            None,
            &json!({"token": token, "new_password": "a fresh passphrase 99"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    eventually(Duration::from_secs(5), || async {
        stack.me(&access).await.status() == StatusCode::UNAUTHORIZED
    })
    .await;
    let mirrored = stack.mirror_user(id).await.expect("mirrored");
    assert_eq!(mirrored.plan_tier, "pro", "business fields untouched");
    assert_eq!(mirrored.email, new_address);
}

/// Both services' `/metrics` parse and move: the auth service counts the
/// webhook it delivered (and its latency); the main backend counts token
/// cache misses and hits, the introspection behind the miss, and the
/// reconciliation with the drift it fixed.
#[tokio::test]
async fn metrics_follow_sync_and_validation() {
    use service_kit::testing::parse_metrics;
    let stack = spawn_stack().await;
    let scrape = |base: String| {
        let stack = &stack;
        async move {
            let res = stack.get(&base, "/metrics").await;
            assert_eq!(res.status(), StatusCode::OK);
            parse_metrics(&res.text().await.expect("body"))
        }
    };
    let main_before = scrape(stack.main_url.clone()).await;

    let reg = stack.register(&unique_email()).await;
    let id = reg.user.id;
    eventually(Duration::from_secs(5), || async {
        stack.mirror_user(id).await.is_some()
    })
    .await;
    for _ in 0..3 {
        assert_eq!(
            stack.me(&reg.tokens.access_token).await.status(),
            StatusCode::OK
        );
    }
    // Once the cached mirror row has expired (one second), a cached token
    // is answered by the slower path, which reads the row again: still one
    // hit, and no introspection.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        stack.me(&reg.tokens.access_token).await.status(),
        StatusCode::OK
    );
    // A refused token is remembered too: one miss, then a hit.
    for _ in 0..2 {
        assert_eq!(
            stack.me("not-a-token").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    // Drift for reconciliation to fix: a mirror row the auth service never had.
    insert_stray(&stack).await;
    let report = stack.sync_now().await;
    assert_eq!(report["deleted"], 1, "{report}");

    let auth = scrape(stack.auth_url.clone()).await;
    assert!(auth.get(r#"auth_webhook_deliveries_total{result="delivered"}"#) >= 1.0);
    assert!(auth.get("auth_webhook_delivery_latency_seconds_count") >= 1.0);
    assert_eq!(auth.get(r#"auth_outbox_events{status="pending"}"#), 0.0);

    let main = scrape(stack.main_url.clone()).await;
    let moved = |k: &str| main.since(&main_before, k);
    assert_eq!(
        moved(r#"main_token_cache_requests_total{result="miss"}"#),
        2.0
    );
    assert_eq!(
        moved(r#"main_token_cache_requests_total{result="hit"}"#),
        4.0
    );
    // The user token's miss, and the manual sync's service token (never cached).
    assert_eq!(moved(r#"main_introspections_total{result="active"}"#), 2.0);
    assert_eq!(
        moved(r#"main_introspections_total{result="inactive"}"#),
        1.0
    );
    assert_eq!(moved(r#"main_reconcile_runs_total{status="ok"}"#), 1.0);
    assert_eq!(moved(r#"main_reconcile_drift_total{kind="deleted"}"#), 1.0);
    assert_eq!(main.get("main_reconcile_last_drift"), 1.0);
    assert_eq!(moved("main_reconcile_duration_seconds_count"), 1.0);
    assert_eq!(
        moved(r#"http_requests_total{method="GET",route="/v1/me",status="200"}"#),
        4.0
    );
}
