//! Passkeys, with the tests' own software authenticator: register, list,
//! sign in with and without an email, a TOTP user signing in with the
//! passkey alone; and what an attacker tries: malformed credentials, the
//! wrong challenge or origin, a tampered signature, a replayed assertion,
//! an unknown credential, a cloned authenticator, another user's passkey.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::authenticator::SoftPasskey;
use crate::helpers::{assert_problem, audit, email, spawn_app_with, Statuses, TestApp, PASSWORD};

const ORIGIN: &str = "http://localhost:3000";

async fn app() -> TestApp {
    spawn_app_with(&[
        ("AUTH_WEBAUTHN_RP_ID", "localhost"),
        ("AUTH_WEBAUTHN_ORIGINS", ORIGIN),
    ])
    .await
}

/// As `app`, with `AUTH_LOCKOUT_THRESHOLD`.
async fn app_with_threshold(threshold: &str) -> TestApp {
    spawn_app_with(&[
        ("AUTH_WEBAUTHN_RP_ID", "localhost"),
        ("AUTH_WEBAUTHN_ORIGINS", ORIGIN),
        ("AUTH_LOCKOUT_THRESHOLD", threshold),
    ])
    .await
}

/// Registers a passkey for the session `token` (the account's password is
/// asked again; an account without one sends none); answers the
/// authenticator.
async fn add_passkey(app: &TestApp, token: &str) -> SoftPasskey {
    let res = app
        .post_bearer(
            "/v1/passkeys/register/start",
            token,
            Some(&json!({ "current_password": PASSWORD })),
        )
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

/// `n` passkey sign-ins with the email, each answered by `answer` (given
/// its options), sent at once.
async fn sign_in_burst(
    app: &TestApp,
    address: &str,
    n: usize,
    mut answer: impl FnMut(&Value) -> Value,
) -> Statuses {
    let mut answers = Vec::new();
    for _ in 0..n {
        let start = login_start(app, Some(address)).await;
        answers.push((start["challenge_id"].clone(), answer(&start["options"])));
    }
    Statuses::of(answers.iter().map(|(c, a)| login_finish(app, c, a))).await
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

#[tokio::test]
async fn forged_replayed_cloned_and_foreign_answers_are_refused() {
    let app = app_with_threshold("50").await;
    let address = email();
    let reg = app.register(&address).await;
    let token = reg.tokens.access_token.clone();
    let mut passkey = add_passkey(&app, &token).await;
    let again = json!({ "current_password": PASSWORD });

    // Registration: malformed, wrong origin, someone else's challenge.
    let start: Value = app
        .post_bearer("/v1/passkeys/register/start", &token, Some(&again))
        .await
        .json()
        .await
        .expect("json");
    let res = app
        .post_bearer(
            "/v1/passkeys/register/finish",
            &token,
            Some(&json!({"challenge_id": start["challenge_id"], "credential": {"id": 1}})),
        )
        .await;
    assert_problem(res, StatusCode::BAD_REQUEST, "invalid_credential").await;
    let start: Value = app
        .post_bearer("/v1/passkeys/register/start", &token, Some(&again))
        .await
        .json()
        .await
        .expect("json");
    let (_, elsewhere) = SoftPasskey::create(&start["options"], "https://evil.test");
    let res = app
        .post_bearer(
            "/v1/passkeys/register/finish",
            &token,
            Some(&json!({"challenge_id": start["challenge_id"], "credential": elsewhere})),
        )
        .await;
    assert_problem(res, StatusCode::BAD_REQUEST, "invalid_credential").await;
    let bob = app.register(&email()).await;
    let start: Value = app
        .post_bearer("/v1/passkeys/register/start", &token, Some(&again))
        .await
        .json()
        .await
        .expect("json");
    let (_, credential) = SoftPasskey::create(&start["options"], ORIGIN);
    let res = app
        .post_bearer(
            "/v1/passkeys/register/finish",
            &bob.tokens.access_token,
            Some(&json!({"challenge_id": start["challenge_id"], "credential": credential})),
        )
        .await;
    assert_problem(res, StatusCode::BAD_REQUEST, "invalid_credential").await;

    // Sign-in: each refused answer is 401 and counted.
    let refused = |res: reqwest::Response| {
        assert_problem(res, StatusCode::UNAUTHORIZED, "invalid_credentials")
    };
    // Malformed.
    let start = login_start(&app, Some(&address)).await;
    refused(login_finish(&app, &start["challenge_id"], &json!({"id": "x"})).await).await;
    // An answer to another challenge.
    let a = login_start(&app, Some(&address)).await;
    let b = login_start(&app, Some(&address)).await;
    let for_a = passkey.get(&a["options"], ORIGIN);
    refused(login_finish(&app, &b["challenge_id"], &for_a).await).await;
    // From another origin.
    let start = login_start(&app, Some(&address)).await;
    let phished = passkey.get(&start["options"], "https://evil.test");
    refused(login_finish(&app, &start["challenge_id"], &phished).await).await;
    // A tampered signature.
    let start = login_start(&app, Some(&address)).await;
    let mut tampered = passkey.get(&start["options"], ORIGIN);
    let sig = tampered["response"]["signature"]
        .as_str()
        .expect("sig")
        .to_owned();
    let flipped = if sig.ends_with('A') {
        format!("{}B", &sig[..sig.len() - 1])
    } else {
        format!("{}A", &sig[..sig.len() - 1])
    };
    tampered["response"]["signature"] = json!(flipped);
    refused(login_finish(&app, &start["challenge_id"], &tampered).await).await;
    // An unknown credential.
    let start = login_start(&app, None).await;
    let mut unknown = passkey.get(&start["options"], ORIGIN);
    unknown["id"] = json!("AAAAAAAAAAAAAAAAAAAAAA");
    unknown["rawId"] = json!("AAAAAAAAAAAAAAAAAAAAAA");
    refused(login_finish(&app, &start["challenge_id"], &unknown).await).await;

    // The real one still works, then a clone answering with an old counter
    // is refused and audited.
    let start = login_start(&app, Some(&address)).await;
    let good = passkey.get(&start["options"], ORIGIN);
    assert_eq!(
        login_finish(&app, &start["challenge_id"], &good)
            .await
            .status(),
        StatusCode::OK
    );
    let start = login_start(&app, Some(&address)).await;
    let cloned = passkey.assert_with_counter(&start["options"], ORIGIN, 1);
    refused(login_finish(&app, &start["challenge_id"], &cloned).await).await;
    let failures = audit(&app, &format!("kind=login_failed&user_id={}", reg.user.id)).await;
    assert!(
        failures
            .iter()
            .any(|f| f["detail"].as_str().unwrap_or("").contains("cloned")),
        "{failures:?}"
    );

    // Another user cannot remove Alice's passkey (404, as an unknown one).
    let list: Value = app
        .get_bearer("/v1/passkeys", &token)
        .await
        .json()
        .await
        .expect("json");
    let id = list[0]["id"].as_str().expect("id");
    let res = app
        .delete_bearer(&format!("/v1/passkeys/{id}"), &bob.tokens.access_token)
        .await;
    assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
    // Alice can (she has a password); the audit says so.
    let res = app
        .delete_bearer(&format!("/v1/passkeys/{id}"), &token)
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        audit(
            &app,
            &format!("kind=passkey_removed&user_id={}", reg.user.id)
        )
        .await
        .len(),
        1
    );
}

#[tokio::test]
async fn a_burst_of_forged_assertions_gets_exactly_the_threshold_of_checks() {
    let app = app_with_threshold("3").await;
    let address = email();
    let reg = app.register(&address).await;
    let mut passkey = add_passkey(&app, &reg.tokens.access_token).await;
    let statuses = sign_in_burst(&app, &address, 12, |options| {
        passkey.get(options, "https://evil.test")
    })
    .await;
    assert_eq!(
        (
            statuses.count(StatusCode::UNAUTHORIZED),
            statuses.count(StatusCode::TOO_MANY_REQUESTS)
        ),
        (3, 9),
        "{statuses:?}"
    );
    // Locked: even the real passkey is refused now.
    let start = login_start(&app, Some(&address)).await;
    let good = passkey.get(&start["options"], ORIGIN);
    let res = login_finish(&app, &start["challenge_id"], &good).await;
    assert_problem(res, StatusCode::TOO_MANY_REQUESTS, "too_many_attempts").await;
}

#[tokio::test]
async fn a_totp_user_signs_in_with_the_passkey_alone_and_an_admin_reset_removes_it() {
    let app = app().await;
    let (address, reg, _, _) = crate::mfa::user_with_totp(&app).await;
    let mut passkey = add_passkey(&app, &reg.tokens.access_token).await;
    let start = login_start(&app, None).await;
    let assertion = passkey.get(&start["options"], ORIGIN);
    let res = login_finish(&app, &start["challenge_id"], &assertion).await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "a user-verified passkey is both factors"
    );
    let admin = app.service_token(&["admin"]).await;
    let res = app
        .post_bearer(
            &format!("/admin/v1/users/{}/mfa/reset", reg.user.id),
            &admin,
            None,
        )
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let start = login_start(&app, Some(&address)).await;
    assert!(start["options"]["publicKey"]["allowCredentials"]
        .as_array()
        .is_none_or(Vec::is_empty));
    let assertion = passkey.get(&start["options"], ORIGIN);
    let res = login_finish(&app, &start["challenge_id"], &assertion).await;
    assert_problem(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
}

#[tokio::test]
async fn without_a_relying_party_passkeys_are_off_and_say_so() {
    let app = crate::helpers::spawn_app().await;
    let res = app.post_json("/v1/passkeys/login/start", &json!({})).await;
    assert_problem(res, StatusCode::NOT_IMPLEMENTED, "passkeys_disabled").await;
}

/// An account made by a provider has no password: once its identity is
/// unlinked (the passkey keeps a way in), its last passkey cannot go.
#[tokio::test]
async fn the_last_passkey_of_an_account_without_a_password_stays() {
    use crate::providers::{
        browse, browser, fragment, Hub, HubUser, APP_URL, CLIENT_ID, CLIENT_SECRET,
    };
    let hub = Hub::start(CLIENT_ID, CLIENT_SECRET).await;
    hub.sign_in_as(HubUser {
        id: 77,
        login: "fern".into(),
        public_email: None,
        emails: vec![(email(), true, true)],
    });
    let mut env = hub.env("hub", true);
    env.push(("AUTH_OAUTH_PROVIDERS".into(), "hub".into()));
    env.push(("AUTH_APP_URL".into(), APP_URL.into()));
    env.push(("AUTH_WEBAUTHN_RP_ID".into(), "localhost".into()));
    env.push(("AUTH_WEBAUTHN_ORIGINS".into(), ORIGIN.into()));
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let app = spawn_app_with(&pairs).await;
    let landed = browse(&browser(), &app.url("/v1/oauth/hub/authorize"))
        .await
        .expect("lands");
    let res = app
        .post_json(
            "/v1/oauth/exchange",
            &json!({"code": fragment(&landed, "code").expect("code")}),
        )
        .await;
    let done: Value = res.json().await.expect("json");
    let token = done["tokens"]["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    add_passkey(&app, &token).await;
    let identities: Value = app
        .get_bearer("/v1/me/identities", &token)
        .await
        .json()
        .await
        .expect("json");
    let identity = identities[0]["id"].as_str().expect("id");
    let res = app
        .delete_bearer(&format!("/v1/me/identities/{identity}"), &token)
        .await;
    assert_eq!(
        res.status(),
        StatusCode::NO_CONTENT,
        "the passkey is a way in"
    );
    let list: Value = app
        .get_bearer("/v1/passkeys", &token)
        .await
        .json()
        .await
        .expect("json");
    let passkey = list[0]["id"].as_str().expect("id");
    let res = app
        .delete_bearer(&format!("/v1/passkeys/{passkey}"), &token)
        .await;
    assert_problem(res, StatusCode::CONFLICT, "last_sign_in_method").await;
}

/// A cloned authenticator racing the real one: assertions carrying the same
/// counter, each for its own challenge, sent at once. The counter check is
/// made against the stored counter inside the sign-in's transaction, so
/// exactly one of them gets a session however the requests interleave.
#[tokio::test]
async fn a_burst_of_assertions_with_one_counter_signs_in_once() {
    let app = app_with_threshold("50").await;
    let address = email();
    let reg = app.register(&address).await;
    let passkey = add_passkey(&app, &reg.tokens.access_token).await;
    let statuses = sign_in_burst(&app, &address, 8, |options| {
        passkey.assert_with_counter(options, ORIGIN, 7)
    })
    .await;
    assert_eq!(
        (
            statuses.count(StatusCode::OK),
            statuses.count(StatusCode::UNAUTHORIZED)
        ),
        (1, 7),
        "{statuses:?}"
    );
    let failures = audit(&app, &format!("kind=login_failed&user_id={}", reg.user.id)).await;
    assert_eq!(
        failures
            .iter()
            .filter(|f| f["detail"].as_str().unwrap_or("").contains("cloned"))
            .count(),
        7,
        "{failures:?}"
    );
}

/// A burst of good assertions at a locked account: every answer is 403
/// `account_locked`, none a 503. Each refusal gives its lockout slot back
/// and audits; done while still holding the request's own connection, a
/// burst the size of the pool would wait on itself until the pool's
/// deadline.
#[tokio::test]
async fn a_burst_of_sign_ins_to_a_locked_account_is_refused_not_stalled() {
    let app = app_with_threshold("100").await;
    let admin = app.service_token(&["admin"]).await;
    let address = email();
    let reg = app.register(&address).await;
    let mut passkey = add_passkey(&app, &reg.tokens.access_token).await;
    let id = reg.user.id;
    let res = app
        .post_bearer(&format!("/admin/v1/users/{id}/lock"), &admin, None)
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let statuses = sign_in_burst(&app, &address, 24, |options| passkey.get(options, ORIGIN)).await;
    assert!(statuses.count(StatusCode::FORBIDDEN) == 24, "{statuses:?}");
}

/// A stolen session must not add the thief's passkey as a permanent way
/// in: the password is asked again, and wrong guesses count in the same
/// lockout as a login's (a burst gets exactly the threshold of checks, and
/// the session that filled it is ended).
#[tokio::test]
async fn a_stolen_session_cannot_add_a_passkey_without_the_password() {
    let app = app_with_threshold("3").await;
    let address = email();
    let reg = app.register(&address).await;
    let token = reg.tokens.access_token.clone();
    let start = |body: Option<Value>| {
        let token = token.clone();
        let app = &app;
        async move {
            app.post_bearer("/v1/passkeys/register/start", &token, body.as_ref())
                .await
        }
    };
    // Without the password, or with a malformed body: refused, not counted.
    assert_problem(
        start(None).await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    assert_problem(
        start(Some(json!({"current_password": 7}))).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    let burst = (0..10).map(|i| start(Some(json!({"current_password": format!("guess {i}")}))));
    let statuses = Statuses::of(burst).await;
    assert_eq!(
        (
            statuses.count(StatusCode::UNAUTHORIZED),
            statuses.count(StatusCode::TOO_MANY_REQUESTS)
        ),
        (3, 7),
        "{statuses:?}"
    );
    assert_eq!(
        app.introspect(&token).await["active"],
        false,
        "the session is ended"
    );
    assert!(
        audit(&app, &format!("kind=passkey_added&user_id={}", reg.user.id))
            .await
            .iter()
            .all(|a| a["success"] == false)
    );
    // The owner, with the password, once the lock is over, can.
    let other = app.register(&email()).await;
    add_passkey(&app, &other.tokens.access_token).await;
}
