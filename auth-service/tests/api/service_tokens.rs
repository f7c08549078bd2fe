//! Service tokens: the admin API and the `service-token` command line that
//! make them, their scopes, expiry, revocation and usage counts, and what
//! never leaks (their values, an audit flood from forged ones).

use std::time::Duration;

use auth_service::cli::TokenCommand;
use auth_service::db::schema::{service_tokens, webhook_events};
use auth_service::db::sql_types::{DbTime, DbUuid};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use reqwest::StatusCode;
use serde_json::{json, Value};
use service_kit::run;
use uuid::Uuid;

use crate::helpers::{assert_problem, captured_logs, email, spawn_app, TestApp, PASSWORD};

impl TestApp {
    pub(crate) async fn admin_get(&self, path: &str, token: &str) -> reqwest::Response {
        self.get_bearer(path, token).await
    }

    /// Creates a token through the admin API; returns the whole answer.
    pub(crate) async fn create_token(&self, admin: &str, body: &Value) -> reqwest::Response {
        self.post_bearer("/admin/v1/service-tokens", admin, Some(body))
            .await
    }

    pub(crate) async fn token_list(&self, admin: &str) -> Vec<Value> {
        let res = self.admin_get("/admin/v1/service-tokens", admin).await;
        assert_eq!(res.status(), StatusCode::OK);
        res.json().await.expect("list")
    }

    /// Introspects `token` with `caller` as the bearer.
    pub(crate) async fn introspect_as(&self, caller: &str, token: &str) -> reqwest::Response {
        self.post_bearer(
            "/internal/v1/introspect",
            caller,
            Some(&json!({ "token": token })),
        )
        .await
    }

    /// Event types in the outbox, oldest first.
    pub(crate) async fn outbox_types(&self) -> Vec<(String, String)> {
        let db = self.db().await;
        let mut pooled = db.get().await.expect("conn");
        let conn = &mut pooled.conn();
        run!(conn, |c| webhook_events::table
            .order((webhook_events::created_at.asc(), webhook_events::id.asc()))
            .select((webhook_events::event_type, webhook_events::payload))
            .load::<(String, String)>(c)
            .await)
        .expect("outbox")
    }
}

pub(crate) fn id_of(v: &Value) -> Uuid {
    v["id"].as_str().expect("id").parse().expect("uuid")
}

#[tokio::test]
async fn command_line_token_works_against_the_running_server() {
    let app = spawn_app().await;
    // The real binary, as an operator runs it: token alone on stdout.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_auth-service"))
        .args(["service-token", "create", "--name", "ops bot"])
        .args([
            "--scope",
            "admin",
            "--scope",
            "ops",
            "--expires-in-days",
            "30",
        ])
        .env_clear()
        .env("AUTH_DATABASE_URL", &app.database_url)
        .current_dir(&app.dir)
        .output()
        .expect("run auth-service");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let stderr = String::from_utf8(out.stderr).expect("utf-8");
    assert_eq!(stdout.lines().count(), 1, "{stdout:?}");
    let token = stdout.trim();
    assert!(token.starts_with("ast_") && token.len() >= 47, "{token}");
    assert!(!stderr.contains(token), "the token must not reach stderr");

    let list = app.token_list(token).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["name"], "ops bot");
    assert_eq!(list[0]["scopes"], json!(["admin", "ops"]));
    assert!(list[0]["expires_at"].is_string());
    assert!(list[0].get("token").is_none() && list[0].get("token_hash").is_none());

    // `list` and `revoke` from the command line too.
    let listed = app.cli(TokenCommand::List).await;
    assert!(
        listed.contains("ops bot") && listed.contains("active"),
        "{listed}"
    );
    assert!(!listed.contains(token));
    app.cli(TokenCommand::Revoke {
        id: id_of(&list[0]),
    })
    .await;
    let res = app.admin_get("/admin/v1/service-tokens", token).await;
    assert_problem(res, StatusCode::UNAUTHORIZED, "invalid_token").await;
}

