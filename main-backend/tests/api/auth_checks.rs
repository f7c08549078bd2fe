//! Every token is confirmed by the auth service; revocations win quickly;
//! an unreachable auth service fails closed.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

async fn code(res: reqwest::Response) -> (StatusCode, String) {
    let status = res.status();
    let body: Value = res.json().await.unwrap_or_default();
    (status, body["code"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn missing_and_bad_tokens_get_401() {
    let stack = spawn_stack().await;
    let res = stack
        .client
        .get(format!("{}/v1/me", stack.main_url))
        .send()
        .await
        .expect("get");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(res.headers().contains_key("www-authenticate"));
    for bad in ["garbage", "a.b.c", &"x".repeat(5000)] {
        let (status, code) = code(stack.me(bad).await).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::UNAUTHORIZED, "invalid_token")
        );
    }
    // The service API key is not a user token.
    let (status, _) = code(stack.me(&stack.api_key).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_valid_token_for_an_unmirrored_user_fetches_the_user() {
    let stack = spawn_stack_with(&[("AUTH_WEBHOOK_URL", "off")], &[]).await;
    let reg = stack.register(&unique_email()).await;
    assert!(stack.mirror_user(reg.user.id).await.is_none());
    let res = stack.me(&reg.tokens.access_token).await;
    assert_eq!(res.status(), StatusCode::OK);
    let me: Value = res.json().await.expect("json");
    assert_eq!(me["id"], json!(reg.user.id));
    assert_eq!(me["email"], json!(reg.user.email));
    assert_eq!(me["role"], "standard_user");
    assert_eq!(me["plan_tier"], "free");
    assert_eq!(me["permissions"], json!([]));
    assert_eq!(me["feature_flags"], json!({}));
    assert!(me.get("password_hash").is_none() && me.get("version").is_none());
    assert!(stack.mirror_user(reg.user.id).await.is_some());
}

#[tokio::test]
async fn auth_down_serves_cached_tokens_and_refuses_the_rest() {
    let mut stack = spawn_stack().await;
    let cached = stack.register(&unique_email()).await.tokens.access_token;
    let other = stack.register(&unique_email()).await.tokens.access_token;
    assert_eq!(stack.me(&cached).await.status(), StatusCode::OK);
    stack.stop_auth().await;
    assert_eq!(stack.me(&cached).await.status(), StatusCode::OK);
    let (status, code) = code(stack.me(&other).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "auth_unavailable")
    );
    // Failures are not cached: once the auth service is back, it works.
    stack.start_auth().await;
    assert_eq!(stack.me(&other).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn logout_is_refused_by_the_main_backend_within_a_second() {
    let stack = spawn_stack().await;
    let email = unique_email();
    stack.register(&email).await;
    let tokens = stack.login(&email).await;
    let keep = stack.login(&email).await;
    assert_eq!(
        stack.me(&tokens.access_token).await.status(),
        StatusCode::OK
    );
    assert_eq!(stack.me(&keep.access_token).await.status(), StatusCode::OK);
    let res = stack
        .client
        .post(format!("{}/v1/logout", stack.auth_url))
        .bearer_auth(&tokens.access_token)
        .send()
        .await
        .expect("logout");
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let took = eventually(Duration::from_secs(1), || async {
        stack.me(&tokens.access_token).await.status() == StatusCode::UNAUTHORIZED
    })
    .await;
    assert!(took < Duration::from_secs(1), "{took:?}");
    // Only that session: the other one still works.
    assert_eq!(stack.me(&keep.access_token).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn refresh_token_reuse_revokes_at_the_main_backend() {
    let stack = spawn_stack_with(&[("AUTH_REFRESH_REUSE_GRACE_SECONDS", "0")], &[]).await;
    let reg = stack.register(&unique_email()).await;
    assert_eq!(
        stack.me(&reg.tokens.access_token).await.status(),
        StatusCode::OK
    );
    let refresh = |t: String| {
        let req = stack
            .client
            .post(format!("{}/v1/token/refresh", stack.auth_url))
            .json(&json!({"refresh_token": t}));
        async move { req.send().await.expect("refresh") }
    };
    let first = refresh(reg.tokens.refresh_token.clone()).await;
    assert_eq!(first.status(), StatusCode::OK);
    let new: shared_types::TokenPair = first.json().await.expect("pair");
    assert_eq!(stack.me(&new.access_token).await.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, code) = code(refresh(reg.tokens.refresh_token.clone()).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNAUTHORIZED, "refresh_token_reused")
    );
    eventually(Duration::from_secs(1), || async {
        stack.me(&new.access_token).await.status() == StatusCode::UNAUTHORIZED
    })
    .await;
}

#[tokio::test]
async fn a_revocation_reaching_one_replica_evicts_on_both() {
    let mut stack = spawn_stack().await;
    let replica = stack.start_main_replica().await;
    let email = unique_email();
    let reg = stack.register(&email).await;
    let token = reg.tokens.access_token.clone();
    // Both replicas have the token cached.
    assert_eq!(stack.me(&token).await.status(), StatusCode::OK);
    assert_eq!(
        stack.main_get(&replica, "/v1/me", &token).await.status(),
        StatusCode::OK
    );
    let res = stack
        .client
        .post(format!("{}/v1/logout/all", stack.auth_url))
        .bearer_auth(&token)
        .send()
        .await
        .expect("logout");
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    // The webhook reaches the first replica only; the second learns from the
    // shared revocations table.
    let took = eventually(Duration::from_secs(1), || async {
        stack.main_get(&replica, "/v1/me", &token).await.status() == StatusCode::UNAUTHORIZED
    })
    .await;
    assert!(took < Duration::from_secs(1));
    assert_eq!(stack.me(&token).await.status(), StatusCode::UNAUTHORIZED);
    // A new login after "every session" was revoked is not caught by it:
    // refused only while the revocation's clock-skew margin lasts (an
    // answer fetched that close to it could predate it), then accepted,
    // and still accepted after the replica has read the feed again.
    let fresh = stack.login(&email).await;
    let fresh_ok = || async {
        stack
            .main_get(&replica, "/v1/me", &fresh.access_token)
            .await
            .status()
            == StatusCode::OK
    };
    eventually(Duration::from_secs(2), fresh_ok).await;
    let polls = || async {
        let text = stack
            .get(&replica, "/metrics")
            .await
            .text()
            .await
            .expect("metrics");
        service_kit::testing::parse_metrics(&text)
            .get(r#"main_revocation_polls_total{outcome="ok"}"#)
    };
    let before = polls().await;
    eventually(Duration::from_secs(5), || async {
        polls().await >= before + 2.0
    })
    .await;
    assert!(fresh_ok().await, "the fresh session stays valid");
}
