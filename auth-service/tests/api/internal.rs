use reqwest::StatusCode;
use serde_json::{json, Value};
use shared_types::{UserPage, UserRecord};

use crate::helpers::{assert_problem, email, spawn_app};

#[tokio::test]
async fn internal_endpoints_need_the_service_api_key() {
    let app = spawn_app().await;
    let user = app.register(&email()).await;
    let wrong_key = format!("{}x", app.api_key);
    let paths = [
        "/internal/v1/users",
        "/internal/v1/users/count",
        &format!("/internal/v1/users/{}", user.user.id),
    ];
    for path in paths {
        let res = app.client.get(app.url(path)).send().await.expect("request");
        assert_problem(res, StatusCode::UNAUTHORIZED, "unauthorized").await;
        for token in [wrong_key.as_str(), user.tokens.access_token.as_str()] {
            let res = app.get_bearer(path, token).await;
            assert_problem(res, StatusCode::UNAUTHORIZED, "unauthorized").await;
        }
    }
    let res = app
        .post_bearer(
            "/internal/v1/introspect",
            &user.tokens.access_token,
            Some(&json!({"token": "x"})),
        )
        .await;
    assert_problem(res, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn introspection_of_a_live_token_describes_it() {
    let app = spawn_app().await;
    let address = email();
    let reg = app.register(&address).await;
    let answer = app.introspect(&reg.tokens.access_token).await;
    assert_eq!(answer["active"], true);
    assert_eq!(answer["token_type"], "access");
    assert_eq!(answer["sub"], reg.user.id.to_string());
    assert_eq!(answer["sid"], reg.tokens.session_id.to_string());
    assert_eq!(answer["email"], address);
    assert_eq!(answer["email_verified"], false);
    assert_eq!(
        answer["exp"].as_i64().expect("exp") - answer["iat"].as_i64().expect("iat"),
        1800
    );
    // A refresh token is not an access token.
    assert_eq!(
        app.introspect(&reg.tokens.refresh_token).await,
        json!({"active": false})
    );
    // Bad bodies are 4xx, not 500.
    let res = app
        .post_bearer(
            "/internal/v1/introspect",
            &app.api_key,
            Some(&json!({"tok": "x"})),
        )
        .await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
}

/// Introspection reads only three columns and checks the rest in SQL:
/// each condition, broken alone behind the service's back (a lock without
/// a revocation, a session past its expiry, a session handed to another
/// user), turns a live token inactive, while the signature and `exp` of
/// the token are still good and its signature is already remembered.
#[tokio::test]
async fn introspection_refuses_each_broken_condition_of_the_session() {
    use auth_service::db::schema::{sessions, users};
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use service_kit::db::sql_types::{DbTime, DbUuid};
    use service_kit::run;

    let app = spawn_app().await;
    let db = app.db().await;
    let other = app.register(&email()).await;
    for broken in ["locked", "expired", "other user"] {
        let reg = app.register(&email()).await;
        let token = reg.tokens.access_token;
        assert_eq!(app.introspect(&token).await["active"], true, "{broken}");
        let mut pooled = db.get().await.expect("conn");
        let conn = &mut pooled.conn();
        let session = sessions::table.filter(sessions::id.eq(DbUuid(reg.tokens.session_id)));
        match broken {
            "locked" => run!(conn, |c| diesel::update(
                users::table.filter(users::id.eq(DbUuid(reg.user.id)))
            )
            .set(users::account_locked.eq(true))
            .execute(c)
            .await),
            "expired" => run!(conn, |c| diesel::update(session)
                .set(
                    sessions::expires_at
                        .eq(DbTime(chrono::Utc::now() - chrono::Duration::seconds(1)))
                )
                .execute(c)
                .await),
            _ => run!(conn, |c| diesel::update(session)
                .set(sessions::user_id.eq(DbUuid(other.user.id)))
                .execute(c)
                .await),
        }
        .expect("break the session");
        assert_eq!(
            app.introspect(&token).await,
            json!({"active": false}),
            "{broken}"
        );
    }
    // The user whose id the last session was given is still served.
    assert_eq!(
        app.introspect(&other.tokens.access_token).await["sub"],
        other.user.id.to_string()
    );
}

#[tokio::test]
async fn users_page_through_every_user_in_id_order() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(app.register(&email()).await.user.id);
    }
    ids.sort();
    let mut seen = Vec::new();
    let mut after: Option<uuid::Uuid> = None;
    let mut pages = 0;
    loop {
        let path = match after {
            Some(a) => format!("/internal/v1/users?limit=2&after={a}"),
            None => "/internal/v1/users?limit=2".to_owned(),
        };
        let page: UserPage = app
            .get_bearer(&path, &app.api_key)
            .await
            .json()
            .await
            .expect("page");
        pages += 1;
        assert!(page.users.len() <= 2);
        seen.extend(page.users.iter().map(|u| u.id));
        match page.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
        assert!(pages < 10, "paging must end");
    }
    assert_eq!(seen, ids, "every user once, ordered by id");
    assert_eq!(pages, 3);
    let record: &Value = &app
        .get_bearer("/internal/v1/users?limit=1", &app.api_key)
        .await
        .json::<Value>()
        .await
        .expect("json")["users"][0];
    for field in [
        "id",
        "email",
        "email_verified",
        "full_name",
        "mfa_enabled",
        "account_locked",
        "created_at",
        "updated_at",
        "version",
    ] {
        assert!(record.get(field).is_some(), "UserRecord lacks {field}");
    }
}

