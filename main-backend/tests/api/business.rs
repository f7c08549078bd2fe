//! Business data: each user sees and changes only their own rows, secrets
//! are sealed at rest, and a deleted user takes every row along.

use std::time::Duration;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use main_backend::db::schema::secrets;
use main_backend::db::sql_types::DbUuid;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use service_kit::run;
use uuid::Uuid;

use crate::helpers::*;

/// One registered user with a token, as the main backend sees them.
pub(crate) struct Caller {
    pub(crate) id: Uuid,
    pub(crate) token: String,
}

impl Stack {
    pub(crate) async fn caller(&self) -> Caller {
        let reg = self.register(&unique_email()).await;
        let id = reg.user.id;
        eventually(Duration::from_secs(5), || async {
            self.mirror_user(id).await.is_some()
        })
        .await;
        Caller {
            id,
            token: reg.tokens.access_token,
        }
    }

    pub(crate) async fn call(
        &self,
        who: &Caller,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.main_url))
            .bearer_auth(&who.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        req.send().await.expect("request")
    }

    pub(crate) async fn ok_json(
        &self,
        who: &Caller,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Value {
        let res = self.call(who, method.clone(), path, body).await;
        assert!(
            res.status().is_success(),
            "{method} {path}: {}",
            res.status()
        );
        res.json().await.expect("json")
    }

    /// One row in every table for this user; returns the task's id.
    pub(crate) async fn fill(&self, who: &Caller, tag: &str) -> Uuid {
        let task = self
            .ok_json(
                who,
                Method::POST,
                &format!("/v1/users/{}/tasks", who.id),
                Some(json!({"title": format!("task of {tag}"), "description": "details"})),
            )
            .await;
        self.ok_json(
            who,
            Method::PUT,
            "/v1/me/settings",
            Some(json!({"theme": tag})),
        )
        .await;
        let res = self
            .call(
                who,
                Method::PUT,
                "/v1/me/secrets/api_key",
                Some(json!({"value": format!("plaintext-secret-of-{tag}-0123456789")})),
            )
            .await;
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        let session = self
            .ok_json(
                who,
                Method::POST,
                "/v1/agent-sessions",
                Some(json!({"title": format!("session of {tag}"), "metadata": {"model": "m1"}})),
            )
            .await;
        self.ok_json(
            who,
            Method::POST,
            "/v1/tool-usage",
            Some(
                json!({"tool_name": format!("search-{tag}"), "success": true,
                "agent_session_id": session["id"], "duration_ms": 12}),
            ),
        )
        .await;
        self.ok_json(who, Method::POST, "/v1/corpus",
            Some(json!({"title": format!("doc of {tag}"), "content": "# hello", "content_type": "text/markdown"})))
            .await;
        task["id"].as_str().expect("id").parse().expect("uuid")
    }
}

#[tokio::test]
async fn every_list_shows_only_the_callers_rows() {
    let stack = spawn_stack().await;
    let (alice, bob) = (stack.caller().await, stack.caller().await);
    stack.fill(&alice, "alice").await;
    stack.fill(&bob, "bob").await;

    for (who, mine, theirs) in [(&alice, "alice", "bob"), (&bob, "bob", "alice")] {
        for path in [
            format!("/v1/users/{}/tasks", who.id),
            "/v1/agent-sessions".into(),
            "/v1/tool-usage".into(),
            "/v1/corpus".into(),
        ] {
            let page = stack.ok_json(who, Method::GET, &path, None).await;
            let text = page["items"].to_string();
            assert_eq!(
                page["items"].as_array().map(Vec::len),
                Some(1),
                "{path}: {page}"
            );
            assert!(
                text.contains(mine) && !text.contains(theirs),
                "{path}: {text}"
            );
            assert!(page["next_cursor"].is_null());
        }
        let settings = stack
            .ok_json(who, Method::GET, "/v1/me/settings", None)
            .await;
        assert_eq!(settings, json!({"theme": mine}));
        let list = stack
            .ok_json(who, Method::GET, "/v1/me/secrets", None)
            .await;
        assert_eq!(list.as_array().map(Vec::len), Some(1));
        assert_eq!(list[0]["name"], "api_key");
        assert_eq!(list[0]["hint"], "6789");
        assert!(list[0].get("value").is_none());
        assert!(!list.to_string().contains("plaintext-secret"));
    }
}

