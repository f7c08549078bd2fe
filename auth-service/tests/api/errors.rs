//! Malformed input of every kind gets a clear 4xx problem, never a 500.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{assert_problem, email, spawn_app, PASSWORD};

#[tokio::test]
async fn malformed_json_returns_400() {
    let app = spawn_app().await;
    let res = app
        .client
        .post(app.url("/v1/register"))
        .header("content-type", "application/json")
        .body("{\"email\": ")
        .send()
        .await
        .expect("request");
    assert_problem(res, StatusCode::BAD_REQUEST, "bad_request").await;
}

#[tokio::test]
async fn unknown_missing_and_mistyped_fields_return_422() {
    let app = spawn_app().await;
    let cases = [
        json!({"email": email(), "password": PASSWORD, "is_admin": true}),
        json!({"email": email()}),
        json!({"email": 42, "password": PASSWORD}),
        json!("not an object"),
    ];
    for body in cases {
        let res = app.post_json("/v1/register", &body).await;
        let problem =
            assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert!(!problem["detail"].as_str().unwrap_or("").is_empty());
    }
    let res = app
        .post_json(
            "/v1/login",
            &json!({"email": email(), "password": PASSWORD, "role": "admin"}),
        )
        .await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
}

#[tokio::test]
async fn oversized_body_returns_413() {
    let app = spawn_app().await;
    let res = app
        .post_json(
            "/v1/register",
            &json!({"email": email(), "password": "x".repeat(70 * 1024)}),
        )
        .await;
    assert_problem(res, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
}

#[tokio::test]
async fn non_json_body_returns_415() {
    let app = spawn_app().await;
    let res = app
        .client
        .post(app.url("/v1/login"))
        .header("content-type", "text/plain")
        .body("hi")
        .send()
        .await
        .expect("request");
    assert_problem(
        res,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
}

#[tokio::test]
async fn bad_uuid_in_path_returns_400() {
    let app = spawn_app().await;
    let tokens = app.register(&email()).await.tokens;
    let res = app
        .delete_bearer("/v1/sessions/not-a-uuid", &tokens.access_token)
        .await;
    assert_problem(res, StatusCode::BAD_REQUEST, "bad_request").await;
    let res = app
        .get_bearer("/internal/v1/users/12345", &app.api_key)
        .await;
    assert_problem(res, StatusCode::BAD_REQUEST, "bad_request").await;
}

/// serde would read a struct from a JSON array (`[email, password]`); no
/// body of ours is anything but an object, so every other JSON value is 422.
/// Found by schemathesis on `/internal/v1/webhooks/redeliver`, where `[]`
/// meant "requeue every failed event".
#[tokio::test]
async fn a_body_that_is_not_a_json_object_is_422() {
    let app = spawn_app().await;
    for body in [
        r#"["someone@example.com", "a long enough password"]"#,
        "[]",
        "42",
        "\"x\"",
        "null",
    ] {
        let res = app
            .client
            .post(app.url("/v1/login"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request");
        assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    }
    let res = app
        .client
        .post(app.url("/internal/v1/webhooks/redeliver"))
        .bearer_auth(&app.api_key)
        .header("content-type", "application/json")
        .body("[]")
        .send()
        .await
        .expect("request");
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
}
