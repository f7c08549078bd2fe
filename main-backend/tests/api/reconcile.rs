//! Reconciliation and `/health/sync`: drift brought to zero, on a schedule
//! and on demand, and the answers it must not trust (an empty auth
//! database, more removals than `SYNC_MAX_DELETES`, a restored backup).

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn reconciliation_alone_brings_drift_to_zero() {
    let stack = spawn_stack_with(&[("AUTH_WEBHOOK_URL", "off")], &[]).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(stack.register(&unique_email()).await.user.id);
    }
    assert_eq!(stack.mirror_count().await, 0);
    // A mirror row whose user the auth service never had: reconciliation removes it.
    let stray = insert_stray(&stack).await;
    let report = stack.sync_now().await;
    assert_eq!(report["created"], 5, "{report}");
    assert_eq!(report["deleted"], 1, "{report}");
    assert_eq!(report["updated"], 0);
    assert!(report["duration_ms"].is_i64());
    assert_eq!(stack.mirror_count().await, 5);
    assert!(stack.mirror_user(stray).await.is_none());
    // A second run changes nothing.
    let report = stack.sync_now().await;
    assert_eq!(report["unchanged"], 5, "{report}");
    assert_eq!(report["created"], 0);
    // Only an operator may trigger it.
    let res = stack
        .client
        .post(format!("{}/admin/v1/sync", stack.main_url))
        .bearer_auth("not-the-key")
        .send()
        .await
        .expect("sync");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn periodic_reconciliation_runs_on_its_own() {
    let stack = spawn_stack_with(
        &[("AUTH_WEBHOOK_URL", "off")],
        &[("SYNC_INTERVAL_SECONDS", "1")],
    )
    .await;
    let id = stack.register(&unique_email()).await.user.id;
    eventually(Duration::from_secs(10), || async {
        stack.mirror_user(id).await.is_some()
    })
    .await;
}

#[tokio::test]
async fn health_sync_turns_degraded_past_the_threshold_and_back() {
    let mut stack = spawn_stack_with(
        &[("AUTH_WEBHOOK_URL", "off")],
        &[("SYNC_ALERT_THRESHOLD", "2")],
    )
    .await;
    let health = |s: &Stack| {
        let req = s.client.get(format!("{}/health/sync", s.main_url));
        async move {
            let res = req.send().await.expect("health");
            let status = res.status();
            let body: Value = res.json().await.expect("json");
            (status, body)
        }
    };
    let (status, body) = health(&stack).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["threshold"], 2);
    for _ in 0..3 {
        stack.register(&unique_email()).await;
    }
    tokio::time::sleep(Duration::from_millis(1100)).await; // past the 1 s cache
    let (status, body) = health(&stack).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["auth_user_count"], 3);
    assert_eq!(body["local_user_count"], 0);
    assert_eq!(body["difference"], 3);
    assert_eq!(body["auth_reachable"], true);
    assert_eq!(body["webhooks"]["pending"], 3);
    // Counts only: no ids or emails anywhere in the answer.
    assert!(!body.to_string().contains("@example.com"));
    stack.sync_now().await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, body) = health(&stack).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["difference"], 0);
    assert_eq!(body["last_reconcile"]["status"], "ok");
    assert_eq!(body["last_reconcile"]["created"], 3);
    assert!(body["last_reconcile_at"].is_string());
    // Auth service gone: failing.
    stack.stop_auth().await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, body) = health(&stack).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "failing");
    assert_eq!(body["auth_reachable"], false);
}

/// A mirror row whose user the auth service never had: drift that
/// reconciliation removes.
pub(crate) async fn insert_stray(stack: &Stack) -> uuid::Uuid {
    let stray = uuid::Uuid::now_v7();
    {
        let db = stack.main_db().await;
        let mut c = db.get().await.expect("conn");
        let record = shared_types::UserRecord {
            id: stray,
            email: "ghost@example.com".into(),
            email_verified: false,
            full_name: None,
            mfa_enabled: false,
            account_locked: false,
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
            version: 1,
        };
        main_backend::db::mirror::apply_records(&mut c.conn(), &[record])
            .await
            .expect("insert");
    }
    stray
}

/// `POST /admin/v1/sync` with `token`, query `query`; status and body.
async fn sync_as(stack: &Stack, token: &str, query: &str) -> (StatusCode, Value) {
    let res = stack
        .client
        .post(format!("{}/admin/v1/sync{query}", stack.main_url))
        .bearer_auth(token)
        .send()
        .await
        .expect("sync");
    let status = res.status();
    (status, res.json().await.expect("json"))
}

