//! TOTP: setup, enable, login with codes and recovery codes, replay and
//! window, disable.

use auth_service::mfa::code_at;
use reqwest::StatusCode;
use serde_json::{json, Value};
use shared_types::{RecoveryCodes, RegisterResponse, TotpSetup};

use crate::helpers::{assert_problem, email, spawn_app, TestApp, PASSWORD};

fn now() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp()).expect("after 1970")
}

/// Waits until at least 12 s of the current 30 s TOTP step remain, so that
/// "the current step's code", taken by a test more than once, is one code
/// (a test that crossed a step boundary saw the enabling code accepted
/// again: it had become the previous step's, which is not what it means).
async fn clear_of_step_end() {
    let left = 30 - now() % 30;
    if left < 12 {
        tokio::time::sleep(std::time::Duration::from_secs(left + 1)).await;
    }
}

/// Registers a user and turns TOTP on; returns the user, the secret and the
/// recovery codes. The enabling code is the current step's, a step that
/// had at least 12 s left when this began.
pub(crate) async fn user_with_totp(
    app: &TestApp,
) -> (String, RegisterResponse, String, Vec<String>) {
    clear_of_step_end().await;
    let address = email();
    let reg = app.register(&address).await;
    let token = &reg.tokens.access_token;
    let res = app.post_bearer("/v1/mfa/totp/setup", token, None).await;
    assert_eq!(res.status(), StatusCode::OK);
    let setup: TotpSetup = res.json().await.expect("setup");
    let uri = &setup.otpauth_uri;
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    assert!(uri.contains(&format!("secret={}", setup.secret)), "{uri}");
    assert!(uri.contains("issuer=127.0.0.1"), "{uri}");
    let enable = |code: String| json!({"code": code, "password": PASSWORD});
    let res = app
        .post_bearer(
            "/v1/mfa/totp/enable",
            token,
            Some(&enable("000000x".into())),
        )
        .await;
    assert_problem(res, StatusCode::BAD_REQUEST, "invalid_code").await;
    // A code from three steps ahead is outside the window.
    let far = code_at(&setup.secret, now() + 90).expect("code");
    let res = app
        .post_bearer("/v1/mfa/totp/enable", token, Some(&enable(far)))
        .await;
    assert_problem(res, StatusCode::BAD_REQUEST, "invalid_code").await;
    let code = code_at(&setup.secret, now()).expect("code");
    let res = app
        .post_bearer("/v1/mfa/totp/enable", token, Some(&enable(code)))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let codes: RecoveryCodes = res.json().await.expect("recovery codes");
    assert_eq!(codes.recovery_codes.len(), 10);
    // The owner is told, at the account's address (no token in a notice).
    let notice = app.mail(&address, "mfa_enabled").await;
    assert!(
        notice["token"].is_null() && notice["link"].is_null(),
        "{notice}"
    );
    (address, reg, setup.secret, codes.recovery_codes)
}

