use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{assert_problem, email, spawn_app};

#[tokio::test]
async fn sessions_lists_live_sessions_and_marks_the_current_one() {
    let app = spawn_app().await;
    let address = email();
    let first = app.register(&address).await.tokens;
    let second = app.login(&address).await;
    let list: Vec<Value> = app
        .get_bearer("/v1/sessions", &second.access_token)
        .await
        .json()
        .await
        .expect("list");
    assert_eq!(list.len(), 2);
    let current: Vec<&Value> = list.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["id"], second.session_id.to_string());
    assert_eq!(current[0]["ip"], "127.0.0.1");
    for field in [
        "id",
        "created_at",
        "last_used_at",
        "ip",
        "user_agent",
        "current",
    ] {
        assert!(list[0].get(field).is_some(), "missing {field}");
    }
    // Revoking the other session kills it and leaves this one alone.
    let path = format!("/v1/sessions/{}", first.session_id);
    let res = app.delete_bearer(&path, &second.access_token).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.me_status(&first.access_token).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.me_status(&second.access_token).await, StatusCode::OK);
    let list: Vec<Value> = app
        .get_bearer("/v1/sessions", &second.access_token)
        .await
        .json()
        .await
        .expect("list");
    assert_eq!(list.len(), 1);
}

#[tokio::test]
async fn deleting_another_users_session_returns_404_and_changes_nothing() {
    let app = spawn_app().await;
    let alice = app.register(&email()).await.tokens;
    let bob = app.register(&email()).await.tokens;
    for target in [bob.session_id, uuid::Uuid::new_v4()] {
        let res = app
            .delete_bearer(&format!("/v1/sessions/{target}"), &alice.access_token)
            .await;
        assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
    }
    assert_eq!(app.me_status(&bob.access_token).await, StatusCode::OK);
}

#[tokio::test]
async fn logout_all_revokes_every_session_of_the_user_only() {
    let app = spawn_app().await;
    let address = email();
    let a = app.register(&address).await.tokens;
    let b = app.login(&address).await;
    let other = app.register(&email()).await.tokens;
    assert_eq!(
        app.post_bearer("/v1/logout/all", &b.access_token, None)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    for t in [&a, &b] {
        assert_eq!(
            app.me_status(&t.access_token).await,
            StatusCode::UNAUTHORIZED
        );
        assert_problem(
            app.refresh(&t.refresh_token).await,
            StatusCode::UNAUTHORIZED,
            "invalid_refresh_token",
        )
        .await;
    }
    assert_eq!(app.me_status(&other.access_token).await, StatusCode::OK);
}
