//! Each service as its own PostgreSQL role, set up by the very SQL an
//! operator runs (deploy/postgres/roles.sql, which docker-compose runs on
//! its first start): both services work, and neither role can open the
//! other's database, so the main backend cannot write the auth service's
//! tables even if its code tried. PostgreSQL only.

use std::time::Duration;

use diesel_async::RunQueryDsl;
use launcher::system::System;
use service_kit::db::{establish_pg, url_with_database};
use uuid::Uuid;

use crate::faults::{converged, register};
use crate::stack::{client, postgres, scratch, Stack, SERIAL};

const ROLES_SQL: &str = include_str!("../../../deploy/postgres/roles.sql");

/// roles.sql with psql's variables (`:"name"` identifiers, `:'name'`
/// literals) filled in, one statement per item: CREATE DATABASE cannot run
/// in the implicit transaction of a multi-statement string.
fn roles_statements(vars: &[(&str, &str)]) -> Vec<String> {
    let mut sql: String = ROLES_SQL
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    for (name, value) in vars {
        sql = sql.replace(&format!(":\"{name}\""), &format!("\"{value}\""));
        sql = sql.replace(&format!(":'{name}'"), &format!("'{value}'"));
    }
    assert!(
        !sql.contains(":\"") && !sql.contains(":'"),
        "unfilled variable in {sql}"
    );
    sql.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `admin` (a superuser URL) with `user:password` and database `db`.
fn as_role(admin: &str, user: &str, password: &str, db: &str) -> String {
    let url = url_with_database(admin, db).unwrap();
    let (scheme, rest) = url.split_once("://").unwrap();
    let host = rest.split_once('@').map_or(rest, |(_, h)| h);
    format!("{scheme}://{user}:{password}@{host}")
}

#[tokio::test]
async fn each_service_runs_as_its_own_role_and_cannot_open_the_other_database() {
    let Some(admin) = postgres() else {
        eprintln!("PostgreSQL only: set TEST_DATABASE_URL");
        return;
    };
    let _serial = SERIAL.lock().await;
    let tag = Uuid::new_v4().simple().to_string();
    let (auth_role, main_role) = (format!("auth_{tag}"), format!("main_{tag}"));
    let (auth_db, main_db) = (format!("authdb_{tag}"), format!("maindb_{tag}"));
    let (auth_pw, main_pw) = (
        Uuid::new_v4().simple().to_string(),
        Uuid::new_v4().simple().to_string(),
    );
    let mut root = establish_pg(&admin).await.unwrap();
    for statement in roles_statements(&[
        ("auth_role", &auth_role),
        ("auth_db", &auth_db),
        ("auth_password", &auth_pw),
        ("main_role", &main_role),
        ("main_db", &main_db),
        ("main_password", &main_pw),
    ]) {
        diesel::sql_query(&statement)
            .execute(&mut root)
            .await
            .unwrap();
    }
    let auth_url = as_role(&admin, &auth_role, &auth_pw, &auth_db);
    let main_url = as_role(&admin, &main_role, &main_pw, &main_db);

    let outcome = async {
        let dir = scratch("roles");
        let stack = Stack::on(
            System::new(&dir).unwrap(),
            auth_url.clone(),
            main_url.clone(),
            Vec::new(),
            &[],
            &[],
        )
        .await;
        // Both services migrated and serve as their roles: a user made by
        // the auth service reaches the main backend's mirror.
        let email = format!("roles-{tag}@example.com");
        let (id, _) = register(&client(), &stack.auth.url(), &email)
            .await
            .unwrap()
            .expect("registered");
        let users = converged(&auth_url, &main_url, Duration::from_secs(20)).await;
        assert!(users.contains_key(&id));

        // The main backend's role cannot open the auth database (so cannot
        // write users, sessions or credentials), nor the auth role the
        // main one.
        for (user, password, db) in [
            (&main_role, &main_pw, &auth_db),
            (&auth_role, &auth_pw, &main_db),
        ] {
            let refused = establish_pg(&as_role(&admin, user, password, db))
                .await
                .err()
                .unwrap_or_else(|| panic!("{user} opened {db}"))
                .to_string();
            assert!(
                refused.contains("permission denied for database"),
                "{refused}"
            );
        }
    }
    .await;

    for db in [&auth_db, &main_db] {
        let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"))
            .execute(&mut root)
            .await;
    }
    for role in [&auth_role, &main_role] {
        let _ = diesel::sql_query(format!("DROP ROLE IF EXISTS \"{role}\""))
            .execute(&mut root)
            .await;
    }
    outcome
}
