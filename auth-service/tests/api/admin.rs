//! The admin API on users and the audit trail: lock, unlock, delete, and
//! the audit query, which forged service tokens cannot flood.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, email, spawn_app, PASSWORD};

#[tokio::test]
async fn admins_lock_unlock_and_delete_users() {
    let app = spawn_app().await;
    let admin = app.service_token(&["admin"]).await;
    let address = email();
    let user = app.register(&address).await;
    let id = user.user.id;
    let access = user.tokens.access_token.clone();

    let res = app
        .post_bearer(&format!("/admin/v1/users/{id}/lock"), &admin, None)
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.introspect(&access).await["active"], false);
    let res = app
        .post_json(
            "/v1/login",
            &json!({"email": address, "password": PASSWORD}),
        )
        .await;
    assert_problem(res, StatusCode::FORBIDDEN, "account_locked").await;
    // Locking twice changes nothing more.
    let res = app
        .post_bearer(&format!("/admin/v1/users/{id}/lock"), &admin, None)
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);

    let res = app
        .post_bearer(&format!("/admin/v1/users/{id}/unlock"), &admin, None)
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let again = app.login(&address).await;
    assert_eq!(app.introspect(&again.access_token).await["active"], true);
    // The old session stays revoked after the unlock.
    assert_eq!(app.introspect(&access).await["active"], false);

    let res = app
        .delete_bearer(&format!("/admin/v1/users/{id}"), &admin)
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.introspect(&again.access_token).await["active"], false);
    let res = app
        .client
        .get(app.url(&format!("/internal/v1/users/{id}")))
        .bearer_auth(&app.api_key)
        .send()
        .await
        .expect("get user");
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    for path in [
        format!("/admin/v1/users/{id}/lock"),
        format!("/admin/v1/users/{id}/unlock"),
    ] {
        let res = app.post_bearer(&path, &admin, None).await;
        assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
    }
    let res = app
        .delete_bearer(&format!("/admin/v1/users/{id}"), &admin)
        .await;
    assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;

    // The mirror hears of all of it, each with a higher version.
    let events = app.outbox_types().await;
    let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "user.created",
            "session.revoked",
            "user.updated",
            "user.updated",
            "user.deleted"
        ]
    );
    let versions: Vec<i64> = events
        .iter()
        .filter(|(k, _)| k.starts_with("user."))
        .map(|(_, p)| {
            let v: Value = serde_json::from_str(p).expect("payload");
            v["data"]["version"].as_i64().expect("version")
        })
        .collect();
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
    let locked: Value = serde_json::from_str(&events[2].1).expect("payload");
    assert_eq!(locked["data"]["account_locked"], true);

    // The audit trail names the admin token for each action.
    let res = app
        .admin_get(
            &format!("/admin/v1/audit?user_id={id}&kind=admin_action&limit=10"),
            &admin,
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let audit: Vec<Value> = res.json().await.expect("audit");
    let details: Vec<&str> = audit
        .iter()
        .map(|e| e["detail"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(details.len(), 4, "{details:?}");
    assert!(
        details[0].starts_with("deleted user"),
        "newest first: {details:?}"
    );
    assert_eq!(details[3], "locked user");
    let admin_id = app.introspect(&admin).await["sub"].clone();
    assert!(audit.iter().all(|e| e["service_token_id"] == admin_id));
    assert!(audit
        .iter()
        .all(|e| e["ip"] == "127.0.0.1" && e["endpoint"].is_string()));
}

#[tokio::test]
async fn the_audit_query_filters_and_limits() {
    let app = spawn_app().await;
    let admin = app.service_token(&["admin"]).await;
    let a = email();
    let user = app.register(&a).await;
    app.login(&a).await;
    let res = app
        .post_json(
            "/v1/login",
            &json!({"email": a, "password": "wrong password here"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let get = |q: String| {
        let app = &app;
        let admin = admin.clone();
        async move { app.admin_get(&format!("/admin/v1/audit{q}"), &admin).await }
    };
    let res = get(format!("?user_id={}", user.user.id)).await;
    let rows: Vec<Value> = res.json().await.expect("rows");
    let kinds: Vec<&str> = rows
        .iter()
        .map(|r| r["kind"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(kinds, ["login_failed", "login_succeeded"], "newest first");
    let res = get(format!("?user_id={}&kind=login_failed", user.user.id)).await;
    let rows: Vec<Value> = res.json().await.expect("rows");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["success"], false);
    let res = get("?limit=1".into()).await;
    let rows: Vec<Value> = res.json().await.expect("rows");
    assert_eq!(rows.len(), 1);
    for bad in [
        "?limit=0",
        "?limit=1001",
        "?kind=coffee",
        "?user_id=nope",
        "?colour=red",
    ] {
        let res = get(bad.into()).await;
        assert!(
            res.status() == StatusCode::UNPROCESSABLE_ENTITY
                || res.status() == StatusCode::BAD_REQUEST,
            "{bad}: {}",
            res.status()
        );
    }
}

/// A request through Cloudflare carries `cf-ray`: its audit row keeps it
/// beside our own request id. A value not of Cloudflare's form (anyone can
/// send the header) is dropped rather than stored.
#[tokio::test]
async fn the_audit_row_keeps_cloudflares_ray_id() {
    let app = spawn_app().await;
    let admin = app.service_token(&["admin"]).await;
    let a = email();
    let user = app.register(&a).await;
    for ray in [
        "8f1d2c3b4a5e6f70-AMS",
        "<script>alert(1)</script>",
        &"a".repeat(65),
    ] {
        let res = app
            .client
            .post(format!("{}/v1/login", app.address))
            .header("cf-ray", ray)
            .json(&json!({"email": a, "password": "wrong password here"}))
            .send()
            .await
            .expect("request");
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let res = app
        .admin_get(
            &format!("/admin/v1/audit?user_id={}&kind=login_failed", user.user.id),
            &admin,
        )
        .await;
    let rows: Vec<Value> = res.json().await.expect("rows");
    let rays: Vec<&Value> = rows.iter().rev().map(|r| &r["cf_ray"]).collect();
    assert_eq!(
        rays,
        [&json!("8f1d2c3b4a5e6f70-AMS"), &Value::Null, &Value::Null]
    );
    assert!(rows.iter().all(|r| r["request_id"].is_string()), "{rows:?}");
}

/// The review's finding: any `Bearer ast_...` wrote one audit row with a
/// 512-character user agent, unauthenticated and unlimited. Failures are
/// aggregated per address and reason now, the row is bounded, and an
/// address past its budget gets 429 before any lookup.
#[tokio::test]
async fn forged_service_tokens_cannot_flood_the_audit_trail() {
    let mut app = spawn_app().await;
    // The budget is per clock minute: start well inside one.
    let second = chrono::Utc::now().timestamp() % 60;
    if second > 50 {
        tokio::time::sleep(std::time::Duration::from_secs((61 - second) as u64)).await;
    }
    let long_agent = "x".repeat(512);
    // Sent at once: the budget is exact under concurrency too.
    let forged: Vec<String> = (0..60).map(|i| format!("ast_{i:0>43}")).collect();
    let burst = forged.iter().map(|token| {
        app.client
            .get(app.url("/admin/v1/audit"))
            .bearer_auth(token)
            .header("user-agent", &long_agent)
            .send()
    });
    let mut statuses = std::collections::BTreeMap::new();
    for res in futures::future::join_all(burst).await {
        *statuses
            .entry(res.expect("request").status().as_u16())
            .or_insert(0usize) += 1;
    }
    let budget = auth_service::services::service_tokens::FAILURE_BUDGET as usize;
    assert_eq!(
        statuses,
        [(401, budget), (429, 60 - budget)].into(),
        "{statuses:?}"
    );
    app.stop_gracefully().await;
    let db = app.db().await;
    let mut pooled = db.get().await.expect("conn");
    let events =
        auth_service::db::events::list(&mut pooled.conn(), None, Some("service_token_used"), 1000)
            .await
            .expect("events");
    let failed: Vec<_> = events.iter().filter(|e| !e.success).collect();
    assert!(
        failed.len() <= 4,
        "aggregated, not one row each: {}",
        failed.len()
    );
    let total: u64 = failed
        .iter()
        .map(|e| {
            let detail = e.detail.as_deref().unwrap_or("");
            detail
                .rsplit_once(" (")
                .and_then(|(_, n)| n.strip_suffix(" attempts)"))
                .map_or(1, |n| n.parse().expect("count"))
        })
        .sum();
    assert_eq!(total, 60, "every attempt is counted");
    assert!(failed
        .iter()
        .all(|e| e.user_agent.as_deref().is_none_or(|ua| ua.len() <= 128)));
}
