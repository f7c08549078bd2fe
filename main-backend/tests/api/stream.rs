//! `SYNC_TRANSPORT=stream`: the mirror follows the auth service's event
//! feed with no webhook route to it, resumes after either side restarts,
//! and answers an expired cursor by reconciling from the head.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::*;

/// The auth service cannot reach the main backend (webhooks off); the
/// main backend follows the feed instead.
async fn streaming_stack() -> Stack {
    spawn_stack_with(
        &[("AUTH_WEBHOOK_URL", "off")],
        &[("SYNC_TRANSPORT", "stream")],
    )
    .await
}

async fn sync_health(stack: &Stack) -> Value {
    stack
        .get(&stack.main_url, "/health/sync")
        .await
        .json()
        .await
        .expect("json")
}

#[tokio::test]
async fn the_mirror_follows_the_feed_and_resumes_after_either_side_restarts() {
    let mut stack = streaming_stack().await;
    let first = stack.register(&unique_email()).await.user.id;
    eventually(Duration::from_secs(5), || async {
        stack.mirror_user(first).await.is_some()
    })
    .await;
    // Nothing went by webhook.
    assert_eq!(stack.webhook_stats().await["delivered"], 0);
    let health = sync_health(&stack).await;
    assert!(health["stream"]["cursor"].is_string(), "{health}");
    assert!(health["stream"]["last_poll_at"].is_string(), "{health}");
    assert_eq!(health["stream"]["lag_seconds"], 0.0, "{health}");

    // The main backend is down while three users register: it resumes
    // from its stored cursor.
    stack.stop_main().await;
    let mut missed = Vec::new();
    for _ in 0..3 {
        missed.push(stack.register(&unique_email()).await.user.id);
    }
    stack.start_main().await;
    eventually(Duration::from_secs(10), || async {
        stack.mirror_count().await == 4
    })
    .await;
    for id in &missed {
        assert!(stack.mirror_user(*id).await.is_some());
    }

    // The auth service restarts under a waiting follower.
    stack.stop_auth().await;
    stack.start_auth().await;
    let after_restart = stack.register(&unique_email()).await.user.id;
    eventually(Duration::from_secs(15), || async {
        stack.mirror_user(after_restart).await.is_some()
    })
    .await;
}

/// A cursor the feed does not have (here one ahead of it, as after the
/// auth database was restored from a backup): the follower reads the
/// head, reconciles, and follows from the head; the user who registered
/// while it was away is in the mirror through the reconciliation.
#[tokio::test]
async fn an_expired_cursor_is_answered_by_reconciling_from_the_head() {
    let mut stack = streaming_stack().await;
    stack.stop_main().await;
    {
        let db = stack.main_db().await;
        main_backend::db::event_stream::advance(
            &mut db.get().await.expect("conn").conn(),
            "999999",
            None,
            false,
        )
        .await
        .expect("cursor");
    }
    let away = stack.register(&unique_email()).await.user.id;
    stack.start_main().await;
    eventually(Duration::from_secs(10), || async {
        stack.mirror_user(away).await.is_some()
    })
    .await;
    eventually(Duration::from_secs(10), || async {
        sync_health(&stack).await["stream"]["cursor"] != "999999"
    })
    .await;
    let metrics = stack
        .get(&stack.main_url, "/metrics")
        .await
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("main_stream_polls_total{outcome=\"expired\"} 1"),
        "{metrics}"
    );
    let health = sync_health(&stack).await;
    assert_eq!(
        health["last_reconcile"]["trigger"], "stream_expired",
        "{health}"
    );
    // And it follows from there.
    let next = stack.register(&unique_email()).await.user.id;
    eventually(Duration::from_secs(5), || async {
        stack.mirror_user(next).await.is_some()
    })
    .await;
}

/// Two replicas in stream mode: one follows (the lease), the other stands
/// by, and every user reaches the shared mirror.
#[tokio::test]
async fn one_replica_follows_the_feed_and_the_other_stands_by() {
    let mut stack = streaming_stack().await;
    let replica = stack.start_main_replica().await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(stack.register(&unique_email()).await.user.id);
    }
    eventually(Duration::from_secs(10), || async {
        stack.mirror_count().await == 5
    })
    .await;
    let count = |metrics: &str, outcome: &str| -> u64 {
        let prefix = format!("main_stream_polls_total{{outcome=\"{outcome}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    };
    let mut roles = Vec::new();
    for base in [stack.main_url.clone(), replica] {
        let metrics = stack
            .get(&base, "/metrics")
            .await
            .text()
            .await
            .expect("text");
        roles.push((count(&metrics, "ok") > 0, count(&metrics, "standby") > 0));
    }
    roles.sort();
    assert_eq!(
        roles,
        vec![(false, true), (true, false)],
        "one follows, one stands by"
    );
}

/// `both`: webhooks and the stream bring every event; whichever comes
/// second finds it applied, and the mirror holds each user once.
#[tokio::test]
async fn with_both_transports_each_event_is_applied_once() {
    let stack = spawn_stack_with(&[], &[("SYNC_TRANSPORT", "both")]).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(stack.register(&unique_email()).await.user.id);
    }
    eventually(Duration::from_secs(10), || async {
        stack.mirror_count().await == 3 && stack.webhook_stats().await["delivered"] == 3
    })
    .await;
    // The stream read the same three events (applied or found applied).
    eventually(Duration::from_secs(10), || async {
        let metrics = stack
            .get(&stack.main_url, "/metrics")
            .await
            .text()
            .await
            .expect("text");
        metrics.contains("main_stream_events_total{outcome=\"applied\"} 3")
    })
    .await;
    for id in ids {
        let row = stack.mirror_user(id).await.expect("mirrored");
        assert_eq!(row.auth_version, 1);
    }
}
