//! Brute-force locks, the general rate limit, password change / forgot /
//! reset, email verification and change, all through the mail outbox.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, email, spawn_app, spawn_app_with, TestApp, PASSWORD};

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

fn retry_after(res: &reqwest::Response) -> u64 {
    res.headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("429 carries Retry-After in seconds")
}

async fn audit(app: &TestApp, query: &str) -> Vec<Value> {
    let admin = app.service_token(&["admin"]).await;
    let res = app
        .get_bearer(&format!("/admin/v1/audit?{query}"), &admin)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.expect("audit")
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

/// A minimal SMTP server: accepts every message and hands the recipient and
/// the raw DATA to the test.
async fn smtp_sink(
    listener: tokio::net::TcpListener,
    got: tokio::sync::mpsc::UnboundedSender<(String, String)>,
) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    while let Ok((socket, _)) = listener.accept().await {
        let got = got.clone();
        tokio::spawn(async move {
            let (read, mut write) = socket.into_split();
            let mut lines = BufReader::new(read).lines();
            let _ = write.write_all(b"220 sink ESMTP\r\n").await;
            let (mut rcpt, mut data) = (String::new(), None::<String>);
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(buf) = data.as_mut() {
                    if line == "." {
                        let _ = got.send((rcpt.clone(), std::mem::take(buf)));
                        data = None;
                        let _ = write.write_all(b"250 queued\r\n").await;
                    } else {
                        buf.push_str(&line);
                        buf.push('\n');
                    }
                    continue;
                }
                let upper = line.to_ascii_uppercase();
                let reply: &[u8] = if upper.starts_with("EHLO") {
                    b"250-sink\r\n250 8BITMIME\r\n"
                } else if upper.starts_with("RCPT TO:") {
                    rcpt = line[8..].trim().trim_matches(['<', '>']).to_owned();
                    b"250 ok\r\n"
                } else if upper == "DATA" {
                    data = Some(String::new());
                    b"354 go ahead\r\n"
                } else if upper == "QUIT" {
                    let _ = write.write_all(b"221 bye\r\n").await;
                    break;
                } else {
                    b"250 ok\r\n"
                };
                let _ = write.write_all(reply).await;
            }
        });
    }
}

