//! The attacker's tests for the brute-force limits: real bursts of requests
//! sent at once, against one server and across replicas, with exact counts.
//! A limit that lets a burst through before the first failure is recorded
//! fails these (the checks used to run before anything was counted).

use std::collections::BTreeMap;

use auth_service::mfa::code_at;
use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{json, Value};
use shared_types::TotpSetup;

use crate::helpers::{assert_problem, email, spawn_app_with, TestApp, PASSWORD};

const ATTACKER: &str = "203.0.113.7";

/// Loopback is the trusted proxy, so `X-Forwarded-For` names the client.
async fn behind_proxy(threshold: &str) -> TestApp {
    spawn_app_with(&[
        ("AUTH_TRUSTED_PROXIES", "127.0.0.1/32,::1/128"),
        ("AUTH_LOCKOUT_THRESHOLD", threshold),
        ("AUTH_DATABASE_POOL_SIZE", "8"),
    ])
    .await
}

/// How many answers had each (status, code).
async fn tally(responses: Vec<reqwest::Response>) -> BTreeMap<(u16, String), usize> {
    let mut out = BTreeMap::new();
    for res in responses {
        let status = res.status().as_u16();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        let code = body["code"].as_str().unwrap_or("").to_owned();
        *out.entry((status, code)).or_insert(0) += 1;
    }
    out
}

fn count(t: &BTreeMap<(u16, String), usize>, status: u16, code: &str) -> usize {
    t.get(&(status, code.to_owned())).copied().unwrap_or(0)
}

/// Login failures audited with `detail` for this email's user (or none).
async fn audited_checks(app: &TestApp, user_id: uuid::Uuid, detail: &str) -> usize {
    let admin = app.service_token(&["admin"]).await;
    let rows: Vec<Value> = app
        .get_bearer(
            &format!("/admin/v1/audit?user_id={user_id}&kind=login_failed&limit=1000"),
            &admin,
        )
        .await
        .json()
        .await
        .expect("audit");
    rows.iter().filter(|r| r["detail"] == detail).count()
}

