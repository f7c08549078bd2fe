//! Passkeys, with the tests' own software authenticator: register, list,
//! sign in with and without an email, a TOTP user signing in with the
//! passkey alone; and what an attacker tries: malformed credentials, the
//! wrong challenge or origin, a tampered signature, a replayed assertion,
//! an unknown credential, a cloned authenticator, another user's passkey.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::authenticator::SoftPasskey;
use crate::helpers::{assert_problem, audit, email, spawn_app_with, TestApp};

const ORIGIN: &str = "http://localhost:3000";

async fn app() -> TestApp {
    spawn_app_with(&[
        ("AUTH_WEBAUTHN_RP_ID", "localhost"),
        ("AUTH_WEBAUTHN_ORIGINS", ORIGIN),
    ])
    .await
}

/// Registers a passkey for the session `token`; answers the authenticator.
async fn add_passkey(app: &TestApp, token: &str) -> SoftPasskey {
    let res = app
        .post_bearer("/v1/passkeys/register/start", token, None)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let start: Value = res.json().await.expect("json");
    let (passkey, credential) = SoftPasskey::create(&start["options"], ORIGIN);
    let res = app
        .post_bearer(
            "/v1/passkeys/register/finish",
            token,
            Some(&json!({"challenge_id": start["challenge_id"], "credential": credential, "name": "laptop"})),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED, "{:?}", res.text().await);
    passkey
}

async fn login_start(app: &TestApp, email: Option<&str>) -> Value {
    let body = match email {
        Some(e) => json!({ "email": e }),
        None => json!({}),
    };
    let res = app.post_json("/v1/passkeys/login/start", &body).await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.expect("json")
}

async fn login_finish(
    app: &TestApp,
    challenge_id: &Value,
    credential: &Value,
) -> reqwest::Response {
    app.post_json(
        "/v1/passkeys/login/finish",
        &json!({"challenge_id": challenge_id, "credential": credential}),
    )
    .await
}

#[tokio::test]
async fn a_passkey_signs_in_with_an_email_and_without_one() {
    let app = app().await;
    let address = email();
    let reg = app.register(&address).await;
    let mut passkey = add_passkey(&app, &reg.tokens.access_token).await;
    let list: Value = app
        .get_bearer("/v1/passkeys", &reg.tokens.access_token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    assert_eq!(list[0]["name"], "laptop");
    assert_eq!(
        audit(&app, &format!("kind=passkey_added&user_id={}", reg.user.id))
            .await
            .len(),
        1
    );

    // With the email: the account's credential is offered.
    let start = login_start(&app, Some(&address)).await;
    let offered = start["options"]["publicKey"]["allowCredentials"]
        .as_array()
        .map(Vec::len);
    assert_eq!(offered, Some(1));
    let assertion = passkey.get(&start["options"], ORIGIN);
    let res = login_finish(&app, &start["challenge_id"], &assertion).await;
    assert_eq!(res.status(), StatusCode::OK);
    let tokens: Value = res.json().await.expect("json");
    assert_eq!(tokens["user_id"], reg.user.id.to_string());
    // Replayed: the challenge was spent.
    let res = login_finish(&app, &start["challenge_id"], &assertion).await;
    assert_problem(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;

    // Without: a discoverable credential names its user.
    let start = login_start(&app, None).await;
    let assertion = passkey.get(&start["options"], ORIGIN);
    let res = login_finish(&app, &start["challenge_id"], &assertion).await;
    assert_eq!(res.status(), StatusCode::OK);
}