#[tokio::test]
async fn mail_goes_over_smtp_and_a_failed_send_is_retried() {
    // The SMTP server is down when the mail is queued.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let url = format!("smtp://127.0.0.1:{port}");
    let app = spawn_app_with(&[
        ("SMTP_URL", &url),
        ("AUTH_MAIL_FROM", "Accounts <accounts@example.com>"),
    ])
    .await;
    let address = email();
    app.register(&address).await;
    let res = app
        .post_json("/v1/password/forgot", &json!({"email": address}))
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    // The reset mail is queued after the 202, and tried against the dead
    // server: wait until that attempt failed.
    {
        use auth_service::db::schema::jobs;
        use diesel::prelude::*;
        let db = app.db().await;
        let mut pooled = db.get().await.expect("conn");
        let conn = &mut pooled.conn();
        let mut failed = 0;
        for _ in 0..200 {
            failed = service_kit::run!(&mut *conn, |c| {
                diesel_async::RunQueryDsl::get_result(
                    jobs::table
                        .filter(jobs::kind.eq("mail"))
                        .filter(jobs::subject.like("password_reset:%"))
                        .filter(jobs::last_error.is_not_null())
                        .count(),
                    c,
                )
                .await
            })
            .expect("count");
            if failed > 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(
            failed, 1,
            "the first attempt failed against the dead server"
        );
    }
    // Now it comes up, and the queued mail arrives on a retry.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind the SMTP port");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(smtp_sink(listener, tx));
    let mut reset = None;
    while reset.is_none() {
        let (to, data) = tokio::time::timeout(std::time::Duration::from_secs(15), rx.recv())
            .await
            .expect("mail within 15 s")
            .expect("sink running");
        assert_eq!(to, address);
        assert!(
            data.contains("From: Accounts <accounts@example.com>"),
            "{data}"
        );
        if data.contains("Subject: Reset your password") {
            reset = Some(data);
        }
    }
    // Undo quoted-printable folding, then follow the link in the text.
    let body = reset
        .expect("reset mail")
        .replace("=\n", "")
        .replace("=3D", "=");
    let token = body
        .split("/account/reset-password?token=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the body holds the reset link")
        .to_owned();
    let res = app
        .post_json(
            "/v1/password/reset",
            &json!({"token": token, "new_password": "reset over smtp 123"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert!(
        app.mails().is_empty(),
        "with SMTP, nothing goes to the outbox file"
    );
}

#[tokio::test]
async fn old_attempts_and_sent_mail_are_pruned_but_recent_ones_stay() {
    use auth_service::db::schema::{jobs, login_attempts as la};
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use service_kit::db::sql_types::DbTime;
    use service_kit::run;
    let mut app = spawn_app().await;
    let address = email();
    app.register(&address).await;
    app.mail(&address, "email_verification").await;
    for _ in 0..2 {
        app.try_login(&address, "wrong password!", None, None).await;
    }
    // Sent is recorded just after the mail is written: age it once it is.
    for _ in 0..200 {
        if app.pending_mail().await == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(app.pending_mail().await, 0, "the mail was recorded as sent");
    let db = app.db().await;
    let mut pooled = db.get().await.expect("conn");
    let conn = &mut pooled.conn();
    let long_ago = DbTime(chrono::Utc::now() - chrono::Duration::days(8));
    // One attempt and the sent mail age past what is kept; one attempt stays recent.
    let oldest: service_kit::db::sql_types::DbUuid = run!(conn, |c| la::table
        .select(la::id)
        .order(la::id)
        .first(c)
        .await)
    .expect("an attempt");
    run!(conn, |c| diesel::update(la::table.find(oldest))
        .set(la::created_at.eq(long_ago))
        .execute(c)
        .await)
    .expect("age attempt");
    let mail = || jobs::table.filter(jobs::kind.eq("mail"));
    run!(conn, |c| diesel::update(mail())
        .set((
            jobs::created_at.eq(long_ago),
            jobs::finished_at.eq(Some(long_ago)),
        ))
        .execute(c)
        .await)
    .expect("age mail");
    // Each sender prunes when it starts (and every ten minutes).
    app.start_replica().await;
    let mut left = (0, 0);
    for _ in 0..100 {
        left = (
            run!(conn, |c| la::table.count().get_result::<i64>(c).await).expect("count"),
            run!(conn, |c| mail().count().get_result::<i64>(c).await).expect("count"),
        );
        if left == (1, 0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(left, (1, 0), "(attempts, mails) left");
}

/// Mail bombing: a burst of requests that each would mail one address
/// queues exactly one mail a minute, across replicas.
#[tokio::test]
async fn a_burst_of_mail_requests_sends_one_mail_a_minute() {
    let mut app = spawn_app_with(&[("AUTH_LOCKOUT_THRESHOLD", "100")]).await;
    let replica = app.start_replica().await;
    let address = email();
    let reg = app.register(&address).await;
    app.mail(&address, "email_verification").await;
    app.let_mail_spacing_pass().await;
    let token = &reg.tokens.access_token;
    let send = |i: usize, path: &str, body: Option<Value>| {
        let base = if i.is_multiple_of(2) {
            app.address.clone()
        } else {
            replica.clone()
        };
        let mut req = app.client.post(format!("{base}{path}")).bearer_auth(token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        req.send()
    };
    let burst = (0..20).map(|i| send(i, "/v1/email/verify/request", None));
    let statuses = status_counts(burst).await;
    assert_eq!(statuses, [(202, 1), (429, 19)].into(), "{statuses:?}");
    // A victim's address as the "new email", again and again.
    let victim = email();
    let body = json!({"new_email": victim, "password": PASSWORD});
    let burst = (0..10).map(|i| send(i, "/v1/email/change", Some(body.clone())));
    let statuses = status_counts(burst).await;
    assert_eq!(statuses, [(202, 1), (429, 9)].into(), "{statuses:?}");
    // The mails the two 202s queued arrive; then nothing is left to send.
    app.nth_mail(&address, "email_verification", 2).await;
    app.mail(&victim, "email_change").await;
    app.mail(&address, "email_change_notice").await;
    assert_eq!(app.pending_mail().await, 0);
    let mails = app.mails();
    let count = |to: &str, kind: &str| {
        mails
            .iter()
            .filter(|m| m["to"] == to && m["kind"] == kind)
            .count()
    };
    assert_eq!(
        count(&address, "email_verification"),
        2,
        "registration + one"
    );
    assert_eq!(count(&victim, "email_change"), 1);
    // Reset, the same rule: the answer is 202 whatever happens, one mail.
    let forgot = json!({"email": address});
    let burst = (0..10).map(|_| app.post_json("/v1/password/forgot", &forgot));
    futures::future::join_all(burst).await;
    app.mail(&address, "password_reset").await;
    reset_requests_handled(&app, &[("spaced", 9.0), ("queued", 1.0)]).await;
    let resets = app
        .mails()
        .iter()
        .filter(|m| m["to"] == address.as_str() && m["kind"] == "password_reset")
        .count();
    assert_eq!(resets, 1);
}

/// Password reset requests are handled after their 202: waits until they
/// were, with exactly these outcomes, and until no mail is left to send.
async fn reset_requests_handled(app: &TestApp, outcomes: &[(&str, f64)]) {
    let series =
        |outcome: &str| format!(r#"auth_password_reset_requests_total{{outcome="{outcome}"}}"#);
    for (outcome, count) in outcomes {
        app.wait_metric(&series(outcome), *count).await;
    }
    for (outcome, count) in outcomes {
        assert_eq!(app.metric(&series(outcome)).await, *count, "{outcome}");
    }
    assert_eq!(app.pending_mail().await, 0);
}

/// How many of `burst`'s answers had each status, the requests sent at once.
async fn status_counts(
    burst: impl IntoIterator<
        Item = impl std::future::Future<Output = reqwest::Result<reqwest::Response>>,
    >,
) -> std::collections::BTreeMap<u16, usize> {
    let mut out = std::collections::BTreeMap::new();
    for res in futures::future::join_all(burst).await {
        *out.entry(res.expect("request").status().as_u16())
            .or_insert(0) += 1;
    }
    out
}
