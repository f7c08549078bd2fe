//! Sending mail: over SMTP with retries, pruning what was sent, and one mail
//! a minute to an address however many requests ask for it.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{email, reset_requests_handled, spawn_app, spawn_app_with, PASSWORD};

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
