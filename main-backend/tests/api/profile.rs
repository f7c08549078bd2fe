//! `GET /v1/me` and `PATCH /v1/me`: the profile, and main-owned fields only.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn users_change_their_own_fields_and_nothing_auth_owned() {
    let stack = spawn_stack().await;
    let reg = stack.register(&unique_email()).await;
    let token = reg.tokens.access_token;
    let patch = |body: Value| {
        let req = stack
            .client
            .patch(format!("{}/v1/me", stack.main_url))
            .bearer_auth(&token)
            .json(&body);
        async move { req.send().await.expect("patch") }
    };
    let res =
        patch(json!({"full_name": "Ada Lovelace", "picture": "https://img.example/ada.png"})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let me: Value = res.json().await.expect("json");
    assert_eq!(me["full_name"], "Ada Lovelace");
    assert_eq!(me["picture"], "https://img.example/ada.png");
    for (field, value) in [
        ("email", json!("new@example.com")),
        ("password", json!("hunter2hunter2")),
        ("email_verified", json!(true)),
        ("mfa_enabled", json!(true)),
        ("account_locked", json!(false)),
    ] {
        let res = patch(json!({ field: value })).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{field}");
        let problem: Value = res.json().await.expect("json");
        assert_eq!(problem["code"], "auth_owned_field");
        assert!(
            problem["detail"].as_str().expect("detail").contains("/v1/"),
            "{problem}"
        );
    }
    // The seed's names for the same data are refused as auth-owned too
    // (they used to fall through to validation_failed), each counted in
    // /metrics under its canonical name, whatever the spelling sent.
    let scrape = || async {
        let text = stack
            .get(&stack.main_url, "/metrics")
            .await
            .text()
            .await
            .expect("metrics");
        service_kit::testing::parse_metrics(&text)
    };
    let before = scrape().await;
    for field in [
        "hashed_password",
        "mfa_secret",
        "last_login",
        "password_changed_at",
        "failed_login_count",
        "hashedPassword",
    ] {
        let res = patch(json!({ field: "x" })).await;
        let problem = assert_problem_body(res, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(problem["code"], "auth_owned_field", "{field}: {problem}");
    }
    let after = scrape().await;
    let series = |f: &str| format!("main_auth_owned_field_attempts_total{{field=\"{f}\"}}");
    assert_eq!(after.since(&before, &series("hashed_password")), 2.0);
    for f in [
        "mfa_secret",
        "last_login",
        "password_changed_at",
        "failed_login_count",
    ] {
        assert_eq!(after.since(&before, &series(f)), 1.0, "{f}");
    }
    let res = patch(json!({"role": "admin"})).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = patch(json!({"picture": "javascript:alert(1)"})).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let res = stack
        .client
        .patch(format!("{}/v1/me", stack.main_url))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("patch");
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    // The email in the mirror is still the registered one.
    let row = stack.mirror_user(reg.user.id).await.expect("row");
    assert_eq!(row.email, reg.user.email);
    assert_eq!(row.full_name.as_deref(), Some("Ada Lovelace"));
}

async fn assert_problem_body(res: reqwest::Response, status: StatusCode) -> Value {
    assert_eq!(res.status(), status);
    res.json().await.expect("problem json")
}

/// `GET /v1/me` is rendered once per cached mirror row; every write must
/// show at once on the next GET (the user's own PATCH, an admin's, and the
/// sync path's), never an earlier rendering.
#[tokio::test]
async fn the_profile_served_from_the_cache_follows_every_change() {
    let stack = spawn_stack().await;
    let address = unique_email();
    let reg = stack.register(&address).await;
    let token = reg.tokens.access_token;
    let me = || async {
        let res = stack.me(&token).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(
            res.headers()["content-type"].to_str().expect("ascii"),
            "application/json"
        );
        res.json::<Value>().await.expect("json")
    };
    let first = me().await;
    assert_eq!(first["email"], address.as_str());
    assert_eq!(first["email_verified"], false);
    assert_eq!(first["full_name"], "Test User", "as registered");
    assert_eq!(me().await, first, "a second GET is the same profile");

    // The user's own change.
    let res = stack
        .client
        .patch(format!("{}/v1/me", stack.main_url))
        .bearer_auth(&token)
        .json(&json!({"full_name": "Grace Hopper"}))
        .send()
        .await
        .expect("patch");
    assert_eq!(res.status(), StatusCode::OK);
    let patched: Value = res.json().await.expect("json");
    assert_eq!(me().await, patched);
    assert_eq!(patched["full_name"], "Grace Hopper");

    // An administrator's change to business fields.
    let admin = stack.service_token(&["admin"]).await;
    let res = stack
        .client
        .patch(format!("{}/admin/v1/users/{}", stack.main_url, reg.user.id))
        .bearer_auth(&admin)
        .json(&json!({"plan_tier": "pro", "feature_flags": {"beta": true}}))
        .send()
        .await
        .expect("admin patch");
    assert_eq!(res.status(), StatusCode::OK);
    let now = me().await;
    assert_eq!(now["plan_tier"], "pro");
    assert_eq!(now["feature_flags"], json!({"beta": true}));
    assert_eq!(now["full_name"], "Grace Hopper");

    // An auth-owned change, arriving by the sync path.
    let mailed = stack.mailed_token(&address, "email_verification").await;
    let res = stack
        .auth_post("/v1/email/verify", None, &json!({"token": mailed}))
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    eventually(Duration::from_secs(5), || async {
        stack
            .mirror_user(reg.user.id)
            .await
            .is_some_and(|u| u.email_verified)
    })
    .await;
    let now = me().await;
    assert_eq!(now["email_verified"], true, "{now}");
    assert_eq!(now["plan_tier"], "pro");
}
