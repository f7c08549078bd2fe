use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{assert_problem, email, spawn_app, PASSWORD};

#[tokio::test]
async fn register_returns_201_with_user_and_working_tokens() {
    let app = spawn_app().await;
    let address = email();
    let res = app
        .post_json("/v1/register", &json!({"email": address.to_uppercase(), "password": PASSWORD, "full_name": " Ada Lovelace "}))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: serde_json::Value = res.json().await.expect("json");
    assert_eq!(
        body["user"]["email"], address,
        "email is normalised to lower case"
    );
    assert_eq!(body["user"]["email_verified"], false);
    assert_eq!(body["user"]["full_name"], "Ada Lovelace");
    assert_eq!(body["tokens"]["token_type"], "Bearer");
    assert_eq!(body["tokens"]["expires_in"], 1800);
    assert_eq!(body["tokens"]["user_id"], body["user"]["id"]);
    let access = body["tokens"]["access_token"].as_str().expect("access");
    let me: serde_json::Value = app
        .get_bearer("/v1/me", access)
        .await
        .json()
        .await
        .expect("me");
    assert_eq!(me["email"], address);
    assert_eq!(
        me["created_at"], body["user"]["created_at"],
        "what register returned is what is stored"
    );
    assert_eq!(me["mfa_enabled"], false);
}

#[tokio::test]
async fn duplicate_email_in_any_case_returns_409_email_taken() {
    let app = spawn_app().await;
    let address = email();
    app.register(&address).await;
    let res = app
        .post_json(
            "/v1/register",
            &json!({"email": format!("  {}", address.to_uppercase()), "password": PASSWORD}),
        )
        .await;
    assert_problem(res, StatusCode::CONFLICT, "email_taken").await;
}

#[tokio::test]
async fn invalid_email_returns_422_invalid_email() {
    let app = spawn_app().await;
    for bad in ["not-an-email", "a@b", "", "x y@example.com"] {
        let res = app
            .post_json("/v1/register", &json!({"email": bad, "password": PASSWORD}))
            .await;
        assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_email").await;
    }
}

#[tokio::test]
async fn weak_password_returns_422_weak_password() {
    let app = spawn_app().await;
    for weak in ["short", "password", "aaaaaaaaaaaaaaaa"] {
        let res = app
            .post_json("/v1/register", &json!({"email": email(), "password": weak}))
            .await;
        assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "weak_password").await;
    }
}

#[tokio::test]
async fn concurrent_registrations_all_succeed() {
    // On SQLite this is the "database is locked" check: every write
    // transaction must wait for the lock rather than fail.
    let app = spawn_app().await;
    let results = futures::future::join_all((0..24).map(|_| {
        let app = &app;
        async move {
            app.post_json(
                "/v1/register",
                &json!({"email": email(), "password": PASSWORD}),
            )
            .await
            .status()
        }
    }))
    .await;
    assert!(
        results.iter().all(|s| *s == StatusCode::CREATED),
        "{results:?}"
    );
    let count: serde_json::Value = app
        .get_bearer("/internal/v1/users/count", &app.api_key)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(count["count"], 24);
}

/// `AUTH_ALLOWED_EMAIL_DOMAINS`: registration and email change to any other
/// domain get 422 `email_not_allowed`; the listed ones work, in any case.
#[tokio::test]
async fn only_allowed_email_domains_get_accounts() {
    let app = crate::helpers::spawn_app_with(&[(
        "AUTH_ALLOWED_EMAIL_DOMAINS",
        "Example.com, @corp.example.org",
    )])
    .await;
    let register = |email: String| {
        let body = serde_json::json!({"email": email, "password": crate::helpers::PASSWORD});
        let req = app.client.post(app.url("/v1/register")).json(&body);
        async move { req.send().await.expect("register") }
    };
    for refused in [
        "ann@gmail.com",
        "ann@sub.example.com",
        "ann@example.com.evil.test",
        "ann@corp.example.org.evil.test",
    ] {
        let res = register(refused.to_owned()).await;
        crate::helpers::assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "email_not_allowed")
            .await;
    }
    let res = register(format!("Ann-{}@EXAMPLE.com", uuid::Uuid::new_v4().simple())).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let reg: shared_types::RegisterResponse = res.json().await.expect("json");
    let res = register(format!(
        "bob-{}@corp.example.org",
        uuid::Uuid::new_v4().simple()
    ))
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    // Email change to another domain is refused before any password check.
    let res = app
        .post_bearer(
            "/v1/email/change",
            &reg.tokens.access_token,
            Some(&serde_json::json!({"new_email": "ann@gmail.com", "password": "wrong"})),
        )
        .await;
    crate::helpers::assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "email_not_allowed")
        .await;
}