async fn sync_health(stack: &Stack) -> (StatusCode, Value) {
    tokio::time::sleep(Duration::from_millis(1100)).await; // past the 1 s cache
    let res = stack
        .client
        .get(format!("{}/health/sync", stack.main_url))
        .send()
        .await
        .expect("health");
    let status = res.status();
    (status, res.json().await.expect("json"))
}

/// The auth service comes back on an empty database (a lost volume, a
/// wrong URL): its answer says nobody exists. Reconciliation must not
/// believe it with everyone's business data: nothing is removed, the run
/// is recorded as refused, health says failing, and only an admin's
/// explicit confirmation removes the users.
#[tokio::test]
async fn an_empty_answer_from_the_auth_service_removes_nobody() {
    let mut stack = spawn_stack().await;
    let reg = stack.register(&unique_email()).await;
    for _ in 0..11 {
        stack.register(&unique_email()).await;
    }
    eventually(Duration::from_secs(10), || async {
        stack.mirror_count().await == 12
    })
    .await;
    let res = stack
        .client
        .post(format!("{}/v1/users/{}/tasks", stack.main_url, reg.user.id))
        .bearer_auth(&reg.tokens.access_token)
        .json(&json!({"title": "keep me"}))
        .send()
        .await
        .expect("task");
    assert_eq!(res.status(), StatusCode::CREATED);

    let good = stack.restart_auth_on_empty_database().await;
    let ops = stack.service_token(&["ops"]).await;
    let (status, body) = sync_as(&stack, &ops, "").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "mass_delete_refused");
    assert_eq!(stack.mirror_count().await, 12);
    let (status, health) = sync_health(&stack).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{health}");
    assert_eq!(health["status"], "failing");
    assert_eq!(health["last_reconcile"]["status"], "failed");
    assert_eq!(health["last_reconcile"]["error"], "mass_delete_refused");
    // The confirmation is an admin's alone.
    let (status, _) = sync_as(&stack, &ops, "?allow_mass_delete=true").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = sync_as(&stack, &ops, "?allow_mass_delete=yes").await;
    assert!(status.is_client_error(), "{status} {body}");
    assert_eq!(stack.mirror_count().await, 12);

    // The right database again: the answer changed, the run succeeds, the
    // business data is all there, and health recovers.
    stack.restart_auth_with(good.clone()).await;
    let report = stack.sync_now().await;
    assert_eq!(report["deleted"], 0, "{report}");
    assert_eq!(report["unchanged"], 12, "{report}");
    let res = stack
        .main_get(
            &stack.main_url,
            &format!("/v1/users/{}/tasks", reg.user.id),
            &reg.tokens.access_token,
        )
        .await;
    let tasks: Value = res.json().await.expect("tasks");
    assert_eq!(tasks["items"][0]["title"], "keep me", "{tasks}");
    let (status, health) = sync_health(&stack).await;
    assert_eq!(status, StatusCode::OK, "{health}");

    // An operator who means it: the removal goes through, once confirmed.
    stack.restart_auth_on_empty_database().await;
    let admin = stack.service_token(&["admin"]).await;
    let (status, body) = sync_as(&stack, &admin, "?allow_mass_delete=true").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["deleted"], 12, "{body}");
    assert_eq!(stack.mirror_count().await, 0);
}

/// The count looks right but the pages prove more rows gone than the limit
/// allows: the pages' creations are applied, and no row is removed.
#[tokio::test]
async fn removals_past_sync_max_deletes_are_refused_after_the_pages_are_read() {
    let stack =
        spawn_stack_with(&[("AUTH_WEBHOOK_URL", "off")], &[("SYNC_MAX_DELETES", "2")]).await;
    let strays = [
        insert_stray(&stack).await,
        insert_stray(&stack).await,
        insert_stray(&stack).await,
    ];
    for _ in 0..3 {
        stack.register(&unique_email()).await;
    }
    let ops = stack.service_token(&["ops"]).await;
    let (status, body) = sync_as(&stack, &ops, "").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "mass_delete_refused");
    assert!(
        body["detail"]
            .as_str()
            .expect("detail")
            .contains("would remove 3 users (limit 2"),
        "{body}"
    );
    for id in strays {
        assert!(stack.mirror_user(id).await.is_some());
    }
    assert_eq!(
        stack.mirror_count().await,
        6,
        "the three new users were created"
    );
    // Within the limit, the same removal goes through.
    let db = stack.main_db().await;
    let mut c = db.get().await.expect("conn");
    main_backend::db::mirror::delete_users(&mut c.conn(), &[(strays[0], 1)])
        .await
        .expect("delete");
    drop(c);
    let report = stack.sync_now().await;
    assert_eq!(report["deleted"], 2, "{report}");
    assert_eq!(stack.mirror_count().await, 3);
}

