//! Brute-force locks and the general rate limit: exact counts per client
//! address and per email, behind trusted proxies and not, and what lifts a
//! lock.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{
    assert_problem, audit, email, retry_after, spawn_app_with, TestApp, PASSWORD,
};

const ATTACKER: &str = "203.0.113.7";

const OWNER: &str = "198.51.100.2";

/// Loopback is the trusted proxy, so `X-Forwarded-For` names the client.
async fn behind_proxy(threshold: &str) -> TestApp {
    spawn_app_with(&[
        ("AUTH_TRUSTED_PROXIES", "127.0.0.1/32,::1/128"),
        ("AUTH_LOCKOUT_THRESHOLD", threshold),
    ])
    .await
}

#[tokio::test]
async fn lockout_holds_per_address_while_the_owner_signs_in_from_another() {
    let app = behind_proxy("3").await;
    let address = email();
    let user = app.register(&address).await.user;
    for _ in 0..3 {
        let res = app
            .try_login(&address, "wrong password!", None, Some(ATTACKER))
            .await;
        assert_problem(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }
    // Locked for this pair: even the correct password is refused.
    let res = app
        .try_login(&address, PASSWORD, None, Some(ATTACKER))
        .await;
    let wait = retry_after(&res);
    assert!(wait > 0 && wait <= 15 * 60, "Retry-After {wait}");
    assert_problem(res, StatusCode::TOO_MANY_REQUESTS, "too_many_attempts").await;
    // The owner, elsewhere, is not locked out.
    let res = app.try_login(&address, PASSWORD, None, Some(OWNER)).await;
    assert_eq!(res.status(), StatusCode::OK);
    // The same rule for an email no account has: nothing tells them apart.
    let unknown = email();
    for _ in 0..3 {
        let res = app
            .try_login(&unknown, "wrong password!", None, Some(ATTACKER))
            .await;
        assert_problem(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }
    let res = app
        .try_login(&unknown, PASSWORD, None, Some(ATTACKER))
        .await;
    assert_problem(res, StatusCode::TOO_MANY_REQUESTS, "too_many_attempts").await;
    // The lock is audited with the attacker's address.
    let rows = audit(&app, &format!("user_id={}&kind=lockout", user.id)).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["ip"], ATTACKER);
    assert_eq!(rows[0]["endpoint"], "POST /v1/login");
}

#[tokio::test]
async fn forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy() {
    let app = spawn_app_with(&[("AUTH_LOCKOUT_THRESHOLD", "3")]).await;
    let address = email();
    app.register(&address).await;
    // A client that writes a new address into the header each time is
    // still one client.
    for i in 0..3 {
        let forged = format!("192.0.2.{i}");
        let res = app
            .try_login(&address, "wrong password!", None, Some(&forged))
            .await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let res = app
        .try_login(&address, PASSWORD, None, Some("192.0.2.99"))
        .await;
    assert_problem(res, StatusCode::TOO_MANY_REQUESTS, "too_many_attempts").await;
}

#[tokio::test]
async fn ten_times_the_threshold_locks_the_email_from_every_address() {
    let app = behind_proxy("2").await;
    let address = email();
    app.register(&address).await;
    let unknown = email();
    for target in [&address, &unknown] {
        // One failure from each of twenty addresses: no pair reaches 2.
        for i in 0..20 {
            let from = format!("10.0.{}.{}", i / 200, i % 200 + 1);
            let res = app
                .try_login(target, "wrong password!", None, Some(&from))
                .await;
            assert_problem(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
        }
        let res = app.try_login(target, PASSWORD, None, Some(OWNER)).await;
        assert_problem(res, StatusCode::TOO_MANY_REQUESTS, "too_many_attempts").await;
    }
}

#[tokio::test]
async fn a_completed_password_reset_lifts_every_lock() {
    let app = behind_proxy("2").await;
    let address = email();
    let first = app.register(&address).await;
    for i in 0..20 {
        let from = format!("10.1.0.{}", i + 1);
        app.try_login(&address, "wrong password!", None, Some(&from))
            .await;
    }
    for _ in 0..2 {
        app.try_login(&address, "wrong password!", None, Some(ATTACKER))
            .await;
    }
    let res = app.try_login(&address, PASSWORD, None, Some(OWNER)).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);

    let res = app
        .post_json("/v1/password/forgot", &json!({"email": address}))
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let mail = app.mail(&address, "password_reset").await;
    assert_eq!(mail["subject"], "Reset your password");
    let token = TestApp::token_in_link(&mail);
    let new_password = "a brand new passphrase 42";
    let res = app
        .post_json(
            "/v1/password/reset",
            &json!({"token": token, "new_password": new_password}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);

    // Every lock is gone, even the attacker's pair; the old password and
    // every old session are not.
    let res = app
        .try_login(&address, new_password, None, Some(ATTACKER))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app.try_login(&address, PASSWORD, None, Some(OWNER)).await;
    assert_problem(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    assert_eq!(
        app.me_status(&first.tokens.access_token).await,
        StatusCode::UNAUTHORIZED
    );
    // The mail reached the owner, so the address counts as verified.
    let tokens: shared_types::TokenPair = app
        .try_login(&address, new_password, None, Some(OWNER))
        .await
        .json()
        .await
        .expect("tokens");
    let me: Value = app
        .get_bearer("/v1/me", &tokens.access_token)
        .await
        .json()
        .await
        .expect("me");
    assert_eq!(me["email_verified"], true);
    // Single use.
    let res = app
        .post_json(
            "/v1/password/reset",
            &json!({"token": token, "new_password": "yet another passphrase 7"}),
        )
        .await;
    assert_problem(res, StatusCode::BAD_REQUEST, "invalid_token").await;
    // The token was never stored in clear: not in its table, not in the
    // mail queue once sent.
    let stored = service_kit::testing::database_text(&app.database_url).await;
    assert!(
        !stored.contains(&token),
        "reset token found in the database"
    );
    assert!(!stored.contains(new_password));
}

#[tokio::test]
async fn the_public_endpoints_share_a_rate_limit_per_client_address() {
    let app = spawn_app_with(&[("AUTH_RATE_LIMIT_PER_MINUTE", "3")]).await;
    for _ in 0..3 {
        let res = app
            .post_json("/v1/password/forgot", &json!({"email": email()}))
            .await;
        assert_eq!(res.status(), StatusCode::ACCEPTED);
    }
    let res = app
        .post_json("/v1/login", &json!({"email": email(), "password": "x"}))
        .await;
    let wait = retry_after(&res);
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    assert_problem(res, StatusCode::TOO_MANY_REQUESTS, "too_many_requests").await;
    // A forged X-Forwarded-For from an untrusted peer changes nothing.
    let res = app.try_login(&email(), "x", None, Some("192.0.2.1")).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    // Health checks and authenticated endpoints are not limited.
    let res = app
        .client
        .get(app.url("/health/live"))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::OK);
}