#[tokio::test]
async fn another_users_id_is_403_and_their_rows_are_404() {
    let stack = spawn_stack().await;
    let (alice, bob) = (stack.caller().await, stack.caller().await);
    let alice_task = stack.fill(&alice, "alice").await;
    let bob_tasks = format!("/v1/users/{}/tasks", bob.id);
    let on_bobs = [
        (Method::GET, bob_tasks.clone(), None),
        (
            Method::POST,
            bob_tasks.clone(),
            Some(json!({"title": "sneaky"})),
        ),
        (Method::GET, format!("{bob_tasks}/{alice_task}"), None),
        (
            Method::PATCH,
            format!("{bob_tasks}/{alice_task}"),
            Some(json!({"completed": true})),
        ),
        (Method::DELETE, format!("{bob_tasks}/{alice_task}"), None),
    ];
    for (method, path, body) in on_bobs {
        let res = stack.call(&alice, method.clone(), &path, body).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{method} {path}");
        let problem: Value = res.json().await.expect("problem");
        assert_eq!(problem["code"], "forbidden");
    }
    // Bob with Alice's task id in his own path: it does not exist for him.
    let bobs_view = format!("{bob_tasks}/{alice_task}");
    for (method, body) in [
        (Method::GET, None),
        (Method::PATCH, Some(json!({"title": "mine now"}))),
        (Method::DELETE, None),
    ] {
        let res = stack.call(&bob, method.clone(), &bobs_view, body).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{method}");
    }
    // Bob cannot log tool usage against Alice's agent session, nor delete her secret.
    let sessions = stack
        .ok_json(&alice, Method::GET, "/v1/agent-sessions", None)
        .await;
    let res = stack
        .call(&bob, Method::POST, "/v1/tool-usage",
            Some(json!({"tool_name": "x", "success": true, "agent_session_id": sessions["items"][0]["id"]})))
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = stack
        .call(&bob, Method::DELETE, "/v1/me/secrets/api_key", None)
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    // Alice's task is untouched.
    let task = stack
        .ok_json(
            &alice,
            Method::GET,
            &format!("/v1/users/{}/tasks/{alice_task}", alice.id),
            None,
        )
        .await;
    assert_eq!(task["title"], "task of alice");
    assert_eq!(task["completed"], false);
    // And without a token nothing answers.
    let res = stack
        .client
        .get(format!("{}/v1/corpus", stack.main_url))
        .send()
        .await
        .expect("req");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn secrets_are_sealed_at_rest_and_bound_to_their_owner() {
    let stack = spawn_stack().await;
    let (alice, bob) = (stack.caller().await, stack.caller().await);
    stack.fill(&alice, "alice").await;
    stack.fill(&bob, "bob").await;
    // Replacing a value re-seals it with a fresh nonce.
    let res = stack
        .call(
            &alice,
            Method::PUT,
            "/v1/me/secrets/api_key",
            Some(json!({"value": "second-plaintext-of-alice-xyz9"})),
        )
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);

    let dump = service_kit::testing::database_text(&stack.main_db_url).await;
    assert!(dump.contains("task of alice"), "the dump must see the rows");
    for plain in [
        "plaintext-secret-of-alice",
        "second-plaintext-of-alice",
        "plaintext-secret-of-bob",
    ] {
        assert!(!dump.contains(plain), "{plain} is stored in plaintext");
    }

    // The key opens each row for its owner; a ciphertext copied onto the
    // other user's row does not open.
    let key = main_backend::crypto::SecretsKey::from_base64(&stack.main_env["MAIN_SECRETS_KEY"])
        .expect("key");
    let db = stack.main_db().await;
    let mut pooled = db.get().await.expect("conn");
    let conn = &mut pooled.conn();
    let a = main_backend::db::secrets::find(conn, alice.id, "api_key")
        .await
        .expect("q")
        .expect("row");
    let b = main_backend::db::secrets::find(conn, bob.id, "api_key")
        .await
        .expect("q")
        .expect("row");
    use secrecy::ExposeSecret;
    assert_eq!(
        key.open(alice.id, "api_key", &a.ciphertext, &a.nonce)
            .expect("opens")
            .expose_secret(),
        "second-plaintext-of-alice-xyz9"
    );
    let (ct, nonce) = (a.ciphertext.clone(), a.nonce.clone());
    run!(conn, |c| diesel::update(
        secrets::table.find(DbUuid(b.id.0))
    )
    .set((secrets::ciphertext.eq(&ct), secrets::nonce.eq(&nonce)))
    .execute(c)
    .await)
    .expect("copy");
    let moved = main_backend::db::secrets::find(conn, bob.id, "api_key")
        .await
        .expect("q")
        .expect("row");
    assert!(key
        .open(bob.id, "api_key", &moved.ciphertext, &moved.nonce)
        .is_err());

    // Deleting is per name and per owner.
    let res = stack
        .call(&alice, Method::DELETE, "/v1/me/secrets/api_key", None)
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let list = stack
        .ok_json(&alice, Method::GET, "/v1/me/secrets", None)
        .await;
    assert_eq!(list, json!([]));
    let list = stack
        .ok_json(&bob, Method::GET, "/v1/me/secrets", None)
        .await;
    assert_eq!(list.as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn a_deleted_user_takes_every_row_along() {
    let stack = spawn_stack().await;
    let (alice, bob) = (stack.caller().await, stack.caller().await);
    stack.fill(&alice, "alice").await;
    stack.fill(&bob, "bob").await;
    let admin = stack.service_token(&["admin"]).await;
    let res = stack
        .client
        .delete(format!("{}/admin/v1/users/{}", stack.auth_url, alice.id))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("delete");
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    eventually(Duration::from_secs(5), || async {
        stack.mirror_user(alice.id).await.is_none()
    })
    .await;
    let dump = service_kit::testing::database_text(&stack.main_db_url).await;
    let counts = |who: &str| {
        ["task of ", "session of ", "search-", "doc of "]
            .iter()
            .filter(|p| dump.contains(&format!("{p}{who}")))
            .count()
    };
    // SQLite keeps freed pages until they are reused, so on SQLite look at
    // the rows through queries instead of the file's bytes.
    if stack.main_db_url.starts_with("postgres") {
        assert_eq!(counts("alice"), 0, "alice's rows must be gone");
        assert_eq!(counts("bob"), 4);
    }
    let db = stack.main_db().await;
    let mut pooled = db.get().await.expect("conn");
    let conn = &mut pooled.conn();
    let all = main_backend::domain::business::PageRequest::first(100);
    use main_backend::db::{activity, secrets as sec, settings, tasks};
    for (who, n) in [(alice.id, 0), (bob.id, 1)] {
        assert_eq!(tasks::page(conn, who, all).await.expect("q").len(), n);
        assert_eq!(
            activity::agent_sessions(conn, who, all)
                .await
                .expect("q")
                .len(),
            n
        );
        assert_eq!(
            activity::tool_usage(conn, who, all).await.expect("q").len(),
            n
        );
        assert_eq!(activity::corpus(conn, who, all).await.expect("q").len(), n);
        assert_eq!(sec::list(conn, who).await.expect("q").len(), n);
        assert_eq!(settings::get(conn, who).await.expect("q").is_some(), n == 1);
    }
}

/// Column names in a migration that look like a credential of the auth service.
fn credential_columns(sql: &str) -> Vec<String> {
    let forbidden = [
        "password",
        "hash",
        "mfa_secret",
        "totp",
        "otp_secret",
        "refresh_token",
        "recovery_code",
    ];
    sql.lines()
        .filter_map(|line| {
            let code = line.split("--").next().unwrap_or("").to_ascii_lowercase();
            // A column definition starts with its name.
            let name = code.split_whitespace().next()?.to_owned();
            let statement = [
                "create", "on", ")", ");", "drop", "insert", "values", "alter",
            ];
            (!statement.contains(&name.as_str()) && forbidden.iter().any(|f| name.contains(f)))
                .then_some(name)
        })
        .collect()
}

/// The main backend never holds a credential of the auth service: no
/// column of its schema, in either dialect, is named like one.
#[test]
fn no_migration_of_the_main_backend_declares_a_credential_column() {
    // The check itself bites.
    let sample = "CREATE TABLE x (\n  password_hash TEXT,\n  mfa_secret TEXT, -- no\n  mfa_enabled BOOLEAN\n);";
    assert_eq!(credential_columns(sample), ["password_hash", "mfa_secret"]);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations-main");
    let mut files = 0;
    for dialect in ["postgres", "sqlite"] {
        for dir in std::fs::read_dir(root.join(dialect)).expect("migrations dir") {
            let path = dir.expect("entry").path().join("up.sql");
            let sql = std::fs::read_to_string(&path).expect("up.sql");
            files += 1;
            let found = credential_columns(&sql);
            assert!(
                found.is_empty(),
                "{}: {found:?} look like credentials",
                path.display()
            );
        }
    }
    assert!(files >= 4, "found only {files} migrations");
}