/// `/health/sync` is anonymous: a failed run shows a stable code, never the
/// database's or the network's own words (addresses, user names, paths).
#[tokio::test]
async fn health_sync_shows_codes_not_error_text() {
    let mut stack = spawn_stack_with(&[], &[("SYNC_INTERVAL_SECONDS", "1")]).await;
    // A row as older versions wrote it, with the error's text (dated
    // ahead, so the periodic runs wait until it is gone).
    {
        let db = stack.main_db().await;
        let mut c = db.get().await.expect("conn");
        let leaked = "database: connection to server at \"10.1.2.3\", port 5432 failed: \
                      FATAL: password authentication failed for user \"app\"";
        let now = chrono::Utc::now() + chrono::Duration::seconds(30);
        main_backend::db::sync_runs::insert(
            &mut c.conn(),
            &main_backend::db::sync_runs::SyncRun {
                id: main_backend::db::sql_types::DbUuid(uuid::Uuid::now_v7()),
                trigger: "periodic".into(),
                status: "failed".into(),
                started_at: main_backend::db::sql_types::DbTime(now),
                finished_at: Some(main_backend::db::sql_types::DbTime(now)),
                created: 0,
                updated: 0,
                deleted: 0,
                unchanged: 0,
                duration_ms: Some(1),
                error: Some(leaked.into()),
            },
        )
        .await
        .expect("insert");
    }
    let (_, health) = sync_health(&stack).await;
    assert_eq!(
        health["last_reconcile"]["error"], "reconcile_failed",
        "{health}"
    );
    assert!(!health.to_string().contains("10.1.2.3"), "{health}");
    let db = stack.main_db().await;
    {
        use diesel_async::RunQueryDsl;
        use main_backend::db::schema::sync_runs as sr;
        let mut c = db.get().await.expect("conn");
        let conn = &mut c.conn();
        service_kit::run!(conn, |c| diesel::delete(sr::table).execute(c).await).expect("clear");
    }
    // A real failure: the auth service is gone; the runs record the code.
    stack.stop_auth().await;
    eventually(Duration::from_secs(15), || async {
        let mut c = db.get().await.expect("conn");
        let runs = {
            use diesel::prelude::*;
            use diesel_async::RunQueryDsl;
            use main_backend::db::schema::sync_runs as sr;
            let conn = &mut c.conn();
            service_kit::run!(conn, |c| sr::table
                .filter(sr::error.eq("auth_unavailable"))
                .count()
                .get_result::<i64>(c)
                .await)
            .expect("count")
        };
        runs > 0
    })
    .await;
    let db_text = {
        use diesel::prelude::*;
        use diesel_async::RunQueryDsl;
        use main_backend::db::schema::sync_runs as sr;
        let mut c = db.get().await.expect("conn");
        let conn = &mut c.conn();
        service_kit::run!(conn, |c| sr::table
            .select(sr::error)
            .load::<Option<String>>(c)
            .await)
        .expect("errors")
    };
    for e in db_text.iter().flatten() {
        assert!(
            main_backend::sync::reconcile::ERROR_CODES.contains(&e.as_str()),
            "a stored error that is not a code: {e}"
        );
    }
}

