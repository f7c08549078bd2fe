//! The embedded web app's assets and the headers that protect them. Its
//! behaviour in a browser is tested in `launcher/tests/system/browser.rs`.

// A failed unwrap here is a failed test, with its line number.
#![allow(clippy::unwrap_used)]

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{spawn_stack, spawn_stack_with};

#[tokio::test]
async fn the_page_and_its_assets_are_served_with_a_strict_policy() {
    let stack = spawn_stack().await;
    let get = |path: &str| stack.client.get(format!("{}{path}", stack.main_url)).send();
    let page = get("/").await.expect("page");
    assert_eq!(page.status(), StatusCode::OK);
    let headers = page.headers().clone();
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(
        csp.contains(&format!("connect-src 'self' {}", stack.auth_url)),
        "the page may call the auth service and nothing else: {csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"<script src="/app.js" defer></script>"#));
    assert!(
        !html.contains("<script>"),
        "no inline script: the CSP forbids it"
    );

    for (path, kind, marker) in [
        ("/app.js", "text/javascript", "X-Token-Transport"),
        ("/app.css", "text/css", "[hidden]"),
    ] {
        let res = get(path).await.expect("asset");
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        assert!(res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with(kind));
        assert!(res.text().await.unwrap().contains(marker), "{path}");
    }
    let script = get("/app.js").await.unwrap().text().await.unwrap();
    assert!(
        !script.contains("localStorage.setItem") && !script.contains("sessionStorage.setItem"),
        "tokens never go to web storage"
    );
}

#[tokio::test]
async fn the_mail_link_pages_are_the_app_and_other_account_paths_are_404() {
    let stack = spawn_stack().await;
    for page in ["verify-email", "reset-password", "confirm-email"] {
        let res = stack
            .get(&stack.main_url, &format!("/account/{page}?token=abc"))
            .await;
        assert_eq!(res.status(), StatusCode::OK, "{page}");
        assert_eq!(res.headers()["referrer-policy"], "no-referrer");
        assert!(res.text().await.unwrap().contains("/app.js"));
    }
    let res = stack
        .get(&stack.main_url, "/account/delete-everything")
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
}

#[tokio::test]
async fn config_names_the_auth_service_as_browsers_reach_it() {
    let stack = spawn_stack().await;
    let config: Value = stack
        .get(&stack.main_url, "/app/config.json")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(config["auth_url"], stack.auth_url.as_str());

    let public = spawn_stack_with(&[], &[("AUTH_PUBLIC_URL", "https://auth.example.com/")]).await;
    let res = public.get(&public.main_url, "/app/config.json").await;
    let csp_page = public.get(&public.main_url, "/").await;
    let config: Value = res.json().await.unwrap();
    assert_eq!(config["auth_url"], "https://auth.example.com");
    let csp = csp_page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("connect-src 'self' https://auth.example.com;"),
        "{csp}"
    );
}

/// The OpenAPI document lists exactly the router's routes, is served as
/// OpenAPI 3.1 with no dangling reference, and the docs UI is served from
/// the binary.
#[tokio::test]
async fn openapi_covers_every_route_and_docs_are_served() {
    use service_kit::testing::{assert_documents_routes, check_openapi_json};
    let mut table = Vec::new();
    let _ = actix_web::App::new().configure(|cfg| table = main_backend::routes::configure(cfg));
    assert_documents_routes(&table, main_backend::routes::openapi());

    let stack = spawn_stack().await;
    let doc: serde_json::Value = stack
        .get(&stack.main_url, "/openapi.json")
        .await
        .json()
        .await
        .unwrap();
    check_openapi_json(&doc);
    assert!(doc["components"]["securitySchemes"]["service"].is_object());
    let res = stack.get(&stack.main_url, "/docs/").await;
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("swagger-ui"));
}
