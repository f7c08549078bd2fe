use reqwest::StatusCode;

use crate::helpers::{assert_problem, spawn_app, spawn_app_with};

#[tokio::test]
async fn live_and_ready_return_200_with_a_request_id() {
    let app = spawn_app().await;
    for path in ["/health/live", "/health/ready"] {
        let res = app.client.get(app.url(path)).send().await.expect("request");
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        let id = res
            .headers()
            .get("x-request-id")
            .expect("x-request-id")
            .to_str()
            .expect("ascii")
            .to_owned();
        assert!(
            uuid::Uuid::parse_str(&id).is_ok(),
            "generated request id is a UUID: {id}"
        );
    }
}

#[tokio::test]
async fn callers_request_id_is_echoed_and_a_bad_one_replaced() {
    let app = spawn_app().await;
    let res = app
        .client
        .get(app.url("/health/live"))
        .header("x-request-id", "trace-abc-123")
        .send()
        .await
        .expect("request");
    assert_eq!(res.headers()["x-request-id"], "trace-abc-123");
    let long = "x".repeat(500);
    let res = app
        .client
        .get(app.url("/health/live"))
        .header("x-request-id", long.as_str())
        .send()
        .await
        .expect("request");
    assert_ne!(res.headers()["x-request-id"], long.as_str());
}

#[tokio::test]
async fn unknown_route_returns_404_problem() {
    let app = spawn_app().await;
    let res = app
        .client
        .get(app.url("/nope"))
        .send()
        .await
        .expect("request");
    assert!(res.headers().contains_key("x-request-id"));
    assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn jwks_publishes_the_key_that_signs_tokens() {
    let app = spawn_app().await;
    let jwks = app.get_json("/.well-known/jwks.json").await;
    let key = &jwks["keys"][0];
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["crv"], "Ed25519");
    assert_eq!(key["alg"], "EdDSA");
    let tokens = app.register(&crate::helpers::email()).await.tokens;
    let header = jsonwebtoken::decode_header(&tokens.access_token).expect("header");
    assert_eq!(header.kid.as_deref(), key["kid"].as_str());
    // A third party can verify the token with the published key alone.
    let decoding =
        jsonwebtoken::DecodingKey::from_ed_components(key["x"].as_str().expect("x")).expect("key");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.set_audience(&["main-backend"]);
    let claims =
        jsonwebtoken::decode::<serde_json::Value>(&tokens.access_token, &decoding, &validation)
            .expect("verifies");
    for claim in ["sub", "sid", "iat", "exp", "iss", "aud", "jti"] {
        assert!(!claims.claims[claim].is_null(), "missing claim {claim}");
    }
    assert_eq!(claims.claims["sub"], tokens.user_id.to_string());
    assert_eq!(claims.claims["sid"], tokens.session_id.to_string());
    assert_eq!(
        claims.claims["exp"].as_i64().expect("exp") - claims.claims["iat"].as_i64().expect("iat"),
        30 * 60
    );
}

#[tokio::test]
async fn jwks_is_empty_for_hs256() {
    let app = crate::helpers::spawn_app_with(&[
        ("AUTH_JWT_ALGORITHM", "HS256"),
        (
            "AUTH_JWT_SECRET",
            "an-hs256-test-secret-of-enough-length-0123456789",
        ),
    ])
    .await;
    let jwks = app.get_json("/.well-known/jwks.json").await;
    assert_eq!(jwks["keys"], serde_json::json!([]));
    let tokens = app.register(&crate::helpers::email()).await.tokens;
    assert_eq!(
        jsonwebtoken::decode_header(&tokens.access_token)
            .expect("header")
            .alg,
        jsonwebtoken::Algorithm::HS256
    );
    assert_eq!(app.me_status(&tokens.access_token).await, StatusCode::OK);
}

