//! Admin routes of the main backend: who may call them, with every
//! credential confirmed by the auth service.

use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::*;

impl Stack {
    async fn admin_patch(&self, id: Uuid, token: &str, body: &Value) -> reqwest::Response {
        self.client
            .patch(format!("{}/admin/v1/users/{id}", self.main_url))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("admin patch")
    }

    async fn sync_with(&self, token: &str) -> StatusCode {
        self.client
            .post(format!("{}/admin/v1/sync", self.main_url))
            .bearer_auth(token)
            .send()
            .await
            .expect("sync")
            .status()
    }
}

async fn code(res: reqwest::Response) -> String {
    let body: Value = res.json().await.expect("problem");
    body["code"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn admins_set_business_fields_and_nobody_else_does() {
    let stack = spawn_stack().await;
    let alice = stack.register(&unique_email()).await;
    let bob = stack.register(&unique_email()).await;
    let (a, b) = (alice.user.id, bob.user.id);
    eventually(std::time::Duration::from_secs(5), || async {
        stack.mirror_user(a).await.is_some() && stack.mirror_user(b).await.is_some()
    })
    .await;
    let alice_token = alice.tokens.access_token.clone();

    // A standard user may not, nor a token without scope admin.
    let res = stack
        .admin_patch(b, &alice_token, &json!({"plan_tier": "pro"}))
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(code(res).await, "forbidden");
    for scopes in [&["ops"][..], &["internal"], &["billing"]] {
        let token = stack.service_token(scopes).await;
        let res = stack
            .admin_patch(b, &token, &json!({"plan_tier": "pro"}))
            .await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{scopes:?}");
    }
    for bad in ["", "ast_not-a-real-token", "not even a token"] {
        let res = stack
            .admin_patch(b, bad, &json!({"plan_tier": "pro"}))
            .await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{bad:?}");
    }
    // The API key is the main backend's credential, not an operator's.
    let res = stack
        .admin_patch(b, &stack.api_key, &json!({"plan_tier": "pro"}))
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // A service token with scope admin makes Alice an administrator...
    let admin = stack.service_token(&["admin"]).await;
    let res = stack
        .admin_patch(a, &admin, &json!({"role": "admin"}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let profile: Value = res.json().await.expect("profile");
    assert_eq!(profile["role"], "admin");
    assert_eq!(profile["id"], a.to_string());

    // ...and then she may change Bob's fields with her own access token.
    let res = stack
        .admin_patch(
            b,
            &alice_token,
            &json!({"plan_tier": "team", "permissions": ["reports:read"],
                    "feature_flags": {"beta": true}, "tool_permissions": {"search": ["run"]}}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = stack.me(&bob.tokens.access_token).await;
    let me: Value = res.json().await.expect("me");
    assert_eq!(me["plan_tier"], "team");
    assert_eq!(me["role"], "standard_user");
    assert_eq!(me["permissions"], json!(["reports:read"]));
    assert_eq!(me["feature_flags"], json!({"beta": true}));
    assert_eq!(me["tool_permissions"], json!({"search": ["run"]}));

    // Auth-owned and unknown fields are not accepted here; bad values are 422.
    for body in [
        json!({"email": "x@example.com"}),
        json!({"account_locked": true}),
        json!({"role": "root"}),
        json!({"plan_tier": "platinum"}),
        json!({"permissions": "everything"}),
        json!({}),
    ] {
        let res = stack.admin_patch(b, &admin, &body).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    }
    let res = stack
        .admin_patch(Uuid::now_v7(), &admin, &json!({"plan_tier": "pro"}))
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let row = stack.mirror_user(b).await.expect("mirror row");
    assert_eq!(row.email, bob.user.email, "the email is untouched");
}

#[tokio::test]
async fn a_revoked_service_token_stops_at_once_and_auth_outages_fail_closed() {
    let mut stack = spawn_stack().await;
    let user = stack.register(&unique_email()).await;
    let id = user.user.id;
    eventually(std::time::Duration::from_secs(5), || async {
        stack.mirror_user(id).await.is_some()
    })
    .await;
    let admin = stack.service_token(&["admin"]).await;
    let body = json!({"plan_tier": "pro"});
    let res = stack.admin_patch(user.user.id, &admin, &body).await;
    assert_eq!(res.status(), StatusCode::OK);

    // Revoked on the auth service: the very next call here is refused,
    // because service-token answers are never cached.
    let other_admin = stack.service_token(&["admin"]).await;
    let res = stack
        .client
        .post(format!(
            "{}/admin/v1/service-tokens/revoke-all",
            stack.auth_url
        ))
        .bearer_auth(&other_admin)
        .send()
        .await
        .expect("revoke-all");
    assert_eq!(res.status(), StatusCode::OK);
    let res = stack.admin_patch(user.user.id, &admin, &body).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(code(res).await, "invalid_token");

    // Auth service down: no service token can be confirmed, so none passes.
    let fresh = stack.service_token(&["admin"]).await;
    stack.stop_auth().await;
    let res = stack.admin_patch(user.user.id, &fresh, &body).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(code(res).await, "auth_unavailable");
}

#[tokio::test]
async fn manual_sync_takes_an_admin_or_ops_token() {
    let stack = spawn_stack().await;
    let user = stack.register(&unique_email()).await;
    assert_eq!(
        stack.sync_with(&stack.service_token(&["ops"]).await).await,
        StatusCode::OK
    );
    assert_eq!(
        stack
            .sync_with(&stack.service_token(&["admin"]).await)
            .await,
        StatusCode::OK
    );
    assert_eq!(
        stack
            .sync_with(&stack.service_token(&["internal"]).await)
            .await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        stack.sync_with(&stack.api_key).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        stack.sync_with(&user.tokens.access_token).await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn locks_and_deletions_by_the_auth_admin_api_reach_the_mirror() {
    let stack = spawn_stack().await;
    let user = stack.register(&unique_email()).await;
    let id = user.user.id;
    let token = user.tokens.access_token.clone();
    assert_eq!(stack.me(&token).await.status(), StatusCode::OK);
    let admin = stack.service_token(&["admin"]).await;
    let auth_admin = |method: reqwest::Method, path: String| {
        stack
            .client
            .request(method, format!("{}{path}", stack.auth_url))
            .bearer_auth(&admin)
            .send()
    };

    let res = auth_admin(reqwest::Method::POST, format!("/admin/v1/users/{id}/lock"))
        .await
        .expect("lock");
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    // The cached answer for this token is evicted by the webhooks.
    let took = eventually(std::time::Duration::from_secs(5), || async {
        stack.me(&token).await.status() == StatusCode::UNAUTHORIZED
    })
    .await;
    assert!(took < std::time::Duration::from_secs(2), "{took:?}");
    assert!(stack.mirror_user(id).await.expect("row").account_locked);

    let res = auth_admin(reqwest::Method::DELETE, format!("/admin/v1/users/{id}"))
        .await
        .expect("delete");
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    eventually(std::time::Duration::from_secs(5), || async {
        stack.mirror_user(id).await.is_none()
    })
    .await;
    // A late reconciliation does not bring the user back.
    let report = stack.sync_now().await;
    assert_eq!(report["created"], 0, "{report}");
    assert!(stack.mirror_user(id).await.is_none());
}