#[tokio::test]
async fn totp_login_needs_a_fresh_code_in_the_window() {
    let app = spawn_app().await;
    let (address, reg, secret, _) = user_with_totp(&app).await;
    let me: Value = app
        .get_bearer("/v1/me", &reg.tokens.access_token)
        .await
        .json()
        .await
        .expect("me");
    assert_eq!(me["mfa_enabled"], true);
    // Setting up again is refused: the secret is never shown twice.
    let res = app
        .post_bearer("/v1/mfa/totp/setup", &reg.tokens.access_token, None)
        .await;
    assert_problem(res, StatusCode::CONFLICT, "mfa_already_enabled").await;

    let res = app.try_login(&address, PASSWORD, None, None).await;
    assert_problem(res, StatusCode::UNAUTHORIZED, "mfa_required").await;
    // The code that enabled TOTP was used: it does not sign in.
    let used = code_at(&secret, now()).expect("code");
    let res = app.try_login(&address, PASSWORD, Some(&used), None).await;
    assert_problem(res, StatusCode::UNAUTHORIZED, "mfa_required").await;
    // Four steps ahead: outside the window of one step either way.
    let far = code_at(&secret, now() + 120).expect("code");
    let res = app.try_login(&address, PASSWORD, Some(&far), None).await;
    assert_problem(res, StatusCode::UNAUTHORIZED, "mfa_required").await;
    // The next step's code is inside the window, once.
    let next = code_at(&secret, now() + 30).expect("code");
    let res = app.try_login(&address, PASSWORD, Some(&next), None).await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app.try_login(&address, PASSWORD, Some(&next), None).await;
    assert_problem(res, StatusCode::UNAUTHORIZED, "mfa_required").await;
    // A right code with a wrong password is still a wrong password.
    let res = app
        .try_login(&address, "wrong password!", Some(&next), None)
        .await;
    assert_problem(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
}

#[tokio::test]
async fn recovery_codes_work_once_each() {
    let app = spawn_app().await;
    let (address, _, _, codes) = user_with_totp(&app).await;
    let res = app
        .try_login(&address, PASSWORD, Some(&codes[0]), None)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app
        .try_login(&address, PASSWORD, Some(&codes[0]), None)
        .await;
    assert_problem(res, StatusCode::UNAUTHORIZED, "mfa_required").await;
    // Case and dashes do not matter.
    let typed = codes[1].replace('-', "").to_uppercase();
    let res = app.try_login(&address, PASSWORD, Some(&typed), None).await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app
        .try_login(&address, PASSWORD, Some("aaaa-bbbb-cccc-dddd"), None)
        .await;
    assert_problem(res, StatusCode::UNAUTHORIZED, "mfa_required").await;
}

#[tokio::test]
async fn disabling_needs_password_and_code() {
    let app = spawn_app().await;
    let (address, reg, secret, codes) = user_with_totp(&app).await;
    let token = &reg.tokens.access_token;
    let disable = |password: &str, code: &str| json!({"password": password, "code": code});
    let res = app
        .post_bearer(
            "/v1/mfa/totp/disable",
            token,
            Some(&disable("wrong password!", &codes[0])),
        )
        .await;
    assert_problem(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    let res = app
        .post_bearer(
            "/v1/mfa/totp/disable",
            token,
            Some(&disable(PASSWORD, "123456")),
        )
        .await;
    assert_problem(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    // The recovery code was not spent by the failed attempt with a bad password.
    let res = app
        .post_bearer(
            "/v1/mfa/totp/disable",
            token,
            Some(&disable(PASSWORD, &codes[0])),
        )
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = app.try_login(&address, PASSWORD, None, None).await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app
        .post_bearer(
            "/v1/mfa/totp/disable",
            token,
            Some(&disable(PASSWORD, &codes[1])),
        )
        .await;
    assert_problem(res, StatusCode::CONFLICT, "mfa_not_enabled").await;

    // Every change is audited and reaches the outbox with a growing version;
    // no secret or recovery code is anywhere in the database.
    let admin = app.service_token(&["admin"]).await;
    let rows: Vec<Value> = app
        .get_bearer(&format!("/admin/v1/audit?user_id={}", reg.user.id), &admin)
        .await
        .json()
        .await
        .expect("audit");
    let kinds: Vec<&str> = rows.iter().filter_map(|r| r["kind"].as_str()).collect();
    for kind in ["mfa_enabled", "mfa_disabled", "login_succeeded"] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    assert!(rows
        .iter()
        .all(|r| r["request_id"].is_string() && r["endpoint"].is_string()));
    let stored = service_kit::testing::database_text(&app.database_url).await;
    assert!(!stored.contains(&secret), "TOTP secret stored in clear");
    for code in &codes {
        assert!(
            !stored.contains(code.as_str()),
            "recovery code stored in clear"
        );
    }
    let versions = user_event_versions(&app, reg.user.id).await;
    assert!(
        versions.len() >= 3,
        "created, mfa on, mfa off: {versions:?}"
    );
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
    let logs = crate::helpers::captured_logs();
    assert!(!logs.contains(&secret) && !logs.contains(codes[0].as_str()));
}

/// Versions of the `user.*` events written for `user_id`, in order.
async fn user_event_versions(app: &TestApp, user_id: uuid::Uuid) -> Vec<i64> {
    use auth_service::db::schema::webhook_events as we;
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use service_kit::run;
    let db = app.db().await;
    let mut pooled = db.get().await.expect("conn");
    let conn = &mut pooled.conn();
    let payloads: Vec<String> = run!(conn, |c| we::table
        .order(we::id)
        .select(we::payload)
        .load(c)
        .await)
    .expect("events");
    payloads
        .iter()
        .map(|p| serde_json::from_str::<Value>(p).expect("json"))
        .filter(|e| e["data"]["id"] == user_id.to_string())
        .filter_map(|e| e["data"]["version"].as_i64())
        .collect()
}

#[tokio::test]
async fn enable_without_setup_is_an_invalid_code() {
    let app = spawn_app().await;
    let reg = app.register(&email()).await;
    let res = app
        .post_bearer(
            "/v1/mfa/totp/enable",
            &reg.tokens.access_token,
            Some(&json!({"code": "123456", "password": PASSWORD})),
        )
        .await;
    assert_problem(res, StatusCode::BAD_REQUEST, "invalid_code").await;
    let res = app.post_json("/v1/mfa/totp/setup", &json!({})).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

/// A stolen session (an access token, without the password) cannot enroll
/// its own second factor: the password is required and counted like a
/// login's, and the session that fills the limit is ended.
#[tokio::test]
async fn a_stolen_session_cannot_enroll_its_own_factor() {
    let app = crate::helpers::spawn_app_with(&[("AUTH_LOCKOUT_THRESHOLD", "3")]).await;
    let address = email();
    let reg = app.register(&address).await;
    let token = &reg.tokens.access_token;
    let res = app.post_bearer("/v1/mfa/totp/setup", token, None).await;
    let setup: TotpSetup = res.json().await.expect("setup");
    let code = || code_at(&setup.secret, now()).expect("code");
    // Without the password (the account has one): refused before anything
    // is enrolled, and not counted (the three guesses below still lock).
    let res = app
        .post_bearer("/v1/mfa/totp/enable", token, Some(&json!({"code": code()})))
        .await;
    assert_problem(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    for _ in 0..3 {
        let res = app
            .post_bearer(
                "/v1/mfa/totp/enable",
                token,
                Some(&json!({"code": code(), "password": "a guess at it"})),
            )
            .await;
        assert_problem(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }
    // The third wrong password ended the stolen session.
    assert_eq!(app.me_status(token).await, StatusCode::UNAUTHORIZED);
    assert_eq!(app.introspect(token).await["active"], false);
    // And the pair is locked: even the owner's password is refused here.
    let res = app.try_login(&address, PASSWORD, None, None).await;
    assert_problem(res, StatusCode::TOO_MANY_REQUESTS, "too_many_attempts").await;
    assert!(
        app.mails().iter().all(|m| m["kind"] != "mfa_enabled"),
        "nothing was enrolled"
    );
}

/// An owner who lost the device: an administrator removes the factor; every
/// session ends and the password alone signs in again.
#[tokio::test]
async fn an_administrator_resets_a_lost_second_factor() {
    let app = spawn_app().await;
    let (address, reg, _secret, _codes) = user_with_totp(&app).await;
    let admin = app.service_token(&["admin"]).await;
    let user_id = reg.user.id;
    // Other scopes and users' tokens are refused; an unknown user is 404.
    let ops = app.service_token(&["internal"]).await;
    let path = format!("/admin/v1/users/{user_id}/mfa/reset");
    let res = app.post_bearer(&path, &ops, None).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = app.post_bearer(&path, &reg.tokens.access_token, None).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = app
        .post_bearer(
            &format!("/admin/v1/users/{}/mfa/reset", uuid::Uuid::now_v7()),
            &admin,
            None,
        )
        .await;
    assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;

    let res = app.post_bearer(&path, &admin, None).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.introspect(&reg.tokens.access_token).await["active"],
        false
    );
    let tokens = app.login(&address).await;
    let me: Value = app
        .get_bearer("/v1/me", &tokens.access_token)
        .await
        .json()
        .await
        .expect("me");
    assert_eq!(me["mfa_enabled"], false);
    // The mirror hears of it: the change bumps the version.
    let versions = user_event_versions(&app, user_id).await;
    assert_eq!(
        versions.len(),
        3,
        "created, mfa on, mfa reset: {versions:?}"
    );
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
    // Enrolling again works, with a fresh secret.
    let res = app
        .post_bearer("/v1/mfa/totp/setup", &tokens.access_token, None)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
}
