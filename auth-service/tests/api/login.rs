use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{assert_problem, email, spawn_app, PASSWORD};

#[tokio::test]
async fn login_returns_a_new_session_and_records_last_login() {
    let app = spawn_app().await;
    let address = email();
    let registered = app.register(&address).await;
    let tokens = app.login(&address.to_uppercase()).await;
    assert_eq!(tokens.user_id, registered.user.id);
    assert_ne!(
        tokens.session_id, registered.tokens.session_id,
        "each login opens its own session"
    );
    let me: serde_json::Value = app
        .get_bearer("/v1/me", &tokens.access_token)
        .await
        .json()
        .await
        .expect("me");
    assert!(me["last_login"].is_string());
}

#[tokio::test]
async fn wrong_password_and_unknown_email_get_the_same_401() {
    let app = spawn_app().await;
    let address = email();
    app.register(&address).await;
    let wrong = app
        .post_json(
            "/v1/login",
            &json!({"email": address, "password": "not the password"}),
        )
        .await;
    let wrong = assert_problem(wrong, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    let unknown = app
        .post_json(
            "/v1/login",
            &json!({"email": email(), "password": PASSWORD}),
        )
        .await;
    let unknown = assert_problem(unknown, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    assert_eq!(wrong, unknown, "the answers must not tell the two apart");
    let malformed = app
        .post_json(
            "/v1/login",
            &json!({"email": "nonsense", "password": PASSWORD}),
        )
        .await;
    assert_eq!(
        assert_problem(malformed, StatusCode::UNAUTHORIZED, "invalid_credentials").await,
        wrong
    );
}

#[tokio::test]
async fn failed_and_successful_logins_are_audited_without_secrets() {
    use auth_service::db::{events, DbPool};
    let app = spawn_app().await;
    let address = email();
    let user = app.register(&address).await.user;
    app.post_json(
        "/v1/login",
        &json!({"email": address, "password": "wrong password here"}),
    )
    .await;
    app.login(&address).await;
    let pool = DbPool::connect(&app.database_url, 1).await.expect("pool");
    let mut pooled = pool.get().await.expect("conn");
    let rows = events::list(&mut pooled.conn(), Some(user.id), None, 10)
        .await
        .expect("events");
    let kinds: Vec<&str> = rows.iter().map(|e| e.kind.as_str()).collect();
    assert!(
        kinds.contains(&"login_failed") && kinds.contains(&"login_succeeded"),
        "{kinds:?}"
    );
    let ok = rows
        .iter()
        .find(|e| e.kind == "login_succeeded")
        .expect("success row");
    assert_eq!(ok.ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(ok.endpoint.as_deref(), Some("POST /v1/login"));
    assert!(ok.request_id.is_some());
    for row in &rows {
        let text = format!("{row:?}");
        assert!(
            !text.contains(PASSWORD) && !text.contains("wrong password here"),
            "secret in audit row: {text}"
        );
    }
}