#[tokio::test]
async fn creating_a_token_shows_it_once_and_validates_input() {
    let app = spawn_app().await;
    let admin = app.service_token(&["admin"]).await;
    let res = app
        .create_token(
            &admin,
            &json!({"name": "ci", "scopes": ["internal", "billing:read"], "expires_in_days": 7}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let created: Value = res.json().await.expect("body");
    let token = created["token"].as_str().expect("token");
    assert!(token.starts_with("ast_"));
    assert_eq!(created["scopes"], json!(["internal", "billing:read"]));
    assert!(created["expires_at"].is_string());
    // Never again: the list shows no value.
    let list = app.token_list(&admin).await;
    assert!(!serde_json::to_string(&list).expect("json").contains(token));

    for bad in [
        json!({"name": "", "scopes": ["admin"]}),
        json!({"name": "x", "scopes": []}),
        json!({"name": "x", "scopes": ["Not A Scope"]}),
        json!({"name": "x", "scopes": ["admin"], "expires_in_days": 0}),
        json!({"name": "x", "scopes": ["admin"], "owner": "me"}),
        json!({"scopes": ["admin"]}),
    ] {
        let res = app.create_token(&admin, &bad).await;
        assert_eq!(
            res.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad} should be refused"
        );
    }
}

#[tokio::test]
async fn scopes_decide_what_a_token_may_do() {
    let app = spawn_app().await;
    let admin = app.service_token(&["admin"]).await;
    let internal = app.service_token(&["internal"]).await;
    let ops = app.service_token(&["ops"]).await;
    let user = app.register(&email()).await;
    let access = &user.tokens.access_token;

    // Admin endpoints: scope admin only.
    assert_eq!(
        app.admin_get("/admin/v1/service-tokens", &admin)
            .await
            .status(),
        StatusCode::OK
    );
    for wrong in [&internal, &ops] {
        let res = app.admin_get("/admin/v1/service-tokens", wrong).await;
        assert_problem(res, StatusCode::FORBIDDEN, "insufficient_scope").await;
    }
    let res = app
        .admin_get("/admin/v1/service-tokens", &app.api_key)
        .await;
    assert_problem(res, StatusCode::FORBIDDEN, "insufficient_scope").await;
    let res = app.admin_get("/admin/v1/service-tokens", access).await;
    assert_problem(res, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let res = app
        .client
        .get(app.url("/admin/v1/audit"))
        .send()
        .await
        .expect("req");
    assert_problem(res, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let unknown = format!("ast_{}", "A".repeat(43));
    let res = app.admin_get("/admin/v1/audit", &unknown).await;
    assert_problem(res, StatusCode::UNAUTHORIZED, "invalid_token").await;
    let res = app.admin_get("/admin/v1/audit", "ast_short").await;
    assert_problem(res, StatusCode::UNAUTHORIZED, "invalid_token").await;

    // Internal endpoints: the API key or scope internal.
    let res = app.introspect_as(&internal, access).await;
    assert_eq!(res.status(), StatusCode::OK);
    let answer: Value = res.json().await.expect("json");
    assert_eq!(answer["active"], true);
    assert_eq!(answer["token_type"], "access");
    for wrong in [&admin, &ops] {
        let res = app.introspect_as(wrong, access).await;
        assert_problem(res, StatusCode::FORBIDDEN, "insufficient_scope").await;
    }
    let res = app.introspect_as(&unknown, access).await;
    assert_problem(res, StatusCode::UNAUTHORIZED, "invalid_token").await;

    // Introspecting a service token describes it (RFC 7662 names).
    let about = app.introspect(&ops).await;
    assert_eq!(about["active"], true, "{about}");
    assert_eq!(about["token_type"], "service");
    assert_eq!(about["scope"], "ops");
    assert!(about["sub"].is_string() && about["iat"].is_i64());
    assert!(about.get("exp").is_none(), "no expiry was set: {about}");
    assert_eq!(app.introspect(&unknown).await, json!({"active": false}));
}

#[tokio::test]
async fn expired_and_revoked_tokens_are_refused() {
    let app = spawn_app().await;
    let admin = app.service_token(&["admin"]).await;
    let made: Value = app
        .create_token(
            &admin,
            &json!({"name": "short", "scopes": ["internal"], "expires_in_days": 1}),
        )
        .await
        .json()
        .await
        .expect("created");
    let expiring = made["token"].as_str().expect("token").to_owned();
    let user = app.register(&email()).await;
    let access = &user.tokens.access_token;
    assert_eq!(
        app.introspect_as(&expiring, access).await.status(),
        StatusCode::OK
    );

    // Time passes: the expiry is moved into the past underneath.
    {
        let db = app.db().await;
        let mut pooled = db.get().await.expect("conn");
        let conn = &mut pooled.conn();
        let past = DbTime(chrono::Utc::now() - chrono::Duration::seconds(1));
        let id = DbUuid(id_of(&made));
        run!(conn, |c| diesel::update(service_tokens::table.find(id))
            .set(service_tokens::expires_at.eq(Some(past)))
            .execute(c)
            .await)
        .expect("expire");
    }
    let res = app.introspect_as(&expiring, access).await;
    assert_problem(res, StatusCode::UNAUTHORIZED, "invalid_token").await;
    assert_eq!(app.introspect(&expiring).await, json!({"active": false}));

    // Revoked one by one.
    let other = app.service_token(&["internal"]).await;
    let about = app.introspect(&other).await;
    let id = about["sub"].as_str().expect("sub").to_owned();
    let res = app
        .delete_bearer(&format!("/admin/v1/service-tokens/{id}"), &admin)
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = app.introspect_as(&other, access).await;
    assert_problem(res, StatusCode::UNAUTHORIZED, "invalid_token").await;
    assert_eq!(app.introspect(&other).await, json!({"active": false}));
    // Again is fine; an unknown id is 404.
    let res = app
        .delete_bearer(&format!("/admin/v1/service-tokens/{id}"), &admin)
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = app
        .delete_bearer(
            &format!("/admin/v1/service-tokens/{}", Uuid::now_v7()),
            &admin,
        )
        .await;
    assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
    let list = app.token_list(&admin).await;
    let row = list
        .iter()
        .find(|t| t["id"] == id.as_str())
        .expect("listed");
    assert!(row["revoked_at"].is_string());
}

#[tokio::test]
async fn revoke_all_stops_every_token_at_once_on_every_replica() {
    let mut app = spawn_app().await;
    let admin = app.service_token(&["admin"]).await;
    let internal = app.service_token(&["internal"]).await;
    let replica = app.start_replica().await;
    let user = app.register(&email()).await;
    let access = user.tokens.access_token.clone();
    let introspect_on = |base: String, caller: String| {
        let client = app.client.clone();
        let access = access.clone();
        async move {
            client
                .post(format!("{base}/internal/v1/introspect"))
                .bearer_auth(caller)
                .json(&json!({ "token": access }))
                .send()
                .await
                .expect("introspect")
                .status()
        }
    };
    assert_eq!(
        introspect_on(replica.clone(), internal.clone()).await,
        StatusCode::OK
    );

    let res = app
        .post_bearer("/admin/v1/service-tokens/revoke-all", &admin, None)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body, json!({"revoked": 2}));

    // The very next request, on the other replica, is refused.
    assert_eq!(
        introspect_on(replica.clone(), internal.clone()).await,
        StatusCode::UNAUTHORIZED
    );
    let res = app
        .client
        .get(format!("{replica}/admin/v1/service-tokens"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("list");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // The API key is not a service token: internal callers keep working.
    assert_eq!(
        introspect_on(replica, app.api_key.clone()).await,
        StatusCode::OK
    );
    // The way back: a new token from the command line.
    let fresh = app.service_token(&["admin"]).await;
    assert_eq!(app.token_list(&fresh).await.len(), 3);
}

#[tokio::test]
async fn usage_is_counted_exactly_and_survives_a_graceful_stop() {
    let mut app = spawn_app().await;
    let admin = app.service_token(&["admin"]).await;
    let internal = app.service_token(&["internal"]).await;
    let user = app.register(&email()).await;
    let access = user.tokens.access_token.clone();
    let burst = |n: usize| {
        let calls = (0..n).map(|_| app.introspect_as(&internal, &access));
        futures::future::join_all(calls)
    };
    for res in burst(40).await {
        assert_eq!(res.status(), StatusCode::OK);
    }
    // A refused use is audited but not counted.
    let res = app.admin_get("/admin/v1/audit", &internal).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    // Flushed in the background within a few seconds...
    // Found by scope: introspecting it would count as one more use.
    let find = |list: Vec<Value>| {
        list.into_iter()
            .find(|t| t["scopes"] == json!(["internal"]))
            .expect("listed")
    };
    let id = find(app.token_list(&admin).await)["id"].clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let row = find(app.token_list(&admin).await);
        if row["use_count"] == 40 {
            assert!(row["last_used_at"].is_string());
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "use_count never reached 40: {row}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // ...and what is still buffered at shutdown is written before exit.
    for res in burst(24).await {
        assert_eq!(res.status(), StatusCode::OK);
    }
    app.stop_gracefully().await;
    let db = app.db().await;
    let mut pooled = db.get().await.expect("conn");
    let rows = auth_service::db::service_tokens::list(&mut pooled.conn())
        .await
        .expect("list");
    let row = rows
        .iter()
        .find(|r| r.id.0.to_string() == id.as_str().expect("id"))
        .expect("row");
    assert_eq!(row.use_count, 64, "{}", usage_warnings());
    let events =
        auth_service::db::events::list(&mut pooled.conn(), None, Some("service_token_used"), 1000)
            .await
            .expect("events");
    let mine: Vec<_> = events
        .iter()
        .filter(|e| e.service_token_id.map(|i| i.0) == Some(row.id.0))
        .collect();
    assert_eq!(mine.iter().filter(|e| e.success).count(), 64);
    assert_eq!(mine.iter().filter(|e| !e.success).count(), 1);
    let failed = mine.iter().find(|e| !e.success).expect("refused use");
    assert_eq!(failed.endpoint.as_deref(), Some("GET /admin/v1/audit"));
    assert!(mine.iter().all(|e| e.ip.as_deref() == Some("127.0.0.1")));
}

/// What the usage flusher logged, for a failing assertion to show.
fn usage_warnings() -> String {
    captured_logs()
        .lines()
        .filter(|l| l.contains("usage"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn token_values_are_never_stored_or_logged() {
    let mut app = spawn_app().await;
    let admin = app.service_token(&["admin"]).await;
    let made: Value = app
        .create_token(&admin, &json!({"name": "api-made", "scopes": ["internal"]}))
        .await
        .json()
        .await
        .expect("created");
    let internal = made["token"].as_str().expect("token").to_owned();
    let user = app.register(&email()).await;
    assert_eq!(
        app.introspect_as(&internal, &user.tokens.access_token)
            .await
            .status(),
        StatusCode::OK
    );
    app.introspect(&internal).await;
    app.stop_gracefully().await;

    let stored = service_kit::testing::database_text(&app.database_url).await;
    assert!(stored.contains("api-made"), "the dump must see the rows");
    let logs = captured_logs();
    assert!(
        logs.contains("/internal/v1/introspect"),
        "the capture must see this test's requests"
    );
    for token in [&admin, &internal] {
        // The random part alone, so no encoding of the prefix hides it.
        let secret = &token["ast_".len()..];
        assert!(!stored.contains(secret), "a token is in the database");
        assert!(!logs.contains(secret), "a token is in the logs");
    }
    assert!(!logs.contains(&user.tokens.access_token));
    assert!(!logs.contains(&user.tokens.refresh_token));
    assert!(!logs.contains(PASSWORD));
}

/// A token's metadata (a JSON object up to 4 KiB) is kept, listed, and
/// handed to the checking service by introspection; anything else is 422.
#[tokio::test]
async fn service_token_metadata_is_listed_and_introspected() {
    let app = spawn_app().await;
    let admin = app.service_token(&["admin"]).await;
    let metadata = json!({"team": "billing", "limits": {"rpm": 600}});
    let made: Value = app
        .create_token(
            &admin,
            &json!({"name": "billing-worker", "scopes": ["internal"], "metadata": metadata}),
        )
        .await
        .json()
        .await
        .expect("created");
    let token = made["token"].as_str().expect("token").to_owned();
    let listed = app.token_list(&admin).await;
    let row = listed
        .iter()
        .find(|t| t["name"] == "billing-worker")
        .expect("listed");
    assert_eq!(row["metadata"], metadata);
    let plain = listed
        .iter()
        .find(|t| t["name"] != "billing-worker")
        .expect("the admin token");
    assert_eq!(plain["metadata"], json!({}));
    let about = app.introspect(&token).await;
    assert_eq!(about["active"], true);
    assert_eq!(about["metadata"], metadata);
    let about = app.introspect(&admin).await;
    assert!(about.get("metadata").is_none(), "{about}");
    for bad in [
        json!(["an", "array"]),
        json!("text"),
        json!({"blob": "x".repeat(4096)}),
    ] {
        let res = app
            .create_token(
                &admin,
                &json!({"name": "bad", "scopes": ["internal"], "metadata": bad}),
            )
            .await;
        assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    }
}

#[derive(diesel::QueryableByName)]
struct Line {
    #[diesel(sql_type = diesel::sql_types::Text)]
    line: String,
}

/// Token metadata is `jsonb` on PostgreSQL (queryable by operators with
/// `->>`), JSON text on SQLite (`json_extract`); active tokens have a
/// partial index on both.
#[tokio::test]
async fn service_token_metadata_is_native_json_and_active_tokens_are_indexed() {
    let app = spawn_app().await;
    let admin = app.service_token(&["admin"]).await;
    let res = app
        .create_token(
            &admin,
            &json!({"name": "billing-worker", "scopes": ["internal"], "metadata": {"team": "billing"}}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let db = app.db().await;
    let mut pooled = db.get().await.expect("conn");
    let (by_team, index, column_type) = match pooled.conn() {
        service_kit::db::Conn::Pg(c) => {
            let q = |sql: &'static str| diesel::sql_query(sql);
            let by_team: Line =
                q("SELECT name AS line FROM service_tokens WHERE metadata->>'team' = 'billing'")
                    .get_result(c)
                    .await
                    .expect("jsonb query");
            let index: Line = q("SELECT indexdef AS line FROM pg_indexes WHERE indexname = 'service_tokens_active_idx'")
                .get_result(c)
                .await
                .expect("index");
            let column: Line = q(
                "SELECT data_type::text AS line FROM information_schema.columns \
                 WHERE table_name = 'service_tokens' AND column_name = 'metadata'",
            )
            .get_result(c)
            .await
            .expect("column");
            (by_team.line, index.line, column.line)
        }
        service_kit::db::Conn::Sqlite(c) => {
            let q = |sql: &'static str| diesel::sql_query(sql);
            let by_team: Line = q("SELECT name AS line FROM service_tokens WHERE json_extract(metadata, '$.team') = 'billing'")
                .get_result(c)
                .await
                .expect("json query");
            let index: Line = q(
                "SELECT sql AS line FROM sqlite_master WHERE name = 'service_tokens_active_idx'",
            )
            .get_result(c)
            .await
            .expect("index");
            (by_team.line, index.line, "TEXT".to_owned())
        }
    };
    assert_eq!(by_team, "billing-worker");
    assert!(
        index.contains("WHERE (revoked_at IS NULL)") || index.contains("WHERE revoked_at IS NULL"),
        "{index}"
    );
    let expected = if app.database_url.starts_with("postgres") {
        "jsonb"
    } else {
        "TEXT"
    };
    assert_eq!(column_type, expected);
}
