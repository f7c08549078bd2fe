//! The account routes: password forgot / reset / change, email verification
//! and change, each through the links in the mail outbox.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{
    assert_problem, audit, email, reset_requests_handled, retry_after, spawn_app, TestApp, PASSWORD,
};

#[tokio::test]
async fn forgot_answers_the_same_for_unknown_emails_and_mails_only_accounts() {
    let app = spawn_app().await;
    let known = email();
    app.register(&known).await;
    let unknown = email();
    let mut answers = Vec::new();
    for address in [&known, &unknown] {
        let res = app
            .post_json("/v1/password/forgot", &json!({"email": address}))
            .await;
        let status = res.status();
        let length = res.headers().get("content-length").cloned();
        let body = res.text().await.expect("body");
        answers.push((status, length, body));
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0].0, StatusCode::ACCEPTED);
    app.mail(&known, "password_reset").await;
    // A second request inside a minute sends no second mail (no inbox
    // flooding), and the unknown address never gets one.
    app.post_json("/v1/password/forgot", &json!({"email": known}))
        .await;
    // The request is handled after its 202: wait until it was (spaced out),
    // and until nothing is left to send, then look.
    reset_requests_handled(&app, &[("spaced", 1.0), ("no_account", 1.0)]).await;
    let mails = app.mails();
    assert_eq!(
        mails
            .iter()
            .filter(|m| m["kind"] == "password_reset")
            .count(),
        1,
        "{mails:?}"
    );
    assert!(mails.iter().all(|m| m["to"] != unknown.as_str()));
    let res = app
        .post_json("/v1/password/forgot", &json!({"email": "not an email"}))
        .await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_email").await;
}

#[tokio::test]
async fn expired_used_and_unknown_tokens_are_invalid_everywhere() {
    let app = spawn_app().await;
    let address = email();
    app.register(&address).await;
    for path in ["/v1/email/verify", "/v1/email/change/confirm"] {
        let res = app
            .post_json(path, &json!({"token": "no-such-token"}))
            .await;
        assert_problem(res, StatusCode::BAD_REQUEST, "invalid_token").await;
    }
    let res = app
        .post_json(
            "/v1/password/reset",
            &json!({"token": "no-such-token", "new_password": "a fine new passphrase"}),
        )
        .await;
    assert_problem(res, StatusCode::BAD_REQUEST, "invalid_token").await;

    // Expired: the verification mail sent at registration, aged underneath.
    let mail = app.mail(&address, "email_verification").await;
    let token = TestApp::token_in_link(&mail);
    age_tokens(&app).await;
    let res = app
        .post_json("/v1/email/verify", &json!({"token": token}))
        .await;
    assert_problem(res, StatusCode::BAD_REQUEST, "invalid_token").await;
    app.post_json("/v1/password/forgot", &json!({"email": address}))
        .await;
    let reset = TestApp::token_in_link(&app.mail(&address, "password_reset").await);
    age_tokens(&app).await;
    let res = app
        .post_json(
            "/v1/password/reset",
            &json!({"token": reset, "new_password": "a fine new passphrase"}),
        )
        .await;
    assert_problem(res, StatusCode::BAD_REQUEST, "invalid_token").await;
    // A weak password is refused before the token is looked at.
    let res = app
        .post_json(
            "/v1/password/reset",
            &json!({"token": reset, "new_password": "short"}),
        )
        .await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "weak_password").await;
}

/// Moves every mailed token's expiry into the past: time passes.
async fn age_tokens(app: &TestApp) {
    use auth_service::db::schema::{email_verifications as ev, password_resets as pr};
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use service_kit::db::sql_types::DbTime;
    use service_kit::run;
    let db = app.db().await;
    let mut pooled = db.get().await.expect("conn");
    let conn = &mut pooled.conn();
    let past = DbTime(chrono::Utc::now() - chrono::Duration::seconds(1));
    run!(conn, |c| diesel::update(pr::table)
        .set(pr::expires_at.eq(past))
        .execute(c)
        .await)
    .expect("age resets");
    run!(conn, |c| diesel::update(ev::table)
        .set(ev::expires_at.eq(past))
        .execute(c)
        .await)
    .expect("age verifications");
}

#[tokio::test]
async fn email_verification_follows_the_mailed_link_once() {
    let app = spawn_app().await;
    let address = email();
    let reg = app.register(&address).await;
    assert!(!reg.user.email_verified);
    let token = TestApp::token_in_link(&app.mail(&address, "email_verification").await);
    let res = app
        .post_json("/v1/email/verify", &json!({"token": token}))
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let me: Value = app
        .get_bearer("/v1/me", &reg.tokens.access_token)
        .await
        .json()
        .await
        .expect("me");
    assert_eq!(me["email_verified"], true);
    let res = app
        .post_json("/v1/email/verify", &json!({"token": token}))
        .await;
    assert_problem(res, StatusCode::BAD_REQUEST, "invalid_token").await;
    // Asking again once verified sends nothing.
    let res = app
        .post_bearer("/v1/email/verify/request", &reg.tokens.access_token, None)
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    // Mail is queued inside the request: none queued means none to come.
    assert_eq!(app.pending_mail().await, 0);
    assert_eq!(app.mails().len(), 1);
    let rows = audit(
        &app,
        &format!("user_id={}&kind=email_verified", reg.user.id),
    )
    .await;
    assert_eq!(rows.len(), 1);
}

