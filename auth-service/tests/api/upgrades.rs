//! Upgrading a database with work in flight loses none of it.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde_json::{json, Value};
use service_kit::crypto::SealingKey;
use service_kit::db::sql_types::{DbTime, DbUuid};
use service_kit::run;
use uuid::Uuid;

use crate::helpers::{spawn_app_after, TestApp};

/// The queue tables as migration 000005 left them.
mod before_000006 {
    diesel::table! {
        use diesel::sql_types::*;
        use service_kit::db::sql_types::{SqlUuid, SqlTimestamp};

        webhook_events (id) {
            id -> SqlUuid,
            event_type -> Text,
            payload -> Text,
            status -> Text,
            attempts -> Integer,
            next_attempt_at -> SqlTimestamp,
            last_error -> Nullable<Text>,
            created_at -> SqlTimestamp,
            delivered_at -> Nullable<SqlTimestamp>,
        }
    }

    diesel::table! {
        use diesel::sql_types::*;
        use service_kit::db::sql_types::{SqlUuid, SqlTimestamp};

        mail_queue (id) {
            id -> SqlUuid,
            kind -> Text,
            to_addr -> Text,
            payload_sealed -> Nullable<Text>,
            status -> Text,
            attempts -> Integer,
            next_attempt_at -> SqlTimestamp,
            created_at -> SqlTimestamp,
            sent_at -> Nullable<SqlTimestamp>,
        }
    }
}

/// Migration 000006 folds the two queues into `jobs`: an event waiting
/// for delivery, one given up on and one delivered keep their state (the
/// failed one stays redeliverable), and a mail queued before the upgrade,
/// sealed the old way, is sent after it with its token intact.
#[tokio::test]
async fn the_job_queue_migration_keeps_undelivered_events_and_unsent_mail() {
    use before_000006::{mail_queue as mq, webhook_events as we};
    let (pending, failed, delivered) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let mail_id = Uuid::now_v7();
    let secrets_key = service_kit::testing::secrets_key();
    let key = SealingKey::from_base64(&secrets_key).expect("key");
    let app = spawn_app_after(&[("AUTH_SECRETS_KEY", &secrets_key)], |url| async move {
        let applied = service_kit::db::run_first_migrations(
            &url,
            auth_service::POSTGRES_MIGRATIONS,
            auth_service::SQLITE_MIGRATIONS,
            5,
        )
        .await
        .expect("migrations up to 000005");
        assert_eq!(applied, 5);
        let db = service_kit::db::DbPool::connect(&url, 1).await.expect("pool");
        let mut pooled = db.get().await.expect("conn");
        let conn = &mut pooled.conn();
        let now = DbTime(chrono::Utc::now() - chrono::Duration::minutes(5));
        for (id, status, attempts) in [
            (pending, "pending", 2),
            (failed, "failed", 30),
            (delivered, "delivered", 1),
        ] {
            run!(conn, |c| diesel::insert_into(we::table)
                .values((
                    we::id.eq(DbUuid(id)),
                    we::event_type.eq("user.updated"),
                    we::payload.eq(r#"{"type":"user.updated"}"#),
                    we::status.eq(status),
                    we::attempts.eq(attempts),
                    we::next_attempt_at.eq(now),
                    we::last_error.eq((status != "delivered").then_some("receiver answered 503")),
                    we::created_at.eq(now),
                    we::delivered_at.eq((status == "delivered").then_some(now)),
                ))
                .execute(c)
                .await)
            .expect("old event");
        }
        // Sealed as 000005's sender sealed it: the id in the associated data.
        let mut aad = b"auth-service mail v1\0".to_vec();
        aad.extend_from_slice(mail_id.as_bytes());
        let payload = json!({"subject": "Reset your password", "token": "old-token", "link": "http://app.test/account/reset?token=old-token"});
        let sealed = key.seal_text(&aad, payload.to_string().as_bytes());
        run!(conn, |c| diesel::insert_into(mq::table)
            .values((
                mq::id.eq(DbUuid(mail_id)),
                mq::kind.eq("password_reset"),
                mq::to_addr.eq("upgraded@example.com"),
                mq::payload_sealed.eq(Some(&sealed)),
                mq::status.eq("pending"),
                mq::attempts.eq(0),
                mq::next_attempt_at.eq(now),
                mq::created_at.eq(now),
            ))
            .execute(c)
            .await)
        .expect("old mail");
    })
    .await;

    let mail = app.mail("upgraded@example.com", "password_reset").await;
    assert_eq!(mail["token"], "old-token");
    assert_eq!(mail["subject"], "Reset your password");
    assert_eq!(TestApp::token_in_link(&mail), "old-token");

    let stats: Value = app
        .client
        .get(app.url("/internal/v1/webhooks/stats"))
        .bearer_auth(&app.api_key)
        .send()
        .await
        .expect("stats")
        .json()
        .await
        .expect("stats json");
    assert_eq!(
        (&stats["pending"], &stats["failed"], &stats["delivered"]),
        (&json!(1), &json!(1), &json!(1)),
        "{stats}"
    );
    let jobs = job_rows(&app).await;
    assert_eq!(
        jobs,
        vec![
            ("webhook".into(), pending, "pending".into(), 2),
            ("webhook".into(), failed, "failed".into(), 30),
            ("webhook".into(), delivered, "done".into(), 1),
        ],
        "{jobs:?}"
    );
    let res: Value = app
        .client
        .post(app.url("/internal/v1/webhooks/redeliver"))
        .bearer_auth(&app.api_key)
        .send()
        .await
        .expect("redeliver")
        .json()
        .await
        .expect("redeliver json");
    assert_eq!(res["requeued"], 1, "the failed event is redeliverable");
    let after = job_rows(&app).await;
    assert_eq!(
        (after[1].2.as_str(), after[1].3),
        ("pending", 0),
        "{after:?}"
    );
}

/// Webhook jobs and whether they failed, in id order (the mail one is
/// checked through the mail it sent).
async fn job_rows(app: &TestApp) -> Vec<(String, Uuid, String, i32)> {
    use auth_service::db::schema::jobs;
    let db = app.db().await;
    let mut pooled = db.get().await.expect("conn");
    let rows: Vec<(String, DbUuid, String, i32)> = run!(&mut pooled.conn(), |c| {
        diesel_async::RunQueryDsl::load(
            jobs::table
                .filter(jobs::kind.eq("webhook"))
                .order(jobs::id)
                .select((jobs::kind, jobs::id, jobs::status, jobs::attempts)),
            c,
        )
        .await
    })
    .expect("jobs");
    rows.into_iter()
        .map(|(k, i, s, a)| (k, i.0, s, a))
        .collect()
}
