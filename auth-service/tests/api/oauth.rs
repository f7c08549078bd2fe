//! Sign-in with other providers, against a real OpenID Connect provider
//! (oidc-provider) and a GitHub-shaped OAuth 2.0 provider: sign-up and
//! sign-in, the linking rules both ways, single use of state and code, the
//! browser binding, open redirects, unlinking, a provider that is down or
//! slow, and users with TOTP.

use std::time::Duration;

use auth_service::mfa::code_at;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, audit, email, spawn_app_with, Statuses, TestApp, PASSWORD};
use crate::providers::{browse, browser, fragment, oidc_env, oidc_issuer, Hub, HubUser, APP_URL};

/// An app with the OIDC provider as `idp` (and `extra` variables); `None`
/// when the provider cannot run here (see `oidc_issuer`).
async fn app_with_idp(extra: &[(&str, &str)]) -> Option<TestApp> {
    let issuer = oidc_issuer()?;
    let mut env: Vec<(String, String)> = oidc_env("idp", &issuer);
    env.push(("AUTH_OAUTH_PROVIDERS".into(), "idp".into()));
    env.push(("AUTH_APP_URL".into(), APP_URL.into()));
    env.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Some(spawn_app_with(&pairs).await)
}

/// Signs in at `provider` as `account` (the OIDC provider's login_hint) in a
/// fresh browser; answers where the browser landed in the app.
async fn provider_sign_in(app: &TestApp, provider: &str, account: &str) -> String {
    let start = format!(
        "{}?login_hint={}",
        app.url(&format!("/v1/oauth/{provider}/authorize")),
        account.replace(':', "%3A").replace('@', "%40")
    );
    browse(&browser(), &start).await.expect("lands in the app")
}

async fn exchange(app: &TestApp, code: &str, totp: Option<&str>) -> reqwest::Response {
    let mut body = json!({"code": code});
    if let Some(t) = totp {
        body["totp_code"] = json!(t);
    }
    app.post_json("/v1/oauth/exchange", &body).await
}

/// Provider sign-in through to the exchange's 200 answer.
async fn sign_in_with_idp(app: &TestApp, account: &str) -> Value {
    let landed = provider_sign_in(app, "idp", account).await;
    let code = fragment(&landed, "code").unwrap_or_else(|| panic!("no code: {landed}"));
    let res = exchange(app, &code, None).await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.expect("json")
}

#[tokio::test]
async fn a_provider_sign_in_makes_the_account_then_signs_in_to_it() {
    let Some(app) = app_with_idp(&[]).await else {
        return;
    };
    let providers = app.get_json("/v1/oauth/providers").await;
    assert_eq!(
        providers,
        json!([{"name": "idp", "display_name": "Test OIDC", "protocol": "oidc"}])
    );

    // The redirect carries what the contract says.
    let start = app.url("/v1/oauth/idp/authorize");
    let res = app.client.get(&start).send().await.expect("authorize");
    assert_eq!(res.status(), StatusCode::FOUND);
    let cookie = res
        .headers()
        .get("set-cookie")
        .and_then(|c| c.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        cookie.starts_with("oauth_binding=")
            && cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Lax")
            && cookie.contains("Path=/v1/oauth"),
        "{cookie}"
    );
    let to = reqwest::Url::parse(res.headers()["location"].to_str().expect("ascii")).expect("url");
    let q: std::collections::HashMap<_, _> = to.query_pairs().into_owned().collect();
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], crate::providers::CLIENT_ID);
    assert_eq!(q["redirect_uri"], app.url("/v1/oauth/idp/callback"));
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["scope"], "openid email profile");
    for k in ["state", "nonce", "code_challenge"] {
        assert!(q[k].len() >= 43, "{k}: {}", q[k]);
    }

    let address = email();
    let first = sign_in_with_idp(&app, &address).await;
    assert_eq!(first["created"], true);
    assert_eq!(first["user"]["email"], address.as_str());
    assert_eq!(first["user"]["email_verified"], true);
    let user_id = first["user"]["id"].as_str().expect("id").to_owned();
    let token = first["tokens"]["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    assert_eq!(app.me_status(&token).await, StatusCode::OK);

    let again = sign_in_with_idp(&app, &address).await;
    assert_eq!(again["created"], false);
    assert_eq!(again["user"]["id"], user_id.as_str());

    let res = app.get_bearer("/v1/me/identities", &token).await;
    let list: Value = res.json().await.expect("json");
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list[0]["provider"], "idp");
    assert_eq!(list[0]["subject"], address.as_str());
    assert_eq!(list[0]["email"], address.as_str());
    // The provider's tokens never come back from any API.
    assert!(list[0].get("access_token").is_none() && list[0].get("token_ciphertext").is_none());

    // The account has no password: a password login is an ordinary
    // refusal, never a 500.
    let res = app.try_login(&address, PASSWORD, None, None).await;
    assert_problem(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    let logins = audit(&app, &format!("kind=oauth_login&user_id={user_id}")).await;
    assert_eq!(logins.len(), 2);
    assert_eq!(logins[0]["detail"], "idp");
    // The mirror hears of the new user like any other.
    let res = app
        .client
        .get(app.url(&format!("/internal/v1/users/{user_id}")))
        .bearer_auth(&app.api_key)
        .send()
        .await
        .expect("internal");
    let record: Value = res.json().await.expect("record");
    assert_eq!(record["email_verified"], true);
}