/// The auth database is restored from a backup: one user's later changes
/// (a lock) are undone, and a user deleted after the backup is back. The
/// versions went backwards, so newer-only sync ignored them for good; a
/// reconciliation now notices (the answer is a full one at its time, and
/// nothing wrote those rows since) and the mirror follows the auth
/// service down, then keeps following it.
#[tokio::test]
async fn a_restored_auth_database_is_followed_back_in_time() {
    use auth_service::db::schema::users as au;
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    let stack = spawn_stack().await;
    let a = stack.register(&unique_email()).await.user.id;
    let b = stack.register(&unique_email()).await.user.id;
    eventually(Duration::from_secs(10), || async {
        stack.mirror_count().await == 2
    })
    .await;
    // The backup: both users as they are now.
    let auth_db = stack.auth_db().await;
    let backup = {
        let mut c = auth_db.get().await.expect("conn");
        let conn = &mut c.conn();
        let a_row = auth_service::db::users::find(conn, a)
            .await
            .expect("a")
            .expect("a");
        let b_row = auth_service::db::users::find(conn, b)
            .await
            .expect("b")
            .expect("b");
        (a_row, b_row)
    };
    // After the backup: a is locked, b is deleted; the mirror follows.
    let admin = stack.service_token(&["admin"]).await;
    for (method, path) in [
        (Method::POST, format!("/admin/v1/users/{a}/lock")),
        (Method::DELETE, format!("/admin/v1/users/{b}")),
    ] {
        let res = stack
            .client
            .request(method, format!("{}{path}", stack.auth_url))
            .bearer_auth(&admin)
            .send()
            .await
            .expect("admin");
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
    }
    eventually(Duration::from_secs(10), || async {
        stack.mirror_user(b).await.is_none()
            && stack.mirror_user(a).await.is_some_and(|u| u.account_locked)
    })
    .await;

    // The restore, underneath the running service.
    {
        let (a_row, b_row) = &backup;
        let mut c = auth_db.get().await.expect("conn");
        let conn = &mut c.conn();
        service_kit::run!(conn, |c| diesel::update(
            au::table.filter(au::id.eq(a_row.id))
        )
        .set((au::account_locked.eq(false), au::version.eq(a_row.version)))
        .execute(c)
        .await)
        .expect("restore a");
        auth_service::db::users::insert(
            conn,
            &auth_service::db::users::NewUser {
                id: b_row.id,
                email: &b_row.email,
                password_hash: &b_row.password_hash,
                email_verified: b_row.email_verified,
                full_name: b_row.full_name.as_deref(),
                password_changed_at: b_row.password_changed_at,
                created_at: b_row.created_at,
                updated_at: b_row.updated_at,
            },
        )
        .await
        .expect("restore b");
        service_kit::run!(conn, |c| diesel::update(
            au::table.filter(au::id.eq(b_row.id))
        )
        .set(au::version.eq(b_row.version))
        .execute(c)
        .await)
        .expect("b's version");
    }
    let text = |s: &Stack| {
        let req = s.client.get(format!("{}/metrics", s.main_url));
        async move {
            req.send()
                .await
                .expect("metrics")
                .text()
                .await
                .expect("text")
        }
    };
    let before = service_kit::testing::parse_metrics(&text(&stack).await);
    let report = stack.sync_now().await;
    assert_eq!(report["deleted"], 0, "{report}");
    let row = stack.mirror_user(a).await.expect("a");
    assert!(!row.account_locked, "the mirror follows the restored truth");
    assert_eq!(row.auth_version, backup.0.version);
    assert!(stack.mirror_user(b).await.is_some(), "b is back");
    let after = service_kit::testing::parse_metrics(&text(&stack).await);
    assert_eq!(
        after.since(&before, r#"main_reconcile_drift_total{kind="rewound"}"#),
        2.0
    );
    // And it keeps following: the next change (from the restored version)
    // reaches the mirror by webhook.
    let res = stack
        .client
        .post(format!("{}/admin/v1/users/{a}/lock", stack.auth_url))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("lock");
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    eventually(Duration::from_secs(10), || async {
        stack.mirror_user(a).await.is_some_and(|u| u.account_locked)
    })
    .await;
    // A second run finds nothing to move back.
    let report = stack.sync_now().await;
    assert_eq!(report["updated"], 0, "{report}");
}

/// Runs `sql` on the auth service's database (drift made behind its back,
/// as a lost webhook or a manual fix would leave it).
async fn auth_sql(stack: &Stack, sql: &str) {
    use diesel_async::RunQueryDsl;
    let db = stack.auth_db().await;
    let mut pooled = db.get().await.expect("conn");
    service_kit::run!(&mut pooled.conn(), |c| diesel::sql_query(sql)
        .execute(c)
        .await)
    .expect("auth sql");
}

/// Digest reconciliation (ranges of 256 of the mirror's users): with
/// 3,000 users, a user changed in place (same count in its range), one
/// swapped for another id in the same range (same count, same versions),
/// one deleted and one created behind the mirror's back are all found, and
/// exactly the four ranges around them are read row by row.
#[tokio::test]
async fn digests_find_every_kind_of_drift_and_read_only_what_differs() {
    let stack = spawn_stack_with(&[("AUTH_WEBHOOK_URL", "off")], &[]).await;
    const USERS: usize = 3000;
    const RANGE: usize = 256;
    let now = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    let row = |id: uuid::Uuid, email: &str| {
        format!(
            "('{id}', '{email}', 'not-a-password-hash', NULL, false, false, false, NULL, '{now}', 1, '{now}', '{now}')"
        )
    };
    let insert = |rows: &[String]| {
        format!(
            "INSERT INTO users (id, email, password_hash, full_name, email_verified, mfa_enabled, account_locked, last_login_at, password_changed_at, version, created_at, updated_at) VALUES {}",
            rows.join(", ")
        )
    };
    let mut ids: Vec<uuid::Uuid> = (0..USERS).map(|_| uuid::Uuid::now_v7()).collect();
    ids.sort();
    let rows: Vec<String> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| row(*id, &format!("digest-{i}@example.com")))
        .collect();
    for chunk in rows.chunks(500) {
        auth_sql(&stack, &insert(chunk)).await;
    }
    // The SQL function (a migration on PostgreSQL, registered on SQLite)
    // agrees with Rust's, or mixed backends would see every range differ.
    #[derive(diesel::QueryableByName)]
    struct Hash {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        h: i64,
    }
    let hashes: Vec<Hash> = {
        use diesel_async::RunQueryDsl;
        let db = stack.auth_db().await;
        let mut pooled = db.get().await.expect("conn");
        service_kit::run!(&mut pooled.conn(), |c| diesel::sql_query(
            "SELECT id_hash(id) AS h FROM users ORDER BY id"
        )
        .load(c)
        .await)
        .expect("id_hash")
    };
    let rust: Vec<i64> = ids.iter().map(service_kit::db::digest::id_hash).collect();
    assert_eq!(hashes.iter().map(|h| h.h).collect::<Vec<_>>(), rust);

    let first = stack.sync_now().await;
    assert_eq!(first["created"], USERS as i64, "{first}");
    // Nothing changed: nothing is read row by row.
    let idle = stack.sync_now().await;
    assert_eq!(
        (
            idle["created"].as_i64(),
            idle["updated"].as_i64(),
            idle["deleted"].as_i64()
        ),
        (Some(0), Some(0), Some(0)),
        "{idle}"
    );
    assert_eq!(idle["compared"], 0, "{idle}");
    assert_eq!(idle["unchanged"], USERS as i64, "{idle}");

    // Drift, each in its own range (the mirror's ranges are positions
    // 0..256, 256..512, ... of its sorted ids; the last runs to the end).
    // Range 2: a user swapped for an id next to it: count and versions
    // unchanged, only the ids differ.
    let (gone_swapped, swapped_in) = (ids[600], uuid::Uuid::from_u128(ids[600].as_u128() ^ 1));
    auth_sql(
        &stack,
        &format!("DELETE FROM users WHERE id = '{gone_swapped}'"),
    )
    .await;
    auth_sql(
        &stack,
        &insert(&[row(swapped_in, "digest-swapped@example.com")]),
    )
    .await;
    // Range 4: changed in place.
    let changed = ids[1234];
    auth_sql(
        &stack,
        &format!(
            "UPDATE users SET email = 'digest-changed@example.com', version = version + 1 WHERE id = '{changed}'"
        ),
    )
    .await;
    // Range 9: deleted.
    let deleted = ids[2500];
    auth_sql(&stack, &format!("DELETE FROM users WHERE id = '{deleted}'")).await;
    // The last range (ids after the mirror's last cut): created.
    let created = uuid::Uuid::now_v7();
    auth_sql(&stack, &insert(&[row(created, "digest-new@example.com")])).await;

    let report = stack.sync_now().await;
    assert_eq!(
        (
            report["created"].as_i64(),
            report["updated"].as_i64(),
            report["deleted"].as_i64()
        ),
        (Some(2), Some(1), Some(2)),
        "{report}"
    );
    // Exactly the auth service's users in those four ranges were read.
    let last = USERS - USERS / RANGE * RANGE;
    let expected = RANGE + RANGE + (RANGE - 1) + (last + 1);
    assert_eq!(report["compared"], expected as i64, "{report}");
    // Every user but the three touched, whether its range was read or not.
    assert_eq!(report["unchanged"], USERS as i64 - 3, "{report}");
    let row = stack.mirror_user(changed).await.expect("kept");
    assert_eq!(row.email, "digest-changed@example.com");
    assert!(stack.mirror_user(deleted).await.is_none());
    assert!(stack.mirror_user(gone_swapped).await.is_none());
    assert!(stack.mirror_user(swapped_in).await.is_some());
    assert!(stack.mirror_user(created).await.is_some());
    // And the next run finds nothing.
    let again = stack.sync_now().await;
    assert_eq!(again["compared"], 0, "{again}");
}
