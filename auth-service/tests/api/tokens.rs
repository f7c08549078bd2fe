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
    // The genuine token is used first, so its signature is remembered as
    // checked: the forgeries below must not ride on that.
    assert_eq!(app.me_status(&tokens.access_token).await, StatusCode::OK);
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
    // One character inside the remembered token's signature changed (not
    // the last, whose low bits are padding).
    let genuine = &tokens.access_token;
    let at = genuine.len() - 10;
    let swapped = if &genuine[at..=at] == "A" { "B" } else { "A" };
    let flipped = format!("{}{swapped}{}", &genuine[..at], &genuine[at + 1..]);
    assert_eq!(app.me_status(&flipped).await, StatusCode::UNAUTHORIZED);
    assert_eq!(app.introspect(&flipped).await, json!({"active": false}));
    assert_eq!(app.me_status(genuine).await, StatusCode::OK);
}

/// A token whose signature was checked once is not checked again, but its
/// expiry is, on every use: past `exp` plus the 5 s leeway it is refused
/// exactly as an unseen token would be.
#[tokio::test]
async fn a_remembered_token_still_expires() {
    let app = spawn_app().await;
    let tokens = app.register(&email()).await.tokens;
    let keys = auth_service::tokens::TokenKeys::load(&app.settings).expect("keys");
    let now = Utc::now().timestamp();
    let claims = keys
        .verify_access_at(&tokens.access_token, now)
        .expect("a fresh token verifies");
    // Now remembered: the same answer while it lives...
    let again = keys
        .verify_access_at(&tokens.access_token, claims.exp)
        .expect("still live at exp");
    assert_eq!(
        (again.sub, again.sid, again.jti),
        (claims.sub, claims.sid, claims.jti)
    );
    assert!(keys
        .verify_access_at(&tokens.access_token, claims.exp + 5)
        .is_some());
    // ...and none once it has expired, however often it was seen.
    assert!(keys
        .verify_access_at(&tokens.access_token, claims.exp + 6)
        .is_none());
    assert!(keys
        .verify_access_at(&tokens.access_token, claims.exp + 3600)
        .is_none());
    // A token never seen is checked in full, including against `now`.
    let other = app.register(&email()).await.tokens.access_token;
    let exp = keys.verify_access(&other).expect("verifies").exp;
    let fresh_keys = auth_service::tokens::TokenKeys::load(&app.settings).expect("keys");
    assert!(fresh_keys.verify_access_at(&other, exp + 6).is_none());
    assert!(fresh_keys.verify_access_at("not.a.token", now).is_none());
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

/// Another process on `app`'s database that signs with a new key and lists
/// `app`'s as retired (`AUTH_JWT_PREVIOUS_KEY_FILES`); returns its URL.
async fn start_rotated(app: &crate::helpers::TestApp) -> String {
    use ed25519_dalek::pkcs8::{spki::der::pem::LineEnding, EncodePrivateKey};
    let new_key = app
        .dir
        .join(format!("jwt-{}.pem", uuid::Uuid::new_v4().simple()));
    let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    std::fs::write(
        &new_key,
        key.to_pkcs8_pem(LineEnding::LF).expect("pem").as_bytes(),
    )
    .expect("write key");
    let auth_service::configuration::JwtKeySource::Ed25519PemFile(old_key) =
        app.settings.jwt_key.clone()
    else {
        panic!("the test app signs with EdDSA");
    };
    let mut settings = app.settings.clone();
    settings.jwt_key = auth_service::configuration::JwtKeySource::Ed25519PemFile(new_key);
    settings.previous_jwt_keys = vec![old_key];
    let rotated = auth_service::Application::build(settings)
        .await
        .expect("rotated app builds");
    let rotated_url = format!("http://127.0.0.1:{}", rotated.port());
    tokio::spawn(rotated.run_until_stopped());
    rotated_url
}

/// Key rotation: a process signing with a new key and listing the old one
/// in `AUTH_JWT_PREVIOUS_KEY_FILES` still accepts the old key's tokens, signs
/// new ones with the new `kid` and publishes both in the JWKS; a process
/// that knows only the old key refuses the new key's tokens.
#[tokio::test]
async fn rotated_signing_key_keeps_old_tokens_valid() {
    let app = spawn_app().await;
    let address = email();
    let old_token = app.register(&address).await.tokens.access_token;

    let rotated_url = start_rotated(&app).await;

    let me = |base: String, token: String| {
        let client = app.client.clone();
        async move {
            client
                .get(format!("{base}/v1/me"))
                .bearer_auth(token)
                .send()
                .await
                .expect("request")
                .status()
        }
    };
    assert_eq!(
        me(rotated_url.clone(), old_token.clone()).await,
        StatusCode::OK
    );
    let res = app
        .client
        .post(format!("{rotated_url}/v1/login"))
        .json(&json!({"email": address, "password": crate::helpers::PASSWORD}))
        .send()
        .await
        .expect("login");
    assert_eq!(res.status(), StatusCode::OK);
    let body: serde_json::Value = res.json().await.expect("json");
    let new_token = body["access_token"].as_str().expect("token").to_owned();
    let kid = |t: &str| {
        jsonwebtoken::decode_header(t)
            .expect("header")
            .kid
            .expect("kid")
    };
    assert_ne!(kid(&new_token), kid(&old_token));
    assert_eq!(
        me(rotated_url.clone(), new_token.clone()).await,
        StatusCode::OK
    );
    // The process that knows only the old key refuses the new one's tokens.
    assert_eq!(
        me(app.address.clone(), new_token.clone()).await,
        StatusCode::UNAUTHORIZED
    );

    let jwks: serde_json::Value = app
        .client
        .get(format!("{rotated_url}/.well-known/jwks.json"))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("json");
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["kid"].as_str())
        .collect();
    assert_eq!(kids, [kid(&new_token), kid(&old_token)]);
}

/// The review's finding: the successor of a spent refresh token was derived
/// from the JWT signing key, so a duplicate refresh inside the grace window
/// that reached a process with a rotated key got a token whose hash was
/// never stored (it failed on first use). The successor is keyed apart
/// from the signing key now, and checked against its stored hash.
#[tokio::test]
async fn a_grace_window_duplicate_after_key_rotation_gets_the_stored_successor() {
    let app = spawn_app().await;
    let tokens = app.register(&email()).await.tokens;
    let res = app.refresh(&tokens.refresh_token).await;
    assert_eq!(res.status(), StatusCode::OK);
    let first: serde_json::Value = res.json().await.expect("json");

    let rotated_url = start_rotated(&app).await;

    // The duplicate (a second tab) reaches the rotated process in the window.
    let res = app
        .client
        .post(format!("{rotated_url}/v1/token/refresh"))
        .json(&json!({"refresh_token": tokens.refresh_token}))
        .send()
        .await
        .expect("refresh");
    assert_eq!(res.status(), StatusCode::OK);
    let second: serde_json::Value = res.json().await.expect("json");
    assert_eq!(second["refresh_token"], first["refresh_token"]);
    // And the token it got works.
    let res = app
        .refresh(second["refresh_token"].as_str().expect("token"))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
}