#[tokio::test]
async fn state_and_code_work_once_and_only_in_the_browser_that_started() {
    let Some(app) = app_with_idp(&[]).await else {
        return;
    };
    let address = email();
    // Walk by hand up to the callback, to replay it.
    let start = format!(
        "{}?login_hint={}",
        app.url("/v1/oauth/idp/authorize"),
        address.replace('@', "%40")
    );
    let alice = browser();
    let mut url = reqwest::Url::parse(&start).expect("url");
    let callback = loop {
        let res = alice.get(url.clone()).send().await.expect("step");
        assert!(res.status().is_redirection(), "{}", res.status());
        let next = url
            .join(res.headers()["location"].to_str().expect("ascii"))
            .expect("join");
        if next.path().ends_with("/callback") {
            break next;
        }
        url = next;
    };
    // Another browser carrying Alice's callback (a leaked URL, a login
    // CSRF): refused, and the state is spent.
    let mallory = browser();
    let res = mallory.get(callback.clone()).send().await.expect("forged");
    assert_problem(res, StatusCode::BAD_REQUEST, "invalid_state").await;
    let res = alice.get(callback.clone()).send().await.expect("after");
    assert_problem(res, StatusCode::BAD_REQUEST, "invalid_state").await;

    // A fresh sign-in; its callback replayed is refused.
    let alice = browser();
    let mut url = reqwest::Url::parse(&start).expect("url");
    let (callback, landed) = loop {
        let res = alice.get(url.clone()).send().await.expect("step");
        let next = url
            .join(res.headers()["location"].to_str().expect("ascii"))
            .expect("join");
        if next.as_str().starts_with(APP_URL) {
            break (url, next.to_string());
        }
        url = next;
    };
    let res = alice.get(callback).send().await.expect("replay");
    assert_problem(res, StatusCode::BAD_REQUEST, "invalid_state").await;
    // A made-up state and a missing one.
    for q in ["?state=forged&code=x", "?code=x", ""] {
        let res = alice
            .get(app.url(&format!("/v1/oauth/idp/callback{q}")))
            .send()
            .await
            .expect("forged");
        assert_problem(res, StatusCode::BAD_REQUEST, "invalid_state").await;
    }

    // The code: a burst of exchanges, exactly one session.
    let code = fragment(&landed, "code").expect("code");
    let burst = (0..8).map(|_| exchange(&app, &code, None));
    let statuses = Statuses::of(burst).await;
    assert_eq!(
        (
            statuses.count(StatusCode::OK),
            statuses.count(StatusCode::BAD_REQUEST)
        ),
        (1, 7),
        "{statuses:?}"
    );
    let res = exchange(&app, &code, None).await;
    assert_problem(res, StatusCode::BAD_REQUEST, "invalid_code").await;
    for bad in [json!({"code": "made-up"}), json!({"code": ""})] {
        let res = app.post_json("/v1/oauth/exchange", &bad).await;
        assert_problem(res, StatusCode::BAD_REQUEST, "invalid_code").await;
    }
    let res = app
        .post_json("/v1/oauth/exchange", &json!({"nope": 1}))
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn return_to_stays_in_the_app_and_unknown_providers_are_404() {
    let Some(issuer) = oidc_issuer() else { return };
    // The same provider configured under a name for its host that its
    // discovery document does not use: its issuer does not match, so it is
    // not trusted (a document served for another issuer must not pass).
    let twin_issuer = issuer.replace("127.0.0.1", "localhost");
    let twin: Vec<(String, String)> = oidc_env("twin", &twin_issuer);
    let mut extra: Vec<(&str, &str)> = twin.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    extra.push(("AUTH_OAUTH_PROVIDERS", "idp,twin"));
    let Some(app) = app_with_idp(&extra).await else {
        return;
    };
    let landed = browse(&browser(), &app.url("/v1/oauth/twin/authorize"))
        .await
        .expect("lands");
    assert_eq!(landed, "http://app.test/#error=provider_unavailable");
    assert!(
        crate::helpers::captured_logs().contains(&format!("not the configured {twin_issuer}")),
        "refused for the issuer, not for being unreachable"
    );
    for evil in [
        "https://evil.test/",
        "http://app.test.evil.test/",
        "http://app.test@evil.test/",
        "//evil.test/x",
        "javascript:alert(1)",
        "http://app.test:8080/",
        "https://app.test/",
        "/relative",
    ] {
        let url = format!(
            "{}?return_to={}",
            app.url("/v1/oauth/idp/authorize"),
            urlencoding(evil)
        );
        let res = app.client.get(url).send().await.expect("authorize");
        assert_problem(res, StatusCode::BAD_REQUEST, "invalid_return_to").await;
    }
    let landed = browse(
        &browser(),
        &format!(
            "{}?return_to={}",
            app.url("/v1/oauth/idp/authorize"),
            urlencoding("http://app.test/settings?tab=1#old")
        ),
    )
    .await
    .expect("lands");
    assert!(
        landed.starts_with("http://app.test/settings?tab=1#code="),
        "{landed}"
    );
    let res = app
        .client
        .get(app.url("/v1/oauth/nope/authorize"))
        .send()
        .await
        .expect("unknown");
    assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
    let res = app
        .client
        .get(app.url("/v1/oauth/nope/callback?state=x"))
        .send()
        .await
        .expect("unknown");
    assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
}

fn urlencoding(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn an_existing_account_is_linked_only_when_both_sides_verified_the_address() {
    let Some(app) = app_with_idp(&[]).await else {
        return;
    };
    // Registered with a password, not yet verified: a provider asserting
    // the same address may not take it over.
    let address = email();
    let reg = app.register(&address).await;
    let landed = provider_sign_in(&app, "idp", &address).await;
    let res = exchange(&app, &fragment(&landed, "code").expect("code"), None).await;
    assert_problem(res, StatusCode::CONFLICT, "account_exists").await;

    // Verified: the next provider sign-in links to the same account.
    let mail = app.mail(&address, "email_verification").await;
    let res = app
        .post_json(
            "/v1/email/verify",
            &json!({"token": TestApp::token_in_link(&mail)}),
        )
        .await;
    assert!(res.status().is_success(), "{}", res.status());
    let done = sign_in_with_idp(&app, &address).await;
    assert_eq!(done["created"], false);
    assert_eq!(done["user"]["id"], reg.user.id.to_string());
    let notice = app.mail(&address, "identity_linked").await;
    assert!(notice["token"].is_null(), "{notice}");
    assert_eq!(
        audit(
            &app,
            &format!("kind=identity_linked&user_id={}", reg.user.id)
        )
        .await
        .len(),
        1
    );
    // The password still works too.
    app.login(&address).await;

    // A provider that does not vouch for the address: refused even though
    // the account's address is verified.
    let landed = provider_sign_in(&app, "idp", &format!("unverified:{address}")).await;
    let res = exchange(&app, &fragment(&landed, "code").expect("code"), None).await;
    assert_problem(res, StatusCode::CONFLICT, "account_exists").await;

    // A new account from an unverified address: made, unverified, and
    // asked to verify by mail.
    let fresh = email();
    let done = sign_in_with_idp(&app, &format!("unverified:{fresh}")).await;
    assert_eq!(done["created"], true);
    assert_eq!(done["user"]["email_verified"], false);
    app.mail(&fresh, "email_verification").await;
}

#[tokio::test]
async fn a_signed_in_user_links_with_the_password_and_unlinks_down_to_the_last_method() {
    let Some(issuer) = oidc_issuer() else { return };
    let hub = Hub::start(crate::providers::CLIENT_ID, crate::providers::CLIENT_SECRET).await;
    let mut env: Vec<(String, String)> = oidc_env("idp", &issuer);
    env.extend(hub.env("hub", true));
    env.push(("AUTH_OAUTH_PROVIDERS".into(), "idp,hub".into()));
    env.push(("AUTH_APP_URL".into(), APP_URL.into()));
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let app = spawn_app_with(&pairs).await;

    let address = email();
    let reg = app.register(&address).await;
    let token = reg.tokens.access_token.clone();
    let link = |body: Value| {
        let app = &app;
        let token = token.clone();
        async move {
            app.post_bearer("/v1/oauth/idp/link", &token, Some(&body))
                .await
        }
    };
    let res = link(json!({})).await;
    assert_problem(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    let res = link(json!({"current_password": "wrong password entirely"})).await;
    assert_problem(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    let res = app
        .post_bearer(
            "/v1/oauth/nope/link",
            &token,
            Some(&json!({"current_password": PASSWORD})),
        )
        .await;
    assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
    let res = app
        .client
        .post(app.url("/v1/oauth/idp/link"))
        .send()
        .await
        .expect("anonymous");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // The provider account has another address: linking does not care.
    let other_address = email();
    let res =
        link(json!({"current_password": PASSWORD, "return_to": "http://app.test/settings"})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let url = res.json::<Value>().await.expect("json")["authorize_url"]
        .as_str()
        .expect("url")
        .to_owned();
    assert!(
        url.starts_with(&app.url("/v1/oauth/idp/authorize?link=")),
        "{url}"
    );
    let landed = browse(
        &browser(),
        &format!("{url}&login_hint={}", other_address.replace('@', "%40")),
    )
    .await
    .expect("lands");
    assert_eq!(landed, "http://app.test/settings#linked=idp");
    // The ticket works once.
    let res = browser().get(&url).send().await.expect("replay");
    assert_problem(res, StatusCode::BAD_REQUEST, "invalid_state").await;
    // Signing in with that provider account is now this user.
    let done = sign_in_with_idp(&app, &other_address).await;
    assert_eq!(done["user"]["id"], reg.user.id.to_string());
    app.mail(&address, "identity_linked").await;

    // Someone else cannot link the same provider account.
    let bob = app.register(&email()).await;
    let url = link_url(
        &app,
        &bob.tokens.access_token,
        json!({"current_password": PASSWORD}),
    )
    .await;
    let landed = browse(
        &browser(),
        &format!("{url}&login_hint={}", other_address.replace('@', "%40")),
    )
    .await
    .expect("lands");
    assert_eq!(landed, "http://app.test/#error=identity_taken");

    // Nor remove Alice's identity (404, as for an unknown one).
    let list: Value = app
        .get_bearer("/v1/me/identities", &token)
        .await
        .json()
        .await
        .expect("json");
    let alice_identity = list[0]["id"].as_str().expect("id").to_owned();
    let res = app
        .delete_bearer(
            &format!("/v1/me/identities/{alice_identity}"),
            &bob.tokens.access_token,
        )
        .await;
    assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
    let res = app
        .delete_bearer("/v1/me/identities/not-a-uuid", &token)
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);

    // A provider-made account (no password) with two identities: a burst
    // removing both leaves exactly one, and the last cannot go.
    hub.sign_in_as(HubUser {
        id: 4242,
        login: "carol".into(),
        public_email: None,
        emails: vec![
            ("carol-other@example.net".into(), false, false),
            (email(), true, true),
        ],
    });
    let carol_landed = browse(&browser(), &app.url("/v1/oauth/hub/authorize"))
        .await
        .expect("lands");
    let res = exchange(&app, &fragment(&carol_landed, "code").expect("code"), None).await;
    let carol: Value = res.json().await.expect("json");
    assert_eq!(carol["created"], true);
    assert_eq!(carol["user"]["email_verified"], true);
    let carol_token = carol["tokens"]["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    // No password to ask: a fresh session may link.
    let res = app
        .post_bearer("/v1/oauth/idp/link", &carol_token, None)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let url = res.json::<Value>().await.expect("json")["authorize_url"]
        .as_str()
        .expect("url")
        .to_owned();
    let landed = browse(
        &browser(),
        &format!("{url}&login_hint=carol-idp%40example.net"),
    )
    .await
    .expect("lands");
    assert_eq!(landed, "http://app.test/#linked=idp");
    let list: Value = app
        .get_bearer("/v1/me/identities", &carol_token)
        .await
        .json()
        .await
        .expect("json");
    let ids: Vec<String> = list
        .as_array()
        .expect("list")
        .iter()
        .map(|i| i["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(ids.len(), 2);
    assert_eq!(list[0]["subject"], "4242");
    let burst = ids.iter().cycle().take(10).map(|id| {
        let (app, path, token) = (&app, format!("/v1/me/identities/{id}"), carol_token.clone());
        async move { app.delete_bearer(&path, &token).await }
    });
    let statuses = Statuses::of(burst).await;
    assert_eq!(statuses.count(StatusCode::NO_CONTENT), 1, "{statuses:?}");
    let list: Value = app
        .get_bearer("/v1/me/identities", &carol_token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    let last = list[0]["id"].as_str().expect("id");
    let res = app
        .delete_bearer(&format!("/v1/me/identities/{last}"), &carol_token)
        .await;
    assert_problem(res, StatusCode::CONFLICT, "last_sign_in_method").await;

    // With a password, Alice may remove hers; its tokens go with it.
    let res = app
        .delete_bearer(&format!("/v1/me/identities/{alice_identity}"), &token)
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        audit(
            &app,
            &format!("kind=identity_unlinked&user_id={}", reg.user.id)
        )
        .await
        .len(),
        1
    );
}

#[tokio::test]
async fn github_shaped_providers_need_a_verified_address_from_the_emails_endpoint() {
    let hub = Hub::start(crate::providers::CLIENT_ID, crate::providers::CLIENT_SECRET).await;
    let mut env = hub.env("hub", true);
    let without = Hub::start(crate::providers::CLIENT_ID, crate::providers::CLIENT_SECRET).await;
    env.extend(without.env("bare", false));
    env.push(("AUTH_OAUTH_PROVIDERS".into(), "hub,bare".into()));
    env.push(("AUTH_APP_URL".into(), APP_URL.into()));
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let app = spawn_app_with(&pairs).await;

    // A private address found verified at /user/emails.
    let address = email();
    hub.sign_in_as(HubUser {
        id: 7,
        login: "dora".into(),
        public_email: None,
        emails: vec![(address.clone(), true, true)],
    });
    let landed = browse(&browser(), &app.url("/v1/oauth/hub/authorize"))
        .await
        .expect("lands");
    let done: Value = exchange(&app, &fragment(&landed, "code").expect("code"), None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(done["created"], true);
    assert_eq!(done["user"]["email"], address.as_str());
    assert_eq!(done["user"]["email_verified"], true);
    // The provider's access token is stored sealed, never in clear.
    let issued = hub.issued_tokens();
    assert_eq!(issued.len(), 1);
    let pool = app.db().await;
    let mut pooled = pool.get().await.expect("conn");
    let conn = &mut pooled.conn();
    let rows: Vec<(Option<String>,)> = {
        use auth_service::db::schema::oauth_tokens as t;
        use diesel::prelude::*;
        use diesel_async::RunQueryDsl;
        service_kit::run!(conn, |c| t::table
            .select((t::token_ciphertext,))
            .load(c)
            .await)
        .expect("rows")
    };
    assert_eq!(rows.len(), 1);
    let sealed = rows[0].0.as_deref().expect("sealed tokens");
    assert!(
        !sealed.contains(&issued[0]),
        "the access token is stored in clear"
    );
    // Deleting the user removes the identity and its tokens.
    let admin = app.service_token(&["admin"]).await;
    let user_id = done["user"]["id"].as_str().expect("id");
    let res = app
        .delete_bearer(&format!("/admin/v1/users/{user_id}"), &admin)
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let left: i64 = {
        use auth_service::db::schema::oauth_tokens as t;
        use diesel::prelude::*;
        use diesel_async::RunQueryDsl;
        service_kit::run!(conn, |c| t::table.count().get_result(c).await).expect("count")
    };
    assert_eq!(left, 0);

    // Only an unverified address: an account, unverified.
    let unverified = email();
    hub.sign_in_as(HubUser {
        id: 8,
        login: "eve".into(),
        public_email: Some(unverified.clone()),
        emails: vec![(unverified.clone(), true, false)],
    });
    let landed = browse(&browser(), &app.url("/v1/oauth/hub/authorize"))
        .await
        .expect("lands");
    let done: Value = exchange(&app, &fragment(&landed, "code").expect("code"), None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(done["user"]["email_verified"], false);

    // Without an emails endpoint and no public address: no account.
    without.sign_in_as(HubUser {
        id: 9,
        login: "fay".into(),
        public_email: None,
        emails: vec![],
    });
    let landed = browse(&browser(), &app.url("/v1/oauth/bare/authorize"))
        .await
        .expect("lands");
    assert_eq!(landed, "http://app.test/#error=email_missing");
}

#[tokio::test]
async fn a_provider_that_is_down_slow_or_refusing_is_an_error_in_the_fragment() {
    let hub = Hub::start(crate::providers::CLIENT_ID, crate::providers::CLIENT_SECRET).await;
    hub.sign_in_as(HubUser {
        id: 1,
        login: "gus".into(),
        public_email: Some(email()),
        emails: vec![],
    });
    // A closed port for the OIDC issuer: discovery fails at the start.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let mut env = hub.env("hub", false);
    env.extend(oidc_env("dead", &dead));
    env.push(("AUTH_OAUTH_PROVIDERS".into(), "hub,dead".into()));
    env.push(("AUTH_APP_URL".into(), APP_URL.into()));
    env.push(("AUTH_OAUTH_TIMEOUT_SECONDS".into(), "1".into()));
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let app = spawn_app_with(&pairs).await;

    let landed = browse(&browser(), &app.url("/v1/oauth/dead/authorize"))
        .await
        .expect("lands");
    assert_eq!(landed, "http://app.test/#error=provider_unavailable");

    // Slow past the deadline at the token endpoint.
    hub.slow_down(Duration::from_secs(3));
    let started = std::time::Instant::now();
    let landed = browse(&browser(), &app.url("/v1/oauth/hub/authorize"))
        .await
        .expect("lands");
    assert_eq!(landed, "http://app.test/#error=provider_unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the deadline held: {:?}",
        started.elapsed()
    );
    hub.slow_down(Duration::ZERO);

    // The provider refuses (the user said no): the state is checked first,
    // then the error passed on.
    let b = browser();
    let state = started_state(&app, &b, "hub").await;
    let res = b
        .get(app.url(&format!(
            "/v1/oauth/hub/callback?error=access_denied&state={state}"
        )))
        .send()
        .await
        .expect("callback");
    assert_eq!(res.status(), StatusCode::FOUND);
    assert_eq!(
        res.headers()["location"],
        "http://app.test/#error=access_denied"
    );
    // A forged code with a good state: the provider refuses it.
    let state = started_state(&app, &b, "hub").await;
    let res = b
        .get(app.url(&format!("/v1/oauth/hub/callback?code=forged&state={state}")))
        .send()
        .await
        .expect("callback");
    assert_eq!(
        res.headers()["location"],
        "http://app.test/#error=provider_error"
    );
}

#[tokio::test]
async fn a_user_with_totp_still_needs_the_code_and_wrong_codes_count() {
    let Some(app) = app_with_idp(&[("AUTH_LOCKOUT_THRESHOLD", "3")]).await else {
        return;
    };
    let (address, reg, secret, _) = crate::mfa::user_with_totp(&app).await;
    // Link the provider account (the password is asked again).
    let url = link_url(
        &app,
        &reg.tokens.access_token,
        json!({"current_password": PASSWORD}),
    )
    .await;
    let hint = format!("totp-{address}");
    let landed = browse(
        &browser(),
        &format!("{url}&login_hint={}", hint.replace('@', "%40")),
    )
    .await
    .expect("lands");
    assert_eq!(landed, "http://app.test/#linked=idp");

    let landed = provider_sign_in(&app, "idp", &hint).await;
    let code = fragment(&landed, "code").expect("code");
    let res = exchange(&app, &code, None).await;
    assert_problem(res, StatusCode::UNAUTHORIZED, "mfa_required").await;
    // Wrong codes count toward the lockout (threshold 3 here) ...
    for _ in 0..2 {
        let res = exchange(&app, &code, Some("000000")).await;
        assert_problem(res, StatusCode::UNAUTHORIZED, "mfa_required").await;
    }
    // ... and the right one, in time, signs in once.
    let res = exchange(
        &app,
        &code,
        Some(&code_at(&secret, now() + 30).expect("code")),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = exchange(&app, &code, None).await;
    assert_problem(res, StatusCode::BAD_REQUEST, "invalid_code").await;

    // A burst of wrong codes: the code is taken by one request at a time
    // and no more codes are checked than the threshold allows.
    let landed = provider_sign_in(&app, "idp", &hint).await;
    let code = fragment(&landed, "code").expect("code");
    let burst = (0..10).map(|_| exchange(&app, &code, Some("000000")));
    let statuses = Statuses::of(burst).await;
    let checked = statuses.count(StatusCode::UNAUTHORIZED);
    assert!((1..=3).contains(&checked), "{statuses:?}");
    // Until the lock: then even the right code is refused, with 429.
    let mut answer = StatusCode::UNAUTHORIZED;
    for _ in checked..3 {
        answer = exchange(&app, &code, Some("000000")).await.status();
    }
    assert_eq!(answer, StatusCode::UNAUTHORIZED);
    let res = exchange(
        &app,
        &code,
        Some(&code_at(&secret, now() + 30).expect("code")),
    )
    .await;
    assert_problem(res, StatusCode::TOO_MANY_REQUESTS, "too_many_attempts").await;
    assert!(address.contains('@'));
}

/// Starts linking the idp provider from the session `token`; answers the
/// URL the browser goes to.
async fn link_url(app: &TestApp, token: &str, body: Value) -> String {
    let res = app
        .post_bearer("/v1/oauth/idp/link", token, Some(&body))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json::<Value>().await.expect("json")["authorize_url"]
        .as_str()
        .expect("url")
        .to_owned()
}

/// Starts a sign-in at `provider` in browser `b`; answers the state the
/// provider was sent.
async fn started_state(app: &TestApp, b: &reqwest::Client, provider: &str) -> String {
    let res = b
        .get(app.url(&format!("/v1/oauth/{provider}/authorize")))
        .send()
        .await
        .expect("start");
    let to = reqwest::Url::parse(res.headers()["location"].to_str().expect("ascii")).expect("url");
    to.query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .expect("state")
}

fn now() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp()).expect("after 1970")
}

#[tokio::test]
async fn provider_accounts_follow_the_allowed_email_domains() {
    let Some(app) = app_with_idp(&[("AUTH_ALLOWED_EMAIL_DOMAINS", "allowed.test")]).await else {
        return;
    };
    let landed = provider_sign_in(&app, "idp", "someone@elsewhere.test").await;
    let res = exchange(&app, &fragment(&landed, "code").expect("code"), None).await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "email_not_allowed").await;
    let done = sign_in_with_idp(
        &app,
        &format!("ok-{}@allowed.test", uuid::Uuid::new_v4().simple()),
    )
    .await;
    assert_eq!(done["created"], true);
}

#[tokio::test]
async fn a_malformed_link_request_is_a_problem_not_a_guess() {
    let Some(app) = app_with_idp(&[]).await else {
        return;
    };
    let reg = app.register(&email()).await;
    for (body, status) in [
        (
            r#"{"current_password": 5}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (r#"{"nope": true}"#, StatusCode::UNPROCESSABLE_ENTITY),
        ("[]", StatusCode::UNPROCESSABLE_ENTITY),
        ("{", StatusCode::BAD_REQUEST),
    ] {
        let res = app
            .client
            .post(app.url("/v1/oauth/idp/link"))
            .bearer_auth(&reg.tokens.access_token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request");
        assert_eq!(res.status(), status, "{body}");
    }
}

/// An account made by a provider has no password to ask: it turns on TOTP
/// from its fresh session, and its next provider sign-in needs the code.
#[tokio::test]
async fn an_account_without_a_password_turns_on_totp_from_a_fresh_session() {
    let Some(app) = app_with_idp(&[]).await else {
        return;
    };
    let account = email();
    let done = sign_in_with_idp(&app, &account).await;
    let token = done["tokens"]["access_token"].as_str().expect("token");
    let setup: Value = app
        .post_bearer("/v1/mfa/totp/setup", token, None)
        .await
        .json()
        .await
        .expect("setup");
    let secret = setup["secret"].as_str().expect("secret");
    let code = code_at(secret, now()).expect("code");
    let res = app
        .post_bearer("/v1/mfa/totp/enable", token, Some(&json!({"code": code})))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let landed = provider_sign_in(&app, "idp", &account).await;
    let res = exchange(&app, &fragment(&landed, "code").expect("code"), None).await;
    assert_problem(res, StatusCode::UNAUTHORIZED, "mfa_required").await;
}

/// The state and the link ticket are single use under a burst: of eight
/// concurrent callbacks with one state, and eight concurrent starts with
/// one link ticket, exactly one goes on.
#[tokio::test]
async fn a_burst_spends_a_state_or_a_link_ticket_exactly_once() {
    let hub = Hub::start(crate::providers::CLIENT_ID, crate::providers::CLIENT_SECRET).await;
    hub.sign_in_as(HubUser {
        id: 5,
        login: "hal".into(),
        public_email: None,
        emails: vec![(email(), true, true)],
    });
    let mut env = hub.env("hub", true);
    env.push(("AUTH_OAUTH_PROVIDERS".into(), "hub".into()));
    env.push(("AUTH_APP_URL".into(), APP_URL.into()));
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let app = spawn_app_with(&pairs).await;

    // One browser up to its callback, which it then sends eight times.
    let b = browser();
    let res = b
        .get(app.url("/v1/oauth/hub/authorize"))
        .send()
        .await
        .expect("start");
    let to_hub = res.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let res = b.get(&to_hub).send().await.expect("provider");
    let callback = res.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let burst = (0..8).map(|_| async { b.get(&callback).send().await.expect("callback") });
    let statuses = Statuses::of(burst).await;
    assert_eq!(
        (
            statuses.count(StatusCode::FOUND),
            statuses.count(StatusCode::BAD_REQUEST)
        ),
        (1, 7),
        "{statuses:?}"
    );

    // One link ticket, started eight times at once.
    let reg = app.register(&email()).await;
    let res = app
        .post_bearer(
            "/v1/oauth/hub/link",
            &reg.tokens.access_token,
            Some(&json!({"current_password": PASSWORD})),
        )
        .await;
    let url = res.json::<Value>().await.expect("json")["authorize_url"]
        .as_str()
        .expect("url")
        .to_owned();
    let burst = (0..8).map(|_| {
        let url = url.clone();
        async move { browser().get(&url).send().await.expect("start") }
    });
    let statuses = Statuses::of(burst).await;
    assert_eq!(
        (
            statuses.count(StatusCode::FOUND),
            statuses.count(StatusCode::BAD_REQUEST)
        ),
        (1, 7),
        "{statuses:?}"
    );
}