/// The exposition parses, and its counters move with what was done:
/// requests by route pattern and status, sign-ins by outcome, a lockout,
/// introspections, and the pool's size.
#[tokio::test]
async fn metrics_parse_and_count_what_happened() {
    use service_kit::testing::parse_metrics;
    let app = spawn_app_with(&[("AUTH_LOCKOUT_THRESHOLD", "2")]).await;
    let scrape = || async {
        let res = app
            .client
            .get(app.url("/metrics"))
            .send()
            .await
            .expect("request");
        assert_eq!(res.status(), StatusCode::OK);
        let kind = res.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .to_owned();
        assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
        parse_metrics(&res.text().await.expect("body"))
    };
    let before = scrape().await;

    let email = crate::helpers::email();
    let tokens = app.register(&email).await.tokens;
    app.login(&email).await;
    // Two wrong passwords lock the pair out; the third attempt is refused
    // before any password is checked.
    for _ in 0..3 {
        app.try_login(&email, "wrong password 123", None, None)
            .await;
    }
    let answer = app.introspect(&tokens.access_token).await;
    assert_eq!(answer["active"], true);
    app.introspect("not-a-token").await;
    app.client
        .get(app.url("/no/such/route"))
        .send()
        .await
        .expect("request");

    let after = scrape().await;
    let moved = |k: &str| after.since(&before, k);
    assert_eq!(
        moved(r#"auth_login_attempts_total{outcome="success"}"#),
        1.0
    );
    assert_eq!(
        moved(r#"auth_login_attempts_total{outcome="failure"}"#),
        2.0
    );
    assert_eq!(
        moved(r#"auth_login_attempts_total{outcome="locked_out"}"#),
        1.0
    );
    assert_eq!(moved("auth_lockouts_total"), 1.0);
    assert_eq!(
        moved(r#"auth_introspections_total{active="true",kind="user"}"#),
        1.0
    );
    assert_eq!(
        moved(r#"auth_introspections_total{active="false",kind="user"}"#),
        1.0
    );
    // Routes by pattern, unknown paths pooled under one label.
    assert_eq!(
        moved(r#"http_requests_total{method="POST",route="/v1/login",status="200"}"#),
        1.0
    );
    assert_eq!(
        moved(r#"http_requests_total{method="POST",route="/v1/login",status="429"}"#),
        1.0
    );
    assert_eq!(
        moved(r#"http_requests_total{method="GET",route="unmatched",status="404"}"#),
        1.0
    );
    assert!(
        moved(
            r#"http_request_duration_seconds_count{method="POST",route="/v1/register",status="201"}"#
        ) >= 1.0
    );
    assert_eq!(after.get(r#"db_pool_connections{state="max"}"#), 4.0);
    assert!(after.get(r#"db_pool_connections{state="open"}"#) >= 1.0);
    // Webhooks are off in this app: nothing is delivered, the backlog grows.
    assert!(after.get(r#"auth_outbox_events{status="pending"}"#) >= 1.0);
}

/// The OpenAPI document lists exactly the router's routes, is served as
/// OpenAPI 3.1 with no dangling reference, and the docs UI is served from
/// the binary.
#[tokio::test]
async fn openapi_covers_every_route_and_docs_are_served() {
    use service_kit::testing::{assert_documents_routes, check_openapi_json};
    let mut table = Vec::new();
    let _ =
        actix_web::App::new().configure(|cfg| table = auth_service::routes::configure(cfg, None));
    assert_documents_routes(&table, auth_service::routes::openapi());

    let app = spawn_app().await;
    let doc: serde_json::Value = app.get_json("/openapi.json").await;
    check_openapi_json(&doc);
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    let res = app
        .client
        .get(app.url("/docs"))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::PERMANENT_REDIRECT);
    let res = app
        .client
        .get(app.url("/docs/"))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::OK);
    let page = res.text().await.expect("page");
    assert!(page.contains("swagger-ui"), "{page}");
    let res = app
        .client
        .get(app.url("/docs/swagger-ui-bundle.js"))
        .send()
        .await
        .expect("request");
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "the UI's script comes from the binary"
    );
}

/// A path that exists answers another method with 405, an `Allow` header
/// and a problem, not 404: rate-limited and plain routes alike.
#[tokio::test]
async fn wrong_method_is_405_with_allow() {
    let app = spawn_app().await;
    for (method, path, allow) in [
        (reqwest::Method::GET, "/v1/login", "POST"),
        (reqwest::Method::DELETE, "/v1/me", "GET"),
        (
            reqwest::Method::PUT,
            "/admin/v1/service-tokens",
            "POST, GET",
        ),
    ] {
        let res = app
            .client
            .request(method.clone(), app.url(path))
            .send()
            .await
            .expect("request");
        assert_eq!(
            res.headers().get("allow").map(|v| v.to_str().unwrap_or("")),
            Some(allow),
            "{method} {path}"
        );
        assert_problem(res, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
    }
}

/// Anyone may send any extension method: each must not become a series of
/// its own, or unauthenticated requests grow memory and `/metrics` forever.
#[tokio::test]
async fn invented_methods_share_one_metric_label() {
    let app = spawn_app().await;
    let scrape = || async {
        let res = app
            .client
            .get(app.url("/metrics"))
            .send()
            .await
            .expect("metrics");
        res.text().await.expect("body")
    };
    let before = service_kit::testing::parse_metrics(&scrape().await);
    for i in 0..20 {
        let method = reqwest::Method::from_bytes(format!("XMETHOD{i}").as_bytes()).expect("token");
        let res = app
            .client
            .request(method, app.url("/v1/login"))
            .send()
            .await
            .expect("request");
        assert!(res.status().is_client_error(), "{}", res.status());
    }
    let text = scrape().await;
    assert!(
        !text.contains("XMETHOD"),
        "an invented method became a label"
    );
    let after = service_kit::testing::parse_metrics(&text);
    let other = r#"http_requests_total{method="OTHER",route="/v1/login",status="405"}"#;
    assert_eq!(after.since(&before, other), 20.0, "{text}");
}
