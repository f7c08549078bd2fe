//! What browser apps get: the refresh token as an HttpOnly cookie (cookie
//! mode, `X-Token-Transport: cookie`), its CSRF guards, and CORS.

use reqwest::{Response, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{assert_problem, email, spawn_app, spawn_app_with, TestApp, PASSWORD};

const APP: &str = "http://app.test:8000";

async fn browser_app(extra: &[(&str, &str)]) -> TestApp {
    let mut overrides = vec![
        ("CORS_ALLOWED_ORIGINS", APP),
        ("CORS_ALLOW_CREDENTIALS", "true"),
    ];
    overrides.extend_from_slice(extra);
    spawn_app_with(&overrides).await
}

/// A POST as the web app's `fetch` sends it in cookie mode.
async fn cookie_post(
    app: &TestApp,
    path: &str,
    origin: Option<&str>,
    cookie: Option<&str>,
    body: Option<Value>,
) -> Response {
    let mut req = app
        .client
        .post(app.url(path))
        .header("x-token-transport", "cookie");
    if let Some(origin) = origin {
        req = req.header("origin", origin);
    }
    if let Some(value) = cookie {
        req = req.header("cookie", format!("refresh_token={value}"));
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    req.send().await.expect("request")
}

/// The `refresh_token` Set-Cookie header: its value and its attributes.
fn set_cookie(res: &Response) -> (String, Vec<String>) {
    let header = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("refresh_token="))
        .expect("a refresh_token cookie is set")
        .to_owned();
    let mut parts = header.split(';').map(|p| p.trim().to_owned());
    let value = parts
        .next()
        .and_then(|p| p.strip_prefix("refresh_token=").map(str::to_owned))
        .unwrap_or_default();
    (value, parts.collect())
}

async fn cookie_login(app: &TestApp, email: &str) -> (Value, String) {
    let res = cookie_post(
        app,
        "/v1/login",
        Some(APP),
        None,
        Some(json!({"email": email, "password": PASSWORD})),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let (cookie, _) = set_cookie(&res);
    (res.json().await.expect("json"), cookie)
}

#[tokio::test]
async fn cookie_mode_login_sets_an_httponly_strict_cookie_and_keeps_the_token_out_of_the_body() {
    let app = browser_app(&[]).await;
    let user = email();
    app.register(&user).await;
    let res = cookie_post(
        &app,
        "/v1/login",
        Some(APP),
        None,
        Some(json!({"email": user, "password": PASSWORD})),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        APP,
        "the app's origin may read the answer"
    );
    assert_eq!(res.headers()["access-control-allow-credentials"], "true");
    let (value, attrs) = set_cookie(&res);
    assert!(value.len() >= 43, "a full refresh token: {value}");
    for want in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/v1/token",
        "Max-Age=604800",
    ] {
        assert!(attrs.iter().any(|a| a == want), "{want} in {attrs:?}");
    }
    assert!(
        !attrs.iter().any(|a| a == "Secure"),
        "no Secure on a plain-http public URL: {attrs:?}"
    );
    let body: Value = res.json().await.expect("json");
    assert!(body.get("refresh_token").is_none(), "{body}");
    let access = body["access_token"].as_str().expect("access token");
    assert_eq!(app.me_status(access).await, StatusCode::OK);
    // The cookie's value is a working refresh token in its own right.
    assert_eq!(app.refresh(&value).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn cookie_mode_registration_puts_the_refresh_token_in_the_cookie() {
    let app = browser_app(&[]).await;
    let res = cookie_post(
        &app,
        "/v1/register",
        Some(APP),
        None,
        Some(json!({"email": email(), "password": PASSWORD})),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let (value, _) = set_cookie(&res);
    let body: Value = res.json().await.expect("json");
    assert!(body["tokens"].get("refresh_token").is_none(), "{body}");
    assert!(body["tokens"]["access_token"].is_string());
    assert!(body["user"]["id"].is_string());
    assert!(!value.is_empty());
}

#[tokio::test]
async fn refresh_from_the_cookie_rotates_it_and_a_replayed_cookie_revokes_the_session() {
    let app = browser_app(&[("AUTH_REFRESH_REUSE_GRACE_SECONDS", "0")]).await;
    let user = email();
    app.register(&user).await;
    let (first, cookie) = cookie_login(&app, &user).await;
    let res = cookie_post(&app, "/v1/token/refresh", Some(APP), Some(&cookie), None).await;
    assert_eq!(res.status(), StatusCode::OK);
    let (rotated, _) = set_cookie(&res);
    assert_ne!(rotated, cookie, "the cookie holds the new refresh token");
    let second: Value = res.json().await.expect("json");
    assert!(second.get("refresh_token").is_none());
    assert_eq!(second["session_id"], first["session_id"]);
    // The spent value again (a stolen cookie): reuse, the session ends.
    assert_problem(
        cookie_post(&app, "/v1/token/refresh", Some(APP), Some(&cookie), None).await,
        StatusCode::UNAUTHORIZED,
        "refresh_token_reused",
    )
    .await;
    assert_problem(
        cookie_post(&app, "/v1/token/refresh", Some(APP), Some(&rotated), None).await,
        StatusCode::UNAUTHORIZED,
        "invalid_refresh_token",
    )
    .await;
    // No cookie at all.
    assert_problem(
        cookie_post(&app, "/v1/token/refresh", Some(APP), None, None).await,
        StatusCode::UNAUTHORIZED,
        "invalid_refresh_token",
    )
    .await;
}

#[tokio::test]
async fn cookie_mode_refuses_foreign_or_missing_origins_and_a_bare_cookie_is_never_enough() {
    let app = browser_app(&[]).await;
    let user = email();
    app.register(&user).await;
    let (_, cookie) = cookie_login(&app, &user).await;
    for origin in [
        None,
        Some("http://evil.test"),
        Some("http://app.test:8001"),
        Some("null"),
    ] {
        assert_problem(
            cookie_post(&app, "/v1/token/refresh", origin, Some(&cookie), None).await,
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
        )
        .await;
    }
    assert_problem(
        cookie_post(
            &app,
            "/v1/login",
            Some("http://evil.test"),
            None,
            Some(json!({"email": user, "password": PASSWORD})),
        )
        .await,
        StatusCode::FORBIDDEN,
        "origin_not_allowed",
    )
    .await;
    // A form post or a request without the header (what a forged
    // cross-site request can send): the cookie is not read at all.
    let res = app
        .client
        .post(app.url("/v1/token/refresh"))
        .header("origin", APP)
        .header("cookie", format!("refresh_token={cookie}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("refresh_token=x")
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let bogus = app
        .client
        .post(app.url("/v1/token/refresh"))
        .header("x-token-transport", "header")
        .header("origin", APP)
        .send()
        .await
        .expect("request");
    assert_problem(bogus, StatusCode::BAD_REQUEST, "bad_request").await;
    // None of that spent the cookie's token.
    let res = cookie_post(&app, "/v1/token/refresh", Some(APP), Some(&cookie), None).await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_services_own_origin_may_use_cookie_mode_without_cors() {
    let app = spawn_app_with(&[("AUTH_PUBLIC_URL", "https://auth.example.com")]).await;
    let user = email();
    app.register(&user).await;
    let res = cookie_post(
        &app,
        "/v1/login",
        Some("https://auth.example.com"),
        None,
        Some(json!({"email": user, "password": PASSWORD})),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let (_, attrs) = set_cookie(&res);
    assert!(
        attrs.iter().any(|a| a == "Secure"),
        "https: Secure, {attrs:?}"
    );
}

#[tokio::test]
async fn logout_deletes_the_cookie() {
    let app = browser_app(&[]).await;
    let user = email();
    app.register(&user).await;
    let (tokens, _) = cookie_login(&app, &user).await;
    let access = tokens["access_token"].as_str().expect("access");
    for path in ["/v1/logout", "/v1/logout/all"] {
        let res = app.post_bearer(path, access, None).await;
        if path == "/v1/logout/all" {
            // The first call ended the session; the token is refused now.
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
            continue;
        }
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        let deleted = refresh_cookie_paths(&res);
        assert_eq!(
            deleted,
            [
                ("".to_owned(), "/v1/logout".to_owned()),
                ("".to_owned(), "/v1/token".to_owned())
            ]
        );
        let (_, attrs) = set_cookie(&res);
        assert!(attrs.iter().any(|a| a == "Max-Age=0"), "{attrs:?}");
    }
}

/// Every `refresh_token` Set-Cookie: (value, path), sorted by path.
fn refresh_cookie_paths(res: &Response) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter(|v| v.starts_with("refresh_token="))
        .map(|v| {
            let mut parts = v.split(';').map(str::trim);
            let value = parts
                .next()
                .and_then(|p| p.strip_prefix("refresh_token="))
                .unwrap_or("")
                .to_owned();
            let path = parts
                .find_map(|p| p.strip_prefix("Path="))
                .unwrap_or("")
                .to_owned();
            (value, path)
        })
        .collect();
    out.sort_by(|a, b| a.1.cmp(&b.1));
    out
}

/// The review's finding: with an expired access token the web page said
/// "signed out" while the session and its 7-day cookie lived on. In
/// cookie mode the cookie alone ends its session, and the cookies go.
#[tokio::test]
async fn cookie_mode_logout_ends_the_cookies_session_without_a_valid_bearer() {
    let app = browser_app(&[]).await;
    let user = email();
    app.register(&user).await;
    let res = cookie_post(
        &app,
        "/v1/login",
        Some(APP),
        None,
        Some(json!({"email": user, "password": PASSWORD})),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    // The cookie reaches refresh and logout, and nothing else.
    let set = refresh_cookie_paths(&res);
    assert_eq!(set.len(), 2, "{set:?}");
    assert_eq!(set[0].0, set[1].0);
    assert_eq!(
        [set[0].1.as_str(), set[1].1.as_str()],
        ["/v1/logout", "/v1/token"]
    );
    let cookie = set[0].0.clone();
    let body: Value = res.json().await.expect("json");
    let access = body["access_token"].as_str().expect("access").to_owned();

    // Without the Origin check passing, nothing happens (CSRF).
    let res = cookie_post(
        &app,
        "/v1/logout",
        Some("https://evil.test"),
        Some(&cookie),
        None,
    )
    .await;
    assert_problem(res, StatusCode::FORBIDDEN, "origin_not_allowed").await;
    assert_eq!(app.me_status(&access).await, StatusCode::OK);
    // Body mode without a bearer is still 401.
    let res = app.post_json("/v1/logout", &json!({})).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // An expired (here: garbage) access token and the cookie: 204, the
    // session is over, and the cookies are deleted.
    let res = app
        .client
        .post(app.url("/v1/logout"))
        .header("x-token-transport", "cookie")
        .header("origin", APP)
        .header("cookie", format!("refresh_token={cookie}"))
        .bearer_auth("eyJhbGciOiJFZERTQSJ9.expired.token")
        .send()
        .await
        .expect("logout");
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let deleted = refresh_cookie_paths(&res);
    assert!(
        deleted.iter().all(|(v, _)| v.is_empty()) && deleted.len() == 2,
        "{deleted:?}"
    );
    assert_eq!(app.me_status(&access).await, StatusCode::UNAUTHORIZED);
    let res = cookie_post(&app, "/v1/token/refresh", Some(APP), Some(&cookie), None).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // Logging out again with the dead cookie: still 204, cookies deleted.
    let res = cookie_post(&app, "/v1/logout", Some(APP), Some(&cookie), None).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(refresh_cookie_paths(&res).len(), 2);
}

#[tokio::test]
async fn cors_preflight_answers_configured_origins_only() {
    let app = browser_app(&[]).await;
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/v1/token/refresh"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type,x-token-transport",
            )
            .send()
    };
    let ok = preflight(APP).await.expect("preflight");
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.headers()["access-control-allow-origin"], APP);
    assert_eq!(ok.headers()["access-control-allow-credentials"], "true");
    let allowed = ok.headers()["access-control-allow-headers"]
        .to_str()
        .expect("ascii")
        .to_ascii_lowercase();
    assert!(allowed.contains("x-token-transport"), "{allowed}");
    let foreign = preflight("http://evil.test").await.expect("preflight");
    assert!(foreign.status().is_client_error(), "{}", foreign.status());
    assert!(foreign
        .headers()
        .get("access-control-allow-origin")
        .is_none());
    // An ordinary request from a foreign origin is served, without CORS
    // headers: the browser keeps the answer from that page.
    let res = app
        .client
        .get(app.url("/health/live"))
        .header("origin", "http://evil.test")
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().get("access-control-allow-origin").is_none());

    // Without configuration: no origin is allowed, credentials never.
    let plain = spawn_app().await;
    let res = plain
        .client
        .request(reqwest::Method::OPTIONS, plain.url("/v1/login"))
        .header("origin", APP)
        .header("access-control-request-method", "POST")
        .send()
        .await
        .expect("preflight");
    assert!(res.headers().get("access-control-allow-origin").is_none());
    assert!(res
        .headers()
        .get("access-control-allow-credentials")
        .is_none());
}

#[tokio::test]
async fn mail_links_lead_to_the_web_app() {
    let app = spawn_app_with(&[("AUTH_APP_URL", "http://app.test:8000/")]).await;
    let user = email();
    app.register(&user).await;
    let mail = app.mail(&user, "email_verification").await;
    let link = mail["link"].as_str().expect("link");
    assert!(
        link.starts_with("http://app.test:8000/account/verify-email?token="),
        "{link}"
    );
    TestApp::token_in_link(&mail);
}

/// Found by schemathesis: logout with a malformed `X-Token-Transport` and no
/// bearer said 400 about the header; an unauthenticated caller hears 401
/// first, as on every bearer route, and only a signed-in one hears about
/// the header.
#[tokio::test]
async fn logout_answers_401_before_judging_the_transport_header() {
    let app = spawn_app().await;
    let logout = |bearer: Option<String>| {
        let mut req = app
            .client
            .post(app.url("/v1/logout"))
            .header("x-token-transport", "header");
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        req.send()
    };
    let res = logout(None).await.expect("request");
    assert_problem(res, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let token = app.register(&email()).await.tokens.access_token;
    let res = logout(Some(token.clone())).await.expect("request");
    assert_problem(res, StatusCode::BAD_REQUEST, "bad_request").await;
    // Refused, not performed: the session still works.
    assert_eq!(
        app.get_bearer("/v1/me", &token).await.status(),
        StatusCode::OK
    );
}