#[tokio::test]
async fn a_new_verification_link_replaces_the_old_one() {
    let app = spawn_app().await;
    let address = email();
    let reg = app.register(&address).await;
    let first = TestApp::token_in_link(&app.mail(&address, "email_verification").await);
    // Within a minute of the first mail, no second one.
    let res = app
        .post_bearer("/v1/email/verify/request", &reg.tokens.access_token, None)
        .await;
    let wait = retry_after(&res);
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    assert_problem(res, StatusCode::TOO_MANY_REQUESTS, "too_many_requests").await;
    app.let_mail_spacing_pass().await;
    let res = app
        .post_bearer("/v1/email/verify/request", &reg.tokens.access_token, None)
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let second = TestApp::token_in_link(&app.nth_mail(&address, "email_verification", 2).await);
    assert_ne!(first, second);
    let res = app
        .post_json("/v1/email/verify", &json!({"token": second}))
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    // Spending one spent its siblings.
    let res = app
        .post_json("/v1/email/verify", &json!({"token": first}))
        .await;
    assert_problem(res, StatusCode::BAD_REQUEST, "invalid_token").await;
}

#[tokio::test]
async fn password_change_keeps_this_session_and_ends_the_others() {
    let app = spawn_app().await;
    let address = email();
    let here = app.register(&address).await.tokens;
    let elsewhere = app.login(&address).await;
    let change =
        |current: &str, new: &str| json!({"current_password": current, "new_password": new});
    let res = app
        .post_bearer(
            "/v1/password/change",
            &here.access_token,
            Some(&change("not my password", "a new long passphrase")),
        )
        .await;
    assert_problem(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    let res = app
        .post_bearer(
            "/v1/password/change",
            &here.access_token,
            Some(&change(PASSWORD, "short")),
        )
        .await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "weak_password").await;
    let res = app
        .post_bearer(
            "/v1/password/change",
            &here.access_token,
            Some(&change(PASSWORD, "a new long passphrase")),
        )
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.me_status(&here.access_token).await, StatusCode::OK);
    assert_eq!(
        app.me_status(&elsewhere.access_token).await,
        StatusCode::UNAUTHORIZED
    );
    let res = app.try_login(&address, PASSWORD, None, None).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = app
        .try_login(&address, "a new long passphrase", None, None)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app
        .post_json("/v1/password/change", &change(PASSWORD, "whatever"))
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "needs a bearer");
}

#[tokio::test]
async fn email_change_links_the_new_address_and_tells_the_old_one() {
    let app = spawn_app().await;
    let old = email();
    let reg = app.register(&old).await;
    let taken = email();
    app.register(&taken).await;
    let token = &reg.tokens.access_token;
    let change = |new: &str, password: &str| json!({"new_email": new, "password": password});

    let res = app
        .post_bearer("/v1/email/change", token, Some(&change(&taken, PASSWORD)))
        .await;
    assert_problem(res, StatusCode::CONFLICT, "email_taken").await;
    let new = email();
    let res = app
        .post_bearer(
            "/v1/email/change",
            token,
            Some(&change(&new, "wrong password!")),
        )
        .await;
    assert_problem(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    let res = app
        .post_bearer("/v1/email/change", token, Some(&change("nope", PASSWORD)))
        .await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_email").await;
    let res = app
        .post_bearer("/v1/email/change", token, Some(&change(&new, PASSWORD)))
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);

    let notice = app.mail(&old, "email_change_notice").await;
    assert!(
        notice["token"].is_null() && notice["link"].is_null(),
        "{notice}"
    );
    let confirm = TestApp::token_in_link(&app.mail(&new, "email_change").await);
    // Nothing changed yet: the old address still signs in.
    assert_eq!(
        app.try_login(&old, PASSWORD, None, None).await.status(),
        StatusCode::OK
    );
    let res = app
        .post_json("/v1/email/change/confirm", &json!({"token": confirm}))
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let me: Value = app
        .get_bearer("/v1/me", token)
        .await
        .json()
        .await
        .expect("me");
    assert_eq!(me["email"], new.as_str());
    assert_eq!(me["email_verified"], true);
    assert_eq!(
        app.try_login(&old, PASSWORD, None, None).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.try_login(&new, PASSWORD, None, None).await.status(),
        StatusCode::OK
    );
    let res = app
        .post_json("/v1/email/change/confirm", &json!({"token": confirm}))
        .await;
    assert_problem(res, StatusCode::BAD_REQUEST, "invalid_token").await;
    let rows = audit(&app, &format!("user_id={}&kind=email_changed", reg.user.id)).await;
    assert_eq!(rows.iter().filter(|r| r["success"] == true).count(), 1);
    assert_eq!(rows.iter().filter(|r| r["success"] == false).count(), 1);
}

#[tokio::test]
async fn an_address_taken_before_confirmation_is_a_conflict() {
    let app = spawn_app().await;
    let reg = app.register(&email()).await;
    let wanted = email();
    let res = app
        .post_bearer(
            "/v1/email/change",
            &reg.tokens.access_token,
            Some(&json!({"new_email": wanted, "password": PASSWORD})),
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let confirm = TestApp::token_in_link(&app.mail(&wanted, "email_change").await);
    // Someone registers the address before the link is followed.
    app.register(&wanted).await;
    let res = app
        .post_json("/v1/email/change/confirm", &json!({"token": confirm}))
        .await;
    assert_problem(res, StatusCode::CONFLICT, "email_taken").await;
}