#[tokio::test]
async fn users_limit_out_of_range_returns_422_and_bad_after_400() {
    let app = spawn_app().await;
    for limit in ["0", "1001", "-1"] {
        let res = app
            .get_bearer(&format!("/internal/v1/users?limit={limit}"), &app.api_key)
            .await;
        assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    }
    let res = app
        .get_bearer("/internal/v1/users?after=zzz", &app.api_key)
        .await;
    assert_problem(res, StatusCode::BAD_REQUEST, "bad_request").await;
}

#[tokio::test]
async fn one_user_and_count() {
    let app = spawn_app().await;
    let reg = app.register(&email()).await;
    app.register(&email()).await;
    let record: UserRecord = app
        .get_bearer(&format!("/internal/v1/users/{}", reg.user.id), &app.api_key)
        .await
        .json()
        .await
        .expect("record");
    assert_eq!(record.id, reg.user.id);
    assert_eq!(record.email, reg.user.email);
    assert_eq!(record.version, 1);
    assert!(!record.account_locked);
    let res = app
        .get_bearer(
            &format!("/internal/v1/users/{}", uuid::Uuid::new_v4()),
            &app.api_key,
        )
        .await;
    assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
    let count: Value = app
        .get_bearer("/internal/v1/users/count", &app.api_key)
        .await
        .json()
        .await
        .expect("count");
    assert_eq!(count, json!({"count": 2}));
}

/// The digests the reconciler compares: what each range holds, and every
/// way of asking badly.
#[tokio::test]
async fn user_digests_sum_each_range_and_refuse_bad_requests() {
    use service_kit::db::digest::{id_hash, VERSION_WEIGHT};
    use shared_types::{DigestResponse, RangeDigest};

    let app = spawn_app().await;
    let mut ids = Vec::new();
    let mut access = String::new();
    for _ in 0..3 {
        let reg = app.register(&email()).await;
        ids.push(reg.user.id);
        access = reg.tokens.access_token;
    }
    ids.sort();
    let digests = |body: Value| {
        let app = &app;
        async move {
            let res = app
                .post_bearer("/internal/v1/users/digests", &app.api_key, Some(&body))
                .await;
            assert_eq!(res.status(), StatusCode::OK);
            res.json::<DigestResponse>().await.expect("digests").digests
        }
    };
    let term = |id: &uuid::Uuid, version: i64| id_hash(id) + version * VERSION_WEIGHT;
    let ranges = json!({"ranges": [
        {},
        {"after": ids[0]},
        {"after": ids[0], "upto": ids[1]},
        {"upto": ids[0]},
        {"after": ids[2]},
    ]});
    assert_eq!(
        digests(ranges.clone()).await,
        vec![
            RangeDigest {
                count: 3,
                sum: ids.iter().map(|id| term(id, 1)).sum()
            },
            RangeDigest {
                count: 2,
                sum: term(&ids[1], 1) + term(&ids[2], 1)
            },
            RangeDigest {
                count: 1,
                sum: term(&ids[1], 1)
            },
            RangeDigest {
                count: 1,
                sum: term(&ids[0], 1)
            },
            RangeDigest { count: 0, sum: 0 },
        ]
    );
    // A change leaves the count and moves the sum by the version's weight.
    let admin = app.service_token(&["admin"]).await;
    let res = app
        .post_bearer(&format!("/admin/v1/users/{}/lock", ids[1]), &admin, None)
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let after = digests(ranges).await;
    assert_eq!(
        after[2],
        RangeDigest {
            count: 1,
            sum: term(&ids[1], 2)
        }
    );
    assert_eq!(
        after[3],
        RangeDigest {
            count: 1,
            sum: term(&ids[0], 1)
        }
    );
    assert_eq!(digests(json!({"ranges": []})).await, vec![]);
    assert_eq!(
        digests(json!({"ranges": vec![json!({}); 256]})).await.len(),
        256
    );

    // Only the service key or an internal service token may ask.
    let body = json!({"ranges": [{}]});
    let res = app
        .client
        .post(app.url("/internal/v1/users/digests"))
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_problem(res, StatusCode::UNAUTHORIZED, "unauthorized").await;
    for token in [format!("{}x", app.api_key), access] {
        let res = app
            .post_bearer("/internal/v1/users/digests", &token, Some(&body))
            .await;
        assert_problem(res, StatusCode::UNAUTHORIZED, "unauthorized").await;
    }
    // Too many ranges, an empty or inverted range, a wrong shape: 422;
    // a body that is not JSON: 400.
    for body in [
        json!({"ranges": vec![json!({}); 257]}),
        json!({"ranges": [{"after": ids[1], "upto": ids[0]}]}),
        json!({"ranges": [{}, {"after": ids[1], "upto": ids[1]}]}),
        json!({"ranges": [{"after": "not-a-uuid"}]}),
        json!({"ranges": {}}),
        json!({"ranges": [{"from": ids[0]}]}),
        json!({}),
        json!([{}]),
    ] {
        let res = app
            .post_bearer("/internal/v1/users/digests", &app.api_key, Some(&body))
            .await;
        assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    }
    let res = app
        .client
        .post(app.url("/internal/v1/users/digests"))
        .bearer_auth(&app.api_key)
        .header("content-type", "application/json")
        .body("{\"ranges\": [")
        .send()
        .await
        .expect("request");
    assert_problem(res, StatusCode::BAD_REQUEST, "bad_request").await;
}
