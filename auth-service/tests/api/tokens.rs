//! Access tokens are refused when expired, tampered, unsigned, for another
//! audience or issuer, or when their session is gone.

use chrono::Utc;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{assert_problem, email, spawn_app, spawn_app_with};

const SECRET: &str = "an-hs256-test-secret-of-enough-length-0123456789";

fn forge(claims: serde_json::Value, secret: &str, kid: Option<String>) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = kid;
    jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("encode")
}

#[tokio::test]
async fn missing_and_garbage_bearer_tokens_return_401() {
    let app = spawn_app().await;
    let res = app
        .client
        .get(app.url("/v1/me"))
        .send()
        .await
        .expect("request");
    assert_problem(res, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let res = app.get_bearer("/v1/me", "garbage").await;
    assert_problem(res, StatusCode::UNAUTHORIZED, "invalid_token").await;
}

#[tokio::test]
async fn tampered_token_is_refused() {
    let app = spawn_app().await;
    let tokens = app.register(&email()).await.tokens;
    let mut parts: Vec<String> = tokens.access_token.split('.').map(str::to_owned).collect();
    // Swap the payload for one naming another user, keep the signature.
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut payload: serde_json::Value =
        serde_json::from_slice(&engine.decode(&parts[1]).expect("b64")).expect("json");
    payload["sub"] = json!(uuid::Uuid::new_v4());
    parts[1] = engine.encode(serde_json::to_vec(&payload).expect("json"));
    let tampered = parts.join(".");
    assert_eq!(app.me_status(&tampered).await, StatusCode::UNAUTHORIZED);
    assert_eq!(app.introspect(&tampered).await, json!({"active": false}));
}

#[tokio::test]
async fn alg_none_token_is_refused() {
    let app = spawn_app().await;
    let tokens = app.register(&email()).await.tokens;
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let payload = tokens
        .access_token
        .split('.')
        .nth(1)
        .expect("payload")
        .to_owned();
    let header = engine.encode(br#"{"alg":"none","typ":"JWT"}"#);
    for token in [
        format!("{header}.{payload}."),
        format!("{header}.{payload}"),
    ] {
        assert_eq!(app.me_status(&token).await, StatusCode::UNAUTHORIZED);
        assert_eq!(app.introspect(&token).await, json!({"active": false}));
    }
}

#[tokio::test]
async fn expired_wrong_audience_wrong_issuer_and_wrong_key_are_refused() {
    let app = spawn_app_with(&[("AUTH_JWT_ALGORITHM", "HS256"), ("AUTH_JWT_SECRET", SECRET)]).await;
    let tokens = app.register(&email()).await.tokens;
    let kid = jsonwebtoken::decode_header(&tokens.access_token)
        .expect("header")
        .kid;
    let now = Utc::now().timestamp();
    let good = json!({
        "sub": tokens.user_id, "sid": tokens.session_id, "iat": now, "exp": now + 600,
        "iss": app.settings.issuer, "aud": "main-backend", "jti": uuid::Uuid::new_v4(),
    });
    // The forging works: the same claims and key are accepted...
    assert_eq!(
        app.me_status(&forge(good.clone(), SECRET, kid.clone()))
            .await,
        StatusCode::OK
    );
    // ...so each refusal below is due to the one thing changed.
    let mut cases = Vec::new();
    let mut expired = good.clone();
    expired["iat"] = json!(now - 7200);
    expired["exp"] = json!(now - 3600);
    cases.push(("expired", forge(expired, SECRET, kid.clone())));
    let mut audience = good.clone();
    audience["aud"] = json!("someone-else");
    cases.push(("audience", forge(audience, SECRET, kid.clone())));
    let mut issuer = good.clone();
    issuer["iss"] = json!("https://evil.example");
    cases.push(("issuer", forge(issuer, SECRET, kid.clone())));
    cases.push((
        "key",
        forge(
            good.clone(),
            "another-secret-of-sufficient-length-9876543210",
            kid.clone(),
        ),
    ));
    cases.push(("kid", forge(good.clone(), SECRET, Some("other-kid".into()))));
    for (what, token) in cases {
        assert_eq!(
            app.me_status(&token).await,
            StatusCode::UNAUTHORIZED,
            "{what}"
        );
        assert_eq!(
            app.introspect(&token).await,
            json!({"active": false}),
            "{what}"
        );
    }
}

#[tokio::test]
async fn token_of_a_revoked_session_is_refused_before_it_expires() {
    let app = spawn_app().await;
    let tokens = app.register(&email()).await.tokens;
    assert_eq!(app.me_status(&tokens.access_token).await, StatusCode::OK);
    let res = app
        .post_bearer("/v1/logout", &tokens.access_token, None)
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.me_status(&tokens.access_token).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.introspect(&tokens.access_token).await,
        json!({"active": false})
    );
    let res = app
        .post_bearer("/v1/logout", &tokens.access_token, None)
        .await;
    assert_problem(res, StatusCode::UNAUTHORIZED, "invalid_token").await;
}