/// A new user with TOTP on; its secret and the Unix time its enabling
/// code was for (that step is spent).
async fn user_with_totp(app: &TestApp) -> (String, shared_types::RegisterResponse, String, u64) {
    let address = email();
    let reg = app.register(&address).await;
    let token = &reg.tokens.access_token;
    let setup: TotpSetup = app
        .post_bearer("/v1/mfa/totp/setup", token, None)
        .await
        .json()
        .await
        .expect("setup");
    let now = u64::try_from(chrono::Utc::now().timestamp()).expect("after 1970");
    let code = code_at(&setup.secret, now).expect("code");
    let res = app
        .post_bearer(
            "/v1/mfa/totp/enable",
            token,
            Some(&json!({"code": code, "password": PASSWORD})),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    (address, reg, setup.secret, now)
}

#[tokio::test]
async fn fifty_wrong_passwords_at_once_from_one_address_get_exactly_threshold_checks() {
    let app = behind_proxy("5").await;
    let address = email();
    let user = app.register(&address).await.user;
    let guesses: Vec<String> = (0..50).map(|i| format!("wrong password {i}")).collect();
    let burst = guesses
        .iter()
        .map(|g| app.try_login(&address, g, None, Some(ATTACKER)));
    let t = tally(join_all(burst).await).await;
    assert_eq!(count(&t, 401, "invalid_credentials"), 5, "{t:?}");
    assert_eq!(count(&t, 429, "too_many_attempts"), 45, "{t:?}");
    assert_eq!(
        audited_checks(&app, user.id, "invalid credentials").await,
        5
    );
    // The lock holds for the correct password too.
    let res = app
        .try_login(&address, PASSWORD, None, Some(ATTACKER))
        .await;
    assert_problem(res, StatusCode::TOO_MANY_REQUESTS, "too_many_attempts").await;
    // An email no account has is limited exactly the same way.
    let unknown = email();
    let burst = (0..50).map(|_| app.try_login(&unknown, "guess", None, Some(ATTACKER)));
    let t = tally(join_all(burst).await).await;
    assert_eq!(count(&t, 401, "invalid_credentials"), 5, "{t:?}");
    assert_eq!(count(&t, 429, "too_many_attempts"), 45, "{t:?}");
}

/// 300 addresses against one email, split over two replicas of the service
/// on one database: the per-email limit (ten times the threshold) is exact
/// across processes because the count lives in the database.
#[tokio::test]
async fn three_hundred_addresses_at_once_across_replicas_get_exactly_ten_times_threshold() {
    let mut app = behind_proxy("5").await;
    let replica = app.start_replica().await;
    let address = email();
    let user = app.register(&address).await.user;
    let client = &app.client;
    let burst = (0..300u32).map(|i| {
        let base = if i.is_multiple_of(2) {
            app.address.as_str()
        } else {
            replica.as_str()
        };
        client
            .post(format!("{base}/v1/login"))
            .header("x-forwarded-for", format!("10.{}.{}.1", i / 250, i % 250))
            .json(&json!({"email": address, "password": "not it"}))
            .send()
    });
    let responses: Vec<_> = join_all(burst)
        .await
        .into_iter()
        .map(|r| r.expect("request"))
        .collect();
    let t = tally(responses).await;
    assert_eq!(count(&t, 401, "invalid_credentials"), 50, "{t:?}");
    assert_eq!(count(&t, 429, "too_many_attempts"), 250, "{t:?}");
    assert_eq!(
        audited_checks(&app, user.id, "invalid credentials").await,
        50
    );
    // The email is locked from every address now, the owner's included.
    let res = app
        .try_login(&address, PASSWORD, None, Some("198.51.100.2"))
        .await;
    assert_problem(res, StatusCode::TOO_MANY_REQUESTS, "too_many_attempts").await;
}

/// Someone holding the password guesses the second factor: the codes are
/// counted under the same limit, exactly (recovery codes included).
#[tokio::test]
async fn a_burst_of_wrong_second_factors_gets_exactly_threshold_checks() {
    let app = behind_proxy("5").await;
    let (address, reg, secret, now) = user_with_totp(&app).await;
    // Half look like TOTP codes, half like recovery codes.
    let guesses: Vec<String> = (0..40u32)
        .map(|i| {
            if i.is_multiple_of(2) {
                format!("{:06}", (i * 7919) % 1_000_000)
            } else {
                format!("ABCD-EFGH-{i:04}")
            }
        })
        .collect();
    let burst = guesses
        .iter()
        .map(|g| app.try_login(&address, PASSWORD, Some(g), Some(ATTACKER)));
    let t = tally(join_all(burst).await).await;
    assert_eq!(count(&t, 401, "mfa_required"), 5, "{t:?}");
    assert_eq!(count(&t, 429, "too_many_attempts"), 35, "{t:?}");
    assert_eq!(
        audited_checks(&app, reg.user.id, "invalid second factor").await,
        5
    );
    // A right code does not pass the lock either.
    let next = code_at(&secret, now + 30).expect("code");
    let res = app
        .try_login(&address, PASSWORD, Some(&next), Some(ATTACKER))
        .await;
    assert_problem(res, StatusCode::TOO_MANY_REQUESTS, "too_many_attempts").await;
}

/// A stolen session guessing the password through the account-change
/// endpoints is counted exactly like a login (the email change and the
/// password change share the count), and the session that fills the limit
/// is ended.
#[tokio::test]
async fn a_stolen_session_guessing_the_password_is_counted_and_ended() {
    let app = behind_proxy("5").await;
    let address = email();
    let reg = app.register(&address).await;
    let stolen = reg.tokens.access_token.clone();
    let change = |i: usize| {
        let (path, body) = if i.is_multiple_of(2) {
            (
                "/v1/password/change",
                json!({"current_password": format!("guess {i}"), "new_password": "an attacker's own passphrase"}),
            )
        } else {
            (
                "/v1/email/change",
                json!({"new_email": email(), "password": format!("guess {i}")}),
            )
        };
        app.client
            .post(app.url(path))
            .bearer_auth(&stolen)
            .header("x-forwarded-for", ATTACKER)
            .json(&body)
            .send()
    };
    let responses: Vec<_> = join_all((0..30).map(change))
        .await
        .into_iter()
        .map(|r| r.expect("request"))
        .collect();
    let t = tally(responses).await;
    // Requests that arrive after the session ended get 401 without a check;
    // either way no more than five passwords were tried.
    let checked = count(&t, 401, "invalid_credentials");
    assert_eq!(checked, 5, "{t:?}");
    assert_eq!(
        count(&t, 429, "too_many_attempts") + count(&t, 401, "unauthorized"),
        25,
        "{t:?}"
    );
    assert_eq!(app.me_status(&stolen).await, StatusCode::UNAUTHORIZED);
    // The owner's other session, from the attacker's address, is refused
    // too (the lock is on the email and address, not the session) ...
    let other = app.login(&address).await;
    let res = app
        .client
        .post(app.url("/v1/password/change"))
        .bearer_auth(&other.access_token)
        .header("x-forwarded-for", ATTACKER)
        .json(&json!({"current_password": PASSWORD, "new_password": "another long passphrase"}))
        .send()
        .await
        .expect("request");
    assert_problem(res, StatusCode::TOO_MANY_REQUESTS, "too_many_attempts").await;
    // ... while from the owner's own address it works.
    let res = app
        .client
        .post(app.url("/v1/password/change"))
        .bearer_auth(&other.access_token)
        .header("x-forwarded-for", "198.51.100.2")
        .json(&json!({"current_password": PASSWORD, "new_password": "another long passphrase"}))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
}

/// Turning TOTP off asks for the password and a code; wrong ones are
/// counted, and the limit ends the session.
#[tokio::test]
async fn wrong_codes_on_totp_disable_are_counted_and_end_the_session() {
    let app = behind_proxy("3").await;
    let (address, reg, _, _) = user_with_totp(&app).await;
    let token = &reg.tokens.access_token;
    for i in 0..3 {
        let res = app
            .post_bearer(
                "/v1/mfa/totp/disable",
                token,
                Some(&json!({"password": PASSWORD, "code": format!("00000{i}")})),
            )
            .await;
        assert_problem(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }
    assert_eq!(app.me_status(token).await, StatusCode::UNAUTHORIZED);
    // TOTP is still on: a login with the password alone asks for the code
    // (from the address that is not locked: the test client's own).
    let res = app
        .try_login(&address, PASSWORD, None, Some("198.51.100.2"))
        .await;
    assert_problem(res, StatusCode::UNAUTHORIZED, "mfa_required").await;
}

/// The account-change endpoints that check a password share the
/// per-address rate limit with login, so guessing costs the same there.
#[tokio::test]
async fn reauthentication_endpoints_are_rate_limited_per_address() {
    let app = spawn_app_with(&[("AUTH_RATE_LIMIT_PER_MINUTE", "3")]).await;
    let reg = app.register(&email()).await;
    let token = &reg.tokens.access_token;
    let wrong = json!({"current_password": "nope", "new_password": "a long new passphrase"});
    for _ in 0..2 {
        let res = app
            .post_bearer("/v1/password/change", token, Some(&wrong))
            .await;
        assert_problem(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }
    for (path, body) in [
        ("/v1/password/change", wrong.clone()),
        (
            "/v1/email/change",
            json!({"new_email": email(), "password": "x"}),
        ),
        (
            "/v1/mfa/totp/disable",
            json!({"password": "x", "code": "123456"}),
        ),
        (
            "/v1/mfa/totp/enable",
            json!({"password": "x", "code": "123456"}),
        ),
    ] {
        let res = app.post_bearer(path, token, Some(&body)).await;
        assert_problem(res, StatusCode::TOO_MANY_REQUESTS, "too_many_requests").await;
    }
}

/// An IPv6 client holds a whole /64: a fresh address per guess must not
/// buy a fresh counter. And a proxy's `ip:port` entry must not let the
/// client's own left-hand entry become its address.
#[tokio::test]
async fn ipv6_clients_count_per_64_and_forwarded_ports_are_read() {
    let app = behind_proxy("3").await;
    let address = email();
    app.register(&address).await;
    for i in 1..=3 {
        let from = format!("2001:db8:1:2::{i:x}");
        let res = app.try_login(&address, "wrong", None, Some(&from)).await;
        assert_problem(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }
    let res = app
        .try_login(&address, "wrong", None, Some("2001:db8:1:2:ffff::9"))
        .await;
    assert_problem(res, StatusCode::TOO_MANY_REQUESTS, "too_many_attempts").await;
    let res = app
        .try_login(&address, PASSWORD, None, Some("2001:db8:1:3::1"))
        .await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "another /64 is another client"
    );

    // Behind a proxy that appends `ip:port`: the forged left-hand entry
    // changes nothing, the attacker stays one client.
    let victim = email();
    app.register(&victim).await;
    for i in 0..3 {
        let forged = format!("192.0.2.{i}, {ATTACKER}:4711");
        let res = app.try_login(&victim, "wrong", None, Some(&forged)).await;
        assert_problem(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }
    let res = app
        .try_login(
            &victim,
            PASSWORD,
            None,
            Some(&format!("192.0.2.99, {ATTACKER}:4712")),
        )
        .await;
    assert_problem(res, StatusCode::TOO_MANY_REQUESTS, "too_many_attempts").await;
}
