use reqwest::StatusCode;
use serde_json::json;
use shared_types::TokenPair;

use crate::helpers::{assert_problem, email, spawn_app, spawn_app_with};

#[tokio::test]
async fn refresh_rotates_the_pair_in_the_same_session() {
    let app = spawn_app().await;
    let first = app.register(&email()).await.tokens;
    let res = app.refresh(&first.refresh_token).await;
    assert_eq!(res.status(), StatusCode::OK);
    let second: TokenPair = res.json().await.expect("pair");
    assert_ne!(second.refresh_token, first.refresh_token);
    assert_ne!(second.access_token, first.access_token);
    assert_eq!(second.session_id, first.session_id);
    assert_eq!(app.me_status(&second.access_token).await, StatusCode::OK);
    // The new refresh token works in turn.
    let third: TokenPair = app
        .refresh(&second.refresh_token)
        .await
        .json()
        .await
        .expect("pair");
    assert_eq!(third.session_id, first.session_id);
}

#[tokio::test]
async fn unknown_refresh_token_returns_401_invalid_refresh_token() {
    let app = spawn_app().await;
    for bad in ["", "nope", &"A".repeat(43)] {
        assert_problem(
            app.refresh(bad).await,
            StatusCode::UNAUTHORIZED,
            "invalid_refresh_token",
        )
        .await;
    }
}

#[tokio::test]
async fn replay_after_the_grace_window_revokes_the_whole_session() {
    let app = spawn_app_with(&[("AUTH_REFRESH_REUSE_GRACE_SECONDS", "0")]).await;
    let first = app.register(&email()).await.tokens;
    let second: TokenPair = app
        .refresh(&first.refresh_token)
        .await
        .json()
        .await
        .expect("pair");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    // The spent token comes back: someone else holds a copy.
    assert_problem(
        app.refresh(&first.refresh_token).await,
        StatusCode::UNAUTHORIZED,
        "refresh_token_reused",
    )
    .await;
    // The whole family dies: the newest pair too.
    assert_eq!(
        app.me_status(&second.access_token).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.introspect(&second.access_token).await,
        json!({"active": false})
    );
    assert_problem(
        app.refresh(&second.refresh_token).await,
        StatusCode::UNAUTHORIZED,
        "invalid_refresh_token",
    )
    .await;
    // Another replay is still reported as reuse.
    assert_problem(
        app.refresh(&first.refresh_token).await,
        StatusCode::UNAUTHORIZED,
        "refresh_token_reused",
    )
    .await;
}

#[tokio::test]
async fn replay_inside_the_grace_window_gets_the_same_pair() {
    let app = spawn_app().await;
    let first = app.register(&email()).await.tokens;
    let a: TokenPair = app
        .refresh(&first.refresh_token)
        .await
        .json()
        .await
        .expect("pair");
    let res = app.refresh(&first.refresh_token).await;
    assert_eq!(res.status(), StatusCode::OK);
    let b: TokenPair = res.json().await.expect("pair");
    assert_eq!(
        a, b,
        "a retried refresh gets exactly the pair the first one got"
    );
    assert_eq!(app.me_status(&b.access_token).await, StatusCode::OK);
}

#[tokio::test]
async fn concurrent_refreshes_with_one_token_all_get_the_same_pair() {
    let app = spawn_app_with(&[("AUTH_WORKERS", "2")]).await;
    let first = app.register(&email()).await.tokens;
    let answers =
        futures::future::join_all((0..6).map(|_| app.refresh(&first.refresh_token))).await;
    let mut pairs = Vec::new();
    for res in answers {
        assert_eq!(res.status(), StatusCode::OK);
        pairs.push(res.json::<TokenPair>().await.expect("pair"));
    }
    assert!(
        pairs.windows(2).all(|w| w[0] == w[1]),
        "every racer gets the same pair"
    );
    // Exactly one new token exists: using it works, and the session lives.
    let next = app.refresh(&pairs[0].refresh_token).await;
    assert_eq!(next.status(), StatusCode::OK);
}

#[tokio::test]
async fn refresh_token_of_a_logged_out_session_is_refused() {
    let app = spawn_app().await;
    let tokens = app.register(&email()).await.tokens;
    assert_eq!(
        app.post_bearer("/v1/logout", &tokens.access_token, None)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_problem(
        app.refresh(&tokens.refresh_token).await,
        StatusCode::UNAUTHORIZED,
        "invalid_refresh_token",
    )
    .await;
}

#[tokio::test]
async fn only_hashes_of_refresh_tokens_are_stored() {
    use auth_service::db::{sessions, DbPool};
    let app = spawn_app().await;
    let tokens = app.register(&email()).await.tokens;
    let pool = DbPool::connect(&app.database_url, 1).await.expect("pool");
    let mut pooled = pool.get().await.expect("conn");
    let conn = &mut pooled.conn();
    assert!(sessions::find_refresh_token(conn, &tokens.refresh_token)
        .await
        .expect("query")
        .is_none());
    let hashed = auth_service::tokens::hash_token(&tokens.refresh_token);
    let (row, _) = sessions::find_refresh_token(conn, &hashed)
        .await
        .expect("query")
        .expect("row by hash");
    assert_eq!(row.token_hash.len(), 64);
}
