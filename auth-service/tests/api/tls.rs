//! PostgreSQL over TLS. scripts/test's TLS pass starts a server that refuses
//! plain connections, with a CA and certificate made for the run, runs the
//! whole suite over `verify-full` against it, and sets for these tests:
//! - `TEST_TLS_DATABASE_URL`: that server, `sslmode=verify-full`, the CA in
//!   `sslrootcert`, host `localhost` (the only name the certificate lists);
//! - `TEST_TLS_OTHER_CA`: a CA that did not sign the server's certificate;
//! - `TEST_PLAIN_DATABASE_URL`: a server without TLS.
//!
//! The other passes have no TLS server: these tests then say so and return.

use diesel::sql_types::{BigInt, Bool};
use diesel_async::RunQueryDsl;
use service_kit::db::{establish_pg, url_with_database};

use crate::helpers::{spawn_app, start_error};

struct TlsEnv {
    /// verify-full, trusted CA, host localhost.
    url: String,
    other_ca: String,
    plain_url: String,
}

fn tls_env() -> Option<TlsEnv> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match (
        var("TEST_TLS_DATABASE_URL"),
        var("TEST_TLS_OTHER_CA"),
        var("TEST_PLAIN_DATABASE_URL"),
    ) {
        (Some(url), Some(other_ca), Some(plain_url)) => Some(TlsEnv {
            url,
            other_ca,
            plain_url,
        }),
        _ => {
            eprintln!("no TLS PostgreSQL in this pass (scripts/test's TLS pass sets one up)");
            None
        }
    }
}

/// `url` with its `sslmode` (and `sslrootcert`) replaced by `params`.
fn with_params(url: &str, params: &str) -> String {
    let base = url.split_once('?').map_or(url, |(b, _)| b);
    if params.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{params}")
    }
}

fn ca_of(url: &str) -> String {
    url.split(['?', '&'])
        .find_map(|p| p.strip_prefix("sslrootcert="))
        .expect("the TLS URL names its CA")
        .to_owned()
}

#[derive(diesel::QueryableByName)]
struct Encrypted {
    #[diesel(sql_type = Bool)]
    ssl: bool,
}

/// Whether this connection to `url` is encrypted, as the server sees it.
async fn encrypted(url: &str) -> bool {
    let mut conn = establish_pg(url).await.expect("connects");
    let row: Encrypted =
        diesel::sql_query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .get_result(&mut conn)
            .await
            .expect("pg_stat_ssl");
    row.ssl
}

fn assert_one_line(message: &str, expected: &str) {
    assert!(
        message.contains(expected),
        "expected {expected:?} in: {message}"
    );
    assert!(!message.contains('\n'), "one line: {message}");
}

#[tokio::test]
async fn require_against_a_server_without_tls_fails_at_start_saying_so() {
    let Some(env) = tls_env() else { return };
    let url = with_params(&env.plain_url, "sslmode=require");
    let said = start_error(&url).await;
    assert_one_line(
        &said,
        "does not accept TLS connections, but sslmode=require",
    );
    // verify-full asks more of the same server, and gets the same answer.
    let url = with_params(
        &env.plain_url,
        &format!("sslmode=verify-full&sslrootcert={}", ca_of(&env.url)),
    );
    assert_one_line(&start_error(&url).await, "does not accept TLS connections");
}

#[tokio::test]
async fn a_certificate_from_another_ca_fails_at_start_saying_so() {
    let Some(env) = tls_env() else { return };
    for mode in ["verify-full", "verify-ca", "require"] {
        let url = with_params(
            &env.url,
            &format!("sslmode={mode}&sslrootcert={}", env.other_ca),
        );
        let said = start_error(&url).await;
        assert_one_line(
            &said,
            &format!(
                "the server's certificate does not verify against sslrootcert={}",
                env.other_ca
            ),
        );
    }
}

#[tokio::test]
async fn a_host_name_the_certificate_does_not_list_fails_at_start_under_verify_full_only() {
    let Some(env) = tls_env() else { return };
    let by_address = env.url.replace("@localhost:", "@127.0.0.1:");
    assert_ne!(by_address, env.url, "the TLS URL names host localhost");
    let said = start_error(&by_address).await;
    assert_one_line(
        &said,
        "the server's certificate is not valid for host 127.0.0.1",
    );
    // verify-ca checks the chain, not the name: the same address connects.
    let ca_only = by_address.replace("sslmode=verify-full", "sslmode=verify-ca");
    assert!(encrypted(&ca_only).await);
}

#[tokio::test]
async fn a_plain_connection_to_a_tls_only_server_is_refused_with_a_hint() {
    let Some(env) = tls_env() else { return };
    let said = start_error(&with_params(&env.url, "sslmode=disable")).await;
    assert_one_line(&said, "no encryption");
    assert_one_line(&said, "set sslmode=require or stricter");
}

#[tokio::test]
async fn require_and_prefer_encrypt_when_the_server_can_and_prefer_falls_back_when_not() {
    let Some(env) = tls_env() else { return };
    assert!(encrypted(&with_params(&env.url, "sslmode=require")).await);
    assert!(
        encrypted(&with_params(&env.url, "")).await,
        "prefer is the default"
    );
    assert!(!encrypted(&with_params(&env.plain_url, "sslmode=prefer")).await);
    assert!(!encrypted(&with_params(&env.plain_url, "sslmode=allow")).await);
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// The service under test is on the TLS server in this pass (its URL comes
/// from TEST_DATABASE_URL, which is the verify-full URL): every connection
/// it holds to its database is encrypted, pooler or not.
#[tokio::test]
async fn the_service_runs_over_verify_full() {
    let Some(env) = tls_env() else { return };
    let app = spawn_app().await;
    assert!(
        app.database_url.contains("sslmode=verify-full"),
        "the TLS pass runs the suite over verify-full: {}",
        app.database_url
    );
    let response = app
        .client
        .post(format!("{}/v1/register", app.address))
        .json(&serde_json::json!({
            "email": crate::helpers::email(),
            "password": crate::helpers::PASSWORD,
        }))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 201);
    let name = app
        .database_url
        .split_once('?')
        .map_or(app.database_url.as_str(), |(b, _)| b)
        .rsplit_once('/')
        .expect("database name")
        .1
        .to_owned();
    let mut admin = establish_pg(&url_with_database(&env.url, "postgres").expect("url"))
        .await
        .expect("admin connection");
    let count = |ssl: bool| {
        diesel::sql_query(
            "SELECT count(*) AS n FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
             WHERE a.datname = $1 AND s.ssl = $2",
        )
        .bind::<diesel::sql_types::Text, _>(name.clone())
        .bind::<Bool, _>(ssl)
    };
    let encrypted: Count = count(true).get_result(&mut admin).await.expect("count");
    let plain: Count = count(false).get_result(&mut admin).await.expect("count");
    assert!(encrypted.n > 0, "the service holds connections");
    assert_eq!(plain.n, 0, "and none of them is plain");
}
